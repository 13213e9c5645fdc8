"""Pitfall: PySide6 6.12.0 on CPython < 3.12 drops a reference to None on void calls.

Every call of a Qt method that returns nothing (``void``) then decrements None's
reference count once; after enough calls it reaches zero and the interpreter
crashes far from the cause. On 3.12+ None is immortal (PEP 683) and its count is
a constant, so the check passes trivially there; on 3.11 it is the real test.
The project pins PySide6 below 6.12 for 3.11 (pyproject.toml) for this reason.
"""

from __future__ import annotations

import gc
import sys

from PySide6.QtCore import QObject, QTimer

CALLS = 20_000


def test_void_qt_calls_do_not_drop_references_to_none(qapp):
    timer = QTimer()
    holder = QObject()
    # Warm up first, so caches filled on first use do not move the count.
    for _ in range(100):
        timer.start(1000)
        timer.stop()
        holder.setObjectName("warm")
    gc.collect()
    before = sys.getrefcount(None)
    for index in range(CALLS // 4):
        timer.start(1000)  # void
        timer.stop()  # void
        timer.setInterval(index % 50 + 1)  # void
        holder.setObjectName("n")  # void
    gc.collect()
    after = sys.getrefcount(None)
    # The bug loses one reference per call: 20,000 here. Other code may drop a few
    # legitimately (objects freed meanwhile), never thousands.
    assert after >= before - 100, f"None lost {before - after} references in {CALLS} calls"
    assert timer.interval() == (CALLS // 4 - 1) % 50 + 1
