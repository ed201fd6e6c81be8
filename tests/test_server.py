"""The metrics HTTP server in normal use and under attack: HTTP details, connection and password floods.

Every server here listens on 127.0.0.1 (port 0) and is stopped by the test; attacks are bounded in count
and time and stop by themselves.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from web_helpers import SMALL, Pki, deflated_exposition_of, exposition_of, make_pki, metrics_servers

from ccs_exporter.exposition.formats import Exposition, RenderedFamily
from ccs_exporter.web.endpoints import accepts_gzip
from ccs_exporter.web.server import MetricsServer, ServerLimits

USER, PASSWORD = "prometheus", "Scrape-Pw-9dK2"
FAST = ServerLimits(
    max_connections=32, header_timeout=1.0, idle_timeout=1.0, handshake_timeout=1.0, write_timeout=1.0
)


@pytest.fixture(scope="module")
def password_hash() -> str:
    """The bcrypt hash of PASSWORD (cost 4: fast, still bcrypt)."""
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI shared by the tests of this module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., MetricsServer]]:
    """Starts metrics servers on 127.0.0.1 with 1 s deadlines (an optional web config); stops them."""
    with metrics_servers(tmp_path) as servers:

        def start(
            web_config: str | None = None, *, limits: ServerLimits = FAST, **options: Any
        ) -> MetricsServer:
            return servers(web_config, limits=limits, **options)

        yield start


class _Reader:
    """Reads consecutive HTTP responses from one socket (pipelining needs one shared buffer)."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def close(self) -> None:
        """HTTPResponse closes its file after each body; the next response needs it open."""

    def response(self, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
        response = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        response.begin()
        return response, response.read()


def connect(server: MetricsServer, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` within ``within`` seconds (reads drain anything it sent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def get_body(server: MetricsServer, path: str = "/metrics", **headers: str) -> bytes:
    """The body of one GET on a new connection, as sent (not decompressed)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request(
        "GET", path, headers={name.replace("_", "-"): value for name, value in headers.items()}
    )
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 200, (response.status, body)
    return body


def broken_family() -> RenderedFamily:
    """A deflated family whose one member is no gzip member (inflating it fails)."""
    return RenderedFamily.of_deflated("ccs_up", "gauge", "Test family.", (b"not a gzip member",))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(
    server: MetricsServer, path: str = "/metrics", *, source: str = "127.0.0.1", **headers: str
) -> http.client.HTTPResponse:
    """One request on a new connection from ``source`` (a loopback address); the response, body read."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    connection.request(
        "GET", path, headers={name.replace("_", "-"): value for name, value in headers.items()}
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.integration
class TestHttp:
    """HTTP/1.x as scrapers and probes speak it, and what the server does with malformed requests."""

    def test_pipelined_requests_are_answered_in_order(self, serve: Callable[..., MetricsServer]) -> None:
        """Three requests sent in one write get three responses, in order, on the same connection."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(
                b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in ("/healthz", "/nope", "/"))
            )
            reader = _Reader(sock)
            statuses = [reader.response()[0].status for _ in range(3)]
        assert statuses == [200, 404, 200]

    def test_http10_closes_unless_asked_to_keep_alive(self, serve: Callable[..., MetricsServer]) -> None:
        """An HTTP/1.0 request is answered and closed; with Connection: keep-alive the connection stays."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            response, body = _Reader(sock).response()
            assert response.status == 200 and body == b"ok\n"
            assert closed_by_server(sock, 2)
        with connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            reader = _Reader(sock)
            assert reader.response()[0].getheader("Connection") == "keep-alive"
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert reader.response()[0].status == 200

    def test_head_has_the_length_and_no_body(self, serve: Callable[..., MetricsServer]) -> None:
        """HEAD /metrics answers the headers of GET, Content-Length included, and no body."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(b"HEAD /metrics HTTP/1.1\r\nAccept-Encoding: identity\r\n\r\n")
            sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            reader = _Reader(sock)
            head, body = reader.response("HEAD")
            follow_up, _ = reader.response()
        assert head.status == 200 and body == b""
        assert int(head.getheader("Content-Length", "0")) > len(SMALL.text())
        assert follow_up.status == 200  # no stray body bytes were taken for a response

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
    def test_other_methods_are_405(self, serve: Callable[..., MetricsServer], method: str) -> None:
        """Methods other than GET and HEAD get 405 with an Allow header."""
        server = serve()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request(method, "/metrics")
        response = connection.getresponse()
        assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"
        connection.close()

    @pytest.mark.parametrize(
        ("request_bytes", "status"),
        [
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
            (b"GET /metrics\r\n\r\n", 400),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
            (b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(150)) + b"\r\n", 431),
        ],
        ids=["tls-on-plain-port", "http09", "double-space", "http2-preface", "150-headers"],
    )
    def test_malformed_requests_are_refused_and_closed(
        self, serve: Callable[..., MetricsServer], request_bytes: bytes, status: int
    ) -> None:
        """A request that is not HTTP/1.x gets a 4xx/5xx status and the connection is closed."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(request_bytes)
            response, _ = _Reader(sock).response()
            assert response.status == status
            assert closed_by_server(sock, 2)

    def test_huge_head_is_431_without_reading_it_all(self, serve: Callable[..., MetricsServer]) -> None:
        """A header past the head limit (16 KiB) gets 431 and a closed connection, not a 1 MB buffer."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20_000)
            response, _ = _Reader(sock).response()
            assert response.status == 431
            assert closed_by_server(sock, 2)
            with pytest.raises(OSError):
                for _ in range(100):  # the server no longer reads: the writes fail or the buffers fill
                    sock.sendall(b"a" * 65536)

    def test_request_with_a_body_closes_after_the_answer(self, serve: Callable[..., MetricsServer]) -> None:
        """A body is never parsed as a request: the server answers, then closes."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nContent-Length: 28\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n")
            response, _ = _Reader(sock).response()
            assert response.status == 200 and response.getheader("Connection") == "close"
            assert closed_by_server(sock, 2)

    def test_half_closed_client_still_gets_its_answer(self, serve: Callable[..., MetricsServer]) -> None:
        """A client that sends its request and shuts its side down (printf | nc) is answered."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            response, body = _Reader(sock).response()
        assert response.status == 200 and body == b"ok\n"


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip", True),
        ("gzip, deflate", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("identity", False),
        ("", False),
        ("gzip;q=nonsense", False),
        ("gzip;q=2", False),
    ],
)
def test_accept_encoding_q_values(header: str, gzip: bool) -> None:
    """gzip is chosen only when Accept-Encoding admits it with a q-value above zero."""
    assert accepts_gzip(header) is gzip


@pytest.mark.integration
class TestMetricsEncoding:
    """/metrics content negotiation as caches and scrapers see it."""

    @pytest.mark.parametrize("encoding", ["gzip", "identity"])
    def test_vary_accept_encoding(self, serve: Callable[..., MetricsServer], encoding: str) -> None:
        """Plain and gzip /metrics both say they vary with Accept-Encoding (and Accept: the format)."""
        response = get(serve(), Accept_Encoding=encoding)
        assert response.status == 200 and response.getheader("Vary") == "Accept, Accept-Encoding"
        assert (response.getheader("Content-Encoding") == "gzip") is (encoding == "gzip")

    def test_gzip_with_q_zero_gets_plain_text(self, serve: Callable[..., MetricsServer]) -> None:
        """Accept-Encoding: gzip;q=0 refuses gzip, so the body comes plain."""
        server = serve()
        response = requests.get(f"{server.url}/metrics", headers={"Accept-Encoding": "gzip;q=0"}, timeout=5)
        assert "Content-Encoding" not in response.headers
        assert b"ccs_up 1" in response.content

    @pytest.mark.parametrize(
        "accept", ["", "application/openmetrics-text; version=1.0.0"], ids=["text", "openmetrics"]
    )
    def test_compressed_parts_are_served_whole(
        self, serve: Callable[..., MetricsServer], accept: str
    ) -> None:
        """Samples held as gzip members only (as the job families are) are served whole: plain, gzip
        (one valid stream), and HEAD with their length, on one kept-alive connection."""
        samples = [b'ccs_up{part="%d"} %d\n' % (n, n) for n in range(40)]
        samples.append(b'ccs_up{pad="' + b"x" * 300_000 + b'"} 2\n')  # past the socket buffers
        server = serve(exposition=deflated_exposition_of(*samples))
        expected = b"".join(samples)
        with connect(server) as sock:
            reader = _Reader(sock)
            for encoding in ("identity", "gzip", "identity"):
                for method in ("HEAD", "GET"):
                    sock.sendall(
                        f"{method} /metrics HTTP/1.1\r\nAccept: {accept}\r\n"
                        f"Accept-Encoding: {encoding}\r\n\r\n".encode()
                    )
                    response, body = reader.response(method)
                    assert response.status == 200
                    if method == "HEAD":
                        length = int(response.getheader("Content-Length", "-1"))
                        assert body == b""
                        continue
                    # GET's length is HEAD's but for the live lines (request counts move).
                    assert abs(len(body) - length) < 64 and length > (
                        len(expected) if encoding != "gzip" else 0
                    )
                    text = gzip.decompress(body) if encoding == "gzip" else body
                    assert (response.getheader("Content-Encoding") == "gzip") == (encoding == "gzip")
                    assert expected in text  # after the live lines, before OpenMetrics' # EOF
                    assert text.endswith(b"# EOF\n") == bool(accept)
        assert server.endpoints._store.plain_asks == 4  # type: ignore[attr-defined]

    def test_a_plain_selection_inflates_only_what_it_selects(
        self, serve: Callable[..., MetricsServer]
    ) -> None:
        """A plain scrape with name[] gets the families it selects without making the whole plain copy,
        and does not ask for plain copies at publish (only whole plain scrapes do)."""
        exposition = deflated_exposition_of(b"ccs_up 1\n", b'ccs_up{x="2"} 2\n')
        server = serve(exposition=exposition)
        plain = get_body(server, "/metrics?name[]=ccs_up", Accept_Encoding="identity")
        assert b'ccs_up 1\nccs_up{x="2"} 2\n' in plain
        assert b"ccs_up" not in get_body(server, "/metrics?name[]=ccs_nothing", Accept_Encoding="identity")
        assert not exposition.plain_ready
        assert server.endpoints._store.plain_asks == 0  # type: ignore[attr-defined]

    def test_gzip_scrapes_do_not_wait_for_a_plain_copy(
        self, serve: Callable[..., MetricsServer], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While a plain copy is being made (here: held up), gzip scrapes and probes are answered."""
        from ccs_exporter.exposition import formats

        release = threading.Event()
        real_inflate = formats.inflate

        def held_up(member: bytes) -> bytes:
            release.wait(10)
            return real_inflate(member)

        monkeypatch.setattr(formats, "inflate", held_up)
        server = serve(exposition=deflated_exposition_of(b"ccs_up 1\n"))
        plain: list[bytes] = []
        waiting = threading.Thread(target=lambda: plain.append(get_body(server, Accept_Encoding="identity")))
        waiting.start()
        try:
            time.sleep(0.2)  # the plain scrape is in the inflating thread
            started = time.monotonic()
            assert gzip.decompress(get_body(server, Accept_Encoding="gzip")).endswith(b"ccs_up 1\n")
            assert get(server, "/healthz").status == 200
            assert time.monotonic() - started < 3 and not plain
        finally:
            release.set()
            waiting.join(10)
        assert plain and plain[0].endswith(b"ccs_up 1\n")

    def test_a_plain_copy_that_cannot_be_made_is_a_500(self, serve: Callable[..., MetricsServer]) -> None:
        """A member that does not inflate fails the plain scrape with a 500 (every time), not the
        connection; gzip scrapes get the members as they are."""
        server = serve(exposition=Exposition((broken_family(),)))
        with connect(server) as sock:
            reader = _Reader(sock)
            for _ in range(2):
                sock.sendall(b"GET /metrics HTTP/1.1\r\nAccept-Encoding: identity\r\n\r\n")
                response, body = reader.response()
                assert response.status == 500 and b"could not be made" in body
            sock.sendall(b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n")
            assert reader.response()[0].status == 200


@pytest.mark.integration
class TestConnectionFloods:
    """Idle, slow and stalled connections cost a bounded number of sockets, no thread, and end on time."""

    def test_idle_flood_adds_no_thread_and_stays_under_the_limit(
        self, serve: Callable[..., MetricsServer]
    ) -> None:
        """200 idle connections, limit 32: no new thread, at most 32 open, and requests still answered."""
        server = serve(limits=ServerLimits(max_connections=32))
        threads_before = threading.active_count()
        idle = []
        try:
            for _ in range(200):
                idle.append(connect(server))
            time.sleep(0.3)
            assert threading.active_count() == threads_before
            assert server.open_connections <= 32
            assert get(server, "/healthz").status == 200
            assert all(closed_by_server(sock, 1) for sock in idle[:50])  # the quietest went first
        finally:
            for sock in idle:
                sock.close()

    def test_silent_connection_is_closed_at_the_header_deadline(
        self, serve: Callable[..., MetricsServer]
    ) -> None:
        """A connection that sends nothing is closed once the header deadline (1 s here) has passed."""
        server = serve()
        with connect(server) as sock:
            assert closed_by_server(sock, 4)

    def test_slowloris_is_closed_at_the_header_deadline(self, serve: Callable[..., MetricsServer]) -> None:
        """A client trickling one header byte every 0.2 s is closed although it keeps sending."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            started = time.monotonic()
            with pytest.raises(OSError):
                while time.monotonic() - started < 6:
                    sock.sendall(b"a")
                    if closed_by_server(sock, 0.2):
                        raise ConnectionResetError("closed by the server")
            assert time.monotonic() - started < 5

    def test_kept_alive_connection_is_closed_when_idle(self, serve: Callable[..., MetricsServer]) -> None:
        """After a response, a connection that asks nothing more is closed at the idle deadline."""
        server = serve()
        with connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert _Reader(sock).response()[0].status == 200
            assert closed_by_server(sock, 4)

    @pytest.mark.parametrize("held", [exposition_of, deflated_exposition_of], ids=["plain", "deflated"])
    def test_reader_that_never_reads_is_dropped(
        self, serve: Callable[..., MetricsServer], held: Callable[..., Any]
    ) -> None:
        """A client that asks for a large /metrics and reads nothing holds one piece, then is dropped."""
        big = held(*(b"x" * 400_000 + b"\n" for _ in range(20)))
        server = serve(exposition=big)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        try:
            stalled.sendall(b"GET /metrics HTTP/1.1\r\nAccept-Encoding: identity\r\n\r\n")
            time.sleep(0.3)
            assert server.open_connections == 1
            assert server.queued_response_bytes <= 64 * 1024  # the 8 MB stay in the shared parts
            assert get(server, "/healthz").status == 200  # served meanwhile
            deadline = time.monotonic() + 5
            while server.open_connections and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.open_connections == 0
        finally:
            stalled.close()

    def test_stalled_tls_handshake_is_closed(self, serve: Callable[..., MetricsServer], pki: Pki) -> None:
        """A client that starts a TLS handshake and stops is closed at the handshake deadline."""
        server = serve(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n")
        with connect(server) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            assert closed_by_server(sock, 4)
        assert requests.get(f"{server.url}/healthz", verify=str(pki.ca), timeout=5).status_code == 200


class _BcryptSpy:
    """Counts bcrypt checks and the most that ran at the same time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float = 0.0) -> None:
        self.calls = 0
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()
        self._real = bcrypt.checkpw
        self._seconds = seconds
        monkeypatch.setattr(bcrypt, "checkpw", self)

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self._seconds)
            return bool(self._real(password, hashed))
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.integration
class TestPasswordFloods:
    """Wrong passwords cost bcrypt only a few times per client, one check at a time; right ones stay fast."""

    @pytest.fixture
    def server(self, serve: Callable[..., MetricsServer], password_hash: str) -> MetricsServer:
        """A server with one basic-auth user; a client that failed 5 times waits 5 s (long enough to see)."""
        return serve(
            f"basic_auth_users:\n  {USER}: '{password_hash}'\n",
            limits=ServerLimits(failed_login_first_wait=5.0),
        )

    def test_a_failing_client_is_told_to_wait(
        self, server: MetricsServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a few failures a client gets 429 and Retry-After, no bcrypt; a cached login still works."""
        assert get(server, Authorization=basic(USER, PASSWORD)).status == 200
        spy = _BcryptSpy(monkeypatch)
        statuses = [get(server, Authorization=basic(USER, f"wrong-{n}")).status for n in range(6)]
        assert statuses == [401] * 6 and spy.calls == 6
        blocked = get(server, Authorization=basic(USER, "wrong-again"))
        assert blocked.status == 429 and int(blocked.getheader("Retry-After", "0")) >= 3
        assert get(server, Authorization=basic(USER, PASSWORD)).status == 200  # cached: not slowed
        assert get(server, source="127.0.0.2", Authorization=basic(USER, "other-client")).status == 401
        assert spy.calls == 7

    def test_a_repeated_wrong_password_costs_bcrypt_once(
        self, server: MetricsServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same wrong password sent again is refused from memory."""
        spy = _BcryptSpy(monkeypatch)
        statuses = [get(server, Authorization=basic(USER, "same-wrong")).status for _ in range(4)]
        assert statuses == [401] * 4 and spy.calls == 1

    def test_bcrypt_checks_never_overlap(
        self, server: MetricsServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Eight clients on eight addresses failing at once: bcrypt never runs twice at the same time."""
        spy = _BcryptSpy(monkeypatch, seconds=0.05)
        statuses: list[int] = []

        def client(source: str) -> None:
            for n in range(3):
                statuses.append(get(server, source=source, Authorization=basic(USER, f"{source}-{n}")).status)

        clients = [threading.Thread(target=client, args=(f"127.0.0.{n}",)) for n in range(2, 10)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(30)
        assert sorted(set(statuses)) == [401] and len(statuses) == 24
        assert spy.most == 1 and spy.calls == 24

    def test_checks_beyond_the_queue_are_refused_at_once(
        self, serve: Callable[..., MetricsServer], password_hash: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With two checks queued, further uncached logins get 429 instead of waiting for bcrypt."""
        server = serve(
            f"basic_auth_users:\n  {USER}: '{password_hash}'\n",
            limits=ServerLimits(max_queued_auth_checks=2),
        )
        spy = _BcryptSpy(monkeypatch, seconds=0.5)
        statuses: list[int] = []
        clients = [
            threading.Thread(
                target=lambda n=n: statuses.append(
                    get(server, source=f"127.0.0.{n}", Authorization=basic(USER, f"w{n}")).status
                )
            )
            for n in range(2, 8)
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(30)
        assert statuses.count(429) >= 3 and statuses.count(401) == spy.calls <= 3
