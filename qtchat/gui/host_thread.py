"""A hosted room's server in its own thread, so a busy room never stalls the window.

The app's ``ChatServer`` is the same one ``qtchat serve`` runs; here it is created,
started, stopped and destroyed inside a ``QThread`` of its own. Its timers, socket
notifiers and SQLite connection therefore all belong to that thread (SQLite refuses a
connection used from a thread other than the one that opened it; Qt refuses notifiers
touched from another thread). Only signals cross: the GUI thread asks to start and to
stop, and the server thread answers with what the window shows (port, fingerprint, how
many people are in). ``HostedServer`` is the GUI thread's view of it, with the few
attributes the window and the app read, so nothing in the GUI thread ever touches the
server object itself.
"""

from __future__ import annotations

import logging
import threading

import shiboken6
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from qtchat.server.chat_server import ChatServer, ServerConfig, ServerError

log = logging.getLogger(__name__)

# How long the server thread lets the last bytes (the bye frames) leave before it
# aborts what is still open and ends: the app quits a moment after the window closes.
_STOP_GRACE_MS = 250
# Starting is fast (bind, open SQLite; with TLS, maybe make a certificate once).
_START_TIMEOUT_S = 30.0
_JOIN_TIMEOUT_MS = 10_000


class _Worker(QObject):
    """Lives in the server thread: everything it does runs there."""

    countChanged = Signal(int)

    def __init__(self, config: ServerConfig) -> None:
        super().__init__()
        self.config = config
        self.server: ChatServer | None = None
        self.started = threading.Event()
        self.result: dict | None = None
        self.error: str | None = None

    @Slot()
    def start(self) -> None:
        try:
            server = ChatServer(self.config)  # made here: its children belong to this thread
            try:
                server.start()
            except ServerError:
                server.close_store()
                shiboken6.delete(server)
                raise
        except ServerError as exc:
            self.error = str(exc)
        except Exception as exc:  # say it in the dialog rather than hang the start
            log.exception("the hosted server could not start")
            self.error = f"cannot start the room: {exc}"
        else:
            self.server = server
            server.clientCountChanged.connect(self.countChanged)
            self.result = {"port": server.port, "fingerprint": server.fingerprint,
                           "ip_versions": server.ip_versions,
                           "store_notice": server.store_notice}
        finally:
            self.started.set()
        if self.server is None:
            QThread.currentThread().quit()

    @Slot(str)
    def stop(self, reason: str) -> None:
        server = self.server
        if server is None:
            QThread.currentThread().quit()
            return
        if server.is_listening:
            server.stop(reason)  # bye to everyone, flushed
        QTimer.singleShot(_STOP_GRACE_MS, self._finish)

    @Slot()
    def _finish(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server._abort_closing()
            server.close_store()
            shiboken6.delete(server)  # destroyed in its own thread, notifiers and all
        QThread.currentThread().quit()


class HostedServer(QObject):
    """The GUI thread's view of a server running in its own thread.

    ``start`` blocks until the server listens (or says why it cannot: the same
    ``ServerError`` sentences as in-thread); ``shutdown`` asks it to say bye and stop
    without waiting; ``close_store`` waits until the thread has ended, its history
    closed (after which the same data folder can be hosted again).
    """

    _startRequested = Signal()
    _stopRequested = Signal(str)

    def __init__(self, config: ServerConfig, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config
        self.port = 0
        self.fingerprint: str | None = None
        self.ip_versions: tuple[int, ...] = ()
        self.store_notice: str | None = None
        self.client_count = 0
        self._stopping = False
        self.thread_ = QThread()
        self.thread_.setObjectName("qtchat-host")
        self._worker = _Worker(config)
        self._worker.moveToThread(self.thread_)
        self._startRequested.connect(self._worker.start)
        self._stopRequested.connect(self._worker.stop)
        self._worker.countChanged.connect(self._count_changed)

    def start(self) -> None:
        self.thread_.start()
        self._startRequested.emit()
        if not self._worker.started.wait(_START_TIMEOUT_S):
            self._stopping = True
            self._stopRequested.emit("shutdown")
            raise ServerError("the room's server did not start in time")
        if self._worker.error is not None:
            self._stopping = True
            self.thread_.wait(_JOIN_TIMEOUT_MS)
            raise ServerError(self._worker.error)
        result = self._worker.result or {}
        self.port = result["port"]
        self.fingerprint = result["fingerprint"]
        self.ip_versions = result["ip_versions"]
        self.store_notice = result["store_notice"]

    @Slot(int)
    def _count_changed(self, count: int) -> None:
        self.client_count = count

    @property
    def server_object(self) -> ChatServer | None:
        """The server itself, for tests that check where it lives; never call it."""
        return self._worker.server

    @property
    def is_listening(self) -> bool:
        return self.port != 0 and not self._stopping and self.thread_.isRunning()

    def shutdown(self, reason: str = "shutdown") -> None:
        """Bye to everyone and stop; the thread ends on its own a moment later."""
        if self._stopping:
            return
        self._stopping = True
        self._stopRequested.emit(reason)

    def close_store(self) -> None:
        """Stop (if not yet) and wait for the server thread to end, its history closed."""
        self.shutdown()
        if not self.thread_.wait(_JOIN_TIMEOUT_MS):
            log.warning("the room's server thread did not end in %d ms", _JOIN_TIMEOUT_MS)
