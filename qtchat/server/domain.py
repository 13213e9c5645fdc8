"""What the server's rules work on: connections (with one explicit state), sessions, rooms.

Plain Python, no Qt and no I/O: ``ServerCore`` and its feature modules share these
objects, and the Qt adapter only ever holds a ``Connection`` to pass back into the core.

A connection's life is one ``ConnState`` with the transitions of ``TRANSITIONS`` and one
method that makes them (``Connection.to``), in place of the flags it used to be
(``removed``, ``live``, ``deleted``, a replay iterator standing for "replaying", a
closing time standing for "closing")::

    NEW ──register──► REGISTERED ──fresh──► LIVE ──bye, drop, timeout…──► CLOSING ──► GONE
                          │                   ▲
                          └─resume─► REPLAYING┘        (any open state may go to CLOSING,
                                                        or straight to GONE on an abort)

Timers that are not states (the rate bucket, the keep-alive ping, heavy work waiting for
its turn) stay fields of the connection, each owned by one rule.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any

from qtchat import protocol as p
from qtchat.names import Name

# Client ids remembered per session for de-duplicating retried sends.
CLIENT_IDS_KEPT = 10_000


class ConnState(enum.Enum):
    NEW = "new"  # connected, not registered: only register, ping, pong, bye count
    REGISTERED = "registered"  # has its session; its ``registered`` is queued
    REPLAYING = "replaying"  # a resume's replay runs: not yet in its rooms' fan-out
    LIVE = "live"  # in its rooms: gets live traffic
    CLOSING = "closing"  # out of every list; its last bytes are leaving
    GONE = "gone"  # its transport is closed (or reset): forgotten


_S = ConnState
TRANSITIONS: dict[ConnState, frozenset[ConnState]] = {
    _S.NEW: frozenset({_S.REGISTERED, _S.CLOSING, _S.GONE}),
    _S.REGISTERED: frozenset({_S.LIVE, _S.REPLAYING, _S.CLOSING, _S.GONE}),
    _S.REPLAYING: frozenset({_S.LIVE, _S.CLOSING, _S.GONE}),
    _S.LIVE: frozenset({_S.CLOSING, _S.GONE}),
    _S.CLOSING: frozenset({_S.GONE}),
    _S.GONE: frozenset(),
}
OPEN = frozenset({_S.NEW, _S.REGISTERED, _S.REPLAYING, _S.LIVE})  # handled, not yet removed


class StateError(RuntimeError):
    """A transition the table does not allow: a bug in the server, never the peer's doing."""


class Connection:
    """One client connection as the rules see it.

    ``handle`` is whatever the adapter gave ``ServerCore.open`` (its transport); the core
    never calls it, and hands it back in ``Pass.dirty`` and the actions. ``out`` is the
    list of encoded frames waiting for the end of the pass: the fan-out appends the very
    same ``bytes`` object to every recipient's list.
    """

    __slots__ = ("backlog", "closing_since", "connected_at", "decoder", "features", "handle",
                 "held", "hold_full", "in_ring", "last_heard", "live_pass", "out",
                 "over_budget", "peer", "pending", "ping_sent_at", "pre_register_bytes",
                 "rate_error_at", "session", "state", "task", "tokens", "tokens_at")

    def __init__(self, handle: Any, peer: str, now: float, *, max_frame: int,
                 burst: float) -> None:
        self.handle = handle
        self.peer = peer
        self.state = ConnState.NEW
        self.decoder = p.FrameDecoder(max_frame=max_frame)
        self.session: Session | None = None
        self.out: list[bytes] = []
        # Negotiated features (PROTOCOL-FEATURES §0): None for a client that asked none.
        self.features: frozenset[str] | None = None
        self.connected_at = now
        self.last_heard = now
        self.ping_sent_at: float | None = None  # the keep-alive rule (features/session.py)
        self.pre_register_bytes = 0
        self.closing_since = 0.0
        # The rate bucket (ServerCore._decode); out of budget: not read until it refills.
        self.tokens = float(burst)
        self.tokens_at = now
        self.rate_error_at = -1e9
        self.over_budget = False
        # Heavy work (a replay turn, a history page) waiting for its turn in the core's
        # round robin; while there is some, what the client sends waits in ``held``.
        self.task: Any = None
        self.in_ring = False
        self.held: deque[Any] | None = None  # made when needed: most never need it
        self.hold_full = False  # too much held: not read until the work is done
        # What the transport could not hand to the kernel at once (reported by the adapter).
        self.backlog = False
        self.pending = 0
        self.live_pass = 0  # ServerCore's pass count when it went live (see sent_upto)

    def to(self, state: ConnState) -> None:
        """The one way a connection changes state (see ``TRANSITIONS``)."""
        if state not in TRANSITIONS[self.state]:
            raise StateError(f"{self!r}: {self.state.value} -> {state.value} is not allowed")
        self.state = state

    @property
    def open(self) -> bool:
        """Still handled: not closing, not gone."""
        return self.state in OPEN

    @property
    def wants_input(self) -> bool:
        """Whether the adapter should read from it now."""
        return self.state in OPEN and not self.over_budget and not self.hold_full

    def __repr__(self) -> str:
        who = self.session.name.display if self.session else "unregistered"
        return f"<connection {self.peer} {who}>"


class Room:
    """A room: who is in it now (live connections, in join order)."""

    __slots__ = ("conns", "display", "key", "members", "names")

    def __init__(self, name: Name) -> None:
        self.key = name.folded
        self.display = name.display
        self.names = name.keys  # what another room's name must not look like
        self.conns: dict[Connection, None] = {}
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
        self.conn: Connection | None = None
        self.held_until: float | None = None
        self.client_ids: dict[str, int] = {}
        # Nothing older than start_seq is replayed on a resume: it was never missed.
        self.start_seq = start_seq
        # Every message up to this seq reached the OS on the last connection: where a
        # resume without ``since`` starts (see ServerCore.sent_upto).
        self.sent_upto = start_seq

    def remember_client_id(self, client_id: str, seq: int) -> None:
        ids = self.client_ids
        ids[client_id] = seq
        if len(ids) > 2 * CLIENT_IDS_KEPT:  # keep the newest, amortised
            for old in list(ids)[:-CLIENT_IDS_KEPT]:
                del ids[old]
