"""How the scale benchmark asks for ``/metrics``: the formats and encodings a scraper turns through."""

from __future__ import annotations

from dataclasses import dataclass

OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2 sends
TEXT_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"  # Prometheus asked for the text format only


@dataclass(frozen=True)
class Variant:
    label: str
    accept: str
    gzipped: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"Accept": self.accept, "Accept-Encoding": "gzip" if self.gzipped else "identity"}


TEXT_GZIP = Variant("text, gzip", TEXT_ACCEPT, True)
OPENMETRICS_GZIP = Variant("OpenMetrics, gzip", OPENMETRICS_ACCEPT, True)
VARIANTS = (
    Variant("text, plain", TEXT_ACCEPT, False),
    TEXT_GZIP,
    Variant("OpenMetrics, plain", OPENMETRICS_ACCEPT, False),
    OPENMETRICS_GZIP,
)
