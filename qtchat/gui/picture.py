"""Pictures from peers, decoded safely off the GUI thread; previews and save names for files.

A picture is untrusted input: a 4 KB PNG can declare 30,000 × 30,000 pixels and
ask the decoder for 3.6 GB. So every decode here reads the header first
(``QImageReader.size()`` does not decode), refuses more than ``MAX_PIXELS`` before
a single pixel is allocated, and runs under ``QImageReader.setAllocationLimit``
as a second fence (that limit is process-wide: it is set once, by
``ensure_allocation_limit``). Only raster formats that chat clients send are
decoded (PNG, JPEG, GIF, WebP, BMP); never SVG, whose renderer would fetch and
lay out whatever the file says. ``PictureLoader`` runs the decodes on a thread
pool of its own and hands back a ``QImage`` (thread-safe to make off the GUI
thread, unlike ``QPixmap``).

``make_preview`` builds the small preview a ``file_offer`` carries (§2: at most
320 px, PNG or JPEG, base64 of at most 49,152 characters); ``preview_picture``
decodes one received from a peer, with the same caps tightened to those limits.

``safe_save_name`` and ``is_executable`` are for *Save as…* and the warning
before opening a received file: the host checks names, but the receiving side
sanitises again, because a name made for one system can mean something else on
another (``con``, ``name.txt.`` on Windows).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QIODevice,
    QObject,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter

log = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000  # 160 MB at 32 bits per pixel: the largest photos cameras make
ALLOCATION_LIMIT_MB = 256  # QImageReader's own fence, for anything the pixel count misses
DECODED_FORMATS = frozenset({b"png", b"jpeg", b"jpg", b"gif", b"webp", b"bmp"})
PREVIEW_SIDE = 320
PREVIEW_MAX_CHARS = 49_152
PREVIEW_MIMES = {"image/png": b"png", "image/jpeg": b"jpeg"}

TOO_LARGE = "picture too large to show"
NOT_A_PICTURE = "not a picture this app shows"
DAMAGED = "the picture could not be read"

_allocation_limit_set = False


def ensure_allocation_limit(megabytes: int = ALLOCATION_LIMIT_MB) -> None:
    """Set QImageReader's process-wide allocation limit, once (later calls do nothing)."""
    global _allocation_limit_set
    if not _allocation_limit_set:
        QImageReader.setAllocationLimit(megabytes)
        _allocation_limit_set = True


@dataclass(frozen=True, slots=True)
class Picture:
    """A decode's outcome: ``image`` (None when refused), the size the header
    declared, and ``error``: a sentence to show instead of the picture."""

    image: QImage | None
    width: int = 0
    height: int = 0
    error: str | None = None
    format: str = ""


def _reader(source: bytes | QByteArray | str | Path) -> tuple[QImageReader, QBuffer | None]:
    if isinstance(source, (str, Path)):
        reader = QImageReader(str(source))
        buffer = None
    else:
        buffer = QBuffer()
        buffer.setData(QByteArray(source))
        buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        reader = QImageReader(buffer)
    reader.setDecideFormatFromContent(True)  # the content decides, never the file's name
    return reader, buffer


def decode_picture(source: bytes | QByteArray | str | Path, *, max_side: int | None = None,
                   max_pixels: int = MAX_PIXELS,
                   formats: frozenset[bytes] = DECODED_FORMATS) -> Picture:
    """Decode ``source`` (bytes or a path) under the caps; safe on any thread.

    ``max_side`` scales the result to fit in a square of that side (never up),
    decoding straight at that size where the format allows it (JPEG).
    """
    ensure_allocation_limit()
    reader, buffer = _reader(source)
    try:
        kind = bytes(reader.format().data()).lower()
        if kind not in formats:
            return Picture(None, error=NOT_A_PICTURE, format=kind.decode(errors="replace"))
        declared = reader.size()  # from the header: nothing decoded yet
        width, height = declared.width(), declared.height()
        if width <= 0 or height <= 0:
            return Picture(None, error=DAMAGED, format=kind.decode())
        if width * height > max_pixels:
            return Picture(None, width, height, TOO_LARGE, kind.decode())
        if max_side is not None and max(width, height) > max_side:
            scaled = declared.scaled(QSize(max_side, max_side),
                                     Qt.AspectRatioMode.KeepAspectRatio)
            reader.setScaledSize(QSize(max(1, scaled.width()), max(1, scaled.height())))
        reader.setAutoTransform(True)  # EXIF orientation, as cameras mean it
        image = reader.read()
        if image.isNull():
            log.info("picture not decoded: %s", reader.errorString())
            return Picture(None, width, height, DAMAGED, kind.decode())
        return Picture(image, width, height, None, kind.decode())
    finally:
        if buffer is not None:
            buffer.close()


