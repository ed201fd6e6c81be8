"""``tls_server_config`` of the web config: the exporter's certificate, TLS versions, ciphers, client checks.

exporter-toolkit's schema mapped onto Python's ``ssl``: Go's TLS version and cipher-suite names become
OpenSSL's, inline PEM is loaded from an anonymous in-memory file, and ``client_allowed_sans`` is checked
against the client certificate once the handshake is done. ``client_auth_type`` has Go's crypto/tls
meaning: ``RequestClientCert`` and ``RequireAnyClientCert`` accept any certificate (OpenSSL is given a
verify callback that accepts what it could not verify), the two ``Verify`` policies check it against
``client_ca_file`` or, without one, the system's trust store, as Go does.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import ssl
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ccs_exporter.errors import ConfigError

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",  # the toolkit's older name for RequireAnyClientCert
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TlsVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls names (tls.CipherSuites(), the ones the toolkit accepts) -> OpenSSL names. TLS 1.3
# suites map to None: neither Go nor OpenSSL's cipher list configures them, they are always on.
GO_CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
CurveName = Literal["CurveP256", "CurveP384", "CurveP521", "X25519"]
# Go's policies that ask for a certificate and never verify it.
_UNVERIFIED_POLICIES = frozenset({"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"})


def _cipher_name(value: str) -> str:
    if value not in GO_CIPHER_SUITES:
        raise ValueError(f"unknown cipher {value!r} (Go crypto/tls names, e.g. TLS_AES_128_GCM_SHA256)")
    return value


def _no_pem_in(value: str | None, what: str) -> None:
    if value is not None and "-----BEGIN " not in value:
        raise ValueError(f"holds no PEM block (inline {what}; for a path use the _file key)")


class TlsServerConfig(BaseModel):
    """``tls_server_config``: the exporter's certificate and, optionally, client certificate checks."""

    model_config = ConfigDict(extra="forbid")

    cert: str | None = None
    key: SecretStr | None = None
    client_ca: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    cipher_suites: list[Annotated[str, AfterValidator(_cipher_name)]] = Field(default_factory=list)
    curve_preferences: list[CurveName] = Field(default_factory=list)
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: list[str] | None = None

    @field_validator(
        "cert",
        "key",
        "client_ca",
        "cert_file",
        "key_file",
        "client_ca_file",
        "client_auth_type",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # The toolkit (Go) treats an empty string as "not set".
        return None if value == "" else value

    @field_validator("client_auth_type", mode="before")
    @classmethod
    def _default_policy(cls, value: Any) -> Any:
        return "NoClientCert" if value is None else value

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        if not value.is_absolute() and base is not None:
            value = Path(base) / value
        if not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("cert")
    @classmethod
    def _cert_is_pem(cls, value: str | None) -> str | None:
        _no_pem_in(value, "certificate")
        return value

    @field_validator("client_ca")
    @classmethod
    def _client_ca_is_pem(cls, value: str | None) -> str | None:
        _no_pem_in(value, "client CA")
        return value

    @field_validator("key")
    @classmethod
    def _key_is_pem(cls, value: SecretStr | None) -> SecretStr | None:
        _no_pem_in(value.get_secret_value() if value is not None else None, "key")
        return value

    @property
    def enabled(self) -> bool:
        """True when TLS is configured at all (the toolkit's rule: any certificate, key, CA or policy)."""
        sources = (self.cert, self.cert_file, self.key, self.key_file, self.client_ca, self.client_ca_file)
        return any(source is not None for source in sources) or "client_auth_type" in self.model_fields_set

    @property
    def has_client_ca(self) -> bool:
        return self.client_ca is not None or self.client_ca_file is not None

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        if not self.enabled:
            return self
        for inline, path, name in (
            (self.cert, self.cert_file, "cert"),
            (self.key, self.key_file, "key"),
            (self.client_ca, self.client_ca_file, "client_ca"),
        ):
            if inline is None and path is None and name != "client_ca":
                raise ValueError(f"missing one of {name} or {name}_file")
        if self.has_client_ca and self.client_auth_type == "NoClientCert":
            raise ValueError(
                "a client CA is configured without a client auth policy: set client_auth_type "
                "(RequireAndVerifyClientCert to admit only clients that CA signed)"
            )
        return self

    def warnings(self) -> list[tuple[str, str]]:
        """Settings the toolkit takes that cannot work as meant: (key, why); they load, as there."""
        found = [
            (f"tls_server_config.{name}", f"{name} and {name}_file are both set: the file is used")
            for inline, path, name in (
                (self.cert, self.cert_file, "cert"),
                (self.key, self.key_file, "key"),
                (self.client_ca, self.client_ca_file, "client_ca"),
            )
            if inline is not None and path is not None
        ]
        if self.client_allowed_sans is not None and not self.client_allowed_sans:
            found.append(("tls_server_config.client_allowed_sans", "empty: no client can connect"))
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            found.append(
                (
                    "tls_server_config.min_version",
                    f"{self.min_version} is above max_version {self.max_version}: every handshake fails",
                )
            )
        return found

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side TLS context from these settings; ``ConfigError`` when a file does not load."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS10/TLS11 are deprecated, not refused
            context.minimum_version = _TLS_VERSIONS[self.min_version]
            context.maximum_version = _TLS_VERSIONS[self.max_version]
        try:
            with (
                _pem_path(self.cert_file, self.cert) as cert,
                _pem_path(self.key_file, _secret(self.key)) as key,
            ):
                # An encrypted key fails here rather than prompting on the terminal.
                context.load_cert_chain(cert, key, password=lambda: b"")
            if self.client_ca_file is not None:
                context.load_verify_locations(cafile=str(self.client_ca_file))
            elif self.client_ca is not None:
                context.load_verify_locations(cadata=self.client_ca)
            elif self.client_auth_type != "NoClientCert":
                # Go verifies client certificates against the system's roots when no CA is given.
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"tls_server_config: cannot load the certificate, key or client CA ({exc})",
                field="tls_server_config",
            ) from None
        ciphers = [GO_CIPHER_SUITES[name] for name in self.cipher_suites]
        openssl_names = [name for name in ciphers if name is not None]
        if openssl_names:
            try:
                context.set_ciphers(":".join(openssl_names))
            except ssl.SSLError:
                raise ConfigError(
                    "tls_server_config.cipher_suites: OpenSSL supports none of them here",
                    field="tls_server_config",
                ) from None
        context.verify_mode = self._verify_mode()
        if self.client_auth_type in _UNVERIFIED_POLICIES and not accept_any_client_certificate(context):
            raise ConfigError(
                f"tls_server_config.client_auth_type: {self.client_auth_type} cannot be served by this "
                "Python build (it cannot accept unverified certificates); use RequireAndVerifyClientCert",
                field="tls_server_config",
            )
        return context

    def _verify_mode(self) -> ssl.VerifyMode:
        policy = self.client_auth_type
        if policy in ("RequireAnyClientCert", "RequireClientCert", "RequireAndVerifyClientCert"):
            return ssl.CERT_REQUIRED
        if policy in ("VerifyClientCertIfGiven", "RequestClientCert"):
            return ssl.CERT_OPTIONAL
        return ssl.CERT_NONE

    @property
    def verifies_client_certificates(self) -> bool:
        """True when a client certificate sent is checked against a CA (Go's two Verify policies)."""
        return self.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

    def allows_client(self, peer_certificate: dict[str, Any] | None) -> bool:
        """False when ``client_allowed_sans`` is set and the verified client certificate has none of them."""
        if self.client_allowed_sans is None:
            return True
        names = (peer_certificate or {}).get("subjectAltName", ())
        allowed = {_normalized_san(name) for name in self.client_allowed_sans}
        return any(_normalized_san(value) in allowed for kind, value in names if kind != "DirName")


