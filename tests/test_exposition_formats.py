"""/metrics in both formats: OpenMetrics when the scraper asks for it, and name[] filtering."""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from ccs_exporter.exposition.formats import MAX_SELECTED_NAMES, negotiate
from ccs_exporter.exposition.live import LiveMetrics, RequestStats
from ccs_exporter.exposition.renderer import ExpositionStore
from ccs_exporter.polling.snapshot import JobSnapshot, JobState, PollSnapshot, RunSummary
from ccs_exporter.web.server import MetricsServer

PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
HOSTILE = 'Prüfung "Q4" C:\\Jobs\\new\nline \u2013 監査'
# Families whose values move between two scrapes (process and interpreter state).
_MOVING = ("process_", "python_gc_")


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("", TEXT),
        (PROMETHEUS_2_ACCEPT, OPENMETRICS),
        (PROMETHEUS_3_ACCEPT, OPENMETRICS + "; escaping=allow-utf-8"),
        (
            "application/openmetrics-text;version=1.0.0;escaping=underscores",
            OPENMETRICS + "; escaping=underscores",
        ),
        ("application/openmetrics-text;version=1.0.0;escaping=values", OPENMETRICS + "; escaping=values"),
        (
            "application/openmetrics-text;version=1.0.0;escaping=nonsense",
            OPENMETRICS + "; escaping=underscores",
        ),
        (
            "application/openmetrics-text;version=0.0.1;escaping=allow-utf-8",
            OPENMETRICS.replace("1.0.0", "0.0.1"),
        ),
        ("text/plain;version=0.0.4;escaping=underscores", TEXT),
        ("application/openmetrics-text", OPENMETRICS),
        ("APPLICATION/OpenMetrics-Text ; Version=1.0.0", OPENMETRICS),
        ("application/openmetrics-text; version=0.0.1", OPENMETRICS.replace("1.0.0", "0.0.1")),
        ("application/openmetrics-text; version=2.0.0", TEXT),
        ("application/openmetrics-text;q=0", TEXT),
        ("application/openmetrics-text;q=nonsense", TEXT),
        ("application/openmetrics-text;q=1.5", TEXT),
        ("text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5", TEXT),
        ("text/plain;q=0.2, application/openmetrics-text;q=0.3", OPENMETRICS),
        ("text/plain, application/openmetrics-text", TEXT),
        ("application/json", TEXT),
        ("*/*", TEXT),
        (",,;;=", TEXT),
    ],
)
def test_accept_header_negotiation(accept: str, content_type: str) -> None:
    """The highest-ranked acceptable format wins (ties: the first listed); anything else gets text 0.0.4."""
    assert negotiate(accept).content_type == content_type


def _snapshot() -> PollSnapshot:
    runs = RunSummary(
        status_code=5,
        start_seconds=1_999_999_000.0,
        end_seconds=1_999_999_060.0,
        duration_seconds=60.0,
        messages=(("error", 2), ("information", 0), ("warning", 1)),
        total_runs=7,
        last_success_seconds=1_999_990_000.0,
        consecutive_failures=1,
        running=False,
    )
    jobs = []
    for index, name in enumerate(("Nightly PCI", HOSTILE)):
        job_id = f"00000000-0000-4000-8000-{index:012d}"
        data = JobSnapshot(
            job_id=job_id,
            name=name,
            job_type="COLLECTIONJOB",
            owner="CCS\\demo",
            is_system=False,
            last_run_status=5,
            modified_seconds=1_900_000_000.0,
            runs=runs,
        )
        jobs.append(JobState(job_id, data, poll_success=True, read_at=1_999_999_990.0))
    jobs.append(JobState("00000000-0000-4000-8000-000000000009", None, poll_success=False, error="not_found"))
    return PollSnapshot(
        taken_at=2_000_000_000.0,
        jobs=tuple(jobs),
        up=True,
        last_success_at=2_000_000_000.0,
        cycle_seconds=1.5,
        cycles=4,
        overruns=1,
    )


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    """A metrics server on 127.0.0.1 serving a published snapshot and live metrics with CCS requests."""
    store = ExpositionStore()
    store.publish(_snapshot())
    requests = RequestStats()
    requests.observe("job", "200", 0.02)
    requests.observe("token", "timeout", 30.0)
    metrics_server = MetricsServer(("127.0.0.1", 0), store, LiveMetrics(requests), None)
    metrics_server.start()
    yield metrics_server
    metrics_server.stop()


