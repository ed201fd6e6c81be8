"""Writes ccs-exporter.rules.yml with your scrape-job selector and runbook address (standard library only).

    python3 prometheus/render_rules.py --selector 'job="ccs-exporter-prod"' > ccs-exporter.rules.yml
    python3 prometheus/render_rules.py --selector 'job=~"ccs-.*",env="prod"' \
        --runbook-url https://wiki.example.com/ccs/runbooks.md

Every selector of an exporter metric in the shipped file carries the default matcher job=~".*ccs.*"; this
replaces it everywhere (the Helm chart does the same with prometheusRule.scrapeJobSelector). The shipped
file stays the one the unit tests run on; check what you render with `promtool check rules`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

RULES_FILE = Path(__file__).resolve().parent / "ccs-exporter.rules.yml"
DEFAULT_SELECTOR = 'job=~".*ccs.*"'
DEFAULT_RUNBOOK_URL = "https://github.com/ccs-exporter/ccs-exporter/blob/main/docs/runbooks.md"
# One or more label matchers, as they go inside {...}: name, operator, double-quoted value.
_MATCHERS = re.compile(
    r'^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"'
    r'(\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*")*\s*$'
)


def render(rules: str, selector: str, runbook_url: str) -> str:
    """The rules text with the default selector and runbook address replaced."""
    selector = selector.strip().removeprefix("{").removesuffix("}").strip()
    if not _MATCHERS.match(selector):
        raise ValueError(f'--selector {selector!r}: expected label matchers such as job="ccs-exporter"')
    if DEFAULT_SELECTOR not in rules or DEFAULT_RUNBOOK_URL not in rules:
        raise ValueError("the rules file holds neither the default selector nor the default runbook address")
    return rules.replace(DEFAULT_SELECTOR, selector).replace(DEFAULT_RUNBOOK_URL, runbook_url.rstrip("#"))


def main(argv: list[str] | None = None) -> int:
    """Prints the rendered rules; exit code 2 with one line on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--selector", default=DEFAULT_SELECTOR, help=f"label matchers (default {DEFAULT_SELECTOR})"
    )
    parser.add_argument(
        "--runbook-url", default=DEFAULT_RUNBOOK_URL, help="address of docs/runbooks.md (#<alert> is added)"
    )
    parser.add_argument("rules", nargs="?", type=Path, default=RULES_FILE, help="rules file to read")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.rules.read_text(encoding="utf-8"), args.selector, args.runbook_url))
    except (OSError, ValueError) as exc:
        print(f"render_rules.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