def _encode(image: QImage, fmt: str, quality: int = -1) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, fmt, quality)
    data = bytes(buffer.data().data())
    buffer.close()
    return data


def make_preview(source: bytes | str | Path) -> dict | None:
    """The ``preview`` of a ``file_offer`` for a picture, or None if it is not one.

    PNG when it fits in ``PREVIEW_MAX_CHARS`` of base64 (sharp for screenshots),
    else JPEG at falling quality, then smaller, over white where it had alpha.
    """
    picture = decode_picture(source, max_side=PREVIEW_SIDE)
    if picture.image is None:
        return None
    image = picture.image
    if max(image.width(), image.height()) > PREVIEW_SIDE:  # formats that ignore scaled size
        image = image.scaled(PREVIEW_SIDE, PREVIEW_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    encoded = base64.b64encode(_encode(image, "PNG")).decode("ascii")
    mime = "image/png"
    if len(encoded) > PREVIEW_MAX_CHARS:
        flat = QImage(image.size(), QImage.Format.Format_RGB32)
        flat.fill(QColor("white"))
        painter = QPainter(flat)
        painter.drawImage(0, 0, image)
        painter.end()
        mime = "image/jpeg"
        while True:
            for quality in (85, 70, 55, 40):
                encoded = base64.b64encode(_encode(flat, "JPEG", quality)).decode("ascii")
                if len(encoded) <= PREVIEW_MAX_CHARS:
                    break
            if len(encoded) <= PREVIEW_MAX_CHARS or min(flat.width(), flat.height()) < 16:
                break
            flat = flat.scaled(flat.width() * 3 // 4, flat.height() * 3 // 4,
                               Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
        image = flat
        if len(encoded) > PREVIEW_MAX_CHARS:
            return None
    return {"mime": mime, "width": image.width(), "height": image.height(), "data": encoded}


def preview_picture(preview: object) -> Picture:
    """Decode a ``preview`` a peer sent, holding it to what §2 allows."""
    if not isinstance(preview, dict):
        return Picture(None, error=NOT_A_PICTURE)
    mime, data = preview.get("mime"), preview.get("data")
    if mime not in PREVIEW_MIMES or not isinstance(data, str) or len(data) > PREVIEW_MAX_CHARS:
        return Picture(None, error=NOT_A_PICTURE)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return Picture(None, error=DAMAGED)
    picture = decode_picture(raw, max_pixels=PREVIEW_SIDE * PREVIEW_SIDE,
                             formats=frozenset({PREVIEW_MIMES[mime]}))
    if picture.image is not None and max(picture.width, picture.height) > PREVIEW_SIDE:
        return Picture(None, picture.width, picture.height, TOO_LARGE, picture.format)
    return picture


class _DecodeJob(QRunnable):
    def __init__(self, relay: _Relay, key: object, source, max_side: int | None,
                 decode=None) -> None:
        super().__init__()
        self._relay, self._key, self._source, self._max_side = relay, key, source, max_side
        self._decode = decode

    def run(self) -> None:
        try:
            if self._decode is not None:
                picture = self._decode(self._source)
            else:
                picture = decode_picture(self._source, max_side=self._max_side)
        except Exception:  # a decoder bug must not kill the pool's thread silently
            log.exception("decoding a picture failed")
            picture = Picture(None, error=DAMAGED)
        # Queued to the GUI thread; RuntimeError: the loader was deleted meanwhile.
        with contextlib.suppress(RuntimeError):
            self._relay.done.emit(self._key, picture)


class _Relay(QObject):
    done = Signal(object, object)


class PictureLoader(QObject):
    """Decodes pictures on a thread pool of its own and reports in the GUI thread.

    Signals:
        loaded(key: object, picture: Picture): the outcome of ``load(key, …)``;
            ``picture.error`` is the sentence to show when there is no image.
    """

    loaded = Signal(object, object)

    def __init__(self, parent: QObject | None = None, *, threads: int = 2) -> None:
        super().__init__(parent)
        ensure_allocation_limit()  # once, from the GUI thread, before any job runs
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)

    def load(self, key: object, source: bytes | str | Path, *,
             max_side: int | None = None) -> None:
        """Decode ``source`` off the GUI thread; ``loaded(key, picture)`` follows."""
        self._pool.start(_DecodeJob(self._relay, key, source, max_side))

    def load_preview(self, key: object, preview: object) -> None:
        """Decode a ``preview`` a peer sent (``preview_picture``'s caps) off the GUI
        thread; ``loaded(key, picture)`` follows."""
        self._pool.start(_DecodeJob(self._relay, key, preview, None, preview_picture))

    def wait(self, msecs: int = -1) -> bool:
        """Block until every job is done (closing, tests)."""
        return self._pool.waitForDone(msecs)

    @Slot(object, object)
    def _on_done(self, key: object, picture: Picture) -> None:
        self.loaded.emit(key, picture)


# --------------------------------------------------------------- receiving side

_WINDOWS_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)",
                               re.IGNORECASE)
