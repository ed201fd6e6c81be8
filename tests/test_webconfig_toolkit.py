"""exporter-toolkit web-config files as a drop-in: the whole schema loads, applied where Python's ssl can.

What the toolkit's ``web-config.yml`` allows loads here too; TLS versions, cipher suites, client SANs,
inline PEM, extra headers, the rate limiter and user changes take effect; HTTP/2, curve preferences and
``prefer_server_cipher_suites`` are reported as ignored. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import structlog
from web_helpers import CLIENT_DNS, CLIENT_IP, CLIENT_URI, Pki, make_pki, metrics_servers

from ccs_exporter.errors import ConfigError
from ccs_exporter.web.config import load_web_config
from ccs_exporter.web.config_watcher import WebConfigWatcher
from ccs_exporter.web.server import MetricsServer

USER, PASSWORD = "prometheus", "Scrape-Pw-9dK2"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI shared by the tests of this module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def password_hash() -> str:
    """The bcrypt hash of PASSWORD at cost 4, in htpasswd's $2y$ form."""
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., MetricsServer]]:
    """Starts metrics servers on 127.0.0.1 with the given web-config text; stops them after the test."""
    with metrics_servers(tmp_path) as servers:
        yield servers


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    """Writes a web-config text to a file in the test's directory and returns its path."""

    def write_file(text: str) -> Path:
        path = tmp_path / "web.yml"
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


def tls(pki: Pki, *lines: str) -> str:
    """A tls_server_config with the PKI's server certificate and the given extra lines."""
    extra = "".join(f"  {line}\n" for line in lines)
    return f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n{extra}"


