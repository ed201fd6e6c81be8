"""The ``--config`` YAML file as a source of settings: read once, unknown keys reported, values handed on.

``read_config_file`` reads the file (a mapping of setting names in lower case to values) and says which
keys are no setting; ``ConfigFileValues`` hands the values it read to pydantic-settings, which ranks
them below environment variables and flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from ccs_exporter.errors import ConfigError
from ccs_exporter.settings.inputs import load_yaml_file


class ConfigFileValues(PydanticBaseSettingsSource):
    """Values already read from the ``--config`` YAML file."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def read_config_file(path: Path, known: set[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The file's settings, and a (message, key) problem for each key that is no setting."""
    loaded = load_yaml_file(path, "config", "config")
    if loaded is None:
        return {}, []
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: must be a mapping of setting names to values", field="config")
    values: dict[str, Any] = {}
    unknown: list[tuple[str, str]] = []
    for key, value in loaded.items():
        name = str(key)
        if name not in known:
            unknown.append(
                (
                    f"config file {path}: unknown key {name!r} (keys are the setting names in lower case, "
                    "e.g. job_ids)",
                    name,
                )
            )
            continue
        values[name] = value
    return values, unknown
