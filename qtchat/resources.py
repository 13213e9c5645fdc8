"""qtchat's icon: one ``QIcon`` for every window and the tray.

The icon's PNG sizes ship as package data in ``qtchat/icons/`` (declared in
pyproject's ``[tool.setuptools.package-data]``), rendered from
``resources/qtchat.svg`` by ``resources/make_icons.py``.

Why package data and not a compiled Qt resource module (``pyside6-rcc``):
- the PNGs are the files themselves, reviewable in a diff and usable as they are
  by a Linux packager (hicolor icons next to ``resources/qtchat.desktop``); a
  ``*_rc.py`` module is a generated blob of bytes that must be regenerated and
  committed in step with the images;
- the same files serve a source checkout, an editable install, a wheel and the
  PyInstaller bundle, where ``qtchat.spec`` lists them as data tuples like every
  other data file (the house style asks for explicit tuples anyway);
- ``QIcon.addFile`` reads a file only when that size is first drawn, so start-up
  pays for a path join, not for decoding seven images, and needs no image plugin:
  PNG support is built into QtGui, so the bundle can drop ``imageformats/``.

Set the icon once on the application, before the first window is shown; every
top-level window without its own icon then uses it::

    app = QApplication(sys.argv)
    install_app_icon(app)
    tray = QSystemTrayIcon(app_icon(), parent)
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication, QIcon

log = logging.getLogger(__name__)

ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
# Base name of resources/qtchat.desktop once installed. On Wayland the compositor
# takes a window's icon from the matching .desktop file, not from the window.
DESKTOP_FILE_NAME = "qtchat"


def icon_file(size: int) -> Path:
    """Path of the packaged PNG icon that is ``size`` pixels square."""
    # The package always lives in a directory (source tree, site-packages, or the
    # bundle's _internal/), so the Traversable is a real file-system path Qt can open.
    return Path(str(files("qtchat").joinpath("icons", f"qtchat-{size}.png")))


def app_icon() -> QIcon:
    """The qtchat icon, with every packaged size for Qt to pick from."""
    icon = QIcon()
    for size in ICON_SIZES:
        path = icon_file(size)
        if path.is_file():
            icon.addFile(str(path), QSize(size, size))
        else:
            log.warning("icon file missing: %s", path)
    return icon


def install_app_icon(app: QGuiApplication) -> QIcon:
    """Make the qtchat icon the default of every window of ``app``; return it.

    Also names the app's .desktop file, which Wayland compositors (and the X11 task
    managers that look) use to match windows with their launcher and its icon.
    """
    icon = app_icon()
    app.setWindowIcon(icon)
    app.setDesktopFileName(DESKTOP_FILE_NAME)
    return icon
