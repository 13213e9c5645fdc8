"""The qtchat wire protocol v1, sans I/O.

Bytes go in (``FrameDecoder.feed``), typed frames or protocol errors come out;
``encode`` turns a frame into the bytes of one line. Nothing here touches a
socket, a timer or Qt, so it can be tested byte by byte and fuzzed (the same
shape as h11 and wsproto).

Frames a client sends are frozen, slotted, keyword-only dataclasses whose
constructors validate. Two error types: ``LocalProtocolError`` when *we* build
an invalid frame, ``RemoteProtocolError`` when the *peer* sent one; the second
only ever comes out of the decoder and becomes an ``error`` frame.

Frames the server sends are decoded into plain dicts whose required fields
have been type-checked (``parse_server_frame``): clients must ignore unknown
fields and unknown types for forward compatibility, so a closed set of classes
would only get in the way there.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from qtchat.names import InvalidName, parse_name, parse_room

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 65_536
MAX_TEXT_CHARS = 4_000
MAX_ID_CHARS = 64
MAX_TOKEN_CHARS = 64
MAX_HISTORY_LIMIT = 200
DEFAULT_HISTORY_LIMIT = 50
LOBBY = "lobby"

ERROR_CODES = frozenset(
    {
        "bad_frame",
        "frame_too_large",
        "unknown_type",
        "not_registered",
        "already_registered",
        "invalid_name",
        "invalid_text",
        "no_such_user",
        "no_such_room",
        "not_in_room",
        "wrong_password",
        "rate_limited",
        "protocol_mismatch",
        "server_full",
        "too_many_rooms",  # qtchat's extension: join past the room limits (docs/protocol.md)
        "storage_error",  # qtchat's extension: a message the host could not store (disk full)
        "not_permitted", "no_such_message", "edit_window_expired",  # edit (features §7)
    }
)
LEAVE_REASONS = frozenset({"quit", "left", "disconnected", "timeout", "kicked"})


class ProtocolError(Exception):
    """Base of both protocol errors; carries a protocol error code."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def to_frame(self) -> dict[str, Any]:
        """The ``error`` frame that tells the peer about this error."""
        return error_frame(self.code, self.message, self.ref)


class LocalProtocolError(ProtocolError):
    """We tried to build or send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow.

    ``fatal`` errors (an oversized line) end the connection; the others are
    answered with an ``error`` frame and the connection stays.
    """

    def __init__(self, code: str, message: str, ref: str | None = None, *, fatal: bool = False,
                 frame_id: str | None = None):
        super().__init__(code, message, ref)
        self.fatal = fatal
        self.frame_id = frame_id  # the offending frame's ``id``, echoed (features §0)

    def to_frame(self) -> dict[str, Any]:
        frame = super().to_frame()
        if self.frame_id is not None:
            frame["id"] = self.frame_id
        return frame


# --- field validation ---------------------------------------------------------------


def check_text(text: object) -> str:
    """Message text: 1–4,000 code points, something visible in it, no controls other
    than tab and line breaks, no lone surrogates."""
    if not isinstance(text, str):
        raise LocalProtocolError("bad_frame", "text must be a string")
    if not text or len(text) > MAX_TEXT_CHARS:
        raise LocalProtocolError(
            "invalid_text", f"A message must be 1 to {MAX_TEXT_CHARS:,} characters long."
        )
    # isprintable() is a quick "no controls at all" for most texts (it is False for
    # tab, line breaks and format characters too: then the search decides).
    control = None if text.isprintable() else _CONTROL.search(text)
    if control is not None:
        raise LocalProtocolError(
            "invalid_text", f"A message cannot contain control characters "
            f"(U+{ord(control.group()):04X}); tab and line breaks are fine."
        )
    if _has_lone_surrogate(text):
        raise LocalProtocolError(
            "invalid_text", "The message contains a lone surrogate (broken Unicode)."
        )
    if _VISIBLE.search(text) is None:
        raise LocalProtocolError(
            "invalid_text", "A message cannot be only white space or invisible characters."
        )
    return text


