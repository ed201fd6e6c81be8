"""Settings: one model read from defaults, an optional YAML file, ``CCS_EXPORTER_*`` variables and CLI flags.

Precedence, lowest to highest: defaults, the YAML file (``--config``; keys are the field names in lower
case), environment variables, command-line flags. This is the only module that reads ``os.environ``.
Every invalid value becomes a ``ConfigError`` whose one-line message names the setting and the value,
except secrets, whose values are never shown.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from ccs_exporter.errors import ConfigError
from ccs_exporter.models import normalize_guid
from ccs_exporter.settings.checks import (
    check_ccs_url,
    check_password_text,
    check_writable_file,
    read_password_file,
    url_without_credentials,
)
from ccs_exporter.settings.inputs import (
    describe_validation_error,
    describe_yaml_error,
    first_validation_error,
    load_yaml_file,
    load_yaml_text,
    read_input_file,
)
from ccs_exporter.sharding import MAX_TOTAL_SHARDS, UNSHARDED, Shard, ordinal_from_hostname, parse_shard

__all__ = [  # the input helpers are shared with job specs and the web config
    "MAX_RESPONSE_BYTES",
    "Settings",
    "checked_job_id",
    "checked_job_search",
    "describe_validation_error",
    "describe_yaml_error",
    "env_name",
    "first_validation_error",
    "load_settings",
    "load_yaml_file",
    "parse_job_ids",
    "parse_listen_address",
    "read_input_file",
]

ENV_PREFIX = "CCS_EXPORTER_"
# No CCS answer we use comes near this; a bigger body is read no further and refused, so a broken or
# hostile server cannot make the exporter buffer gigabytes (8 MiB holds thousands of run messages).
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_SECRET_FIELDS = frozenset({"password"})
# Search Jobs expressions come from the operator, not from CCS, but are still bounded: each becomes a
# ``search`` label value and one listing per cycle.
MAX_JOB_SEARCHES = 64
MAX_JOB_SEARCH_LENGTH = 4096
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``job_ids`` -> ``CCS_EXPORTER_JOB_IDS``."""
    return f"{ENV_PREFIX}{field.upper()}"


def checked_job_id(value: str) -> str:
    """A job id argument normalised (lower case, no braces); a ConfigError naming it if it is no GUID."""
    try:
        return normalize_guid(value)
    except ValueError as exc:
        raise ConfigError(f"job id {exc}", field="job_id") from None


def _listed(value: Any, plain: Callable[[str], list[str]], unparsable: str) -> Any:
    """A list setting as given: None or blank text is [], text starting with '[' is read as a YAML/JSON
    list (ValueError ``unparsable`` if it is not YAML), other text is split by ``plain``; anything else is
    returned for the caller to check."""
    if value is None:
        return []
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    if not text.startswith("["):
        return plain(text)
    try:
        return load_yaml_text(text)
    except yaml.YAMLError:
        raise ValueError(unparsable) from None


def parse_job_ids(value: Any) -> list[str]:
    """Job ids from a list, a YAML/JSON list string, or a comma- or space-separated string."""
    value = _listed(
        value,
        lambda text: text.replace(",", " ").split(),
        "is neither a comma-separated list nor a YAML/JSON list",
    )
    if not isinstance(value, list):
        raise ValueError("must be a list of job GUIDs")
    ids: list[str] = []
    for item in value:
        job_id = normalize_guid(str(item))
        if job_id not in ids:
            ids.append(job_id)
    return ids


MAX_EXPORT_CURSORS = 16


def parse_cursor_paths(value: Any) -> list[Path]:
    """Shipping cursor files (``audit export --cursor``) from a list or a comma-separated string."""
    value = _listed(
        value,
        lambda text: [part.strip() for part in text.split(",") if part.strip()],
        "is neither a comma-separated list of files nor a YAML/JSON list",
    )
    if not isinstance(value, list) or not all(isinstance(item, (str, Path)) for item in value):
        raise ValueError("must be a list of cursor files")
    if len(value) > MAX_EXPORT_CURSORS:
        raise ValueError(f"has {len(value)} files; at most {MAX_EXPORT_CURSORS}")
    paths: list[Path] = []
    for item in value:
        path = Path(item)
        if path not in paths:
            paths.append(path)
    return paths


def parse_job_searches(value: Any) -> list[str]:
    """Search Jobs expressions from one expression or a YAML/JSON list; each kept verbatim, once."""
    value = _listed(
        value,
        lambda text: [text],
        "is neither one expression nor a YAML/JSON list of expressions",
    )
    if not isinstance(value, list):
        raise ValueError("must be one Search Jobs expression or a list of them")
    if len(value) > MAX_JOB_SEARCHES:
        raise ValueError(f"has {len(value)} expressions; at most {MAX_JOB_SEARCHES}")
    searches: list[str] = []
    for index, item in enumerate(value, start=1):
        if not isinstance(item, str):
            raise ValueError(f"expression {index} is not a string")
        try:
            text = _job_search(item)
        except ValueError as exc:
            raise ValueError(f"expression {index} {exc}") from None
        if text not in searches:
            searches.append(text)
    return searches