# OpenSSL's verify callback: (preverify_ok, X509_STORE_CTX *) -> 1 to go on with the handshake.
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_ACCEPT_ANY = _VERIFY_CALLBACK(lambda preverify_ok, store: 1)


def accept_any_client_certificate(context: ssl.SSLContext) -> bool:
    """Make ``context`` accept any client certificate it asks for, as Go's unverified policies do.

    Python's ``ssl`` verifies every certificate it asks for and has no verify callback; OpenSSL has one
    (``SSL_CTX_set_verify``), set here through ctypes on the context's ``SSL_CTX``, which CPython keeps
    right after the object header and whose callback it preserves when ``verify_mode`` changes. The
    pointer is used only after OpenSSL confirms it is this context (same verify mode and options);
    False when that cannot be done (another build of Python), and the caller refuses the setting.
    """
    if sys.implementation.name != "cpython" or hasattr(sys, "gettotalrefcount"):
        return False
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False
    try:
        library = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]  # the libssl _ssl links
        get_mode, get_options, set_verify = (
            library.SSL_CTX_get_verify_mode,
            library.SSL_CTX_get_options,
            library.SSL_CTX_set_verify,
        )
    except (OSError, AttributeError):
        return False
    get_mode.restype, get_mode.argtypes = ctypes.c_int, [ctypes.c_void_p]
    get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
    set_verify.restype, set_verify.argtypes = None, [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
    pointer = ctypes.c_void_p.from_address(id(context) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    if not pointer:
        return False
    mode = get_mode(pointer)
    expected = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}[context.verify_mode]
    if mode != expected or get_options(pointer) != int(context.options):
        return False
    set_verify(pointer, mode, _ACCEPT_ANY)
    return True


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _normalized_san(value: str) -> str:
    """IP addresses compared by value (OpenSSL writes IPv6 in full, Go in short form), others as written."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


@contextlib.contextmanager
def _pem_path(path: Path | None, inline: str | None) -> Iterator[str]:
    """A path OpenSSL can load: the configured file, or inline PEM in an anonymous in-memory file."""
    if path is not None or inline is None:
        yield str(path)
        return
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:  # Linux: the key never touches a disk
        descriptor = memfd_create("ccs-exporter-tls", getattr(os, "MFD_CLOEXEC", 1))
        try:
            os.write(descriptor, inline.encode("utf-8"))
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="ccs-exporter-tls-") as directory:  # mode 0700
        file = Path(directory) / "pem"
        file.write_text(inline, encoding="utf-8")
        yield str(file)