_FORBIDDEN = set('<>:"/\\|?*')
_MAX_BYTES = 255

EXECUTABLE_EXTENSIONS = frozenset((
    "exe", "com", "bat", "cmd", "msi", "msp", "msc", "scr", "pif", "cpl", "dll", "sys", "ocx",
    "hta", "jar", "js", "jse", "vbs", "vbe", "wsf", "wsh", "ps1", "psm1", "psd1", "reg", "lnk",
    "url", "inf", "gadget", "application", "appref-ms", "sh", "bash", "zsh", "csh", "ksh", "fish",
    "command", "tool", "run", "bin", "app", "appimage", "apk", "deb", "rpm", "pkg", "dmg",
    "desktop", "py", "pyw", "pyz", "pl", "rb", "php", "elf", "out", "so", "dylib", "xbap", "iso",
    "img", "vhd", "vhdx", "scpt", "workflow", "action",
))


def safe_save_name(name: str, fallback: str = "download") -> str:
    """A file name that is safe to offer in *Save as…* on any system.

    Keeps only the last path component, drops controls and format characters
    (bidirectional overrides), replaces characters Windows forbids, strips
    trailing dots and spaces and leading dots (no hidden files, no ``..``),
    defuses Windows device names (``con``, ``nul.txt``, ``COM1``) and keeps the
    name within 255 bytes of UTF-8 with its extension.
    """
    name = unicodedata.normalize("NFC", str(name))
    name = re.split(r"[/\\]", name)[-1]
    name = "".join("_" if c in _FORBIDDEN else c for c in name
                   if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    name = name.strip().rstrip(". ").lstrip(". ")
    if not name:
        return fallback
    stem, dot, extension = name.partition(".")
    if _WINDOWS_RESERVED.fullmatch(stem.rstrip(" ")):
        name = "_" + name
    while len(name.encode("utf-8")) > _MAX_BYTES:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension.encode()) <= 16 and stem:
            name = stem[:-1].rstrip(". ") + "." + extension
        else:
            name = name[:-1]
    return name or fallback


def is_executable(path: str | Path) -> bool:
    """Whether opening ``path`` could run code: by its extension (the last one, which
    is what systems go by: ``a.pdf.exe``) or, for a file that exists, its execute bit."""
    name = Path(path).name.lower().rstrip(". ")
    _stem, dot, extension = name.rpartition(".")
    if dot and extension.strip() in EXECUTABLE_EXTENSIONS:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
