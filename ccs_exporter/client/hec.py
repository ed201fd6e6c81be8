"""HTTP to a Splunk HTTP Event Collector: one session with the token header, TLS verified.

The audit export's HEC destination decides what an answer means; this module only sends and reads back
(status, the collector's JSON answer). The token is only ever put in the ``Authorization`` header.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


class HecUnreachable(Exception):
    """The request got no answer: connection, TLS or timeout (the message never holds the token)."""


@dataclass(frozen=True)
class HecAnswer:
    """A collector's answer: the HTTP status, its JSON object (empty if none) and a short reason."""

    status: int
    body: dict[str, Any]
    reason: str


class HecClient:
    """POSTs JSON bodies to one collector with ``Authorization: Splunk <token>`` and a request channel."""

    def __init__(self, token: str, *, ca_bundle: Path | None, timeout: float) -> None:
        self._timeout = timeout
        self._session = requests.Session()
        # Passed with each request: a session's verify loses to $REQUESTS_CA_BUNDLE in requests.
        self._verify: str | bool = str(ca_bundle) if ca_bundle is not None else True
        self._session.headers["Authorization"] = f"Splunk {token}"
        # Indexer acknowledgement needs a channel; a GUID per process, as Splunk documents.
        self._session.headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())
        self._session.headers["Content-Type"] = "application/json"

    def post(self, url: str, body: bytes) -> HecAnswer:
        """POST ``body``; the answer, or HecUnreachable."""
        try:
            response = self._session.post(url, data=body, timeout=self._timeout, verify=self._verify)
        except requests.exceptions.SSLError:
            raise HecUnreachable("TLS certificate not trusted, or TLS failed") from None
        except requests.exceptions.Timeout:
            raise HecUnreachable(f"timed out after {self._timeout:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise HecUnreachable(type(exc).__name__) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        body_dict = answer if isinstance(answer, dict) else {}
        return HecAnswer(response.status_code, body_dict, response.reason or "")

    def close(self) -> None:
        """Close the connections."""
        self._session.close()
