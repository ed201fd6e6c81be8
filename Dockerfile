# The image the Helm chart (helm/ccs-exporter) runs: ccs-exporter as a non-root user on port 9879.
#   docker build -t ccs-exporter:0.1.0 .
#   docker run --rm -p 9879:9879 -e CCS_EXPORTER_URL=... -e CCS_EXPORTER_USERNAME=... \
#     -e CCS_EXPORTER_PASSWORD_FILE=/run/secrets/ccs-password -v ./ccs-password:/run/secrets/ccs-password:ro \
#     -e CCS_EXPORTER_JOB_IDS=... ccs-exporter:0.1.0
# Built and checked in CI by .ci/build-image.sh (docker or podman, also offline) and tests/test_image.py.
# Pushing it to a registry and pointing the chart at it: docs/image.md.
#
# The base image is pinned by digest (python:3.11-slim, the multi-platform index), so a rebuild of the
# same commit gets the same system libraries. To move to a newer base (security updates), look the
# current digest up and replace it below, then rebuild and run the tests:
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
#   (or: docker pull python:3.11-slim && docker inspect --format '{{index .RepoDigests 0}}' python:3.11-slim)
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# Wheels to install from when the build cannot reach a package index: empty here, so pip uses the index,
# unless the build is given a directory of wheels as the build context of the same name
# (`--build-context wheelhouse=DIR`; .ci/build-image.sh makes one with `pip wheel` on the host). The image
# is the same either way: the same pinned versions, and the wheels never reach the runtime stage.
FROM scratch AS wheelhouse

# Build stage: the package and its dependencies, at the versions of constraints.txt (the ones CI tests),
# installed into a virtual environment that the runtime stage copies as it is.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt pyproject.toml README.md LICENSE ./
COPY ccs_exporter ./ccs_exporter
RUN --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    if [ -n "$(ls -A /wheelhouse)" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
    && python -m venv /opt/ccs-exporter \
    && /opt/ccs-exporter/bin/pip install --constraint constraints.txt . \
    && /opt/ccs-exporter/bin/python -m compileall -q /opt/ccs-exporter/lib

# Runtime stage: the same base image, the virtual environment, no sources, no build files.
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="ccs-exporter" \
      org.opencontainers.image.description="Prometheus exporter and audited job changes for Symantec/Broadcom Control Compliance Suite (CCS) jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ccs-exporter/ccs-exporter" \
      org.opencontainers.image.url="https://github.com/ccs-exporter/ccs-exporter" \
      org.opencontainers.image.documentation="https://github.com/ccs-exporter/ccs-exporter#readme"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/ccs-exporter/bin:$PATH

# A fixed uid/gid matching the chart's securityContext (runAsUser/runAsGroup/fsGroup 10001).
RUN groupadd --system --gid 10001 ccs \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ccs

COPY --from=build /opt/ccs-exporter /opt/ccs-exporter
COPY LICENSE /usr/share/doc/ccs-exporter/LICENSE

WORKDIR /
USER 10001:10001
EXPOSE 9879
ENTRYPOINT ["ccs-exporter"]
CMD ["serve"]
