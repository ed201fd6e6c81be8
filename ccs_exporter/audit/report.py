"""The text ``audit verify`` prints: a one-line verdict when all is well, else one line per problem."""

from __future__ import annotations

from dataclasses import dataclass

from ccs_exporter.audit.verify import Finding, VerifyResult
from ccs_exporter.audit.witness import WitnessReport, utc

# Problems printed in full; the rest are counted (the result keeps up to MAX_FINDINGS of them).
MAX_PRINTED = 200


@dataclass(frozen=True)
class VerifyReport:
    """The verdict of ``audit verify``: the lines for stdout (all well) or stderr (problems)."""

    ok: bool
    lines: tuple[str, ...]


def verify_report(
    name: str,
    result: VerifyResult,
    *,
    checked_signatures: bool,
    witness_url: str | None = None,
    witness: WitnessReport | None = None,
) -> VerifyReport:
    """The lines that tell a user what ``verify`` and the witness found in the log called ``name``."""
    findings = sorted(
        [*result.findings, *(witness.findings if witness else ())],
        key=lambda finding: (finding.line is None, finding.line or 0),
    )
    unlisted = result.unlisted_findings + (witness.unlisted_findings if witness else 0)
    if not findings and not unlisted:
        return VerifyReport(True, (_intact(name, result, checked_signatures, witness_url, witness),))
    lines = [_finding_line(name, finding) for finding in findings[:MAX_PRINTED]]
    more = unlisted + max(0, len(findings) - MAX_PRINTED)
    if more:
        lines.append(f"{name}: and {more} more problems")
    count = len(findings) + unlisted
    intents = result.open_intents
    lines.append(
        f"{name}: {count} problem{_s(count)} in {result.records} records ({intents} open intent{_s(intents)})"
    )
    if witness is not None and len(witness.series) > 1 and witness.findings:
        lines.append(
            f"{name}: the witness selector matched {len(witness.series)} series; if they are different "
            'logs, narrow it with --witness-selector (e.g. instance="...")'
        )
    return VerifyReport(False, tuple(lines))


def _finding_line(name: str, finding: Finding) -> str:
    where = f"line {finding.line}: " if finding.line is not None else ""
    return f"{name}: {where}{finding.problem}"


def _intact(
    name: str,
    result: VerifyResult,
    checked_signatures: bool,
    witness_url: str | None,
    witness: WitnessReport | None,
) -> str:
    text = f"{name}: intact ({result.records} records)"
    if result.signed:
        checked = "checked" if checked_signatures else "not checked: give --public-key"
        text += f"; {result.signed} signed ({checked})"
    if witness is not None and witness.first_seen is not None and witness.last_seen is not None:
        text += (
            f"; witnessed by {witness_url}: {witness.scrapes} scrapes from {utc(witness.first_seen)} to "
            f"{utc(witness.last_seen)} agree, up to sequence {witness.highest_sequence}"
        )
        if result.last_sequence > witness.highest_sequence:
            text += " (records after it were not scraped in the time checked)"
        if witness.unpaired:
            text += f"; {witness.unpaired} samples without their pair were left out"
    return text


def _s(count: int) -> str:
    return "" if count == 1 else "s"
