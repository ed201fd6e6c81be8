"""What a cycle does for each job: the plan, from the watch list, the searches' listing and the book.

Watched jobs are the union of the configured job ids and what the searches found, narrowed by the one
ownership filter (sharding). A job listed by a search needs no request of its own; a configured job no
search listed is read by id; a discovered job that left every search result is looked up once by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ccs_exporter.client import CcsClient
from ccs_exporter.errors import CcsError
from ccs_exporter.polling.book import JobBook
from ccs_exporter.polling.discovery import Discovery, WatchList
from ccs_exporter.polling.snapshot import JobChange, epoch
from ccs_exporter.polling.work import (
    KeepStale,
    LookUpLeaving,
    ParseItem,
    Plan,
    ReadById,
    ReportBad,
    ReuseReading,
    WorkItem,
)

# A job whose JobCreationTime is this much older than the previous complete listing still counts as
# created since then: clocks of CCS and of the exporter may disagree.
CREATION_CLOCK_SKEW_SECONDS = 300.0

Owned = Callable[[Iterable[str]], list[str]]
"""The jobs this process watches, of the given ones, in order."""


def plan_cycle(watch: WatchList, discovery: Discovery | None, book: JobBook, owned: Owned) -> Plan:
    """This cycle's work: configured and discovered jobs (owned ones), and discovered jobs leaving."""
    if discovery is None:
        # No listing this cycle (no searches, no login, stopping): the jobs found before stay.
        kept = [job_id for job_id in book.watched if job_id in book.discovered] if watch.searches else []
        watched = owned(dict.fromkeys([*watch.job_ids, *kept]))
        discovered = book.discovered if watch.searches else frozenset()
        return Plan(tuple(ReadById(job_id) for job_id in watched), tuple(watched), discovered)
    configured = set(watch.job_ids)
    found = discovery.job_ids()
    watched = owned(dict.fromkeys([*watch.job_ids, *found]))
    items = [_work_for(job_id, discovery, configured, book) for job_id in watched]
    present = configured.union(found)
    leaving = [job_id for job_id in owned(book.discovered - present - discovery.forgotten) if job_id in book]
    items += [LookUpLeaving(job_id) for job_id in sorted(leaving)]
    return Plan(tuple(items), tuple(watched), frozenset(found))


def _work_for(job_id: str, discovery: Discovery, configured: set[str], book: JobBook) -> WorkItem:
    if job_id in discovery.fresh:
        item = discovery.fresh[job_id]
        return ReuseReading(job_id) if book.holds_reading(job_id, item.digest) else ParseItem(job_id, item)
    if job_id in configured:
        return ReadById(job_id)  # no search returned it: search by id
    if job_id in discovery.bad:
        return ReportBad(job_id, discovery.bad[job_id])
    return KeepStale(job_id, discovery.stale[job_id])


def created_jobs(
    client: CcsClient, discovery: Discovery, watched: Sequence[str], before: Iterable[str]
) -> list[JobChange]:
    """Jobs new to the watch whose JobCreationTime is after a previous complete listing that missed them.

    A search's first complete listing is its baseline: jobs found then are not reported.
    """
    known = set(before)
    created: list[JobChange] = []
    for job_id in watched:
        item = discovery.fresh.get(job_id)
        since = discovery.listed_since.get(job_id)
        if item is None or since is None or job_id in known:
            continue
        try:
            job = client.search_item_job(item)
        except CcsError:
            continue  # its work item reports the unreadable item
        created_at = epoch(job.JobProperties.JobCreationTime)
        if created_at is not None and created_at >= since - CREATION_CLOCK_SKEW_SECONDS:
            created.append(JobChange(job_id, None, job))
    return created
