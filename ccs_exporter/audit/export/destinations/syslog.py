"""Syslog over TLS: RFC 5424 messages framed by octet counting (RFC 5425), to rsyslog, syslog-ng or a SIEM.

Each event is ``<110>1 TIMESTAMP HOST ccs-exporter PID ACTION [meta sequenceId="N"] EVENT`` (facility 13
"log audit", severity informational; ``meta`` is an IANA-registered structured data ID). Syslog has no
application-level acknowledgement: a batch counts as delivered once the receiver's TCP stack has
acknowledged every byte (the socket's send queue is empty), so a connection that breaks mid-batch makes
the batch go again. The server certificate and host name are verified (``--destination-ca-bundle``).
"""

from __future__ import annotations

import contextlib
import fcntl
import select
import socket
import ssl
import struct
import termios
import time
from collections.abc import Sequence

from ccs_exporter.audit.export.destinations import DeliveryError, DestinationOptions, Shipment

FACILITY_LOG_AUDIT = 13
SEVERITY_INFORMATIONAL = 6
APP_NAME = "ccs-exporter"
NEW_CONNECTION_GRACE_SECONDS = 0.3
_NILVALUE = "-"


def _header_token(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, or ``-``."""
    if not value:
        return _NILVALUE
    cleaned = "".join(char for char in value if 33 <= ord(char) <= 126)[:limit]
    return cleaned or _NILVALUE


def syslog_message(item: Shipment) -> bytes:
    """The RFC 5424 message of one event (no BOM: MSG is JSON, which SIEMs parse as it is)."""
    priority = FACILITY_LOG_AUDIT * 8 + SEVERITY_INFORMATIONAL
    header = " ".join(
        (
            f"<{priority}>1",
            _header_token(item.timestamp, 64),
            _header_token(item.host, 255),
            APP_NAME,
            _header_token(str(item.pid) if item.pid is not None else None, 128),
            _header_token(item.action, 32),
        )
    )
    structured = f'[meta sequenceId="{item.sequence}"]'
    return f"{header} {structured} {item.line}".encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 framing: the message's length in bytes, a space, the message."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogTlsDestination:
    """One TLS connection to a syslog receiver, opened when needed and again after any failure."""

    def __init__(self, host: str, port: int, options: DestinationOptions) -> None:
        self.name = f"syslog+tls://{host}:{port}"
        self._address = (host, port)
        self._timeout = options.timeout
        self._context = ssl.create_default_context(
            cafile=str(options.ca_bundle) if options.ca_bundle is not None else None
        )
        if options.client_cert is not None:
            self._context.load_cert_chain(options.client_cert, options.client_key, password=lambda: b"")
        self._socket: ssl.SSLSocket | None = None

    def send(self, batch: Sequence[Shipment]) -> None:
        """Send the batch and wait until the receiver's TCP stack has acknowledged all of it."""
        data = b"".join(octet_counted(syslog_message(item)) for item in batch)
        try:
            connection, new = self._connection()
            connection.sendall(data)
            self._wait_acknowledged(connection)
            # TCP acknowledges bytes a receiver then throws away: with TLS 1.3 a refused client
            # certificate is only reported after the handshake. A close that has arrived (waiting a
            # moment on a new connection) means the batch was not taken.
            if _closed_by_peer(connection, wait=NEW_CONNECTION_GRACE_SECONDS if new else 0.0):
                raise OSError("the receiver closed the connection (a refused client certificate?)")
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise DeliveryError(f"{self.name}: {_reason(exc)}") from None

    def _connection(self) -> tuple[ssl.SSLSocket, bool]:
        """The open connection, or a new one; whether it is new."""
        if self._socket is not None and _closed_by_peer(self._socket):
            self.close()
        if self._socket is not None:
            return self._socket, False
        raw = socket.create_connection(self._address, timeout=self._timeout)
        try:
            self._socket = self._context.wrap_socket(raw, server_hostname=self._address[0])
        except BaseException:
            raw.close()
            raise
        return self._socket, True

    def _wait_acknowledged(self, connection: ssl.SSLSocket) -> None:
        deadline = time.monotonic() + self._timeout
        delay = 0.0005
        while _unacknowledged_bytes(connection) > 0:
            if time.monotonic() > deadline or _closed_by_peer(connection):
                raise OSError("the receiver did not acknowledge the batch")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def close(self) -> None:
        """Close the connection (the next send opens a new one)."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def _unacknowledged_bytes(connection: socket.socket) -> int:
    """Bytes in the socket's send queue: not sent yet, or sent and not acknowledged (Linux SIOCOUTQ)."""
    packed = fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", packed)[0])


def _closed_by_peer(connection: ssl.SSLSocket, wait: float = 0.0) -> bool:
    """True when the receiver closed the connection or reset it (syslog receivers never send data).

    What is readable may be a TLS record without data (a TLS 1.3 session ticket): read without blocking.
    """
    timeout = connection.gettimeout()
    try:
        readable, _, _ = select.select([connection], [], [], wait)
        if not readable:
            return False
        connection.setblocking(False)
        return connection.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True
    finally:
        with contextlib.suppress(OSError):
            connection.settimeout(timeout)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(getattr(exc, "strerror", None) or exc)