def scrape(server: MetricsServer, target: str = "/metrics", **headers: str) -> http.client.HTTPResponse:
    """A GET of ``target`` with ``headers`` (underscores for dashes), its body read and kept as ``.body``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", target, headers={k.replace("_", "-"): v for k, v in headers.items()})
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def _body(response: http.client.HTTPResponse) -> str:
    raw: bytes = response.body  # type: ignore[attr-defined]
    if response.getheader("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def _samples(families: Iterator[object]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples  # type: ignore[attr-defined]
    }


@pytest.mark.integration
class TestOpenMetricsScrape:
    """A scraper that asks for OpenMetrics gets a complete, valid OpenMetrics exposition."""

    @pytest.mark.parametrize("encoding", ["identity", "gzip"])
    def test_whole_scrape_parses_with_the_openmetrics_parser(
        self, server: MetricsServer, encoding: str
    ) -> None:
        """The body, plain or gzip, ends in # EOF and parses whole, hostile job name included."""
        response = scrape(server, Accept=PROMETHEUS_2_ACCEPT, Accept_Encoding=encoding)
        assert response.status == 200
        assert response.getheader("Content-Type") == OPENMETRICS
        assert (response.getheader("Content-Encoding") == "gzip") is (encoding == "gzip")
        body = _body(response)
        assert body.endswith("\n# EOF\n") and body.count("# EOF") == 1
        families = {family.name: family for family in parse_openmetrics(body)}
        names = {s.labels["job_name"] for s in families["ccs_job"].samples if s.name == "ccs_job_info"}
        assert names == {"Nightly PCI", HOSTILE}

    def test_counters_and_info_families_are_named_as_openmetrics_names_them(
        self, server: MetricsServer
    ) -> None:
        """Counter families drop _total (their samples keep it); info families drop _info."""
        body = _body(scrape(server, Accept="application/openmetrics-text"))
        types = {family.name: family.type for family in parse_openmetrics(body)}
        for counter in ("ccs_poll_cycles", "ccs_poll_overruns", "ccs_api_requests", "python_gc_collections"):
            assert types[counter] == "counter", counter
        assert types["ccs_job"] == types["ccs_exporter_build"] == "info"
        assert types["ccs_api_request_duration_seconds"] == "histogram"
        assert "# TYPE ccs_poll_cycles counter\nccs_poll_cycles_total 4.0\n" in body
        ours = [name for name in types if name.startswith("ccs_")]
        assert not [name for name in ours if name.endswith(("_total", "_info"))]

    def test_same_samples_as_the_text_format(self, server: MetricsServer) -> None:
        """Both formats carry the same series with the same values (process figures aside)."""
        text = _samples(parse_text(_body(scrape(server))))
        openmetrics = _samples(
            parse_openmetrics(_body(scrape(server, Accept="application/openmetrics-text")))
        )
        assert text.keys() == openmetrics.keys()
        steady = {key: value for key, value in text.items() if not key[0].startswith(_MOVING)}
        assert steady == {key: openmetrics[key] for key in steady}
        faulted = {("job_id", "00000000-0000-4000-8000-000000000000"), ("status", "faulted")}
        assert text[("ccs_job_last_run_status", frozenset(faulted))] == 1

    def test_text_stays_the_default(self, server: MetricsServer) -> None:
        """Without an Accept header the body is text 0.0.4, with no # EOF, and says it varies with Accept."""
        response = scrape(server)
        assert response.getheader("Content-Type") == TEXT
        assert "# EOF" not in _body(response)
        assert response.getheader("Vary") == "Accept, Accept-Encoding"

    def test_openmetrics_before_the_first_cycle_is_live_families_and_eof(self) -> None:
        """Before any cycle, an OpenMetrics scrape holds the live families and still ends in # EOF."""
        server = MetricsServer(("127.0.0.1", 0), ExpositionStore(), LiveMetrics(RequestStats()), None)
        server.start()
        try:
            body = _body(scrape(server, Accept="application/openmetrics-text"))
        finally:
            server.stop()
        names = {family.name for family in parse_openmetrics(body)}
        assert "ccs_exporter_build" in names and "ccs_up" not in names


