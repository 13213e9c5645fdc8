"""Pictures from peers (qtchat.gui.picture): caps before decoding, previews, save names.

The pictures are made here, byte by byte where it matters (a PNG that declares
30,000 × 30,000 pixels in a few hundred bytes), and decoded by the real Qt
image plugins on the loader's own threads.
"""

from __future__ import annotations

import base64
import os
import random
import resource
import stat
import struct
import zlib

import pytest
from PySide6.QtCore import QBuffer, QIODevice
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter

from qtchat.gui import picture
from qtchat.gui.picture import (
    DAMAGED,
    NOT_A_PICTURE,
    PREVIEW_MAX_CHARS,
    TOO_LARGE,
    PictureLoader,
    decode_picture,
    is_executable,
    make_preview,
    preview_picture,
    safe_save_name,
)

WAIT_MS = 10_000


def png_bytes(width: int, height: int, rows: bytes) -> bytes:
    """A PNG made by hand: 8-bit RGB, with ``rows`` (filter bytes included) as its data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def bomb() -> bytes:
    """30,000 × 30,000 RGB declared (2.7 GB decoded), a few rows of data: under 2 KB."""
    row = b"\0" + b"\0" * (30_000 * 3)
    data = png_bytes(30_000, 30_000, row * 8)
    assert len(data) < 2048
    return data


def encoded(image: QImage, fmt: str, quality: int = -1) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    assert image.save(buffer, fmt, quality)
    return bytes(buffer.data().data())


def noise(width: int, height: int, seed: int = 7) -> QImage:
    """A picture that compresses badly (the worst case for the preview's size)."""
    rng = random.Random(seed)
    raw = bytes(rng.getrandbits(8) for _ in range(width * height * 4))
    image = QImage(raw, width, height, width * 4, QImage.Format.Format_RGB32)
    return image.copy()


def screenshot_like(width: int, height: int) -> QImage:
    image = QImage(width, height, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.fillRect(10, 10, width // 2, height // 3, QColor("steelblue"))
    painter.end()
    return image


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def test_a_decompression_bomb_is_too_large_to_show_without_memory_jumping(qtbot):
    loader = PictureLoader()
    data = bomb()
    with qtbot.waitSignal(loader.loaded, timeout=WAIT_MS):  # warm the plugins and threads
        loader.load("warm-up", encoded(screenshot_like(40, 30), "PNG"))
    before = resident_bytes()
    with qtbot.waitSignal(loader.loaded, timeout=WAIT_MS) as shown:
        loader.load("bomb", data)
    grown = resident_bytes() - before
    key, result = shown.args
    assert key == "bomb"
    assert result.image is None and result.error == "picture too large to show"
    assert (result.width, result.height) == (30_000, 30_000)
    assert grown < 50 * 1024 * 1024, f"memory grew by {grown / 2**20:.0f} MB"
    # Directly, and as a preview a peer sent: the same answer.
    assert decode_picture(data).error == TOO_LARGE
    sent = {"mime": "image/png", "width": 320, "height": 320,
            "data": base64.b64encode(data).decode()}
    assert preview_picture(sent).error == TOO_LARGE
    assert resident_bytes() - before < 50 * 1024 * 1024
    loader.wait()


def test_a_picture_is_decoded_off_the_gui_thread_and_delivered_in_it(qtbot, tmp_path):
    loader = PictureLoader()
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(screenshot_like(1200, 900), "JPEG", 90))
    with qtbot.waitSignal(loader.loaded, timeout=WAIT_MS) as shown:
        loader.load(("file", 1), path, max_side=400)
    key, result = shown.args
    assert key == ("file", 1) and result.error is None
    assert (result.width, result.height) == (1200, 900)  # what the header declared
    assert (result.image.width(), result.image.height()) == (400, 300)
    loader.wait()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
       b'<rect width="100" height="100" fill="red"/></svg>')


def test_svg_is_never_decoded_even_when_named_like_a_png(qtbot, tmp_path):
    assert b"svg" in [bytes(f) for f in QImageReader.supportedImageFormats()]  # Qt could
    assert decode_picture(SVG).error == NOT_A_PICTURE
    disguised = tmp_path / "cat.png"
    disguised.write_bytes(SVG)
    assert decode_picture(disguised).error == NOT_A_PICTURE


@pytest.mark.parametrize(("label", "data", "error"), [
    ("empty", b"", NOT_A_PICTURE),
    ("text", b"hello, this is not a picture", NOT_A_PICTURE),
    ("png signature only", b"\x89PNG\r\n\x1a\n", DAMAGED),
    ("png with zero width", png_bytes(0, 10, b""), DAMAGED),
    ("png with damaged data", png_bytes(20, 20, b"\x07" * 10), DAMAGED),
])
def test_what_is_not_a_picture_says_so(qtbot, label, data, error):
    result = decode_picture(data)
    assert result.image is None and result.error == error


def test_the_allocation_limit_is_set_once_for_the_process(qtbot):
    picture.ensure_allocation_limit()
    assert QImageReader.allocationLimit() == picture.ALLOCATION_LIMIT_MB
    picture.ensure_allocation_limit(1)  # a second call does not move the process-wide limit
    assert QImageReader.allocationLimit() == picture.ALLOCATION_LIMIT_MB


def test_a_preview_of_a_screenshot_is_a_small_png(qtbot, tmp_path):
    path = tmp_path / "shot.png"
    path.write_bytes(encoded(screenshot_like(1920, 1080), "PNG"))
    preview = make_preview(path)
    assert preview["mime"] == "image/png"
    assert (preview["width"], preview["height"]) == (320, 180)
    assert len(preview["data"]) <= PREVIEW_MAX_CHARS
    shown = preview_picture(preview)
    assert shown.error is None and shown.image.width() == 320


def test_a_preview_of_a_noisy_photo_fits_the_limit_as_jpeg(qtbot):
    preview = make_preview(encoded(noise(1000, 800), "PNG"))
    assert preview["mime"] == "image/jpeg"
    assert max(preview["width"], preview["height"]) <= 320
    assert len(preview["data"]) <= PREVIEW_MAX_CHARS
    assert preview_picture(preview).error is None


def test_a_preview_is_never_made_from_what_is_not_a_picture(qtbot):
    assert make_preview(SVG) is None
    assert make_preview(b"PK\x03\x04 a zip file") is None
    assert make_preview(bomb()) is None


@pytest.mark.parametrize(("label", "preview", "error"), [
    ("not a dict", "hello", NOT_A_PICTURE),
    ("svg mime", {"mime": "image/svg+xml", "data": base64.b64encode(SVG).decode()},
     NOT_A_PICTURE),
    ("too long", {"mime": "image/png", "data": "A" * (PREVIEW_MAX_CHARS + 4)}, NOT_A_PICTURE),
    ("not base64", {"mime": "image/png", "data": "!!!!"}, DAMAGED),
    ("jpeg sent as png", {"mime": "image/png", "data": None}, NOT_A_PICTURE),
])
def test_a_preview_from_a_peer_is_held_to_the_contract(qtbot, label, preview, error):
    if label == "jpeg sent as png":
        preview["data"] = base64.b64encode(encoded(screenshot_like(50, 50), "JPEG")).decode()
    assert preview_picture(preview).error == error


def test_a_preview_wider_than_320_pixels_is_refused(qtbot):
    wide = {"mime": "image/png", "data": base64.b64encode(
        encoded(screenshot_like(400, 10), "PNG")).decode()}
    assert preview_picture(wide).error == TOO_LARGE


SAVE_NAMES = [
    ("../../etc/passwd", "passwd"),
    ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
    ("con", "_con"),
    ("CON.txt", "_CON.txt"),
    ("nul", "_nul"),
    ("com1.log", "_com1.log"),
    ("lpt9", "_lpt9"),
    ("report.txt. . .", "report.txt"),
    ("trailing space ", "trailing space"),
    ("..", "download"),
    (".", "download"),
    (".bashrc", "bashrc"),
    ("a\0b.txt", "ab.txt"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),
    ('what?<>:"|*.txt', "what_______.txt"),
    ("line\nbreak.txt", "linebreak.txt"),
    ("", "download"),
    ("console.txt", "console.txt"),
    ("ファイル.txt", "ファイル.txt"),
]


@pytest.mark.parametrize(("sent", "saved"), SAVE_NAMES)
def test_save_names_are_sanitised_for_every_system(sent, saved):
    assert safe_save_name(sent) == saved


def test_a_long_save_name_keeps_its_extension_within_255_bytes():
    name = "é" * 300 + ".jpeg"
    saved = safe_save_name(name)
    assert saved.endswith(".jpeg") and len(saved.encode()) <= 255
    assert len(safe_save_name("x" * 1000).encode()) <= 255


@pytest.mark.parametrize(("name", "executable"), [
    ("setup.exe", True), ("SETUP.EXE", True), ("holiday.jpg.exe", True), ("run.sh", True),
    ("tool.AppImage", True), ("script.ps1", True), ("photo.jpg", False), ("notes.txt", False),
    ("archive.exe.zip", False), ("evil.bat.", True), ("README", False),
])
def test_executables_are_known_by_extension(tmp_path, name, executable):
    assert is_executable(tmp_path / name) is executable


def test_executables_are_known_by_their_execute_bit(tmp_path):
    path = tmp_path / "program"
    path.write_bytes(b"\x7fELF")
    assert not is_executable(path)
    os.chmod(path, path.stat().st_mode | stat.S_IXUSR)
    assert is_executable(path)
