"""Test helper: validate exported events against the official OCSF and ECS schema artefacts.

OCSF: the schema.ocsf.io export of OCSF 1.5.0 shipped by the ``ocsf-json-schema`` package (test extra),
turned into a JSON Schema (draft 2020-12, ``additionalProperties: false``) by that package. ECS: the
``EcsFlat`` field definitions of npm ``@elastic/ecs`` (installed by ``.ci/install-ecs-schema.sh``), read
with node. No field name is listed here by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ECS_PACKAGE = REPO_ROOT / ".tools" / "ecs-schema" / "node_modules" / "@elastic" / "ecs"


@cache
def ocsf_validator(version: str, class_name: str) -> Any:
    """A jsonschema validator of one OCSF class, with the class's schema as the package builds it."""
    from jsonschema import Draft202012Validator
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version)).get_class_schema(
        class_name, profiles=[]
    )
    return Draft202012Validator(schema)


@cache
def ocsf_schema(version: str) -> Any:
    """The OCSF schema export (classes, objects, enums with captions) of ``version``."""
    from ocsf_json_schema import get_ocsf_schema

    return get_ocsf_schema(version=version)


def ocsf_problems(event: Mapping[str, Any], version: str) -> list[str]:
    """Every way ``event`` breaks OCSF ``version`` (its class found by ``class_uid``)."""
    schema = ocsf_schema(version)
    classes = {spec["uid"]: name for name, spec in schema["classes"].items()}
    class_name = classes.get(event.get("class_uid"))
    if class_name is None:
        return [f"class_uid {event.get('class_uid')} is no class of OCSF {version}"]
    validator = ocsf_validator(version, class_name)
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(event)]
    attributes = schema["classes"][class_name]["attributes"]
    for name in ("activity_id", "severity_id", "status_id"):
        caption_field = name[:-3] + ("_name" if name == "activity_id" else "")
        value = event.get(name)
        enum = attributes.get(name, {}).get("enum", {})
        if value is not None and value != 99 and caption_field in event:
            caption = enum.get(str(value), {}).get("caption")
            if event[caption_field] != caption:
                problems.append(f"{caption_field} {event[caption_field]!r} is not the caption {caption!r}")
    if event.get("type_uid") != event.get("class_uid", 0) * 100 + event.get("activity_id", -1):
        problems.append("type_uid is not class_uid * 100 + activity_id")
    return problems


def ecs_flat_or_skip(require: Any) -> dict[str, Any]:
    """The ECS field definitions; a missing install skips the test (fails it in CI)."""
    if not (ECS_PACKAGE / "package.json").is_file() or shutil.which("node") is None:
        require("ecs-schema")  # skips with the hint, or fails in CI
    return ecs_flat()


@cache
def ecs_flat() -> dict[str, Any]:
    """``EcsFlat`` of the installed @elastic/ecs: every ECS field by dotted name."""
    script = (
        "const e=require(process.argv[1]);process.stdout.write(JSON.stringify({v:e.EcsVersion,f:e.EcsFlat}))"
    )
    out = subprocess.run(
        ["node", "-e", script, str(ECS_PACKAGE / "build" / "commonjs" / "index.js")],
        check=True,
        capture_output=True,
        env={**os.environ, "NODE_OPTIONS": ""},
    ).stdout
    data = json.loads(out)
    return {"version": data["v"], "fields": data["f"]}


_TYPES: dict[str, tuple[type, ...]] = {
    "keyword": (str,),
    "constant_keyword": (str,),
    "wildcard": (str,),
    "match_only_text": (str,),
    "text": (str,),
    "ip": (str,),
    "date": (str,),
    "long": (int,),
    "integer": (int,),
    "short": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "flattened": (dict,),
}


def _leaves(value: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            yield from _leaves(item, f"{name}.")
        else:
            yield name, item


def ecs_problems(event: Mapping[str, Any], custom: str) -> list[str]:
    """Every way ``event`` breaks ECS: unknown fields outside the ``custom`` namespace, wrong types,
    values outside a field's allowed values, a scalar where ECS expects an array, a missing required field,
    an event.type that its event.category does not expect."""
    ecs = ecs_flat()
    fields: dict[str, Any] = ecs["fields"]
    problems = [
        f"{name} is required"
        for name, spec in fields.items()
        if spec.get("required") and name not in _flat(event)
    ]
    if any(name.split(".")[0] == custom for name in fields):
        problems.append(f"{custom} is an ECS field set: custom fields would collide")
    for name, value in _leaves(event):
        if name.split(".")[0] == custom:
            continue
        spec = fields.get(name)
        if spec is None:
            problems.append(f"{name} is not an ECS {ecs['version']} field")
            continue
        problems.extend(_value_problems(name, spec, value))
    problems.extend(_pairing_problems(event, fields))
    return problems


def _flat(event: Mapping[str, Any]) -> dict[str, Any]:
    return dict(_leaves(event))


def _value_problems(name: str, spec: Mapping[str, Any], value: Any) -> list[str]:
    problems = []
    is_array = "array" in spec.get("normalize", [])
    if is_array and not isinstance(value, list):
        problems.append(f"{name} must be an array")
    values = value if isinstance(value, list) else [value]
    expected = _TYPES.get(spec["type"], (object,))
    for item in values:
        if not isinstance(item, expected) or (isinstance(item, bool) and bool not in expected):
            problems.append(f"{name}: {item!r} is not of ECS type {spec['type']}")
        allowed = [entry["name"] for entry in spec.get("allowed_values") or []]
        if allowed and item not in allowed:
            problems.append(f"{name}: {item!r} is not one of its allowed values")
    return problems


def _pairing_problems(event: Mapping[str, Any], fields: Mapping[str, Any]) -> list[str]:
    """event.type values that none of the event's categories lists among its expected types."""
    categories = event.get("event", {}).get("category", [])
    types = event.get("event", {}).get("type", [])
    expected = {
        item
        for entry in fields["event.category"]["allowed_values"]
        if entry["name"] in categories
        for item in entry.get("expected_event_types") or []
    }
    return [
        f"event.type {kind!r} is not expected for event.category {categories}"
        for kind in types
        if kind not in expected
    ]
