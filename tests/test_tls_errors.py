"""TLS errors towards CCS that point at the fix: a plain-HTTP port, an untrusted certificate, another name."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccs_exporter.simulator import Simulator
from tests.web_helpers import Pki, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plain_sim() -> Iterator[Simulator]:
    """A simulator speaking plain HTTP."""
    with Simulator(port=0, run_interval=None) as sim:
        yield sim


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_sim(pki: Pki) -> Iterator[Simulator]:
    """A simulator serving HTTPS with a certificate for 127.0.0.1 signed by the test CA."""
    with Simulator(
        port=0, run_interval=None, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
    ) as sim:
        yield sim


def jobs_get(sim: Simulator, url: str, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("CCS_EXPORTER_")}
    base.update(CCS_EXPORTER_USERNAME=sim.username, CCS_EXPORTER_PASSWORD=sim.password, **env)
    return subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "jobs", "get", sim.job_ids[0], "--url", url, *flags],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("flags", [[], ["--insecure"]], ids=["verified", "--insecure"])
def test_https_url_on_a_plain_http_port(plain_sim: Simulator, flags: list[str]) -> None:
    """`--url https://` against a plain-HTTP server says so, not "certificate not trusted"."""
    result = jobs_get(plain_sim, plain_sim.url.replace("http://", "https://"), *flags)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "answered in plain HTTP" in lines[-1] and "http://" in lines[-1], lines[-1]
    assert "not trusted" not in result.stderr and "CA_BUNDLE" not in result.stderr


def test_untrusted_certificate(tls_sim: Simulator) -> None:
    """A certificate no trusted CA signed: not trusted, set CCS_EXPORTER_CA_BUNDLE."""
    result = jobs_get(tls_sim, tls_sim.url)
    assert result.returncode == 1
    assert "certificate is not trusted" in result.stderr and "CCS_EXPORTER_CA_BUNDLE" in result.stderr
    assert "plain HTTP" not in result.stderr


def test_certificate_for_another_name(tls_sim: Simulator, pki: Pki) -> None:
    """A trusted certificate that does not name the host in the URL says so (the CA bundle is fine)."""
    url = tls_sim.url.replace("127.0.0.1", "localhost")
    result = jobs_get(tls_sim, url, CCS_EXPORTER_CA_BUNDLE=str(pki.ca))
    assert result.returncode == 1
    assert "not for this host" in result.stderr, result.stderr
    assert "CA_BUNDLE" not in result.stderr


def test_trusted_certificate_works(tls_sim: Simulator, pki: Pki) -> None:
    """The same server with its CA in CCS_EXPORTER_CA_BUNDLE answers (the failures above are real)."""
    result = jobs_get(tls_sim, tls_sim.url, CCS_EXPORTER_CA_BUNDLE=str(pki.ca))
    assert result.returncode == 0, result.stderr


def test_plain_http_message_is_the_server_one(tmp_path: Path) -> None:
    """Nothing else: the message describes the server, and a closed port is still "refused"."""
    result = subprocess.run(
        [sys.executable, "-m", "ccs_exporter", "jobs", "get", "3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01",
         "--url", "https://127.0.0.1:1", "--username", "x"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CCS_EXPORTER_")},
             "CCS_EXPORTER_PASSWORD": "x"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "refused" in result.stderr and "plain HTTP" not in result.stderr
