"""ChatClient: one person's connection to a qtchat server, on QTcpSocket/QSslSocket.

It speaks protocol v1 and keeps the conversation whole across network blips:
after an unclean drop it reconnects with backoff and jitter, resumes its
session with ``since`` = the highest ``seq`` it has seen, drops duplicates by
``seq``, and re-sends every outgoing message the server has not yet echoed
(each carries a client ``id``, so the server never posts one twice).

Failures are turned into ``ConnectError`` with a ``kind`` and a sentence a
person can act on (see ``FAILURE_KINDS``). The class is signal-driven;
``connect_async`` wraps the first connection in an awaitable for qasync flows.

It does not trust the host (a hostile one, or anyone in the middle of a plain TCP
connection): every frame is checked (``protocol.parse_server_frame``) before it is
acted on, and one that breaks the protocol ends the connection with a sentence;
after ``MAX_VIOLATIONS`` in a row it stops. Nothing a host sends can grow without
bound here (rooms, members, seen seqs, answers not asked for, pongs), what is read
is handled in slices of at most ``SLICE_SECONDS`` so the window keeps repainting,
and only checked values reach ``session``/``last_seq``, which the app saves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtNetwork import QAbstractSocket, QSslSocket, QTcpSocket

from qtchat import protocol as p
from qtchat.names import InvalidName, parse_name

log = logging.getLogger(__name__)

# Outgoing frames per second the client allows itself: below the server's
# default limit (20/s, burst 40), so its own sends are never dropped as a flood.
CLIENT_RATE = 15.0
CLIENT_BURST = 30
MAX_SERVER_FRAME = 1 << 20  # a server's frame limit may be raised by its host: lenient
# Reading is cheap and handling is not: what was read waits, up to INBOX_BYTES, and is
# handled SLICE_FRAMES frames or SLICE_SECONDS at a time, the rest on a zero timer, so
# the event loop runs (the window repaints, timers fire) in between. A full inbox stops
# reading (Qt's own buffer is capped too) until it is handled: TCP then slows the host.
INBOX_BYTES = 1 << 20
DECODE_CHUNK = 16 << 10  # bytes decoded at once (at most a few ms of JSON)
SLICE_FRAMES = 200
SLICE_SECONDS = 0.008
# A host that breaks the protocol is left, and tried again after a growing pause; this
# many times in a row (a connection that stayed clean for VIOLATION_FORGET_S resets
# the count) and the client stops and says so.
MAX_VIOLATIONS = 3
VIOLATION_FORGET_S = 60.0
# Bounds on what a host can make the client keep.
MAX_ROOMS = 1_000  # rooms this person is in (the server allows 100 by default)
MAX_MEMBERS_PER_ROOM = p.MAX_MEMBERS_LISTED
MAX_SEEN_SEQS = 50_000  # seqs remembered to drop duplicates
MAX_ANSWERS_AWAITED = 1_000  # join/history requests counted while unanswered
PONG_INTERVAL = 0.5  # at most two pongs a second, whatever the host's pings
DEFAULT_GRACE_S = 120.0  # the server's default resume grace, when it does not say
# Never give up sooner than this on the host's word: a host with a short grace period
# still takes a client back after it (as a new session), e.g. after a short outage.
MIN_GIVE_UP_S = 30.0
CLOSE_LINGER_MS = 2000  # how long ``close`` lets the bye drain before dropping the socket
TLS_PROBE_MS = 3000  # how long a TLS handshake may take to tell a TLS host (see _probe_for_tls)

FAILURE_KINDS = {
    "not_resolved": "The name does not resolve to an address.",
    "refused": "Nothing is listening at that address and port.",
    "timeout": "No answer in time (firewall, wrong network, or a program that is not qtchat).",
    "closed": "The host closed the connection before answering.",
    "tls_mismatch": "The host's certificate is not the one expected.",
    "tls_failed": "The secure (TLS) connection could not be set up.",
    "wrong_password": "The room's password was not accepted.",
    "server_full": "The room is full.",
    "protocol_mismatch": "The host runs an incompatible version of qtchat.",
    "username_taken": "Someone in the room already uses that name.",
    "invalid_name": "The name is not allowed.",
    "network": "A network error.",
    "protocol": "The host sent something that breaks the qtchat protocol.",
}


# Server refusals of a join, as sentences naming the address and what to try.
_JOIN_REFUSALS = {
    "wrong_password": "The host at {where} did not accept the password: check it with the "
                      "host (it is case-sensitive) and join again.",
    "server_full": "The room at {where} is full: try again later, or ask the host to let "
                   "more people in.",
    "protocol_mismatch": "The host at {where} runs a version of qtchat this app cannot talk "
                         "to: install the same qtchat version as the host.",
}
# ``bye`` reasons after which the session can be resumed, with what connectionLost says.
_RESUMABLE_BYES = {
    "shutdown": "the host closed the room",
    "timeout": "the host stopped waiting for us",
}


class ConnectError(Exception):
    """Joining failed; ``kind`` is a key of FAILURE_KINDS, ``str()`` says what to do."""

    def __init__(self, kind: str, message: str, *, expected: str | None = None,
                 presented: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        # For ``tls_mismatch``: the fingerprint we pinned and the one the host showed.
        self.expected = expected
        self.presented = presented


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect."""

    host: str
    port: int
    tls: bool = False
    fingerprint: str | None = None  # expected SHA-256 fingerprint (from an invite or discovery)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ChatClient(QObject):
    """A chat connection that survives drops.

    Signals:
        stateChanged(str state): "disconnected", "connecting", "connected", "reconnecting".
        registered(dict frame): the server accepted us (also after each resume).
        connectFailed(ConnectError error): joining failed (the first connection, or a
            reconnect that cannot succeed, e.g. the name was taken meanwhile); no retry follows.
        usernameTaken(str name): the name is in use; call ``register`` with another.
        connectionLost(str reason): an established connection dropped; reconnecting.
        protocolError(ConnectError error): the host sent a frame that breaks the protocol,
            so the client left it (kind "protocol", a sentence saying what); a reconnect
            follows. When the client gives up instead, only ``connectFailed`` says so.
        reconnected(bool gap): resumed after a drop; ``gap`` if history was lost meanwhile.
        startedOver(): the host came back with a different history (a new data folder):
            its ``seq`` numbers start again, so what was shown before is no longer on it.
            Emitted before ``reconnected``.
        closed(str reason): the conversation is over (bye, kicked, or ``close()``).
        userJoined(str name, str room) / userLeft(str name, str room, str reason).
        roomJoined(dict frame): a ``joined`` frame (members and recent history).
        roomLeft(str room).
        messageReceived(dict frame): a new ``broadcast`` or ``whisper`` (never twice).
        historyReceived(str room, list messages): an answer to ``request_history``.
        sendConfirmed(str id, dict frame): the server stored our message ``id``.
        sendFailed(str id, str code, str message): the server refused our message ``id``.
        errorReceived(str code, str message, str ref): any other ``error`` frame.
        pongReceived(str token).
        certificateSeen(str fingerprint): the TLS certificate the host presented.
        reconnecting(int attempt, str reason): reconnect attempt ``attempt`` is scheduled
            after the connection was lost for ``reason`` (a sentence fragment).
        reconnectStopped(str sentence): the client stopped reconnecting, by itself after
            the host's grace period (nothing could be resumed after it) or because
            ``stop_reconnecting`` was called; ``reconnect_now`` tries again.
    """

    stateChanged = Signal(str)
    registered = Signal(object)
    connectFailed = Signal(object)
    usernameTaken = Signal(str)
    connectionLost = Signal(str)
    protocolError = Signal(object)
    reconnected = Signal(bool)
    startedOver = Signal()
    closed = Signal(str)
    userJoined = Signal(str, str)
    userLeft = Signal(str, str, str)
    roomJoined = Signal(object)
    roomLeft = Signal(str)
    messageReceived = Signal(object)
    historyReceived = Signal(str, list)
    sendConfirmed = Signal(str, object)
    sendFailed = Signal(str, str, str)
    errorReceived = Signal(str, str, str)
    pongReceived = Signal(str)
    certificateSeen = Signal(str)
    reconnecting = Signal(int, str)
    reconnectStopped = Signal(str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        reconnect: bool = True,
        pin_store: Any = None,
        give_up_after: float | None = None,
    ) -> None:
        super().__init__(parent)
        # How long to keep reconnecting after a drop: None means the host's resume grace
        # period (``server.grace`` in ``registered``, else 120 s); past it the session
        # is gone anyway, and a guest should not be left "reconnecting…" forever.
        self.give_up_after = give_up_after
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.auto_reconnect = reconnect
        self.pin_store = pin_store
        self.state = "disconnected"
        self.endpoint: Endpoint | None = None
        self.name = ""
        self.password: str | None = None
        self.session: str | None = None
        self.last_seq = 0
        self.server_info: dict[str, Any] = {}
        self.peer_fingerprint: str | None = None  # the host's TLS certificate, when TLS
        self.fingerprint_first_use = False
        self.rooms: list[str] = [p.LOBBY]
        self._socket: QTcpSocket | None = None
        self._decoder = p.FrameDecoder(parse=p.parse_server_frame, max_frame=MAX_SERVER_FRAME)
        self._ever_registered = False
        self._registered_now = False
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._members: dict[str, set[str]] = {}  # folded room -> folded names, bounded
        self._joins_asked = 0  # join / history requests not answered yet on this connection
        self._histories_asked = 0
        self._violations = 0  # protocol violations in a row
        self._registered_at = 0.0
        self._inbox = bytearray()  # read, not yet decoded (at most INBOX_BYTES)
        self._frames: deque[Any] = deque()  # decoded, not yet handled
        self._after_input: Any = None  # how the connection ended, once input is handled
        self._pong: bytes | None = None  # at most one answer to the host's ping waits
        self._pong_at = -PONG_INTERVAL  # when the last one was written (monotonic)
        self._outbox: dict[str, dict[str, Any]] = {}  # id -> frame, until echoed
        self._failed: set[str] = set()  # outbox ids refused: sent again only by ``retry``
        self._in_flight: deque[str] = deque()  # ids sent on this connection, in order
        self._heard = False  # any bytes from the server on this connection yet
        self._send_queue: deque[bytes] = deque()
        self._tokens = float(CLIENT_BURST)
        self._tokens_at = time.monotonic()
        self._attempt = 0
        self._closing = False
        self.lost_reason = ""  # why the connection being reconnected was lost
        self.stopped_reconnecting = False  # gave up (or was told to): ``reconnect_now``
        self._ping_counter = itertools.count(1)
        self._awaiting_pong: str | None = None
        self._read_since_ping = False  # bytes came from the host since the keep-alive ping
        self._connect_timer = self._timer(self._on_connect_timeout, single=True)
        self._reconnect_timer = self._timer(self._reconnect, single=True)
        self._give_up_timer = self._timer(self._give_up, single=True)
        self._keepalive_timer = self._timer(self._on_keepalive, single=False)
        self._pace_timer = self._timer(self._drain_send_queue, single=True)
        self._slice_timer = self._timer(self._handle_input, single=True)
        self._slice_timer.setInterval(0)
        self._tls_probe: QSslSocket | None = None
        self._tls_probe_timer = self._timer(self._on_tls_probe_done, single=True)

    def _timer(self, slot, *, single: bool) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(single)
        timer.timeout.connect(slot)
        return timer

    # --- public API ---------------------------------------------------------------------

    def open(
        self,
        endpoint: Endpoint,
        name: str,
        password: str | None = None,
        resume: tuple[str, int] | None = None,
    ) -> None:
        """Connect and register; results arrive as ``registered`` or ``connectFailed``.

        ``resume`` = (session, last seq seen) from an earlier run of the app: the
        server gives the name back and replays what was missed, if it still holds
        that session; otherwise it is a fresh registration.
        """
        self.endpoint = endpoint
        self.name = name
        self.password = password
        self._closing = False
        self._ever_registered = False
        self.session, self.last_seq = _checked_resume(resume)
        problem = _name_problem(name)
        if problem is not None:  # no point in connecting: say so at once
            self._drop_socket()
            self._set_state("disconnected")
            self.connectFailed.emit(self._invalid_name_error(name, problem))
            return
        self._start_connection()

    async def connect_async(
        self, endpoint: Endpoint, name: str, password: str | None = None
    ) -> dict[str, Any]:
        """``open`` as an awaitable: the ``registered`` frame, or raises ConnectError."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def done(frame: object) -> None:
            if not future.done():
                future.set_result(frame)  # type: ignore[arg-type]

        def failed(error: object) -> None:
            if not future.done():
                future.set_exception(error)  # type: ignore[arg-type]

        def taken(taken_name: str) -> None:
            failed(ConnectError(
                "username_taken",
                f"Someone at {endpoint.address} already uses the name \"{taken_name}\": "
                "choose another name."))

        self.registered.connect(done)
        self.connectFailed.connect(failed)
        self.usernameTaken.connect(taken)
        try:
            self.open(endpoint, name, password)
            return await future
        finally:
            self.registered.disconnect(done)
            self.connectFailed.disconnect(failed)
            self.usernameTaken.disconnect(taken)

    def register(self, name: str) -> None:
        """Try another name after ``usernameTaken`` or ``invalid_name`` (the connection
        stayed open). An invalid name is refused at once with ``connectFailed``."""
        problem = _name_problem(name)
        if problem is not None:
            self.connectFailed.emit(self._invalid_name_error(name, problem))
            return
        self.name = name
        self._send_register()

    def send_broadcast(self, text: str, room: str = p.LOBBY, message_id: str | None = None) -> str:
        """Post to a room; returns the message's id. Queued while disconnected."""
        return self._send_message(p.Broadcast(text=text, room=room, id=message_id or _new_id()))

    def send_whisper(self, to: str, text: str, message_id: str | None = None) -> str:
        """A private message to one person; returns the message's id."""
        return self._send_message(p.Whisper(to=to, text=text, id=message_id or _new_id()))

    def retry(self, message_id: str) -> None:
        """Send a failed message again (same id: the server will not post it twice).

        While disconnected it goes with the next (re)connection.
        """
        frame = self._outbox.get(message_id)
        if frame is None:
            return
        self._failed.discard(message_id)
        if self._registered_now:
            self._in_flight.append(message_id)
            self._send_raw(p.encode(frame))

    def discard(self, message_id: str) -> None:
        """Forget a pending or failed message."""
        self._outbox.pop(message_id, None)
        self._failed.discard(message_id)

    @property
    def pending_ids(self) -> list[str]:
        """Messages sent or queued that the server has not confirmed yet (failed ones too)."""
        return list(self._outbox)

    @property
    def failed_ids(self) -> list[str]:
        """Messages refused (``sendFailed``): kept for ``retry`` or ``discard``, not re-sent."""
        return [message_id for message_id in self._outbox if message_id in self._failed]

    def join(self, room: str) -> None:
        if self._send_frame(p.Join(room=room)):
            self._joins_asked = min(self._joins_asked + 1, MAX_ANSWERS_AWAITED)

    def leave(self, room: str) -> None:
        self._send_frame(p.Leave(room=room))

    def request_history(self, room: str, before: int | None = None, limit: int = 50) -> None:
        if self._send_frame(p.History(room=room, before=before, limit=limit)):
            self._histories_asked = min(self._histories_asked + 1, MAX_ANSWERS_AWAITED)

    def ping(self, token: str | None = None) -> str:
        token = token or f"c{next(self._ping_counter)}"
        self._send_frame(p.Ping(token=token))
        return token

    def close(self, reason: str = "quit") -> None:
        """Leave for good: ``bye``, then close. No reconnect follows."""
        self._closing = True
        for timer in (self._reconnect_timer, self._connect_timer, self._keepalive_timer,
                      self._pace_timer, self._slice_timer, self._give_up_timer):
            timer.stop()
        self._forget_input()
        self._drop_tls_probe()
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.blockSignals(True)
            if self._registered_now and \
                    socket.state() == QAbstractSocket.SocketState.ConnectedState:
                socket.write(p.encode(p.Bye()))
            # Not abort(): that discards the unsent bye, and the server, seeing a drop
            # instead of a goodbye, would hold the name for its whole resume grace period.
            socket.disconnectFromHost()
            if socket.state() == QAbstractSocket.SocketState.UnconnectedState:
                socket.deleteLater()
            else:  # still sending the bye
                QTimer.singleShot(CLOSE_LINGER_MS, socket, socket.deleteLater)
        self._registered_now = False
        self._send_queue.clear()
        self._in_flight.clear()
        self._set_state("disconnected")
        self.closed.emit(reason)

    def grace_period(self) -> float:
        """Seconds to keep reconnecting: ``give_up_after``, else the host's grace."""
        if self.give_up_after is not None:
            return self.give_up_after
        grace = self.server_info.get("grace")
        if isinstance(grace, (int, float)) and not isinstance(grace, bool) and \
                0 < grace <= 7 * 24 * 3600:
            return max(float(grace), MIN_GIVE_UP_S)
        return DEFAULT_GRACE_S

    def stop_reconnecting(self, sentence: str | None = None) -> None:
        """Stop trying to reconnect (the person pressed Stop, or the grace period ended).

        The outbox fails (its messages can be retried after ``reconnect_now``)."""
        if self.state != "reconnecting" or self._closing:
            return
        self._reconnect_timer.stop()
        self._connect_timer.stop()
        self._give_up_timer.stop()
        self._drop_socket()
        self.stopped_reconnecting = True
        self._set_state("disconnected")
        self._fail_outbox()
        where = self.endpoint.address if self.endpoint else "the host"
        self.reconnectStopped.emit(
            sentence or f"Stopped reconnecting to {where}: press Reconnect to try again.")

    def reconnect_now(self) -> None:
        """Try again after ``stop_reconnecting`` (or a give-up): a fresh grace period."""
        if not self.stopped_reconnecting or self._closing or self.endpoint is None:
            return
        self.stopped_reconnecting = False
        self._attempt = 0
        self._give_up_timer.start(int(self.grace_period() * 1000))
        self._attempt += 1
        self.reconnecting.emit(self._attempt, self.lost_reason)
        self._start_connection()

    @Slot()
    def _give_up(self) -> None:
        if self.state != "reconnecting" or self._closing:
            return
        where = self.endpoint.address if self.endpoint else "the host"
        seconds = self.grace_period()
        span = f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} minutes"
        self.stop_reconnecting(
            f"Gave up reconnecting to {where} after {span}: the host did not come back. "
            "Press Reconnect to try again.")

    @property
    def connected(self) -> bool:
        return self._registered_now

    # --- connecting ---------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)

    def _start_connection(self) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        self._drop_socket()
        self._decoder = p.FrameDecoder(parse=p.parse_server_frame, max_frame=MAX_SERVER_FRAME)
        self._registered_now = False
        self._heard = False
        self._in_flight.clear()
        self._send_queue.clear()
        self._joins_asked = self._histories_asked = 0
        self._set_state("reconnecting" if self._ever_registered else "connecting")
        socket: QTcpSocket = QSslSocket(self) if endpoint.tls else QTcpSocket(self)
        self._socket = socket
        socket.setReadBufferSize(INBOX_BYTES)  # Qt's buffer too: a full inbox stops reading
        socket.connected.connect(self._on_connected)
        socket.readyRead.connect(self._on_ready_read)
        socket.disconnected.connect(self._on_disconnected)
        socket.errorOccurred.connect(self._on_socket_error)
        self._connect_timer.start(int(self.connect_timeout * 1000))
        if isinstance(socket, QSslSocket):
            socket.setPeerVerifyMode(QSslSocket.PeerVerifyMode.VerifyNone)  # we pin instead
            socket.encrypted.connect(self._on_encrypted)
            socket.connectToHostEncrypted(endpoint.host, endpoint.port)
        else:
            socket.connectToHost(endpoint.host, endpoint.port)

    def _drop_socket(self) -> None:
        self._drop_tls_probe()
        self._forget_input()
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.blockSignals(True)
            socket.abort()
            socket.deleteLater()

    @Slot()
    def _on_connected(self) -> None:
        socket = self._socket
        if socket is None:
            return
        socket.setSocketOption(QAbstractSocket.SocketOption.LowDelayOption, 1)
        if not isinstance(socket, QSslSocket):
            self._send_register()

    @Slot()
    def _on_encrypted(self) -> None:
        socket = self._socket
        if not isinstance(socket, QSslSocket) or self.endpoint is None:
            return
        from qtchat.tlsutil import qt_fingerprint

        seen = qt_fingerprint(socket.peerCertificate())
        self.certificateSeen.emit(seen)
        expected = self.endpoint.fingerprint
        address = self.endpoint.address
        if expected is None and self.pin_store is not None:
            expected = self.pin_store.get(address)
        if expected is not None and _same_fingerprint(expected, seen) is False:
            self._fail_connection(ConnectError(
                "tls_mismatch",
                f"Warning: the host at {address} presented a different certificate than "
                f"expected, so qtchat did not connect: someone may be impersonating the "
                f"host, or it was reinstalled — ask the host for a new invite link and "
                f"compare fingerprints.\nExpected: {expected}\nPresented: {seen}",
                expected=expected, presented=seen,
            ), retry=False)
            return
        self.peer_fingerprint = seen
        self.fingerprint_first_use = expected is None  # trusted on first use, now pinned
        if self.pin_store is not None:
            self.pin_store.remember(address, seen)
        self._send_register()

    def _send_register(self) -> None:
        frame = p.Register(
            name=self.name,
            password=self.password,
            resume=self.session,
            since=self.last_seq if self.session else None,
        )
        self._send_raw(p.encode(frame))

    @Slot()
    def _on_connect_timeout(self) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        socket = self._socket
        where, wait = endpoint.address, f"{self.connect_timeout:g} s"
        connected = (socket is not None
                     and socket.state() == QAbstractSocket.SocketState.ConnectedState)
        if not connected:
            error = ConnectError(
                "timeout",
                f"No answer from {where} within {wait}: check that the address is right and "
                f"the host is on this network, or ask the host to let port {endpoint.port} "
                "through its firewall.")
        elif isinstance(socket, QSslSocket) and not socket.isEncrypted():
            error = ConnectError(
                "tls_failed",
                f"The host at {where} accepted the connection but the secure (TLS) "
                f"handshake did not finish within {wait}: the host may not use TLS — try "
                "joining without TLS, or use the host's invite link.")
        else:
            error = ConnectError(
                "timeout",
                f"The host at {where} accepted the connection but did not answer like a "
                f"qtchat host within {wait}: check the port number (qtchat uses 8800 unless "
                "the host changed it) and that qtchat on the host is not stuck.")
        self._fail_connection(error, retry=True)

    @Slot(QAbstractSocket.SocketError)
    def _on_socket_error(self, error: QAbstractSocket.SocketError) -> None:
        if self._socket is None or \
                self._ends_after_input(functools.partial(self._on_socket_error, error)):
            return
        if self._registered_now:
            self._lost(qt_error_text(self._socket.errorString()))
            return
        if error == QAbstractSocket.SocketError.RemoteHostClosedError and \
                self._may_be_tls_host():
            self._probe_for_tls()
            return
        self._fail_connection(self._describe(error), retry=True)

    def _describe(self, error: QAbstractSocket.SocketError) -> ConnectError:
        endpoint = self.endpoint
        assert endpoint is not None
        E = QAbstractSocket.SocketError
        where = endpoint.address
        if error == E.HostNotFoundError:
            return ConnectError(
                "not_resolved",
                f"Can't find a computer called \"{endpoint.host}\" (to join {where}): check "
                "the spelling, or use the host's IP address instead.")
        if error == E.ConnectionRefusedError:
            return ConnectError(
                "refused",
                f"Nothing is listening on {where}: check that the host has started the room "
                "and that the port number is right.")
        if error == E.SocketTimeoutError:
            return ConnectError(
                "timeout",
                f"No answer from {where}: check that the host is on this network, or ask the "
                f"host to let port {endpoint.port} through its firewall.")
        if error in (E.SslHandshakeFailedError, E.SslInternalError, E.SslInvalidUserDataError):
            return ConnectError(
                "tls_failed",
                f"The secure (TLS) connection to {where} failed: the host may not use TLS — "
                "try joining without TLS, or use the host's invite link.")
        if error == E.RemoteHostClosedError:
            return self._closed_error()
        message = qt_error_text(self._socket.errorString()) if self._socket else \
            "network error"
        return ConnectError(
            "network",
            f"Could not connect to {where} ({message}): check the address and this "
            "computer's network connection, then try again.")

    def _closed_error(self) -> ConnectError:
        assert self.endpoint is not None
        where = self.endpoint.address
        if self._heard:  # it answered (e.g. username_taken), then gave up waiting
            return ConnectError(
                "closed",
                f"The host at {where} closed the connection before a name was accepted: "
                "join again and choose a name promptly.")
        return ConnectError(
            "closed",
            f"The host at {where} closed the connection before answering: check the port "
            "number, or ask the host whether the room is running.")

    def _plain_client_tls_server(self) -> ConnectError:
        assert self.endpoint is not None
        return ConnectError(
            "tls_failed",
            f"The host at {self.endpoint.address} expects a secure (TLS) connection: join "
            "with TLS turned on, or use the host's invite link.")

    def _not_qtchat_error(self) -> ConnectError:
        assert self.endpoint is not None
        return ConnectError(
            "network",
            f"The host at {self.endpoint.address} answered with something that is not "
            "qtchat: check the port number (qtchat uses 8800 unless the host changed it).")

    def _invalid_name_error(self, name: str, reason: str) -> ConnectError:
        where = self.endpoint.address if self.endpoint else "the host"
        return ConnectError(
            "invalid_name",
            f"The name \"{name}\" can't be used to join {where}: {reason} Choose another "
            "name.")

    def _fail_connection(self, error: ConnectError, *, retry: bool) -> None:
        """A connection attempt failed before registration."""
        self._connect_timer.stop()
        self._drop_socket()
        if self._ever_registered and retry and not self._closing and self.auto_reconnect:
            self._schedule_reconnect()
            return
        self._set_state("disconnected")
        self._fail_outbox()
        self.connectFailed.emit(error)

    def _ends_after_input(self, ended: Any) -> bool:
        """The connection ended with frames read but not handled yet (the last messages,
        a ``bye``): handle them first, then call ``ended``. False if nothing waits."""
        socket = self._socket
        assert socket is not None
        if self._after_input is not None:
            return True  # already waiting (errorOccurred, then disconnected)
        if socket.bytesAvailable():  # what Qt still holds (capped by its buffer)
            self._inbox += socket.readAll().data()
        if not self._frames and not self._inbox:
            return False
        self._after_input = ended
        if not self._slice_timer.isActive():
            self._slice_timer.start()
        return True

    def _forget_input(self) -> None:
        """The connection is gone: what it sent and was not handled goes with it."""
        self._slice_timer.stop()
        self._inbox.clear()
        self._frames.clear()
        self._after_input = None
        self._pong = None

    @Slot()
    def _on_disconnected(self) -> None:
        if self._socket is None or self._ends_after_input(self._on_disconnected):
            return
        if self._registered_now:
            self._lost("the connection closed")
        elif self._may_be_tls_host():
            self._probe_for_tls()
        else:
            self._fail_connection(self._closed_error(), retry=True)

    def _may_be_tls_host(self) -> bool:
        """A first plain connection closed without a byte back: a TLS host does that."""
        return (self.endpoint is not None and not self.endpoint.tls and not self._heard
                and not self._ever_registered and QSslSocket.supportsSsl())

    def _probe_for_tls(self) -> None:
        """The host hung up on our plain first frame without a word, as a TLS host does:
        try a TLS handshake (nothing is sent over it) to tell the person which it is."""
        assert self.endpoint is not None
        self._connect_timer.stop()
        self._drop_socket()
        probe = QSslSocket(self)
        self._tls_probe = probe
        probe.setPeerVerifyMode(QSslSocket.PeerVerifyMode.VerifyNone)
        probe.encrypted.connect(self._on_tls_probe_done)
        probe.errorOccurred.connect(self._on_tls_probe_done)
        self._tls_probe_timer.start(TLS_PROBE_MS)
        probe.connectToHostEncrypted(self.endpoint.host, self.endpoint.port)

    @Slot()
    def _on_tls_probe_done(self) -> None:
        probe, self._tls_probe = self._tls_probe, None
        if probe is None:
            return
        self._tls_probe_timer.stop()
        speaks_tls = probe.isEncrypted()
        probe.blockSignals(True)
        probe.abort()
        probe.deleteLater()
        self._fail_connection(self._plain_client_tls_server() if speaks_tls
                              else self._closed_error(), retry=True)

    def _drop_tls_probe(self) -> None:
        probe, self._tls_probe = self._tls_probe, None
        self._tls_probe_timer.stop()
        if probe is not None:
            probe.blockSignals(True)
            probe.abort()
            probe.deleteLater()

    def _lost(self, reason: str) -> None:
        """An established connection dropped: resume it after a backoff."""
        log.info("connection lost: %s", reason)
        if self._registered_now and \
                time.monotonic() - self._registered_at > VIOLATION_FORGET_S:
            self._violations = 0  # a long clean connection: earlier violations are forgotten
        self._registered_now = False
        self._keepalive_timer.stop()
        self._drop_socket()
        if self._closing:
            return
        self.lost_reason = reason
        self.connectionLost.emit(reason)
        if self.auto_reconnect:
            self._give_up_timer.start(int(self.grace_period() * 1000))
            self._schedule_reconnect()
        else:
            self._set_state("disconnected")
            self._fail_outbox()
            self.closed.emit(reason)

    def _schedule_reconnect(self) -> None:
        self._set_state("reconnecting")
        delay = min(15.0, 0.25 * (2 ** min(self._attempt, 6)))
        delay *= random.uniform(0.7, 1.3)  # jitter: a restarted host is not stormed
        self._attempt += 1
        self._reconnect_timer.start(int(delay * 1000))
        self.reconnecting.emit(self._attempt, self.lost_reason)

    @Slot()
    def _reconnect(self) -> None:
        if not self._closing:
            self._start_connection()

    @Slot()
    def _on_keepalive(self) -> None:
        if not self._registered_now:
            return
        if self._awaiting_pong is not None:
            if not self._read_since_ping:
                self._lost("the host stopped answering")
                return
            # The host is talking: our pong waits behind what it sent and we have not
            # handled yet (a burst). It is alive; keep waiting for that pong.
            self._read_since_ping = False
            return
        self._read_since_ping = False
        self._awaiting_pong = self.ping(f"k{next(self._ping_counter)}")

    # --- receiving ----------------------------------------------------------------------

    @Slot()
    def _on_ready_read(self) -> None:
        socket = self._socket
        if socket is None or not self._read(socket):
            return
        if not self._slice_timer.isActive():
            self._handle_input()

    def _read(self, socket: QTcpSocket) -> bool:
        """Move what the socket holds into the inbox, up to its cap; False if that
        ended the connection."""
        room = INBOX_BYTES - len(self._inbox)
        if room <= 0 or not socket.bytesAvailable():
            return True  # full: read again once handled (see _handle_input)
        data = socket.read(room).data()
        if data:
            self._read_since_ping = True
        if not self._heard and data:
            self._heard = True
            # A TLS record (handshake 0x16 or alert 0x15, version 3.x) where a JSON
            # frame should be: the host wants TLS and we spoke plain TCP.
            if not isinstance(socket, QSslSocket) and data[:1] in (b"\x15", b"\x16") \
                    and data[1:2] == b"\x03":
                self._fail_connection(self._plain_client_tls_server(), retry=False)
                return False
        self._inbox += data
        return True

    def _input_waiting(self, socket: QTcpSocket) -> bool:
        return bool(self._frames or self._inbox or socket.bytesAvailable())

    @Slot()
    def _handle_input(self) -> None:
        """Handle one slice of what was read: at most SLICE_FRAMES frames or about
        SLICE_SECONDS, then let the event loop run (the rest follows on a zero timer).

        Each frame is handled in its own ``try``, so one that trips a bug never
        strands the frames behind it.
        """
        socket = self._socket
        if socket is None:
            return
        deadline = time.perf_counter() + SLICE_SECONDS
        for _ in range(SLICE_FRAMES):
            if not self._frames:
                if not self._inbox and not (socket.bytesAvailable() and self._read(socket)):
                    break
                self._decode_some()
                if not self._frames:
                    continue
            item = self._frames.popleft()
            if isinstance(item, p.RemoteProtocolError):
                self._bad_frame(item)
            else:
                try:
                    self._dispatch(item)
                except Exception:  # a bug here must not cost the frames behind it
                    log.exception("error handling %s frame", item.get("type"))
            if self._socket is not socket:
                return  # the frame ended this connection
            if time.perf_counter() >= deadline:
                break
        if self._socket is socket and self._read(socket) and self._socket is socket:
            if self._frames or self._inbox:
                self._slice_timer.start()
            elif self._after_input is not None:
                ended, self._after_input = self._after_input, None
                ended()

    def _decode_some(self) -> None:
        """Decode the next DECODE_CHUNK bytes of the inbox (cut after a newline)."""
        inbox = self._inbox
        cut = inbox.rfind(b"\n", 0, DECODE_CHUNK)
        size = cut + 1 if cut >= 0 else min(len(inbox), DECODE_CHUNK)
        chunk = bytes(inbox[:size])
        del inbox[:size]
        self._frames.extend(self._decoder.feed(chunk))

    def _bad_frame(self, error: p.RemoteProtocolError) -> None:
        log.warning("bad frame from server: %s", error)
        if error.fatal:
            self._violation(f"a frame of more than {MAX_SERVER_FRAME:,} bytes")
        elif error.message.startswith("a '"):
            self._violation(error.message)
        else:  # not JSON, not an object, no type: the decoder's own sentence
            self._violation(f"a frame that is not a qtchat frame: {error.message}")

    def _violation(self, what: str) -> None:
        """The host broke the protocol: leave it, say what it sent, and try again after a
        growing pause, or stop after MAX_VIOLATIONS in a row (or on a first connection:
        it is not a qtchat host we can talk to)."""
        assert self.endpoint is not None
        where = self.endpoint.address
        if self._registered_now and \
                time.monotonic() - self._registered_at > VIOLATION_FORGET_S:
            self._violations = 0
        self._violations += 1
        log.warning("host %s broke the protocol (%d in a row): %s", where,
                    self._violations, what)
        if not self._ever_registered or not self.auto_reconnect or self._closing or \
                self._violations >= MAX_VIOLATIONS:
            times = (f" {self._violations} times in a row" if self._violations > 1 else "")
            error = ConnectError(
                "protocol",
                f"The host at {where} sent {what}, which breaks the qtchat protocol{times}, "
                "so qtchat stopped talking to it: check that this address is the qtchat "
                "host you meant, and ask its host to update qtchat.")
            self._closing = True
            self._registered_now = False
            self._keepalive_timer.stop()
            self._fail_connection(error, retry=False)
            return
        error = ConnectError(
            "protocol",
            f"The host at {where} sent {what}, which breaks the qtchat protocol, so qtchat "
            "left that connection and will try again: if this keeps happening, check that "
            "this address is the qtchat host you meant.")
        self.protocolError.emit(error)
        self._attempt = max(self._attempt, self._violations)  # a growing pause
        if self._registered_now:
            self._registered_now = False  # _lost must not reset the pause
            self._keepalive_timer.stop()
            self._drop_socket()
            self.lost_reason = "the host broke the protocol"
            self.connectionLost.emit(self.lost_reason)
            self._give_up_timer.start(int(self.grace_period() * 1000))
            self._schedule_reconnect()
        else:
            self._fail_connection(error, retry=True)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        handler = self._handlers.get(frame["type"])
        if handler is not None:  # unknown types are ignored (a later protocol's)
            handler(self, frame)

    def _on_ping(self, frame: dict[str, Any]) -> None:
        # Answered ahead of our own queued frames, and at most one answer waits:
        # a newer ping replaces it (a flood of pings costs one pong per pacing slot).
        if self._registered_now:
            self._pong = p.encode(p.Pong(token=frame.get("token")))
            self._drain_send_queue()

    def _on_pong(self, frame: dict[str, Any]) -> None:
        token = str(frame.get("token") or "")
        if token == self._awaiting_pong:
            self._awaiting_pong = None
        self.pongReceived.emit(token)

    def _on_user_joined(self, frame: dict[str, Any]) -> None:
        members = self._members.get(frame["room"].casefold())
        if members is None:
            return  # not a room we are in (a join racing our leave)
        name = frame["name"].casefold()
        if name not in members:
            if len(members) >= MAX_MEMBERS_PER_ROOM:
                log.warning("more than %d members in %s: not shown", MAX_MEMBERS_PER_ROOM,
                            frame["room"])
                return
            members.add(name)
        self.userJoined.emit(frame["name"], frame["room"])

    def _on_user_left(self, frame: dict[str, Any]) -> None:
        members = self._members.get(frame["room"].casefold())
        if members is None:
            return
        members.discard(frame["name"].casefold())
        self.userLeft.emit(frame["name"], frame["room"], str(frame.get("reason") or ""))

    def _on_joined(self, frame: dict[str, Any]) -> None:
        room = frame["room"]
        known = self._members.get(room.casefold()) is not None
        if not known:
            if self._joins_asked <= 0:
                self._violation(f"a room we did not ask to join (\"{room[:40]}\")")
                return
            if len(self.rooms) >= MAX_ROOMS:
                self._violation(f"more than {MAX_ROOMS:,} rooms to be in")
                return
        self._joins_asked = max(0, self._joins_asked - 1)
        if room not in self.rooms:
            self.rooms.append(room)
        self._members[room.casefold()] = {name.casefold() for name in frame["users"]}
        for message in frame["history"]:
            self._remember_seq(message)
        self.roomJoined.emit(frame)

    def _on_left(self, frame: dict[str, Any]) -> None:
        room = frame["room"]
        folded = room.casefold()
        if folded == p.LOBBY:
            return  # it cannot be left
        self._members.pop(folded, None)
        self.rooms = [r for r in self.rooms if r.casefold() != folded]
        self.roomLeft.emit(room)

    def _on_history(self, frame: dict[str, Any]) -> None:
        if self._histories_asked <= 0:
            self._violation("history we did not ask for")
            return
        self._histories_asked -= 1
        self.historyReceived.emit(frame["room"], frame["messages"])

    def _on_taken(self, frame: dict[str, Any]) -> None:
        if self._registered_now:
            self._violation("'username_taken' after it had accepted the name")
            return
        self._on_username_taken(frame["name"])

    _handlers: ClassVar[dict[str, Any]] = {}  # type -> handler; filled below the class

    def _remember_seq(self, message: dict[str, Any]) -> bool:
        """Record a message's seq (checked by the parser); False if it was seen before."""
        seq = message["seq"]
        if seq in self._seen:
            return False
        self._seen.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > MAX_SEEN_SEQS:
            self._seen.discard(self._seen_order.popleft())
        return True

    def _on_message(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("id")
        if isinstance(message_id, str) and message_id in self._outbox:
            del self._outbox[message_id]
            with_id = True
        else:
            with_id = False
        if message_id is not None:
            with contextlib.suppress(ValueError):
                self._in_flight.remove(message_id)
        fresh = self._remember_seq(frame)
        self.last_seq = max(self.last_seq, frame["seq"])
        if with_id:
            self.sendConfirmed.emit(message_id, frame)
        if fresh:
            self.messageReceived.emit(frame)

    def _on_registered(self, frame: dict[str, Any]) -> None:
        if self._registered_now:
            self._violation("'registered' a second time on one connection")
            return
        problem = _name_problem(frame["name"])
        if problem is not None:  # we could never send it back in a resume
            self._violation(f"a name we cannot use (\"{frame['name'][:40]}\")")
            return
        self._connect_timer.stop()
        self._give_up_timer.stop()
        resumed = bool(frame.get("resumed"))
        was_registered = self._ever_registered
        self.session = frame["session"]
        self.name = frame["name"]
        before = self.server_info.get("history")
        self.server_info = frame["server"]
        history = self.server_info.get("history")
        started_over = was_registered and before is not None and history != before
        if started_over:  # its seq 1, 2, 3 are not the ones we have seen: forget those
            self._seen.clear()
            self._seen_order.clear()
        if not resumed:  # a new session begins at the server's present, whatever we saw
            self.last_seq = 0
        in_rooms = frame.get("in_rooms")
        previous_rooms = list(self.rooms)
        if in_rooms is not None:
            self.rooms = list(in_rooms)
        if not any(room.casefold() == p.LOBBY for room in self.rooms):
            self.rooms.insert(0, p.LOBBY)
        self._members = {room.casefold(): set() for room in self.rooms}
        self._members[p.LOBBY] = {name.casefold() for name in frame["users"]}
        self._ever_registered = True
        self._registered_now = True
        self._registered_at = time.monotonic()
        self._attempt = 0
        self._awaiting_pong = None
        self._set_state("connected")
        if self.keepalive > 0:
            self._keepalive_timer.start(int(self.keepalive * 1000))
        self.registered.emit(frame)
        if started_over:
            self.startedOver.emit()
        if was_registered:
            if not resumed:  # the session was gone: rejoin our rooms (joined carries history)
                for room in previous_rooms:
                    if room.casefold() != p.LOBBY:
                        self.join(room)
                self.request_history(p.LOBBY)
            self.reconnected.emit(bool(frame.get("gap")) or not resumed)
        for message_id, frame_out in list(self._outbox.items()):
            if message_id not in self._failed:  # refused ones wait for ``retry``
                self._in_flight.append(message_id)
                self._send_raw(p.encode(frame_out))

    def _on_username_taken(self, name: str) -> None:
        self._connect_timer.stop()
        if not self._ever_registered:
            self.usernameTaken.emit(name)  # the connection stays: ``register`` another
            return
        # Coming back after the resume grace period ended, someone else has the name
        # now: retrying would only be refused again, every time.
        assert self.endpoint is not None
        self._closing = True
        self._fail_connection(ConnectError(
            "username_taken",
            f"While you were away, someone at {self.endpoint.address} took the name "
            f"\"{name}\": join again with another name."), retry=False)

    def _on_error_frame(self, frame: dict[str, Any]) -> None:
        code, message = frame["code"], frame["message"]
        ref = str(frame.get("ref") or "")
        if ref == "join":  # an answer: the join will not be ``joined``
            self._joins_asked = max(0, self._joins_asked - 1)
        elif ref == "history":
            self._histories_asked = max(0, self._histories_asked - 1)
        if not self._registered_now and code == "invalid_name":
            # Like username_taken, the connection stays: ``register`` another name.
            self._connect_timer.stop()
            self.connectFailed.emit(self._invalid_name_error(self.name, message))
            return
        if not self._registered_now and code in _JOIN_REFUSALS:
            assert self.endpoint is not None
            self._closing = True
            text = _JOIN_REFUSALS[code]
            wait = frame.get("retry_after")
            if code == "wrong_password" and type(wait) is int and 0 < wait <= 86_400:
                # Locked out after too many guesses: even the right password waits.
                text = (f"The host at {{where}} refuses passwords from this computer for "
                        f"{wait} s after too many wrong ones: wait, then join again.")
            elif code == "wrong_password" and not self.password:
                text = ("The room at {where} needs a password: ask the host for it and type "
                        "it in the Password field.")
            self._fail_connection(
                ConnectError(code, text.format(where=self.endpoint.address)), retry=False)
            return
        if ref in ("broadcast", "whisper") and self._in_flight:
            named = frame.get("id")
            if isinstance(named, str) and named in self._in_flight:
                self._in_flight.remove(named)  # the host names the send it refuses
                failed_id = named
            else:  # an older host: refusals come in the order of the sends
                failed_id = self._in_flight.popleft()
            if failed_id in self._outbox:
                self._failed.add(failed_id)
            self.sendFailed.emit(failed_id, code, message)
            return
        self.errorReceived.emit(code, message, ref)

    def _on_bye(self, reason: str) -> None:
        if reason in _RESUMABLE_BYES and self.auto_reconnect and self._ever_registered:
            # The host may come back (shutdown), or gave up on us while we were frozen
            # (timeout) and holds the session: keep trying.
            self._lost(_RESUMABLE_BYES[reason])
            return
        self._closing = True
        self._registered_now = False
        self._keepalive_timer.stop()
        self._drop_socket()
        self._set_state("disconnected")
        self._fail_outbox()
        self.closed.emit(reason)

    # --- sending ------------------------------------------------------------------------

    def _send_message(self, frame: p.Broadcast | p.Whisper) -> str:
        body = frame.to_dict()
        assert frame.id is not None
        self._outbox[frame.id] = body
        if self._registered_now:
            self._in_flight.append(frame.id)
            self._send_raw(p.encode(body))
        return frame.id

    def _send_frame(self, frame: p.ClientFrame) -> bool:
        """Queue ``frame`` if registered now; whether it was."""
        if self._registered_now:
            self._send_raw(p.encode(frame))
            return True
        return False

    def _send_raw(self, data: bytes) -> None:
        self._send_queue.append(data)
        self._drain_send_queue()

    @Slot()
    def _drain_send_queue(self) -> None:
        """Write queued frames within the client's own rate budget."""
        socket = self._socket
        if socket is None:
            return
        now = time.monotonic()
        self._tokens = min(CLIENT_BURST, self._tokens + (now - self._tokens_at) * CLIENT_RATE)
        self._tokens_at = now
        chunks = []
        pong_wait = PONG_INTERVAL - (now - self._pong_at)
        if self._pong is not None and pong_wait <= 0:
            # Ahead of our own frames, and outside their budget (the host is waiting;
            # a genuine one pings after 30 s of silence), but never more often than
            # PONG_INTERVAL: a ping flood costs neither the person's pace nor a backlog.
            chunks.append(self._pong)
            self._pong = None
            self._pong_at = now
        while self._send_queue and self._tokens >= 1.0:
            chunks.append(self._send_queue.popleft())
            self._tokens -= 1.0
        if chunks:
            socket.write(b"".join(chunks))
        waits = []
        if self._send_queue:
            waits.append(int(1000 / CLIENT_RATE) + 1)
        if self._pong is not None:
            waits.append(max(1, int(pong_wait * 1000) + 1))
        if waits and (not self._pace_timer.isActive() or
                      self._pace_timer.remainingTime() > min(waits)):
            self._pace_timer.start(min(waits))

    def _fail_outbox(self) -> None:
        """The conversation ended: what was not confirmed fails (``retry`` after ``open``)."""
        for message_id in list(self._outbox):
            if message_id not in self._failed:
                self._failed.add(message_id)
                self.sendFailed.emit(message_id, "not_connected", "Not connected.")


ChatClient._handlers = {
    "broadcast": ChatClient._on_message,
    "whisper": ChatClient._on_message,
    "user_joined": ChatClient._on_user_joined,
    "user_left": ChatClient._on_user_left,
    "ping": ChatClient._on_ping,
    "pong": ChatClient._on_pong,
    "registered": ChatClient._on_registered,
    "joined": ChatClient._on_joined,
    "left": ChatClient._on_left,
    "history": ChatClient._on_history,
    "username_taken": ChatClient._on_taken,
    "error": ChatClient._on_error_frame,
    "bye": lambda client, frame: client._on_bye(str(frame.get("reason") or "")),
}


def _checked_resume(resume: tuple[str, int] | None) -> tuple[str | None, int]:
    """A saved (session, last seq) as ``open`` may send it back, else (None, 0).

    What was saved may have come from a host that sent values out of range (older
    versions saved them unchecked): a seq past 2^53 or a session too long to send
    would make every later ``register`` impossible, so they start a fresh session.
    """
    if resume is None:
        return None, 0
    session, seq = resume
    if isinstance(session, str) and 0 < len(session) <= p.MAX_SESSION_CHARS and \
            not p._has_lone_surrogate(session) and isinstance(seq, int) and \
            not isinstance(seq, bool) and 0 <= seq <= p.MAX_SEQ:
        return session, seq
    log.warning("saved session out of range: registering afresh")
    return None, 0


def _name_problem(name: str) -> str | None:
    """Why the server would refuse ``name`` (the same rules, checked here), or None."""
    try:
        parse_name(name)
    except InvalidName as exc:
        return str(exc)
    return None


def qt_error_text(text: str) -> str:
    """Qt's ``errorString()`` made fit to embed mid-sentence: "The remote host closed
    the connection" becomes "the remote host…", but "SSL handshake failed" stays."""
    text = text.strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text or "network error"


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _same_fingerprint(a: str, b: str) -> bool:
    return a.replace(":", "").upper() == b.replace(":", "").upper()