def client_context(pki: Pki, *, certificate: bool = False, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if certificate:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    for name, version in versions.items():
        setattr(context, name, version)
    return context


def handshake(server: MetricsServer, context: ssl.SSLContext) -> tuple[str, str]:
    """TLS version and cipher of a connection that completed a GET /healthz; raises when refused."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
        if not answer.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"no answer: {answer[:40]!r}")
        version, cipher = sock.version(), sock.cipher()
        assert version is not None and cipher is not None
        return version, cipher[0]


TOOLKIT_EXAMPLE = """\
tls_server_config:
  cert_file: {cert}
  key_file: {key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {client_ca}
  client_allowed_sans: ["{dns}"]
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: true
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
rate_limit:
  interval: 1s
  burst: 10
basic_auth_users:
  {user}: '{hash}'
"""


class TestSchema:
    """Every key of the toolkit's schema loads; what is not applied is named."""

    def test_the_whole_schema_loads(self, pki: Pki, password_hash: str, write: Callable[[str], Path]) -> None:
        """A file using every toolkit key loads; the unapplied keys are listed as ignored, with reasons."""
        text = TOOLKIT_EXAMPLE.format(
            cert=pki.server_cert,
            key=pki.server_key,
            client_ca=pki.client_ca,
            dns=CLIENT_DNS,
            user=USER,
            hash=password_hash,
        )
        config = load_web_config(write(text))
        assert [key for key, _ in config.ignored_settings()] == [
            "http_server_config.http2",
            "tls_server_config.prefer_server_cipher_suites",
            "tls_server_config.curve_preferences",
        ]
        assert dict(config.response_headers) == {
            "X-Frame-Options": "deny",
            "X-Content-Type-Options": "nosniff",
            "Strict-Transport-Security": "max-age=31536000",
        }

    def test_ignored_settings_are_logged_once(
        self, pki: Pki, write: Callable[[str], Path], password_hash: str
    ) -> None:
        """Each ignored key is logged once at start, not again when the file is re-read."""
        path = write("http_server_config:\n  http2: true\nrate_limit:\n  interval: 100ms\n  burst: 1\n")
        now = [0.0]
        with structlog.testing.capture_logs() as logs:
            watcher = WebConfigWatcher(path, check_seconds=1, clock=lambda: now[0])
            path.write_text(path.read_text() + f"basic_auth_users:\n  {USER}: '{password_hash}'\n")
            now[0] = 5.0
            assert watcher.current().basic_auth is not None
        ignored = [entry["setting"] for entry in logs if entry["event"] == "web_config_setting_ignored"]
        assert ignored == ["http_server_config.http2"]

    @pytest.mark.parametrize(
        "text",
        ["http_server_config:\n  http2: false\n", "rate_limit:\n  interval: 0\n  burst: 0\n", "", "{}\n"],
    )
    def test_settings_that_ask_nothing_are_not_reported(
        self, text: str, write: Callable[[str], Path]
    ) -> None:
        """http2: false, a rate limit of interval 0 and an empty file ignore nothing."""
        assert load_web_config(write(text)).ignored_settings() == []

    def test_relative_paths_are_against_the_files_directory(
        self, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """cert_file: tls/server.pem is found next to the web config, whatever the working directory."""
        config_dir = tmp_path / "etc"
        (config_dir / "tls").mkdir(parents=True)
        for source in (pki.server_cert, pki.server_key, pki.client_ca):
            (config_dir / "tls" / source.name).write_bytes(source.read_bytes())
        path = config_dir / "web.yml"
        path.write_text(
            "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: tls/cca.pem\n",
            encoding="utf-8",
        )
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        tls_config = load_web_config(path).tls
        assert tls_config is not None
        assert tls_config.cert_file == config_dir / "tls" / "server.pem"
        assert tls_config.client_ca_file == config_dir / "tls" / "cca.pem"

    def test_a_tls_section_without_certificate_means_plain_http(self, write: Callable[[str], Path]) -> None:
        """As in the toolkit, tls_server_config with only versions is not TLS; it is reported as ignored."""
        config = load_web_config(write("tls_server_config:\n  min_version: TLS13\n"))
        assert config.tls is None and config.ssl_context() is None
        assert [key for key, _ in config.ignored_settings()] == ["tls_server_config"]

    def test_versions_and_ciphers_reach_the_context(self, pki: Pki, write: Callable[[str], Path]) -> None:
        """TLS10..TLS13 and Go cipher names become the context's version range and OpenSSL cipher list."""
        config = load_web_config(
            write(
                tls(
                    pki,
                    "min_version: TLS10",
                    "max_version: TLS12",
                    "cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_AES_256_GCM_SHA384]",
                )
            )
        )
        context = config.ssl_context()
        assert context is not None
        assert context.minimum_version == ssl.TLSVersion.TLSv1
        assert context.maximum_version == ssl.TLSVersion.TLSv1_2
        tls12 = [cipher["name"] for cipher in context.get_ciphers() if cipher["protocol"] != "TLSv1.3"]
        assert tls12 == ["ECDHE-RSA-AES256-GCM-SHA384"]

    @pytest.mark.parametrize(
        ("policy", "mode"),
        [
            ("RequireClientCert", ssl.CERT_REQUIRED),
            ("RequireAnyClientCert", ssl.CERT_REQUIRED),
            ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
            ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
            ("RequestClientCert", ssl.CERT_OPTIONAL),
        ],
    )
    def test_client_auth_policies(
        self, pki: Pki, write: Callable[[str], Path], policy: str, mode: ssl.VerifyMode
    ) -> None:
        """Each policy (the RequireClientCert alias too) with a client CA maps to a verifying mode."""
        config = load_web_config(
            write(tls(pki, f"client_auth_type: {policy}", f"client_ca_file: {pki.client_ca}"))
        )
        context = config.ssl_context()
        assert context is not None and context.verify_mode == mode


def _inline(path: Path, indent: int = 4) -> str:
    """A file's PEM text as a YAML block scalar."""
    return "|\n" + "".join(" " * indent + line + "\n" for line in path.read_text().splitlines())


class TestRules:
    """Files the toolkit refuses, or that could never work, stop the program with one line naming the key."""

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            (("client_ca_file: {client_ca}",), "without a client auth policy"),
            (
                ("client_auth_type: NoClientCert", "client_ca: {client_ca_inline}"),
                "without a client auth policy",
            ),
            (("cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]",), "unknown cipher 'TLS_RSA_WITH_RC4_128_SHA'"),
            (("cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]",), "tls_server_config.cipher_suites.0"),
            (("curve_preferences: [P-256]",), "tls_server_config.curve_preferences.0"),
            (("min_version: SSL3",), "tls_server_config.min_version"),
            (("client_auth_type: Maybe",), "tls_server_config.client_auth_type"),
            (("cert_flie: x",), "tls_server_config.cert_flie: unknown key"),
        ],
    )
    def test_tls_rules(
        self, pki: Pki, write: Callable[[str], Path], lines: tuple[str, ...], message: str
    ) -> None:
        """A TLS section the toolkit refuses, or that would refuse every client, is a ConfigError at start."""
        values = {
            "client_ca": pki.client_ca,
            "client_ca_inline": _inline(pki.client_ca),
            "cert_inline": _inline(pki.server_cert),
        }
        with pytest.raises(ConfigError, match=r"^web config .*: ") as caught:
            load_web_config(write(tls(pki, *(line.format(**values) for line in lines))))
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("tls_server_config:\n  key_file: web.yml\n", "missing one of cert or cert_file"),
            (
                "http_server_config:\n  headers:\n    X-Powered-By: me\n",
                "'X-Powered-By' cannot be configured",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "must be one of deny, sameorigin",
            ),
            (
                'http_server_config:\n  headers:\n    X-XSS-Protection: "1\\r\\nSet-Cookie: a"\n',
                "control character",
            ),
            ("http_server_config:\n  http3: true\n", "http_server_config.http3: unknown key"),
            ("rate_limit:\n  interval: fast\n", "Go duration"),
            ("rate_limit:\n  interval: 1s\n  burst: -1\n", "rate_limit.burst"),
            ("basic_auth_users:\n  alice: $2y$10$garbage\n", "basic_auth_users.alice: not a bcrypt hash"),
            ("- a list\n", "must be a mapping"),
            ("# comment\n\nbasic_auth_users:\n  bob: x\n  eve: $2y$99$x\n", "line 4: basic_auth_users.bob"),
            (
                "tls_server_config:\n  min_version: TLS12\n\n  nonsense_key: 1\n",
                "line 4: tls_server_config.nonsense_key",
            ),
        ],
    )
    def test_file_rules(self, write: Callable[[str], Path], text: str, message: str) -> None:
        """Headers, users, the rate limiter and the file's shape are checked, with the line when known."""
        with pytest.raises(ConfigError) as caught:
            load_web_config(write(text))
        assert message in str(caught.value)

    def test_inline_key_never_appears_in_errors(self, pki: Pki, write: Callable[[str], Path]) -> None:
        """A key given inline is not echoed when the file is refused, whatever is wrong with it."""
        key = "-----BEGIN PRIVATE KEY-----\nS3CRETKEYMATERIALS3CRET\n-----END PRIVATE KEY-----"
        text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key: {_inline_text(key)}"
        with pytest.raises(ConfigError) as caught:
            load_web_config(write(text))
        assert "S3CRET" not in str(caught.value) and "cannot load" in str(caught.value)
        with pytest.raises(ConfigError) as caught:
            load_web_config(write(text + "  bogus: 1\n"))
        assert "S3CRET" not in str(caught.value)

    def test_a_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        """A web config in another encoding is one line, not a traceback."""
        path = tmp_path / "web.yml"
        path.write_bytes(b"basic_auth_users:\n  j\xe9r\xf4me: x\n")
        with pytest.raises(ConfigError, match=r"^web config file .*: cannot read it"):
            load_web_config(path)