class TestNameFilter:
    """``name[]`` selects whole families by name, and samples by sample name, as client_python does."""

    @pytest.mark.integration
    @pytest.mark.parametrize("accept", ["", "application/openmetrics-text"])
    @pytest.mark.parametrize("encoding", ["identity", "gzip"])
    def test_only_the_named_families_are_served(
        self, server: MetricsServer, accept: str, encoding: str
    ) -> None:
        """Two names give exactly those two families, in either format and encoding."""
        target = "/metrics?name[]=ccs_up&name[]=ccs_job_last_run_status"
        response = scrape(server, target, Accept=accept, Accept_Encoding=encoding)
        assert response.status == 200
        body = _body(response)
        parse = parse_openmetrics if accept else parse_text
        families = {family.name: len(family.samples) for family in parse(body)}
        assert families == {"ccs_up": 1, "ccs_job_last_run_status": 16}
        assert body.endswith("# EOF\n") is bool(accept)

    @pytest.mark.integration
    @pytest.mark.parametrize("name", ["ccs_poll_cycles", "ccs_poll_cycles_total"])
    def test_a_counter_is_selected_by_either_name(self, server: MetricsServer, name: str) -> None:
        """A counter answers to its family name and to its _total sample name."""
        body = _body(scrape(server, f"/metrics?name[]={name}"))
        assert body == (
            "# HELP ccs_poll_cycles_total Poll cycles completed.\n"
            "# TYPE ccs_poll_cycles_total counter\n"
            "ccs_poll_cycles_total 4.0\n"
        )

    @pytest.mark.integration
    @pytest.mark.parametrize("suffix", ["_count", "_bucket", "_sum"])
    @pytest.mark.parametrize("accept", ["", "application/openmetrics-text"])
    def test_a_sample_name_selects_only_those_samples(
        self, server: MetricsServer, suffix: str, accept: str
    ) -> None:
        """name[]=x_count gives the histogram x with only its x_count samples, as client_python does."""
        name = "ccs_api_request_duration_seconds"
        body = _body(scrape(server, f"/metrics?name[]={name}{suffix}", Accept=accept))
        lines = [line for line in body.splitlines() if line != "# EOF"]
        assert f"# TYPE {name} histogram" in lines
        samples = [line for line in lines if not line.startswith("#")]
        assert {line.split("{")[0] for line in samples} == {name + suffix}
        assert len(samples) == (28 if suffix == "_bucket" else 2)  # two endpoints, 14 buckets each

    def test_a_sample_name_of_a_prerendered_family(self) -> None:
        """The exposition rendered once per cycle filters sample names the same way, gzipped too."""
        from prometheus_client import CollectorRegistry, Histogram

        from ccs_exporter.exposition.formats import Exposition, Format, RenderedFamily

        registry = CollectorRegistry()
        histogram = Histogram("ccs_demo_seconds", "Demo.", registry=registry, buckets=(1.0,))
        histogram.observe(0.5)
        family = RenderedFamily.of_metric(next(iter(registry.collect())))
        exposition = Exposition((family,))
        plain = b"".join(exposition.body(Format.TEXT, names={"ccs_demo_seconds_count"})).decode()
        assert plain == (
            "# HELP ccs_demo_seconds Demo.\n# TYPE ccs_demo_seconds histogram\nccs_demo_seconds_count 1.0\n"
        )
        zipped = exposition.body(Format.TEXT, gzipped=True, names={"ccs_demo_seconds_count"})
        assert gzip.decompress(b"".join(zipped)).decode() == plain
        whole = b"".join(exposition.body(Format.TEXT, names={"ccs_demo_seconds"})).decode()
        assert "ccs_demo_seconds_bucket" in whole and "ccs_demo_seconds_sum" in whole

    @pytest.mark.integration
    def test_live_families_are_filtered_too(self, server: MetricsServer) -> None:
        """Per-scrape families (CCS requests, build info) are selected by the same names."""
        target = "/metrics?name[]=ccs_api_requests_total&name[]=ccs_exporter_build_info"
        body = _body(scrape(server, target, Accept="application/openmetrics-text"))
        families = {family.name: family.type for family in parse_openmetrics(body)}
        assert families == {"ccs_api_requests": "counter", "ccs_exporter_build": "info"}

    @pytest.mark.integration
    def test_info_family_by_its_openmetrics_name(self, server: MetricsServer) -> None:
        """ccs_job (the OpenMetrics name) and ccs_job_info select the same job metadata family."""
        by_text_name = _body(scrape(server, "/metrics?name[]=ccs_job_info"))
        assert by_text_name == _body(scrape(server, "/metrics?name[]=ccs_job"))
        assert by_text_name.count("ccs_job_info{") == 2

    @pytest.mark.integration
    def test_encoded_brackets_and_other_parameters(self, server: MetricsServer) -> None:
        """name%5B%5D is name[]; other parameters and empty names are ignored."""
        body = _body(scrape(server, f"/metrics?{quote('name[]')}=ccs_up&debug=1&name[]="))
        assert [family.name for family in parse_text(body)] == ["ccs_up"]

    @pytest.mark.integration
    def test_unknown_names_select_nothing(self, server: MetricsServer) -> None:
        """A name no family has gives an empty text body, and only # EOF in OpenMetrics."""
        assert _body(scrape(server, "/metrics?name[]=nope")) == ""
        openmetrics = scrape(server, "/metrics?name[]=nope", Accept="application/openmetrics-text")
        assert _body(openmetrics) == "# EOF\n"

    @pytest.mark.integration
    def test_more_names_than_the_cap_is_a_clear_400(self, server: MetricsServer) -> None:
        """Past MAX_SELECTED_NAMES name[] parameters comes a one-line 400; the cap itself is served."""
        at_cap = "&".join(f"name[]=ccs_up_{n}" for n in range(MAX_SELECTED_NAMES - 1)) + "&name[]=ccs_up"
        assert scrape(server, f"/metrics?{at_cap}").status == 200
        response = scrape(server, f"/metrics?{at_cap}&name[]=one_more")
        assert response.status == 400
        assert _body(response) == f"too many name[] parameters: at most {MAX_SELECTED_NAMES}\n"

    @pytest.mark.integration
    def test_filtered_gzip_is_one_valid_stream(self, server: MetricsServer) -> None:
        """The gzip members of the selected families decompress as one stream to the plain selection."""
        target = "/metrics?name[]=ccs_job_info&name[]=ccs_poll_overruns"
        plain = scrape(server, target, Accept="application/openmetrics-text", Accept_Encoding="identity")
        zipped = scrape(server, target, Accept="application/openmetrics-text", Accept_Encoding="gzip")
        assert gzip.decompress(zipped.body) == plain.body  # type: ignore[attr-defined]
