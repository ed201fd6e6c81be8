"""ccs-exporter: Prometheus metrics and audited job mutations for the CCS jobs REST API."""

from __future__ import annotations

__version__ = "0.1.0"
