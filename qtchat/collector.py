"""Python's cycle collector, run on the Qt main thread only.

CPython runs a collection in whichever thread happens to allocate when a generation
crosses its threshold. When the garbage holds a QObject (a ``QTcpSocket`` whose read
notifier is registered with the main loop, an active ``QTimer``), its C++ destructor
then runs in that thread: Qt warns "Socket notifiers cannot be enabled or disabled from
another thread", leaves the notifier in the main thread's event dispatcher, and the
next pass of the main loop calls into freed memory: a segfault. qtchat has threads that
allocate (the server's upload receivers, hashers and fsyncs; the app's picture previews
and hashing; the announcer's asyncio loop; the tests' blocking clients), and objects
that end up in cycles (bound-method callbacks, frames held by tracebacks), so sooner or
later a worker thread frees a socket: the whole-suite segfault of the fifth session,
and a crash waiting for any long-running app or server.

``collect_on_main_thread`` turns automatic collection off and has a timer on the main
thread run, each tick, the generations CPython itself would have run by then (the same
thresholds). Reference counting still frees everything that is not in a cycle at once;
only cyclic garbage waits, for the first tick at which a collection is due. A leaf
module (nothing of qtchat), used by ``qtchat serve``, the app and the tests alike.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer

# Often enough that cyclic garbage never piles up for long, rarely enough that an idle
# app is not woken for it (a check costs ~0.3 µs when nothing is due).
TICK_MS = 250


def collect_due() -> int:
    """Run the generations automatic collection would run now; the objects freed.

    The rule is CPython's (``gc.get_threshold``): the young generation when its
    allocation count passed the first threshold, an older one when enough collections
    of the one below it have run since its last.
    """
    threshold0, threshold1, threshold2 = gc.get_threshold()
    count0, count1, count2 = gc.get_count()
    if threshold0 <= 0 or count0 <= threshold0:
        return 0
    generation = 0
    if count1 >= threshold1:
        generation = 2 if count2 >= threshold2 else 1
    return gc.collect(generation)


class MainThreadCollector(QObject):
    """The timer that collects cycles on the main thread (see the module's docstring)."""

    def __init__(self, app: QCoreApplication, tick_ms: int = TICK_MS) -> None:
        super().__init__(app)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.CoarseTimer)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(collect_due)  # a function: no cycle through self
        gc.disable()  # for good: a thread may run until the very end of the process
        self._timer.start()


def collect_on_main_thread(app: QCoreApplication | None = None) -> MainThreadCollector:
    """Collect cycles only on ``app``'s (the main) thread from now on; idempotent.

    Call it from the main thread once the application object exists, before any
    worker thread starts. Returns the collector (parented to the app).
    """
    app = app or QCoreApplication.instance()
    if app is None:
        raise RuntimeError("collect_on_main_thread needs a QCoreApplication")
    if QThread.currentThread() != app.thread():
        raise RuntimeError("collect_on_main_thread must be called on the main thread")
    collector = app.findChild(MainThreadCollector)
    return collector if collector is not None else MainThreadCollector(app)
