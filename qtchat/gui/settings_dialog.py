"""The settings dialog: name, away timeout, receipts, typing, notifications, downloads,
theme — kept in the app's QSettings (``start_dialog.settings``).

``Preferences.load()`` reads them with their defaults, so the rest of the app asks one
object (``prefs.receipts``) instead of repeating keys and defaults. The privacy
switches are about *sending*: with receipts off the app sends no receipt at all, with
typing off no typing notice (element-web #8959: a switch that only hid them felt like
a betrayal). The theme is applied as soon as the dialog is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qtchat.gui.start_dialog import settings
from qtchat.gui.theme import THEME_LABELS, THEMES, apply_theme
from qtchat.names import parse_name

AWAY_NEVER = 0  # minutes: never go away by itself


def _default_downloads() -> str:
    where = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DownloadLocation)
    return where or str(Path.home())


def _bool(value, default: bool) -> bool:
    """QSettings gives 'true'/'false' strings back from some backends."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


@dataclass
class Preferences:
    """What the dialog edits, with the defaults a new user gets."""

    name: str = ""
    away_minutes: int = 10
    receipts: bool = True  # "Tell others when I have read their messages"
    typing: bool = True  # "Let others see when I am typing"
    notifications: bool = True
    download_dir: str = ""
    theme: str = "system"

    @classmethod
    def load(cls) -> Preferences:
        stored = settings()
        try:
            away = int(stored.value("away_minutes", 10))
        except (TypeError, ValueError):
            away = 10
        theme = str(stored.value("theme", "system"))
        return cls(
            name=str(stored.value("name", "") or ""),
            away_minutes=max(0, min(away, 24 * 60)),
            receipts=_bool(stored.value("receipts"), True),
            typing=_bool(stored.value("typing"), True),
            notifications=_bool(stored.value("notifications"), True),
            download_dir=str(stored.value("download_dir", "") or "") or _default_downloads(),
            theme=theme if theme in THEMES else "system",
        )

    def save(self) -> None:
        stored = settings()
        for key, value in vars(self).items():
            stored.setValue(key, value)
        stored.sync()


class SettingsDialog(QDialog):
    """Edits ``Preferences``; on OK saves them, applies the theme and emits ``saved``."""

    saved = Signal(object)  # the new Preferences

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        prefs = Preferences.load()
        form = QFormLayout()

        self.name_edit = QLineEdit(prefs.name)
        self.name_edit.setMaxLength(32)
        self.name_edit.setToolTip("The name others see; used the next time you connect")
        form.addRow("&Name:", self.name_edit)

        self.away_spin = QSpinBox()
        self.away_spin.setRange(AWAY_NEVER, 24 * 60)
        self.away_spin.setSuffix(" min")
        self.away_spin.setSpecialValueText("Never")
        self.away_spin.setValue(prefs.away_minutes)
        form.addRow("Show me as &away after:", self.away_spin)

        self.receipts_check = QCheckBox("Tell others when I have &read their messages")
        self.receipts_check.setChecked(prefs.receipts)
        self.receipts_check.setToolTip("When off, qtchat sends no read or delivered notices")
        form.addRow(self.receipts_check)
        self.typing_check = QCheckBox("Let others see when I am &typing")
        self.typing_check.setChecked(prefs.typing)
        form.addRow(self.typing_check)
        self.notifications_check = QCheckBox("Show &notifications for new messages")
        self.notifications_check.setChecked(prefs.notifications)
        form.addRow(self.notifications_check)

        self.download_edit = QLineEdit(prefs.download_dir)
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.download_edit, 1)
        row.addWidget(browse)
        form.addRow("&Download folder:", row)

        self.theme_combo = QComboBox()
        for theme in THEMES:
            self.theme_combo.addItem(THEME_LABELS[theme], theme)
        self.theme_combo.setCurrentIndex(THEMES.index(prefs.theme))
        form.addRow("T&heme:", self.theme_combo)

        self.error_label = QLabel()
        self.error_label.setTextFormat(self.error_label.textFormat().PlainText)
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

    def preferences(self) -> Preferences:
        """What the dialog shows now."""
        return Preferences(
            name=self.name_edit.text().strip(),
            away_minutes=self.away_spin.value(),
            receipts=self.receipts_check.isChecked(),
            typing=self.typing_check.isChecked(),
            notifications=self.notifications_check.isChecked(),
            download_dir=self.download_edit.text().strip(),
            theme=self.theme_combo.currentData(),
        )

    @Slot()
    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Download folder",
                                                  self.download_edit.text())
        if chosen:
            self.download_edit.setText(chosen)

    def accept(self) -> None:
        prefs = self.preferences()
        if prefs.name:
            try:
                parse_name(prefs.name)
            except ValueError as exc:
                self.error_label.setText(str(exc))
                self.error_label.show()
                self.name_edit.setFocus()
                return
        prefs.save()
        apply_theme(prefs.theme)
        self.saved.emit(prefs)
        super().accept()
