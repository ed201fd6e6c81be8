"""Helpers for the web-config and server tests: a throw-away PKI and metrics servers on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ccs_exporter.exposition.formats import Exposition, RenderedFamily, gzip_member
from ccs_exporter.exposition.live import LiveMetrics, RequestStats
from ccs_exporter.web.config_watcher import WebConfigWatcher
from ccs_exporter.web.server import MetricsServer, ServerLimits

# The client certificate's subject alternative names (what client_allowed_sans is matched against).
CLIENT_DNS = "prometheus.monitoring.svc"
CLIENT_URI = "spiffe://cluster.local/ns/monitoring/sa/prometheus"
CLIENT_IP = "2001:db8::5"


@dataclass(frozen=True)
class Pki:
    """Files of a throw-away PKI: a CA, a server certificate for 127.0.0.1, and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    *,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """Generate the CA, server and client certificates in ``directory``."""
    pem = serialization.Encoding.PEM
    ca_key, client_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pki = Pki(
        *(directory / name for name in ("ca.pem", "server.pem", "server.key", "cca.pem", "c.pem", "c.key"))
    )
    pki.ca.write_bytes(_certificate("test CA", ca_key).public_bytes(pem))
    server_names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    pki.server_cert.write_bytes(
        _certificate("127.0.0.1", server_key, ("test CA", ca_key), names=server_names).public_bytes(pem)
    )
    _write_key(pki.server_key, server_key)
    pki.client_ca.write_bytes(_certificate("client CA", client_ca_key).public_bytes(pem))
    client_names: list[x509.GeneralName] = [
        x509.DNSName(CLIENT_DNS),
        x509.UniformResourceIdentifier(CLIENT_URI),
        x509.IPAddress(ipaddress.ip_address(CLIENT_IP)),
    ]
    client_cert = _certificate("prometheus", client_key, ("client CA", client_ca_key), names=client_names)
    pki.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_key(pki.client_key, client_key)
    return pki


def exposition_of(*samples: bytes) -> Exposition:
    """A rendered exposition of one gauge family ``ccs_up`` whose sample parts are ``samples``."""
    return Exposition((RenderedFamily.of_samples("ccs_up", "gauge", "Test family.", samples),))


def deflated_exposition_of(*samples: bytes) -> Exposition:
    """Like ``exposition_of``, the samples held as gzip members only, as the job families are."""
    members = tuple(gzip_member((sample,)) for sample in samples)
    return Exposition((RenderedFamily.of_deflated("ccs_up", "gauge", "Test family.", members),))


class Store:
    """Stands in for ExpositionStore: ``current`` is what the last cycle rendered."""

    def __init__(self, exposition: Exposition | None) -> None:
        self.current = exposition
        self.plain_asks = 0

    def plain_asked(self) -> None:
        self.plain_asks += 1


SMALL = exposition_of(b"ccs_up 1\n")


class Servers:
    """Starts metrics servers on 127.0.0.1 (port 0), each with an optional web-config text; stops them all."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[MetricsServer] = []

    def __call__(
        self,
        web_config: str | None = None,
        *,
        limits: ServerLimits | None = None,
        exposition: Exposition | None = SMALL,
        check_seconds: float = 0.2,
    ) -> MetricsServer:
        web = None
        if web_config is not None:
            path = self._directory / "web.yml"
            path.write_text(web_config, encoding="utf-8")
            web = WebConfigWatcher(path, check_seconds=check_seconds)
        server = MetricsServer(
            ("127.0.0.1", 0),
            Store(exposition),  # type: ignore[arg-type]
            LiveMetrics(RequestStats()),
            web,
            limits=limits,
        )
        server.start()
        self._started.append(server)
        return server

    def stop(self) -> None:
        for server in self._started:
            server.stop()


@contextmanager
def metrics_servers(directory: Path) -> Iterator[Servers]:
    """A ``Servers`` whose servers are stopped on exit."""
    servers = Servers(directory)
    try:
        yield servers
    finally:
        servers.stop()
