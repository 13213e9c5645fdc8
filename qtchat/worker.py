"""Work on a plain thread, its result handed to the Qt main thread.

A QObject that a worker thread emits on is shared between two threads, and two races
come with that; each segfaulted within a few thousand rounds of a stress loop:

- the object has a parent (a window, a client) that is deleted on the main thread
  while the worker is in the middle of emitting on it;
- the object has no parent and the worker holds the last reference: it is deleted on
  the worker thread while the main loop delivers its queued signal.

``run_in_thread`` avoids both: its relay has no parent and is held here from the start
until its result has been handled on the main thread, which waits for the finishing
thread and lets go. ``deliver`` is skipped when ``owner`` has been deleted meanwhile
(a window closed while its picture's preview was being made). A relay that reports more
than one result (an upload's thread, with its progress) uses ``hold`` and ``release``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal, Slot

log = logging.getLogger(__name__)

_FAILED = object()  # what a work that raised delivers: nothing
_held: set[QObject] = set()  # started and not yet handled on the main thread


def hold(relay: QObject) -> None:
    """Keep ``relay`` (no parent) alive from before its thread starts until ``release``."""
    _held.add(relay)


def release(relay: QObject, thread: threading.Thread) -> None:
    """On the main thread, once ``relay``'s last report has arrived: its thread has only
    returning left; wait for that, so the last reference to ``relay`` goes here."""
    thread.join()
    _held.discard(relay)


class _Relay(QObject):
    done = Signal(object)

    def __init__(self, work: Callable[[], Any], deliver: Callable[[Any], object],
                 owner: QObject | None, name: str) -> None:
        super().__init__()  # no parent, on purpose: see the module docstring
        self._work = work
        self._deliver = deliver
        self._owner = owner
        self.worker = threading.Thread(target=self._run, name=name, daemon=True)
        self.done.connect(self._finish, Qt.ConnectionType.QueuedConnection)

    def _run(self) -> None:
        try:
            result = self._work()
        except Exception:  # a bug in the work: said in the log, nothing delivered
            log.exception("%s failed", self.worker.name)
            result = _FAILED
        self.done.emit(result)

    @Slot(object)
    def _finish(self, result: object) -> None:
        release(self, self.worker)
        if result is _FAILED:
            return
        if self._owner is not None and not shiboken6.isValid(self._owner):
            return
        self._deliver(result)


def run_in_thread(work: Callable[[], Any], deliver: Callable[[Any], object], *,
                  owner: QObject | None = None, name: str = "qtchat-worker") -> QObject:
    """Run ``work()`` on a thread of its own, then ``deliver(result)`` on the main
    thread, unless ``owner`` has been deleted by then. Call from the main thread.
    Returns the relay (its ``done`` signal is emitted once the result is in)."""
    relay = _Relay(work, deliver, owner, name)
    hold(relay)
    relay.worker.start()
    return relay
