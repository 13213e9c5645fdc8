"""ChatServer: the qtchat server on QTcpServer (TLS: QSslSocket), embeddable and headless.

Layers: bytes from a socket go through ``protocol.FrameDecoder`` into typed
frames; ``ChatServer`` applies them to plain-Python state (sessions, rooms) and
to the ``MessageStore``; outgoing frames are encoded once and appended to each
recipient's out-list. Once per event-loop pass ``_flush`` commits the store and
then writes each recipient's frames with a single ``write`` call: that batching
is what makes fan-out fast (a server writing per frame per recipient is ten
times slower).

A message is stored or it is not sent: when a commit fails (a full disk),
``_storage_failed`` takes the very ``bytes`` objects of the lost messages back
out of every out-list (by identity: the fan-out shares one object among all
recipients) and answers each sender ``error storage_error``. Everything that
needs no write goes on meanwhile, and the next commit that succeeds ends it.

Identity comes from the connection: ``from`` is always the name registered on
it. A connection joins the user lists only after ``register`` succeeds, and
every way a connection ends (``bye``, drop, error, timeout, overflow) goes
through one idempotent ``_remove_connection``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import heapq
import hmac
import logging
import math
import secrets
import socket as _socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QAbstractEventDispatcher, QObject, QTimer, Signal, Slot
from PySide6.QtNetwork import (
    QAbstractSocket,
    QHostAddress,
    QSslConfiguration,
    QSslSocket,
    QTcpServer,
)

from qtchat import __version__
from qtchat import protocol as p
from qtchat.names import Name, parse_name, parse_room
from qtchat.server.config import ServerConfig
from qtchat.server.store import (
    WHISPER_BUCKET,
    MessageStore,
    StorageError,
    StoreLocked,
    StoreUnusable,
    hash_secret,
)
from qtchat.server.transport import (
    Acceptor,
    QtTransport,
    RawTransport,
    TlsHandshakes,
    Transport,
    raise_descriptor_limit,
)

log = logging.getLogger(__name__)

_ALLOWED_BEFORE_REGISTER = frozenset({"register", "ping", "pong", "bye"})
# Client ids remembered per session for de-duplicating retried sends.
_CLIENT_IDS_KEPT = 10_000
# How long a closing connection may take to hand its last bytes to the peer.
_CLOSE_GRACE = 5.0
# Frames held back from a client whose replay is still running; past this many the
# server stops reading from it until the replay is done (TCP pushes back).
_DEFER_CAP = 256
# Heavy work (replays) per event-loop pass, shared round robin between connections, and
# what one connection may queue in its turn.
_WORK_SLICE = 0.004
_TURN_BYTES = 32 * 1024
# Rooms listed in ``registered.rooms`` besides the user's own.
_ROOMS_LISTED = 100
# Shortest pause of a connection that ran out of rate budget (see _decode).
_MIN_PAUSE = 0.01
# Connections opened or closed before the sweep gives freed heap back to the OS.
_TRIM_AFTER_CHURN = 64


class ServerError(Exception):
    """The server could not start (e.g. the port is in use); the message says why."""


class Room:
    """A room: who is in it now (live connections, in join order)."""

    __slots__ = ("conns", "display", "key", "members", "names")

    def __init__(self, name: Name) -> None:
        self.key = name.folded
        self.display = name.display
        self.names = name.keys  # what another room's name must not look like
        self.conns: dict[_Connection, None] = {}
        self.members = 0  # sessions in it, connected or held (max_rooms counts these rooms)


class Session:
    """One registered user, which outlives its connection for the resume grace period."""

    __slots__ = ("client_ids", "conn", "held_until", "name", "rooms", "secret", "secret_hash",
                 "sent_upto", "sid", "start_seq")

    def __init__(self, sid: int, secret_hash: str, name: Name, secret: str = "", *,
                 start_seq: int = 0) -> None:
        self.sid = sid
        self.secret_hash = secret_hash
        self.secret = secret  # known once the client presents it (not stored on disk)
        self.name = name
        self.rooms: dict[str, Room] = {}
        self.conn: _Connection | None = None
        self.held_until: float | None = None
        self.client_ids: dict[str, int] = {}
        # Nothing older than start_seq is replayed on a resume: it was never missed.
        self.start_seq = start_seq
        # Every message up to this seq reached the OS on the last connection: where a
        # resume without ``since`` starts.
        self.sent_upto = start_seq

    def remember_client_id(self, client_id: str, seq: int) -> None:
        ids = self.client_ids
        ids[client_id] = seq
        if len(ids) > 2 * _CLIENT_IDS_KEPT:  # keep the newest, amortised
            for old in list(ids)[:-_CLIENT_IDS_KEPT]:
                del ids[old]


class _Connection:
    """One client connection: its transport, decoder, rate bucket and pending output."""

    __slots__ = ("closing_since", "connected_at", "decoder", "deferred", "deleted",
                 "in_ring", "last_heard", "live", "out", "over_budget", "page", "peer",
                 "ping_sent_at", "pre_register_bytes", "rate_error_at", "reading", "removed",
                 "replay", "server", "session", "tokens", "tokens_at", "transport")

    def __init__(self, server: ChatServer, transport: Transport) -> None:
        self.server = server
        self.transport = transport
        self.decoder = p.FrameDecoder(max_frame=server.config.max_frame_bytes)
        self.session: Session | None = None
        self.out: list[bytes] = []
        self.removed = False
        self.live = False  # in its rooms' fan-out lists (not while replaying)
        self.replay: Iterator[dict[str, Any]] | None = None
        # What the client sent while its replay ran, applied in order once it is live.
        self.deferred: deque[Any] | None = None  # made when needed: most never need it
        self.reading = False  # inside _read: a nested read would reorder frames
        now = time.monotonic()
        self.connected_at = now
        self.last_heard = now
        self.ping_sent_at: float | None = None
        self.pre_register_bytes = 0
        self.closing_since: float | None = None  # removed, waiting for its last bytes to go
        self.deleted = False
        self.tokens = float(server.config.rate_burst)
        self.tokens_at = now
        self.rate_error_at = 0.0
        self.over_budget = False  # out of rate budget: not read until it refills
        self.in_ring = False  # waiting in the server's round of heavy work (_run_work)
        self.page: p.History | None = None  # a history request waiting for its turn
        self.peer = transport.peer
        transport.on_readable = self.on_readable
        transport.on_drained = self.on_drained
        transport.on_peer_finished = self.on_peer_finished
        transport.on_closed = self.on_closed

    def on_readable(self) -> None:
        self.server._read(self)

    def on_drained(self) -> None:
        if self.replay is not None:
            self.server._continue_replay(self)

    def on_peer_finished(self) -> None:
        # Whatever it sent has been handled: answer it, then close (an unclean end).
        self.server._close(self, "disconnected")

    def on_closed(self, _reason: str) -> None:
        self.server._remove_connection(self, "disconnected")
        self.server._discard(self)

    def __repr__(self) -> str:
        who = self.session.name.display if self.session else "unregistered"
        return f"<connection {self.peer} {who}>"


class ChatServer(QObject):
    """The chat server.

    Signals:
        listening(str host, int port): the server accepts connections.
        userJoined(str name, str room): someone entered a room (``lobby`` on register).
        userLeft(str name, str room, str reason): someone left a room.
        messagesPosted(list frames): the ``broadcast`` frames stored in one event-loop pass.
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
        # Reads of the history never see a message that could still be rolled back.
        self.store.before_read = self._commit_before_read
        # Messages added since the last commit: (sender's connection, session, frame
        # type, id, seq, the bytes objects queued for it) - what a failed commit takes
        # back. The storage's trouble, once reported (None while it works).
        self._unstored: list[tuple[_Connection, Session, str, str | None, int,
                                   tuple[bytes | None, bytes | None]]] = []
        self._storage_trouble: str | None = None
        self._conns: set[_Connection] = set()
        self._closing: set[_Connection] = set()  # removed, last bytes still leaving
        self._sessions_by_secret: dict[str, Session] = {}  # keyed by secret hash
        self._names: dict[str, Session] = {}  # skeleton -> session (connected or held)
        self._rooms: dict[str, Room] = {}  # folded name (the history bucket) -> room
        self._room_keys: dict[str, Room] = {}  # every Name.keys of a room -> room
        self._occupied = 0  # rooms with members
        # Rooms nobody is in that are kept for their history, longest idle first.
        self._idle: dict[str, Room] = {}
        self._ranked: list[Room] | None = None  # see _ranked_rooms
        self._ranked_at = 0.0
        self._password_failures: dict[str, list[float]] = {}  # address -> times, in window
        self._registered = 0
        self._dirty: list[_Connection] = []
        self._churn = 0  # connections opened or closed since free heap was last given back
        self._posted: list[dict[str, Any]] = []
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(0)
        self._flush_timer.timeout.connect(self._flush)
        self._dispatcher: QAbstractEventDispatcher | None = None  # see start()
        # The connection and frame ``id`` being handled now (see _apply, _send_error).
        self._answering: tuple[_Connection | None, str | None] = (None, None)
        self._acceptor: Acceptor | None = None  # takes connections off the listener
        self._handshakes: TlsHandshakes | None = None  # TLS: until the handshake is done
        # Connections with heavy work (a replay) waiting for their turn: see _run_work.
        self._work: deque[_Connection] = deque()
        self._work_timer = QTimer(self)
        self._work_timer.setSingleShot(True)
        self._work_timer.setInterval(0)
        self._work_timer.timeout.connect(self._run_work)
        self._sweep_timer = QTimer(self)
        self._sweep_timer.setInterval(int(1000 * self._sweep_interval()))
        self._sweep_timer.timeout.connect(self._sweep)
        self._load_state()

    # --- life cycle --------------------------------------------------------------------

    def _sweep_interval(self) -> float:
        c = self.config
        return max(0.05, min(1.0, c.register_timeout / 4, c.idle_timeout / 4, c.resume_grace / 4))

    def _load_state(self) -> None:
        self._room(parse_room(p.LOBBY))
        for key, display in self.store.rooms():
            if key not in self._rooms:
                try:
                    name = parse_room(display)
                except ValueError:  # stored under older rules: kept for its history
                    name = Name(display=display, folded=key, skeleton=key, keys=(key,))
                self._add_room(name)
        # Sessions that were live when the server stopped are held, as after a drop.
        held_until = time.monotonic() + self.config.resume_grace
        for stored in self.store.sessions():
            try:
                name = parse_name(stored.name)
            except ValueError:
                self.store.end_session(stored.sid)
                continue
            if any(key in self._names for key in name.keys):  # looks like one held already
                self.store.end_session(stored.sid)
                continue
            session = Session(stored.sid, stored.secret_hash, name, start_seq=stored.start_seq)
            session.sent_upto = max(stored.sent_upto, stored.start_seq)
            session.held_until = held_until
            for room_name in stored.rooms:
                try:
                    room = self._room(parse_room(room_name))
                except ValueError:
                    continue
                self._enter_room(session, room)
            session.client_ids = self.store.client_ids(stored.sid, _CLIENT_IDS_KEPT)
            self._sessions_by_secret[stored.secret_hash] = session
            for key in name.keys:
                self._names[key] = session
        for room in list(self._rooms.values()):  # rooms nobody is in and nothing was said in
            if not room.members:
                self._forget_if_empty(room)
        while len(self._rooms) > self.config.max_kept_rooms and self._idle:
            self._make_room_for_one_more()  # a history from before the cap, or a lower cap
        self._commit()  # a full disk here is reported, and the changes wait for room

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
        return self._registered

    def users(self, room: str = p.LOBBY) -> list[str]:
        """Names in a room now, in join order."""
        found = self._find_room(parse_room(room))
        return [c.session.name.display for c in found.conns if c.session] if found else []

    def held_names(self) -> list[str]:
        """Names taken now: connected, or held for a dropped session's resume."""
        return sorted({session.name.display for session in self._names.values()})

    def drop_connection(self, name: str) -> bool:
        """Cut ``name``'s connection as a network failure would: the others hear
        ``user_left`` (disconnected) and the session is held for its resume.
        Returns False if nobody of that name is connected."""
        session = self._session_named(parse_name(name))
        if session is None or session.conn is None:
            return False
        self._close(session.conn, "disconnected", abort=True)
        return True

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
        bye = p.encode({"type": "bye", "reason": reason})
        for conn in list(self._conns):
            self._queue(conn, bye)
        self._flush()
        for conn in list(self._conns):
            # No user_left storm while shutting down, and the sessions stay stored:
            # they are held again when the server next starts.
            conn.removed = True
            session = conn.session
            if session is not None and session.conn is conn:
                self.store.update_session_sent_upto(session.sid, session.sent_upto)
            conn.transport.close()
            if not conn.transport.is_open():
                self._discard(conn)
            else:
                self._closing.add(conn)
        self._conns.clear()
        self._commit()
        # The sweep that would abort a peer not taking its last bytes has stopped.
        QTimer.singleShot(int(_CLOSE_GRACE * 1000), self, self._abort_closing)
        self.stopped.emit()

    @Slot()
    def _abort_closing(self) -> None:
        for conn in list(self._closing):
            conn.transport.abort()
            self._discard(conn)

    def close_store(self) -> None:
        self.store.close()

    # --- reading -----------------------------------------------------------------------

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
        conn = _Connection(self, transport)
        self._conns.add(conn)
        self._read(conn)  # anything that came with the connection

    def _read(self, conn: _Connection) -> None:
        if conn.removed or conn.over_budget:
            return
        if conn.deferred is not None and len(conn.deferred) >= _DEFER_CAP:
            conn.transport.pause_reading()  # read on when the replay is done (_run_deferred)
            return
        data = conn.transport.read_all()
        if not data:
            return
        conn.reading = True
        try:
            self._read_data(conn, data)
        finally:
            conn.reading = False

    def _read_data(self, conn: _Connection, data: bytes) -> None:
        now = time.monotonic()
        conn.last_heard = now
        conn.ping_sent_at = None
        # Before register, go line by line so that only the bytes up to the register
        # frame count against the limit (a client may pipeline frames behind it).
        limit = self.config.pre_register_bytes
        while data and conn.session is None:
            cut = data.find(b"\n") + 1 or len(data)
            line, data = data[:cut], data[cut:]
            conn.pre_register_bytes += len(line)
            if conn.pre_register_bytes > limit:
                self._send_error(conn, "not_registered",
                                 f"More than {limit:,} bytes before register; closing.")
                self._close(conn, "kicked")
                return
            self._process(conn, self._decode(conn, line, now), now)
            if conn.removed or conn.over_budget:
                return
        if data:
            self._process(conn, self._decode(conn, data, now), now)

    def _decode(self, conn: _Connection, data: bytes, now: float) -> list[Any]:
        """Lines to frames, each line paid for from the connection's rate bucket *before*
        it is parsed. Past the budget, the rest of ``data`` is dropped unparsed, the
        client hears ``rate_limited`` (at most once a second) and the server stops
        reading it until the bucket holds a frame again (TCP pushes back on a flood
        meanwhile, and reading it costs nothing)."""
        rate = self.config.rate_limit
        if not rate:
            return conn.decoder.feed(data)
        tokens = min(self.config.rate_burst, conn.tokens + (now - conn.tokens_at) * rate)
        conn.tokens_at = now
        items, conn.tokens, dropped = conn.decoder.feed_budgeted(data, tokens)
        if dropped:
            if now - conn.rate_error_at >= 1.0:
                conn.rate_error_at = now
                self._send_error(conn, "rate_limited",
                                 f"Slow down: at most {rate:g} frames per second.")
            if not conn.over_budget:
                conn.over_budget = True
                conn.transport.pause_reading()
                wait = max(_MIN_PAUSE, (1.0 - conn.tokens) / rate)
                QTimer.singleShot(int(wait * 1000) + 1, self,
                                  functools.partial(self._budget_refilled, conn))
        return items

    def _budget_refilled(self, conn: _Connection) -> None:
        """A connection paused for its rate read on (see _decode)."""
        conn.over_budget = False
        if conn.removed:
            return
        conn.transport.resume_reading()
        if not conn.reading:
            self._read(conn)

    def _process(self, conn: _Connection, items: list[Any], now: float) -> None:
        """Apply decoded frames (or decoding errors) in order, each in its own try."""
        for item in items:
            # While a resume's replay runs, what the client sends waits (in order, with
            # the answers to it): others hear from it only once it is back, and its own
            # messages then come after everything it missed.
            fatal = isinstance(item, p.RemoteProtocolError) and item.fatal
            if (conn.replay is not None or conn.page is not None or conn.deferred) \
                    and not fatal:
                if conn.deferred is None:
                    conn.deferred = deque()
                conn.deferred.append(item)
                continue
            self._apply(conn, item)
            if conn.removed:
                return

    def _apply(self, conn: _Connection, item: Any) -> None:
        """Handle one decoded frame, or answer one decoding error."""
        if isinstance(item, p.RemoteProtocolError):
            if conn.session is None and item.ref in p.CLIENT_FRAME_TYPES and \
                    item.ref not in _ALLOWED_BEFORE_REGISTER:
                item = p.RemoteProtocolError("not_registered", "Send register first.",
                                             item.ref, frame_id=item.frame_id)
            self._queue(conn, p.encode(item.to_frame()))
            if item.fatal:  # a broken client, not one the host sent away: its session is held
                self._close(conn, "disconnected")
            return
        # Errors this frame causes echo its ``id`` (PROTOCOL-FEATURES §0, Correlation).
        self._answering = (conn, getattr(item, "id", None))
        try:
            self._handle(conn, item)
        except Exception:  # one bad frame must never strand the ones behind it
            log.exception("error handling %s from %r", item.type, conn)
            self._send_error(conn, "bad_frame", "The server could not handle that frame.",
                             item.type)
        finally:
            self._answering = (None, None)

    def _run_deferred(self, conn: _Connection) -> None:
        """The replay is done: apply what the client sent meanwhile, then read on."""
        deferred = conn.deferred
        while deferred and not conn.removed and conn.replay is None and conn.page is None:
            self._apply(conn, deferred.popleft())
        if not conn.deferred:
            conn.deferred = None
        if not conn.removed and conn.replay is None and conn.page is None \
                and not conn.reading and not conn.over_budget:
            conn.transport.resume_reading()
            self._read(conn)

    def _handle(self, conn: _Connection, frame: p.ClientFrame) -> None:
        session = conn.session
        kind = frame.type
        if session is None:
            if isinstance(frame, p.Register):
                self._register(conn, frame)
            elif isinstance(frame, p.Ping):
                self._pong(conn, frame)
            elif isinstance(frame, p.Bye):
                self._close(conn, "quit")
            elif not isinstance(frame, p.Pong):
                self._send_error(conn, "not_registered", "Send register first.", kind)
            return
        if isinstance(frame, p.Broadcast):
            self._broadcast(conn, session, frame)
        elif isinstance(frame, p.Whisper):
            self._whisper(conn, session, frame)
        elif isinstance(frame, p.Ping):
            self._pong(conn, frame)
        elif isinstance(frame, p.Pong):
            pass  # any frame already counts as a sign of life
        elif isinstance(frame, p.Join):
            self._join(conn, session, frame)
        elif isinstance(frame, p.Leave):
            self._leave(conn, session, frame)
        elif isinstance(frame, p.History):
            self._history(conn, session, frame)
        elif isinstance(frame, p.Bye):
            self._close(conn, "quit")
        elif isinstance(frame, p.Register):
            self._send_error(conn, "already_registered",
                             f"You are already registered as {session.name.display}.", kind)

    def _pong(self, conn: _Connection, frame: p.Ping) -> None:
        pong: dict[str, Any] = {"type": "pong"}
        if frame.token is not None:
            pong["token"] = frame.token
        self._queue(conn, p.encode(pong))

    # --- registration and resume -------------------------------------------------------

    def _register(self, conn: _Connection, frame: p.Register) -> None:
        c = self.config
        if frame.protocol != p.PROTOCOL_VERSION:
            self._send_error(
                conn, "protocol_mismatch",
                f"This server speaks protocol {p.PROTOCOL_VERSION}, not {frame.protocol}.",
                "register")
            return
        if c.password is not None and not self._password_ok(conn, frame.password or ""):
            self._close(conn, "kicked")
            return
        session = None
        if frame.resume:
            session = self._sessions_by_secret.get(hash_secret(frame.resume))
        name = parse_name(frame.name)
        if session is not None and session.name.skeleton != name.skeleton:
            session = None  # a session belongs to its name
        if session is None and self._registered >= c.max_clients:
            self._send_error(conn, "server_full",
                             f"The server is full ({c.max_clients} people).", "register")
            self._close(conn, "kicked")
            return
        if session is not None:
            self._resume(conn, session, frame)
            return
        if self._session_named(name) is not None:
            self._queue(conn, p.encode({"type": "username_taken", "name": name.display}))
            return
        if len(self._sessions_by_secret) - self._registered >= c.max_clients:
            # As many names held for a resume as people allowed: the oldest hold goes.
            held = (s for s in self._sessions_by_secret.values() if s.conn is None)
            self._end_session(min(held, key=lambda s: s.held_until or 0.0))
        secret = secrets.token_urlsafe(24)  # 192 bits
        lobby = self._rooms[p.LOBBY]
        sid = self.store.new_session(secret, name.display, [lobby.display])
        session = Session(sid, hash_secret(secret), name, secret, start_seq=self.store.last_seq)
        self._enter_room(session, lobby)
        self._sessions_by_secret[session.secret_hash] = session
        for key in name.keys:
            self._names[key] = session
        self._attach(conn, session)
        self._send_registered(conn, session, resumed=False, gap=False)
        self._go_live(conn, announce=True)

    def _password_ok(self, conn: _Connection, given: str) -> bool:
        """Check the room password; answer a wrong one. An address that keeps guessing
        waits out the window (a LAN password falls to thousands of guesses a second)."""
        c = self.config
        now = time.monotonic()
        address = conn.peer.rsplit(":", 1)[0]
        failures = self._password_failures.get(address)
        if failures:
            failures[:] = [t for t in failures if t > now - c.password_window]
            if len(failures) >= c.password_attempts:
                wait = math.ceil(failures[0] + c.password_window - now)
                error = p.error_frame("wrong_password", "Too many wrong passwords from your "
                                      f"address; try again in {wait} s.", "register")
                error["retry_after"] = wait  # seconds: a client can say when, not "check it"
                self._queue(conn, p.encode(error))
                return False
        if hmac.compare_digest(given.encode("utf-8"), (c.password or "").encode("utf-8")):
            return True
        self._password_failures.setdefault(address, []).append(now)
        self._send_error(conn, "wrong_password", "Wrong password.", "register")
        return False

    def _session_named(self, name: Name) -> Session | None:
        """The session whose name is, or looks like, ``name``."""
        for key in name.keys:
            session = self._names.get(key)
            if session is not None:
                return session
        return None

    def _send_registered(self, conn: _Connection, session: Session, *, resumed: bool,
                         gap: bool) -> None:
        """Queue ``registered``; lobby members that do not fit follow as ``user_joined``."""
        lobby = self._rooms[p.LOBBY]
        users = [c.session.name.display for c in lobby.conns if c.session]
        if session.name.display not in users and lobby.key in session.rooms:
            users.append(session.name.display)
        # The user's own rooms first, then the busiest others, at most _ROOMS_LISTED.
        own = session.rooms
        others = [room.display for room in self._ranked_rooms() if room.key not in own]
        listed = [*(room.display for room in own.values()), *others[:_ROOMS_LISTED]]
        frame: dict[str, Any] = {
            "type": "registered",
            "name": session.name.display,
            "session": session.secret,
            "users": users,
            "rooms": listed,
            "rooms_total": len(self._rooms),
            "in_rooms": [room.display for room in session.rooms.values()],
            "server": {"name": self.config.server_name, "version": __version__,
                       "tls": self.config.tls, "host": self.config.host_user,
                       "history": self.store.history_id,
                       "grace": self.config.resume_grace},
            "protocol": p.PROTOCOL_VERSION,
            "resumed": resumed,
        }
        if resumed:
            frame["gap"] = gap
        data, cut = _encode_trimmed(frame, ("users", False), ("rooms", False),
                                    ("in_rooms", False))
        self._queue(conn, data)
        for name in cut.get("users", ()):
            self._queue(conn, p.encode({"type": "user_joined", "name": name,
                                        "room": lobby.display}))
        if cut.get("rooms") or cut.get("in_rooms"):
            log.warning("registered frame for %s left out %d rooms to fit %d bytes",
                        session.name.display, len(cut.get("rooms", ())), p.MAX_FRAME_BYTES)

    def _ranked_rooms(self) -> list[Room]:
        """The busiest rooms (most people connected), enough to fill ``registered.rooms``
        whatever a user is in. Ranked afresh at most once a second on a server with many
        rooms, so a register costs the same with 20 rooms or 20,000."""
        now = time.monotonic()
        ranked = self._ranked
        if ranked is None or now - self._ranked_at > 1.0:
            wanted = _ROOMS_LISTED + self.config.max_rooms_per_user
            ranked = self._ranked = heapq.nsmallest(
                wanted, self._rooms.values(), key=lambda room: (-len(room.conns), room.display))
            self._ranked_at = now
        rooms = self._rooms
        return [room for room in ranked if rooms.get(room.key) is room]

    def _rooms_changed(self) -> None:
        """A room came or went: on a small server, rank again at the next register."""
        if len(self._rooms) <= 2 * _ROOMS_LISTED:
            self._ranked = None

    def _attach(self, conn: _Connection, session: Session) -> None:
        conn.session = session
        session.conn = conn
        session.held_until = None
        self._registered += 1
        self.clientCountChanged.emit(self._registered)

    def _resume(self, conn: _Connection, session: Session, frame: p.Register) -> None:
        old = session.conn
        if old is not None:  # the server has not noticed the old connection die yet
            self._close(old, "disconnected", abort=True)
        if frame.resume:
            session.secret = frame.resume
        since = frame.since if frame.since is not None else session.sent_upto
        # What came before the session began was never missed (and never lost to it).
        since = max(since, session.start_seq)
        buckets = [*session.rooms, WHISPER_BUCKET]
        gap = any(self.store.pruned_upto(bucket) > since for bucket in buckets)
        self._attach(conn, session)
        self._send_registered(conn, session, resumed=True, gap=gap)
        log.info("%s resumed since seq %d", session.name.display, since)
        # The live key view: rooms joined while replaying are replayed too.
        conn.replay = self.store.replay(session.rooms.keys(), session.sid, since, batch=100)
        self._continue_replay(conn)

    def _continue_replay(self, conn: _Connection) -> None:
        """Give a replaying connection its turn in the round of heavy work (_run_work):
        called when it starts and whenever its output has gone to the kernel."""
        if conn.replay is not None:
            self._schedule(conn)

    def _schedule(self, conn: _Connection) -> None:
        if conn.removed or conn.in_ring:
            return
        conn.in_ring = True
        self._work.append(conn)
        if not self._work_timer.isActive():
            self._work_timer.start()

    @Slot()
    def _run_work(self) -> None:
        """One slice of the heavy work (replays, history pages): round robin, a turn of
        one page or at most _TURN_BYTES of replay each, for at most _WORK_SLICE seconds;
        then the event loop reads and writes for everyone else before the next slice.
        200 resumes at once so cost bystanders a slice, not the sum of the replays."""
        ring = self._work
        deadline = time.perf_counter() + _WORK_SLICE
        while ring:
            conn = ring.popleft()
            conn.in_ring = False
            if conn.page is not None:
                self._page_turn(conn)
                again = conn.page is not None or conn.replay is not None
            else:
                again = self._replay_turn(conn)
            if again and not conn.in_ring and not conn.removed:
                conn.in_ring = True
                ring.append(conn)
            if time.perf_counter() >= deadline:
                break
        if ring and not self._work_timer.isActive():
            self._work_timer.start()

    def _replay_turn(self, conn: _Connection) -> bool:
        """Queue the next part of a replay; go live when caught up. Returns whether it
        should have another turn at once (False: done, or waiting for its output to
        reach the kernel, when _flush or on_drained brings it back)."""
        replay = conn.replay
        if replay is None or conn.removed:
            return False
        budget = max(64 * 1024, self.config.send_queue_bytes // 4)
        outstanding = conn.transport.pending() + sum(map(len, conn.out))
        if outstanding > budget:
            return False
        queued = 0
        turn = min(_TURN_BYTES, budget - outstanding)
        for frame in replay:
            data = p.encode(frame)
            self._queue(conn, data)
            queued += len(data)
            if queued >= turn:
                return outstanding + queued <= budget
        conn.replay = None
        self._go_live(conn, announce=True)
        self._run_deferred(conn)
        return False

    def _go_live(self, conn: _Connection, *, announce: bool) -> None:
        session = conn.session
        assert session is not None
        conn.live = True
        for room in session.rooms.values():
            if announce:
                self._fan_out(room, p.encode(
                    {"type": "user_joined", "name": session.name.display, "room": room.display}))
                self.userJoined.emit(session.name.display, room.display)
            room.conns[conn] = None

    def _detach(self, conn: _Connection, *, announce: str | None) -> None:
        """Take a connection out of its session and rooms, announcing why."""
        session = conn.session
        if session is None or session.conn is not conn:
            return
        # Only a live connection was announced (user_joined) in its rooms.
        announce = announce if conn.live else None
        conn.live = False
        for room in session.rooms.values():
            room.conns.pop(conn, None)
            if announce:
                self._fan_out(room, p.encode({"type": "user_left", "name": session.name.display,
                                              "room": room.display, "reason": announce}))
                self.userLeft.emit(session.name.display, room.display, announce)
        session.conn = None
        self.store.update_session_sent_upto(session.sid, session.sent_upto)
        self._registered -= 1
        self.clientCountChanged.emit(self._registered)

    def _end_session(self, session: Session) -> None:
        self._sessions_by_secret.pop(session.secret_hash, None)
        for key in session.name.keys:
            if self._names.get(key) is session:
                del self._names[key]
        for room in list(session.rooms.values()):
            self._leave_room(session, room)
        self.store.end_session(session.sid)

    # --- messages ----------------------------------------------------------------------

    def _room_of(self, conn: _Connection, session: Session, raw: str, ref: str) -> Room | None:
        found = self._find_room(parse_room(raw))
        room = session.rooms.get(found.key) if found is not None else None
        if room is None:
            if found is not None:
                self._send_error(conn, "not_in_room", f"You are not in {raw!r}; join it first.",
                                 ref)
            else:
                self._send_error(conn, "no_such_room", f"There is no room called {raw!r}.", ref)
        return room

    def _broadcast(self, conn: _Connection, session: Session, frame: p.Broadcast) -> None:
        # A retried send is answered with the original even if things changed since.
        if frame.id is not None and self._repeat(conn, session, frame.id):
            return
        room = self._room_of(conn, session, frame.room, "broadcast")
        if room is None:
            return
        ts = p.utc_timestamp()
        sender = session.name.display
        seq = self.store.add(ts=ts, bucket=room.key, room=room.display, sender=sender,
                             sender_sid=session.sid, text=frame.text, client_id=frame.id)
        message = {"type": "broadcast", "seq": seq, "ts": ts, "from": sender,
                   "room": room.display, "text": frame.text}
        self._posted.append(message)
        data = p.encode(message)
        # The sender's copy is not sent while it is still being replayed to: the replay
        # reaches it, in order.
        if frame.id is None:
            self._fan_out(room, data)
            self._unstored.append((conn, session, "broadcast", None, seq, (data, None)))
        else:
            session.remember_client_id(frame.id, seq)
            own = p.encode({**message, "id": frame.id})
            self._fan_out(room, data, conn, own)
            self._unstored.append((conn, session, "broadcast", frame.id, seq, (data, own)))

    def _repeat(self, conn: _Connection, session: Session, client_id: str) -> bool:
        """A send whose id this session already used: answer with the original.

        The original is sent only once the connection is live (a replay in progress
        carries it), and not at all if retention has removed it.
        """
        seq = session.client_ids.get(client_id)
        if seq is None:
            return False
        original = self.store.message_by_seq(seq)
        if original is not None and conn.live:
            self._queue(conn, p.encode(original))
        return True

    def _whisper(self, conn: _Connection, session: Session, frame: p.Whisper) -> None:
        if frame.id is not None and self._repeat(conn, session, frame.id):
            return
        target = self._session_named(parse_name(frame.to))
        if target is None:
            self._send_error(conn, "no_such_user", f"Nobody called {frame.to} is here.",
                             "whisper")
            return
        ts = p.utc_timestamp()
        seq = self.store.add(ts=ts, bucket=WHISPER_BUCKET, room=None,
                             sender=session.name.display, sender_sid=session.sid,
                             recipient=target.name.display, recipient_sid=target.sid,
                             text=frame.text, client_id=frame.id)
        message = {"type": "whisper", "seq": seq, "ts": ts, "from": session.name.display,
                   "to": target.name.display, "text": frame.text}
        # A held or replaying recipient gets it from the replay of its resume.
        theirs = own = None
        if target is not session and target.conn is not None and target.conn.live:
            theirs = p.encode(message)
            self._queue(target.conn, theirs)
        if frame.id is not None:
            session.remember_client_id(frame.id, seq)
            message["id"] = frame.id
        if conn.live:
            own = p.encode(message)
            self._queue(conn, own)
        self._unstored.append((conn, session, "whisper", frame.id, seq, (theirs, own)))

    def _join(self, conn: _Connection, session: Session, frame: p.Join) -> None:
        name = parse_room(frame.room)
        existing = self._find_room(name)  # the same name, or one that looks the same
        room = session.rooms.get(existing.key) if existing is not None else None
        if room is None:
            c = self.config
            if len(session.rooms) >= c.max_rooms_per_user:
                self._send_error(conn, "too_many_rooms",
                                 f"You are in {len(session.rooms)} rooms, the most allowed here; "
                                 "leave one first.", "join")
                return
            if (existing is None or not existing.members) and self._occupied >= c.max_rooms:
                self._send_error(conn, "too_many_rooms",
                                 f"This server has {self._occupied:,} rooms in use, the most it "
                                 "allows; join one of them.", "join")
                return
            if existing is None and not self._make_room_for_one_more():
                self._send_error(conn, "too_many_rooms",
                                 f"This server keeps {len(self._rooms):,} rooms, all in use, "
                                 "the most it allows; join one of them.", "join")
                return
            room = existing or self._room(name)
            self._enter_room(session, room)
            self.store.update_session_rooms(session.sid,
                                            [r.display for r in session.rooms.values()])
            if conn.live:  # else _go_live announces it with the others, when caught up
                self._fan_out(room, p.encode({"type": "user_joined",
                                              "name": session.name.display,
                                              "room": room.display}))
                self.userJoined.emit(session.name.display, room.display)
                room.conns[conn] = None
        users = [c.session.name.display for c in room.conns if c.session]
        if session.name.display not in users:
            users.append(session.name.display)
        history = self.store.page(room.key, None, p.DEFAULT_HISTORY_LIMIT, p.MAX_FRAME_BYTES)
        frame_out = {"type": "joined", "room": room.display, "users": users,
                     "history": history}
        data, cut = _encode_trimmed(frame_out, ("history", True), ("users", False),
                                    surely_too_large=_texts_exceed_a_frame(history))
        self._queue(conn, data)
        for user in cut.get("users", ()):
            self._queue(conn, p.encode({"type": "user_joined", "name": user,
                                        "room": room.display}))

    def _find_room(self, name: Name) -> Room | None:
        """The room called ``name``, or one whose name looks the same (``ѕсоре`` in
        Cyrillic is ``scope``)."""
        room = self._rooms.get(name.folded)
        if room is None:
            for key in name.keys:
                room = self._room_keys.get(key)
                if room is not None:
                    break
        return room

    def _room(self, name: Name) -> Room:
        room = self._find_room(name)
        if room is None:
            room = self._add_room(name)
            self.store.save_room(room.key, room.display)
        return room

    def _add_room(self, name: Name) -> Room:
        room = self._rooms[name.folded] = Room(name)
        for key in room.names:
            self._room_keys.setdefault(key, room)
        self._rooms_changed()
        return room

    def _enter_room(self, session: Session, room: Room) -> None:
        session.rooms[room.key] = room
        room.members += 1
        if room.members == 1:
            self._occupied += 1
            self._idle.pop(room.key, None)

    def _leave_room(self, session: Session, room: Room) -> None:
        """``session`` is out of ``room``; a room left empty and without history goes
        (so joining and leaving made-up rooms leaves nothing behind)."""
        if session.rooms.pop(room.key, None) is None:
            return
        room.members -= 1
        if room.members:
            return
        self._occupied -= 1
        self._forget_if_empty(room)

    def _forget_if_empty(self, room: Room) -> None:
        """An empty room goes if nothing was said in it; one with history stays, idle
        (the first to be retired when the server keeps too many rooms)."""
        if room.key == p.LOBBY or room.conns or room.members:
            return
        if self.store.count(room.key):
            self._idle[room.key] = room
            return
        self._drop_room(room)
        self.store.forget_room(room.key)

    def _drop_room(self, room: Room) -> None:
        del self._rooms[room.key]
        self._idle.pop(room.key, None)
        for key in room.names:
            if self._room_keys.get(key) is room:
                del self._room_keys[key]
        self._rooms_changed()

    def _make_room_for_one_more(self) -> bool:
        """At ``max_kept_rooms``, retire the room idle the longest (nobody in it, left
        longest ago) with its history; False if every room kept is in use."""
        if len(self._rooms) < self.config.max_kept_rooms:
            return True
        if not self._idle:
            return False
        room = next(iter(self._idle.values()))
        log.info("room %r retired with its history: the server keeps %d rooms at most",
                 room.display, self.config.max_kept_rooms)
        self._drop_room(room)
        self.store.retire_room(room.key)
        return True

    def _leave(self, conn: _Connection, session: Session, frame: p.Leave) -> None:
        found = self._find_room(parse_room(frame.room))
        if found is not None and found.key == p.LOBBY:
            self._send_error(conn, "not_in_room", "Everyone stays in the lobby; it cannot be left.",
                             "leave")
            return
        room = session.rooms.get(found.key) if found is not None else None
        if room is None:
            if found is not None:
                self._send_error(conn, "not_in_room", f"You are not in {frame.room!r}.", "leave")
            else:
                self._send_error(conn, "no_such_room", f"There is no room called {frame.room!r}.",
                                 "leave")
            return
        self._queue(conn, p.encode({"type": "left", "room": room.display}))
        if room.conns.pop(conn, False) is None:  # it was live there, so others knew
            self._fan_out(room, p.encode({"type": "user_left", "name": session.name.display,
                                          "room": room.display, "reason": "left"}))
            self.userLeft.emit(session.name.display, room.display, "left")
        self._leave_room(session, room)
        self.store.update_session_rooms(session.sid, [r.display for r in session.rooms.values()])

    def _history(self, conn: _Connection, session: Session, frame: p.History) -> None:
        """A page is heavy work: it waits for its connection's turn (_run_work), and what
        the client sends behind it waits for the page, in order."""
        conn.page = frame
        self._schedule(conn)

    def _page_turn(self, conn: _Connection) -> None:
        frame, conn.page = conn.page, None
        session = conn.session
        if frame is None or session is None or conn.removed:
            return
        room = self._room_of(conn, session, frame.room, "history")
        if room is not None:
            messages = self.store.page(room.key, frame.before, frame.limit, p.MAX_FRAME_BYTES)
            data, _cut = _encode_trimmed({"type": "history", "room": room.display,
                                          "messages": messages}, ("messages", True),
                                         surely_too_large=_texts_exceed_a_frame(messages))
            self._queue(conn, data)
        self._run_deferred(conn)

    # --- writing -----------------------------------------------------------------------

    def _send_error(self, conn: _Connection, code: str, message: str,
                    ref: str | None = None) -> None:
        error = p.error_frame(code, message, ref)
        answering, frame_id = self._answering
        if answering is conn and frame_id is not None:
            error["id"] = frame_id
        self._queue(conn, p.encode(error))

    def _queue(self, conn: _Connection, data: bytes) -> None:
        out = conn.out
        if not out:
            self._dirty.append(conn)
            if not self._flush_timer.isActive():
                self._flush_timer.start()
        out.append(data)

    def _fan_out(self, room: Room, data: bytes, sender: _Connection | None = None,
                 sender_copy: bytes = b"") -> None:
        """Queue ``data`` for everyone live in ``room``; ``sender`` gets ``sender_copy``."""
        dirty = self._dirty
        for conn in room.conns:
            out = conn.out
            if not out:
                dirty.append(conn)
            out.append(sender_copy if conn is sender else data)
        if dirty and not self._flush_timer.isActive():
            self._flush_timer.start()

    def _commit(self, *, messages_only: bool = False) -> None:
        """Commit the store; if that fails, nothing of the lost messages is sent."""
        try:
            committed = self.store.commit(messages_only=messages_only)
        except StorageError as exc:
            self._storage_failed(exc)
            return
        if committed:
            self._unstored.clear()
            if self._storage_trouble is not None:
                self._storage_trouble = None
                log.warning("storing works again in %s: messages are stored and sent",
                            self.config.data_dir)

    def _commit_before_read(self) -> None:
        self._commit(messages_only=True)

    def _storage_failed(self, exc: StorageError) -> None:
        """The last commit was rolled back: take back every queued copy of the lost
        messages, and tell each sender that its message was not sent.

        The sender's ``storage_error`` takes the place of its own copy in its
        out-list, so it comes in the order the echo would have (a client may match
        answers to its sends in order); a sender with no copy queued gets it last.
        """
        if self._storage_trouble is None:  # said once, and once more when it is over
            log.error("cannot store messages in %s (%s): each is refused with storage_error "
                      "until it can; everything else goes on", self.config.data_dir, exc)
        self._storage_trouble = str(exc)
        lost = set(exc.seqs)
        unstored = [entry for entry in self._unstored if entry[4] in lost]
        self._unstored = []
        doomed: set[int] = set()
        errors: dict[tuple[int, int], tuple[_Connection, bytes]] = {}  # in place of a copy
        last: list[tuple[_Connection, bytes]] = []  # senders with no copy of their own queued
        for conn, session, kind, client_id, seq, (shared, own) in unstored:
            doomed.update(id(data) for data in (shared, own) if data is not None)
            if client_id is not None and session.client_ids.get(client_id) == seq:
                del session.client_ids[client_id]  # a retry is a new message, not a repeat
            if conn.removed:
                continue
            frame = p.error_frame("storage_error", "The host could not store your message, "
                                  "so nobody got it (its disk may be full); try again later.",
                                  kind)
            if client_id is not None:
                frame["id"] = client_id
            mine = own if own is not None or kind != "broadcast" else shared
            if mine is None:
                last.append((conn, p.encode(frame)))
            else:
                errors[(id(conn), id(mine))] = (conn, p.encode(frame))
        for conn in self._dirty:  # every connection with queued frames is here
            out = conn.out
            if not out:
                continue
            kept: list[bytes] = []
            for data in out:
                if id(data) not in doomed:
                    kept.append(data)
                elif (swap := errors.pop((id(conn), id(data)), None)) is not None:
                    kept.append(swap[1])
            out[:] = kept
        for conn, error in (*errors.values(), *last):
            self._queue(conn, error)
        if self._posted:
            self._posted = [message for message in self._posted if message["seq"] not in lost]

    @Slot()
    def _flush_if_dirty(self) -> None:
        if self._dirty:
            self._flush_timer.stop()
            self._flush()

    @Slot()
    def _flush(self) -> None:
        """Once per pass: commit the store, then one write per connection."""
        self._commit(messages_only=True)  # stored before any copy is sent
        if self._posted:
            posted, self._posted = self._posted, []
            self.messagesPosted.emit(posted)
        dirty, self._dirty = self._dirty, []
        limit = self.config.send_queue_bytes
        last_seq = self.store.last_seq
        replaying: list[_Connection] = []
        for conn in dirty:
            out = conn.out
            if conn.removed or not out:
                out.clear()
                continue
            send = conn.transport.direct_send
            if send is not None and len(out) == 1:
                # The fan-out hot path: one frame, no backlog, one send() and nothing
                # else per recipient. Anything short of "all taken" goes the long way.
                data = out.pop()
                try:
                    sent = send(data)
                except OSError:
                    sent = 0  # write() below tries again, and reports a lost peer
                waiting = 0 if sent == len(data) else conn.transport.write(data[sent:])
            else:
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                waiting = conn.transport.write(data)  # what the kernel refused: slow peer
            if waiting == 0:
                if conn.live:
                    conn.session.sent_upto = last_seq  # all of it is the kernel's
                if conn.replay is not None:
                    replaying.append(conn)
            elif waiting + conn.transport.kernel_unsent() > limit:
                self._drop_stalled_reader(conn)
        for conn in replaying:  # the kernel took the last batch: send the next
            self._continue_replay(conn)

    def _over_send_queue_cap(self, conn: _Connection) -> bool:
        """Whether ``conn`` has more unsent bytes than the cap (then it is dropped).

        ``_flush`` checks after each write; the sweep checks every connection too, so
        bytes a transport holds on its own account (TLS: Qt's buffers) are held to the
        same cap when nothing new is queued for that connection."""
        transport = conn.transport
        waiting = transport.pending()
        if not waiting or waiting + transport.kernel_unsent() <= self.config.send_queue_bytes:
            return False
        self._drop_stalled_reader(conn)
        return True

    def _drop_stalled_reader(self, conn: _Connection) -> None:
        log.warning("%r is not reading; dropping it", conn)
        self._close(conn, "timeout", abort=True)

    def _close(self, conn: _Connection, reason: str, *, abort: bool = False) -> None:
        """End a connection: send what it is owed (unless aborting), then remove it."""
        if conn.removed:
            return
        if not abort and conn.out:
            self._commit(messages_only=True)  # stored before any copy is sent
        owed = b"" if abort else b"".join(conn.out)
        self._remove_connection(conn, reason)
        transport = conn.transport
        if abort:
            transport.abort()
        else:
            if owed:
                transport.write(owed)
            # Waits for the owed bytes to reach the kernel; _sweep aborts it if the
            # peer does not take them within _CLOSE_GRACE.
            transport.close()
        if not transport.is_open():
            self._discard(conn)
        elif not conn.deleted:
            conn.closing_since = time.monotonic()
            self._closing.add(conn)

    def _remove_connection(self, conn: _Connection, reason: str) -> None:
        """The one way out for a connection; calling it twice is harmless.

        It takes the connection out of every list and announces the departure; the
        QObject itself goes (``_discard``) once its socket has closed, so the last
        bytes (an error, a ``bye``) are not cut off by deleting the socket.
        """
        if conn.removed:
            return
        conn.removed = True
        conn.out.clear()
        self._conns.discard(conn)
        session = conn.session
        if session is not None and session.conn is conn:
            self._detach(conn, announce=reason)
            if reason in ("quit", "kicked"):
                self._end_session(session)
            else:
                session.held_until = time.monotonic() + self.config.resume_grace
        conn.replay = None

    def _discard(self, conn: _Connection) -> None:
        """Forget a removed connection for good and delete it (idempotent)."""
        if conn.deleted:
            return
        conn.deleted = True
        self._closing.discard(conn)
        self._conns.discard(conn)
        self._churn += 1
        conn.transport.deleteLater()
        self._descriptor_freed()

    # --- timers ------------------------------------------------------------------------

    @Slot()
    def _sweep(self) -> None:
        """Registration deadline, idle pings and timeouts, and expired held sessions."""
        self._commit()  # session and room changes not yet carried by a message commit
        if self._churn >= _TRIM_AFTER_CHURN:
            self._churn = 0
            _give_back_free_heap()
        now = time.monotonic()
        c = self.config
        for conn in list(self._closing):
            if conn.closing_since is not None and now - conn.closing_since > _CLOSE_GRACE:
                conn.transport.abort()
                self._discard(conn)
        for conn in list(self._conns):
            if self._over_send_queue_cap(conn):  # also when nothing new was queued for it
                continue
            if conn.session is None:
                if now - conn.connected_at > c.register_timeout:
                    self._send_error(conn, "not_registered",
                                     f"No register within {c.register_timeout:g} s; closing.")
                    self._close(conn, "timeout")
            elif conn.ping_sent_at is not None:
                if now - conn.ping_sent_at > c.idle_timeout:
                    self._queue(conn, p.encode({"type": "bye", "reason": "timeout"}))
                    self._close(conn, "timeout")
            elif now - conn.last_heard > c.idle_timeout:
                conn.ping_sent_at = now
                self._queue(conn, p.encode({"type": "ping", "token": secrets.token_hex(4)}))
        if self._password_failures:
            window = self.config.password_window
            for address, times in list(self._password_failures.items()):
                if times[-1] <= now - window:
                    del self._password_failures[address]
        for session in list(dict.fromkeys(self._names.values())):
            if session.held_until is not None and session.held_until < now:
                log.info("resume grace of %s ended", session.name.display)
                self._end_session(session)


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


def _texts_exceed_a_frame(messages: list[dict[str, Any]]) -> bool:
    """Whether the texts alone (a byte at least per character) overflow a frame."""
    total = 0
    for message in messages:
        total += len(message["text"])
        if total >= p.MAX_FRAME_BYTES:
            return True
    return False


def _encode_trimmed(
    frame: dict[str, Any], *trims: tuple[str, bool], surely_too_large: bool = False
) -> tuple[bytes, dict[str, list[Any]]]:
    """Encode ``frame`` within the frame size, shortening its lists if it must.

    ``trims`` names the lists to shorten, in the order to sacrifice them, each with
    whether to keep its tail (newest history) rather than its head. Each list is cut
    only as far as needed, once the lists before it are as short as they can be.
    Returns the bytes and, per list, the items left out (the caller may send those
    some other way, e.g. members as ``user_joined``).

    When it does not fit, each item is measured once, and only as many as can fit: a
    page of 200 messages of 4,000 emoji (several MB) costs what 64 KiB of it does, not a
    binary search that encodes it again and again (``surely_too_large`` skips even the
    first try of the whole).
    """
    cut: dict[str, list[Any]] = {}
    if not surely_too_large:  # the caller's cheap check says it may well fit as it is
        try:
            return p.encode(frame), cut  # what nearly every frame does
        except p.LocalProtocolError:
            pass
    for key, keep_tail in trims:
        items = list(frame[key])
        frame[key] = []
        try:
            room = p.MAX_FRAME_BYTES - len(p.encode(frame))  # what the list may take
        except p.LocalProtocolError:
            cut[key] = items  # even without any of it the frame is too large: go on
            continue
        taken = used = 0
        for item in (reversed(items) if keep_tail else items):
            size = p.encoded_size(item) + (1 if taken else 0)  # "," between items
            if used + size > room:
                break
            used += size
            taken += 1
        frame[key] = items[len(items) - taken:] if keep_tail else items[:taken]
        left_out = items[:len(items) - taken] if keep_tail else items[taken:]
        if left_out:
            cut[key] = left_out
        return p.encode(frame), cut
    try:
        return p.encode(frame), cut
    except p.LocalProtocolError:
        raise p.LocalProtocolError(
            "frame_too_large", f"{frame['type']} does not fit in a frame") from None
