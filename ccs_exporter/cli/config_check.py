"""What ``ccs-exporter check-config`` reports: the settings without secrets, and what ``--connect`` reached.

The summary never shows the password (only whether one is set) nor credentials in a URL. The probe is the
only part that talks to CCS, through the client it is handed: one login, then one job by id or one page of
the first job search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ccs_exporter.cli.output import render
from ccs_exporter.client import CcsClient
from ccs_exporter.errors import CcsError
from ccs_exporter.polling.loop import NOTHING_TO_WATCH
from ccs_exporter.redaction import scrub_text
from ccs_exporter.settings.checks import url_without_credentials
from ccs_exporter.settings.config import NO_PASSWORD, Settings, env_name
from ccs_exporter.web.config import WebConfig, load_web_config

# Settings whose value is never shown, only whether it is set.
_SECRET_SETTINGS = frozenset({"password"})
_MAX_LISTED = 5


@dataclass(frozen=True)
class ProbeStep:
    """One thing ``--connect`` tried: what, whether it worked, and what it found (or the one-line error)."""

    what: str
    ok: bool
    detail: str


def findings(settings: Settings) -> list[str]:
    """What is valid but will not work as probably meant: no password, nothing to watch (warnings)."""
    found: list[str] = []
    if settings.password is None and settings.password_file is None:
        found.append(f"{NO_PASSWORD}: serve, the jobs commands and --connect need one")
    if not settings.job_ids and not settings.job_search:
        found.append(f"nothing to watch: {NOTHING_TO_WATCH}")
    return found


def check_config(
    settings: Settings, *, config_file: Path | None, connect: bool, out: TextIO, warnings: int
) -> list[ProbeStep]:
    """Load the web config and print the summary to ``out``; with ``connect``, probe CCS and print that too.

    Raises ``ConfigError`` for a bad web config (nothing is printed then); returns the probe's steps.
    """
    web_config = load_web_config(settings.web_config_file) if settings.web_config_file else None
    counted = f", with {warnings} warning(s) (on stderr)" if warnings else ""
    out.write(f"configuration is valid{f' ({config_file})' if config_file else ''}{counted}\n")
    out.write(render(["SETTING", "VALUE"], settings_summary(settings, web_config)))
    if not connect:
        return []
    with CcsClient.from_settings(settings) as client:
        steps = probe(client, settings)
    results = [(step.what, f"{'ok' if step.ok else 'FAILED'}: {step.detail}") for step in steps]
    out.write("\n" + render(["CHECK", "RESULT"], results))
    return steps


def settings_summary(settings: Settings, web_config: WebConfig | None) -> list[tuple[str, str]]:
    """(environment variable, value shown) for every setting; ``(default)`` marks values nobody set."""
    rows: list[tuple[str, str]] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        shown = _shown(name, value)
        if name == "web_config_file" and value is not None and web_config is not None:
            shown = f"{shown}: {describe_web_config(web_config)}"
        if name not in settings.model_fields_set and name not in _SECRET_SETTINGS:
            shown = f"{shown} (default)"
        rows.append((env_name(name), shown))
    return rows


def describe_web_config(web_config: WebConfig) -> str:
    """E.g. ``TLS (client certificates: NoClientCert), basic auth for 2 user(s)``."""
    tls = web_config.tls_server_config
    parts = ["plain HTTP" if tls is None else f"TLS (client certificates: {tls.client_auth_type})"]
    users = len(web_config.basic_auth_users or {})
    parts.append(f"basic auth for {users} user(s)" if users else "no basic auth")
    return ", ".join(parts)


def probe(client: CcsClient, settings: Settings) -> list[ProbeStep]:
    """Log in, then read one page: the first search's first page if searches are set, else the first job.

    Stops at the first failure, which is the last step (``ok`` false, the error's one line as detail).
    """
    steps: list[ProbeStep] = []

    def attempt(what: str, action: Callable[[], str]) -> bool:
        try:
            steps.append(ProbeStep(what, True, action()))
        except CcsError as exc:
            steps.append(ProbeStep(what, False, " ".join(str(exc).split())))
            return False
        return True

    def login() -> str:
        client.authenticate()
        return f"logged in as {settings.username}"

    if not attempt("login", login):
        return steps
    if settings.job_search:
        expression = settings.job_search[0]

        def search_page() -> str:
            page = client.search_jobs(expression, page=0, page_size=settings.search_page_size)
            readable = 0
            for item in page.items:
                try:
                    client.search_item_job(item)
                    readable += 1
                except CcsError:
                    pass
            unread = page.size - readable
            unreadable = f", {unread} unreadable" if unread else ""
            return f"{readable} job(s) on the first page{unreadable}"

        attempt(f"search {scrub_text(expression)!r}, page 0", search_page)
    elif settings.job_ids:
        job_id = settings.job_ids[0]
        attempt(f"job {job_id}", lambda: f"readable: {client.get_job(job_id).JobProperties.Name!r}")
    else:
        steps.append(ProbeStep("jobs", True, "none configured: only the login was checked"))
    return steps


def _shown(name: str, value: Any) -> str:
    if name in _SECRET_SETTINGS:
        return "unset" if value is None else "set"
    if value is None:
        return "unset"
    if name == "url":
        return url_without_credentials(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return _listed([scrub_text(str(item)) for item in value])
    return scrub_text(str(value))


def _listed(items: list[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:_MAX_LISTED])
    more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"{len(items)}: {shown}{more}"
