"""Test helper: a real rsyslogd receiving RFC 5425 syslog over TLS on 127.0.0.1, in a temporary directory.

It is started with its own configuration (imtcp with the OpenSSL stream driver, server certificate from
the test PKI), writes each message's structured data and MSG as one line of ``received.log``, and is
stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port

CONFIG = """
global(
  workDirectory="{work}"
  maxMessageSize="512k"
  defaultNetstreamDriver="ossl"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="{auth_mode}"
       {peers})
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="received" type="string" string="%APP-NAME% %PROCID% %MSGID% %STRUCTURED-DATA% %MSG%\\n")
action(type="omfile" file="{out}" template="received")
"""


@dataclass
class Rsyslog:
    """A running rsyslogd: its port, where it writes what it received, its PID."""

    port: int
    received: Path
    pid: int

    def lines(self) -> list[str]:
        """What it has written so far, one line per message."""
        try:
            return self.received.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []


def find_rsyslogd(require_tool: Callable[[str], str]) -> str:
    """rsyslogd from PATH, or from /usr/sbin (not on every user's PATH); else skip (fail in CI)."""
    system = Path("/usr/sbin/rsyslogd")
    if os.access(system, os.X_OK):
        return str(system)
    return require_tool("rsyslogd")


@contextlib.contextmanager
def running_rsyslog(
    rsyslogd: str,
    directory: Path,
    cert: Path,
    key: Path,
    ca: Path,
    port: int | None = None,
    auth_mode: str = "anon",
    permitted_peer: str | None = None,
) -> Iterator[Rsyslog]:
    """Start rsyslogd in ``directory`` (on ``port``, or a free one); stop it (by its PID) afterwards.

    ``auth_mode`` ``x509/name`` with ``permitted_peer`` makes it require a client certificate signed by a CA
    in ``ca`` and naming that peer."""
    work = directory / "work"
    work.mkdir()
    port = port if port is not None else free_port()
    received = directory / "received.log"
    config = directory / "rsyslog.conf"
    config.write_text(
        CONFIG.format(
            work=work,
            ca=ca,
            cert=cert,
            key=key,
            port=port,
            out=received,
            auth_mode=auth_mode,
            peers=f'permittedPeer=["{permitted_peer}"]' if permitted_peer else "",
        ),
        encoding="utf-8",
    )
    check = subprocess.run([rsyslogd, "-N1", "-f", str(config)], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslogd rejects the test configuration: {check.stderr.strip()}")
    process = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(config), "-i", str(directory / "rsyslogd.pid")],
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "rsyslogd.err", "wb"),  # noqa: SIM115 - the child keeps it
        cwd=directory,
    )
    try:
        _wait_listening(port, process)
        yield Rsyslog(port, received, process.pid)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rsyslogd exited with {process.returncode} before listening")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("rsyslogd did not listen within 60 s")
