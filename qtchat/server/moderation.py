"""Moderation's rules (PROTOCOL-FEATURES.md §4): roles, who may do what, bans, mutes,
room modes and topics.

Plain Python with the time passed in as ``now`` (wall-clock seconds, ``time.time()``:
bans and mutes outlive the process and their ``until`` goes on the wire as an ISO
time). The feature module asks these tables and turns their answers into frames;
each table gives its state as rows (``to_records``) for the store and is rebuilt
from them (``from_records``).

Who a person is comes in three parts, because a ban or a mute must catch all of
them: the identity (hash of the ``register.identity`` secret, None without one), the
address (``identity.address_of(peer)``; a ban holds it only against clients without an
identity, see ``Ban``) and the name, whose confusable keys (``Name.keys``) catch
``Bob``, ``bob`` and ``ВОВ`` alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from qtchat.names import InvalidName, Name, parse_name
from qtchat.protocol import LocalProtocolError, check_text, utc_timestamp

OWNER = "owner"
OP = "op"
MEMBER = "member"
ROLES = (OWNER, OP, MEMBER)
NOT_PERMITTED = "not_permitted"

MAX_TOPIC_CHARS = 300
MAX_MINUTES = 10 * 366 * 24 * 60  # ten years: longer is "until lifted" (0)


# --- who may do what: the one table ------------------------------------------------------

_STAFF = frozenset({OWNER, OP})
_OWNER_ONLY = frozenset({OWNER})
_EVERYONE = frozenset(ROLES)


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may do an action. ``on_person``: it acts on someone, so the target rules
    hold (nobody acts on the owner, an op not on another op). ``unless``: the room mode
    that narrows it to ops and the owner (``moderated``, ``topic_locked``)."""

    who: frozenset[str]
    on_person: bool = False
    unless: str | None = None


RULES: dict[str, Rule] = {
    "kick": Rule(_STAFF, on_person=True),
    "ban": Rule(_STAFF, on_person=True),
    "unban": Rule(_STAFF),
    "ban_list": Rule(_STAFF),
    "mute": Rule(_STAFF, on_person=True),
    "unmute": Rule(_STAFF, on_person=True),
    "room_mode": Rule(_STAFF),
    "set_role": Rule(_OWNER_ONLY, on_person=True),
    "release_name": Rule(_OWNER_ONLY),
    # §7: an op or the owner may delete anyone's room message, whatever the window.
    "delete_others": Rule(_STAFF),
    "topic": Rule(_EVERYONE, unless="topic_locked"),
    # Posting in a room (the veto a moderated room puts on broadcasts).
    "speak": Rule(_EVERYONE, unless="moderated"),
}


def check(actor_role: str, action: str, target_role: str | None = None, *,
          mode: RoomMode | None = None) -> str | None:
    """None if ``actor_role`` may do ``action`` (to someone of ``target_role``, in a
    room of ``mode``), else the error code (``not_permitted``).

    Raises KeyError for an action not in RULES: that is a bug in the caller, not
    something a peer can cause.
    """
    rule = RULES[action]
    if actor_role not in rule.who:
        return NOT_PERMITTED
    if rule.unless is not None and mode is not None and getattr(mode, rule.unless) \
            and actor_role not in _STAFF:
        return NOT_PERMITTED
    if rule.on_person and target_role is not None:
        if target_role == OWNER:
            return NOT_PERMITTED  # the owner cannot be removed, silenced or demoted
        if target_role == OP and actor_role != OWNER:
            return NOT_PERMITTED  # an op cannot act on another op (nor on itself)
    return None


class Roles:
    """Ops, kept by identity hash (§4). The owner is a session that registered with
    the admin secret, not an identity: ``role_of`` is told whether it is one. A person
    without an identity has nothing to keep a role by: the feature module answers
    ``set_role`` for them with ``not_permitted``."""

    def __init__(self) -> None:
        self._ops: set[str] = set()

    def role_of(self, identity: str | None, *, owner: bool = False) -> str:
        if owner:
            return OWNER
        return OP if identity is not None and identity in self._ops else MEMBER

    def set_role(self, identity: str, role: str) -> bool:
        """Make ``identity`` an op or a member; True if that changed anything."""
        if role not in (OP, MEMBER):
            raise ValueError(f"set_role grants op or member, not {role!r}")
        before = identity in self._ops
        if role == OP:
            self._ops.add(identity)
        else:
            self._ops.discard(identity)
        return before != (role == OP)

    def ops(self) -> frozenset[str]:
        return frozenset(self._ops)

    def to_records(self) -> list[tuple[str, str]]:
        """Rows ``(identity hash, role)``."""
        return [(identity, OP) for identity in sorted(self._ops)]

    @classmethod
    def from_records(cls, rows: Iterable[tuple[str, str]]) -> Roles:
        table = cls()
        for identity, role in rows:
            if role == OP:
                table._ops.add(identity)
        return table


