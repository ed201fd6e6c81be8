"""One search listed through Search Jobs: ``list_search`` pages through it into a ``Listing`` (read-only).

A listing asks ``page=0, 1, ...`` until a page is empty. A short page proves nothing (CCS may cap the
page size silently); a page that adds no new job id ends the listing too (a server that ignores
``page``), and a listing stops at ``MAX_SEARCH_PAGES`` pages or ``MAX_SEARCH_JOBS`` jobs (``truncated``).
Used by the discoverer each cycle and by ``jobs search``. The pages a listing kept can stand for the next
listing's pages with the same bytes (``reuse_kept``), so a search at rest is not parsed again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ccs_exporter.client import PageReuse, SearchItem, SearchPage

# Bounds on one listing: 1,000 pages (a page size silently capped at 100 still lists 100,000 jobs) and
# 100,000 jobs (memory and series). A listing that reaches either is used as it is and reported.
MAX_SEARCH_PAGES = 1000
MAX_SEARCH_JOBS = 100_000


@dataclass
class Listing:
    """Every job one search matched (unparsed), in the order CCS listed them, and how the listing went."""

    jobs: dict[str, SearchItem] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)  # job id -> why its item could not be read
    unreadable: int = 0  # items without a readable JobID
    pages: int = 0
    truncated: bool = False
    page_ignored: bool = False
    kept: list[SearchPage] = field(default_factory=list)  # each page as listed: known items without text

    @property
    def size(self) -> int:
        """Jobs matched, readable or not."""
        return len(self.jobs) + len(self.bad)


KnownItem = Callable[[str, bytes], bool]
"""Says whether the reading of a job (by id) came from a search item with this digest."""


def list_search(
    fetch: Callable[[int], SearchPage], stop: threading.Event | None = None, known: KnownItem | None = None
) -> Listing | None:
    """Page through one search with ``fetch(page)``; None when ``stop`` was set before the end.

    Errors from ``fetch`` propagate: a listing is complete or it is not used. An item ``known`` says was
    read before is kept without its text (id and digest): nobody parses it again, and at rest a listing
    of 10,000 jobs then holds a few hundred kilobytes instead of 12 MB while the cycle runs. Its pages are
    kept as listed, those items without text too (``Listing.kept``), for the search's next listing.
    """
    listing = Listing()
    for page in range(MAX_SEARCH_PAGES):
        if stop is not None and stop.is_set():
            return None
        answer = fetch(page)
        listing.pages += 1
        if answer.size == 0:
            listing.kept.append(answer)
            return listing
        readable = 0
        new = 0
        kept = without_read_texts(answer, known) if known is not None else answer
        listing.kept.append(kept)
        for item in kept.items:
            readable += 1
            if item.job_id not in listing.jobs and item.job_id not in listing.bad:
                new += 1
            listing.bad.pop(item.job_id, None)
            listing.jobs[item.job_id] = item  # the later copy of a job listed twice is the fresher one
        for bad in answer.bad_items:
            if bad.job_id is None:
                listing.unreadable += 1
                continue
            readable += 1
            if bad.job_id not in listing.jobs and bad.job_id not in listing.bad:
                new += 1
                listing.bad[bad.job_id] = bad.message
        if readable and not new:
            listing.page_ignored = True  # the same jobs again: the server does not page
            return listing
        if listing.size >= MAX_SEARCH_JOBS:
            listing.truncated = True
            return listing
    listing.truncated = True
    return listing


def without_read_texts(page: SearchPage, known: KnownItem) -> SearchPage:
    """``page`` with the text of every item ``known`` says was read dropped (the same page when none is)."""
    if not any(item.text and known(item.job_id, item.digest) for item in page.items):
        return page
    items = tuple(
        SearchItem(item.job_id, item.digest, b"") if item.text and known(item.job_id, item.digest) else item
        for item in page.items
    )
    return SearchPage(items, page.bad_items, page.digest)


def reuse_kept(kept: SearchPage, known: KnownItem | None) -> PageReuse:
    """What lets an answer with the same bytes as ``kept`` (a page of the last listing of the same search)
    be taken as ``kept``, not parsed again.

    Not when one of its items whose text was dropped is no longer ``known`` (the job's reading went, or
    came from other bytes, since): that item must be parsed, and only a new parse of the page has its text.
    """

    def reuse(digest: bytes) -> SearchPage | None:
        if digest != kept.digest:
            return None
        for item in kept.items:
            if not item.text and (known is None or not known(item.job_id, item.digest)):
                return None
        return kept

    return reuse
