"""Protecting /metrics with a web-config file: TLS, client certificates, basic auth, and bad files refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import structlog
from web_helpers import Pki, make_pki

from ccs_exporter.exporter import Exporter
from ccs_exporter.settings.config import load_settings
from ccs_exporter.simulator import Simulator
from ccs_exporter.web.config_watcher import WebConfigWatcher

USER, PASSWORD = "prometheus", "Scrape-Pw-9dK2"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI shared by the tests of this module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def password_hash() -> str:
    """The bcrypt hash of PASSWORD (cost 4: fast, still bcrypt)."""
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def sim(started_for_module: Callable[..., Simulator]) -> Simulator:
    """A CCS simulator for the exporters of this module."""
    started_simulator: Simulator = started_for_module(run_interval=None)
    return started_simulator


@pytest.fixture
def exporter_with(sim: Simulator, tmp_path: Path) -> Iterator[Callable[[str], Exporter]]:
    """Starts an exporter protected by the given web-config text; stopped after the test."""
    started: list[Exporter] = []

    def start(web_config: str) -> Exporter:
        path = tmp_path / "web.yml"
        path.write_text(web_config, encoding="utf-8")
        settings = load_settings(
            None,
            {
                "url": sim.url,
                "username": sim.username,
                "password": sim.password,
                "job_ids": sim.job_ids[:2],
                "listen_address": "127.0.0.1:0",
                "poll_interval_seconds": 30,
                "web_config_file": str(path),
            },
        )
        exporter = Exporter(settings).start()
        started.append(exporter)
        assert exporter.wait_ready(10)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def tls_config(pki: Pki, **extra: str) -> str:
    lines = [f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"]
    lines += [f"  {key}: {value}\n" for key, value in extra.items()]
    return "".join(lines)


@pytest.mark.integration
class TestTls:
    """The exporter's endpoints over TLS."""

    def test_scrape_verified_against_the_ca(self, pki: Pki, exporter_with: Callable[[str], Exporter]) -> None:
        """With a certificate configured the exporter speaks HTTPS that verifies against its CA."""
        exporter = exporter_with(tls_config(pki))
        assert exporter.url.startswith("https://127.0.0.1:")
        response = requests.get(f"{exporter.url}/metrics", verify=str(pki.ca), timeout=5)
        assert response.status_code == 200 and "ccs_up 1.0" in response.text

    def test_plain_http_gets_no_metrics(self, pki: Pki, exporter_with: Callable[[str], Exporter]) -> None:
        """A plain-HTTP request to the TLS port does not get the exposition."""
        exporter = exporter_with(tls_config(pki))
        plain = exporter.url.replace("https://", "http://")
        try:
            response = requests.get(f"{plain}/metrics", timeout=5)
        except requests.RequestException:
            return
        assert "ccs_up" not in response.text

    def test_idle_tls_client_does_not_block_scrapes(
        self, pki: Pki, exporter_with: Callable[[str], Exporter]
    ) -> None:
        """Connections that never finish their handshake do not hold up other scrapes."""
        exporter = exporter_with(tls_config(pki))
        idle = [socket.create_connection(("127.0.0.1", exporter.server.port)) for _ in range(5)]
        try:
            idle[0].sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
            started = time.monotonic()
            response = requests.get(f"{exporter.url}/metrics", verify=str(pki.ca), timeout=5)
            assert response.status_code == 200
            assert time.monotonic() - started < 2
        finally:
            for connection in idle:
                connection.close()


@pytest.mark.integration
class TestClientCertificates:
    """RequireAndVerifyClientCert admits only clients with a certificate from the client CA."""

    @pytest.fixture
    def exporter(self, pki: Pki, exporter_with: Callable[[str], Exporter]) -> Exporter:
        """An exporter that requires client certificates from the client CA."""
        return exporter_with(
            tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.client_ca))
        )

    def test_with_a_client_certificate(self, pki: Pki, exporter: Exporter) -> None:
        """A client presenting a certificate signed by the client CA is served."""
        response = requests.get(
            f"{exporter.url}/metrics",
            verify=str(pki.ca),
            cert=(str(pki.client_cert), str(pki.client_key)),
            timeout=5,
        )
        assert response.status_code == 200

    def test_without_a_client_certificate(self, pki: Pki, exporter: Exporter) -> None:
        """A client without a certificate is refused during the handshake."""
        with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is a ConnectionError
            requests.get(f"{exporter.url}/metrics", verify=str(pki.ca), timeout=5)

    def test_with_a_certificate_from_another_ca(self, pki: Pki, exporter: Exporter) -> None:
        """A certificate the client CA did not sign is refused (the server's own does not pass)."""
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(
                f"{exporter.url}/metrics",
                verify=str(pki.ca),
                cert=(str(pki.server_cert), str(pki.server_key)),
                timeout=5,
            )


