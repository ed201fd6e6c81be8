# The image the Helm chart (helm/ccs-exporter) runs: ccs-exporter as a non-root user on port 9879.
#   docker build -t ccs-exporter:0.1.0 .
#   docker run --rm -p 9879:9879 -e CCS_EXPORTER_URL=... -e CCS_EXPORTER_USERNAME=... \
#     -e CCS_EXPORTER_PASSWORD_FILE=/run/secrets/ccs-password -v ./ccs-password:/run/secrets/ccs-password:ro \
#     -e CCS_EXPORTER_JOB_IDS=... ccs-exporter:0.1.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid matching the chart's securityContext (runAsUser/runAsGroup/fsGroup 10001).
RUN groupadd --system --gid 10001 ccs \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ccs

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ccs_exporter ./ccs_exporter
# The source is removed after installing: the container runs the installed package only.
RUN pip install . && rm -rf /src

WORKDIR /
USER 10001:10001
EXPOSE 9879
ENTRYPOINT ["ccs-exporter"]
CMD ["serve"]
