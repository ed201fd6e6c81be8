"""How a long-running exporter process treats its memory: the cycle collector's pace, and giving back to
the system the memory a poll cycle freed (glibc keeps it in its heaps otherwise).

CPython hands large blocks (search pages, parsed jobs, exposition parts) to the C allocator. glibc keeps
freed memory in the heap of the thread that allocated it (up to eight heaps per core) and returns only
what lies at a heap's top, so a process that parses 10,000 jobs' JSON on worker threads stays resident
at every heap's high-water mark, and grows as the heaps fragment. ``malloc_trim(0)`` returns the free
pages of every heap (a few milliseconds). Where the C library has no ``malloc_trim`` (musl, macOS) this
does nothing.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return the C heaps' free pages to the system; False where the C library cannot."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


# Young objects allocated before the cycle collector runs. A cycle at rest makes some 40,000 small
# objects per 10,000 jobs (readings, states, keys), nearly all freed by reference counting; at CPython's
# 700 the collector ran about 80 times a cycle and promoted them into full collections of the whole heap
# (0.02-0.03 CPU s per cycle per 1,000 jobs, a quarter of a cycle at rest).
YOUNG_COLLECTION_THRESHOLD = 20_000


def pace_cycle_collector() -> None:
    """Set the collector's young-generation threshold for a process that polls (``serve``)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
