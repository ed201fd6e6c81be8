"""Splunk HTTP Event Collector: batches of events POSTed with token auth, confirmed by indexer acks.

``POST /services/collector/event`` with ``Authorization: Splunk <token>`` and a body of concatenated event
objects (``time``, ``host``, ``source``, ``sourcetype``, ``event``). When the collector answers with an
``ackId`` (indexer acknowledgement enabled), the batch counts as delivered only once
``POST /services/collector/ack`` reports it indexed; otherwise the 200 answer is the acknowledgement.
503 (busy), other 5xx, 429, timeouts and connection failures are retried by the shipper; 400 (the data is
refused) is not. The token is read from a file, sent only in the header and never shown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ccs_exporter.audit.export.destinations import (
    DeliveryError,
    DestinationError,
    DestinationOptions,
    Shipment,
)
from ccs_exporter.audit.export.fields import epoch_ms
from ccs_exporter.client.hec import HecAnswer, HecClient, HecUnreachable

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
ACK_POLL_SECONDS = 0.2
ACK_TIMEOUT_SECONDS = 120.0
MAX_TOKEN_BYTES = 4096
# Splunk Cloud and older Splunk Enterprise refuse request bodies over 1 MB: stay well below.
MAX_REQUEST_BYTES = 512 * 1024
_RETRYABLE = {429, 500, 502, 503, 504}


def read_token(path: Path) -> str:
    """The HEC token in ``path`` (surrounding white space removed); ValueError naming the file only."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} does not hold a HEC token (ASCII text)") from None
    if not token or len(data) > MAX_TOKEN_BYTES or any(char.isspace() for char in token):
        raise ValueError(f"{path} does not hold one HEC token")
    return token


def hec_body(batch: Sequence[Shipment], sourcetype: str) -> bytes:
    """The request body: one event object per shipment, concatenated, each event embedded as it is."""
    parts = []
    for item in batch:
        meta = {"time": epoch_ms(item.timestamp) / 1000, "host": item.host, "source": "ccs-exporter"}
        meta["sourcetype"] = sourcetype
        head = json.dumps(meta, separators=(",", ":"))[:-1]
        parts.append(f'{head},"event":{item.line}}}')
    return "\n".join(parts).encode("utf-8")


def request_bodies(batch: Sequence[Shipment], sourcetype: str) -> list[bytes]:
    """The batch as request bodies of at most MAX_REQUEST_BYTES (an event larger alone is sent alone)."""
    bodies: list[bytes] = []
    start = 0
    size = 0
    for index, item in enumerate(batch):
        size += len(item.line) + 160
        if size > MAX_REQUEST_BYTES and index > start:
            bodies.append(hec_body(batch[start:index], sourcetype))
            start, size = index, len(item.line) + 160
    bodies.append(hec_body(batch[start:], sourcetype))
    return bodies


class HecDestination:
    """One collector; one request channel per process, as indexer acknowledgement needs."""

    def __init__(self, url: str, options: DestinationOptions) -> None:
        if options.hec_token_file is None:
            raise ValueError("an https:// destination (Splunk HEC) needs --hec-token-file")
        parts = urlsplit(url)
        path = parts.path.rstrip("/") or EVENT_PATH
        self._event_url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self._ack_url = urlunsplit((parts.scheme, parts.netloc, ACK_PATH, "", ""))
        self.name = f"https://{parts.hostname}:{parts.port or 443}{path}"
        self._sourcetype = options.sourcetype
        self._timeout = options.timeout
        token = read_token(options.hec_token_file)
        client_cert = None
        if options.client_cert is not None and options.client_key is not None:
            client_cert = (options.client_cert, options.client_key)
        self._client = HecClient(
            token,
            url=self._event_url,
            ca_bundle=options.ca_bundle,
            timeout=options.timeout,
            client_cert=client_cert,
        )

    def send(self, batch: Sequence[Shipment]) -> None:
        """POST the batch in requests of at most MAX_REQUEST_BYTES, each acknowledged before the next."""
        for body in request_bodies(batch, self._sourcetype):
            answer = self._post(self._event_url, body)
            ack_id = answer.get("ackId")
            if isinstance(ack_id, int) and not isinstance(ack_id, bool):
                self._wait_for_ack(ack_id)

    def _post(self, url: str, body: bytes) -> dict[str, Any]:
        try:
            answer = self._client.post(url, body)
        except HecUnreachable as exc:
            raise DeliveryError(f"{self.name}: {exc}") from None
        text = _collector_text(answer)
        if answer.status in _RETRYABLE:
            raise DeliveryError(f"{self.name}: HTTP {answer.status} {text}")
        if answer.status in (401, 403):
            raise DeliveryError(f"{self.name}: HTTP {answer.status}: the token was refused ({text})")
        if answer.status != 200:
            raise DestinationError(f"{self.name}: HTTP {answer.status}: {text}")
        return answer.body

    def _wait_for_ack(self, ack_id: int) -> None:
        deadline = time.monotonic() + min(ACK_TIMEOUT_SECONDS, max(self._timeout * 4, 1.0))
        body = json.dumps({"acks": [ack_id]}).encode("utf-8")
        while time.monotonic() < deadline:
            acks = self._post(self._ack_url, body).get("acks")
            if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                return
            time.sleep(ACK_POLL_SECONDS)
        raise DeliveryError(f"{self.name}: batch (ackId {ack_id}) not acknowledged as indexed in time")

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _collector_text(answer: HecAnswer) -> str:
    """The collector's own short explanation (``text`` and ``code``), bounded; never request headers."""
    if "text" in answer.body or "code" in answer.body:
        return f"{str(answer.body.get('text', ''))[:200]} (code {answer.body.get('code')})"
    return answer.reason[:200]
