"""Conformance with exporter-toolkit's web config, case by case from its documented behaviour.

Written from the toolkit's docs/web-configuration.md and the meaning of Go's crypto/tls client auth types
(NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert):
which files load, which are refused, what a client with no certificate, a self-signed one or one the
client CA signed gets in a real TLS handshake, the server-wide rate limiter (429), header values of any
YAML scalar type, and bcrypt costs up to 31 with at most one check per distinct credential. The README's
table (docs/web-config.md) is written from these results. Servers listen on 127.0.0.1 (port 0).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from web_helpers import Pki, make_pki, metrics_servers

from ccs_exporter.errors import ConfigError
from ccs_exporter.web.config import load_web_config
from ccs_exporter.web.config_watcher import WebConfigWatcher
from ccs_exporter.web.server import MetricsServer

pytestmark = pytest.mark.integration

USER, PASSWORD = "prometheus", "Conformance-Pw-4"
# A syntactically valid bcrypt hash at cost 31 (checking a password against it would take days).
COST_31_HASH = "$2y$31$" + "X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A client certificate that signs itself (no CA knows it), with a DNS SAN."""
    directory = tmp_path_factory.mktemp("self")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("stranger.example")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "self.pem", directory / "self.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key_file


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., MetricsServer]]:
    with metrics_servers(tmp_path) as servers:
        yield servers


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def write_file(text: str) -> Path:
        path = tmp_path / "web.yml"
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


def tls(pki: Pki, *lines: str) -> str:
    extra = "".join(f"  {line}\n" for line in lines)
    return f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n{extra}"


def admitted(server: MetricsServer, pki: Pki, certificate: tuple[Path, Path] | None) -> bool:
    """True when a GET /healthz over TLS with ``certificate`` (or none) is answered 200."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if certificate is not None:
        context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    try:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(4096).startswith(b"HTTP/1.1 200")
    except (ssl.SSLError, ConnectionError, TimeoutError):
        return False


# Go's crypto/tls, per policy and client CA: (no certificate, self-signed, signed by the client CA).
HANDSHAKES = [
    ("NoClientCert", False, (True, True, True)),
    ("RequestClientCert", False, (True, True, True)),
    ("RequestClientCert", True, (True, True, True)),
    ("RequireAnyClientCert", False, (False, True, True)),
    ("RequireAnyClientCert", True, (False, True, True)),
    ("RequireClientCert", False, (False, True, True)),
    ("VerifyClientCertIfGiven", False, (True, False, False)),
    ("VerifyClientCertIfGiven", True, (True, False, True)),
    ("RequireAndVerifyClientCert", False, (False, False, False)),
    ("RequireAndVerifyClientCert", True, (False, False, True)),
]


class TestClientAuthHandshakes:
    """Real TLS handshakes: each client_auth_type admits the clients Go's crypto/tls admits."""

    @pytest.mark.parametrize(
        ("policy", "with_ca", "expected"),
        HANDSHAKES,
        ids=[f"{policy}-{'ca' if ca else 'no-ca'}" for policy, ca, _ in HANDSHAKES],
    )
    def test_policy_admits_what_go_admits(
        self,
        pki: Pki,
        self_signed: tuple[Path, Path],
        serve: Callable[..., MetricsServer],
        policy: str,
        with_ca: bool,
        expected: tuple[bool, bool, bool],
    ) -> None:
        """No certificate, a self-signed one, one the client CA signed: admitted exactly as in Go."""
        lines = [f"client_auth_type: {policy}"] + ([f"client_ca_file: {pki.client_ca}"] if with_ca else [])
        server = serve(tls(pki, *lines))
        seen = tuple(
            admitted(server, pki, certificate)
            for certificate in (None, self_signed, (pki.client_cert, pki.client_key))
        )
        assert seen == expected

    def test_unverified_certificate_still_meets_allowed_sans(
        self, pki: Pki, self_signed: tuple[Path, Path], serve: Callable[..., MetricsServer]
    ) -> None:
        """RequireAnyClientCert with client_allowed_sans checks the SANs of the certificate sent."""
        server = serve(
            tls(pki, "client_auth_type: RequireAnyClientCert", "client_allowed_sans: [stranger.example]")
        )
        assert admitted(server, pki, self_signed)
        assert not admitted(server, pki, (pki.client_cert, pki.client_key))

    @pytest.mark.parametrize("policy", ["RequestClientCert", "RequireAnyClientCert"])
    def test_unverified_policies_are_warned_about(
        self, pki: Pki, write: Callable[[str], Path], policy: str
    ) -> None:
        """A policy that checks no certificate loads with one warning saying it authenticates no one."""
        with structlog.testing.capture_logs() as logs:
            WebConfigWatcher(write(tls(pki, f"client_auth_type: {policy}")))
        warned = [entry for entry in logs if entry["event"] == "web_config_setting_warning"]
        assert [entry["setting"] for entry in warned] == ["tls_server_config.client_auth_type"]
        assert "authenticates no one" in warned[0]["reason"]

    def test_verify_without_ca_uses_the_system_trust_store(
        self, pki: Pki, write: Callable[[str], Path]
    ) -> None:
        """VerifyClientCertIfGiven without a client CA loads, with a warning naming the system store."""
        with structlog.testing.capture_logs() as logs:
            WebConfigWatcher(write(tls(pki, "client_auth_type: VerifyClientCertIfGiven")))
        reasons = [entry["reason"] for entry in logs if entry["event"] == "web_config_setting_warning"]
        assert any("system's trust store" in reason for reason in reasons)


