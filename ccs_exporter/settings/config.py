"""Settings: one model read from defaults, an optional YAML file, ``CCS_EXPORTER_*`` variables and CLI flags.

Precedence, lowest to highest: defaults, the YAML file (``--config``; keys are the field names in lower
case), environment variables, command-line flags. This is the only module that reads ``os.environ``.
Every invalid value becomes a ``ConfigError`` whose one-line message names the setting and the value,
except secrets, whose values are never shown.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from ccs_exporter.errors import ConfigError
from ccs_exporter.settings.checks import (
    check_ccs_url,
    check_password_text,
    check_writable_file,
    read_password_file,
    url_without_credentials,
)
from ccs_exporter.settings.config_file import ConfigFileValues, read_config_file
from ccs_exporter.settings.inputs import (
    FirstError,
    describe_validation_error,
    describe_yaml_error,
    first_validation_error,
    load_yaml_file,
    read_input_file,
    validation_errors,
)
from ccs_exporter.settings.values import (
    checked_job_id,
    checked_job_search,
    parse_cursor_paths,
    parse_job_ids,
    parse_job_searches,
)
from ccs_exporter.sharding import MAX_TOTAL_SHARDS, UNSHARDED, Shard, parse_shard, resolve_shard

__all__ = [  # the input helpers are shared with job specs and the web config
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
    "password_candidates",
    "read_input_file",
]

ENV_PREFIX = "CCS_EXPORTER_"
# No CCS answer we use comes near this; a bigger body is read no further and refused, so a broken or
# hostile server cannot make the exporter buffer gigabytes (8 MiB holds thousands of run messages).
_SECRET_FIELDS = frozenset({"password"})
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``job_ids`` -> ``CCS_EXPORTER_JOB_IDS``."""
    return f"{ENV_PREFIX}{field.upper()}"


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


NO_PASSWORD = f"no password: set {env_name('password')} or {env_name('password_file')}"


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
    # None: the client's own cap (``client.transport.MAX_RESPONSE_BYTES``, 8 MiB).
    max_response_bytes: int | None = Field(default=None, ge=64 * 1024, le=1024 * 1024 * 1024)
    status_metric: Literal["full", "sparse"] = "full"
    listen_address: str = "0.0.0.0:9879"
    audit_log: Path | None = None
    audit_signing_key_file: Path | None = None
    audit_export_cursors: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    web_config_file: Path | None = None
    log_format: Literal["json", "logfmt", "console", "auto"] = "auto"
    log_level: str = "info"
    shard: str | None = None
    shard_from_hostname: bool = False
    total_shards: int | None = None
    _shard: Shard = PrivateAttr(default=UNSHARDED)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        # `CCS_EXPORTER_CA_BUNDLE=` (or `ca_bundle: ""`) switches a setting off: its default applies, even
        # over the config file (an empty variable still overrides the file).
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if not (isinstance(value, str) and value == "")}
        return data

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

    @field_validator("listen_address", mode="before")
    @classmethod
    def _listen_address_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):  # `listen_address: 9879` in YAML
            raise ValueError(f"must be host:port, not a port alone: e.g. 0.0.0.0:{value} or [::]:{value}")
        return value

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
    def _resolve_shard(self) -> Settings:
        self._shard = resolve_shard(self.shard, self.shard_from_hostname, self.total_shards, env_name)
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
        if self.password_file is None:
            raise ConfigError(NO_PASSWORD, field="password")
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


def password_candidates(config_file: Path | None = None) -> list[str]:
    """Every password the operator may have set (variable, config file, password files), best effort.

    For scrubbing error text when a password was pasted into the wrong place (a job id, a setting, a
    key of the config file), even when the settings themselves could not be built. Never raises.
    """
    found: list[str] = []
    files: list[Any] = [os.environ.get(env_name("password_file"))]
    password = os.environ.get(env_name("password"))
    if password:
        found.append(password)
    if config_file is not None:
        try:
            loaded = load_yaml_file(config_file, "config", "config")
        except ConfigError:
            loaded = None
        if isinstance(loaded, dict):
            if isinstance(loaded.get("password"), str):
                found.append(loaded["password"])
            files.append(loaded.get("password_file"))
    for path in files:
        if isinstance(path, str) and path:
            with contextlib.suppress(ValueError, OSError):
                found.append(read_password_file(Path(path)))
    return found


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    require_password: bool = True,
) -> Settings:
    """Build the settings from all sources; raise ``ConfigError`` naming every bad setting, one line each.

    ``require_password=False`` (check-config without --connect) accepts settings with no password:
    the commands that log in refuse them then (``password_value``).
    """
    values = {key: value for key, value in (overrides or {}).items() if value is not None}
    file_values, problems = (
        read_config_file(config_file, set(Settings.model_fields)) if config_file else ({}, [])
    )

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
            return (init_settings, env_settings, ConfigFileValues(settings_cls, file_values))

    settings: Settings | None = None
    try:
        settings = _SettingsWithFile(**values)
    except ValidationError as exc:
        problems.extend(_describe_settings_errors(exc))
    if require_password and not _password_given(values, file_values):
        problems.append((NO_PASSWORD, "password"))
    if problems or settings is None:
        raise ConfigError.of(problems)
    return settings


def _password_given(values: dict[str, Any], file_values: dict[str, Any]) -> bool:
    """Whether a flag, a variable or the file gives a password or a password file (empty ones do not)."""
    names = ("password", "password_file")
    environment = {key.upper(): value for key, value in os.environ.items()}
    return any(
        value not in (None, "")
        for name in names
        for value in (values.get(name), environment.get(env_name(name)), file_values.get(name))
    )


def _describe_settings_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """A one-line message for each invalid setting, with the setting it names."""
    return [_describe_settings_error(error) for error in validation_errors(exc)]


def _describe_settings_error(error: FirstError) -> tuple[str, str]:
    """The one-line message for one invalid setting, and the setting it names."""
    field = str(error.loc[0]) if error.loc else ""
    message = error.message
    if error.type == "missing":
        return f"missing setting {env_name(field)} ({field}): it is required", field
    if error.type == "extra_forbidden":
        return f"unknown setting {field!r}", field
    if not field:
        return f"invalid settings: {message}", field
    shown_input = error.input
    if field == "url" and isinstance(shown_input, str):
        shown_input = url_without_credentials(shown_input)
    shown = "" if field in _SECRET_FIELDS else f" = {_shown_value(shown_input)}"
    return f"invalid setting {env_name(field)} ({field}){shown}: {message}", field


def _shown_value(value: Any) -> str:
    text = repr(str(value) if isinstance(value, Path) else value)
    return text if len(text) <= 200 else text[:197] + "..."
