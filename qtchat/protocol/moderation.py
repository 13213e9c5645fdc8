"""The frames of a name that stays yours and of moderation (PROTOCOL-FEATURES §1, §4).

Client frames (``set_role``, ``kick``, ``ban``, ``unban``, ``ban_list``, ``mute``,
``unmute``, ``topic``, ``room_mode``, ``release_name``) register into
``CLIENT_FRAME_TYPES``; server frames (``user_role``, ``user_muted``, ``user_unmuted``,
``topic``, ``room_mode``, ``ban_list``) into ``SERVER_FRAME_TYPES`` with their shapes in
``SERVER_FRAME_SHAPES``. Kept in a module of their own so that features adding frames at
the same time do not edit the same lines. The server's module and the client import it
(``qtchat.protocol`` does not: it would be an import cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from qtchat.protocol import (
    MAX_TEXT_CHARS,
    SERVER_FRAME_SHAPES,
    ClientFrame,
    LocalProtocolError,
    _Bad,
    _boolean,
    _check_name,
    _check_optional_str,
    _list_of,
    _name_str,
    _shape,
    _short_str,
    _string,
    dataclass,
    register_client_frames,
)
from qtchat.protocol.server_frames import ServerFrame, server_frame

MAX_REASON_CHARS = 300
MAX_TOPIC_CHARS = 300
MAX_BANS_LISTED = 1_000
MAX_ROLES_LISTED = 10_000
# ``minutes``: up to ten years; 0 (or absent) is until lifted.
MAX_MINUTES = 10 * 366 * 24 * 60


def _check_minutes(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MINUTES:
        raise LocalProtocolError("bad_frame", f"minutes must be 0 to {MAX_MINUTES}")


def _check_optional_room(value: object) -> None:
    if value is not None:
        _check_name(value, room=True)


def _check_optional_bool(value: object, what: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise LocalProtocolError("bad_frame", f"{what} must be true or false")


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRole(ClientFrame):
    type: ClassVar[str] = "set_role"
    _required: ClassVar[tuple[str, ...]] = ("name", "role")
    name: str
    role: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.role not in ("op", "member"):
            raise LocalProtocolError("bad_frame", "role must be 'op' or 'member'")


@dataclass(frozen=True, slots=True, kw_only=True)
class Kick(ClientFrame):
    type: ClassVar[str] = "kick"
    _required: ClassVar[tuple[str, ...]] = ("name",)
    name: str
    room: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_optional_room(self.room)
        _check_optional_str(self.reason, "reason", MAX_REASON_CHARS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ban(ClientFrame):
    type: ClassVar[str] = "ban"
    _required: ClassVar[tuple[str, ...]] = ("name",)
    name: str
    minutes: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_minutes(self.minutes)
        _check_optional_str(self.reason, "reason", MAX_REASON_CHARS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unban(ClientFrame):
    type: ClassVar[str] = "unban"
    _required: ClassVar[tuple[str, ...]] = ("name",)
    name: str

    def __post_init__(self) -> None:
        _check_name(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class BanListRequest(ClientFrame):
    type: ClassVar[str] = "ban_list"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mute(ClientFrame):
    type: ClassVar[str] = "mute"
    _required: ClassVar[tuple[str, ...]] = ("name",)
    name: str
    room: str | None = None
    minutes: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_optional_room(self.room)
        _check_minutes(self.minutes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmute(ClientFrame):
    type: ClassVar[str] = "unmute"
    _required: ClassVar[tuple[str, ...]] = ("name",)
    name: str
    room: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_optional_room(self.room)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTopic(ClientFrame):
    type: ClassVar[str] = "topic"
    _required: ClassVar[tuple[str, ...]] = ("room", "text")
    room: str
    text: str

    def __post_init__(self) -> None:
        _check_name(self.room, room=True)
        if not isinstance(self.text, str):
            raise LocalProtocolError("bad_frame", "text must be a string")


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRoomMode(ClientFrame):
    type: ClassVar[str] = "room_mode"
    _required: ClassVar[tuple[str, ...]] = ("room",)
    room: str
    moderated: bool | None = None
    topic_locked: bool | None = None

    def __post_init__(self) -> None:
        _check_name(self.room, room=True)
        _check_optional_bool(self.moderated, "moderated")
        _check_optional_bool(self.topic_locked, "topic_locked")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseName(ClientFrame):
    type: ClassVar[str] = "release_name"
    _required: ClassVar[tuple[str, ...]] = ("name",)
    name: str

    def __post_init__(self) -> None:
        _check_name(self.name)


MODERATION_CLIENT_FRAMES = (SetRole, Kick, Ban, Unban, BanListRequest, Mute, Unmute, SetTopic,
                            SetRoomMode, ReleaseName)
register_client_frames(*MODERATION_CLIENT_FRAMES)


# --- server frames ---------------------------------------------------------------------


@server_frame
class UserRole(ServerFrame):
    type: ClassVar[str] = "user_role"
    name: str
    role: str
    by: str


@server_frame
class UserMuted(ServerFrame):
    type: ClassVar[str] = "user_muted"
    name: str
    by: str
    room: str | None = None
    until: str | None = None


@server_frame
class UserUnmuted(ServerFrame):
    type: ClassVar[str] = "user_unmuted"
    name: str
    by: str
    room: str | None = None
    # "expired": a timed mute ran out (``by`` is who set it); absent: ``by`` lifted it.
    reason: str | None = None


@server_frame
class TopicFrame(ServerFrame):
    """``topic``: a room's topic ("" when cleared), who set it and when."""

    type: ClassVar[str] = "topic"
    room: str
    text: str
    by: str
    ts: str | None = None


