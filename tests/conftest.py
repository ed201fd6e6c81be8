"""Shared test fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

FIXTURES_DIR = Path(__file__).parent / "fixtures"


@pytest.fixture
def load_fixture() -> Callable[[str], Any]:
    """A function returning the parsed JSON of ``tests/fixtures/<name>``."""

    def load(name: str) -> Any:
        return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))

    return load


@pytest.fixture
def mocked_responses() -> Iterator[responses.RequestsMock]:
    """A ``responses`` mock that fails the test when a registered response is never requested."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock
