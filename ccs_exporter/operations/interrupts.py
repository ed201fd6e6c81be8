"""Ctrl-C held back while an audit record is written, so an interrupt never splits a record from its use.

SIGTERM (``timeout``, ``kill``, a CI job cancelled) is made to act as Ctrl-C for the audited commands:
without it the process died between the intent and the result and said nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt, as Ctrl-C does, so an audited mutation closes its intent
    with a result (or says that it is open) instead of dying silently. Main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back while a record is written; deliver it once the block is done.

    An interrupt in the middle of writing a record could leave it unwritten while the mutation goes
    on, or written while nothing knows it. Only the main thread receives SIGINT; elsewhere this does
    nothing. If the block fails, its error is raised and the held-back interrupt is dropped.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: leave it alone
        yield
        return
    # SIGTERM too, when terminate_as_interrupt made it act as Ctrl-C.
    held_term = signal.getsignal(signal.SIGTERM) is _terminate
    signal.signal(signal.SIGINT, hold)
    if held_term:
        signal.signal(signal.SIGTERM, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held_term:
            signal.signal(signal.SIGTERM, _terminate)
    if signal.SIGTERM in received:
        raise KeyboardInterrupt
    if received and callable(previous):
        previous(signal.SIGINT, None)
    elif received and previous == signal.SIG_DFL:
        raise KeyboardInterrupt
