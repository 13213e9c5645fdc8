"""SIGINT/SIGTERM delivered on the Qt event loop, for ``qtchat serve`` and the app alike.

A leaf module (it imports nothing of qtchat), so both entry points use it without
importing each other.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable


def install_signal_wakeup(on_signal: Callable[[int], object]) -> object:
    """Call ``on_signal(signum)`` on the Qt loop for SIGINT/SIGTERM.

    Python runs signal handlers only between bytecodes, and a Qt loop can sit in
    C for a long time; a wake-up socket watched by a QSocketNotifier brings the
    loop back at once. Returns the notifier (keep a reference).
    """
    from PySide6.QtCore import QSocketNotifier

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read)

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            reader.recv(64)
        while received:
            on_signal(received.pop(0))

    notifier.activated.connect(drain)
    notifier._keep = (reader, writer, handler, drain)  # type: ignore[attr-defined]
    return notifier
