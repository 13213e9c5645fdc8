"""Typed frames a server sends, and ``Message``: one value from the store to the view.

Before this module the server built ``user_joined`` in six places and message frames in
five, as dicts by hand, and the client and the views read them again by key. Now each
server frame is a frozen, slotted dataclass here; the server builds one and encodes it
once (``encode``), the client gets one back from ``read_server_frame`` after the checks of
``SERVER_FRAME_SHAPES`` (a hostile host is refused there, before any field is used).

``Message`` is a ``broadcast`` (with ``room``) or a ``whisper`` (with ``to``): the store
returns it, the server sends it, the client hands it to the models. Its sender is
``sender`` in Python and ``from`` on the wire (``from`` is a keyword).

Each class registers itself under its ``type`` (``SERVER_FRAME_TYPES``) through the
``@server_frame`` decorator, so a feature that adds a frame adds a class and nothing
else. Fields a reader does not know are ignored and unknown types come back as ``None``
(forward compatibility: a newer host may send more than this client knows).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple, TypeVar

from qtchat.protocol import SERVER_FRAME_SHAPES, check_server_object, decode_object, encode

# type -> class; filled by ``@server_frame`` (and by ``Message``, for two types).
SERVER_FRAME_TYPES: dict[str, type[Any]] = {}

# Python field name -> wire name, where they differ.
_WIRE_NAMES = {"sender": "from", "with_": "with"}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _wire_dict(frame: Any, kind: str) -> dict[str, Any]:
    """The JSON object of a frame: its fields in order, without those left at None."""
    body: dict[str, Any] = {"type": kind}
    for name in _field_names(type(frame)):
        value = getattr(frame, name)
        if value is None:
            continue
        if isinstance(value, list) and value and isinstance(value[0], Message):
            value = [m.to_wire() for m in value]
        body[_WIRE_NAMES.get(name, name)] = value
    return body


class Message(NamedTuple):
    """One chat message as stored and as sent: a broadcast in ``room`` or a whisper ``to``.

    ``id`` is the sender's own id for it; the server puts it only on the copy that goes
    back to the sender (the echo), so only ``with_id`` adds it.

    A ``NamedTuple`` rather than a frozen dataclass: just as immutable, and built in a
    fifth of the time (a frozen dataclass sets each field through
    ``object.__setattr__``), which a client reading 20,000 of them in a burst and a
    server building one per message both feel. Build it with keywords.
    """

    seq: int
    ts: str
    sender: str
    text: str
    room: str | None = None
    to: str | None = None
    id: str | None = None
    # A file it carries (PROTOCOL-FEATURES §2, the ``files`` feature): {file, name, size,
    # sha256, mime?, preview?, gone?}.
    file: dict[str, Any] | None = None
    edited: str | None = None  # the last edit's time (features §7)
    deleted: dict[str, str] | None = None  # a tombstone's {by, ts}; its text is ""
    # The end of a chess game it says (features §3): {game, result, reason}.
    game: dict[str, str] | None = None

    @property
    def type(self) -> str:
        return "broadcast" if self.to is None else "whisper"

    @property
    def is_whisper(self) -> bool:
        return self.to is not None

    def to_wire(self) -> dict[str, Any]:
        """The ``broadcast``/``whisper`` frame of this message, as a JSON object."""
        body: dict[str, Any] = {"type": self.type, "seq": self.seq, "ts": self.ts,
                                "from": self.sender}
        if self.to is None:
            body["room"] = self.room
        else:
            body["to"] = self.to
        body["text"] = self.text
        if self.id is not None:
            body["id"] = self.id
        if self.file is not None:
            body["file"] = self.file
        if self.edited is not None:
            body["edited"] = self.edited
        if self.deleted is not None:
            body["deleted"] = self.deleted
        if self.game is not None:
            body["game"] = self.game
        return body

    def encode(self) -> bytes:
        return encode(self.to_wire())

    def with_id(self, client_id: str | None) -> Message:
        """The sender's copy: the same message carrying the sender's ``id``."""
        if client_id is None:
            return self
        return self._replace(id=client_id)

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> Message:
        """From a JSON object already checked against its shape (see ``read_server_frame``).

        A message inside a ``joined``/``history`` list has the shape of a broadcast and no
        ``type``; it is one unless it names a ``to``.
        """
        return cls(seq=obj["seq"], ts=obj["ts"], sender=obj["from"], text=obj["text"],
                   room=obj.get("room") if "to" not in obj else None, to=obj.get("to"),
                   id=obj.get("id"), file=obj.get("file"), edited=obj.get("edited"),
                   deleted=obj.get("deleted"), game=obj.get("game"))


SERVER_FRAME_TYPES["broadcast"] = Message
SERVER_FRAME_TYPES["whisper"] = Message


_T = TypeVar("_T")


def server_frame(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen, slotted dataclass and register it under its ``type``."""
    made = dataclass(frozen=True, slots=True, kw_only=True)(cls)
    SERVER_FRAME_TYPES[made.type] = made  # type: ignore[attr-defined]
    return made


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFrame:
    """Base of the frames a server sends, other than messages; ``type`` names it."""

    type: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        return _wire_dict(self, self.type)

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> ServerFrame:
        """From a JSON object already checked against its shape; unknown fields ignored."""
        return cls(**{name: obj[_WIRE_NAMES.get(name, name)] for name in _field_names(cls)
                      if _WIRE_NAMES.get(name, name) in obj})


