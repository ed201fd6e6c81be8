"""The server side of one TLS connection over memory buffers: ciphertext in, plaintext out, and back.

The server feeds what the socket received and writes what this returns, so what a connection holds is
ours to bound: the handshake may take at most ``MAX_HANDSHAKE_BYTES`` from the client, plaintext is
decrypted only as far as the caller asks, and everything is dropped with the connection. (asyncio's own
TLS layer gives every connection a 256 KiB read buffer, kept alive by reference cycles until the garbage
collector runs: a flood of handshakes that never finish grew the process by hundreds of megabytes.)
No sockets here.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

# A client's whole side of a handshake (ClientHello, its certificate chain, Finished) fits in a few KiB;
# a client that sends more before the handshake is done is not completing one.
MAX_HANDSHAKE_BYTES = 64 * 1024
_READ_BYTES = 16 * 1024  # at most one TLS record's plaintext per read


class TlsFailure(Exception):
    """The handshake failed or the client sent something TLS refuses; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TlsSession:
    """One server-side TLS session; ``receive`` the client's bytes, send what ``outgoing`` returns."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl: ssl.SSLObject | None = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshake_bytes = 0
        self.established = False
        self.peer_closed = False  # the client sent close_notify

    def receive(self, data: bytes, *, max_plaintext: int) -> bytes:
        """Take ciphertext from the client; the plaintext now readable, at most about ``max_plaintext``.

        What is not decrypted yet stays in the session until the next call (``receive(b"", ...)``).
        Raises ``TlsFailure`` when the handshake fails or the client's data is not valid TLS.
        """
        if self._ssl is None:
            return b""
        if data:
            self._incoming.write(data)
        if not self.established:
            self._handshake_bytes += len(data)
            if self._handshake_bytes > MAX_HANDSHAKE_BYTES:
                raise TlsFailure("handshake too large")
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            except ssl.SSLError as exc:
                raise TlsFailure(_reason(exc)) from None
            self.established = True
        chunks: list[bytes] = []
        size = 0
        while size < max_plaintext and not self.peer_closed:
            try:
                chunk = self._ssl.read(_READ_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                break
            except ssl.SSLError as exc:
                raise TlsFailure(_reason(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def outgoing(self) -> bytes:
        """Bytes the session wants sent to the client (handshake messages, alerts)."""
        return self._outgoing.read()

    def encrypt(self, data: memoryview) -> bytes:
        """``data`` as TLS records to send; ``TlsFailure`` when the session can no longer send."""
        if self._ssl is None:
            return b""
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:  # the session failed meanwhile (an alert from the client)
            raise TlsFailure(_reason(exc)) from None
        return self._outgoing.read()

    def peer_certificate(self) -> dict[str, Any] | None:
        """The client's verified certificate, once established (None when it sent none)."""
        if self._ssl is None or not self.established:
            return None
        certificate = self._ssl.getpeercert()
        return certificate if certificate else None

    def close_notify(self) -> bytes:
        """The close_notify alert to send before closing (nothing before the handshake is done)."""
        if self._ssl is None or not self.established:
            return b""
        with contextlib.suppress(ssl.SSLError, ValueError):  # the peer's close_notify is not waited for
            self._ssl.unwrap()
        return self._outgoing.read()


def _reason(error: ssl.SSLError) -> str:
    """OpenSSL's short reason (e.g. ``WRONG_VERSION_NUMBER``), never data from the client."""
    return str(error.reason or type(error).__name__)
