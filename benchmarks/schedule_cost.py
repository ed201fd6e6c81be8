"""What the schedule series cost a poll cycle: CPU per cycle at N jobs, by part, in this process.

    python benchmarks/schedule_cost.py               # 10,000 generated jobs (3 in 4 scheduled daily)
    python benchmarks/schedule_cost.py --jobs 1000 --repeat 3

The simulator's generated jobs give the Schedule blocks (as CCS would send them) and the job list; no
server runs and nothing is sent anywhere. Printed, as CPU seconds (``time.process_time``, best and median
of ``--repeat`` runs): deriving every job's schedule (the first cycle, or a cycle after every job
changed), the per-cycle check that a job's Schedule block is unchanged (its fingerprint), and the
rendering of a snapshot with and without schedules (the occurrences computed for now and the four
families written). Compare with the whole steady-state cycle in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import structlog  # noqa: E402

from ccs_exporter.exposition.renderer import render_snapshot  # noqa: E402
from ccs_exporter.models import JobSchedule  # noqa: E402
from ccs_exporter.polling.schedule_reading import ScheduleReading  # noqa: E402
from ccs_exporter.polling.snapshot import JobSnapshot, JobState, PollSnapshot  # noqa: E402
from ccs_exporter.simulator.samples import generated_jobs  # noqa: E402


def _cpu(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best and median CPU seconds of ``action`` over ``repeat`` runs."""
    spent = []
    for _ in range(repeat):
        started = time.process_time()
        action()
        spent.append(time.process_time() - started)
    return min(spent), statistics.median(spent)


def _snapshot(ids: list[str], readings: dict[str, ScheduleReading], with_schedules: bool) -> PollSnapshot:
    now = time.time()
    states = tuple(
        JobState(
            job_id,
            JobSnapshot(
                job_id=job_id,
                name="Generated job",
                job_type="COLLECTIONJOB",
                owner="CCS\\demo",
                is_system=False,
                last_run_status=4,
                modified_seconds=now,
                runs=None,
                schedule=readings[job_id].known_schedule if with_schedules else None,
                run_time_limit_seconds=readings[job_id].known_run_time_limit if with_schedules else None,
            ),
            poll_success=True,
            read_at=now,
        )
        for job_id in ids
    )
    return PollSnapshot(taken_at=now, jobs=states, up=True, last_success_at=now, cycle_seconds=1.0, cycles=2)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # no per-job info lines

    jobs = generated_jobs(args.jobs, "CCS\\demo", random.Random(0))
    ids = [job.job_id for job in jobs]
    blocks = [
        JobSchedule.model_validate(job.config["Schedule"]) if job.config is not None else None for job in jobs
    ]
    readings: dict[str, ScheduleReading] = {}

    def derive_all() -> None:
        for job_id, block in zip(ids, blocks, strict=True):
            readings[job_id] = ScheduleReading.of(job_id, block, None)

    def check_all() -> None:
        for job_id, block in zip(ids, blocks, strict=True):
            ScheduleReading.of(job_id, block, readings[job_id])

    derive = _cpu(derive_all, args.repeat)
    check = _cpu(check_all, args.repeat)
    scheduled = sum(1 for reading in readings.values() if reading.known_schedule is not None)
    plain, with_schedules = _snapshot(ids, readings, False), _snapshot(ids, readings, True)
    render_plain = _cpu(lambda: render_snapshot(plain), args.repeat)
    render_schedules = _cpu(lambda: render_snapshot(with_schedules), args.repeat)
    added_bytes = len(render_snapshot(with_schedules)) - len(render_snapshot(plain))

    rows = [
        ("derive every schedule (first cycle)", derive),
        ("unchanged-block check, every cycle", check),
        ("render without schedules", render_plain),
        ("render with schedules", render_schedules),
        (
            "render: added by schedules",
            tuple(b - a for a, b in zip(render_plain, render_schedules, strict=True)),
        ),
    ]
    print(f"{args.jobs:,} jobs, {scheduled:,} with a known schedule; CPU s, best / median of {args.repeat}")
    for label, (best, median) in rows:
        print(f"| {label:<38} | {best:7.3f} | {median:7.3f} |")
    per_cycle = check[1] + render_schedules[1] - render_plain[1]
    print(f"added per steady-state cycle (median): {per_cycle:.3f} s; exposition +{added_bytes / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
