"""Ed25519 signatures of audit records: ``audit.signature`` signs ``audit.hash``; ``audit.key_id`` names it.

A record's hash covers ``audit.prev_hash``, so one valid signature vouches for the whole log up to and
including its record. The signed message is the ASCII text ``ccs-exporter-audit-v1:`` followed by the
record's ``audit.hash`` (64 hex digits); the signature is Base64. A key id is the first 16 hex digits of the
SHA-256 of the raw 32-byte public key, so ``verify`` picks the right public key after a rotation.
Private key material is never put in a message, a log event or an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNED_PREFIX = b"ccs-exporter-audit-v1:"
PUBLIC_SUFFIX = ".pub"
# A PEM Ed25519 key is about 120 bytes; a larger file is not read into memory.
_MAX_KEY_FILE_BYTES = 16 * 1024


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file, never its content."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The id of a public key: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_message(record_hash: str) -> bytes:
    """The bytes a record's signature signs."""
    return SIGNED_PREFIX + record_hash.encode("ascii")


def _read_key_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"{path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path} is too large to be a key file")
    return data


class RecordSigner:
    """Signs record hashes with one Ed25519 private key (held only in memory, never shown)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.key_id = key_id(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path) -> RecordSigner:
        """The signer of a PEM (PKCS#8) Ed25519 private key file; KeyFileError saying why not."""
        data = _read_key_file(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:  # the file is encrypted: we would need a passphrase to read it
            raise KeyFileError(f"{path} is an encrypted key; give an unencrypted Ed25519 key") from None
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(
                f"{path} is not a PEM Ed25519 private key (make one with `ccs-exporter audit keygen FILE`)"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a private key that is not Ed25519") from None
        return cls(key)

    def sign(self, record_hash: str) -> str:
        """The Base64 signature of a record hash."""
        return base64.b64encode(self._private_key.sign(signed_message(record_hash))).decode("ascii")

    def problem(self, record_key_id: object, signature: object, record_hash: str) -> str | None:
        """Why a record is not signed by this key (unsigned, another key, a bad signature), or None."""
        if signature is None:
            return f"unsigned (this log's records are signed with key id {self.key_id})"
        checker = SignatureChecker({self.key_id: self._private_key.public_key()})
        return checker.problem(record_key_id, signature, record_hash)

    def __repr__(self) -> str:
        return f"RecordSigner(key_id={self.key_id!r})"


def key_file_open_to_others(path: Path) -> bool:
    """True when users other than the owner may read the key file (group or world bits)."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def load_public_key(path: Path) -> tuple[str, Ed25519PublicKey]:
    """(key id, key) of a PEM Ed25519 public key file; KeyFileError saying why not."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{path} is not a PEM Ed25519 public key (the KEYFILE.pub of `audit keygen`)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} holds a public key that is not Ed25519") from None
    return key_id(key), key


class SignatureChecker:
    """Checks record signatures against the public keys given, each chosen by its key id."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> SignatureChecker:
        """The checker of PEM public key files (KeyFileError for one that cannot be used)."""
        return cls(dict(load_public_key(path) for path in paths))

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the keys this checker knows."""
        return tuple(sorted(self._keys))

    def problem(self, record_key_id: object, signature: object, record_hash: str) -> str | None:
        """Why a record's signature is not good, or None when it is."""
        if not isinstance(record_key_id, str) or record_key_id not in self._keys:
            shown = record_key_id if isinstance(record_key_id, str) else "none"
            return (
                f"signed with key id {shown[:40]!r}, which none of the --public-key files has "
                "(a wrong key, or a key that was not given)"
            )
        try:
            raw = base64.b64decode(str(signature), validate=True)
            self._keys[record_key_id].verify(raw, signed_message(record_hash))
        except (InvalidSignature, binascii.Error, ValueError):
            return f"bad signature for key id {record_key_id}: the record or its signature was forged"
        return None


def generate_key_files(path: Path) -> str:
    """Write a new Ed25519 private key to ``path`` (mode 0600) and its public key to ``path.pub``.

    Refuses (FileExistsError) when either file exists, so a key is never overwritten. Returns the key id.
    """
    public_path = Path(f"{path}{PUBLIC_SUFFIX}")
    if public_path.exists():
        raise FileExistsError(public_path)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except OSError:
        path.unlink(missing_ok=True)  # a private key without its public half would only confuse
        raise
    return key_id(key.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never replacing a file) with ``mode``, write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not loosen or tighten what we asked for
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