# C0 and C1 controls other than tab, line feed and carriage return (line breaks).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# What takes no room on screen: white space (\s) and controls, every Default_Ignorable
# code point (zero-width space and joiners, bidi controls, soft hyphen, variation
# selectors VS1–VS256, tag characters, Hangul fillers, shorthand format controls,
# musical format controls, the combining grapheme joiner...), the other invisible
# format characters (interlinear annotation, Egyptian hieroglyph format controls) and
# the braille blank. A text of nothing else shows as nothing: ``invalid_text``.
# (The Cf characters that carry a glyph, such as the Arabic number sign, count as
# visible.)
_INVISIBLE_RANGES = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x034F, 0x034F),
    (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFFB), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
_VISIBLE = re.compile("[^\\s" + "".join(
    f"\\U{low:08x}-\\U{high:08x}" for low, high in _INVISIBLE_RANGES) + "]")


def _check_name(value: object, *, room: bool = False) -> str:
    # A name of the wrong JSON type is an ill-typed field (bad_frame), not a bad name.
    if not isinstance(value, str):
        what = "room" if room else "name"
        raise LocalProtocolError("bad_frame", f"a {what} must be a string")
    try:
        (parse_room if room else parse_name)(value)
    except InvalidName as exc:
        raise LocalProtocolError("invalid_name", str(exc)) from None
    return value


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_str(value: object, what: str, max_chars: int) -> None:
    if not isinstance(value, str):
        raise LocalProtocolError("bad_frame", f"{what} must be a string")
    if len(value) > max_chars:
        raise LocalProtocolError("bad_frame", f"{what} can be at most {max_chars} characters")
    # JSON's "\ud800" escape decodes to a lone surrogate, which cannot be encoded back
    # to UTF-8: it would fail later, when the value is echoed or stored.
    if _has_lone_surrogate(value):
        raise LocalProtocolError("bad_frame", f"{what} contains a lone surrogate")


def _check_optional_str(value: object, what: str, max_chars: int) -> None:
    if value is not None:
        _check_str(value, what, max_chars)


MAX_INT = 2**63 - 1  # SQLite's INTEGER: a larger seq could not even be looked up


def _check_int(value: object, what: str, low: int, high: int = MAX_INT) -> None:
    # bool is an int in Python but not in JSON's eyes.
    if not isinstance(value, int) or isinstance(value, bool):
        raise LocalProtocolError("bad_frame", f"{what} must be an integer")
    if not low <= value <= high:
        raise LocalProtocolError("bad_frame", f"{what} must be {low} to {high}")