# --- time ------------------------------------------------------------------------------


def until_from_minutes(minutes: int | None, now: float) -> float | None:
    """When something given for ``minutes`` ends; None (0 or absent) is until lifted."""
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, int) \
            or not 0 <= minutes <= MAX_MINUTES:
        raise LocalProtocolError("bad_frame", f"minutes must be 0 to {MAX_MINUTES}")
    return None if minutes == 0 else now + minutes * 60.0


def iso_time(when: float | None) -> str | None:
    """A wall-clock time as the wire shows it (``until``, ``ts``); None stays None."""
    return None if when is None else utc_timestamp(datetime.fromtimestamp(when, UTC))


def _keys_of(display: str) -> tuple[str, ...]:
    """The confusable keys of a stored name; () if it no longer passes the rules
    (a record from before a rule was tightened still holds by identity and address)."""
    try:
        return parse_name(display).keys
    except InvalidName:
        return ()


# --- bans -----------------------------------------------------------------------------------


class _Held:
    """What a ban and a mute share: the look-alike keys of the name, and an end."""

    __slots__ = ()
    name: str
    until: float | None
    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = _keys_of(self.name)

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


@dataclass(slots=True)
class Ban(_Held):
    """One ban: it refuses its identity and its name's look-alikes everywhere, and its
    address to clients without an identity.

    The address is narrow on purpose: on a LAN many people share one (a NAT, a guest
    network, one machine with several accounts), and a ban of one of them must not shut
    out a neighbour. A client with an identity is known by it, so an address says
    nothing more about them; a client without one has only its address and name, so
    the address is what stops the banned person from coming back under another name.
    What it does not stop: the banned person making a new identity and a new name (an
    identity costs nothing to make) - the price of not banning the neighbours."""

    name: str  # as shown when banned
    identity: str | None
    address: str | None
    until: float | None  # None: until lifted
    by: str
    reason: str | None
    ts: float
    keys: tuple[str, ...] = field(default=(), compare=False)

    def catches(self, identity: str | None, address: str | None, name: Name | None) -> bool:
        """Whether a registration with this identity (None: none), address and name is
        refused: the same identity, a look-alike name, or - only without an identity -
        the same address."""
        return ((identity is not None and identity == self.identity)
                or (identity is None and address is not None and address == self.address)
                or (name is not None and not set(name.keys).isdisjoint(self.keys)))

    def to_wire(self) -> dict[str, Any]:
        """An entry of ``ban_list.bans``: who, until when, by whom, why (never the
        address or the identity: ops see names, not where people sit)."""
        entry: dict[str, Any] = {"name": self.name, "until": iso_time(self.until),
                                 "by": self.by, "ts": iso_time(self.ts)}
        if self.reason:
            entry["reason"] = self.reason
        return entry


