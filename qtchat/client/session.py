"""ClientSession: the rules of one person's conversation with a qtchat host, with no I/O.

Like h11's ``Connection``, it never touches a socket, a timer or Qt: the façade
(``ChatClient``) tells it what happened — a connection is made, bytes were read, a frame
was decoded, a timer fired, the connection dropped — always with the time ``now``
(monotonic seconds), and gets back a list of events to execute, in order: signals to emit
(``Emit`` subclasses, each naming its ``signal``) and actions on the connection or the
timers (``Action`` subclasses). Bytes to write wait in its send queue and leave through
``pull_output(now)``, which keeps the client's own rate budget.

What it owns:

- the explicit state (``ClientState``), changed only by ``_transition`` and only along
  ``TRANSITIONS`` (it replaces the old flags ``_closing``, ``_registered_now``,
  ``stopped_reconnecting``);
- resume (the session token and ``since`` = the highest ``seq`` seen) and dedupe by seq;
- the outbox of sends tagged with an ``id``, confirmed by the echo carrying that id and
  refused by the ``error`` naming it (an older host that names none: the oldest send of
  that frame type, never of another);
- the keep-alive, reconnect backoff and give-up decisions, from ``now`` alone;
- the checks a hostile host meets: frames are typed by ``read_server_frame`` and
  dispatched through ``_HANDLERS`` (frame class -> handler); what a host can make us keep
  is bounded, and a host that breaks the protocol is left (``MAX_VIOLATIONS`` in a row and
  we stop);
- ``register.features`` negotiation: the names offered, the names the host accepted.
"""

from __future__ import annotations

import enum
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from qtchat import protocol as p
from qtchat.client.errors import ConnectError
from qtchat.names import InvalidName, parse_name
from qtchat.protocol import conversations as _conversations  # noqa: F401 (its shape)
from qtchat.protocol.files import FileAccepted, FileTicket
from qtchat.protocol.server_frames import (
    ErrorFrame,
    HistoryPage,
    Joined,
    Left,
    Message,
    Registered,
    ServerBye,
    ServerPing,
    ServerPong,
    UserJoined,
    UserLeft,
    UsernameTaken,
    read_server_frame,
)

log = logging.getLogger(__name__)

# Outgoing frames per second the client allows itself: below the server's
# default limit (20/s, burst 40), so its own sends are never dropped as a flood.
CLIENT_RATE = 15.0
CLIENT_BURST = 30
MAX_SERVER_FRAME = 1 << 20  # a server's frame limit may be raised by its host: lenient
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
MAX_BACKOFF_S = 15.0

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


# --- state ---------------------------------------------------------------------------------


class ClientState(enum.Enum):
    """Where the conversation is. ``public`` is what ``ChatClient.state`` has always said."""

    IDLE = "idle"  # nothing yet, or a first connection failed: ``open`` starts one
    CONNECTING = "connecting"  # the connector is reaching the host (TCP, TLS)
    REGISTERING = "registering"  # connected, ``register`` sent, no ``registered`` yet
    LIVE = "live"  # registered on this connection
    RECONNECTING = "reconnecting"  # dropped; the next attempt waits for its backoff
    STOPPED = "stopped"  # gave up reconnecting (or was told to): ``reconnect_now``
    CLOSED = "closed"  # over for good (close, bye, a refusal): only ``open`` again


S = ClientState
TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    S.IDLE: frozenset({S.CONNECTING, S.CLOSED}),
    S.CONNECTING: frozenset({S.CONNECTING, S.REGISTERING, S.RECONNECTING, S.IDLE, S.CLOSED}),
    S.REGISTERING: frozenset({S.CONNECTING, S.LIVE, S.RECONNECTING, S.IDLE, S.CLOSED}),
    S.LIVE: frozenset({S.CONNECTING, S.RECONNECTING, S.CLOSED}),
    S.RECONNECTING: frozenset({S.CONNECTING, S.STOPPED, S.CLOSED}),
    S.STOPPED: frozenset({S.CONNECTING, S.CLOSED}),
    S.CLOSED: frozenset({S.CONNECTING, S.CLOSED}),
}


class IllegalTransition(RuntimeError):
    """A bug: the session was asked to move along an edge ``TRANSITIONS`` does not have."""


# --- events out ----------------------------------------------------------------------------


class Emit:
    """A signal for the façade to emit: ``signal`` names it, the fields are its arguments."""

    signal: ClassVar[str] = ""
    __slots__ = ()

    def args(self) -> list[Any]:
        # ``__match_args__`` is the dataclass's field names, made once per class.
        return [getattr(self, name) for name in self.__match_args__]  # type: ignore[attr-defined]


def _emit(signal: str) -> Callable[[type], type]:
    def made(cls: type) -> type:
        cls.signal = signal
        # Not frozen: an event lives a moment, and a frozen init costs a burst per message.
        return dataclass(slots=True)(cls)
    return made


@_emit("stateChanged")
class StateChanged(Emit):
    state: str


@_emit("registered")
class RegisteredEvent(Emit):
    frame: Registered


@_emit("connectFailed")
class ConnectFailed(Emit):
    error: ConnectError


@_emit("usernameTaken")
class NameTaken(Emit):
    name: str


@_emit("connectionLost")
class ConnectionLost(Emit):
    reason: str


