"""Test helper: a stand-in Splunk HTTP Event Collector over TLS on 127.0.0.1 (the documented protocol).

``POST /services/collector/event`` needs ``Authorization: Splunk <token>`` (401 code 2 without it, 403
code 4 for a wrong one), takes concatenated JSON event objects (400 code 6 for bad JSON, 12 without
``event``) and answers ``{"text":"Success","code":0}``. With indexer acknowledgement on it needs an
``X-Splunk-Request-Channel`` (400 code 10) and adds an ``ackId``; ``POST /services/collector/ack`` answers
``{"acks":{"<id>":true|false}}``. Faults are scripted per event request: ``"503"`` (server busy, code 9,
nothing kept), ``"slow"`` (keeps the events, answers after ``slow_seconds``), ``"unacked"`` (keeps the
events, their ackId never turns true).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Collector:
    """What the stand-in received and how it behaves."""

    token: str
    ack: bool = False
    faults: list[str] = field(default_factory=list)
    slow_seconds: float = 2.0
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    acked: dict[int, bool] = field(default_factory=dict)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> str:
        with self.lock:
            return self.faults.pop(0) if self.faults else ""


def _objects(body: str) -> list[Any]:
    decoder = json.JSONDecoder()
    position, found = 0, []
    while position < len(body):
        while position < len(body) and body[position].isspace():
            position += 1
        if position == len(body):
            break
        value, position = decoder.raw_decode(body, position)
        found.append(value)
    return found


class _Handler(BaseHTTPRequestHandler):
    collector: Collector

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.collector.answers.append(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8")
        collector = self.collector
        collector.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        auth = self.headers.get("Authorization")
        if auth is None:
            return self._answer(401, {"text": "Token is required", "code": 2})
        if auth != f"Splunk {collector.token}":
            return self._answer(403, {"text": "Invalid token", "code": 4})
        if collector.ack and not self.headers.get("X-Splunk-Request-Channel"):
            return self._answer(400, {"text": "Data channel is missing", "code": 10})
        if self.path == "/services/collector/ack":
            wanted = json.loads(body).get("acks", [])
            return self._answer(200, {"acks": {str(i): collector.acked.get(i, False) for i in wanted}})
        if self.path != "/services/collector/event":
            return self._answer(404, {"text": "The requested URL was not found on this server.", "code": 404})
        self._event(collector, body)

    def _event(self, collector: Collector, body: str) -> None:
        fault = collector.next_fault()
        if fault == "503":
            return self._answer(503, {"text": "Server is busy", "code": 9})
        try:
            objects = _objects(body)
        except ValueError:
            return self._answer(400, {"text": "Invalid data format", "code": 6})
        if not objects or any("event" not in item for item in objects):
            return self._answer(
                400, {"text": "Event field is required", "code": 12, "invalid-event-number": 0}
            )
        with collector.lock:
            collector.events.extend(objects)
            ack_id = len(collector.acked)
            collector.acked[ack_id] = fault != "unacked"
        if fault == "slow":
            time.sleep(collector.slow_seconds)
        answer: dict[str, Any] = {"text": "Success", "code": 0}
        if collector.ack:
            answer["ackId"] = ack_id
        self._answer(200, answer)


@contextmanager
def running_collector(collector: Collector, cert: Path, key: Path) -> Iterator[Collector]:
    """Serve ``collector`` over TLS on 127.0.0.1 (a free port) until the block ends."""
    handler = type("Handler", (_Handler,), {"collector": collector})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    collector.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