class BanList:
    """The host's bans (§4)."""

    def __init__(self) -> None:
        self._bans: list[Ban] = []

    def __len__(self) -> int:
        return len(self._bans)

    def add(self, name: Name, *, identity: str | None, address: str | None,
            minutes: int | None, by: str, reason: str | None, now: float) -> Ban:
        """Ban ``name`` (its look-alikes), ``identity`` (the one bound to the name when
        its holder is away) and ``address`` (None when they are away). A ban of the
        same name replaces the earlier one: banning again sets a new time."""
        self.lift(name)
        ban = Ban(name.display, identity, address, until_from_minutes(minutes, now), by,
                  reason or None, now, name.keys)
        self._bans.append(ban)
        return ban

    def match(self, *, identity: str | None, address: str | None, name: Name | None,
              now: float) -> Ban | None:
        """The ban that refuses this registration, if any (the one that ends last).
        The caller never asks for a registration with the right admin secret."""
        found = [b for b in self._bans if b.active(now) and b.catches(identity, address, name)]
        if not found:
            return None
        return max(found, key=lambda b: float("inf") if b.until is None else b.until)

    def lift(self, name: Name) -> list[Ban]:
        """``unban``: remove the bans of ``name`` and its look-alikes."""
        keys = set(name.keys)
        lifted = [b for b in self._bans if not keys.isdisjoint(b.keys)]
        self._bans = [b for b in self._bans if keys.isdisjoint(b.keys)]
        return lifted

    def expire(self, now: float) -> list[Ban]:
        """Remove and return the bans whose time is up."""
        gone = [b for b in self._bans if not b.active(now)]
        if gone:
            self._bans = [b for b in self._bans if b.active(now)]
        return gone

    def listed(self, now: float) -> list[dict[str, Any]]:
        """``ban_list.bans``: the bans in force, oldest first."""
        return [b.to_wire() for b in self._bans if b.active(now)]

    def to_records(self) -> list[tuple[str, str | None, str | None, float | None, str,
                                       str | None, float]]:
        """Rows ``(name, identity, address, until, by, reason, ts)``."""
        return [(b.name, b.identity, b.address, b.until, b.by, b.reason, b.ts)
                for b in self._bans]

    @classmethod
    def from_records(cls, rows: Iterable[tuple[Any, ...]]) -> BanList:
        table = cls()
        table._bans = [Ban(*row) for row in rows]
        return table


# --- mutes ----------------------------------------------------------------------------


@dataclass(slots=True)
class Mute(_Held):
    """One mute. ``room`` is the room's folded name (its key); None is server-wide."""

    name: str
    identity: str | None
    room: str | None
    until: float | None
    by: str
    ts: float
    keys: tuple[str, ...] = field(default=(), compare=False)

    def covers(self, identity: str | None, name: Name) -> bool:
        return ((identity is not None and identity == self.identity)
                or not set(name.keys).isdisjoint(self.keys))


class Mutes:
    """Mutes (§4), kept by identity and name skeleton, so reconnecting or coming back
    under a look-alike name does not lift them. A room mute covers that room's
    broadcasts; a server mute covers every broadcast and every whisper."""

    def __init__(self) -> None:
        self._mutes: list[Mute] = []

    def __len__(self) -> int:
        return len(self._mutes)

    def add(self, name: Name, *, identity: str | None, room: str | None,
            minutes: int | None, by: str, now: float) -> Mute:
        """Mute ``name`` in ``room`` (None: everywhere); muting again sets a new time."""
        self.remove(name, identity=identity, room=room)
        mute = Mute(name.display, identity, room, until_from_minutes(minutes, now), by, now,
                    name.keys)
        self._mutes.append(mute)
        return mute

    def remove(self, name: Name, *, identity: str | None, room: str | None) -> list[Mute]:
        """``unmute``: lift the mutes of this person in exactly that scope."""
        gone = [m for m in self._mutes if m.room == room and m.covers(identity, name)]
        if gone:
            self._mutes = [m for m in self._mutes if m not in gone]
        return gone

    def muted(self, *, identity: str | None, name: Name, room: str | None,
              now: float) -> Mute | None:
        """The mute that silences this person, if any: for a broadcast in ``room``
        (its key) a mute of that room or a server mute; for a whisper (``room`` None)
        a server mute only."""
        for mute in self._mutes:
            if (mute.active(now) and (mute.room is None or mute.room == room)
                    and mute.covers(identity, name)):
                return mute
        return None

    def expire(self, now: float) -> list[Mute]:
        """Remove and return the mutes whose time is up (the module says
        ``user_unmuted`` for them if it likes)."""
        gone = [m for m in self._mutes if not m.active(now)]
        if gone:
            self._mutes = [m for m in self._mutes if m.active(now)]
        return gone

    def to_records(self) -> list[tuple[str, str | None, str | None, float | None, str,
                                       float]]:
        """Rows ``(name, identity, room key, until, by, ts)``."""
        return [(m.name, m.identity, m.room, m.until, m.by, m.ts) for m in self._mutes]

    @classmethod
    def from_records(cls, rows: Iterable[tuple[Any, ...]]) -> Mutes:
        table = cls()
        table._mutes = [Mute(*row) for row in rows]
        return table