@server_frame
class Registered(ServerFrame):
    type: ClassVar[str] = "registered"
    name: str
    session: str
    users: list[str]
    rooms: list[str]
    server: dict[str, Any]
    rooms_total: int | None = None
    in_rooms: list[str] | None = None
    protocol: int | None = None
    resumed: bool | None = None
    gap: bool | None = None
    features: list[str] | None = None
    # Identity and moderation (qtchat/protocol/moderation.py): the name is bound to the
    # client's identity; roles in the lobby other than member; the lobby's topic; yours.
    identity: bool | None = None
    roles: dict[str, str] | None = None
    topic: dict[str, Any] | None = None
    role: str | None = None
    statuses: dict[str, dict[str, str]] | None = None  # presence (features §5)
    # Private conversations that last (§1, qtchat/protocol/conversations.py): {with, last_seq}.
    conversations: list[dict[str, Any]] | None = None
    games: list[dict[str, Any]] | None = None  # chess (features §3): game_started shapes


@server_frame
class UsernameTaken(ServerFrame):
    type: ClassVar[str] = "username_taken"
    name: str
    reason: str | None = None


@server_frame
class UserJoined(ServerFrame):
    type: ClassVar[str] = "user_joined"
    name: str
    room: str


@server_frame
class UserLeft(ServerFrame):
    type: ClassVar[str] = "user_left"
    name: str
    room: str
    reason: str | None = None
    by: str | None = None  # a kick or a ban: who, and why
    text: str | None = None


@server_frame
class Joined(ServerFrame):
    type: ClassVar[str] = "joined"
    room: str
    users: list[str]
    history: list[Message]
    # Moderation: roles other than member, the topic, the mode (when not plain).
    roles: dict[str, str] | None = None
    topic: dict[str, Any] | None = None
    mode: dict[str, bool] | None = None
    statuses: dict[str, dict[str, str]] | None = None  # presence (features §5)
    games: list[dict[str, Any]] | None = None  # chess (features §3): the room's games

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> Joined:
        return cls(room=obj["room"], users=obj["users"],
                   history=[Message.from_wire(m) for m in obj["history"]],
                   roles=obj.get("roles"), topic=obj.get("topic"), mode=obj.get("mode"),
                   statuses=obj.get("statuses"), games=obj.get("games"))


@server_frame
class Left(ServerFrame):
    type: ClassVar[str] = "left"
    room: str
    reason: str | None = None  # "kicked" (moderation), with who and why
    by: str | None = None
    text: str | None = None


@server_frame
class HistoryPage(ServerFrame):
    """``history``: a page of a room's older messages, oldest first; or, with ``with_``
    instead of ``room``, of a private conversation (and ``read_up_to`` {you, them}, how
    far each has read the other's whispers, to a client with receipts)."""

    type: ClassVar[str] = "history"
    room: str | None = None
    messages: list[Message]
    with_: str | None = None
    read_up_to: dict[str, int] | None = None

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> HistoryPage:
        return cls(room=obj.get("room"), messages=[Message.from_wire(m) for m in obj["messages"]],
                   with_=obj.get("with"), read_up_to=obj.get("read_up_to"))


@server_frame
class ServerPing(ServerFrame):
    type: ClassVar[str] = "ping"
    token: str | None = None


@server_frame
class ServerPong(ServerFrame):
    type: ClassVar[str] = "pong"
    token: str | None = None


@server_frame
class ErrorFrame(ServerFrame):
    """``error``: ``ref`` names the type of the frame that caused it, ``id`` its id."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    ref: str | None = None
    id: str | None = None
    # Seconds to wait before trying again (a lockout after too many wrong passwords).
    retry_after: int | None = None
    # ``banned``: when the ban ends (ISO time); null on the wire (None) until lifted.
    until: str | None = None


@server_frame
class ServerBye(ServerFrame):
    type: ClassVar[str] = "bye"
    reason: str | None = None
    by: str | None = None  # a kick or a ban from the server: who, and why
    text: str | None = None
    until: str | None = None  # a ban's end (absent: until lifted)


def read_server_frame(line: bytes) -> ServerFrame | Message | None:
    """Decode and check one line a server sent; None for a type this client does not know.

    Raises ``RemoteProtocolError`` (``bad_frame``, ``ref`` = the frame's type) naming the
    first field that fails its check: types, ranges and sizes, every string valid
    Unicode (see ``SERVER_FRAME_SHAPES``).
    """
    return server_frame_from_wire(decode_object(line))


def server_frame_from_wire(obj: Mapping[str, Any]) -> ServerFrame | Message | None:
    """``read_server_frame`` for an object already decoded from JSON."""
    kind = obj["type"]
    cls = SERVER_FRAME_TYPES.get(kind)
    if cls is None or kind not in SERVER_FRAME_SHAPES:
        return None
    check_server_object(obj)
    return cls.from_wire(obj)

