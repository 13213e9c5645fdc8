"""The frames of files and pictures (PROTOCOL-FEATURES §2), registered into the shared tables.

Chat frames: ``file_offer`` → ``file_accepted``, ``file_get`` → ``file_ticket``, and the
``file`` object a ``broadcast`` or ``whisper`` carries once an upload is in. Transfer
frames: the first line of an ``upload`` or ``download`` connection (``Upload``,
``Download``; never valid on a chat connection, so they are not registered as client
frames) and the server's one-line answers before and after the raw bytes
(``upload_ready``, ``upload_done``, ``download_ready``).

Kept in a module of its own so that features adding frames at once do not collide; importing
it registers everything (the server's files module and the client's session import it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from qtchat.protocol import (
    MAX_ID_CHARS,
    MAX_SEQ,
    SERVER_FRAME_SHAPES,
    ClientFrame,
    LocalProtocolError,
    _Bad,
    _check_int,
    _check_optional_str,
    _check_str,
    _seq,
    _shape,
    _short_str,
    _string,
    check_text,
    register_client_frames,
)
from qtchat.protocol.server_frames import ServerFrame, server_frame

FEATURE = "files"
MAX_FILE_NAME_CHARS = 255
MAX_MIME_CHARS = 255
MAX_PREVIEW_SIDE = 320
MAX_PREVIEW_CHARS = 49_152
PREVIEW_MIMES = ("image/png", "image/jpeg")
MAX_TRANSFER_TOKEN_CHARS = 128
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def check_preview(value: object) -> dict[str, Any]:
    """A ``preview`` object as §2 allows it, else ``_Bad`` (used by both sides)."""
    if not isinstance(value, dict):
        raise _Bad("an object")
    if value.get("mime") not in PREVIEW_MIMES:
        raise _Bad("image/png or image/jpeg", "mime")
    for side in ("width", "height"):
        size = value.get(side)
        if not isinstance(size, int) or isinstance(size, bool) \
                or not 1 <= size <= MAX_PREVIEW_SIDE:
            raise _Bad(f"a whole number from 1 to {MAX_PREVIEW_SIDE}", side)
    data = value.get("data")
    if not isinstance(data, str) or not 1 <= len(data) <= MAX_PREVIEW_CHARS \
            or not _BASE64.fullmatch(data):
        raise _Bad(f"base64 text of at most {MAX_PREVIEW_CHARS:,} characters", "data")
    return {"mime": value["mime"], "width": value["width"], "height": value["height"],
            "data": data}


# --- client frames ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOffer(ClientFrame):
    """``file_offer``: the file's name, size and hash, and where it goes (``room`` or
    ``to``; neither: the lobby). The file name is checked by the host's ``check_name``
    (``invalid_name``), not here, so that it has its own error code."""

    type: ClassVar[str] = "file_offer"
    _required: ClassVar[tuple[str, ...]] = ("id", "name", "size", "sha256")
    name: str
    size: int
    sha256: str
    mime: str | None = None
    room: str | None = None
    to: str | None = None
    text: str | None = None
    preview: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_str(self.id, "id", MAX_ID_CHARS)
        _check_str(self.name, "name", 4 * MAX_FILE_NAME_CHARS)  # invalid_name past 255
        _check_int(self.size, "size", 0)
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise LocalProtocolError("bad_frame", "sha256 must be 64 hex digits")
        _check_optional_str(self.mime, "mime", MAX_MIME_CHARS)
        _check_optional_str(self.room, "room", 256)
        _check_optional_str(self.to, "to", 256)
        if self.room is not None and self.to is not None:
            raise LocalProtocolError("bad_frame", "a file goes to a room or to a person, "
                                                  "not both")
        if self.text is not None:
            check_text(self.text)
        if self.preview is not None:
            try:
                check_preview(self.preview)
            except _Bad as exc:
                raise LocalProtocolError("bad_frame", f"preview.{exc.path} must be {exc.want}"
                                         ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class FileGet(ClientFrame):
    """``file_get``: a ticket to download ``file``."""

    type: ClassVar[str] = "file_get"
    _required: ClassVar[tuple[str, ...]] = ("file",)
    file: str

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)
        _check_str(self.file, "file", 64)


register_client_frames(FileOffer, FileGet)


# The first line of a transfer connection (not a chat frame: see the module docstring).

@dataclass(frozen=True, slots=True, kw_only=True)
class Upload(ClientFrame):
    type: ClassVar[str] = "upload"
    _required: ClassVar[tuple[str, ...]] = ("token",)
    token: str

    def __post_init__(self) -> None:
        _check_str(self.token, "token", MAX_TRANSFER_TOKEN_CHARS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Download(ClientFrame):
    type: ClassVar[str] = "download"
    _required: ClassVar[tuple[str, ...]] = ("token",)
    token: str
    offset: int = 0

    def __post_init__(self) -> None:
        _check_str(self.token, "token", MAX_TRANSFER_TOKEN_CHARS)
        _check_int(self.offset, "offset", 0)


TRANSFER_FRAME_TYPES: dict[str, type[ClientFrame]] = {Upload.type: Upload,
                                                      Download.type: Download}


# --- server frames ---------------------------------------------------------------------


@server_frame
class FileAccepted(ServerFrame):
    type: ClassVar[str] = "file_accepted"
    id: str
    file: str
    token: str
    offset: int


@server_frame
class FileTicket(ServerFrame):
    type: ClassVar[str] = "file_ticket"
    file: str
    token: str
    size: int
    sha256: str
    id: str | None = None


@server_frame
class UploadReady(ServerFrame):
    type: ClassVar[str] = "upload_ready"
    offset: int


@server_frame
class UploadDone(ServerFrame):
    type: ClassVar[str] = "upload_done"
    file: str
    seq: int


@server_frame
class DownloadReady(ServerFrame):
    type: ClassVar[str] = "download_ready"
    size: int
    offset: int


def _file_id(value: object) -> str:
    text = _string(value, 64)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise _Bad("a file id of letters, digits, - and _")
    return text


def _sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise _Bad("64 hex digits")
    return value


def _token(value: object) -> str:
    return _string(value, MAX_TRANSFER_TOKEN_CHARS)


def _size(value: object) -> int:
    return _seq(value)


def _gone(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


# The ``file`` of a broadcast or whisper.
check_file_info = _shape(
    {"file": _file_id, "name": lambda v: _string(v, MAX_FILE_NAME_CHARS), "size": _size,
     "sha256": _sha256},
    {"mime": lambda v: _string(v, MAX_MIME_CHARS, empty=True), "preview": check_preview,
     "gone": _gone})

SERVER_FRAME_SHAPES.update({
    "file_accepted": ({"id": _short_str, "file": _file_id, "token": _token, "offset": _size},
                      {}),
    "file_ticket": ({"file": _file_id, "token": _token, "size": _size, "sha256": _sha256},
                    {"id": _short_str}),
    "upload_ready": ({"offset": _size}, {}),
    "upload_done": ({"file": _file_id, "seq": _seq}, {}),
    "download_ready": ({"size": _size, "offset": _size}, {}),
})
# Messages (live, and inside joined/history lists, which share these dicts) may carry a file.
for _kind in ("broadcast", "whisper"):
    SERVER_FRAME_SHAPES[_kind][1]["file"] = check_file_info

assert MAX_SEQ >= 2**40  # a file size fits a seq's check
