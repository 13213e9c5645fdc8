"""ChatClient: one person's connection to a qtchat server, as a Qt object with signals.

It is the thin Qt façade over two parts:

- ``ClientSession`` (``qtchat.client.session``, no Qt): the rules — the client's state,
  resume and dedupe by ``seq``, the outbox of sends confirmed or refused by their ``id``,
  keep-alive and reconnect decisions, the checks a hostile host meets — fed what happens
  with the time ``now``, answering with events (signals to emit, actions to take);
- ``Connector`` (``qtchat.client.connector``): the socket, TLS and pinning, the TLS
  probe, and the ``ConnectError`` sentences for the network's own failures.

This class runs the timers the session asks for, moves bytes between the two, and turns
the session's events into the signals below. What is read is handled in slices of at
most ``SLICE_FRAMES`` frames or ``SLICE_SECONDS`` so the window keeps repainting.
``connect_async`` wraps the first connection in an awaitable for qasync flows.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from qtchat import protocol as p
from qtchat.client import session as s
from qtchat.client.connector import Connector, Ending, qt_error_text
from qtchat.client.errors import FAILURE_KINDS, ConnectError, Endpoint
from qtchat.client.living import LIVING_FEATURES
from qtchat.client.session import ClientSession
from qtchat.protocol import living as pl
from qtchat.protocol.server_frames import Registered

__all__ = ["FAILURE_KINDS", "ChatClient", "ConnectError", "Endpoint", "qt_error_text"]

log = logging.getLogger(__name__)

DECODE_CHUNK = 16 << 10  # bytes decoded at once (at most a few ms of JSON)
SLICE_FRAMES = 200
SLICE_SECONDS = 0.008
# The features this client implements and asks for in ``register.features`` (sending
# even the empty list makes this a features session: per-id ``rate_limited``).
CLIENT_FEATURES: tuple[str, ...] = LIVING_FEATURES


class ChatClient(QObject):
    """A chat connection that survives drops.

    Signals:
        stateChanged(str state): "disconnected", "connecting", "connected", "reconnecting".
        registered(Registered frame): the server accepted us (also after each resume).
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
        roomJoined(Joined frame): a ``joined`` frame (members and recent history).
        roomLeft(str room).
        messageReceived(Message message): a new ``broadcast`` or ``whisper`` (never twice).
        historyReceived(str room, list[Message] messages): an answer to ``request_history``.
        sendConfirmed(str id, Message message): the server stored our message ``id``.
        sendFailed(str id, str code, str message): the server refused our message ``id``.
        errorReceived(str code, str message, str ref): any other ``error`` frame.
        pongReceived(str token).
        certificateSeen(str fingerprint): the TLS certificate the host presented.
        reconnecting(int attempt, str reason): reconnect attempt ``attempt`` is scheduled
            after the connection was lost for ``reason`` (a sentence fragment).
        reconnectStopped(str sentence): the client stopped reconnecting, by itself after
            the host's grace period (nothing could be resumed after it) or because
            ``stop_reconnecting`` was called; ``reconnect_now`` tries again.

    The living-room features (each only if the host accepted it, see ``has_feature``),
    each signal carrying the frame (``qtchat.protocol.living``):
        searchResults(SearchResults): the answer to ``search`` (its ``id`` echoed).
        privateHistoryReceived(HistoryPage): an answer to ``request_private_history``:
            ``with_``, ``messages`` (whispers, oldest first) and, with receipts,
            ``read_up_to`` {you, them}.
        messageEdited(Edited) / messageDeleted(Deleted): a message changed or was taken
            back (a deleted one's text is gone; show a tombstone).
        typingReceived(TypingNotice): someone's typing state in a room or to us.
        statusReceived(UserStatus): someone went away, busy or back online.
        receiptReceived(ReceiptNotice): our whispers to them up to ``seq`` were delivered
            or read.
    Refusals of these (``no_such_message``, ``not_permitted``, ``edit_window_expired``…)
    come as ``errorReceived`` with ``ref`` the frame's type.
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
    searchResults = Signal(object)
    privateHistoryReceived = Signal(object)
    messageEdited = Signal(object)
    messageDeleted = Signal(object)
    typingReceived = Signal(object)
    statusReceived = Signal(object)
    receiptReceived = Signal(object)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        reconnect: bool = True,
        pin_store: Any = None,
        give_up_after: float | None = None,
        features: tuple[str, ...] = CLIENT_FEATURES,
    ) -> None:
        super().__init__(parent)
        self._session = ClientSession(keepalive=keepalive, auto_reconnect=reconnect,
                                      give_up_after=give_up_after, features=features)
        self._connector = Connector(self, connect_timeout=connect_timeout, pin_store=pin_store)
        self._connector.ready.connect(self._on_ready)
        self._connector.readable.connect(self._on_ready_read)
        self._connector.ended.connect(self._on_ended)
        self._connector.failed.connect(self._on_failed)
        self._connector.certificateSeen.connect(self.certificateSeen)
        self.endpoint: Endpoint | None = None
        # The person's privacy switches: off, nothing of the kind leaves this client.
        self.typing_enabled = True
        self.receipts_enabled = True
        self._state = "disconnected"
        self._generation = 0  # which connection the frames being handled came from
        self._frames: deque[Any] = deque()  # decoded, not yet handled
        self._after_input: Ending | None = None  # how the connection ended, once handled
        self._reconnect_timer = self._timer(self._on_reconnect_timer)
        self._give_up_timer = self._timer(self._on_give_up_timer)
        self._keepalive_timer = self._timer(self._on_keepalive_timer)
        self._pace_timer = self._timer(self._flush)
        self._slice_timer = self._timer(self._handle_input)
        self._slice_timer.setInterval(0)
        self._timers = {"reconnect": self._reconnect_timer, "give_up": self._give_up_timer,
                        "keepalive": self._keepalive_timer}
        self._actions: dict[type, Any] = {
            s.StateChanged: self._do_state,
            s.StartConnection: self._do_start_connection,
            s.DropConnection: self._do_drop,
            s.CloseConnection: self._do_close,
            s.SettleConnect: lambda _action: self._connector.settle(),
            s.ArmTimer: self._do_arm,
            s.DisarmTimer: lambda action: self._timers[action.timer].stop(),
        }
        # Each signal event's ``emit``, bound once: a burst emits one per message.
        self._emitters = {cls: getattr(self, cls.signal).emit for cls in s.Emit.__subclasses__()
                          if cls not in self._actions}

    def _timer(self, slot) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        return timer

    # --- what the session and the connector hold, as before ---------------------------------

    @property
    def session(self) -> str | None:
        return self._session.session

    @property
    def last_seq(self) -> int:
        return self._session.last_seq

    @last_seq.setter
    def last_seq(self, value: int) -> None:
        self._session.last_seq = value

    @property
    def name(self) -> str:
        return self._session.name

    @property
    def password(self) -> str | None:
        return self._session.password

    @property
    def server_info(self) -> dict[str, Any]:
        return self._session.server_info

    @property
    def rooms(self) -> list[str]:
        return self._session.rooms

    @property
    def features(self) -> list[str]:
        """The features the host accepted on this session (``register.features``)."""
        return self._session.features

    def has_feature(self, name: str) -> bool:
        return self._session.has_feature(name)

    @property
    def lost_reason(self) -> str:
        return self._session.lost_reason

    @property
    def stopped_reconnecting(self) -> bool:
        return self._session.stopped_reconnecting

    @property
    def give_up_after(self) -> float | None:
        return self._session.give_up_after

    @give_up_after.setter
    def give_up_after(self, value: float | None) -> None:
        self._session.give_up_after = value

    @property
    def keepalive(self) -> float:
        return self._session.keepalive

    @keepalive.setter
    def keepalive(self, value: float) -> None:
        self._session.keepalive = value

    @property
    def auto_reconnect(self) -> bool:
        return self._session.auto_reconnect

    @auto_reconnect.setter
    def auto_reconnect(self, value: bool) -> None:
        self._session.auto_reconnect = value

    @property
    def connect_timeout(self) -> float:
        return self._connector.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, value: float) -> None:
        self._connector.connect_timeout = value

    @property
    def pin_store(self) -> Any:
        return self._connector.pin_store

    @pin_store.setter
    def pin_store(self, value: Any) -> None:
        self._connector.pin_store = value

    @property
    def peer_fingerprint(self) -> str | None:
        return self._connector.peer_fingerprint

    @property
    def fingerprint_first_use(self) -> bool:
        return self._connector.fingerprint_first_use

    @property
    def state(self) -> str:
        return self._state

    @property
    def connected(self) -> bool:
        return self._session.live

    @property
    def pending_ids(self) -> list[str]:
        """Messages sent or queued that the server has not confirmed yet (failed ones too)."""
        return self._session.pending_ids

    @property
    def failed_ids(self) -> list[str]:
        """Messages refused (``sendFailed``): kept for ``retry`` or ``discard``, not re-sent."""
        return self._session.failed_ids

    def grace_period(self) -> float:
        """Seconds to keep reconnecting: ``give_up_after``, else the host's grace."""
        return self._session.grace_period()

    # --- public API ------------------------------------------------------------------------

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
        self._run(self._session.open(endpoint.address, name, password, resume))

    async def connect_async(
        self, endpoint: Endpoint, name: str, password: str | None = None
    ) -> Registered:
        """``open`` as an awaitable: the ``registered`` frame, or raises ConnectError."""
        future: asyncio.Future[Registered] = asyncio.get_running_loop().create_future()

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
        self._run(self._session.register(name))

    def send_broadcast(self, text: str, room: str = p.LOBBY, message_id: str | None = None) -> str:
        """Post to a room; returns the message's id. Queued while disconnected."""
        message_id = self._session.send_message(
            p.Broadcast(text=text, room=room, id=message_id or _new_id()))
        self._flush()
        return message_id

    def send_whisper(self, to: str, text: str, message_id: str | None = None) -> str:
        """A private message to one person; returns the message's id."""
        message_id = self._session.send_message(
            p.Whisper(to=to, text=text, id=message_id or _new_id()))
        self._flush()
        return message_id

    def retry(self, message_id: str) -> None:
        """Send a failed message again (same id: the server will not post it twice).

        While disconnected it goes with the next (re)connection.
        """
        self._session.retry(message_id)
        self._flush()

    def discard(self, message_id: str) -> None:
        """Forget a pending or failed message."""
        self._session.discard(message_id)

    def join(self, room: str) -> None:
        self._session.join(room)
        self._flush()

    def leave(self, room: str) -> None:
        self._session.send_frame(p.Leave(room=room))
        self._flush()

    def request_history(self, room: str, before: int | None = None, limit: int = 50) -> None:
        self._session.request_history(room, before, limit)
        self._flush()

    # --- the living-room features (each a no-op unless the host accepted it) ---------------

    def _send_feature(self, feature: str, frame: p.ClientFrame) -> bool:
        if not self._session.has_feature(feature) or not self._session.send_frame(frame):
            return False
        self._flush()
        return True

    def search(self, query: str, *, room: str | None = None, with_: str | None = None,
               before: int | None = None, limit: int = pl.DEFAULT_SEARCH_LIMIT) -> str | None:
        """Ask for messages with these words; returns the id ``searchResults`` echoes
        (None: not connected, or the host has no search)."""
        search_id = _new_id()
        frame = pl.Search(id=search_id, query=query, room=room, with_=with_, before=before,
                          limit=limit)
        return search_id if self._send_feature("search", frame) else None

    def request_private_history(self, with_: str, before: int | None = None,
                                limit: int = 50) -> None:
        self._session.request_private_history(with_, before, limit)
        self._flush()

    def edit_message(self, seq: int, text: str) -> bool:
        """New text for one of our messages; the host answers with ``messageEdited``."""
        return self._send_feature("edit", pl.Edit(seq=seq, text=text))

    def delete_message(self, seq: int) -> bool:
        """Take a message back (ours, or any in a room we moderate)."""
        return self._send_feature("edit", pl.Delete(seq=seq))

    def send_typing(self, state: str, *, room: str | None = None, to: str | None = None
                    ) -> bool:
        """Our typing state (``active``, ``paused``, ``done``) in a room or to someone.
        Nothing is sent while ``typing_enabled`` is off (the person said so)."""
        if not self.typing_enabled:
            return False
        return self._send_feature("typing", pl.Typing(state=state, room=room, to=to))

    def set_status(self, state: str, text: str | None = None) -> bool:
        """online, away or busy, with an optional line."""
        return self._send_feature("presence", pl.Status(state=state, text=text or None))

    def send_receipt(self, with_: str, seq: int, state: str) -> bool:
        """Their whispers up to ``seq`` were delivered to, or read by, us. Nothing is
        sent while ``receipts_enabled`` is off (the person said so)."""
        if not self.receipts_enabled:
            return False
        return self._send_feature("receipts", pl.Receipt(with_=with_, seq=seq, state=state))

    def ping(self, token: str | None = None) -> str:
        token = self._session.ping(token)
        self._flush()
        return token

    def close(self, reason: str = "quit") -> None:
        """Leave for good: ``bye``, then close. No reconnect follows."""
        self._forget_input()
        self._pace_timer.stop()
        self._run(self._session.close(reason))

    def stop_reconnecting(self, sentence: str | None = None) -> None:
        """Stop trying to reconnect (the person pressed Stop, or the grace period ended).

        The outbox fails (its messages can be retried after ``reconnect_now``)."""
        self._run(self._session.stop_reconnecting(sentence))

    def reconnect_now(self) -> None:
        """Try again after ``stop_reconnecting`` (or a give-up): a fresh grace period."""
        if self.endpoint is not None:
            self._run(self._session.reconnect_now(time.monotonic()))

    # --- executing the session's events -----------------------------------------------------

    def _run(self, events: list[s.Event]) -> None:
        """Do what the session decided, in order: actions here, signals emitted."""
        emitters = self._emitters
        for event in events:
            emit = emitters.get(type(event))
            if emit is not None:  # a signal (the hot path: one per message)
                emit(*event.args())  # type: ignore[union-attr]
            else:
                self._actions[type(event)](event)
        if self._session.wants_output:
            self._flush()

    def _do_state(self, event: s.StateChanged) -> None:
        self._state = event.state
        self.stateChanged.emit(event.state)

    def _do_start_connection(self, _action: s.StartConnection) -> None:
        assert self.endpoint is not None
        self._forget_input()
        self._generation += 1
        self._connector.start(self.endpoint)

    def _do_drop(self, _action: s.DropConnection) -> None:
        self._forget_input()
        self._generation += 1
        self._connector.drop()

    def _do_close(self, action: s.CloseConnection) -> None:
        self._forget_input()
        self._generation += 1
        self._connector.close(action.bye)

    def _do_arm(self, action: s.ArmTimer) -> None:
        self._timers[action.timer].start(max(0, int(action.seconds * 1000)))

    @Slot()
    def _flush(self) -> None:
        """Write what the session lets leave now; come back when more may."""
        if self._connector.socket is None or not self._session.wants_output:
            return
        data, wait = self._session.pull_output(time.monotonic())
        if data:
            self._connector.write(data)
        if wait is not None:
            ms = int(wait * 1000) + 1
            if not self._pace_timer.isActive() or self._pace_timer.remainingTime() > ms:
                self._pace_timer.start(ms)

    @Slot()
    def _on_reconnect_timer(self) -> None:
        self._run(self._session.reconnect_due(time.monotonic()))

    @Slot()
    def _on_give_up_timer(self) -> None:
        self._run(self._session.give_up_due(time.monotonic()))

    @Slot()
    def _on_keepalive_timer(self) -> None:
        self._run(self._session.keepalive_tick(time.monotonic()))

    # --- the connector's news ---------------------------------------------------------------

    @Slot()
    def _on_ready(self) -> None:
        self._run(self._session.connection_made())

    @Slot(object, bool)
    def _on_failed(self, error: ConnectError, retry: bool) -> None:
        self._forget_input()
        self._run(self._session.connection_failed(error, retry=retry, now=time.monotonic()))

    @Slot(object)
    def _on_ended(self, ending: Ending) -> None:
        if self._after_input is not None:
            return  # already waiting (errorOccurred, then disconnected)
        self._connector.read_rest()
        if self._frames or self._connector.inbox:
            # The connection ended with frames read but not handled yet (the last
            # messages, a ``bye``): handle them first, then the ending.
            self._after_input = ending
            if not self._slice_timer.isActive():
                self._slice_timer.start()
            return
        self._ended(ending)

    def _ended(self, ending: Ending) -> None:
        session = self._session
        if session.live:
            self._run(session.connection_lost(ending.reason, time.monotonic()))
        elif self._connector.may_be_tls_host(ending, first=not session.ever_registered):
            self._forget_input()
            self._connector.probe_for_tls()
        else:
            self._on_failed(ending.error, True)

    # --- receiving ---------------------------------------------------------------------------

    def _forget_input(self) -> None:
        """The connection is gone: what it sent and was not handled goes with it."""
        self._slice_timer.stop()
        self._frames.clear()
        self._connector.inbox.clear()
        self._after_input = None

    @Slot()
    def _on_ready_read(self) -> None:
        if not self._read():
            return
        if not self._slice_timer.isActive():
            self._handle_input()

    def _read(self) -> bool:
        before = len(self._connector.inbox)
        if not self._connector.read():
            return False
        if len(self._connector.inbox) > before:
            self._session.bytes_read()
        return True

    @Slot()
    def _handle_input(self) -> None:
        """Handle one slice of what was read: at most SLICE_FRAMES frames or about
        SLICE_SECONDS, then let the event loop run (the rest follows on a zero timer).

        Each frame is handled in its own ``try``, so one that trips a bug never
        strands the frames behind it.
        """
        connector = self._connector
        if connector.socket is None:
            return
        generation = self._generation
        deadline = time.perf_counter() + SLICE_SECONDS
        for _ in range(SLICE_FRAMES):
            if not self._frames:
                if not connector.inbox and not (connector.bytes_waiting() and self._read()):
                    break
                self._decode_some()
                if not self._frames:
                    continue
            item = self._frames.popleft()
            try:
                self._run(self._session.handle(item, time.monotonic()))
            except Exception:  # a bug here must not cost the frames behind it
                log.exception("error handling %s", type(item).__name__)
            if self._generation != generation:
                return  # the frame ended this connection
            if time.perf_counter() >= deadline:
                break
        if self._generation == generation and self._read() and \
                self._generation == generation:
            if self._frames or connector.inbox:
                self._slice_timer.start()
            elif self._after_input is not None:
                ending, self._after_input = self._after_input, None
                self._ended(ending)

    def _decode_some(self) -> None:
        """Decode the next DECODE_CHUNK bytes of the inbox (cut after a newline)."""
        inbox = self._connector.inbox
        cut = inbox.rfind(b"\n", 0, DECODE_CHUNK)
        size = cut + 1 if cut >= 0 else min(len(inbox), DECODE_CHUNK)
        chunk = bytes(inbox[:size])
        del inbox[:size]
        self._frames.extend(self._session.decode(chunk))


def _new_id() -> str:
    return uuid.uuid4().hex[:16]

