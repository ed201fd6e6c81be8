"""Whether the last reload of a configuration worked, and when one last did (blackbox_exporter's
``config_last_reload_successful`` and ``config_last_reload_success_timestamp_seconds``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ReloadRecord:
    """The outcome of the latest load of one configuration; the load at start counts as a success."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._successful = True
        self._last_success = clock()

    def succeeded(self) -> None:
        with self._lock:
            self._successful, self._last_success = True, self._clock()

    def failed(self) -> None:
        with self._lock:
            self._successful = False

    @property
    def state(self) -> tuple[bool, float]:
        """(the last reload worked, Unix time of the last one that did)."""
        with self._lock:
            return self._successful, self._last_success
