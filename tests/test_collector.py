"""Cycles holding Qt objects are freed on the main thread, never by a worker thread.

CPython collects in whichever thread allocates when a threshold is crossed; a QTcpSocket
freed there leaves its notifier in the main loop, which then segfaults (the whole-suite
crash in test_server.py). ``qtchat.collector`` (installed for the suite by conftest, as
``qtchat serve`` and the app install it) keeps collection on the main thread.
"""

from __future__ import annotations

import threading
import weakref

from helpers import LineClient, connect_clients
from PySide6.QtCore import QObject

# Enough cyclic allocations for CPython to run every generation several times over
# (thresholds 2000, 10, 10): a worker thread doing this would collect any young cycle.
CHURN = 300_000


def _churn() -> None:
    for _ in range(CHURN):
        cycle: list = []
        cycle.append(cycle)


def _churn_in_a_thread() -> None:
    thread = threading.Thread(target=_churn, name="churn")
    thread.start()
    thread.join()


def test_a_worker_threads_allocations_leave_qt_garbage_to_the_main_thread(qtbot):
    freed_in: list[str] = []
    holder = QObject()
    holder.me = holder  # a cycle: only the collector frees it
    weakref.finalize(holder, lambda: freed_in.append(threading.current_thread().name))
    del holder
    _churn_in_a_thread()
    assert freed_in == []  # the worker thread's collections left it alone
    qtbot.waitUntil(lambda: bool(freed_in))  # the main thread's next tick frees it
    assert freed_in == [threading.main_thread().name]


def test_a_connected_socket_in_a_cycle_survives_a_worker_threads_collections(qtbot, server):
    """What the suite hit: an earlier test's client socket, still connected, left in a
    cycle; a thread's collection freed it and the main loop segfaulted on its notifier
    the next time data came for it."""
    speaker, listener = connect_clients(qtbot, server.port, 2)
    gone = LineClient(qtbot, server.port)
    assert gone.register()["type"] == "registered"
    gone.me = gone
    del gone
    _churn_in_a_thread()
    speaker.send({"type": "broadcast", "text": "still here"})  # data for the lost socket too
    assert listener.wait_for("broadcast")["text"] == "still here"
    assert speaker.wait_for("broadcast")["text"] == "still here"
    listener.sync()  # a few more passes of the loop with the lost socket readable