@pytest.mark.integration
class TestBasicAuth:
    """basic_auth_users with bcrypt hashes guard every endpoint."""

    @pytest.fixture
    def exporter(self, pki: Pki, password_hash: str, exporter_with: Callable[[str], Exporter]) -> Exporter:
        """An exporter over TLS with one basic-auth user."""
        return exporter_with(tls_config(pki) + f"basic_auth_users:\n  {USER}: '{password_hash}'\n")

    def get(self, pki: Pki, exporter: Exporter, path: str = "/metrics", **options: Any) -> requests.Response:
        return requests.get(f"{exporter.url}{path}", verify=str(pki.ca), timeout=5, **options)

    def test_right_password(self, pki: Pki, exporter: Exporter) -> None:
        """The right user and password get the metrics, again and again."""
        for _ in range(3):
            response = self.get(pki, exporter, auth=(USER, PASSWORD))
            assert response.status_code == 200 and "ccs_up" in response.text

    @pytest.mark.parametrize(
        "auth", [(USER, "wrong"), ("someone", PASSWORD), (USER, ""), (USER, PASSWORD + "x")]
    )
    def test_wrong_credentials(self, pki: Pki, exporter: Exporter, auth: tuple[str, str]) -> None:
        """A wrong password or user gets 401 and no metrics."""
        response = self.get(pki, exporter, auth=auth)
        assert response.status_code == 401 and "ccs_up" not in response.text

    @pytest.mark.parametrize("path", ["/metrics", "/"])
    def test_no_credentials(self, pki: Pki, exporter: Exporter, path: str) -> None:
        """Without credentials /metrics and the landing page answer 401 with a Basic challenge."""
        response = self.get(pki, exporter, path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")

    @pytest.mark.parametrize("path", ["/healthz", "/readyz"])
    def test_probes_stay_open(self, pki: Pki, exporter: Exporter, path: str) -> None:
        """Kubernetes probes carry no credentials: the health endpoints answer, and reveal no metrics."""
        response = self.get(pki, exporter, path)
        assert response.status_code == 200 and "ccs_" not in response.text

    @pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!notbase64", "Basic " + "QQ==", "Basic"])
    def test_malformed_authorization(self, pki: Pki, exporter: Exporter, header: str) -> None:
        """A malformed Authorization header is a 401, not a server error."""
        response = self.get(pki, exporter, headers={"Authorization": header})
        assert response.status_code == 401


@pytest.mark.integration
class TestBadWebConfig:
    """`serve --web-config-file` with a bad file exits 2 with one line naming the key, sending nothing."""

    @pytest.fixture
    def run_serve(self, sim: Simulator, tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
        """Runs `python -m ccs_exporter serve` with the given web-config text; returns the finished run."""

        def run(web_config: str) -> subprocess.CompletedProcess[str]:
            path = tmp_path / "web.yml"
            path.write_text(web_config, encoding="utf-8")
            env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
            env.update(
                CCS_EXPORTER_URL=sim.url,
                CCS_EXPORTER_USERNAME=sim.username,
                CCS_EXPORTER_PASSWORD=sim.password,
                CCS_EXPORTER_JOB_IDS=sim.job_ids[0],
            )
            argv = ["serve", "--listen-address", "127.0.0.1:0", "--web-config-file", str(path)]
            return subprocess.run(
                [sys.executable, "-m", "ccs_exporter", *argv],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        return run

    @pytest.mark.parametrize(
        ("text", "named"),
        [
            ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cert_flie: x\n", "cert_flie"),
            ("basic_auth_user:\n  prometheus: x\n", "basic_auth_user"),
            ("basic_auth_users:\n  prometheus: plain-text-password\n", "basic_auth_users"),
            ("tls_server_config:\n  cert_file: /nonexistent/tls.crt\n  key_file: {key}\n", "cert_file"),
            ("tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n", "tls_server_config"),
            (
                "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: Maybe\n",
                "client_auth_type",
            ),
            ("tls_server_config: [unclosed\n", "not valid YAML at line 2"),
            ("basic_auth_users:\n  alice: $2y$10$garbage\n", "basic_auth_users.alice"),
            ("basic_auth_users:\n  alice: $2y$99$x\n", "basic_auth_users.alice: bcrypt cost 99"),
        ],
        ids=[
            "unknown-tls-key",
            "unknown-top-key",
            "not-bcrypt",
            "missing-cert",
            "key-not-a-key",
            "bad-client-auth",
            "not-yaml",
            "malformed-hash",
            "cost-99",
        ],
    )
    def test_refused_with_one_line(
        self,
        sim: Simulator,
        pki: Pki,
        run_serve: Callable[[str], subprocess.CompletedProcess[str]],
        text: str,
        named: str,
    ) -> None:
        """The process exits 2 with one stderr line naming the offending key; CCS sees no request."""
        before = sim.request_count()
        result = run_serve(text.format(cert=pki.server_cert, key=pki.server_key))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("ccs-exporter: configuration error: ")
        assert named in lines[0]
        assert "garbage" not in lines[0] and "aaaa" not in lines[0]  # a hash is never echoed
        assert sim.request_count() == before

    def test_missing_web_config_file(self, sim: Simulator, tmp_path: Path) -> None:
        """A web-config path that does not exist is refused, naming the setting."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
        env.update(
            CCS_EXPORTER_URL=sim.url,
            CCS_EXPORTER_USERNAME=sim.username,
            CCS_EXPORTER_PASSWORD=sim.password,
            CCS_EXPORTER_WEB_CONFIG_FILE=str(tmp_path / "nope.yml"),
        )
        result = subprocess.run(
            [sys.executable, "-m", "ccs_exporter", "serve", "--listen-address", "127.0.0.1:0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "CCS_EXPORTER_WEB_CONFIG_FILE" in result.stderr


def _served_common_name(context: Any, ca: Path) -> str:
    """Handshake over a socket pair with ``context`` as the server; the CN of the certificate it shows."""
    import ssl
    import threading

    server_sock, client_sock = socket.socketpair()
    client_context = ssl.create_default_context(cafile=str(ca))
    client_context.check_hostname = False
    with server_sock, client_sock:
        server_side = context.wrap_socket(server_sock, server_side=True, do_handshake_on_connect=False)
        handshake = threading.Thread(target=server_side.do_handshake, daemon=True)
        handshake.start()
        client_side = client_context.wrap_socket(client_sock)
        certificate = client_side.getpeercert()
        handshake.join(5)
        subject = dict(item[0] for item in certificate["subject"])
        return str(subject["commonName"])


class TestCertificateRenewal:
    """A renewed certificate is served without a restart."""

    def test_new_files_are_loaded_after_the_check_interval(self, tmp_path: Path) -> None:
        """Replacing the certificate and key changes what new connections see, once the interval passed."""
        (tmp_path / "old").mkdir()
        (tmp_path / "new").mkdir()
        old, new = make_pki(tmp_path / "old"), make_pki(tmp_path / "new")
        live_cert, live_key = tmp_path / "tls.crt", tmp_path / "tls.key"
        live_cert.write_bytes(old.server_cert.read_bytes())
        live_key.write_bytes(old.server_key.read_bytes())
        web = tmp_path / "web.yml"
        web.write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n", encoding="utf-8")
        now = [0.0]
        watcher = WebConfigWatcher(web, check_seconds=5, clock=lambda: now[0])
        first = watcher.current().tls
        assert first is not None and _served_common_name(first, old.ca) == "127.0.0.1"

        live_cert.write_bytes(new.server_cert.read_bytes() + b"\n")  # a new size, whatever the clock
        live_key.write_bytes(new.server_key.read_bytes())
        now[0] = 1.0
        assert watcher.current().tls is first  # not checked again before the interval
        now[0] = 6.0
        renewed = watcher.current().tls
        assert renewed is not None and renewed is not first
        assert _served_common_name(renewed, new.ca) == "127.0.0.1"

    def test_broken_renewal_keeps_the_old_certificate(self, tmp_path: Path) -> None:
        """A half-written certificate file is reported once and the working certificate stays in use."""
        pki = make_pki(tmp_path)
        web = tmp_path / "web.yml"
        web.write_text(tls_config(pki), encoding="utf-8")
        now = [0.0]
        watcher = WebConfigWatcher(web, check_seconds=5, clock=lambda: now[0])
        first = watcher.current().tls
        pki.server_cert.write_text("-----BEGIN CERTIFICATE-----\ntrunc", encoding="ascii")
        with structlog.testing.capture_logs() as logs:
            for tick in (10.0, 20.0, 30.0):
                now[0] = tick
                assert watcher.current().tls is first
        assert first is not None and _served_common_name(first, pki.ca) == "127.0.0.1"
        assert [entry["event"] for entry in logs] == ["web_config_reload_failed"]
