"""ServerCore: the server's rules with no Qt and no I/O, driven by events with the time in.

The Qt adapter (``ChatServer``) owns sockets and timers and calls in:

- ``open(handle, now)`` a connection was accepted (``handle``: its transport, with a
  ``peer`` address); returns the ``Connection`` to pass back in every other call;
- ``feed(conn, data, now)`` bytes it sent; ``drained(conn, now)`` everything written to
  it reached the kernel; ``backlog(conn, pending, kernel_unsent, now)`` a write left
  bytes waiting; ``peer_finished(conn, now)`` it half-closed; ``lost(conn, now)`` its
  transport is closed;
- ``tick(now)`` the sweep (at least once a second); ``work()`` one turn of heavy work
  (replays, history pages), called while ``has_work`` and the adapter's slice lasts;
  ``budget_refilled(conn, now)`` the time a rate-limit pause asked for has come;
- ``shutdown(reason)`` and ``abort_closing()`` when the server stops.

Nothing leaves except through ``end_pass()``: it commits the store *first* (so a message
is stored before any copy of it is sent, by construction), then hands over a ``Pass``:
the connections whose out-lists to write, the control actions (close, abort, pause and
resume reading), the events for the Qt signals, and the connections whose draining the
core waits for. Out-lists hold encoded ``bytes``; a broadcast is encoded once and the same
object is appended to every recipient's list, which is what keeps fan-out fast and lets a
failed commit take those bytes back out by identity (``_storage_failed``).

The rules live in feature modules (``features/``); the core dispatches each frame from a
table built from them (``Feature.frames``), checks what a connection may send in its
state (``domain.ConnState``) and with its negotiated features, and runs their hooks.
Decide, then execute (python-zeroconf); h11's shape.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from qtchat import protocol as p
from qtchat.names import parse_name, parse_room
from qtchat.protocol.server_frames import ErrorFrame, Message, ServerBye
from qtchat.server.config import ServerConfig
from qtchat.server.domain import Connection, ConnState, Room, Session
from qtchat.server.features.base import Feature, overrides
from qtchat.server.features.chess import ChessFeature
from qtchat.server.features.messages import MessagesFeature
from qtchat.server.features.moderation import ModerationFeature
from qtchat.server.features.rooms import RoomsFeature
from qtchat.server.features.session import SessionFeature
from qtchat.server.store import MessageStore, StorageError

log = logging.getLogger(__name__)

# How long a closing connection may take to hand its last bytes to the peer.
CLOSE_GRACE = 5.0
# Frames held back from a client whose replay (or page) is still running; past this many
# the adapter stops reading from it until the work is done (TCP pushes back).
HOLD_CAP = 256
# Shortest pause of a connection that ran out of rate budget (see _decode).
MIN_PAUSE = 0.01


class Do(enum.Enum):
    """A control action for the adapter: ``(Do.X, conn, until)``."""

    CLOSE = "close"  # its out-list has been written: close once the peer has it
    ABORT = "abort"  # reset it; nothing more is sent
    PAUSE_READING = "pause_reading"  # until ``until`` (then call budget_refilled), or RESUME
    RESUME_READING = "resume_reading"  # read again, and read what is waiting now


@dataclass(slots=True)
class Pass:
    """What one ``end_pass`` hands to the adapter, to execute in this order."""

    events: list[tuple[str, tuple[Any, ...]]]  # (ChatServer signal name, its arguments)
    dirty: list[Connection]  # write each one's ``out`` (joined), then clear it
    watch: list[Connection]  # after the writes: ``drained`` for each with nothing pending
    actions: list[tuple[Do, Connection, float | None]]


FeatureFactory = Callable[["ServerCore"], Feature]
# A change to a message made while a replay runs (an edit, a delete), applied to the
# replayed copy: the message as it is now, or None to leave it out.
Change = Callable[[Message], Message | None]


class Replay:
    """A resume's replay as it runs (``ServerCore.watch_replay``): the messages it hands
    out, how far it got (``upto``: everything up to this seq is queued, or was had before
    the replay began), and the changes made meanwhile to messages it has not yet handed
    out. The store reads a batch ahead, so a message not yet handed out may already be
    read with its old text: the change is applied when it is handed out, which makes the
    replayed copy the current one (and no ``edited`` follows it)."""

    __slots__ = ("_messages", "changes", "upto")

    def __init__(self, messages: Iterator[Message], since: int) -> None:
        self._messages = messages
        self.upto = since
        self.changes: dict[int, list[Change]] = {}

    def __iter__(self) -> Replay:
        return self

    def __next__(self) -> Message:
        while True:
            message = next(self._messages)
            self.upto = message.seq
            if not self.changes:
                return message
            changed: Message | None = message
            for change in self.changes.pop(message.seq, ()):
                if changed is not None:
                    changed = change(changed)
            if changed is not None:
                return changed


def _living_features() -> tuple[FeatureFactory, ...]:
    from qtchat.server.features.edit import EditFeature
    from qtchat.server.features.presence import PresenceFeature
    from qtchat.server.features.receipts import ReceiptsFeature
    from qtchat.server.features.search import SearchFeature
    from qtchat.server.features.typing import TypingFeature

    return (lambda core: SearchFeature(core, core.rooms, core.sessions),
            lambda core: EditFeature(core, core.rooms, core.sessions),
            lambda core: TypingFeature(core, core.rooms, core.sessions),
            lambda core: PresenceFeature(core, core.rooms),
            lambda core: ReceiptsFeature(core, core.sessions))


# The negotiated features a server offers when not told otherwise (PROTOCOL-FEATURES.md).
DEFAULT_FEATURES: tuple[FeatureFactory, ...] = (*_living_features(),)


class ServerCore:
    """The server's rules (see the module docstring)."""

    def __init__(self, config: ServerConfig, store: MessageStore, *, now: float,
                 features: Iterable[FeatureFactory] | None = None,
                 timestamp: Callable[[], str] = p.utc_timestamp) -> None:
        """``features``: negotiated feature modules besides
        protocol 1's, each made from the core (None: ``DEFAULT_FEATURES``).
        ``timestamp``: a message's ``ts`` (UTC)."""
        self.config = config
        self.store = store
        self.now = now
        self.timestamp = timestamp
        self._conns: dict[Connection, None] = {}  # open: NEW to LIVE
        self._closing: set[Connection] = set()  # removed, last bytes still leaving
        self._dirty: list[Connection] = []
        self._actions: list[tuple[Do, Connection, float | None]] = []
        self._events: list[tuple[str, tuple[Any, ...]]] = []
        self._posted: list[Message] = []
        # Messages added since the last commit: (sender's connection, session, frame
        # type, id, seq, the bytes objects queued for it) - what a failed commit takes
        # back. The storage's trouble, once reported (None while it works).
        self._unstored: list[tuple[Connection, Session, str, str | None, int,
                                   tuple[bytes | None, bytes | None]]] = []
        self._storage_trouble: str | None = None
        # Connections with heavy work waiting for their turn (see work), and those whose
        # work waits for their output to reach the kernel (see end_pass, drained).
        self._work: deque[Connection] = deque()
        self._awaiting_drain: list[Connection] = []
        # Resumes whose replay runs (see watch_replay): not yet in their rooms' fan-out.
        self._replays: dict[Connection, Replay] = {}
        # The connection and frame ``id`` being handled now (see send_error).
        self._answering: tuple[Connection | None, str | None] = (None, None)
        # end_pass count and the last seq at the last two: see sent_upto.
        self._passes = 0
        self._flushed_seq = self._prev_flushed_seq = store.last_seq

        self.rooms = RoomsFeature(self)
        self.sessions = SessionFeature(self, self.rooms)
        self.messages = MessagesFeature(self, self.rooms, self.sessions)
        self.moderation = ModerationFeature(self, self.rooms, self.sessions)
        self.features: list[Feature] = [self.rooms, self.sessions, self.messages,
                                        ChessFeature(self), self.moderation,
                                        *(make(self) for make in (
                                            DEFAULT_FEATURES if features is None else features))]
        table: dict[str, tuple[Feature, bool]] = {}
        for feature in self.features:
            for kind, (_method, before_register) in feature.frames.items():
                if kind in table:
                    raise ValueError(f"{kind!r} is handled by {type(table[kind][0]).__name__} "
                                     f"and {type(feature).__name__}")
                table[kind] = (feature, before_register)
        self._table = table
        self._before_register = frozenset(
            kind for kind, (feature, before) in table.items() if before and feature.name is None)
        self._offered = frozenset(f.name for f in self.features if f.name is not None)
        self._detach_hooks = [f for f in self.features if overrides(f, "on_detach")]
        self._tick_hooks = [f for f in self.features if overrides(f, "on_tick")]
        self._live_hooks = [f for f in self.features if overrides(f, "on_live")]
        self._join_hooks = [f for f in self.features if overrides(f, "on_join")]
        self._end_pass_hooks = [f for f in self.features if overrides(f, "on_end_pass")]
        self._vetoes = [f for f in self.features if overrides(f, "may_post")]
        self._status_hooks = [f for f in self.features if overrides(f, "statuses_in")]

        # Reads of the history never see a message that could still be rolled back.
        store.before_read = self._commit_before_read
        self.rooms.load()
        self.sessions.load(now)
        self.rooms.settle()
        self._commit()  # a full disk here is reported, and the changes wait for room

    # --- what the adapter asks ----------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """Whether ``end_pass`` has anything to hand over (the adapter schedules it)."""
        return bool(self._dirty or self._actions or self._events or self._posted)

    @property
    def has_work(self) -> bool:
        return bool(self._work)

    @property
    def client_count(self) -> int:
        return self.sessions.registered

    def connections(self) -> list[Connection]:
        """The open connections (not closing), oldest first."""
        return list(self._conns)

    def users(self, room: str = p.LOBBY) -> list[str]:
        found = self.rooms.find(parse_room(room))
        return self.rooms.users_of(found) if found else []

    def held_names(self) -> list[str]:
        return self.sessions.held_names()

    # --- events in ---------------------------------------------------------------------

    def open(self, handle: Any, now: float) -> Connection:
        self.now = now
        conn = Connection(handle, getattr(handle, "peer", "?"), now,
                          max_frame=self.config.max_frame_bytes, burst=self.config.rate_burst)
        self._conns[conn] = None
        return conn

    def feed(self, conn: Connection, data: bytes, now: float) -> None:
        """Bytes ``conn`` sent: frames are decoded (each paid for from its rate bucket
        first) and applied in order, each in its own ``try``."""
        self.now = now
        if not data or not conn.open:
            return
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
                self.send_error(conn, "not_registered",
                                f"More than {limit:,} bytes before register; closing.")
                self.close(conn, "kicked")
                return
            self._process(conn, self._decode(conn, line, now))
            if not conn.open or conn.over_budget:
                return
        if data:
            self._process(conn, self._decode(conn, data, now))
        held = conn.held
        if held is not None and len(held) >= HOLD_CAP and not conn.hold_full and conn.open:
            conn.hold_full = True  # read on when the work is done (_release_held)
            self._actions.append((Do.PAUSE_READING, conn, None))

    def drained(self, conn: Connection, now: float) -> None:
        """Everything written to ``conn`` has reached the kernel."""
        self.now = now
        conn.backlog = False
        conn.pending = 0
        if conn.task is not None and conn.open:
            self.schedule(conn)

    def backlog(self, conn: Connection, pending: int, kernel_unsent: int, now: float) -> None:
        """A write to ``conn`` left ``pending`` bytes with the transport (and the kernel
        holds ``kernel_unsent`` unsent): past the send-queue cap it is reset."""
        self.now = now
        if not conn.open:
            return
        if pending + kernel_unsent > self.config.send_queue_bytes:
            log.warning("%r is not reading; dropping it", conn)
            self.close(conn, "timeout", abort=True)
            return
        if not conn.backlog:
            session = conn.session
            if session is not None and conn.state is ConnState.LIVE \
                    and conn.live_pass < self._passes - 1:
                # Everything up to the previous pass reached the kernel; this one did not.
                session.sent_upto = max(session.sent_upto, self._prev_flushed_seq)
            conn.backlog = True
        conn.pending = pending

    def peer_finished(self, conn: Connection, now: float) -> None:
        """The peer will send no more: answer what it sent, then close (unclean)."""
        self.now = now
        self.close(conn, "disconnected")

    def lost(self, conn: Connection, now: float) -> None:
        """``conn``'s transport is closed (by the peer, an error, or our close/abort)."""
        self.now = now
        if conn.state is ConnState.GONE:
            return
        if conn.open:
            self._remove(conn, "disconnected")
        self._closing.discard(conn)
        conn.out.clear()
        conn.to(ConnState.GONE)

    def budget_refilled(self, conn: Connection, now: float) -> None:
        """A connection paused for its rate reads on (see _decode)."""
        self.now = now
        conn.over_budget = False
        if conn.wants_input:
            self._actions.append((Do.RESUME_READING, conn, None))

    def tick(self, now: float) -> None:
        """The sweep: closes that take too long, then each module's clocks."""
        self.now = now
        self.store.index_some()  # the search index catches up a slice at a time
        self._commit()  # session and room changes not yet carried by a message commit
        for conn in list(self._closing):
            if now - conn.closing_since > CLOSE_GRACE:
                self._closing.discard(conn)
                conn.to(ConnState.GONE)
                self._actions.append((Do.ABORT, conn, None))
        for feature in self._tick_hooks:
            feature.on_tick(now)

    def work(self) -> bool:
        """One turn of heavy work (a replay's next part, a history page), round robin:
        the adapter calls it until it returns False (nothing left) or its slice of time
        is used, so 200 resumes at once cost bystanders a slice, not the sum."""
        ring = self._work
        while ring:
            conn = ring.popleft()
            conn.in_ring = False
            task = conn.task
            if task is None or not conn.open:
                continue
            again = task(conn)
            if conn.task is None:
                if conn.open:
                    self._release_held(conn)
            elif again:
                self.schedule(conn)
            else:  # waiting for its output to reach the kernel
                self._awaiting_drain.append(conn)
            break
        return bool(ring)

    def shutdown(self, reason: str = "shutdown") -> None:
        """Everyone gets ``bye`` and is closed. No ``user_left`` storm, and the sessions
        stay stored: they are held again when the server next starts."""
        bye = ServerBye(reason=reason).encode()
        conns = list(self._conns)
        for conn in conns:
            self.queue(conn, bye)
        for conn in conns:
            session = conn.session
            if session is not None and session.conn is conn:
                self.store.update_session_sent_upto(session.sid, self.sent_upto(conn))
            conn.task = None
            conn.held = None
            conn.to(ConnState.CLOSING)
            conn.closing_since = self.now
            self._closing.add(conn)
            self._actions.append((Do.CLOSE, conn, None))
        self._conns.clear()
        self._replays.clear()
        for feature in self.features:
            if overrides(feature, "on_shutdown"):
                feature.on_shutdown()
        self._commit()

    def abort_closing(self) -> None:
        """Reset every connection still handing over its last bytes."""
        for conn in list(self._closing):
            self._closing.discard(conn)
            conn.to(ConnState.GONE)
            self._actions.append((Do.ABORT, conn, None))

    def hand_over(self, conn: Connection) -> None:
        """A connection that sent nothing yet leaves the core for good (its first line
        made it a file transfer, which the adapter runs): no session, no events."""
        if conn.open:
            self._conns.pop(conn, None)
            conn.out.clear()
            conn.to(ConnState.GONE)

    def feature(self, name: str) -> Feature | None:
        """The negotiated feature module called ``name``, if this server has it."""
        return next((f for f in self.features if f.name == name), None)

    def drop(self, name: str) -> bool:
        """Cut ``name``'s connection as a network failure would; False if not connected."""
        session = self.sessions.named(parse_name(name))
        if session is None or session.conn is None:
            return False
        self.close(session.conn, "disconnected", abort=True)
        return True

    # --- the only way out ----------------------------------------------------------------

    def end_pass(self) -> Pass:
        """Commit the store, then hand over the pass's output (see ``Pass``)."""
        for feature in self._end_pass_hooks:
            feature.on_end_pass()
        self._commit(messages_only=True)  # stored before any copy is sent
        events = self._events
        self._events = []
        if self._posted:
            events.append(("messagesPosted", (self._posted,)))
            self._posted = []
        done = Pass(events, self._dirty, self._awaiting_drain, self._actions)
        self._dirty, self._awaiting_drain, self._actions = [], [], []
        self._passes += 1
        self._prev_flushed_seq, self._flushed_seq = self._flushed_seq, self.store.last_seq
        return done

    # --- what feature modules use (features.base.Core) ----------------------------------

    def queue(self, conn: Connection, data: bytes) -> None:
        out = conn.out
        if not out:
            self._dirty.append(conn)
        out.append(data)

    def fan_out(self, room: Room, data: bytes, sender: Connection | None = None,
                sender_copy: bytes = b"") -> None:
        """Queue ``data`` for everyone live in ``room``; ``sender`` gets ``sender_copy``."""
        dirty = self._dirty
        for conn in room.conns:
            out = conn.out
            if not out:
                dirty.append(conn)
            out.append(sender_copy if conn is sender else data)

    def send_error(self, conn: Connection, code: str, message: str, ref: str | None = None,
                   *, retry_after: int | None = None) -> None:
        """Queue an ``error``; one caused by the frame being handled carries its ``id``."""
        answering, frame_id = self._answering
        self.queue(conn, ErrorFrame(code=code, message=message, ref=ref,
                                    id=frame_id if answering is conn else None,
                                    retry_after=retry_after).encode())

    def emit(self, signal: str, *args: Any) -> None:
        self._events.append((signal, args))

    def close(self, conn: Connection, reason: str, *, abort: bool = False) -> None:
        """End a connection: it leaves its session and rooms now (``reason`` is what
        others hear); what it is owed is still written at the end of the pass, then it
        is closed, unless ``abort`` (reset at once). Calling it twice is harmless."""
        if not conn.open:
            return
        self._remove(conn, reason)
        if abort:
            conn.out.clear()
            conn.to(ConnState.GONE)
            self._actions.append((Do.ABORT, conn, None))
        else:
            conn.to(ConnState.CLOSING)
            conn.closing_since = self.now
            self._closing.add(conn)
            self._actions.append((Do.CLOSE, conn, None))

    def go_live(self, conn: Connection, *, announce: bool) -> None:
        """Registered (or its replay caught up): into its rooms' fan-out."""
        session = conn.session
        assert session is not None
        self._replays.pop(conn, None)
        conn.to(ConnState.LIVE)
        conn.live_pass = self._passes
        self.rooms.went_live(conn, session, announce=announce)
        for feature in self._live_hooks:
            feature.on_live(conn, session)

    def room_joined(self, conn: Connection, session: Session, room: Room) -> None:
        """``joined`` for ``room`` is queued for ``conn``: the modules may follow it."""
        for feature in self._join_hooks:
            feature.on_join(conn, session, room)

    def watch_replay(self, conn: Connection, since: int, messages: Iterator[Message]
                     ) -> Iterator[Message]:
        """``conn``'s replay of ``messages`` (those after ``since``), watched so that a
        message changed while it runs reaches ``conn`` changed (``amend_replay``)."""
        replay = Replay(messages, since)
        self._replays[conn] = replay
        return replay

    def replaying(self) -> list[Connection]:
        """The connections whose replay runs now (not in any fan-out yet)."""
        return [conn for conn in self._replays if conn.open]

    def amend_replay(self, conn: Connection, seq: int, change: Change,
                     data: bytes | None) -> None:
        """Message ``seq`` changed while ``conn``'s replay runs: if the replay already
        handed it out (or ``conn`` had it before), ``data`` (the ``edited``/``deleted``
        frame, None for a client that does not get them) follows it now; if not, its
        replayed copy will carry the change instead. Either way once, in order."""
        replay = self._replays.get(conn)
        if replay is None:
            if data is not None:
                self.queue(conn, data)
            return
        if seq <= replay.upto:
            if data is not None:
                self.queue(conn, data)
        else:
            replay.changes.setdefault(seq, []).append(change)

    def start_task(self, conn: Connection, task: Callable[[Connection], bool]) -> None:
        """Heavy work for ``conn``, run a turn at a time by ``work``: ``task(conn)`` returns
        whether it wants another turn at once, and sets ``conn.task`` to None when done.
        What the client sends meanwhile is held, and applied in order afterwards."""
        conn.task = task
        self.schedule(conn)

    def schedule(self, conn: Connection) -> None:
        if conn.open and not conn.in_ring:
            conn.in_ring = True
            self._work.append(conn)

    def sent_upto(self, conn: Connection) -> int:
        """The seq up to which every message for ``conn``'s session reached the kernel
        (where a resume without ``since`` starts). Worked out when asked, so the
        fan-out pays nothing for it: a live connection that has been through an
        ``end_pass`` since it went live, and has no backlog, has everything up to
        that pass; one with a backlog has what it had before the backlog began."""
        session = conn.session
        assert session is not None
        if conn.state is ConnState.LIVE and not conn.backlog and conn.live_pass < self._passes:
            return max(session.sent_upto, self._flushed_seq)
        return session.sent_upto

    def accept_features(self, asked: list[str] | None) -> list[str] | None:
        """The features of ``register.features`` this server has (None: none asked)."""
        if asked is None:
            return None
        return [name for name in dict.fromkeys(asked) if name in self._offered]

    def posted(self, conn: Connection, session: Session, message: Message,
               client_id: str | None, copies: tuple[bytes | None, bytes | None]) -> None:
        """A message was added to the store this pass, and these bytes queued for it."""
        self._unstored.append((conn, session, message.type, client_id, message.seq, copies))
        if message.to is None:
            self._posted.append(message)

    def commit_now(self) -> bool:
        """Commit the store at once (an edit, a delete: told to others only once stored);
        False if that failed (what was lost is handled as for any failed commit)."""
        self._commit()
        return self._storage_trouble is None

    def statuses(self, conn: Connection, room: Room) -> dict[str, dict[str, str]] | None:
        """``statuses`` for ``registered``/``joined`` in ``room`` (None: not for ``conn``)."""
        for feature in self._status_hooks:
            found = feature.statuses_in(conn, room)
            if found is not None:
                return found
        return None

    def veto_post(self, conn: Connection, session: Session, target: Room | Session,
                  text: str) -> tuple[str, str] | None:
        for feature in self._vetoes:
            refusal = feature.may_post(conn, session, target, text)
            if refusal is not None:
                return refusal
        return None

    # --- reading -------------------------------------------------------------------------

    def _decode(self, conn: Connection, data: bytes, now: float) -> list[Any]:
        """Lines to frames, each line paid for from the connection's rate bucket *before*
        it is parsed. Past the budget, the rest of ``data`` is dropped unparsed, the
        client hears ``rate_limited`` and the adapter stops reading it until the bucket
        holds a frame again (TCP pushes back on a flood meanwhile, and reading it costs
        nothing)."""
        c = self.config
        rate = c.rate_limit
        if not rate:
            return conn.decoder.feed(data)
        tokens = min(c.rate_burst, conn.tokens + (now - conn.tokens_at) * rate)
        conn.tokens_at = now
        items, conn.tokens, dropped = conn.decoder.feed_budgeted(data, tokens)
        if dropped:
            self._rate_limited(conn, dropped, now)
            if not conn.over_budget:
                conn.over_budget = True
                wait = max(MIN_PAUSE, (1.0 - conn.tokens) / rate)
                self._actions.append((Do.PAUSE_READING, conn, now + wait))
        return items

    def _rate_limited(self, conn: Connection, dropped: bytes, now: float) -> None:
        """Tell the client what was dropped. A session that negotiated features gets an
        error for each dropped frame that had an ``id``, carrying it (PROTOCOL-FEATURES
        §0); the rest, and other clients, hear it at most once a second."""
        message = f"Slow down: at most {self.config.rate_limit:g} frames per second."
        anonymous = True
        if conn.features is not None and b'"id"' in dropped:
            anonymous = False
            for line in dropped.split(b"\n"):
                if not line.strip():
                    continue
                frame_id = kind = None
                if b'"id"' in line:
                    try:
                        obj = p.decode_object(line)
                    except p.RemoteProtocolError:
                        obj = {}
                    frame_id, kind = _echoable_id(obj), obj.get("type")
                if frame_id is None:
                    anonymous = True
                    continue
                self.queue(conn, ErrorFrame(code="rate_limited", message=message,
                                            ref=kind[:40], id=frame_id).encode())
        if anonymous and now - conn.rate_error_at >= 1.0:
            conn.rate_error_at = now
            self.send_error(conn, "rate_limited", message)

    def _process(self, conn: Connection, items: list[Any]) -> None:
        """Apply decoded frames (or decoding errors) in order. While heavy work of this
        connection runs (a resume's replay, a page), what it sends waits, in order, so
        others hear from it only once it is back and its answers keep their order."""
        for item in items:
            if (conn.task is not None or conn.held is not None) and not (
                    isinstance(item, p.RemoteProtocolError) and item.fatal):
                if conn.held is None:
                    conn.held = deque()
                conn.held.append(item)
                continue
            self._apply(conn, item)
            if not conn.open:
                return

    def _apply(self, conn: Connection, item: Any) -> None:
        """Handle one decoded frame, or answer one decoding error."""
        if isinstance(item, p.RemoteProtocolError):
            self._refuse(conn, item)
            return
        kind = item.type
        entry = self._table.get(kind)
        feature = entry[0] if entry is not None else None
        if feature is None or (feature.name is not None and not self._accepts(conn, feature)):
            # A frame of a feature this connection did not negotiate: what a server
            # without that feature answers.
            self._queue_error(conn, "unknown_type", f"Unknown frame type {kind!r}.", kind,
                              item.id)
            return
        if conn.session is None and not entry[1]:
            self._queue_error(conn, "not_registered", "Send register first.", kind, item.id)
            return
        # Errors this frame causes echo its ``id`` (PROTOCOL-FEATURES §0, Correlation).
        self._answering = (conn, item.id)
        try:
            feature.handle(conn, item)
        except Exception:  # one bad frame must never strand the ones behind it
            log.exception("error handling %s from %r", kind, conn)
            self.send_error(conn, "bad_frame", "The server could not handle that frame.", kind)
        finally:
            self._answering = (None, None)

    def _refuse(self, conn: Connection, error: p.RemoteProtocolError) -> None:
        code, message, ref = error.code, error.message, error.ref
        entry = self._table.get(ref) if ref is not None else None
        if entry is not None and entry[0].name is not None and not self._accepts(conn, entry[0]):
            code, message = "unknown_type", f"Unknown frame type {ref!r}."
        elif conn.session is None and ref in p.CLIENT_FRAME_TYPES \
                and ref not in self._before_register:
            code, message = "not_registered", "Send register first."
        self._queue_error(conn, code, message, ref, error.frame_id)
        if error.fatal:  # a broken client, not one the host sent away: its session is held
            self.close(conn, "disconnected")

    def _queue_error(self, conn: Connection, code: str, message: str, ref: str | None,
                     frame_id: str | None) -> None:
        self.queue(conn, ErrorFrame(code=code, message=message, ref=ref, id=frame_id).encode())

    @staticmethod
    def _accepts(conn: Connection, feature: Feature) -> bool:
        return conn.features is not None and feature.name in conn.features

    def _release_held(self, conn: Connection) -> None:
        """The work is done: apply what the client sent meanwhile, then read on."""
        held = conn.held
        while held and conn.open and conn.task is None:
            self._apply(conn, held.popleft())
        if not held:
            conn.held = None
        if conn.hold_full and conn.open and conn.task is None:
            conn.hold_full = False
            if conn.wants_input:
                self._actions.append((Do.RESUME_READING, conn, None))

    # --- leaving -------------------------------------------------------------------------

    def _remove(self, conn: Connection, reason: str) -> None:
        """Out of every list, out of its session (others hear ``reason``), the session
        ended or held for its resume."""
        self._conns.pop(conn, None)
        self._replays.pop(conn, None)
        conn.task = None
        conn.held = None
        session = conn.session
        if session is not None and session.conn is conn:
            announce = reason if conn.state is ConnState.LIVE else None
            for feature in self._detach_hooks:
                feature.on_detach(conn, session, announce)
            self.sessions.hold(session, reason)

    # --- storing -------------------------------------------------------------------------

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
        errors: dict[tuple[int, int], tuple[Connection, bytes]] = {}  # in place of a copy
        last: list[tuple[Connection, bytes]] = []  # senders with no copy of their own queued
        for conn, session, kind, client_id, seq, (shared, own) in unstored:
            doomed.update(id(data) for data in (shared, own) if data is not None)
            if client_id is not None and session.client_ids.get(client_id) == seq:
                del session.client_ids[client_id]  # a retry is a new message, not a repeat
            if not conn.open:
                continue
            error = ErrorFrame(code="storage_error",
                               message="The host could not store your message, so nobody got "
                               "it (its disk may be full); try again later.",
                               ref=kind, id=client_id).encode()
            mine = own if own is not None or kind != "broadcast" else shared
            if mine is None:
                last.append((conn, error))
            else:
                errors[(id(conn), id(mine))] = (conn, error)
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
            self.queue(conn, error)
        if self._posted:
            self._posted = [message for message in self._posted if message.seq not in lost]


def _echoable_id(obj: dict[str, Any]) -> str | None:
    """A frame's ``id`` if it may be echoed (a string of at most 64 characters that
    encodes), else None."""
    value = obj.get("id")
    if isinstance(value, str) and len(value) <= p.MAX_ID_CHARS:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value
    return None