class TestFilesTheToolkitRefuses:
    """What the toolkit refuses is refused here too: one line naming the key."""

    @pytest.mark.parametrize(
        ("lines", "words"),
        [
            (["client_ca_file: {ca}"], "without a client auth policy"),
            (["client_auth_type: NoClientCert", "client_ca_file: {ca}"], "without a client auth policy"),
            (["client_auth_type: RequireSomeCert"], "tls_server_config.client_auth_type"),
            (["cipher_suites: [TLS_INVENTED_CIPHER]"], "unknown cipher"),
            (["curve_preferences: [CurveInvented]"], "curve_preferences"),
            (["min_version: TLS111"], "min_version"),
            (
                ["client_ca_file: /nonexistent/ca.pem", "client_auth_type: VerifyClientCertIfGiven"],
                "client_ca_file",
            ),
        ],
    )
    def test_bad_tls_section(
        self, pki: Pki, write: Callable[[str], Path], lines: list[str], words: str
    ) -> None:
        with pytest.raises(ConfigError) as caught:
            load_web_config(write(tls(pki, *(line.format(ca=pki.client_ca) for line in lines))))
        assert words in str(caught.value) and "\n" not in str(caught.value)

    @pytest.mark.parametrize(
        ("text", "words"),
        [
            (
                "tls_server_config:\n  cert_file: ''\n  key_file: web.yml\n",
                "missing one of cert or cert_file",
            ),
            (
                "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
                "X-Content-Type-Options",
            ),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allowall\n", "X-Frame-Options"),
            ("http_server_config:\n  headers:\n    Server: mine\n", "cannot be configured"),
            ("basic_auth_users:\n  john: doe\n", "not a bcrypt hash"),
            ("basic_auth_users:\n  john: '$2y$32$" + "a" * 53 + "'\n", "bcrypt cost 32"),
            ("some_key: 1\n", "unknown key"),
            ("[junk\n", "not valid YAML"),
        ],
    )
    def test_bad_file(self, write: Callable[[str], Path], text: str, words: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_web_config(write(text))
        assert words in str(caught.value) and "\n" not in str(caught.value)


class TestHeaderValues:
    """Header values may be any YAML scalar: the text as written is sent (Go's yaml reads it so)."""

    @pytest.mark.parametrize(
        ("written", "sent"),
        [
            ("1", "1"),
            ("0", "0"),
            ("1; mode=block", "1; mode=block"),
            ("1.50", "1.50"),
            ("0x10", "0x10"),
            ("true", "true"),
            ("yes", "yes"),
            ("'1'", "1"),
        ],
    )
    def test_scalar_header_value_is_sent_as_written(
        self, serve: Callable[..., MetricsServer], written: str, sent: str
    ) -> None:
        server = serve(f"http_server_config:\n  headers:\n    X-XSS-Protection: {written}\n")
        response = requests.get(f"{server.url}/metrics", timeout=5)
        assert response.headers["X-XSS-Protection"] == sent

    @pytest.mark.parametrize("written", ["", "~", "null", "''"])
    def test_blank_header_is_unset(self, serve: Callable[..., MetricsServer], written: str) -> None:
        server = serve(f"http_server_config:\n  headers:\n    Content-Security-Policy: {written}\n")
        assert "Content-Security-Policy" not in requests.get(f"{server.url}/metrics", timeout=5).headers


class TestRateLimit:
    """rate_limit: one token bucket for the whole server, 429 when empty (probes stay open)."""

    def test_burst_then_429(self, serve: Callable[..., MetricsServer]) -> None:
        """burst 3 at one request a minute: three scrapes, then 429 with Retry-After; probes still answer."""
        server = serve("rate_limit:\n  interval: 1m\n  burst: 3\n")
        codes = [requests.get(f"{server.url}/metrics", timeout=5).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        refused = requests.get(f"{server.url}/", timeout=5)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200

    def test_the_bucket_is_shared_by_every_client(self, serve: Callable[..., MetricsServer]) -> None:
        """A new connection from another address gets no fresh bucket."""
        server = serve("rate_limit:\n  interval: 1m\n  burst: 1\n")
        assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 200
        other = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=5, source_address=("127.0.0.2", 0)
        )
        try:
            other.request("GET", "/metrics")
            assert other.getresponse().status == 429
        finally:
            other.close()

    def test_tokens_come_back_each_interval(self, serve: Callable[..., MetricsServer]) -> None:
        server = serve("rate_limit:\n  interval: 200ms\n  burst: 1\n")
        assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 200
        threading.Event().wait(0.5)
        assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 200

    def test_burst_0_refuses_everything_with_a_warning(self, serve: Callable[..., MetricsServer]) -> None:
        """As in the toolkit (Go's limiter with burst 0): every request 429, and the file says so at start."""
        with structlog.testing.capture_logs() as logs:
            server = serve("rate_limit:\n  interval: 1s\n  burst: 0\n")
        assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 429
        assert any(entry.get("setting") == "rate_limit.burst" for entry in logs)

    @pytest.mark.parametrize("text", ["rate_limit:\n  interval: 0\n  burst: 0\n", "rate_limit: {}\n", ""])
    def test_interval_0_is_off(self, serve: Callable[..., MetricsServer], text: str) -> None:
        server = serve(text or None)
        assert {requests.get(f"{server.url}/metrics", timeout=5).status_code for _ in range(20)} == {200}


class TestBcryptCosts:
    """Any cost bcrypt has (4 to 31) loads; a slow one is warned about; one check per distinct credential."""

    @pytest.mark.parametrize("cost", [4, 10, 14, 15, 20, 31])
    def test_cost_loads(self, write: Callable[[str], Path], cost: int) -> None:
        hashed = f"$2y${cost:02d}$" + COST_31_HASH[7:]
        with structlog.testing.capture_logs() as logs:
            WebConfigWatcher(write(f"basic_auth_users:\n  {USER}: '{hashed}'\n"))
        warned = [entry["reason"] for entry in logs if entry.get("setting") == "basic_auth_users"]
        assert bool(warned) == (cost > 14)

    def test_a_cost_31_user_does_not_stop_the_server(self, serve: Callable[..., MetricsServer]) -> None:
        """Probes and refusals of unknown credentials stay answered while a days-long check could run."""
        server = serve(f"basic_auth_users:\n  {USER}: '{COST_31_HASH}'\n")
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 401  # no credentials

    def test_one_check_per_distinct_credential(
        self, serve: Callable[..., MetricsServer], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Twelve concurrent scrapes with the same new password cost one bcrypt check, not twelve."""
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode()
        checks: list[bytes] = []
        real = bcrypt.checkpw

        def counting(password: bytes, hashed_password: bytes) -> bool:
            checks.append(password)
            return real(password, hashed_password)

        monkeypatch.setattr(bcrypt, "checkpw", counting)
        server = serve(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        codes: list[int] = []

        def scrape() -> None:
            response = requests.get(
                f"{server.url}/metrics", headers={"Authorization": f"Basic {token}"}, timeout=60
            )
            codes.append(response.status_code)

        threads = [threading.Thread(target=scrape) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert codes == [200] * 12
        assert len(checks) == 1


class TestStricterIsAWarning:
    """What the toolkit loads but cannot work as meant loads here too, with a warning naming the key."""

    @pytest.mark.parametrize(
        ("lines", "setting", "handshake"),
        [
            (["cert: {cert_inline}"], "tls_server_config.cert", True),
            (["min_version: TLS13", "max_version: TLS12"], "tls_server_config.min_version", False),
            (
                ["client_auth_type: RequireAnyClientCert", "client_allowed_sans: []"],
                "tls_server_config.client_allowed_sans",
                False,
            ),
        ],
    )
    def test_loads_with_a_warning(
        self,
        pki: Pki,
        serve: Callable[..., MetricsServer],
        lines: list[str],
        setting: str,
        handshake: bool,
    ) -> None:
        """The file loads, one warning names the key, and clients get what the toolkit would give them."""
        inline = "|\n" + "".join("    " + line + "\n" for line in pki.server_cert.read_text().splitlines())
        with structlog.testing.capture_logs() as logs:
            server = serve(tls(pki, *(line.format(cert_inline=inline) for line in lines)))
        assert setting in [
            entry.get("setting") for entry in logs if entry["event"] == "web_config_setting_warning"
        ]
        assert admitted(server, pki, (pki.client_cert, pki.client_key)) is handshake

    def test_user_name_with_colon_loads_and_never_logs_in(
        self, write: Callable[[str], Path], serve: Callable[..., MetricsServer]
    ) -> None:
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
        with structlog.testing.capture_logs() as logs:
            server = serve(f"basic_auth_users:\n  'a:b': '{hashed}'\n")
        assert "basic_auth_users.a:b" in [entry.get("setting") for entry in logs]
        assert requests.get(f"{server.url}/metrics", auth=("a:b", "pw"), timeout=5).status_code == 401