def _inline_text(text: str) -> str:
    return "|\n" + "".join(f"    {line}\n" for line in text.splitlines())


@pytest.mark.integration
class TestTlsOnTheWire:
    """What the settings do to real handshakes on 127.0.0.1."""

    def test_inline_certificate_key_and_client_ca(
        self, pki: Pki, serve: Callable[..., MetricsServer]
    ) -> None:
        """cert, key and client_ca given as PEM text serve TLS and check client certificates."""
        server = serve(
            f"tls_server_config:\n  cert: {_inline(pki.server_cert)}  key: {_inline(pki.server_key)}"
            f"  client_ca: {_inline(pki.client_ca)}  client_auth_type: RequireAndVerifyClientCert\n"
        )
        assert handshake(server, client_context(pki, certificate=True))[0].startswith("TLS")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(server, client_context(pki))

    def test_max_version_tls12(self, pki: Pki, serve: Callable[..., MetricsServer]) -> None:
        """max_version: TLS12 negotiates TLS 1.2 with a client that could do 1.3."""
        server = serve(tls(pki, "max_version: TLS12"))
        assert handshake(server, client_context(pki))[0] == "TLSv1.2"

    def test_min_version_tls13(self, pki: Pki, serve: Callable[..., MetricsServer]) -> None:
        """min_version: TLS13 refuses a TLS 1.2-only client."""
        server = serve(tls(pki, "min_version: TLS13"))
        assert handshake(server, client_context(pki))[0] == "TLSv1.3"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(server, client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2))

    def test_cipher_suites(self, pki: Pki, serve: Callable[..., MetricsServer]) -> None:
        """cipher_suites picks the TLS 1.2 cipher; a client without it is refused."""
        server = serve(
            tls(pki, "max_version: TLS12", "cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]")
        )
        assert handshake(server, client_context(pki)) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
        other = client_context(pki)
        other.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(server, other)

    @pytest.mark.parametrize(
        ("allowed", "admitted"),
        [
            (CLIENT_DNS, True),
            (CLIENT_URI, True),
            (CLIENT_IP, True),
            ("2001:0db8:0000::0005", True),
            ("grafana.monitoring.svc", False),
            ("prometheus", False),  # the subject's common name is not a SAN
        ],
    )
    def test_client_allowed_sans(
        self, pki: Pki, serve: Callable[..., MetricsServer], allowed: str, admitted: bool
    ) -> None:
        """A verified client certificate is admitted only when one of its SANs is listed."""
        server = serve(
            tls(
                pki,
                "client_auth_type: RequireAndVerifyClientCert",
                f"client_ca_file: {pki.client_ca}",
                f'client_allowed_sans: ["{allowed}"]',
            )
        )
        if admitted:
            assert handshake(server, client_context(pki, certificate=True))
        else:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                handshake(server, client_context(pki, certificate=True))

    def test_request_client_cert_without_ca_admits_anyone(
        self, pki: Pki, serve: Callable[..., MetricsServer]
    ) -> None:
        """RequestClientCert without a CA checks nothing: a client without a certificate is served."""
        server = serve(tls(pki, "client_auth_type: RequestClientCert"))
        assert handshake(server, client_context(pki))

    def test_headers_on_every_response(
        self, pki: Pki, password_hash: str, serve: Callable[..., MetricsServer]
    ) -> None:
        """http_server_config.headers are sent on /metrics, on 401 and on the probes."""
        server = serve(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
            "    X-Content-Type-Options: nosniff\n"
            f"basic_auth_users:\n  {USER}: '{password_hash}'\n"
        )
        answers = [
            requests.get(f"{server.url}/metrics", auth=(USER, PASSWORD), timeout=5),
            requests.get(f"{server.url}/metrics", timeout=5),
            requests.get(f"{server.url}/healthz", timeout=5),
        ]
        assert [answer.status_code for answer in answers] == [200, 401, 200]
        for answer in answers:
            assert answer.headers["X-Frame-Options"] == "deny"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _status(server: MetricsServer, user: str, password: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/metrics", headers=_basic(user, password))
    status = connection.getresponse().status
    connection.close()
    return status


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.integration
class TestUsersWithoutRestart:
    """basic_auth_users edits apply to the running server."""

    def test_added_and_removed_users(
        self, password_hash: str, serve: Callable[..., MetricsServer], tmp_path: Path
    ) -> None:
        """A new user can log in and a removed one cannot, a few seconds after the file changed."""
        server = serve(f"basic_auth_users:\n  {USER}: '{password_hash}'\n")
        assert _status(server, USER, PASSWORD) == 200
        grafana_hash = bcrypt.hashpw(b"Other-Pw-1", bcrypt.gensalt(rounds=4)).decode()
        (tmp_path / "web.yml").write_text(
            f"basic_auth_users:\n  grafana: '{grafana_hash}'\n", encoding="utf-8"
        )
        assert _until(lambda: _status(server, "grafana", "Other-Pw-1") == 200)
        assert _status(server, USER, PASSWORD) == 401  # its cached success went with it

    def test_a_broken_edit_keeps_the_last_good_users(
        self, password_hash: str, serve: Callable[..., MetricsServer], tmp_path: Path
    ) -> None:
        """An edit with a malformed hash is logged and the users in force stay."""
        server = serve(f"basic_auth_users:\n  {USER}: '{password_hash}'\n")
        with structlog.testing.capture_logs() as logs:
            (tmp_path / "web.yml").write_text(
                "basic_auth_users:\n  grafana: $2y$10$garbage\n", encoding="utf-8"
            )
            assert _until(lambda: any(entry["event"] == "web_config_reload_failed" for entry in logs))
        assert _status(server, USER, PASSWORD) == 200
        assert _status(server, "grafana", "anything") == 401
        failure = next(entry for entry in logs if entry["event"] == "web_config_reload_failed")
        assert "basic_auth_users.grafana" in failure["error"] and "garbage" not in failure["error"]

    def test_switching_tls_on_needs_a_restart(
        self, pki: Pki, serve: Callable[..., MetricsServer], tmp_path: Path
    ) -> None:
        """Adding a certificate to a plain-HTTP server's file is refused and logged; HTTP keeps working."""
        server = serve("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
        with structlog.testing.capture_logs() as logs:
            (tmp_path / "web.yml").write_text(tls(pki), encoding="utf-8")
            assert _until(lambda: any(entry["event"] == "web_config_reload_failed" for entry in logs))
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert server.scheme == "http"


def test_secrets_stay_out_of_loaded_state(pki: Pki, write: Callable[[str], Path]) -> None:
    """The inline key is held as a secret: printing the config does not show it."""
    key_text = pki.server_key.read_text()
    config = load_web_config(
        write(f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key: {_inline(pki.server_key)}")
    )
    assert key_text.splitlines()[1] not in repr(config) and key_text.splitlines()[1] not in str(config)
