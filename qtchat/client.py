"""ChatClient: one person's connection to a qtchat server, on QTcpSocket/QSslSocket.

It speaks protocol v1 and keeps the conversation whole across network blips:
after an unclean drop it reconnects with backoff and jitter, resumes its
session with ``since`` = the highest ``seq`` it has seen, drops duplicates by
``seq``, and re-sends every outgoing message the server has not yet echoed
(each carries a client ``id``, so the server never posts one twice).

Failures are turned into ``ConnectError`` with a ``kind`` and a sentence a
person can act on (see ``FAILURE_KINDS``). The class is signal-driven;
``connect_async`` wraps the first connection in an awaitable for qasync flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtNetwork import QAbstractSocket, QSslSocket, QTcpSocket

from qtchat import protocol as p
from qtchat.names import InvalidName, parse_name

log = logging.getLogger(__name__)

# Outgoing frames per second the client allows itself: below the server's
# default limit (20/s, burst 40), so its own sends are never dropped as a flood.
CLIENT_RATE = 15.0
CLIENT_BURST = 30
MAX_SERVER_FRAME = 1 << 20  # what we accept from a server (lenient: it is ours)
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
    """

    stateChanged = Signal(str)
    registered = Signal(object)
    connectFailed = Signal(object)
    usernameTaken = Signal(str)
    connectionLost = Signal(str)
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

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        reconnect: bool = True,
        pin_store: Any = None,
    ) -> None:
        super().__init__(parent)
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
        self._outbox: dict[str, dict[str, Any]] = {}  # id -> frame, until echoed
        self._failed: set[str] = set()  # outbox ids refused: sent again only by ``retry``
        self._in_flight: deque[str] = deque()  # ids sent on this connection, in order
        self._heard = False  # any bytes from the server on this connection yet
        self._send_queue: deque[bytes] = deque()
        self._tokens = float(CLIENT_BURST)
        self._tokens_at = time.monotonic()
        self._attempt = 0
        self._closing = False
        self._ping_counter = itertools.count(1)
        self._awaiting_pong: str | None = None
        self._connect_timer = self._timer(self._on_connect_timeout, single=True)
        self._reconnect_timer = self._timer(self._reconnect, single=True)
        self._keepalive_timer = self._timer(self._on_keepalive, single=False)
        self._pace_timer = self._timer(self._drain_send_queue, single=True)
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
        self.session, self.last_seq = resume if resume else (None, 0)
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
        self._send_frame(p.Join(room=room))

    def leave(self, room: str) -> None:
        self._send_frame(p.Leave(room=room))

    def request_history(self, room: str, before: int | None = None, limit: int = 50) -> None:
        self._send_frame(p.History(room=room, before=before, limit=limit))

    def ping(self, token: str | None = None) -> str:
        token = token or f"c{next(self._ping_counter)}"
        self._send_frame(p.Ping(token=token))
        return token

    def close(self, reason: str = "quit") -> None:
        """Leave for good: ``bye``, then close. No reconnect follows."""
        self._closing = True
        for timer in (self._reconnect_timer, self._connect_timer, self._keepalive_timer,
                      self._pace_timer):
            timer.stop()
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
        self._set_state("reconnecting" if self._ever_registered else "connecting")
        socket: QTcpSocket = QSslSocket(self) if endpoint.tls else QTcpSocket(self)
        self._socket = socket
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
        if self._socket is None:
            return
        if self._registered_now:
            self._lost(self._socket.errorString())
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
        message = self._socket.errorString() if self._socket else "network error"
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

    @Slot()
    def _on_disconnected(self) -> None:
        if self._socket is None:
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
        self._registered_now = False
        self._keepalive_timer.stop()
        self._drop_socket()
        if self._closing:
            return
        self.connectionLost.emit(reason)
        if self.auto_reconnect:
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

    @Slot()
    def _reconnect(self) -> None:
        if not self._closing:
            self._start_connection()

    @Slot()
    def _on_keepalive(self) -> None:
        if not self._registered_now:
            return
        if self._awaiting_pong is not None:
            self._lost("the host stopped answering")
            return
        self._awaiting_pong = self.ping(f"k{next(self._ping_counter)}")

    # --- receiving ----------------------------------------------------------------------

    @Slot()
    def _on_ready_read(self) -> None:
        socket = self._socket
        if socket is None:
            return
        data = socket.readAll().data()
        if not self._heard and data:
            self._heard = True
            # A TLS record (handshake 0x16 or alert 0x15, version 3.x) where a JSON
            # frame should be: the host wants TLS and we spoke plain TCP.
            if not isinstance(socket, QSslSocket) and data[:1] in (b"\x15", b"\x16") \
                    and data[1:2] == b"\x03":
                self._fail_connection(self._plain_client_tls_server(), retry=False)
                return
        for item in self._decoder.feed(data):
            if isinstance(item, p.RemoteProtocolError):
                log.warning("bad frame from server: %s", item)
                if item.fatal:
                    if self._registered_now:
                        self._lost("the host sent an oversized frame")
                    else:
                        self._fail_connection(self._not_qtchat_error(), retry=True)
                    return
                continue
            try:
                self._dispatch(item)
            except Exception:
                log.exception("error handling %s frame", item.get("type"))
            if self._socket is not socket:
                return  # the frame ended this connection

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind in ("broadcast", "whisper"):
            self._on_message(frame)
        elif kind == "user_joined":
            self.userJoined.emit(frame["name"], frame["room"])
        elif kind == "user_left":
            self.userLeft.emit(frame["name"], frame["room"], str(frame.get("reason", "")))
        elif kind == "ping":
            self._send_frame(p.Pong(token=frame.get("token")))
        elif kind == "pong":
            token = str(frame.get("token", ""))
            if token == self._awaiting_pong:
                self._awaiting_pong = None
            self.pongReceived.emit(token)
        elif kind == "registered":
            self._on_registered(frame)
        elif kind == "joined":
            if frame["room"] not in self.rooms:
                self.rooms.append(frame["room"])
            for message in frame["history"]:
                self._remember_seq(message)
            self.roomJoined.emit(frame)
        elif kind == "left":
            if frame["room"] in self.rooms:
                self.rooms.remove(frame["room"])
            self.roomLeft.emit(frame["room"])
        elif kind == "history":
            self.historyReceived.emit(frame["room"], frame["messages"])
        elif kind == "username_taken":
            self._on_username_taken(frame["name"])
        elif kind == "error":
            self._on_error_frame(frame)
        elif kind == "bye":
            self._on_bye(str(frame.get("reason", "")))

    def _remember_seq(self, message: dict[str, Any]) -> bool:
        """Record a message's seq; False if it was seen before."""
        seq = message.get("seq")
        if not isinstance(seq, int) or seq in self._seen:
            return False
        self._seen.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > 50_000:
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
        self._connect_timer.stop()
        resumed = bool(frame.get("resumed"))
        was_registered = self._ever_registered
        self.session = frame["session"]
        self.name = frame["name"]
        before = self.server_info.get("history")
        self.server_info = frame.get("server") or {}
        history = self.server_info.get("history")
        started_over = was_registered and before is not None and history != before
        if started_over:  # its seq 1, 2, 3 are not the ones we have seen: forget those
            self._seen.clear()
            self._seen_order.clear()
        if not resumed:  # a new session begins at the server's present, whatever we saw
            self.last_seq = 0
        in_rooms = frame.get("in_rooms")
        previous_rooms = list(self.rooms)
        if isinstance(in_rooms, list):
            self.rooms = [r for r in in_rooms if isinstance(r, str)]
        self._ever_registered = True
        self._registered_now = True
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
        if not self._registered_now and code == "invalid_name":
            # Like username_taken, the connection stays: ``register`` another name.
            self._connect_timer.stop()
            self.connectFailed.emit(self._invalid_name_error(self.name, message))
            return
        if not self._registered_now and code in _JOIN_REFUSALS:
            assert self.endpoint is not None
            self._closing = True
            text = _JOIN_REFUSALS[code]
            if code == "wrong_password" and not self.password:
                text = ("The room at {where} needs a password: ask the host for it and type "
                        "it in the Password field.")
            self._fail_connection(
                ConnectError(code, text.format(where=self.endpoint.address)), retry=False)
            return
        if ref in ("broadcast", "whisper") and self._in_flight:
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

    def _send_frame(self, frame: p.ClientFrame) -> None:
        if self._registered_now:
            self._send_raw(p.encode(frame))

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
        while self._send_queue and self._tokens >= 1.0:
            chunks.append(self._send_queue.popleft())
            self._tokens -= 1.0
        if chunks:
            socket.write(b"".join(chunks))
        if self._send_queue and not self._pace_timer.isActive():
            self._pace_timer.start(int(1000 / CLIENT_RATE) + 1)

    def _fail_outbox(self) -> None:
        """The conversation ended: what was not confirmed fails (``retry`` after ``open``)."""
        for message_id in list(self._outbox):
            if message_id not in self._failed:
                self._failed.add(message_id)
                self.sendFailed.emit(message_id, "not_connected", "Not connected.")


def _name_problem(name: str) -> str | None:
    """Why the server would refuse ``name`` (the same rules, checked here), or None."""
    try:
        parse_name(name)
    except InvalidName as exc:
        return str(exc)
    return None


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _same_fingerprint(a: str, b: str) -> bool:
    return a.replace(":", "").upper() == b.replace(":", "").upper()
