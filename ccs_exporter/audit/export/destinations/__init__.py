"""Where exported events go: standard output, syslog over TLS (RFC 5424/5425), a Splunk HTTP Event Collector.

``destination_from`` checks a ``--destination`` and builds its destination. ``send`` returns once the
destination has taken the whole batch (flushed to stdout, acknowledged by the receiver's TCP stack for
syslog, indexed or at least accepted by HEC); it raises ``DeliveryError`` for what a retry may fix and
``DestinationError`` for what it will not. Neither message ever holds a token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit


class DeliveryError(Exception):
    """A batch was not delivered, and trying again may work (network, busy server, timeout)."""


class DestinationError(Exception):
    """A batch cannot be delivered however often it is tried (the destination rejects the data)."""


@dataclass(frozen=True)
class Shipment:
    """One event to ship: its line and what transports put in their own headers."""

    sequence: int
    hash: str
    timestamp: str
    host: str | None
    pid: int | None
    action: str
    line: str


class Destination(Protocol):
    """A place events are shipped to."""

    name: str

    def send(self, batch: Sequence[Shipment]) -> None:
        """Deliver ``batch`` in order; return once it is acknowledged."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class DestinationOptions:
    """What a destination needs besides its address."""

    ca_bundle: Path | None = None
    client_cert: Path | None = None  # with client_key: a client certificate (mutual TLS)
    client_key: Path | None = None
    hec_token_file: Path | None = None
    sourcetype: str = "ccs:audit"
    timeout: float = 30.0


def destination_name(spec: str) -> str:
    """The name a destination is known by in cursors and metrics (no credentials, no query)."""
    if spec in ("", "-"):
        return "stdout"
    parts = urlsplit(spec)
    port = parts.port or (443 if parts.scheme == "https" else 6514)
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"


def check_destination(spec: str) -> None:
    """ValueError naming what is wrong with a ``--destination`` value (never echoing credentials)."""
    if spec in ("", "-"):
        return
    try:
        parts = urlsplit(spec)
        port = parts.port
    except ValueError:
        raise ValueError("is not a URL with a valid port") from None
    if parts.scheme not in ("syslog+tls", "https"):
        raise ValueError("must be '-' (standard output), syslog+tls://HOST:PORT or an https:// HEC URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not carry credentials (user:password@); give the HEC token with --hec-token-file"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment (tokens belong in --hec-token-file)")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.scheme == "syslog+tls" and (port is None or parts.path not in ("", "/")):
        raise ValueError("syslog+tls needs HOST:PORT and no path, e.g. syslog+tls://siem.example.com:6514")


def destination_from(spec: str, options: DestinationOptions) -> Destination:
    """The destination ``spec`` names (checked with ``check_destination`` first)."""
    if spec in ("", "-"):
        from ccs_exporter.audit.export.destinations.stdout import StdoutDestination

        return StdoutDestination()
    parts = urlsplit(spec)
    host = parts.hostname or ""
    if parts.scheme == "syslog+tls":
        from ccs_exporter.audit.export.destinations.syslog import SyslogTlsDestination

        return SyslogTlsDestination(host, parts.port or 6514, options)
    from ccs_exporter.audit.export.destinations.hec import HecDestination

    return HecDestination(spec, options)
