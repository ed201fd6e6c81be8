"""A fixed pool of daemon worker threads that maps a function over items and can be abandoned on stop."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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

    def __init__(self, size: int, name: str = "ccs-poll") -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(max(1, size))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task()

    def map(
        self,
        function: Callable[[_ItemT], _ResultT],
        items: Sequence[_ItemT],
        stop: threading.Event | None = None,
    ) -> list[_ResultT | None]:
        """Run ``function`` over ``items`` on the workers; None for items skipped because of ``stop``."""
        batch: _Batch[_ResultT] = _Batch(results=[None] * len(items), remaining=len(items))

        def task(index: int, item: _ItemT) -> None:
            result: _ResultT | None = None
            try:
                if not batch.cancelled:
                    result = function(item)
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