@_emit("protocolError")
class ProtocolBroken(Emit):
    error: ConnectError


@_emit("reconnected")
class Reconnected(Emit):
    gap: bool


@_emit("startedOver")
class StartedOver(Emit):
    pass


@_emit("closed")
class Closed(Emit):
    reason: str


@_emit("userJoined")
class MemberJoined(Emit):
    name: str
    room: str


@_emit("userLeft")
class MemberLeft(Emit):
    name: str
    room: str
    reason: str


@_emit("roomJoined")
class RoomJoined(Emit):
    frame: Joined


@_emit("roomLeft")
class RoomLeft(Emit):
    room: str


@_emit("messageReceived")
class MessageReceived(Emit):
    message: Message


@_emit("historyReceived")
class HistoryReceived(Emit):
    room: str
    messages: list[Message]


@_emit("privateHistoryReceived")
class PrivateHistoryReceived(Emit):
    """A page of a private conversation (``history {with}``), with ``read_up_to``."""

    frame: HistoryPage


@_emit("conversationsReceived")
class ConversationsReceived(Emit):
    """``registered.conversations`` (§1): [{with, last_seq}], newest first."""

    conversations: list[dict[str, Any]]


@_emit("sendConfirmed")
class SendConfirmed(Emit):
    id: str
    message: Message


@_emit("sendFailed")
class SendFailed(Emit):
    id: str
    code: str
    message: str


@_emit("errorReceived")
class ErrorReceived(Emit):
    code: str
    message: str
    ref: str


@_emit("fileAccepted")
class FileAcceptedEvent(Emit):
    """The host took a ``file_offer`` (the façade starts the upload)."""

    frame: FileAccepted


@_emit("fileTicket")
class FileTicketEvent(Emit):
    """The host answered a ``file_get`` (the façade starts the download)."""

    frame: FileTicket


@_emit("fileRefused")
class FileRefused(Emit):
    """A ``file_offer`` or ``file_get`` was refused: its ``id``, the code, the sentence."""

    id: str
    code: str
    message: str


@_emit("pongReceived")
class PongReceived(Emit):
    token: str


@_emit("reconnecting")
class Reconnecting(Emit):
    attempt: int
    reason: str


@_emit("reconnectStopped")
class ReconnectStopped(Emit):
    sentence: str


# Moderation's events that protocol-1 frames carry (``left``/``user_left``/``bye`` with a
# kick's who and why); the rest are in qtchat/client/moderation.py.


@_emit("memberKicked")
class MemberKicked(Emit):
    """Someone else was removed from ``room`` (``lobby`` when from the server)."""

    name: str
    room: str
    by: str
    text: str


@_emit("removed")
class Removed(Emit):
    """We were removed: ``kind`` "kicked" from ``room`` ("" = from the host; ``closed``
    follows), or "banned" (``until``: ISO time, "" until lifted). ``by`` who, ``reason``
    why ("" if not said): peer text."""

    room: str
    kind: str
    by: str
    reason: str
    until: str


