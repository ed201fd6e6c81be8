"""HTTP to a Splunk HTTP Event Collector: one session with the token header, TLS verified.

The audit export's HEC destination decides what an answer means; this module only sends and reads back
(status, the collector's JSON answer). The token is only ever put in the ``Authorization`` header.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

MAX_ANSWER_BYTES = 64 * 1024


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

    def __init__(
        self,
        token: str,
        *,
        url: str,
        ca_bundle: Path | None,
        timeout: float,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        self._timeout = timeout
        self._session = requests.Session()
        # As for CCS: the proxy for this URL read once; nothing else from the environment (with trust_env,
        # $REQUESTS_CA_BUNDLE would replace the CA bundle and ~/.netrc the Authorization header).
        self._session.proxies.update(requests.utils.get_environ_proxies(url))
        self._session.trust_env = False
        self._verify: str | bool = str(ca_bundle) if ca_bundle is not None else True
        if client_cert is not None:
            self._session.cert = (str(client_cert[0]), str(client_cert[1]))
        self._session.headers["Authorization"] = f"Splunk {token}"
        # Indexer acknowledgement needs a channel; a GUID per process, as Splunk documents.
        self._session.headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())
        self._session.headers["Content-Type"] = "application/json"

    def post(self, url: str, body: bytes) -> HecAnswer:
        """POST ``body``; the answer, or HecUnreachable."""
        try:
            with self._session.post(
                url, data=body, timeout=self._timeout, verify=self._verify, stream=True
            ) as response:
                # A collector's answer is a short JSON object: read a bounded prefix, never the whole body.
                raw = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
                status, reason = response.status_code, response.reason or ""
        except requests.exceptions.SSLError:
            raise HecUnreachable("TLS certificate not trusted, or TLS failed") from None
        except requests.exceptions.Timeout:
            raise HecUnreachable(f"timed out after {self._timeout:g} s") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            raise HecUnreachable(type(exc).__name__) from None
        try:
            answer = json.loads(raw[:MAX_ANSWER_BYTES].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            answer = {}
        body_dict = answer if isinstance(answer, dict) else {}
        return HecAnswer(status, body_dict, reason)

    def close(self) -> None:
        """Close the connections."""
        self._session.close()
