"""Regenerate qtchat's raster icons from resources/qtchat.svg.

Run it after editing the SVG, from the repository root:

    .venv/bin/python resources/make_icons.py

It writes
- ``qtchat/icons/qtchat-{16,32,48,64,128,256,512}.png``: package data, what
  ``qtchat.resources.app_icon()`` loads at run time (windows and tray);
- ``resources/qtchat.ico``: the Windows executable icon for PyInstaller, BMP images
  up to 128 px and a PNG at 256 px, as Windows' own icons are laid out;
- ``resources/qtchat.icns``: the macOS app-bundle icon for PyInstaller, PNG images
  from 16 to 1024 px (the 2x Retina slots included).

Rendering uses Qt's own SVG renderer (``PySide6.QtSvg``, part of PySide6-Essentials),
so the build needs nothing beyond the app's dependencies. The ICO and ICNS files are
written here by hand: both are simple containers of images, which spares the project
a Pillow dependency just for icons.
"""

from __future__ import annotations

import argparse
import logging
import os
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt loads: no display needed

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

log = logging.getLogger("make_icons")

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "qtchat.svg"
PACKAGE_DIR = ROOT / "qtchat" / "icons"
ICO = ROOT / "resources" / "qtchat.ico"
ICNS = ROOT / "resources" / "qtchat.icns"

PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS slot -> pixel size. The "@2x" slots (ic11..ic14, ic10) hold Retina images.
ICNS_SLOTS = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic10", 1024),
    (b"ic11", 32),
    (b"ic12", 64),
    (b"ic13", 256),
    (b"ic14", 512),
)


def png_file_name(size: int) -> str:
    """The package-data file name of the icon at ``size`` px (shared with qtchat.resources)."""
    return f"qtchat-{size}.png"


def render(renderer: QSvgRenderer, size: int) -> QImage:
    """Render the SVG into a transparent ``size`` x ``size`` ARGB32 image."""
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def png_bytes(image: QImage) -> bytes:
    """Encode ``image`` as PNG, best compression."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG", 0):
        raise RuntimeError("Qt could not encode a PNG")
    buffer.close()
    return bytes(data.data())


def bmp_icon_bytes(image: QImage) -> bytes:
    """Encode ``image`` as an ICO-style DIB: BITMAPINFOHEADER, BGRA rows, AND mask.

    In an icon the header's height counts both the colour rows and the 1-bit AND
    mask, so it is twice the image's. Rows run bottom-up. With 32-bit colour the
    alpha channel decides transparency, so the mask is all zeros.
    """
    size = image.width()
    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)  # R, G, B, A on any CPU
    stride = rgba.bytesPerLine()
    pixels = bytes(rgba.constBits())
    rgba_rows = b"".join(pixels[y * stride : y * stride + size * 4] for y in reversed(range(size)))
    rows = bytearray(len(rgba_rows))
    rows[0::4], rows[1::4] = rgba_rows[2::4], rgba_rows[1::4]  # B, G
    rows[2::4], rows[3::4] = rgba_rows[0::4], rgba_rows[3::4]  # R, A
    mask_stride = ((size + 31) // 32) * 4
    mask = bytes(mask_stride * size)
    header = struct.pack(
        "<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, len(rows) + len(mask), 0, 0, 0, 0
    )
    return header + bytes(rows) + mask


def ico_bytes(images: Iterable[tuple[int, bytes]]) -> bytes:
    """Pack (size, image data) pairs into a Windows .ico file."""
    entries = list(images)
    offset = 6 + 16 * len(entries)
    directory = [struct.pack("<HHH", 0, 1, len(entries))]
    blobs = []
    for size, blob in entries:
        side = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        directory.append(struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(blob), offset))
        blobs.append(blob)
        offset += len(blob)
    return b"".join(directory + blobs)


def icns_bytes(images: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Pack (slot type, PNG data) pairs into a macOS .icns file."""
    body = b"".join(slot + struct.pack(">I", 8 + len(blob)) + blob for slot, blob in images)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and say so."""
    path.write_bytes(data)
    log.info("wrote %s (%d bytes)", path.relative_to(ROOT), len(data))


def main(argv: list[str] | None = None) -> int:
    """Render every icon file from the SVG; return the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="make_icons: %(message)s")

    _app = QGuiApplication(sys.argv[:1])  # QPainter on images wants a GUI application
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        log.error("Qt could not read %s", SVG)
        return 1

    cache: dict[int, QImage] = {}

    def image(size: int) -> QImage:
        if size not in cache:
            cache[size] = render(renderer, size)
        return cache[size]

    PACKAGE_DIR.mkdir(exist_ok=True)
    for size in PNG_SIZES:
        write(PACKAGE_DIR / png_file_name(size), png_bytes(image(size)))

    write(
        ICO,
        ico_bytes(
            (size, png_bytes(image(size)) if size >= 256 else bmp_icon_bytes(image(size)))
            for size in ICO_SIZES
        ),
    )
    write(ICNS, icns_bytes((slot, png_bytes(image(size))) for slot, size in ICNS_SLOTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
