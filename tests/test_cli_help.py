"""Every command's --help stands alone: where the password comes from, every setting's variable, the
settings that have no flag, and what each positional argument is."""

from __future__ import annotations

import argparse
import re

import pytest

from ccs_exporter.cli import build_parser
from ccs_exporter.settings.config import Settings, env_name

# Settings no command has a flag for: --help must say they come from a variable or --config only.
WITHOUT_ANY_FLAG = (
    "password",
    "job_search",
    "status_metric",
    "max_response_bytes",
    "shard",
    "shard_from_hostname",
    "total_shards",
    "audit_signing_key_file",
)
# Commands that read no settings at all; their help says so instead.
READ_NO_SETTINGS = {"simulate", "audit verify", "audit keygen", "audit export"}


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser (those without sub-commands), by its words, e.g. ``jobs runs``."""
    found: dict[str, argparse.ArgumentParser] = {}
    subs = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subs:
        found[" ".join(prefix)] = parser
    for action in subs:
        for name, child in action.choices.items():
            found.update(commands(child, (*prefix, name)))
    return found


ALL = commands(build_parser())


def help_of(words: str) -> str:
    return ALL[words].format_help()


def test_the_walk_finds_every_command() -> None:
    """The walk sees the commands a user knows (so the checks below cannot pass on an empty list)."""
    assert {"serve", "check-config", "demo", "jobs get", "jobs runs", "jobs update", "audit verify"} <= set(
        ALL
    )
    assert len(ALL) >= 16


@pytest.mark.parametrize("words", sorted(set(ALL) - READ_NO_SETTINGS))
def test_help_says_where_the_password_comes_from(words: str) -> None:
    """The variable, the flag and the config keys for the password are all named; no --password flag."""
    text = " ".join(help_of(words).split())
    for source in (
        "$CCS_EXPORTER_PASSWORD,",
        "--password-file",
        "$CCS_EXPORTER_PASSWORD_FILE",
        "password_file",
    ):
        assert source in text, f"{words}: {source}"
    assert "There is no --password flag" in text


@pytest.mark.parametrize("words", sorted(set(ALL) - READ_NO_SETTINGS))
def test_help_names_every_setting_variable(words: str) -> None:
    """Each setting's CCS_EXPORTER_ variable has a row saying its flag here, or that it has none."""
    text = help_of(words)
    for name in Settings.model_fields:
        rows = [line for line in text.splitlines() if re.match(rf"^  {env_name(name)}\s", line)]
        assert len(rows) == 1, f"{words}: no row for {env_name(name)}"
        how = rows[0].split(maxsplit=1)[1]
        if name in WITHOUT_ANY_FLAG and how != "set by this command":  # demo gives its own password
            assert how.startswith("env/config only"), f"{words}: {rows[0]}"
        else:
            assert how.startswith("--") or how.startswith("env/config only") or how == "set by this command"


@pytest.mark.parametrize("words", sorted(READ_NO_SETTINGS))
def test_commands_without_settings_say_so(words: str) -> None:
    """A command that reads no setting says so rather than listing variables it ignores."""
    assert "this command reads none" in help_of(words)


@pytest.mark.parametrize("words", ["serve", "check-config"])
def test_exporter_flags_shown_in_the_table(words: str) -> None:
    """On serve, settings with a flag show it (e.g. --job-ids), so env/config only is not said of them."""
    text = help_of(words)
    assert re.search(r"^  CCS_EXPORTER_JOB_IDS\s+--job-ids$", text, re.MULTILINE)
    assert re.search(r"^  CCS_EXPORTER_JOB_SEARCH\s+env/config only", text, re.MULTILINE)


@pytest.mark.parametrize("words", sorted(ALL))
def test_every_positional_argument_is_explained(words: str) -> None:
    """Each positional argument (JOB_ID, RUN_ID, FILE...) has a help text, in upper case in the usage."""
    for action in ALL[words]._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            assert action.help, f"{words}: {action.dest} has no help"
            assert action.metavar and str(action.metavar).isupper(), f"{words}: {action.dest}"


def test_update_file_is_called_details() -> None:
    """`jobs update -f DETAILS`, as the docs write it; `jobs create -f SPEC`."""
    assert "-f DETAILS" in help_of("jobs update")
    assert "-f SPEC" in help_of("jobs create")


def test_log_levels_include_critical() -> None:
    """The log level list names critical, which the setting accepts."""
    assert "critical" in " ".join(help_of("serve").split())
