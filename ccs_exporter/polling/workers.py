"""A fixed pool of daemon worker threads that maps a function over items and can be abandoned on stop.

A function that raises never ends its worker: the item's result is None and the error goes to
``on_error`` (``PollHealth.error`` counts and logs it), so a bug in one job's reading cannot shrink the
pool until every cycle hangs. Callers that want a better answer than None catch errors themselves.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)
_ItemT = TypeVar("_ItemT")
_ResultT = TypeVar("_ResultT")


@dataclass
class _Batch(Generic[_ResultT]):
    results: list[_ResultT | None]
    remaining: int
    done: threading.Condition = field(default_factory=threading.Condition)
    cancelled: bool = False


class WorkerPool:
    """A fixed set of daemon worker threads: an abandoned request never holds up the process's exit."""

    def __init__(
        self,
        size: int,
        name: str = "ccs-poll",
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(max(1, size))
        ]
        self._errors = 0
        self._on_error = on_error
        self._errors_lock = threading.Lock()
        for thread in self._threads:
            thread.start()

    @property
    def errors(self) -> int:
        """How many items raised instead of returning (their result is None)."""
        return self._errors

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception as exc:  # task() catches the function's errors; this is the last guard
                self._failed(exc)
            # The task's batch holds every result of its map (a search's whole listing, 12 MB at 10,000
            # jobs): not kept while this thread waits for its next task, possibly for many cycles.
            del task

    def _failed(self, exc: BaseException) -> None:
        with self._errors_lock:
            self._errors += 1
        try:
            if self._on_error is not None:
                self._on_error(exc)
            else:  # the type only: the text of an unexpected error may quote a secret
                log.error("poll_worker_error", error_type=type(exc).__name__)
        except Exception:  # reporting must not be what ends a worker
            pass

    def map(
        self,
        function: Callable[[_ItemT], _ResultT],
        items: Sequence[_ItemT],
        stop: threading.Event | None = None,
    ) -> list[_ResultT | None]:
        """Run ``function`` over ``items`` on the workers; None for items skipped because of ``stop`` or
        whose function raised (counted in ``errors``)."""
        batch: _Batch[_ResultT] = _Batch(results=[None] * len(items), remaining=len(items))

        def task(index: int, item: _ItemT) -> None:
            result: _ResultT | None = None
            try:
                if not batch.cancelled:
                    result = function(item)
            except Exception as exc:
                self._failed(exc)
            finally:
                with batch.done:
                    batch.results[index] = result
                    batch.remaining -= 1
                    batch.done.notify_all()

        for index, item in enumerate(items):
            self._tasks.put(lambda index=index, item=item: task(index, item))  # type: ignore[misc]
        with batch.done:
            while batch.remaining:
                batch.done.wait(timeout=0.2)
                if stop is not None and stop.is_set():
                    batch.cancelled = True
                    break
        return list(batch.results)

    def close(self) -> None:
        """Let the workers end once the queued tasks are done (they are daemons: exit never waits)."""
        for _ in self._threads:
            self._tasks.put(None)