class Action:
    """Something for the façade to do to the connection or its timers."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StartConnection(Action):
    """Open a new connection to the endpoint (the old one, if any, is dropped first)."""


@dataclass(frozen=True, slots=True)
class DropConnection(Action):
    """Abort the connection (and a TLS probe); what it sent and was not handled goes."""


@dataclass(frozen=True, slots=True)
class CloseConnection(Action):
    """Leave politely: write ``bye`` (if any) and let it drain, then close."""

    bye: bytes | None


@dataclass(frozen=True, slots=True)
class SettleConnect(Action):
    """The host answered like a qtchat host: the connect timeout no longer applies."""


@dataclass(frozen=True, slots=True)
class ArmTimer(Action):
    """Start (or restart) the named timer: ``reconnect``, ``give_up`` or ``keepalive``."""

    timer: str
    seconds: float


@dataclass(frozen=True, slots=True)
class DisarmTimer(Action):
    timer: str


Event = Emit | Action


# --- the session ---------------------------------------------------------------------------


class ClientSession:
    """One person's conversation with one host, across connections. See the module doc.

    Every method that reacts to something returns the events to execute, in order.
    """

    def __init__(
        self,
        *,
        keepalive: float = 15.0,
        auto_reconnect: bool = True,
        give_up_after: float | None = None,
        features: Iterable[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.keepalive = keepalive
        self.auto_reconnect = auto_reconnect
        # How long to keep reconnecting after a drop: None means the host's resume grace
        # period (``server.grace`` in ``registered``, else 120 s).
        self.give_up_after = give_up_after
        self.offered_features: tuple[str, ...] = tuple(features)
        # The identity's private conversations as the host last listed them (§1).
        self.conversations: list[dict[str, Any]] = []
        self.features: list[str] = []  # what the host accepted of ``offered_features``
        self.host_negotiates = False  # it answered ``features``: not a protocol-1 host
        self._rng = rng or random.Random()
        self.state = ClientState.IDLE
        self.where = "the host"  # the endpoint's address, for sentences
        self.name = ""
        self.password: str | None = None
        self.session: str | None = None
        self.last_seq = 0
        self.server_info: dict[str, Any] = {}
        self.rooms: list[str] = [p.LOBBY]
        self.lost_reason = ""  # why the connection being reconnected was lost
        self.ever_registered = False
        # Identity and moderation (qtchat/client/moderation.py): the secret this host
        # knows us by, the admin secret (host mode), our role, our rooms' roles and topics.
        self.identity: str | None = None
        self.admin: str | None = None
        self.role = "member"
        self.roles: dict[str, dict[str, str]] = {}
        self.topics: dict[str, str] = {}
        self.taken_reason: str | None = None  # why the name was refused ("reserved")
        self._decoder = self._new_decoder()
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._members: dict[str, set[str]] = {}  # folded room -> folded names, bounded
        self._joins_asked = 0  # join / history requests not answered yet on this connection
        self._histories_asked = 0
        self._violations = 0  # protocol violations in a row
        self._registered_at = 0.0
        self._outbox: dict[str, dict[str, Any]] = {}  # id -> frame, until echoed
        self._failed: set[str] = set()  # outbox ids refused: sent again only by ``retry``
        self._in_flight: dict[str, str] = {}  # id -> frame type, sent on this connection
        self._send_queue: deque[bytes] = deque()
        self._pong: bytes | None = None  # at most one answer to the host's ping waits
        self._pong_at = -PONG_INTERVAL
        self._tokens = float(CLIENT_BURST)
        self._tokens_at: float | None = None
        self._attempt = 0
        self._reconnect_at: float | None = None
        self._give_up_at: float | None = None
        self._ping_counter = itertools.count(1)
        self._awaiting_pong: str | None = None
        self._keepalive_due: float | None = None
        self._read_since_ping = False  # bytes came from the host since the keep-alive ping
        self._events: list[Event] = []

    # --- state ---------------------------------------------------------------------------

    @property
    def public_state(self) -> str:
        """The state as ``ChatClient.state`` names it (and ``stateChanged`` carries)."""
        state = self.state
        if state is ClientState.LIVE:
            return "connected"
        if state is ClientState.RECONNECTING:
            return "reconnecting"
        if state in (ClientState.CONNECTING, ClientState.REGISTERING):
            return "reconnecting" if self.ever_registered else "connecting"
        return "disconnected"

    @property
    def live(self) -> bool:
        return self.state is ClientState.LIVE

    @property
    def closing(self) -> bool:
        return self.state is ClientState.CLOSED

    @property
    def stopped_reconnecting(self) -> bool:
        return self.state is ClientState.STOPPED

    def _transition(self, new: ClientState) -> None:
        """The one way the state changes; a ``stateChanged`` when the public name does."""
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state.name} -> {new.name}")
        before = self.public_state
        self.state = new
        after = self.public_state
        if after != before:
            self._events.append(StateChanged(after))

    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def has_feature(self, name: str) -> bool:
        """Whether the host accepted feature ``name`` on this session."""
        return name in self.features

    # --- opening and registering ----------------------------------------------------------

    def open(self, where: str, name: str, password: str | None,
             resume: tuple[str, int] | None) -> list[Event]:
        """A new conversation: connect and register (``resume`` = a saved session)."""
        self.where = where
        self.name = name
        self.password = password
        self.ever_registered = False
        self.session, self.last_seq = checked_resume(resume)
        problem = name_problem(name)
        if problem is not None:  # no point in connecting: say so at once
            self._events.append(DropConnection())
            if self.state is not ClientState.IDLE:
                self._transition(ClientState.CLOSED)
            self._events.append(ConnectFailed(self.invalid_name_error(name, problem)))
            return self._take()
        self._start_connection()
        return self._take()

    def _start_connection(self) -> None:
        self._decoder = self._new_decoder()
        self._in_flight.clear()
        self._send_queue.clear()
        self._pong = None
        self._joins_asked = self._histories_asked = 0
        self._reconnect_at = None
        self._transition(ClientState.CONNECTING)
        self._events.append(StartConnection())

    @staticmethod
    def _new_decoder() -> p.FrameDecoder:
        return p.FrameDecoder(parse=read_server_frame, max_frame=MAX_SERVER_FRAME)

    def connection_made(self) -> list[Event]:
        """The connection is up (and, with TLS, the certificate is the expected one)."""
        self._transition(ClientState.REGISTERING)
        self._queue_register()
        return self._take()

    def register(self, name: str) -> list[Event]:
        """Another name after ``usernameTaken`` or ``invalid_name`` (the connection stays)."""
        problem = name_problem(name)
        if problem is not None:
            self._events.append(ConnectFailed(self.invalid_name_error(name, problem)))
            return self._take()
        self.name = name
        self._queue_register()
        return self._take()

    def _queue_register(self) -> None:
        self._queue(p.encode(p.Register(
            name=self.name,
            password=self.password,
            resume=self.session,
            since=self.last_seq if self.session else None,
            features=list(self.offered_features),
            identity=self.identity,
            admin=self.admin,
        )))

    # --- receiving -----------------------------------------------------------------------

    def bytes_read(self) -> None:
        """Bytes came from the host (the keep-alive counts them as a sign of life)."""
        self._read_since_ping = True

    def decode(self, data: bytes) -> list[Any]:
        """Frames (typed, checked) or ``RemoteProtocolError`` for each complete line."""
        return self._decoder.feed(data)

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """``decode`` and ``handle`` in one step (tests; the façade slices them)."""
        self.bytes_read()
        for item in self.decode(data):
            self._handle(item, now)
            if self.state not in (ClientState.REGISTERING, ClientState.LIVE):
                break  # that frame ended the connection: the rest goes with it
        return self._take()

    def handle(self, item: Any, now: float) -> list[Event]:
        """Act on one decoded item: a typed frame, None (an unknown type) or an error."""
        self._handle(item, now)
        return self._take()

    def _handle(self, item: Any, now: float) -> None:
        if item is None:
            return  # a type of a later protocol: ignored
        if self.state not in (ClientState.REGISTERING, ClientState.LIVE):
            return  # read before the connection ended: it went with it
        if isinstance(item, p.RemoteProtocolError):
            self._bad_frame(item, now)
            return
        handler = _HANDLERS.get(type(item))
        if handler is not None:
            handler(self, item, now)

    def _bad_frame(self, error: p.RemoteProtocolError, now: float) -> None:
        log.warning("bad frame from server: %s", error)
        if error.fatal:
            self._violation(f"a frame of more than {MAX_SERVER_FRAME:,} bytes", now)
        elif error.message.startswith("a '"):
            self._violation(error.message, now)
        else:  # not JSON, not an object, no type: the decoder's own sentence
            self._violation(f"a frame that is not a qtchat frame: {error.message}", now)

    def _violation(self, what: str, now: float) -> None:
        """The host broke the protocol: leave it, say what it sent, and try again after a
        growing pause, or stop after MAX_VIOLATIONS in a row (or on a first connection:
        it is not a qtchat host we can talk to)."""
        where = self.where
        if self.live and now - self._registered_at > VIOLATION_FORGET_S:
            self._violations = 0
        self._violations += 1
        log.warning("host %s broke the protocol (%d in a row): %s", where,
                    self._violations, what)
        if not self.ever_registered or not self.auto_reconnect or self.closing or \
                self._violations >= MAX_VIOLATIONS:
            times = (f" {self._violations} times in a row" if self._violations > 1 else "")
            error = ConnectError(
                "protocol",
                f"The host at {where} sent {what}, which breaks the qtchat protocol{times}, "
                "so qtchat stopped talking to it: check that this address is the qtchat "
                "host you meant, and ask its host to update qtchat.")
            self._events.append(DisarmTimer("keepalive"))
            self._fail(error, retry=False, final=True)
            return
        error = ConnectError(
            "protocol",
            f"The host at {where} sent {what}, which breaks the qtchat protocol, so qtchat "
            "left that connection and will try again: if this keeps happening, check that "
            "this address is the qtchat host you meant.")
        self._events.append(ProtocolBroken(error))
        self._attempt = max(self._attempt, self._violations)  # a growing pause
        if self.live:
            self._events += [DisarmTimer("keepalive"), DropConnection()]
            self.lost_reason = "the host broke the protocol"
            self._events.append(ConnectionLost(self.lost_reason))
            self._arm_give_up(now)
            self._schedule_reconnect(now)
        else:
            self._fail(error, retry=True, now=now)

    def _on_ping(self, frame: ServerPing, now: float) -> None:
        # Answered ahead of our own queued frames, and at most one answer waits:
        # a newer ping replaces it (a flood of pings costs one pong per pacing slot).
        if self.live:
            self._pong = p.encode(p.Pong(token=frame.token))

    def _on_pong(self, frame: ServerPong, now: float) -> None:
        token = frame.token or ""
        if token == self._awaiting_pong:
            self._awaiting_pong = None
        self._events.append(PongReceived(token))

    def _on_user_joined(self, frame: UserJoined, now: float) -> None:
        members = self._members.get(frame.room.casefold())
        if members is None:
            return  # not a room we are in (a join racing our leave)
        name = frame.name.casefold()
        if name not in members:
            if len(members) >= MAX_MEMBERS_PER_ROOM:
                log.warning("more than %d members in %s: not shown", MAX_MEMBERS_PER_ROOM,
                            frame.room)
                return
            members.add(name)
        self._events.append(MemberJoined(frame.name, frame.room))

    def _on_user_left(self, frame: UserLeft, now: float) -> None:
        members = self._members.get(frame.room.casefold())
        if members is None:
            return
        members.discard(frame.name.casefold())
        if frame.reason == "kicked" and frame.by:
            self._events.append(MemberKicked(frame.name, frame.room, frame.by,
                                             frame.text or ""))
        self._events.append(MemberLeft(frame.name, frame.room, frame.reason or ""))

    def _on_joined(self, frame: Joined, now: float) -> None:
        room = frame.room
        known = self._members.get(room.casefold()) is not None
        if not known:
            if self._joins_asked <= 0:
                self._violation(f"a room we did not ask to join (\"{room[:40]}\")", now)
                return
            if len(self.rooms) >= MAX_ROOMS:
                self._violation(f"more than {MAX_ROOMS:,} rooms to be in", now)
                return
        self._joins_asked = max(0, self._joins_asked - 1)
        if room not in self.rooms:
            self.rooms.append(room)
        self._members[room.casefold()] = {name.casefold() for name in frame.users}
        self.roles[room.casefold()] = dict(frame.roles or {})
        if frame.topic:
            self.topics[room.casefold()] = str(frame.topic.get("text", ""))
        for message in frame.history:
            self._remember_seq(message.seq)
        self._events.append(RoomJoined(frame))

    def _on_left(self, frame: Left, now: float) -> None:
        room = frame.room
        folded = room.casefold()
        if folded == p.LOBBY:
            return  # it cannot be left
        self._members.pop(folded, None)
        self.rooms = [r for r in self.rooms if r.casefold() != folded]
        if frame.reason == "kicked":
            self._events.append(Removed(room, "kicked", frame.by or "", frame.text or "", ""))
        self._events.append(RoomLeft(room))

    def _on_history(self, frame: HistoryPage, now: float) -> None:
        if self._histories_asked <= 0:
            self._violation("history we did not ask for", now)
            return
        self._histories_asked -= 1
        if frame.room is not None:
            self._events.append(HistoryReceived(frame.room, frame.messages))
        elif frame.with_ is not None:
            self._events.append(PrivateHistoryReceived(frame))
        else:
            self._violation("a history page of no room and nobody", now)

    def _on_taken(self, frame: UsernameTaken, now: float) -> None:
        if self.live:
            self._violation("'username_taken' after it had accepted the name", now)
            return
        self._events.append(SettleConnect())
        self.taken_reason = frame.reason
        if not self.ever_registered:
            self._events.append(NameTaken(frame.name))  # the connection stays
            return
        # Coming back after the resume grace period ended, someone else has the name
        # now: retrying would only be refused again, every time.
        self._fail(ConnectError(
            "username_taken",
            f"While you were away, someone at {self.where} took the name "
            f"\"{frame.name}\": join again with another name."), retry=False, final=True)

    def _remember_seq(self, seq: int) -> bool:
        """Record a message's seq (checked by the parser); False if it was seen before."""
        if seq in self._seen:
            return False
        self._seen.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > MAX_SEEN_SEQS:
            self._seen.discard(self._seen_order.popleft())
        return True

    def _on_message(self, message: Message, now: float) -> None:
        message_id = message.id
        confirmed = message_id is not None and self._outbox.pop(message_id, None) is not None
        if message_id is not None:
            self._in_flight.pop(message_id, None)
            self._failed.discard(message_id)
        fresh = self._remember_seq(message.seq)
        if message.seq > self.last_seq:
            self.last_seq = message.seq
        if confirmed:
            assert message_id is not None
            self._events.append(SendConfirmed(message_id, message))
        if fresh:
            self._events.append(MessageReceived(message))

    def _on_registered(self, frame: Registered, now: float) -> None:
        if self.live:
            self._violation("'registered' a second time on one connection", now)
            return
        problem = name_problem(frame.name)
        if problem is not None:  # we could never send it back in a resume
            self._violation(f"a name we cannot use (\"{frame.name[:40]}\")", now)
            return
        self._events += [SettleConnect(), DisarmTimer("give_up")]
        self._give_up_at = None
        resumed = bool(frame.resumed)
        was_registered = self.ever_registered
        self.session = frame.session
        self.name = frame.name
        before = self.server_info.get("history")
        self.server_info = frame.server
        started_over = was_registered and before is not None and \
            self.server_info.get("history") != before
        if started_over:  # its seq 1, 2, 3 are not the ones we have seen: forget those
            self._seen.clear()
            self._seen_order.clear()
        if not resumed:  # a new session begins at the server's present, whatever we saw
            self.last_seq = 0
        # A host that answers ``features`` negotiates; one that does not is protocol 1.
        self.host_negotiates = frame.features is not None
        offered = set(self.offered_features)
        self.features = [name for name in frame.features or () if name in offered]
        previous_rooms = list(self.rooms)
        if frame.in_rooms is not None:
            self.rooms = list(frame.in_rooms)
        if not any(room.casefold() == p.LOBBY for room in self.rooms):
            self.rooms.insert(0, p.LOBBY)
        self._members = {room.casefold(): set() for room in self.rooms}
        self._members[p.LOBBY] = {name.casefold() for name in frame.users}
        self.role = frame.role or "member"
        self.roles = {p.LOBBY: dict(frame.roles or {})}
        self.topics = {p.LOBBY: str(frame.topic.get("text", ""))} if frame.topic else {}
        self.ever_registered = True
        self._registered_at = now
        self._attempt = 0
        self._awaiting_pong = None
        self._transition(ClientState.LIVE)
        if self.keepalive > 0:
            self._keepalive_due = now + self.keepalive
            self._events.append(ArmTimer("keepalive", self.keepalive))
        self._events.append(RegisteredEvent(frame))
        if frame.conversations is not None:
            self.conversations = [dict(c) for c in frame.conversations]
            self._events.append(ConversationsReceived(list(self.conversations)))
        if started_over:
            self._events.append(StartedOver())
        if was_registered:
            if not resumed:  # the session was gone: rejoin our rooms (joined carries history)
                for room in previous_rooms:
                    if room.casefold() != p.LOBBY:
                        self._join(room)
                self._request_history(p.LOBBY, None, p.DEFAULT_HISTORY_LIMIT)
            self._events.append(Reconnected(bool(frame.gap) or not resumed))
        for message_id, body in list(self._outbox.items()):
            if message_id not in self._failed:  # refused ones wait for ``retry``
                self._in_flight[message_id] = body["type"]
                self._queue(p.encode(body))

    def _on_error(self, frame: ErrorFrame, now: float) -> None:
        code, message = frame.code, frame.message
        ref = frame.ref or ""
        if ref == "join":  # an answer: the join will not be ``joined``
            self._joins_asked = max(0, self._joins_asked - 1)
        elif ref == "history":
            self._histories_asked = max(0, self._histories_asked - 1)
        if not self.live and code == "invalid_name":
            # Like username_taken, the connection stays: ``register`` another name.
            self._events += [SettleConnect(),
                             ConnectFailed(self.invalid_name_error(self.name, message))]
            return
        if not self.live and (code == "banned" or (code == "rate_limited" and self.admin)):
            # Refused for good (a ban), or the admin secret is locked out for a while.
            if code == "banned":
                when = f"until {frame.until}" if frame.until else "until the ban is lifted"
                text = f"The host at {self.where} has banned you ({when}). {message}"
            else:
                text = message
            self._fail(ConnectError(code, text), retry=False, final=True)
            return
        if not self.live and code in _JOIN_REFUSALS:
            text = _JOIN_REFUSALS[code]
            wait = frame.retry_after
            if code == "wrong_password" and wait is not None and 0 < wait <= 86_400:
                # Locked out after too many guesses: even the right password waits.
                text = (f"The host at {{where}} refuses passwords from this computer for "
                        f"{wait} s after too many wrong ones: wait, then join again.")
            elif code == "wrong_password" and not self.password:
                text = ("The room at {where} needs a password: ask the host for it and type "
                        "it in the Password field.")
            self._fail(ConnectError(code, text.format(where=self.where)),
                       retry=False, final=True)
            return
        if ref in ("file_offer", "file_get") and frame.id is not None:
            self._events.append(FileRefused(frame.id, code, message))
            return
        failed_id = self._refused_send(frame)
        if failed_id is not None:
            if failed_id in self._outbox:
                self._failed.add(failed_id)
            self._events.append(SendFailed(failed_id, code, message))
            return
        self._events.append(ErrorReceived(code, message, ref))

    def _refused_send(self, frame: ErrorFrame) -> str | None:
        """The outbox id an ``error`` refuses, or None if it is about something else.

        By the ``id`` the host echoes (features §0). A host that sends errors without
        one is a protocol-1 host answering in order: then the oldest send in flight *of
        the frame type it names* (``ref``), never one of another kind."""
        named = frame.id
        if named is not None:
            return named if self._in_flight.pop(named, None) is not None else None
        if self.host_negotiates or frame.ref not in ("broadcast", "whisper"):
            return None
        for message_id, kind in self._in_flight.items():
            if kind == frame.ref:
                del self._in_flight[message_id]
                return message_id
        return None

    def _on_file_accepted(self, frame: FileAccepted, now: float) -> None:
        self._events.append(FileAcceptedEvent(frame))

    def _on_file_ticket(self, frame: FileTicket, now: float) -> None:
        self._events.append(FileTicketEvent(frame))

    def _on_bye(self, frame: ServerBye, now: float) -> None:
        reason = frame.reason or ""
        if reason in _RESUMABLE_BYES and self.auto_reconnect and self.ever_registered:
            # The host may come back (shutdown), or gave up on us while we were frozen
            # (timeout) and holds the session: keep trying.
            self._lost(_RESUMABLE_BYES[reason], now)
            return
        self._events += [DisarmTimer("keepalive"), DropConnection()]
        self._transition(ClientState.CLOSED)
        self._fail_outbox()
        if reason in ("kicked", "banned"):
            self._events.append(Removed("", reason, frame.by or "", frame.text or "",
                                        frame.until or ""))
        self._events.append(Closed(reason))

    # --- sending -------------------------------------------------------------------------

    def send_message(self, frame: p.Broadcast | p.Whisper) -> str:
        """Queue a message tagged with its ``id``; it waits in the outbox until echoed."""
        assert frame.id is not None
        body = frame.to_dict()
        self._outbox[frame.id] = body
        self._failed.discard(frame.id)
        if self.live:
            self._in_flight[frame.id] = frame.type
            self._queue(p.encode(body))
        return frame.id

    def retry(self, message_id: str) -> None:
        """Send a refused message again (same id); while away it goes with the resume."""
        body = self._outbox.get(message_id)
        if body is None:
            return
        self._failed.discard(message_id)
        if self.live:
            self._in_flight[message_id] = body["type"]
            self._queue(p.encode(body))

    def discard(self, message_id: str) -> None:
        self._outbox.pop(message_id, None)
        self._failed.discard(message_id)

    @property
    def pending_ids(self) -> list[str]:
        return list(self._outbox)

    @property
    def failed_ids(self) -> list[str]:
        return [message_id for message_id in self._outbox if message_id in self._failed]

    def send_frame(self, frame: p.ClientFrame) -> bool:
        """Queue ``frame`` if registered now; whether it was."""
        if self.live:
            self._queue(p.encode(frame))
            return True
        return False

    def join(self, room: str) -> None:
        self._join(room)

    def _join(self, room: str) -> None:
        if self.send_frame(p.Join(room=room)):
            self._joins_asked = min(self._joins_asked + 1, MAX_ANSWERS_AWAITED)

    def request_history(self, room: str, before: int | None = None, limit: int = 50) -> None:
        self._request_history(room, before, limit)

    def _request_history(self, room: str, before: int | None, limit: int) -> None:
        if self.send_frame(p.History(room=room, before=before, limit=limit)):
            self._histories_asked = min(self._histories_asked + 1, MAX_ANSWERS_AWAITED)

    def request_private_history(self, with_: str, before: int | None = None,
                                limit: int = 50) -> None:
        """A page of the whispers with ``with_`` (``history {with}``)."""
        if self.send_frame(p.History(with_=with_, before=before, limit=limit)):
            self._histories_asked = min(self._histories_asked + 1, MAX_ANSWERS_AWAITED)

    def ping(self, token: str | None = None) -> str:
        token = token or f"c{next(self._ping_counter)}"
        self.send_frame(p.Ping(token=token))
        return token

    def _queue(self, data: bytes) -> None:
        self._send_queue.append(data)

    @property
    def wants_output(self) -> bool:
        """Bytes wait for ``pull_output``."""
        return bool(self._send_queue) or self._pong is not None

    def pull_output(self, now: float) -> tuple[bytes, float | None]:
        """What may be written now within the client's rate budget, and in how many
        seconds to ask again (None: nothing waits)."""
        if self._tokens_at is None:
            self._tokens_at = now
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
        queue = self._send_queue
        while queue and self._tokens >= 1.0:
            chunks.append(queue.popleft())
            self._tokens -= 1.0
        waits = []
        if queue:
            waits.append(1.0 / CLIENT_RATE)
        if self._pong is not None:
            waits.append(max(0.001, pong_wait))
        return b"".join(chunks), (min(waits) if waits else None)

    def _fail_outbox(self) -> None:
        """The conversation ended: what was not confirmed fails (``retry`` after ``open``)."""
        for message_id in list(self._outbox):
            if message_id not in self._failed:
                self._failed.add(message_id)
                self._events.append(SendFailed(message_id, "not_connected", "Not connected."))

    # --- connections ending, reconnecting ------------------------------------------------

    def connection_failed(self, error: ConnectError, *, retry: bool,
                          now: float) -> list[Event]:
        """An attempt failed before registration (the connector says why)."""
        self._fail(error, retry=retry, now=now)
        return self._take()

    def _fail(self, error: ConnectError, *, retry: bool, now: float = 0.0,
              final: bool = False) -> None:
        """A connection attempt failed before registration (or a refusal ended it):
        back off and try again if it may succeed, else say so. ``final``: no retry ever
        (the conversation is closed)."""
        self._events += [SettleConnect(), DropConnection()]
        if final and self.state is not ClientState.CLOSED:
            self._transition(ClientState.CLOSED)
        if self.ever_registered and retry and not self.closing and self.auto_reconnect:
            self._schedule_reconnect(now)
            return
        if not self.closing:
            self._transition(ClientState.IDLE if self.state in
                             (ClientState.CONNECTING, ClientState.REGISTERING)
                             else ClientState.CLOSED)
        self._fail_outbox()
        self._events.append(ConnectFailed(error))

    def connection_lost(self, reason: str, now: float) -> list[Event]:
        """An established connection dropped (or stopped answering)."""
        self._lost(reason, now)
        return self._take()

    def _lost(self, reason: str, now: float) -> None:
        log.info("connection lost: %s", reason)
        if self.live and now - self._registered_at > VIOLATION_FORGET_S:
            self._violations = 0  # a long clean connection: earlier violations are forgotten
        self._events += [DisarmTimer("keepalive"), DropConnection()]
        if self.closing:
            return
        self.lost_reason = reason
        if self.auto_reconnect:
            self._events.append(ConnectionLost(reason))
            self._arm_give_up(now)
            self._schedule_reconnect(now)
        else:
            self._events.append(ConnectionLost(reason))
            self._transition(ClientState.CLOSED)
            self._fail_outbox()
            self._events.append(Closed(reason))

    def backoff(self, attempt: int) -> float:
        """Seconds before reconnect attempt ``attempt + 1``: doubling from 0.25 s up to
        15 s, with ±30 % jitter so a restarted host is not stormed by all at once."""
        delay = min(MAX_BACKOFF_S, 0.25 * (2 ** min(attempt, 6)))
        return delay * self._rng.uniform(0.7, 1.3)

    def _schedule_reconnect(self, now: float) -> None:
        if self.state is not ClientState.RECONNECTING:
            self._transition(ClientState.RECONNECTING)
        delay = self.backoff(self._attempt)
        self._attempt += 1
        self._reconnect_at = now + delay
        self._events += [ArmTimer("reconnect", delay),
                         Reconnecting(self._attempt, self.lost_reason)]

    def _arm_give_up(self, now: float) -> None:
        grace = self.grace_period()
        self._give_up_at = now + grace
        self._events.append(ArmTimer("give_up", grace))

    def reconnect_due(self, now: float) -> list[Event]:
        """The reconnect timer fired: start the next attempt if its time has come."""
        if self.state is ClientState.RECONNECTING and self._reconnect_at is not None:
            if now >= self._reconnect_at:
                self._start_connection()
            else:  # woke early: wait for the rest
                self._events.append(ArmTimer("reconnect", self._reconnect_at - now))
        return self._take()

    def give_up_due(self, now: float) -> list[Event]:
        """The give-up timer fired: past the grace period, stop reconnecting."""
        if self.state not in (ClientState.RECONNECTING, ClientState.CONNECTING,
                              ClientState.REGISTERING) or not self.ever_registered or \
                self._give_up_at is None:
            return self._take()
        if now < self._give_up_at:
            self._events.append(ArmTimer("give_up", self._give_up_at - now))
            return self._take()
        seconds = self.grace_period()
        span = f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} minutes"
        self._stop_reconnecting(
            f"Gave up reconnecting to {self.where} after {span}: the host did not come "
            "back. Press Reconnect to try again.")
        return self._take()

    def stop_reconnecting(self, sentence: str | None = None) -> list[Event]:
        """Stop trying (the person pressed Stop): the outbox fails, ``reconnect_now``
        tries again."""
        if self.public_state == "reconnecting" and not self.closing:
            self._stop_reconnecting(
                sentence or f"Stopped reconnecting to {self.where}: press Reconnect to try "
                "again.")
        return self._take()

    def _stop_reconnecting(self, sentence: str) -> None:
        self._events += [DisarmTimer("reconnect"), SettleConnect(), DisarmTimer("give_up"),
                         DropConnection()]
        self._reconnect_at = self._give_up_at = None
        if self.state is not ClientState.RECONNECTING:
            self._transition(ClientState.RECONNECTING)  # an attempt under way ends here
        self._transition(ClientState.STOPPED)
        self._fail_outbox()
        self._events.append(ReconnectStopped(sentence))

    def reconnect_now(self, now: float) -> list[Event]:
        """Try again after ``stop_reconnecting`` (or a give-up): a fresh grace period."""
        if self.state is ClientState.STOPPED:
            self._attempt = 1
            self._arm_give_up(now)
            self._events.append(Reconnecting(self._attempt, self.lost_reason))
            self._start_connection()
        return self._take()

    def keepalive_tick(self, now: float) -> list[Event]:
        """The keep-alive timer fired: ping, or give up on a host silent since the last
        ping. A host busy sending is alive: our pong waits behind frames not handled yet."""
        if not self.live or self.keepalive <= 0 or self._keepalive_due is None:
            return self._take()
        if now < self._keepalive_due:  # woke early: wait for the rest
            self._events.append(ArmTimer("keepalive", self._keepalive_due - now))
            return self._take()
        if self._awaiting_pong is not None and not self._read_since_ping:
            self._lost("the host stopped answering", now)
            return self._take()
        if self._awaiting_pong is None:
            self._awaiting_pong = self.ping(f"k{next(self._ping_counter)}")
        self._read_since_ping = False
        self._keepalive_due = now + self.keepalive
        self._events.append(ArmTimer("keepalive", self.keepalive))
        return self._take()

    def close(self, reason: str) -> list[Event]:
        """Leave for good: ``bye`` if registered, then close. No reconnect follows."""
        bye = p.encode(p.Bye()) if self.live else None
        self._events += [DisarmTimer("reconnect"), SettleConnect(), DisarmTimer("keepalive"),
                         DisarmTimer("give_up"), CloseConnection(bye)]
        self._reconnect_at = self._give_up_at = None
        self._send_queue.clear()
        self._in_flight.clear()
        self._pong = None
        self._transition(ClientState.CLOSED)
        self._events.append(Closed(reason))
        return self._take()

    def grace_period(self) -> float:
        """Seconds to keep reconnecting: ``give_up_after``, else the host's grace."""
        if self.give_up_after is not None:
            return self.give_up_after
        grace = self.server_info.get("grace")
        if isinstance(grace, (int, float)) and not isinstance(grace, bool) and \
                0 < grace <= 7 * 24 * 3600:
            return max(float(grace), MIN_GIVE_UP_S)
        return DEFAULT_GRACE_S

    def invalid_name_error(self, name: str, reason: str) -> ConnectError:
        return ConnectError(
            "invalid_name",
            f"The name \"{name}\" can't be used to join {self.where}: {reason} Choose "
            "another name.")


# Server frame class -> handler. A feature adds its frames' handlers here.
_HANDLERS: dict[type, Callable[[ClientSession, Any, float], None]] = {
    Message: ClientSession._on_message,
    UserJoined: ClientSession._on_user_joined,
    UserLeft: ClientSession._on_user_left,
    ServerPing: ClientSession._on_ping,
    ServerPong: ClientSession._on_pong,
    Registered: ClientSession._on_registered,
    Joined: ClientSession._on_joined,
    Left: ClientSession._on_left,
    HistoryPage: ClientSession._on_history,
    UsernameTaken: ClientSession._on_taken,
    ErrorFrame: ClientSession._on_error,
    ServerBye: ClientSession._on_bye,
    FileAccepted: ClientSession._on_file_accepted,
    FileTicket: ClientSession._on_file_ticket,
}


def checked_resume(resume: tuple[str, int] | None) -> tuple[str | None, int]:
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


def name_problem(name: str) -> str | None:
    """Why the server would refuse ``name`` (the same rules, checked here), or None."""
    try:
        parse_name(name)
    except InvalidName as exc:
        return str(exc)
    return None

