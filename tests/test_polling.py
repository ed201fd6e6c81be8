"""The poll cycle's parts on their own: the plan of a cycle, which work sends requests, the book's memory."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ccs_exporter.client import SearchItem
from ccs_exporter.polling.book import JobBook
from ccs_exporter.polling.discovery import Discovery, StaleJob, WatchList
from ccs_exporter.polling.plan import plan_cycle
from ccs_exporter.polling.reading import JobReader
from ccs_exporter.polling.snapshot import JobSnapshot
from ccs_exporter.polling.work import (
    JobMemory,
    KeepStale,
    LookUpLeaving,
    Outcome,
    ParseItem,
    Plan,
    ReadById,
    ReportBad,
    ReuseReading,
)

CONFIGURED = "11111111-1111-1111-1111-111111111111"
FOUND = "22222222-2222-2222-2222-222222222222"
STALE = "33333333-3333-3333-3333-333333333333"
BAD = "44444444-4444-4444-4444-444444444444"
LEFT = "55555555-5555-5555-5555-555555555555"


def every(job_ids: Iterable[str]) -> list[str]:
    return list(job_ids)


def item(job_id: str, digest: bytes = b"d1") -> SearchItem:
    return SearchItem(job_id, digest, b"{}")


def snapshot(job_id: str, status: int = 4) -> JobSnapshot:
    return JobSnapshot(job_id, "Nightly", "COLLECTIONJOB", "CCS\\owner", False, status, 0.0, None)


def discovery(**fresh: SearchItem) -> Discovery:
    return Discovery(fresh=dict(fresh), bad={}, stale={}, searches=(), reached_ccs=True)


def book_after(plan: Plan, outcomes: list[Outcome | None]) -> JobBook:
    book = JobBook()
    book.apply(plan, outcomes, quiet=True)
    return book


class TestPlan:
    """Each watched job gets the one kind of work its situation calls for."""

    def test_without_searches_every_configured_job_is_read_by_id(self) -> None:
        """A configured job with no search is read by id, in configured order."""
        plan = plan_cycle(WatchList((CONFIGURED, FOUND)), None, JobBook(), every)
        assert plan.items == (ReadById(CONFIGURED), ReadById(FOUND))

    def test_listed_jobs_are_parsed_and_unlisted_configured_ones_read_by_id(self) -> None:
        """A job a search listed is parsed from its item; a configured job it did not list is read by id."""
        watch = WatchList((CONFIGURED,), ("(JobType = COLLECTIONJOB)",))
        found = item(FOUND)
        plan = plan_cycle(watch, discovery(**{FOUND: found}), JobBook(), every)
        assert plan.items == (ReadById(CONFIGURED), ParseItem(FOUND, found))
        assert plan.discovered == frozenset({FOUND})

    def test_an_item_already_read_is_reused_and_a_changed_one_parsed(self) -> None:
        """The item the last reading came from needs no parsing; another digest does."""
        watch = WatchList((), ("(JobType = COLLECTIONJOB)",))
        first = plan_cycle(watch, discovery(**{FOUND: item(FOUND)}), JobBook(), every)
        read = Outcome(FOUND, JobMemory(snapshot=snapshot(FOUND), digest=b"d1"), None)
        book = book_after(first, [read])
        same = plan_cycle(watch, discovery(**{FOUND: item(FOUND, b"d1")}), book, every)
        changed = plan_cycle(watch, discovery(**{FOUND: item(FOUND, b"d2")}), book, every)
        assert same.items == (ReuseReading(FOUND),)
        assert changed.items == (ParseItem(FOUND, item(FOUND, b"d2")),)

    def test_failing_search_keeps_its_jobs_stale_and_bad_items_are_reported(self) -> None:
        """A job of a failed search keeps its values; an unreadable item is reported, not read."""
        stale = StaleJob("unavailable", "CCS did not answer", reached_ccs=False)
        found = Discovery({}, {BAD: "not an object"}, {STALE: stale}, (), True)
        plan = plan_cycle(WatchList((), ("(JobType = COLLECTIONJOB)",)), found, JobBook(), every)
        assert set(plan.items) == {KeepStale(STALE, stale), ReportBad(BAD, "not an object")}

    def test_a_discovered_job_that_left_every_search_is_looked_up_once(self) -> None:
        """A job found last cycle and listed by no search now is looked up by id, after the watched jobs."""
        watch = WatchList((), ("(JobType = COLLECTIONJOB)",))
        first = plan_cycle(watch, discovery(**{LEFT: item(LEFT)}), JobBook(), every)
        book = book_after(first, [Outcome(LEFT, JobMemory(snapshot=snapshot(LEFT)), None)])
        plan = plan_cycle(watch, discovery(**{FOUND: item(FOUND)}), book, every)
        assert plan.items == (ParseItem(FOUND, item(FOUND)), LookUpLeaving(LEFT))
        assert plan.watched == (FOUND,)

    def test_ownership_narrows_the_watched_jobs(self) -> None:
        """Jobs another shard owns are neither planned nor watched."""
        plan = plan_cycle(
            WatchList((CONFIGURED, FOUND)), None, JobBook(), lambda ids: [i for i in ids if i == FOUND]
        )
        assert plan.items == (ReadById(FOUND),) and plan.watched == (FOUND,)


class TestNeedsRequest:
    """Only work that must ask CCS goes to the worker threads."""

    @pytest.mark.parametrize(
        ("work", "reading", "expected"),
        [
            (KeepStale(FOUND, StaleJob("e", "m", True)), None, False),
            (ReportBad(FOUND, "bad"), None, False),
            (ReadById(FOUND), snapshot(FOUND), True),
            (LookUpLeaving(FOUND), snapshot(FOUND), True),
            (ReuseReading(FOUND), None, True),
            (ReuseReading(FOUND), snapshot(FOUND, status=2), True),
        ],
    )
    def test_which_work_sends_a_request(
        self, work: object, reading: JobSnapshot | None, expected: bool
    ) -> None:
        """Stale and bad jobs send nothing; reads, look-ups and a reused job whose run is still going do."""
        assert JobReader.needs_request(work, reading) is expected  # type: ignore[arg-type]


class TestBook:
    """The book remembers the last good values and forgets jobs no longer watched."""

    def test_a_failure_keeps_the_last_good_reading_and_a_404_drops_it(self) -> None:
        """A failed read keeps the values with the error; a job that is gone loses them."""
        plan = Plan((ReadById(FOUND),), (FOUND,), frozenset())
        book = book_after(plan, [Outcome(FOUND, JobMemory(snapshot=snapshot(FOUND)), None)])
        (failed,) = book.apply(plan, [Outcome(FOUND, None, "unavailable", reached_ccs=False)], quiet=True)
        assert failed.data == snapshot(FOUND) and failed.error == "unavailable"
        (gone,) = book.apply(plan, [Outcome(FOUND, None, "not_found")], quiet=True)
        assert gone.data is None and gone.error == "not_found"

    def test_a_failed_job_shows_when_its_values_were_read(self) -> None:
        """A failed read keeps the time of the last good reading (its data ages); a 404 drops it too."""
        plan = Plan((ReadById(FOUND),), (FOUND,), frozenset())
        book = book_after(plan, [Outcome(FOUND, JobMemory(snapshot=snapshot(FOUND), read_at=100.0), None)])
        (failed,) = book.apply(plan, [Outcome(FOUND, None, "unavailable", reached_ccs=False)], quiet=True)
        assert failed.read_at == 100.0
        (gone,) = book.apply(plan, [Outcome(FOUND, None, "not_found")], quiet=True)
        assert gone.read_at is None

    def test_a_cycle_cut_short_keeps_what_was_known(self) -> None:
        """Work skipped because the loop is stopping leaves the job's state and the watch as they were."""
        plan = Plan((ReadById(FOUND),), (FOUND,), frozenset())
        book = book_after(plan, [Outcome(FOUND, JobMemory(snapshot=snapshot(FOUND)), None)])
        other = Plan((ReadById(CONFIGURED),), (CONFIGURED,), frozenset())
        assert book.apply(other, [None], quiet=True) == ()
        assert book.watched == (FOUND,) and book.reading(FOUND) == snapshot(FOUND)

    def test_jobs_no_longer_watched_are_forgotten(self) -> None:
        """After a complete cycle only the watched jobs are remembered."""
        both = Plan((ReadById(FOUND), ReadById(CONFIGURED)), (FOUND, CONFIGURED), frozenset())
        memory = JobMemory(snapshot=snapshot(FOUND))
        book = book_after(both, [Outcome(FOUND, memory, None), Outcome(CONFIGURED, JobMemory(), None)])
        book.apply(
            Plan((ReadById(CONFIGURED),), (CONFIGURED,), frozenset()),
            [Outcome(CONFIGURED, JobMemory(), None)],
            quiet=True,
        )
        assert FOUND not in book and CONFIGURED in book
