"""The metrics server against the attacks of issue 23: TLS handshake floods, slow readers, HTTP framing.

Every server here listens on 127.0.0.1 (port 0) and is stopped by the test; attacks are bounded in count
and time and stop by themselves.
"""

from __future__ import annotations

import contextlib
import gc
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from web_helpers import Pki, exposition_of, make_pki, metrics_servers

from ccs_exporter.exposition.formats import negotiate
from ccs_exporter.web.endpoints import HttpError, accepts_gzip, basic_credentials, parse_request
from ccs_exporter.web.server import MetricsServer, ServerLimits

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., MetricsServer]]:
    """Starts metrics servers on 127.0.0.1 (an optional web config); stops them."""
    with metrics_servers(tmp_path) as servers:

        def start(web_config: str | None = None, **options: Any) -> MetricsServer:
            return servers(web_config, **options)

        yield start


def tls_config(pki: Pki) -> str:
    return f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"


def client_hello() -> bytes:
    """A real TLS ClientHello, as a client's first flight."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO())
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def tls_sessions_alive() -> int:
    return sum(1 for thing in gc.get_objects() if isinstance(thing, ssl.SSLObject))


class TestPartialHandshakeFlood:
    """Connections that send part of a ClientHello and go away (issue 23, finding 2)."""

    def test_abandoned_handshakes_leave_no_tls_state_behind(
        self, serve: Callable[..., MetricsServer], pki: Pki
    ) -> None:
        """300 half ClientHellos, then closed: the server holds no TLS session once they are gone.

        The garbage collector is off meanwhile: what is not freed as the connection closes stays, as it
        did when each abandoned handshake kept a 256 KiB buffer until a collection (60 -> 586 MB).
        """
        server = serve(tls_config(pki), limits=ServerLimits(max_connections=512))
        half = client_hello()[:200]
        gc.collect()
        gc.disable()
        try:
            before = tls_sessions_alive()
            for _ in range(2):
                flood = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(150)]
                for sock in flood:
                    sock.sendall(half)
                assert wait_until(lambda: server.open_connections == 150, 10)
                for sock in flood:
                    sock.close()
                assert wait_until(lambda: server.open_connections == 0, 10)
            time.sleep(0.2)
            left = tls_sessions_alive() - before
        finally:
            gc.enable()
        assert left == 0, f"{left} TLS sessions of closed connections are still alive"
        assert requests.get(f"{server.url}/healthz", verify=str(pki.ca), timeout=5).status_code == 200


class TestSlowReaders:
    """A reader that takes a piece now and then (issue 23, finding 4)."""

    @pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
    def test_a_steady_slow_reader_is_closed_at_the_response_deadline(
        self, serve: Callable[..., MetricsServer], pki: Pki, tls: bool
    ) -> None:
        """A reader that keeps taking pieces of a 48 MB exposition, never stalling: closed after 3 s.

        Every piece read counted as progress, so such a reader kept its cycle's exposition alive for as
        long as it liked (30 readers over 13 cycles: 86 -> 113 MB).
        """
        parts = [bytes([65 + n % 26]) * (128 * 1024 - 1) + b"\n" for n in range(384)]
        # The write timeout well past the response deadline: a reader starved of CPU for a moment on a
        # busy machine must not be closed by it (at 2 s) before the deadline this test is about.
        limits = ServerLimits(write_timeout=10.0, response_timeout=3.0)
        server = serve(tls_config(pki) if tls else None, limits=limits, exposition=exposition_of(*parts))
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        raw.settimeout(5)
        raw.connect(("127.0.0.1", server.port))
        context = ssl.create_default_context(cafile=str(pki.ca))
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        received, started = 0, time.monotonic()
        with sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
            assert wait_until(lambda: server.open_connections == 1, 3)
            while time.monotonic() - started < 8 and server.open_connections:
                received += len(sock.recv(1024 * 1024))
                time.sleep(0.1)
        elapsed = time.monotonic() - started
        # What the kernel had already taken may still reach the client: the server holds nothing.
        assert server.open_connections == 0, f"still sending after {elapsed:.1f} s ({received} bytes read)"
        assert 2.5 < elapsed < 6.5 and 0 < received < sum(map(len, parts))


GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
HEAD_END = re.compile(rb"\r?\n\r?\n")  # where the server sees a request head end


def exchange(server: MetricsServer, request: bytes) -> tuple[int | None, bool]:
    """Send ``request``; the status of the one answer (None if none came) and whether the server closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    if not received.startswith(b"HTTP/1.1 "):
        return None, True
    answers = received.count(b"HTTP/1.1 ")
    return int(received[9:12]), answers == 1


