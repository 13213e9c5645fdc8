"""ChatServer: the qtchat server on QTcpServer (TLS: QSslSocket), embeddable and headless.

The Qt adapter of ``ServerCore`` (``qtchat/server/core.py``), which holds every rule of
the server and no I/O. This class owns what needs Qt: the listener and the accept loop
(``Acceptor``), TLS handshakes, each connection's ``Transport``, the timers (the sweep,
the zero-interval flush and work timers, the rate-limit pauses) and the flush. It feeds
the core what a transport read, tells it when a write could not all go or has drained,
and once per event-loop pass (at the dispatcher's ``aboutToBlock``, or on the zero timer)
executes ``ServerCore.end_pass``: the core commits the store first, then this class
emits the signals, writes each dirty connection's out-list with a single ``write``
(``direct_send`` when it is one frame and nothing is waiting: the fan-out hot path), and
carries out the actions (close, abort, pause and resume reading).

Batching one write per connection per pass is what makes fan-out fast (a server writing
per frame per recipient is ten times slower); the core encodes a broadcast once and
appends the same ``bytes`` object to every recipient's list.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import socket as _socket
import sys
import time
from collections.abc import Callable

from PySide6.QtCore import QAbstractEventDispatcher, QObject, QTimer, Signal, Slot
from PySide6.QtNetwork import (
    QAbstractSocket,
    QHostAddress,
    QSslConfiguration,
    QSslSocket,
    QTcpServer,
)

from qtchat import protocol as p
from qtchat.server.config import ServerConfig
from qtchat.server.core import DEFAULT_FEATURES, Do, ServerCore
from qtchat.server.domain import Connection, ConnState
from qtchat.server.features.files import FilesFeature
from qtchat.server.store import MessageStore, StoreLocked, StoreUnusable
from qtchat.server.transfers import FIRST_LINE_MAX, Transfer, transfer_line
from qtchat.server.transport import (
    Acceptor,
    QtTransport,
    RawTransport,
    TlsHandshakes,
    Transport,
    raise_descriptor_limit,
)

log = logging.getLogger(__name__)

# Heavy work (replays, history pages) per event-loop pass, shared round robin between
# connections by ServerCore.work.
_WORK_SLICE = 0.004
# How long a closing connection may take to hand its last bytes to the peer, once the
# sweep has stopped (see stop).
_CLOSE_GRACE = 5.0
# Connections opened or closed before the sweep gives freed heap back to the OS.
_TRIM_AFTER_CHURN = 64
# end_pass rounds per flush: what a pass's own signals or reads cause goes out with it.
_ROUNDS_PER_FLUSH = 4
# What one read hands the core is fed to it in pieces of about this many bytes (cut at a
# line's end), for at most _FEED_SLICE seconds a pass; the rest waits for the next pass,
# after the flush. A bot flooding a room with flood control off gave the core 256 KiB
# (~2,500 messages) per read: passes of 200-600 ms in which nobody was sent anything.
_FEED_PIECE = 8 * 1024
_FEED_SLICE = 0.008


class ServerError(Exception):
    """The server could not start (e.g. the port is in use); the message says why."""


class ChatServer(QObject):
    """The chat server.

    Signals:
        listening(str host, int port): the server accepts connections.
        userJoined(str name, str room): someone entered a room (``lobby`` on register).
        userLeft(str name, str room, str reason): someone left a room.
        messagesPosted(list messages): the ``broadcast`` messages (``Message``) stored in
            one event-loop pass.
        clientCountChanged(int count): registered, connected clients.
        stopped(): the server has closed every connection and stopped listening.
    """

    listening = Signal(str, int)
    userJoined = Signal(str, str)
    userLeft = Signal(str, str, str)
    messagesPosted = Signal(list)
    clientCountChanged = Signal(int)
    stopped = Signal()

    def __init__(self, config: ServerConfig | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config or ServerConfig()
        self.fingerprint: str | None = None
        self._listener: QTcpServer | None = None
        db_path = None
        if self.config.data_dir is not None:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            db_path = self.config.data_dir / "history.sqlite3"
        try:
            self.store = MessageStore(db_path, retention=self.config.history_retention)
        except StoreLocked as exc:
            raise ServerError(
                f"{self.config.data_dir} is in use by another qtchat server "
                "(give this one its own --data-dir)"
            ) from exc
        except StoreUnusable as exc:
            raise ServerError(str(exc)) from exc
        self.core = ServerCore(self.config, self.store, now=time.monotonic(),
                               features=[*DEFAULT_FEATURES, FilesFeature])
        files = self.core.feature("files")
        self._files: FilesFeature | None = files if isinstance(files, FilesFeature) else None
        # New connections whose first line has not all come yet: it may open a transfer.
        self._first_lines: dict[Connection, bytes] = {}
        # Bytes read from a connection and not yet fed to the core (see _FEED_SLICE): fed
        # before anything more is read from it.
        self._unfed: dict[Connection, bytes] = {}
        self._churn = 0  # connections opened or closed since free heap was last given back
        self._flushing = False
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(0)
        self._flush_timer.timeout.connect(self._flush)
        self._dispatcher: QAbstractEventDispatcher | None = None  # see start()
        self._acceptor: Acceptor | None = None  # takes connections off the listener
        self._handshakes: TlsHandshakes | None = None  # TLS: until the handshake is done
        self._work_timer = QTimer(self)
        self._work_timer.setSingleShot(True)
        self._work_timer.setInterval(0)
        self._work_timer.timeout.connect(self._run_work)
        self._sweep_timer = QTimer(self)
        self._sweep_timer.setInterval(int(1000 * self._sweep_interval()))
        self._sweep_timer.timeout.connect(self._sweep)
        self._after()  # what loading the state decided (nothing, unless the disk is full)

    # --- life cycle --------------------------------------------------------------------

    def _sweep_interval(self) -> float:
        c = self.config
        return max(0.05, min(1.0, c.register_timeout / 4, c.idle_timeout / 4, c.resume_grace / 4))

    def start(self) -> None:
        """Listen on the configured host and port; raises ServerError if it cannot."""
        c = self.config
        # The pass's writes go out as soon as the event loop has dispatched this pass's
        # input and is about to wait again. The zero timer alone would, under GLib's
        # dispatcher, wait for one more poll() first; it stays as the fallback for a
        # loop that does not block (or emits no aboutToBlock).
        if self._dispatcher is None:
            self._dispatcher = QAbstractEventDispatcher.instance()
            if self._dispatcher is not None:
                self._dispatcher.aboutToBlock.connect(self._flush_if_dirty)
        # Every connection costs a descriptor: use all the system allows (the soft limit
        # is often 1,024 while the hard one is far higher).
        raise_descriptor_limit()
        on_descriptor = self._accept_descriptor
        if c.tls:
            self._handshakes = self._make_tls_handshakes()
            on_descriptor = self._handshakes.start
        # QTcpServer binds and listens; the Acceptor takes the connections (see there).
        self._listener = QTcpServer(self)
        # Qt's default backlog of 50 makes a connect storm stall a second on SYN retries.
        self._listener.setListenBacklogSize(c.listen_backlog)
        address = QHostAddress(c.host) if c.host not in ("", "*") else \
            QHostAddress(QHostAddress.SpecialAddress.Any)
        if address.isNull():
            raise ServerError(f"{c.host!r} is not an IP address this machine can listen on")
        if not self._listener.listen(address, c.port):
            reason = self._listener.errorString()
            if self._listener.serverError() == QAbstractSocket.SocketError.AddressInUseError:
                reason = f"port {c.port} is already in use (is another qtchat running?)"
            reason = reason[:1].lower() + reason[1:]  # Qt's sentence, inside ours
            raise ServerError(f"cannot listen on {c.host}:{c.port}: {reason}")
        self._listener.pauseAccepting()  # its own accept loop stays off
        self._acceptor = Acceptor(int(self._listener.socketDescriptor()), on_descriptor, self)
        self._sweep_timer.start()
        log.info("listening on %s:%d", c.host, self.port)
        self.listening.emit(c.host, self.port)

    def _make_tls_handshakes(self) -> TlsHandshakes:
        from qtchat import tlsutil

        if self.config.data_dir is None:
            raise ServerError("TLS needs a data directory to keep its certificate in")
        if not QSslSocket.supportsSsl():
            raise ServerError("TLS is not available: Qt found no TLS library on this system")
        try:
            cert_path, key_path = tlsutil.ensure_certificate(
                self.config.data_dir, self.config.server_name
            )
            certificate, key = tlsutil.load_qt_credentials(cert_path, key_path)
        except (OSError, ValueError) as exc:
            raise ServerError(f"cannot set up TLS: {exc}") from exc
        self.fingerprint = tlsutil.qt_fingerprint(certificate)
        ssl = QSslConfiguration.defaultConfiguration()
        ssl.setLocalCertificate(certificate)
        ssl.setPrivateKey(key)
        return TlsHandshakes(ssl, int(min(5.0, self.config.register_timeout) * 1000),
                             self._accept, self._descriptor_freed, self)

    @property
    def store_notice(self) -> str | None:
        """One sentence when the history was started over at start-up (see
        ``store._check_files``), for whoever started the server."""
        return self.store.notice

    @property
    def port(self) -> int:
        return self._listener.serverPort() if self._listener else 0

    @property
    def ip_versions(self) -> tuple[int, ...]:
        """The IP versions people can reach it on: ``0.0.0.0`` is IPv4 only, ``::`` IPv6
        only, ``*`` both (what to advertise: an address it does not listen on fails)."""
        if not self._listener:
            return ()
        protocol = self._listener.serverAddress().protocol()
        if protocol == QAbstractSocket.NetworkLayerProtocol.IPv4Protocol:
            return (4,)
        if protocol == QAbstractSocket.NetworkLayerProtocol.IPv6Protocol:
            return (6,)
        return (4, 6)

    @property
    def is_listening(self) -> bool:
        return bool(self._listener and self._listener.isListening())

    @property
    def client_count(self) -> int:
        return self.core.client_count

    def users(self, room: str = p.LOBBY) -> list[str]:
        """Names in a room now, in join order."""
        return self.core.users(room)

    def held_names(self) -> list[str]:
        """Names taken now: connected, or held for a dropped session's resume."""
        return self.core.held_names()

    def drop_connection(self, name: str) -> bool:
        """Cut ``name``'s connection as a network failure would: the others hear
        ``user_left`` (disconnected) and the session is held for its resume.
        Returns False if nobody of that name is connected."""
        dropped = self.core.drop(name)
        self._after()
        return dropped

    def pause_accepting(self) -> None:
        """Leave new connections waiting in the listen backlog (see resume_accepting)."""
        if self._acceptor is not None:
            self._acceptor.pause()

    def resume_accepting(self) -> None:
        if self._acceptor is not None:
            self._acceptor.resume()

    def _descriptor_freed(self) -> None:
        """A connection (or a failed handshake) gave its descriptor back: one waiting in
        the backlog may fit now, if we had run out."""
        if self._acceptor is not None:
            self._acceptor.descriptor_freed()

    def stop(self, reason: str = "shutdown") -> None:
        """Send ``bye`` to everyone, flush, close every connection, stop listening."""
        if self._acceptor is not None:
            self._acceptor.close()
        if self._handshakes is not None:
            self._handshakes.close()
        if self._listener is not None:
            self._listener.close()
        self._sweep_timer.stop()
        if self._dispatcher is not None:
            with contextlib.suppress(RuntimeError):  # the dispatcher went first
                self._dispatcher.aboutToBlock.disconnect(self._flush_if_dirty)
            self._dispatcher = None
        if self._files is not None:
            for transfer in list(self._files.transfers):
                transfer.stalled()
        self.core.shutdown(reason)
        self._flush()
        # The sweep that would abort a peer not taking its last bytes has stopped.
        QTimer.singleShot(int(_CLOSE_GRACE * 1000), self, self._abort_closing)
        self.stopped.emit()

    @Slot()
    def _abort_closing(self) -> None:
        self.core.abort_closing()
        self._flush()

    def close_store(self) -> None:
        self.store.close()
        if self._files is not None:
            self._files.close()

    # --- connections -------------------------------------------------------------------

    def _accept_descriptor(self, descriptor: int) -> None:
        """A plain TCP connection the Acceptor took."""
        try:
            transport = RawTransport(descriptor, self)
        except OSError as exc:
            log.warning("could not take an accepted connection: %s", exc)
            with contextlib.suppress(OSError):
                _socket.socket(fileno=descriptor).close()  # a SOCKET on Windows, not an fd
            self._descriptor_freed()
            return
        self._add_connection(transport)

    def _accept(self, socket: QSslSocket) -> None:
        """A TLS connection, once TlsHandshakes has seen it through its handshake."""
        if socket.state() != QAbstractSocket.SocketState.ConnectedState:
            socket.deleteLater()
            self._descriptor_freed()
            return
        self._add_connection(QtTransport(socket, self))

    def _add_connection(self, transport: Transport) -> None:
        self._churn += 1
        conn = self.core.open(transport, time.monotonic())
        transport.on_readable = functools.partial(self._read, conn)
        transport.on_drained = functools.partial(self._drained, conn)
        transport.on_peer_finished = functools.partial(self._peer_finished, conn)
        transport.on_closed = functools.partial(self._closed, conn)
        if self._files is not None:
            self._first_lines[conn] = b""
        self._read(conn)  # anything that came with the connection

    def _read(self, conn: Connection) -> None:
        if not conn.wants_input:
            return
        data = self._unfed.pop(conn, None)
        if data is not None:  # what an earlier read left, before anything newer
            self._feed(conn, data)
            if conn not in self._unfed and conn.wants_input and conn.handle is not None:
                conn.handle.resume_reading()
            self._after()
            return
        data = conn.handle.read_all()
        if data and conn in self._first_lines:
            data = self._first_lines.pop(conn) + data
            cut = data.find(b"\n")
            if cut < 0 and len(data) < FIRST_LINE_MAX:
                self._first_lines[conn] = data  # the rest of the first line is to come
                return
            opening = transfer_line(data[:cut]) if cut >= 0 else None
            if opening is not None:
                self._start_transfer(conn, opening, data[cut + 1:])
                return
        if data:
            self._feed(conn, data)
            self._after()

    def _feed(self, conn: Connection, data: bytes) -> None:
        """Hand ``data`` to the core a piece at a time for at most ``_FEED_SLICE``; keep
        the rest in ``_unfed`` (reading paused) and come back for it on the next pass."""
        core = self.core
        deadline = time.perf_counter() + _FEED_SLICE
        start, size = 0, len(data)
        while True:
            cut = data.find(b"\n", start + _FEED_PIECE) if size - start > _FEED_PIECE else -1
            end = size if cut < 0 or conn.over_budget else cut + 1
            core.feed(conn, data if start == 0 and end == size else data[start:end],
                      time.monotonic())
            start = end
            if start >= size or not conn.open:
                return
            if time.perf_counter() >= deadline:
                self._unfed[conn] = data[start:]
                if conn.handle is not None:
                    conn.handle.pause_reading()
                QTimer.singleShot(0, self, functools.partial(self._read, conn))
                return

    def _drained(self, conn: Connection) -> None:
        self.core.drained(conn, time.monotonic())
        self._after()

    def _start_transfer(self, conn: Connection, opening: dict, rest: bytes) -> None:
        """The first line opens an upload or a download: the connection leaves the chat
        core and its transport goes to a ``Transfer`` (see ``transfers.py``)."""
        assert self._files is not None and conn.state is ConnState.NEW
        transport = conn.handle
        self.core.hand_over(conn)
        conn.handle = None
        self._churn += 1
        transfer = Transfer(transport, self._files, self._flush, time.monotonic(),
                            on_gone=self._descriptor_freed)
        transfer.start(opening, rest)
        self._after()

    def _peer_finished(self, conn: Connection) -> None:
        started = self._first_lines.pop(conn, None)
        if started:  # a first line cut short: the core answers it as it is
            self.core.feed(conn, started, time.monotonic())
        unfed = self._unfed.pop(conn, None)
        if unfed:  # all it sent before it finished, in order, then its end
            self.core.feed(conn, unfed, time.monotonic())
        # Whatever it sent has been handled: answer it, then close (an unclean end).
        self.core.peer_finished(conn, time.monotonic())
        self._after()

    def _closed(self, conn: Connection, _reason: str) -> None:
        self._first_lines.pop(conn, None)
        self._unfed.pop(conn, None)
        self.core.lost(conn, time.monotonic())
        self._discard(conn)
        self._after()

    def _discard(self, conn: Connection) -> None:
        """Forget a closed transport for good and delete it (idempotent)."""
        transport = conn.handle
        if transport is None:
            return
        conn.handle = None
        self._churn += 1
        transport.deleteLater()
        self._descriptor_freed()

    def _refilled(self, conn: Connection) -> None:
        self.core.budget_refilled(conn, time.monotonic())
        self._after()

    # --- passes ------------------------------------------------------------------------

    def _after(self) -> None:
        """After calling into the core: schedule the flush and the work it asks for."""
        core = self.core
        if core.has_output and not self._flush_timer.isActive():
            self._flush_timer.start()
        if core.has_work and not self._work_timer.isActive():
            self._work_timer.start()

    @Slot()
    def _flush_if_dirty(self) -> None:
        if self.core.has_output:
            self._flush_timer.stop()
            self._flush()

    @Slot()
    def _flush(self) -> None:
        """Once per pass: the core commits the store, then one write per connection."""
        if self._flushing:  # a signal's slot flushing again: the loop below takes it
            return
        self._flushing = True
        try:
            for _round in range(_ROUNDS_PER_FLUSH):
                self._execute()
                if not self.core.has_output:
                    break
        finally:
            self._flushing = False
        self._after()

    def _execute(self) -> None:
        core = self.core
        done = core.end_pass()  # commits first: stored before any copy is sent
        for signal, args in done.events:
            getattr(self, signal).emit(*args)
        for conn in done.dirty:
            out = conn.out
            if not out:  # aborted, or a failed commit took its frames back
                continue
            transport = conn.handle
            send = transport.direct_send
            if send is not None and len(out) == 1:
                # The fan-out hot path: one frame, no backlog, one send() and nothing
                # else per recipient. Anything short of "all taken" goes the long way.
                data = out.pop()
                try:
                    sent = send(data)
                except OSError:
                    sent = 0  # write() below tries again, and reports a lost peer
                if sent == len(data):
                    continue
                waiting = transport.write(data[sent:])
            else:
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                waiting = transport.write(data)  # what the kernel refused: slow peer
            if waiting:
                core.backlog(conn, waiting, transport.kernel_unsent(), time.monotonic())
        for conn in done.watch:  # its work waits for the kernel to take what it queued
            transport = conn.handle
            if transport is not None and not transport.pending():
                core.drained(conn, time.monotonic())
        for action, conn, until in done.actions:
            transport = conn.handle
            if transport is None:  # already closed and discarded
                continue
            if action is Do.CLOSE:
                # Waits for the owed bytes to reach the kernel; the core's sweep aborts
                # it if the peer does not take them within its grace.
                transport.close()
            elif action is Do.ABORT:
                transport.abort()
            elif action is Do.PAUSE_READING:
                transport.pause_reading()
                if until is not None:
                    wait = max(0.0, until - time.monotonic())
                    QTimer.singleShot(int(wait * 1000) + 1, self,
                                      functools.partial(self._refilled, conn))
                continue
            elif action is Do.RESUME_READING:
                transport.resume_reading()
                self._read(conn)
                continue
            if not transport.is_open():
                self._discard(conn)

    @Slot()
    def _run_work(self) -> None:
        """One slice of the heavy work (replays, history pages): turns of the core's round
        robin for at most _WORK_SLICE seconds; then the event loop reads and writes for
        everyone else before the next slice."""
        deadline = time.perf_counter() + _WORK_SLICE
        core = self.core
        while core.work() and time.perf_counter() < deadline:
            pass
        self._after()

    @Slot()
    def _sweep(self) -> None:
        """Once a second at most: what each transport holds unsent (the send-queue cap
        applies also when nothing new is queued for it), then the core's clocks."""
        now = time.monotonic()
        core = self.core
        for conn in core.connections():
            transport = conn.handle
            waiting = transport.pending() if transport is not None else 0
            if waiting:
                core.backlog(conn, waiting, transport.kernel_unsent(), now)
        core.tick(now)
        if self._churn >= _TRIM_AFTER_CHURN:
            self._churn = 0
            _give_back_free_heap()
        self._after()


def _give_back_free_heap() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim).

    A connect storm leaves megabytes of freed buffers (registration answers,
    join announcements) that glibc keeps mapped; trimming after such churn keeps
    the resident size of a server with many idle clients near what they use.
    """
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = _no_trim
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    _malloc_trim(0)


def _no_trim(_pad: int) -> int:
    return 0


_malloc_trim: Callable[[int], int] | None = None
