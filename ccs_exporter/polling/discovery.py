"""Job discovery through Search Jobs: each cycle pages through every configured search (read-only).

The paging of one search is ``listing.list_search`` (bounded at ``MAX_SEARCH_PAGES`` pages and
``MAX_SEARCH_JOBS`` jobs; a listing that reaches either is logged, and ``truncated`` in the search's
state). Search results carry each job's properties, so a discovered job costs no request of its own.
A search whose listing fails keeps its last good result for the cycle: its jobs keep their series,
marked stale. Each search keeps the pages of its last good listing: a page whose bytes come back the same
is not parsed again (``listing.reuse_kept``). Results go on as data (``Discovery``); nothing here writes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from ccs_exporter.client import CcsClient, SearchItem, SearchPage
from ccs_exporter.errors import (
    AuthError,
    BadRequestError,
    CcsError,
    ConfigError,
    ServerError,
    UnavailableError,
)
from ccs_exporter.models import normalize_guid
from ccs_exporter.polling.listing import (
    MAX_SEARCH_JOBS,
    MAX_SEARCH_PAGES,
    KnownItem,
    Listing,
    list_search,
    reuse_kept,
    without_read_texts,
)
from ccs_exporter.polling.snapshot import SearchState
from ccs_exporter.polling.workers import WorkerPool

if TYPE_CHECKING:
    from ccs_exporter.settings.config import Settings

log = structlog.get_logger(__name__)

# The ``search`` label is the expression itself up to this length; a longer one is cut and given a
# digest of the whole, so two long expressions sharing a prefix still get two series.
MAX_SEARCH_LABEL_LENGTH = 120
_LABEL_DIGEST_LENGTH = 12
UNSUPPORTED_STATUSES = (404, 405)


def search_label(expression: str) -> str:
    """The ``search`` label value of an expression: itself, or when long, its start and a digest."""
    if len(expression) <= MAX_SEARCH_LABEL_LENGTH:
        return expression
    digest = hashlib.sha256(expression.encode("utf-8")).hexdigest()[:_LABEL_DIGEST_LENGTH]
    keep = MAX_SEARCH_LABEL_LENGTH - len(digest) - 5
    return f"{expression[:keep]}...#{digest}"


@dataclass(frozen=True)
class WatchList:
    """What to watch: configured job ids, Search Jobs expressions, and the page size to ask for."""

    job_ids: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    page_size: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_ids", tuple(dict.fromkeys(_job_key(job_id) for job_id in self.job_ids)))
        object.__setattr__(self, "searches", tuple(dict.fromkeys(self.searches)))

    @property
    def empty(self) -> bool:
        """Nothing to watch: no job ids and no searches (ccs_watched_jobs stays 0)."""
        return not self.job_ids and not self.searches

    @classmethod
    def from_settings(cls, settings: Settings) -> WatchList:
        """The watch list a set of settings describes."""
        return cls(tuple(settings.job_ids), tuple(settings.job_search), settings.search_page_size)


def _job_key(job_id: str) -> str:
    """A job id as search results spell it (lower case, no braces): GUIDs compare without regard to case.

    A value that is no GUID stays as given; reading it by id reports it.
    """
    try:
        return normalize_guid(job_id)
    except ValueError:
        return job_id


@dataclass(frozen=True)
class StaleJob:
    """A job in a failing search's last good result, not read this cycle: why, and whether CCS answered."""

    error: str
    message: str
    reached_ccs: bool


@dataclass(frozen=True)
class Discovery:
    """What one cycle's searches found: the union of their results, each job once (first search wins).

    ``fresh``: jobs listed this cycle (unparsed). ``bad``: jobs whose item could not be read (id -> why).
    ``stale``: jobs known only from the last good result of a search that failed this cycle.
    ``listed_since``: for a fresh job returned by a search that had been listed in full before, when
    the earliest such previous complete listing started (a job created after it is new).
    ``forgotten``: jobs of searches a reload removed, which leave without being looked up.
    """

    fresh: dict[str, SearchItem]
    bad: dict[str, str]
    stale: dict[str, StaleJob]
    searches: tuple[SearchState, ...]
    reached_ccs: bool
    listed_since: dict[str, float] = field(default_factory=dict)
    forgotten: frozenset[str] = frozenset()

    def job_ids(self) -> list[str]:
        """Every discovered job id, in listing order, each once."""
        return list(dict.fromkeys([*self.fresh, *self.bad, *self.stale]))


@dataclass(frozen=True)
class _GoodListing:
    """What a search keeps of its last good listing between cycles: job ids and counts, not the items."""

    job_ids: tuple[str, ...]
    size: int
    truncated: bool