def _job_search(expression: str) -> str:
    """One Search Jobs expression without surrounding spaces; ValueError saying what is wrong with it."""
    text = expression.strip()
    if not text:
        raise ValueError("is empty")
    if len(text) > MAX_JOB_SEARCH_LENGTH:
        raise ValueError(f"is longer than {MAX_JOB_SEARCH_LENGTH} characters")
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text):
        raise ValueError("holds a line break or control character")
    if any(unicodedata.category(char) == "Cs" for char in text):
        raise ValueError("holds text that is not valid Unicode (a lone surrogate)")
    return text


def checked_job_search(expression: str) -> str:
    """A Search Jobs expression argument, stripped; a ConfigError naming it if it cannot be sent."""
    try:
        return _job_search(expression)
    except ValueError as exc:
        raise ConfigError(f"search expression {exc}", field="expression") from None


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9879`` for IPv6) and check both parts."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("must be host:port, e.g. 0.0.0.0:9879")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    return host or "0.0.0.0", port


class _FileValuesSource(PydanticBaseSettingsSource):
    """Values already read from the ``--config`` YAML file."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _read_config_file(path: Path, known: set[str]) -> dict[str, Any]:
    loaded = load_yaml_file(path, "config", "config")
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: must be a mapping of setting names to values", field="config")
    values: dict[str, Any] = {}
    for key, value in loaded.items():
        name = str(key)
        if name not in known:
            raise ConfigError(
                f"config file {path}: unknown key {name!r} (keys are the setting names in lower case, "
                f"e.g. job_ids)",
                field=name,
            )
        values[name] = value
    return values


class Settings(BaseSettings):
    """Everything ccs-exporter can be told. Names are a public interface (``CCS_EXPORTER_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    url: str
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    password_encoding: Literal["base64", "plain"] = "base64"
    verify_tls: bool = True
    ca_bundle: Path | None = None
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)
    job_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    job_search: Annotated[list[str], NoDecode] = Field(default_factory=list)
    search_page_size: int = Field(default=100, ge=1, le=1000)
    poll_interval_seconds: float = Field(default=60.0, gt=0, le=86400, allow_inf_nan=False)
    concurrency: int = Field(default=8, ge=1, le=256)
    history_window: int = Field(default=10, ge=1, le=1000)
    max_response_bytes: int = Field(default=MAX_RESPONSE_BYTES, ge=64 * 1024, le=1024 * 1024 * 1024)
    status_metric: Literal["full", "sparse"] = "full"
    listen_address: str = "0.0.0.0:9879"
    audit_log: Path | None = None
    audit_signing_key_file: Path | None = None
    audit_export_cursors: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    web_config_file: Path | None = None
    log_format: Literal["json", "console", "auto"] = "auto"
    log_level: str = "info"
    shard: str | None = None
    shard_from_hostname: bool = False
    total_shards: int | None = None
    _shard: Shard = PrivateAttr(default=UNSHARDED)

    @field_validator("url")
    @classmethod
    def _url_usable(cls, value: str) -> str:
        return check_ccs_url(value)

    @field_validator("username")
    @classmethod
    def _username_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("password")
    @classmethod
    def _password_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("is empty")
        if value is not None:
            check_password_text(value.get_secret_value())
        return value

    @field_validator("job_ids", mode="before")
    @classmethod
    def _job_ids(cls, value: Any) -> list[str]:
        return parse_job_ids(value)

    @field_validator("job_search", mode="before")
    @classmethod
    def _job_search(cls, value: Any) -> list[str]:
        return parse_job_searches(value)

    @field_validator("audit_export_cursors", mode="before")
    @classmethod
    def _audit_export_cursors(cls, value: Any) -> list[Path]:
        return parse_cursor_paths(value)

    @field_validator("listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @field_validator("ca_bundle", "password_file", "web_config_file", "audit_signing_key_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        # Check readability now, not only existence: a Kubernetes secret mounted with the wrong mode
        # should stop the program at start-up with the setting's name, not at the first login.
        if value is not None and not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError("is not a readable file")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _holds_certificates(cls, value: Path | None) -> Path | None:
        # A file that is not a PEM bundle would otherwise pass here and fail at the first request with a
        # misleading "certificate not trusted".
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, ValueError, UnicodeDecodeError):
                raise ValueError("holds no PEM certificate") from None
        return value

    @field_validator("password_file")
    @classmethod
    def _password_file_usable(cls, value: Path | None) -> Path | None:
        # Read once now so a file that can never work (empty, UTF-16, Latin-1) stops the program at
        # start; the client reads it again before each login, to pick up a rotated secret.
        if value is not None:
            read_password_file(value)
        return value

    @field_validator("audit_log")
    @classmethod
    def _audit_log_writable(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_writable_file(value)
        return value

    @field_validator("shard", mode="before")
    @classmethod
    def _shard_form(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # an empty variable (a chart leaving it blank) means not sharded
        if not isinstance(value, str):
            raise ValueError("must be INDEX/TOTAL with a 0-based index, e.g. 1/3")
        return str(parse_shard(value))

    @field_validator("total_shards")
    @classmethod
    def _total_shards_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_TOTAL_SHARDS:
            raise ValueError(f"must be 1-{MAX_TOTAL_SHARDS}")
        return value

    @model_validator(mode="after")
    def _has_a_password(self) -> Settings:
        if self.password is None and self.password_file is None:
            raise ValueError(f"no password: set {env_name('password')} or {env_name('password_file')}")
        return self

    @model_validator(mode="after")
    def _resolve_shard(self) -> Settings:
        self._shard = _shard_of_replica(self.shard, self.shard_from_hostname, self.total_shards)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    def password_value(self) -> str:
        """The password, from ``password`` or else from ``password_file`` (a trailing newline is dropped)."""
        if self.password is not None:
            return self.password.get_secret_value()
        assert self.password_file is not None
        try:
            return read_password_file(self.password_file)
        except ValueError as exc:
            raise ConfigError(
                f"{env_name('password_file')}: {self.password_file} {exc}", field="password_file"
            ) from None

    @property
    def tls_verify(self) -> bool | str:
        """What ``requests`` takes as ``verify``: the CA bundle path, True, or False when disabled."""
        if not self.verify_tls:
            return False
        return str(self.ca_bundle) if self.ca_bundle else True

    @property
    def listen(self) -> tuple[str, int]:
        """The listen address as (host, port)."""
        return parse_listen_address(self.listen_address)

    @property
    def shard_of_replica(self) -> Shard:
        """This replica's shard, from ``shard`` or the host name's pod ordinal; ``0/1`` when not sharded."""
        return self._shard


def _shard_of_replica(shard: str | None, from_hostname: bool, total: int | None) -> Shard:
    """The shard the settings describe; ValueError naming the settings when they contradict each other."""
    shard_name = f"{env_name('shard')} (shard)"
    hostname_name = f"{env_name('shard_from_hostname')} (shard_from_hostname)"
    total_name = f"{env_name('total_shards')} (total_shards)"
    if shard is not None:
        if from_hostname:
            raise ValueError(f"{shard_name} and {hostname_name} are both set: give one or the other")
        if total is not None:
            raise ValueError(
                f"{total_name} goes with {hostname_name}; {shard_name} = {shard!r} already holds the total"
            )
        return parse_shard(shard)
    if not from_hostname:
        if total is not None:
            raise ValueError(
                f"{total_name} = {total} is read only with {env_name('shard_from_hostname')}=true "
                f"(or set {shard_name} = INDEX/TOTAL)"
            )
        return UNSHARDED
    if total is None:
        raise ValueError(f"{hostname_name} needs {total_name}: the number of StatefulSet replicas")
    hostname = socket.gethostname()
    try:
        ordinal = ordinal_from_hostname(hostname)
    except ValueError as exc:
        raise ValueError(f"{hostname_name}: {exc}") from None
    if ordinal >= total:
        raise ValueError(
            f"{hostname_name}: the pod ordinal {ordinal} of host name {hostname!r} is not below "
            f"{total_name} = {total} (replicas and total must match; ordinals start at 0)"
        )
    return Shard(ordinal, total)


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings from all sources; raise ``ConfigError`` with one line naming the bad setting."""
    values = {key: value for key, value in (overrides or {}).items() if value is not None}
    file_values = _read_config_file(config_file, set(Settings.model_fields)) if config_file else {}

    class _SettingsWithFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _FileValuesSource(settings_cls, file_values))

    try:
        return _SettingsWithFile(**values)
    except ValidationError as exc:
        message, field = _describe_settings_error(exc)
        raise ConfigError(message, field=field) from None


def _describe_settings_error(exc: ValidationError) -> tuple[str, str]:
    """The one-line message for invalid settings, and the setting it names."""
    first = first_validation_error(exc)
    field = str(first.loc[0]) if first.loc else ""
    message = first.message
    if first.type == "missing":
        return f"missing setting {env_name(field)} ({field}): it is required", field
    if first.type == "extra_forbidden":
        return f"unknown setting {field!r}", field
    if not field:
        return f"invalid settings: {message}", field
    shown_input = first.input
    if field == "url" and isinstance(shown_input, str):
        shown_input = url_without_credentials(shown_input)
    shown = "" if field in _SECRET_FIELDS else f" = {_shown_value(shown_input)}"
    return f"invalid setting {env_name(field)} ({field}){shown}: {message}", field


def _shown_value(value: Any) -> str:
    text = repr(str(value) if isinstance(value, Path) else value)
    return text if len(text) <= 200 else text[:197] + "..."