# --- frames a client sends --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientFrame:
    """Base of the frames a client sends; ``type`` names it on the wire."""

    type: ClassVar[str] = ""
    _required: ClassVar[tuple[str, ...]] = ()
    # Any frame may carry an id: an error it causes echoes it (PROTOCOL-FEATURES.md §0).
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this frame, without fields left at None."""
        body = {"type": self.type}
        body.update((k, v) for k, v in asdict(self).items() if v is not None)
        return body

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> ClientFrame:
        """Build from a decoded JSON object; unknown fields are ignored."""
        for name in cls._required:
            if name not in obj:
                raise LocalProtocolError("bad_frame", f"{cls.type} needs a '{name}' field")
        kwargs = {k: obj[k] for k in _field_names(cls) if k in obj}
        _check_optional_str(kwargs.get("id"), "id", MAX_ID_CHARS)
        return cls(**kwargs)


@functools.cache
def _field_names(cls: type[ClientFrame]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


MAX_FEATURES = 32
MAX_SHORT_NAME_CHARS = 64


def _check_features(value: object) -> None:
    if not isinstance(value, list) or len(value) > MAX_FEATURES:
        raise LocalProtocolError("bad_frame", f"features must be a list of at most {MAX_FEATURES}")
    for item in value:
        _check_str(item, "a feature", MAX_SHORT_NAME_CHARS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Register(ClientFrame):
    type: ClassVar[str] = "register"
    _required: ClassVar[tuple[str, ...]] = ("name", "protocol")
    name: str
    protocol: int = PROTOCOL_VERSION
    password: str | None = None
    resume: str | None = None
    since: int | None = None
    # Negotiated features (PROTOCOL-FEATURES.md): None = a protocol-1 client that asks none.
    features: list[str] | None = None
    # A name that stays yours (PROTOCOL-FEATURES §1): the client's secret for this host,
    # checked by the server (qtchat.server.identity.check_identity). ``admin``: the
    # host's admin secret, for the owner role (§4).
    identity: str | None = None
    admin: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.protocol, "protocol", 0)
        _check_optional_str(self.identity, "identity", 1024)
        _check_optional_str(self.admin, "admin", 1024)
        if self.features is not None:
            _check_features(self.features)
        _check_optional_str(self.password, "password", 1024)
        _check_optional_str(self.resume, "resume", 256)
        if self.since is not None:
            _check_int(self.since, "since", 0)
        # The name last: a client of another protocol version learns that first.
        _check_name(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast(ClientFrame):
    type: ClassVar[str] = "broadcast"
    _required: ClassVar[tuple[str, ...]] = ("text",)
    text: str
    room: str = LOBBY

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)
        _check_name(self.room, room=True)
        check_text(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Whisper(ClientFrame):
    type: ClassVar[str] = "whisper"
    _required: ClassVar[tuple[str, ...]] = ("to", "text")
    to: str
    text: str

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)
        _check_name(self.to)
        check_text(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class _RoomFrame(ClientFrame):
    """A frame that names one room and nothing else."""

    _required: ClassVar[tuple[str, ...]] = ("room",)
    room: str

    def __post_init__(self) -> None:
        _check_name(self.room, room=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Join(_RoomFrame):
    type: ClassVar[str] = "join"


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave(_RoomFrame):
    type: ClassVar[str] = "leave"


@dataclass(frozen=True, slots=True, kw_only=True)
class History(ClientFrame):
    """A page of a room's history, or (``with``, features) of a private conversation."""

    type: ClassVar[str] = "history"
    room: str | None = None
    before: int | None = None
    limit: int = DEFAULT_HISTORY_LIMIT
    with_: str | None = None

    def __post_init__(self) -> None:
        if self.before is not None:
            _check_int(self.before, "before", 0)
        _check_int(self.limit, "limit", 1, MAX_HISTORY_LIMIT)
        if (self.room is None) == (self.with_ is None):
            raise LocalProtocolError("bad_frame", "history needs a 'room' (or a 'with')")
        if self.with_ is not None:
            _check_name(self.with_)
        else:
            _check_name(self.room, room=True)

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> ClientFrame:
        if "with" in obj:
            obj = {**{k: v for k, v in obj.items() if k != "with"}, "with_": obj["with"]}
        return super(History, cls).from_wire(obj)

    def to_dict(self) -> dict[str, Any]:
        body = ClientFrame.to_dict(self)
        if "with_" in body:
            body["with"] = body.pop("with_")
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class _TokenFrame(ClientFrame):
    """A ping or a pong: an optional token and nothing else."""

    token: str | None = None

    def __post_init__(self) -> None:
        _check_optional_str(self.token, "token", MAX_TOKEN_CHARS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(_TokenFrame):
    type: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(_TokenFrame):
    type: ClassVar[str] = "pong"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(ClientFrame):
    type: ClassVar[str] = "bye"


CLIENT_FRAME_TYPES: dict[str, type[ClientFrame]] = {}


def register_client_frames(*classes: type[ClientFrame]) -> None:
    """Make ``parse_client_frame`` know these frames (a feature's module calls it for its
    own, so the protocol grows in one place per feature)."""
    for cls in classes:
        CLIENT_FRAME_TYPES[cls.type] = cls


register_client_frames(Register, Broadcast, Whisper, Join, Leave, History, Ping, Pong, Bye)


# --- decoding ----------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_json_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def decode_object(line: bytes) -> dict[str, Any]:
    """One line's bytes to a JSON object, or RemoteProtocolError ``bad_frame``."""
    try:
        text = line.decode("utf-8")  # strict: no surrogates smuggled in as UTF-8
    except UnicodeDecodeError:
        raise RemoteProtocolError("bad_frame", "The frame is not valid UTF-8.") from None
    try:
        obj = _json_decoder.decode(text)
    except (ValueError, RecursionError):
        raise RemoteProtocolError("bad_frame", "The frame is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("bad_frame", "A frame must be a JSON object.")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RemoteProtocolError("bad_frame", "A frame needs a string 'type'.")
    if _has_lone_surrogate(kind):  # it is echoed in errors: it must encode
        raise RemoteProtocolError("bad_frame", "A frame's 'type' must be valid Unicode.")
    return obj


def parse_client_frame(line: bytes) -> ClientFrame:
    """Decode one line a client sent into a typed, validated frame."""
    obj = decode_object(line)
    kind = obj["type"]
    cls = CLIENT_FRAME_TYPES.get(kind)
    if cls is None:
        raise RemoteProtocolError(
            "unknown_type", f"Unknown frame type {kind[:40]!r}.", ref=kind[:40],
            frame_id=_echoable_id(obj),
        )
    try:
        return cls.from_wire(obj)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(exc.code, exc.message, ref=kind,
                                  frame_id=_echoable_id(obj)) from None
    except TypeError:
        raise RemoteProtocolError("bad_frame", f"Malformed {kind} frame.", ref=kind,
                                  frame_id=_echoable_id(obj)) from None


def _echoable_id(obj: Mapping[str, Any]) -> str | None:
    """A frame's ``id`` if it may be echoed in an error (a valid one), else None."""
    value = obj.get("id")
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS and not _has_lone_surrogate(value):
        return value
    return None


# --- frames a server sends ---------------------------------------------------------------
#
# A client must not trust its host: a hostile one, or anyone in the middle of a plain TCP
# connection, can send anything. Every frame of a known type is checked here for the
# types, ranges and sizes the client relies on, before it acts on any of it; a frame that
# fails is the peer's error (``RemoteProtocolError``), and the client ends the connection.
# Fields nobody reads are left alone (forward compatibility), and so are unknown types.

MAX_SEQ = 2**53 - 1  # exact in every JSON reader (a double); a real host is far below it
MAX_WIRE_NAME_CHARS = 64  # a name or room as shown: 32 after PRECIS, NFKC may add a few
MAX_SESSION_CHARS = 256  # what ``register.resume`` may carry back
MAX_SHORT_CHARS = 64  # codes, reasons, versions, tokens, ids, refs, timestamps
MAX_SERVER_NAME_CHARS = 256
MAX_ERROR_MESSAGE_CHARS = 4_096
MAX_MEMBERS_LISTED = 10_000  # names in one ``users`` list
MAX_ROOMS_LISTED = 10_000  # rooms in ``registered.rooms`` (the server's room limit)
MAX_OWN_ROOMS = 1_000  # rooms in ``registered.in_rooms`` (ten times the per-person limit)
MAX_MESSAGES_LISTED = MAX_HISTORY_LIMIT  # messages in ``joined.history``, ``history.messages``


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Bad(Exception):
    """A field failed its check: ``want`` says what it should be, ``path`` where it is."""

    def __init__(self, want: str, path: str = "") -> None:
        super().__init__(want)
        self.want = want
        self.path = path

    def inside(self, where: str) -> _Bad:
        """The same failure, seen from the object or list that holds it."""
        return _Bad(self.want, where + (self.path if self.path.startswith("[") or not
                                        self.path else "." + self.path))


def _string(value: object, max_chars: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _Bad("a string")
    if len(value) > max_chars or (not value and not empty):
        raise _Bad(f"a string of 1 to {max_chars:,} characters")
    # isascii() is O(1): the scan runs only for text that can hold a surrogate.
    if not value.isascii() and _SURROGATE.search(value):
        raise _Bad("valid Unicode")
    return value


def _name_str(value: object) -> str:
    return _string(value, MAX_WIRE_NAME_CHARS)


def _short_str(value: object) -> str:
    return _string(value, MAX_SHORT_CHARS, empty=True)


def _seq(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise _Bad("a whole number from 0 to 2^53-1")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _list_of(check: Callable[[object], object], max_items: int) -> Callable[[object], list]:
    def checked(value: object) -> list:
        if not isinstance(value, list):
            raise _Bad("a list")
        if len(value) > max_items:
            raise _Bad(f"a list of at most {max_items:,} items")
        for index, item in enumerate(value):
            try:
                check(item)
            except _Bad as exc:
                raise exc.inside(f"[{index}]") from None
        return value

    return checked


def _shape(required: Mapping[str, Callable[[object], object]],
           optional: Mapping[str, Callable[[object], object]] = {},
           ) -> Callable[[object], dict]:
    """A checker for a JSON object: required and optional fields (null = absent)."""

    def checked(value: object) -> dict:
        if not isinstance(value, dict):
            raise _Bad("an object")
        _check_fields(value, required, optional)
        return value

    return checked


def _check_fields(obj: Mapping[str, Any], required: Mapping[str, Callable[[object], object]],
                  optional: Mapping[str, Callable[[object], object]]) -> None:
    for name, check in required.items():
        if name not in obj:
            raise _Bad("present", name)
        try:
            check(obj[name])
        except _Bad as exc:
            raise exc.inside(name) from None
    for name, check in optional.items():
        if obj.get(name) is not None:
            try:
                check(obj[name])
            except _Bad as exc:
                raise exc.inside(name) from None


def _text(value: object) -> str:
    # Bounded by the frame size; the server's own limit may be raised by its host.
    # Empty only for a deleted message's tombstone (features §7).
    return _string(value, MAX_FRAME_BYTES, empty=True)


_MESSAGE_FIELDS = {"seq": _seq, "ts": _short_str, "from": _name_str, "text": _text}
# An edited message carries ``edited`` (when), a deleted one ``deleted`` {by, ts} (§7).
_CHANGES = {"id": _short_str, "edited": _short_str,
            "deleted": lambda v: _shape({"by": _name_str, "ts": _short_str})(v)}
_BROADCAST = ({**_MESSAGE_FIELDS, "room": _name_str}, _CHANGES)
_WHISPER = ({**_MESSAGE_FIELDS, "to": _name_str}, _CHANGES)
_messages = _list_of(_shape(*_BROADCAST), MAX_MESSAGES_LISTED)


def _broadcast_or_whisper(value: object) -> dict:
    """A listed message that may be a whisper (``to``): private pages, search results."""
    if isinstance(value, dict) and "to" in value:
        return _shape(*_WHISPER)(value)
    return _shape(*_BROADCAST)(value)


_any_messages = _list_of(_broadcast_or_whisper, MAX_MESSAGES_LISTED)
_members = _list_of(_name_str, MAX_MEMBERS_LISTED)
_server_info = _shape(
    {},
    {"name": lambda v: _string(v, MAX_SERVER_NAME_CHARS, empty=True), "version": _short_str,
     "tls": _boolean, "host": _name_str, "history": _short_str})
_token = {"token": _short_str}

# type -> (required fields, optional fields), each field with its check.
SERVER_FRAME_SHAPES: dict[str, tuple[dict[str, Callable[[object], object]],
                                     dict[str, Callable[[object], object]]]] = {
    "registered": (
        {"name": _name_str, "session": lambda v: _string(v, MAX_SESSION_CHARS),
         "users": _members, "rooms": _list_of(_name_str, MAX_ROOMS_LISTED),
         "server": _server_info},
        {"in_rooms": _list_of(_name_str, MAX_OWN_ROOMS), "protocol": _seq, "rooms_total": _seq,
         "resumed": _boolean, "gap": _boolean,
         "features": _list_of(_short_str, MAX_FEATURES)}),
    "username_taken": ({"name": _name_str}, {"reason": _short_str}),
    "user_joined": ({"name": _name_str, "room": _name_str}, {}),
    "user_left": ({"name": _name_str, "room": _name_str}, {"reason": _short_str}),
    "joined": ({"room": _name_str, "users": _members, "history": _messages}, {}),
    "left": ({"room": _name_str}, {}),
    "broadcast": _BROADCAST,
    "whisper": _WHISPER,
    # ``room`` for a room's page, ``with`` for a private conversation's (features §6).
    "history": ({"messages": _any_messages}, {"room": _name_str, "with": _name_str,
                                          "read_up_to": _shape({"you": _seq, "them": _seq})}),
    "pong": ({}, _token),
    "ping": ({}, _token),
    "error": ({"code": _short_str,
               "message": lambda v: _string(v, MAX_ERROR_MESSAGE_CHARS, empty=True)},
              {"ref": _short_str, "id": _short_str, "retry_after": _seq}),
    "bye": ({}, {"reason": _short_str}),
}


def parse_server_frame(line: bytes) -> dict[str, Any]:
    """Decode one line a server sent: a dict whose fields the client uses are checked.

    Types, ranges and sizes: ``seq`` a whole number below 2^53, names and rooms of at
    most 64 characters, lists of bounded length, ``server`` an object, messages in a
    list shaped like ``broadcast`` frames; every string valid Unicode. Raises
    ``RemoteProtocolError`` (``bad_frame``, ``ref`` = the frame's type) naming the
    first field that fails. Unknown types are returned as they are (the caller
    ignores them).
    """
    obj = decode_object(line)
    check_server_object(obj)
    return obj


def check_server_object(obj: Mapping[str, Any]) -> None:
    """Check a decoded server frame of a known type against its shape (unknown types
    pass); raise ``RemoteProtocolError`` naming the first field that fails."""
    kind = obj["type"]
    shape = SERVER_FRAME_SHAPES.get(kind)
    if shape is None:
        return
    try:
        _check_fields(obj, *shape)
    except _Bad as exc:
        what = (f"without '{exc.path}'" if exc.want == "present"
                else f"whose '{exc.path}' is not {exc.want}")
        raise RemoteProtocolError("bad_frame", f"a '{kind}' frame {what}", kind) from None


# Blank lines (keep-alives) that cost one frame against a connection's budget: cheap, but
# a flood of them is not free.
BLANK_LINES_PER_FRAME = 64


def _detached(exc: RemoteProtocolError) -> RemoteProtocolError:
    """``exc`` without its traceback and chain, to be handed on as a value.

    A caught exception's traceback holds the frame that keeps it (``feed``'s list of
    items), and through each frame's caller the whole stack above the decoder: every
    bad line made a reference cycle that only the cycle collector frees, holding the
    socket's slot, the loop and, in tests, the test's own frame with its sockets.
    """
    exc.__traceback__ = None
    exc.__cause__ = exc.__context__ = None
    return exc


@dataclass(slots=True)
class FrameDecoder:
    """Splits a byte stream into lines and parses each into a frame.

    ``feed`` takes bytes in any chunking and returns, in order, a frame or a
    ``RemoteProtocolError`` for every complete line, so one bad frame never
    strands the frames behind it. A line longer than ``max_frame`` (counting its
    newline) yields a fatal ``frame_too_large``; after it the decoder is closed
    and ignores input. The unfinished line never holds more than ``max_frame``
    bytes.
    """

    parse: Callable[[bytes], Any] = parse_client_frame
    max_frame: int = MAX_FRAME_BYTES
    _partial: bytearray = field(default_factory=bytearray)
    closed: bool = False

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished line held now."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[Any]:
        if self.closed or not data:
            return []
        limit = self.max_frame - 1  # the newline counts
        partial = self._partial
        if b"\n" not in data:
            # Still inside one line: append (never re-copy what is held, so a line
            # trickled in byte by byte costs linear time), or give up past the cap.
            if len(partial) + len(data) > limit:
                return [self._too_large()]
            partial += data
            return []
        if partial:
            if len(partial) + data.index(b"\n") > limit:
                return [self._too_large()]
            partial += data
            data = bytes(partial)
            partial.clear()
        lines = data.split(b"\n")
        rest = lines.pop()
        out: list[Any] = []
        parse = self.parse
        for line in lines:
            if len(line) > limit:
                out.append(self._too_large())
                return out
            if not line.strip():
                continue  # blank keep-alive lines are harmless
            try:
                out.append(parse(line))
            except RemoteProtocolError as exc:
                out.append(_detached(exc))
        if len(rest) > limit:
            out.append(self._too_large())
        elif rest:
            partial += rest
        return out

    def feed_budgeted(self, data: bytes, budget: float) -> tuple[list[Any], float, bytes]:
        """``feed`` with a cost budget charged *before* parsing: a line costs 1, a blank
        line ``1 / BLANK_LINES_PER_FRAME``. Once the budget cannot pay for the next line,
        every complete line left in ``data`` is dropped unparsed (one ``rfind``, however
        many lines a flood packed in), so a flood costs a bounded share of the server.

        Returns the items, the budget left, and the complete lines dropped (``b""`` if
        none; a server may look for the ``id`` of each). Dropped lines are not checked
        for their length; the unfinished line still is.
        """
        if self.closed or not data:
            return [], budget, b""
        partial = self._partial
        limit = self.max_frame - 1
        if b"\n" not in data:
            return self.feed(data), budget, b""
        if partial:
            if len(partial) + data.index(b"\n") > limit:
                return [self._too_large()], budget, b""
            partial += data
            data = bytes(partial)
            partial.clear()
        out: list[Any] = []
        parse = self.parse
        blank_cost = 1.0 / BLANK_LINES_PER_FRAME
        find = data.find
        pos = 0
        dropped = b""
        while (end := find(b"\n", pos)) >= 0:
            if end - pos > limit:
                out.append(self._too_large())
                return out, budget, dropped
            line = data[pos:end]
            cost = 1.0 if line.strip() else blank_cost
            if budget < cost:
                end = data.rfind(b"\n") + 1
                dropped = data[pos:end]
                pos = end
                break
            budget -= cost
            pos = end + 1
            if cost < 1.0:
                continue  # blank keep-alive lines are harmless
            try:
                out.append(parse(line))
            except RemoteProtocolError as exc:
                out.append(_detached(exc))
        if len(data) - pos > limit:
            out.append(self._too_large())
        elif pos < len(data):
            partial += data[pos:]
        return out, budget, dropped

    def _too_large(self) -> RemoteProtocolError:
        self.closed = True
        self._partial = bytearray()
        return RemoteProtocolError(
            "frame_too_large",
            f"A frame can be at most {self.max_frame:,} bytes.",
            fatal=True,
        )


# --- encoding ----------------------------------------------------------------------------

_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(frame: ClientFrame | Mapping[str, Any]) -> bytes:
    """The bytes of one frame on the wire: compact JSON, UTF-8, then ``\\n``."""
    if isinstance(frame, ClientFrame):
        frame = frame.to_dict()
    data = _json_encoder.encode(frame).encode("utf-8") + b"\n"
    if len(data) > MAX_FRAME_BYTES:
        raise LocalProtocolError("frame_too_large", f"frame of {len(data)} bytes is too large")
    return data


def encoded_size(value: Any) -> int:
    """Bytes ``value`` takes inside an encoded frame (as ``encode`` writes it)."""
    return len(_json_encoder.encode(value).encode("utf-8"))


def error_frame(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    """An ``error`` frame; ``ref`` names the type of the frame that caused it."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return frame


def utc_timestamp(when: datetime | None = None) -> str:
    """UTC, ISO 8601 with milliseconds and ``Z``: the ``ts`` of a message."""
    when = when or datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