def speech_refusal(role: str, *, mutes: Mutes, identity: str | None, name: Name,
                   room: str | None, mode: RoomMode | None, now: float) -> str | None:
    """The posting veto, in one place: None if this person may post a broadcast in
    ``room`` (its key; None for a whisper, ``mode`` then None), else the error code —
    ``muted`` for a mute that covers it, ``not_permitted`` for a member in a moderated
    room. The owner is never muted (§4), even by a mute on a look-alike of their name."""
    if role != OWNER and mutes.muted(identity=identity, name=name, room=room, now=now):
        return "muted"
    if room is not None:
        return check(role, "speak", mode=mode)
    return None


# --- room modes and topics ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomMode:
    """``moderated``: only ops and the owner speak. ``topic_locked``: only they set
    the topic."""

    moderated: bool = False
    topic_locked: bool = False


@dataclass(frozen=True, slots=True)
class Topic:
    text: str
    by: str
    ts: float

    def to_wire(self, room: str) -> dict[str, Any]:
        """The ``topic`` frame's fields (``room`` as shown)."""
        return {"room": room, "text": self.text, "by": self.by, "ts": iso_time(self.ts)}


def check_topic(text: object) -> str:
    """A topic: 0–300 characters (empty clears it), otherwise what a message may hold
    (``check_text``: no control characters but tab and line breaks, no lone
    surrogates, not only invisible characters). Raises LocalProtocolError
    (``bad_frame`` for a non-string, ``invalid_text`` otherwise)."""
    if not isinstance(text, str):
        raise LocalProtocolError("bad_frame", "text must be a string")
    if text == "":
        return text
    if len(text) > MAX_TOPIC_CHARS:
        raise LocalProtocolError(
            "invalid_text", f"A topic can be at most {MAX_TOPIC_CHARS} characters long.")
    try:
        return check_text(text)
    except LocalProtocolError as exc:
        # check_text speaks of "a message"; say "topic" so the sentence fits.
        raise LocalProtocolError(exc.code, exc.message.replace("A message", "A topic")
                                 .replace("The message", "The topic")) from None


class RoomModes:
    """Each room's mode and topic, by the room's folded name (its key). Rooms never
    set keep the defaults and no rows."""

    def __init__(self) -> None:
        self._modes: dict[str, RoomMode] = {}
        self._topics: dict[str, Topic] = {}

    def mode(self, room: str) -> RoomMode:
        return self._modes.get(room, RoomMode())

    def set_mode(self, room: str, *, moderated: bool | None = None,
                 topic_locked: bool | None = None) -> RoomMode:
        """Change what is given (``room_mode`` fields are optional); return the mode."""
        old = self.mode(room)
        new = RoomMode(old.moderated if moderated is None else moderated,
                       old.topic_locked if topic_locked is None else topic_locked)
        if new == RoomMode():
            self._modes.pop(room, None)
        else:
            self._modes[room] = new
        return new

    def topic(self, room: str) -> Topic | None:
        return self._topics.get(room)

    def set_topic(self, room: str, text: str, *, by: str, now: float) -> Topic:
        """Set (or with "" clear) the topic; the text is checked here too, so a stored
        topic is always one a client may show."""
        topic = Topic(check_topic(text), by, now)
        self._topics[room] = topic
        return topic

    def to_records(self) -> list[tuple[str, bool, bool, str | None, str | None,
                                       float | None]]:
        """Rows ``(room key, moderated, topic_locked, topic text, topic by, topic ts)``."""
        rows = []
        for room in sorted(self._modes.keys() | self._topics.keys()):
            mode, topic = self.mode(room), self._topics.get(room)
            rows.append((room, mode.moderated, mode.topic_locked,
                         topic.text if topic else None, topic.by if topic else None,
                         topic.ts if topic else None))
        return rows

    @classmethod
    def from_records(cls, rows: Iterable[tuple[Any, ...]]) -> RoomModes:
        table = cls()
        for room, moderated, locked, text, by, ts in rows:
            table.set_mode(room, moderated=bool(moderated), topic_locked=bool(locked))
            if text is not None:
                table._topics[room] = Topic(text, by or "", float(ts or 0.0))
        return table