class TestHttpFraming:
    """Request heads framed as RFC 9112 asks, or refused (issue 23, finding 13)."""

    @pytest.mark.parametrize(
        "request_bytes",
        [
            GET
            + b"Content-Length: 0\r\nContent-Length: 44\r\n\r\n"
            + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            GET + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n",
            GET + b"Content-Length : 5\r\n\r\nGET /\r\n",
            GET + b"Content-Length: 5, 5\r\n\r\n12345",
            GET + b"Content-Length: +5\r\n\r\n12345",
            GET + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            GET + b"X-Folded: a\r\n b\r\n\r\n",
            GET + b"X-Nul: a\x00b\r\n\r\n",
            GET + b"X-Bare-CR: a\rb\r\n\r\n",
            GET + b"No colon here\r\n\r\n",
        ],
        ids=[
            "two-lengths-0-then-44",
            "two-equal-lengths",
            "space-before-colon",
            "length-list",
            "signed-length",
            "transfer-encoding",
            "obs-fold",
            "nul-in-value",
            "bare-cr",
            "no-colon",
        ],
    )
    def test_ambiguous_framing_is_400_and_closed(
        self, serve: Callable[..., MetricsServer], request_bytes: bytes
    ) -> None:
        """One 400 and a closed connection: nothing after the head is ever taken for a second request."""
        server = serve()
        assert exchange(server, request_bytes) == (400, True)

    def test_non_ascii_authorization_is_401_without_an_error_log(
        self, serve: Callable[..., MetricsServer], tmp_path: Path
    ) -> None:
        """A byte above 0x7F in Authorization gets an answer (401), and no error-level log line."""
        import bcrypt

        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
        server = serve(f"basic_auth_users:\n  u: '{hashed}'\n")
        with capture_logs() as logs:
            for _ in range(3):
                answer = exchange(server, b"GET /metrics HTTP/1.1\r\nAuthorization: Basic \xe9t\xe9\r\n\r\n")
                assert answer[0] == 401
        assert [entry for entry in logs if entry["log_level"] in ("error", "critical")] == []


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    """Request heads near the valid ones: real field names and values, with hostile bytes mixed in."""
    names = st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Authorization", b"Accept"])
    values = st.one_of(st.sampled_from([b"0", b"5", b"chunked", b"Basic dTpw"]), st.binary(max_size=12))
    separators = st.sampled_from([b":", b": ", b" :", b":\t", b"::"])
    endings = st.sampled_from([b"\r\n", b"\n", b"\r"])
    lines = [draw(st.sampled_from([b"GET / HTTP/1.1", b"HEAD /metrics HTTP/1.0", b"GET  / HTTP/1.1"]))]
    for _ in range(draw(st.integers(0, 6))):
        lines.append(draw(names) + draw(separators) + draw(values))
    return b"".join(line + draw(endings) for line in lines) + b"\r\n"


class TestParserFuzz:
    """parse_request on arbitrary and near-valid heads: a Request or an HttpError, nothing else."""

    @settings(max_examples=500, deadline=None)
    @given(st.one_of(st.binary(max_size=300), request_heads()))
    def test_any_head_is_parsed_or_refused(self, head: bytes) -> None:
        """Never another exception (it would drop the connection unanswered and log an error)."""
        try:
            request = parse_request(head, "127.0.0.1")
        except HttpError as error:
            assert 400 <= error.status < 600
            return
        lengths = [value for name, value in request.headers.items() if name.lower() == "content-length"]
        assert len(lengths) <= 1 and all(value.isdigit() for value in lengths)
        assert "Transfer-Encoding" not in request.headers
        basic_credentials(request.headers.get("Authorization", ""))
        negotiate(request.headers.get("Accept", ""))
        accepts_gzip(request.headers.get("Accept-Encoding", ""))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request_heads())
    def test_the_server_answers_every_complete_head(self, tmp_path: Path, head: bytes) -> None:
        """Over a socket: every near-valid head gets an answer with a status, never silence or an error."""
        assume(HEAD_END.search(head) is not None)  # else the server rightly waits for the rest
        with metrics_servers(tmp_path) as servers, capture_logs() as logs:
            server = servers(None)
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(head)
                received = b""
                while b"\r\n" not in received and (chunk := sock.recv(65536)):
                    received += chunk
        assert re.match(rb"HTTP/1\.1 [2-5]\d\d ", received), received[:40]
        assert [entry for entry in logs if entry["log_level"] in ("error", "critical")] == []