@dataclass
class _Search:
    """One configured search and what the discoverer remembers of it between cycles."""

    expression: str
    label: str
    last_good: _GoodListing | None = None
    error: str | None = None
    message: str = ""
    reached_ccs: bool = True
    logged_error: str | None = None
    logged_truncated: bool = False
    logged_page_ignored: bool = False
    logged_bad: int = 0
    logged_empty: bool = False
    complete_at: float | None = None  # when its last complete listing started
    # The pages of its last good listing, by number (at most MAX_SEARCH_PAGES), for the next one to reuse.
    pages: tuple[SearchPage, ...] = ()


@dataclass(frozen=True)
class _Attempt:
    listing: Listing | None
    error: Exception | None = None


class Discoverer:
    """Lists the configured searches each cycle and remembers each one's last good result."""

    def __init__(self, client: CcsClient, searches: Sequence[str] = (), page_size: int = 100) -> None:
        self._client = client
        self._page_size = page_size
        self._searches: dict[str, _Search] = {}
        self._forgotten: set[str] = set()
        self.configure(searches, page_size)

    @property
    def searches(self) -> tuple[str, ...]:
        """The configured expressions, in order."""
        return tuple(self._searches)

    def configure(self, searches: Sequence[str], page_size: int) -> None:
        """Replace the searches (a reload); a kept search keeps its last good result, and the pages of its
        last listing while the page size stays (another size cuts other pages)."""
        resized = page_size != self._page_size
        self._page_size = page_size
        kept: dict[str, _Search] = {}
        for expression in searches:
            search = self._searches.get(expression) or _Search(expression, search_label(expression))
            if resized:
                search.pages = ()
            kept[expression] = search
        for expression, search in self._searches.items():
            if expression not in kept and search.last_good is not None:
                self._forgotten.update(search.last_good.job_ids)
        if not kept:
            self._forgotten.clear()  # no listing will follow to hand these on; the poller drops them
        self._searches = kept

    def discover(
        self,
        pool: WorkerPool,
        started: float,
        stop: threading.Event | None = None,
        known: KnownItem | None = None,
    ) -> Discovery:
        """List every search once (searches in parallel on ``pool``, the pages of one in order).

        ``started`` is the wall-clock time the listing began, remembered for complete listings. Items
        ``known`` says were read before come without their text (see ``list_search``).
        """
        searches = list(self._searches.values())
        size = self._page_size
        # Each listing takes its search's pages: they come back only with a good listing.
        taken = [(search, _take_pages(search)) for search in searches]

        def attempt(search_and_pages: tuple[_Search, list[SearchPage | None]]) -> _Attempt:
            search, last = search_and_pages
            return self._attempt(search, last, size, stop, known)

        attempts = pool.map(attempt, taken, stop)
        fresh: dict[str, SearchItem] = {}
        bad: dict[str, str] = {}
        states: list[SearchState] = []
        since: dict[str, float] = {}
        reached = False
        for search, result in zip(searches, attempts, strict=True):
            if result is None or (result.listing is None and result.error is None):
                pass  # stopping: keep the state as it was (but for the pages taken)
            elif result.error is not None:
                self._failed(search, result.error)
            else:
                listing = result.listing
                assert listing is not None
                self._listed(search, listing)
                search.pages = tuple(listing.kept)
                if search.complete_at is not None:
                    for job_id in listing.jobs:
                        since[job_id] = min(since.get(job_id, search.complete_at), search.complete_at)
                if not listing.truncated:
                    search.complete_at = started
                for job_id, item in listing.jobs.items():
                    fresh.setdefault(job_id, item)
                for job_id, message in listing.bad.items():
                    bad.setdefault(job_id, message)
            reached = reached or search.error is None or search.reached_ccs
            states.append(self._state(search))
        for job_id in fresh:
            bad.pop(job_id, None)  # one search's copy could be read: the job is fine
        listed = [result is not None and result.listing is not None for result in attempts]
        stale = self._stale(
            [search for search, ok in zip(searches, listed, strict=True) if not ok], fresh, bad
        )
        forgotten = frozenset(self._forgotten)
        self._forgotten.clear()
        return Discovery(fresh, bad, stale, tuple(states), reached, since, forgotten)

    def drop_read_texts(self, known: KnownItem) -> None:
        """Drop from the kept pages the text of the items read since they were listed (jobs new or changed
        this cycle): a page then holds a job's JSON no longer than the cycle that parsed it."""
        for search in self._searches.values():
            search.pages = tuple(without_read_texts(page, known) for page in search.pages)

    def _attempt(
        self,
        search: _Search,
        last: list[SearchPage | None],
        size: int,
        stop: threading.Event | None,
        known: KnownItem | None,
    ) -> _Attempt:
        """List one search on a worker, reusing the pages of its last listing whose bytes are the same."""

        def fetch(page: int) -> SearchPage:
            kept = last[page] if page < len(last) else None
            if kept is not None:
                last[page] = None  # let go as the listing goes: old and new pages are not both held
            reuse = reuse_kept(kept, known) if kept is not None else None
            return self._client.search_jobs(search.expression, page, size, reuse=reuse)

        try:
            return _Attempt(list_search(fetch, stop, known))
        except Exception as exc:  # classified on the loop thread, where the state is kept
            return _Attempt(None, exc)

    @staticmethod
    def _stale(
        searches: Sequence[_Search], fresh: dict[str, SearchItem], bad: dict[str, str]
    ) -> dict[str, StaleJob]:
        """The jobs of the searches not listed this cycle (failed, or stopped), known from their last good
        listing, that no listed search returned."""
        stale: dict[str, StaleJob] = {}
        for search in searches:
            if search.last_good is None:
                continue
            why = StaleJob(search.error or "not_listed", search.message, search.reached_ccs)
            for job_id in search.last_good.job_ids:
                if job_id not in fresh and job_id not in bad:
                    stale.setdefault(job_id, why)
        return stale

    @staticmethod
    def _state(search: _Search) -> SearchState:
        good = search.last_good
        return SearchState(
            label=search.label,
            jobs=good.size if good is not None else 0,
            success=search.error is None and good is not None,
            truncated=good.truncated if good is not None else False,
            error=search.error,
        )

    def _listed(self, search: _Search, listing: Listing) -> None:
        search.last_good = _GoodListing(tuple([*listing.jobs, *listing.bad]), listing.size, listing.truncated)
        if search.logged_error is not None:
            log.info("search_recovered", search=search.label, jobs=listing.size)
        search.error = None
        search.message = ""
        search.logged_error = None
        if listing.truncated != search.logged_truncated:
            search.logged_truncated = listing.truncated
            if listing.truncated:
                log.warning(
                    "search_truncated",
                    search=search.label,
                    jobs=listing.size,
                    pages=listing.pages,
                    max_pages=MAX_SEARCH_PAGES,
                    max_jobs=MAX_SEARCH_JOBS,
                )
        if listing.page_ignored and not search.logged_page_ignored:
            search.logged_page_ignored = True
            log.info("search_paging_ignored", search=search.label, jobs=listing.size, pages=listing.pages)
        bad = len(listing.bad) + listing.unreadable
        if bool(bad) != bool(search.logged_bad):
            if bad:
                first = next(iter(listing.bad.values()), "an item without a readable JobID")
                log.warning("search_bad_items", search=search.label, items=bad, first=first)
            else:
                log.info("search_bad_items_gone", search=search.label)
        search.logged_bad = bad
        empty = listing.size == 0 and not bad
        if empty != search.logged_empty:  # said once, not every cycle; and again after it matched
            search.logged_empty = empty
            if empty:
                log.warning(
                    "search_matched_nothing",
                    search=search.label,
                    hint="CCS found no job for this expression: check its attribute names and values "
                    "(try it with `ccs-exporter jobs search EXPRESSION`)",
                )
            else:
                log.info("search_matches_again", search=search.label, jobs=listing.size)

    def _failed(self, search: _Search, exc: Exception) -> None:
        kind, reached = _classify(exc)
        search.error = kind
        search.message = exc.message if isinstance(exc, CcsError) else type(exc).__name__
        search.reached_ccs = reached
        if kind == search.logged_error:
            return
        search.logged_error = kind
        kept = search.last_good.size if search.last_good is not None else 0
        if kind == "unsupported":
            log.warning(
                "search_unsupported",
                search=search.label,
                status=getattr(exc, "status", None),
                message="CCS has no Search Jobs endpoint; configured job ids are still polled",
            )
        elif kind == "bad_expression":
            log.error("search_rejected", search=search.label, message=search.message)
        elif kind == "internal_error":
            log.error("search_crashed", search=search.label, error_type=type(exc).__name__, exc_info=exc)
        else:
            log.warning(
                "search_failed", search=search.label, error=kind, message=search.message, kept_jobs=kept
            )


def _take_pages(search: _Search) -> list[SearchPage | None]:
    """The pages of a search's last listing, which it holds no more (``None`` marks a page used)."""
    pages: list[SearchPage | None] = list(search.pages)
    search.pages = ()
    return pages


def _classify(exc: Exception) -> tuple[str, bool]:
    """A failed listing's error kind, and whether CCS answered (it is up; the search is the problem)."""
    if isinstance(exc, CcsError):
        if exc.status in UNSUPPORTED_STATUSES:
            return "unsupported", True
        if isinstance(exc, BadRequestError):
            return "bad_expression", True
        return exc.kind, not isinstance(exc, (UnavailableError, ServerError, AuthError))
    if isinstance(exc, ConfigError):
        return "bad_expression", False
    return "internal_error", False
