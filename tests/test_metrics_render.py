"""The directly written job exposition is byte for byte what prometheus_client makes of the families."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, generate_latest

from ccs_exporter.metrics import SnapshotCollector, render_snapshot
from ccs_exporter.snapshot import JobSnapshot, JobState, PollSnapshot, RunSummary

_AWKWARD_TEXT = (
    "Nightly PCI",
    'quote " and \\ backslash',
    "new\nline",
    "Prüfung 監査",
    "",
    "x" * 500,
    "bad \ud800 surrogate",
    "trailing \\",
)
_AWKWARD_NUMBERS = (0.0, 1.5, 1_790_000_000.123456, 1e22, 10**400, float("nan"), float("inf"), -3.0)


def _summary(rng: random.Random) -> RunSummary | None:
    if rng.random() < 0.2:
        return None
    maybe = lambda: rng.choice((None, *_AWKWARD_NUMBERS))  # noqa: E731
    return RunSummary(
        status_code=rng.choice((0, 1, 2, 4, 5, 7, 9, -1)),
        start_seconds=maybe(),
        end_seconds=maybe(),
        duration_seconds=maybe(),
        messages=tuple(sorted({rng.choice((*_AWKWARD_TEXT, "error", "warning")): rng.randint(0, 9)}.items())),
        total_runs=rng.choice((0, 3, 10**400)),
        last_success_seconds=maybe(),
        consecutive_failures=rng.randint(0, 5),
        running=rng.random() < 0.5,
    )


def _snapshot(seed: int, jobs: int) -> PollSnapshot:
    rng = random.Random(seed)
    states = []
    for index in range(jobs):
        job_id = f"00000000-0000-4000-8000-{index:012d}"
        data = None
        if rng.random() > 0.15:
            data = JobSnapshot(
                job_id=job_id,
                name=rng.choice(_AWKWARD_TEXT),
                job_type=rng.choice(("CHAINED_EVALUATIONJOB", "REPORTJOB", 'odd"type')),
                owner=rng.choice(_AWKWARD_TEXT),
                is_system=rng.random() < 0.3,
                last_run_status=rng.choice((0, 4, 5, 11)),
                modified_seconds=rng.choice((None, *_AWKWARD_NUMBERS)),
                runs=_summary(rng),
                read_at=rng.choice((1_999_999_990.25, 2_000_000_100.0, 0.0)),
            )
        states.append(JobState(job_id, data, poll_success=rng.random() < 0.8, error=None))
    return PollSnapshot(
        taken_at=2_000_000_000.0,
        jobs=tuple(states),
        up=True,
        last_success_at=None,
        cycle_seconds=1.0,
        cycles=2,
    )


class TestDirectRendering:
    """``render_snapshot`` writes the job series itself, for speed; the families are the reference."""

    def test_matches_the_prometheus_client_rendering_of_the_families(self) -> None:
        """Hostile names, missing data and absurd numbers render exactly as generate_latest renders them."""
        for seed in range(20):
            snapshot = _snapshot(seed, jobs=40)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(SnapshotCollector(snapshot))
            assert render_snapshot(snapshot) == generate_latest(registry), f"seed {seed}"

    def test_no_jobs_still_renders_every_family_header(self) -> None:
        """An empty job list gives the same headers-only families as the reference."""
        snapshot = _snapshot(0, jobs=0)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(snapshot))
        assert render_snapshot(snapshot) == generate_latest(registry)
