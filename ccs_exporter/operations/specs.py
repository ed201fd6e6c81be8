"""Job specs and the other inputs of an operation: read, checked against the request models, named.

A spec (``jobs create -f``) or update details (``jobs update -f``) is JSON, or YAML for any other
extension; a bad one is a ``ConfigError`` naming the first bad field, before anything is recorded or sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ccs_exporter.errors import ConfigError
from ccs_exporter.settings.inputs import (
    describe_validation_error,
    first_validation_error,
    load_yaml_file,
    read_input_file,
)

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a job spec (JSON, or YAML for any other extension) into a mapping; ConfigError if unusable."""
    spec_path = Path(path)
    if spec_path.suffix.lower() == ".json":
        text = read_input_file(spec_path, "spec", "spec")
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"spec file {spec_path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})",
                field="spec",
            ) from None
    else:
        loaded = load_yaml_file(spec_path, "spec", "spec")
    if not isinstance(loaded, dict):
        raise ConfigError(f"spec file {spec_path}: must hold a JSON/YAML object (a mapping)", field="spec")
    return loaded


def validated(model: type[_ModelT], data: Mapping[str, Any], prefix: str) -> _ModelT:
    """``data`` checked against a request model; ConfigError naming the first bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'spec'}: must be an object (a mapping)", field=prefix or "spec")
    bad_text = _surrogate_path(data, prefix)
    if bad_text is not None:
        raise ConfigError(
            f"{bad_text or 'spec'}: holds a lone UTF-16 surrogate (such as \\udcff), which is not text "
            "CCS can store; write the character itself",
            field=bad_text,
        )
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        field = first_validation_error(exc, prefix).location
        raise ConfigError(describe_validation_error(exc, prefix), field=field) from None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _surrogate_path(value: Any, path: str) -> str | None:
    """The dotted path of the first key or string in ``value`` holding a lone surrogate, or None."""
    if isinstance(value, str):
        return path if _has_surrogate(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _has_surrogate(key):
                return path or "spec"
            found = _surrogate_path(item, child)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
