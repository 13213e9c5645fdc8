"""Frames of the living room (PROTOCOL-FEATURES.md §5–§8): presence, typing, receipts,
edit and delete, search.

Client frames are ``ClientFrame`` dataclasses that validate when built, registered in
``CLIENT_FRAME_TYPES``; server frames are ``ServerFrame`` classes registered by
``@server_frame``, each with its check shape in ``SERVER_FRAME_SHAPES``. Kept in a module
of their own, so the features added at the same time do not all edit one file. Importing
this module registers them: the server's feature modules and the client's
``qtchat.client.living`` import it (``qtchat.protocol`` does not: no import cycle).

``with`` is a Python keyword: the frames that carry it name the field ``with_`` and
map it on the way in and out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from qtchat import protocol as p
from qtchat.living import PRESENCE_STATES, RECEIPT_STATES, STATUS_TEXT_MAX, TYPING_STATES
from qtchat.protocol import (
    SERVER_FRAME_SHAPES,
    ClientFrame,
    LocalProtocolError,
    _check_int,
    _check_name,
    _check_optional_str,
    _check_str,
    register_client_frames,
)
from qtchat.protocol.server_frames import Message, ServerFrame, server_frame

MAX_QUERY_CHARS = 200
MAX_SEARCH_LIMIT = 50
DEFAULT_SEARCH_LIMIT = 20



def _one_of(value: object, what: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise LocalProtocolError("bad_frame", f"{what} must be one of {', '.join(allowed)}")


def _with_wire(cls: type[ClientFrame], obj: Mapping[str, Any]) -> ClientFrame:
    """``from_wire`` for a frame with a ``with`` field (``with_`` in Python)."""
    fixed = {key: value for key, value in obj.items() if key != "with_"}
    if "with" in obj:
        fixed["with_"] = obj["with"]
    return ClientFrame.from_wire.__func__(cls, fixed)  # type: ignore[attr-defined]


def _with_dict(body: dict[str, Any]) -> dict[str, Any]:
    if "with_" in body:
        body["with"] = body.pop("with_")
    return body


# --- client frames -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Search(ClientFrame):
    """``search``: plain words in the rooms you are in and your own whispers."""

    type: ClassVar[str] = "search"
    _required: ClassVar[tuple[str, ...]] = ("query",)
    query: str
    room: str | None = None
    with_: str | None = None
    before: int | None = None
    limit: int = DEFAULT_SEARCH_LIMIT

    def __post_init__(self) -> None:
        _check_str(self.query, "query", MAX_QUERY_CHARS)
        if not self.query:
            raise LocalProtocolError("bad_frame", "query must be 1 to 200 characters")
        if self.room is not None and self.with_ is not None:
            raise LocalProtocolError("bad_frame", "search takes room or with, not both")
        if self.room is not None:
            _check_name(self.room, room=True)
        if self.with_ is not None:
            _check_name(self.with_)
        if self.before is not None:
            _check_int(self.before, "before", 0)
        _check_int(self.limit, "limit", 1, MAX_SEARCH_LIMIT)

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> ClientFrame:
        return _with_wire(cls, obj)

    def to_dict(self) -> dict[str, Any]:
        return _with_dict(ClientFrame.to_dict(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class Edit(ClientFrame):
    """``edit``: new text for one of your messages, within the host's edit window."""

    type: ClassVar[str] = "edit"
    _required: ClassVar[tuple[str, ...]] = ("seq", "text")
    seq: int
    text: str

    def __post_init__(self) -> None:
        _check_int(self.seq, "seq", 0)
        p.check_text(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(ClientFrame):
    """``delete``: take a message back (its author in the window, or a room's op)."""

    type: ClassVar[str] = "delete"
    _required: ClassVar[tuple[str, ...]] = ("seq",)
    seq: int

    def __post_init__(self) -> None:
        _check_int(self.seq, "seq", 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Typing(ClientFrame):
    """``typing`` in a room (the lobby if neither) or to one person."""

    type: ClassVar[str] = "typing"
    _required: ClassVar[tuple[str, ...]] = ("state",)
    state: str
    room: str | None = None
    to: str | None = None

    def __post_init__(self) -> None:
        _one_of(self.state, "state", TYPING_STATES)
        if self.room is not None and self.to is not None:
            raise LocalProtocolError("bad_frame", "typing takes room or to, not both")
        if self.room is not None:
            _check_name(self.room, room=True)
        if self.to is not None:
            _check_name(self.to)


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(ClientFrame):
    """``status``: online, away or busy, with an optional line of text."""

    type: ClassVar[str] = "status"
    _required: ClassVar[tuple[str, ...]] = ("state",)
    state: str
    text: str | None = None

    def __post_init__(self) -> None:
        _one_of(self.state, "state", PRESENCE_STATES)
        _check_optional_str(self.text, "text", STATUS_TEXT_MAX)
        if self.text is not None and p._CONTROL.search(self.text):
            raise LocalProtocolError("bad_frame", "a status line cannot contain controls")


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt(ClientFrame):
    """``receipt``: their whispers up to ``seq`` reached (or were read by) you."""

    type: ClassVar[str] = "receipt"
    _required: ClassVar[tuple[str, ...]] = ("with", "seq", "state")
    with_: str
    seq: int
    state: str

    def __post_init__(self) -> None:
        _check_name(self.with_)
        _check_int(self.seq, "seq", 0)
        _one_of(self.state, "state", RECEIPT_STATES)

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> ClientFrame:
        return _with_wire(cls, obj)

    def to_dict(self) -> dict[str, Any]:
        return _with_dict(ClientFrame.to_dict(self))


register_client_frames(Search, Edit, Delete, Typing, Status, Receipt)


# --- server frames -------------------------------------------------------------------------


@server_frame
class SearchResults(ServerFrame):
    type: ClassVar[str] = "search_results"
    query: str
    messages: list[Message]
    more: bool
    id: str | None = None

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> SearchResults:
        return cls(query=obj["query"], more=obj["more"], id=obj.get("id"),
                   messages=[Message.from_wire(m) for m in obj["messages"]])


@server_frame
class Edited(ServerFrame):
    type: ClassVar[str] = "edited"
    seq: int
    text: str
    edited_ts: str
    room: str | None = None
    to: str | None = None


@server_frame
class Deleted(ServerFrame):
    type: ClassVar[str] = "deleted"
    seq: int
    by: str
    ts: str
    room: str | None = None
    to: str | None = None


@server_frame
class TypingNotice(ServerFrame):
    """``typing`` as relayed: ``from`` is typing in ``room``, or to you (``to``)."""

    type: ClassVar[str] = "typing"
    sender: str
    state: str
    room: str | None = None
    to: str | None = None


@server_frame
class UserStatus(ServerFrame):
    type: ClassVar[str] = "user_status"
    name: str
    state: str
    text: str = ""


@server_frame
class ReceiptNotice(ServerFrame):
    type: ClassVar[str] = "receipt"
    sender: str
    seq: int
    state: str


def _state(value: object) -> str:
    return p._short_str(value)


_status = p._shape({"state": _state}, {"text": lambda v: p._string(v, STATUS_TEXT_MAX,
                                                                    empty=True)})


def _statuses(value: object) -> dict:
    """``statuses`` {name: {state, text}}: at most one per person listed."""
    if not isinstance(value, dict):
        raise p._Bad("an object")
    if len(value) > p.MAX_MEMBERS_LISTED:
        raise p._Bad(f"an object of at most {p.MAX_MEMBERS_LISTED:,} names")
    for name, status in value.items():
        try:
            p._name_str(name)
            _status(status)
        except p._Bad as exc:
            raise exc.inside(f"[{name[:64]!r}]") from None
    return value


_place = {"room": p._name_str, "to": p._name_str}
SERVER_FRAME_SHAPES.update({
    "search_results": ({"query": lambda v: p._string(v, MAX_QUERY_CHARS),
                        "messages": p._list_of(p._broadcast_or_whisper, MAX_SEARCH_LIMIT),
                        "more": p._boolean}, {"id": p._short_str}),
    "edited": ({"seq": p._seq, "text": p._text, "edited_ts": p._short_str}, _place),
    "deleted": ({"seq": p._seq, "by": p._name_str, "ts": p._short_str}, _place),
    "typing": ({"from": p._name_str, "state": _state}, _place),
    "user_status": ({"name": p._name_str, "state": _state},
                    {"text": lambda v: p._string(v, STATUS_TEXT_MAX, empty=True)}),
    "receipt": ({"from": p._name_str, "seq": p._seq, "state": _state}, {}),
})
# ``registered`` and ``joined`` may carry ``statuses`` (§5).
for _kind in ("registered", "joined"):
    SERVER_FRAME_SHAPES[_kind][1]["statuses"] = _statuses