@server_frame
class RoomModeFrame(ServerFrame):
    type: ClassVar[str] = "room_mode"
    room: str
    moderated: bool
    topic_locked: bool
    by: str | None = None


@server_frame
class BanListFrame(ServerFrame):
    type: ClassVar[str] = "ban_list"
    bans: list[dict[str, Any]]
    id: str | None = None


def _role(value: object) -> str:
    if value not in ("owner", "op", "member"):
        raise _Bad("owner, op or member")
    return value  # type: ignore[return-value]


def _roles(value: object) -> dict:
    if not isinstance(value, dict):
        raise _Bad("an object")
    if len(value) > MAX_ROLES_LISTED:
        raise _Bad(f"an object of at most {MAX_ROLES_LISTED:,} names")
    for name, role in value.items():
        try:
            _name_str(name)
            _role(role)
        except _Bad as exc:
            raise exc.inside(str(name)[:64]) from None
    return value


def _topic_text(value: object) -> str:
    return _string(value, MAX_TOPIC_CHARS, empty=True)


def _reason_text(value: object) -> str:
    return _string(value, max(MAX_REASON_CHARS, MAX_TEXT_CHARS), empty=True)


_TOPIC_FIELDS: tuple[dict[str, Callable[[object], object]],
                     dict[str, Callable[[object], object]]] = (
    {"room": _name_str, "text": _topic_text, "by": _name_str}, {"ts": _short_str})
topic_shape = _shape(*_TOPIC_FIELDS)
_BAN = _shape({"name": _name_str}, {"until": _short_str, "by": _name_str, "ts": _short_str,
                                    "reason": _reason_text})

SERVER_FRAME_SHAPES.update({
    "user_role": ({"name": _name_str, "role": _role, "by": _name_str}, {}),
    "user_muted": ({"name": _name_str, "by": _name_str},
                   {"room": _name_str, "until": _short_str}),
    "user_unmuted": ({"name": _name_str, "by": _name_str}, {"room": _name_str}),
    "topic": _TOPIC_FIELDS,
    "room_mode": ({"room": _name_str, "moderated": _boolean, "topic_locked": _boolean},
                  {"by": _name_str}),
    "ban_list": ({"bans": _list_of(_BAN, MAX_BANS_LISTED)}, {"id": _short_str}),
})

# Fields the moderation feature adds to frames of protocol 1 (checked when present).
EXTRA_FIELDS: dict[str, dict[str, Callable[[object], object]]] = {
    "registered": {"identity": _boolean, "roles": _roles, "topic": topic_shape,
                   "role": _role},
    "joined": {"roles": _roles, "topic": topic_shape,
               "mode": _shape({"moderated": _boolean, "topic_locked": _boolean})},
    "left": {"reason": _short_str, "by": _name_str, "text": _reason_text},
    "user_left": {"by": _name_str, "text": _reason_text},
    "bye": {"by": _name_str, "text": _reason_text, "until": _short_str},
    "error": {"until": _short_str},
}
for _kind, _extra in EXTRA_FIELDS.items():
    _required_fields, _optional_fields = SERVER_FRAME_SHAPES[_kind]
    SERVER_FRAME_SHAPES[_kind] = (_required_fields, {**_optional_fields, **_extra})

