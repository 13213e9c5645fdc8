"""The app's colours: follow the system, light, or dark (a QPalette, no style sheets).

Everything qtchat paints takes its colours from the palette (the message delegate
reads Base, Text, Highlight and Link and picks its name colours by the lightness
of Base), so a theme is a palette set on the application; widgets get a
PaletteChange event and the message view lays its rows out again.

"Follow the system" uses the platform's colour scheme where Qt knows it
(``QStyleHints.colorScheme``, Qt 6.5+) and the style's standard palette
otherwise. Light is the Fusion style's standard palette, the same everywhere.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

THEMES = ("system", "light", "dark")
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}


def dark_palette() -> QPalette:
    """A dark grey palette with contrast ≥ 4.5:1 for text and disabled text ≥ 3:1."""
    palette = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    colours = {
        role.Window: QColor(0x2B, 0x2B, 0x2E),
        role.WindowText: QColor(0xE6, 0xE6, 0xE6),
        role.Base: QColor(0x1F, 0x1F, 0x22),
        role.AlternateBase: QColor(0x2A, 0x2A, 0x2E),
        role.ToolTipBase: QColor(0x3A, 0x3A, 0x3F),
        role.ToolTipText: QColor(0xF0, 0xF0, 0xF0),
        role.PlaceholderText: QColor(0x9A, 0x9A, 0xA0),
        role.Text: QColor(0xE6, 0xE6, 0xE6),
        role.Button: QColor(0x35, 0x35, 0x3A),
        role.ButtonText: QColor(0xE6, 0xE6, 0xE6),
        role.BrightText: QColor(0xFF, 0x6B, 0x6B),
        role.Light: QColor(0x4A, 0x4A, 0x50),
        role.Midlight: QColor(0x3E, 0x3E, 0x44),
        role.Mid: QColor(0x5A, 0x5A, 0x60),
        role.Dark: QColor(0x18, 0x18, 0x1A),
        role.Shadow: QColor(0x0E, 0x0E, 0x10),
        role.Highlight: QColor(0x2F, 0x6B, 0xC4),
        role.HighlightedText: QColor(0xFF, 0xFF, 0xFF),
        role.Link: QColor(0x6C, 0xA8, 0xFF),
        role.LinkVisited: QColor(0xB3, 0x8C, 0xFF),
    }
    for which, colour in colours.items():
        palette.setColor(which, colour)
    for which in (role.Text, role.WindowText, role.ButtonText):
        palette.setColor(group.Disabled, which, QColor(0x80, 0x80, 0x86))
    palette.setColor(group.Disabled, role.Highlight, QColor(0x50, 0x50, 0x56))
    return palette


def light_palette() -> QPalette:
    fusion = QStyleFactory.create("Fusion")
    return fusion.standardPalette() if fusion is not None else QPalette()


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return scheme is not None and scheme() == Qt.ColorScheme.Dark


def palette_for(theme: str) -> QPalette:
    """The palette of a theme name (an unknown name follows the system)."""
    if theme == "dark" or (theme not in ("light", "dark") and system_is_dark()):
        return dark_palette()
    if theme == "light":
        return light_palette()
    app = QApplication.instance()
    style = app.style() if isinstance(app, QApplication) else None
    return style.standardPalette() if style is not None else light_palette()


def apply_theme(theme: str, app: QApplication | None = None) -> None:
    """Set the theme's palette on the whole application (every window follows)."""
    app = app or QApplication.instance()
    if isinstance(app, QApplication):
        app.setPalette(palette_for(theme))
