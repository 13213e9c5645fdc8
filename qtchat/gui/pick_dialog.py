"""``PickDialog``: type a name, or pick one from a list that narrows as you type.

The window asks with it for a room to join (Ctrl+J) and for a person to write to
privately (Ctrl+Shift+M); every choice shown is plain text.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QVBoxLayout,
    QWidget,
)

from qtchat.names import MAX_NAME_LENGTH

__all__ = ["PickDialog"]


class PickDialog(QDialog):
    """Type a name, or pick one from a list that narrows as you type (plain text)."""

    def __init__(self, parent: QWidget, title: str, label: str, choices: list[str],
                 empty: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.edit = QLineEdit()
        self.edit.setMaxLength(4 * MAX_NAME_LENGTH)  # parse_name says what is wrong past 32
        self.list = QListWidget()
        self.list.addItems(sorted(choices, key=str.casefold))
        self.empty = QLabel(empty)
        self.empty.setTextFormat(Qt.TextFormat.PlainText)
        self.empty.setVisible(not choices)
        self.list.setVisible(bool(choices))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setEnabled(False)
        self.edit.textChanged.connect(self._filter)
        self.list.currentTextChanged.connect(self._picked)
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        layout = QVBoxLayout(self)
        caption = QLabel(label)
        caption.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(caption)
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        layout.addWidget(self.empty)
        layout.addWidget(buttons)
        self.edit.setFocus()

    def choice(self) -> str:
        return self.edit.text().strip()

    @Slot(str)
    def _filter(self, text: str) -> None:
        folded = text.strip().casefold()
        for row in range(self.list.count()):
            item = self.list.item(row)
            item.setHidden(bool(folded) and folded not in item.text().casefold())
        self.ok_button.setEnabled(bool(folded))

    @Slot(str)
    def _picked(self, text: str) -> None:
        if text and text != self.edit.text():
            self.edit.blockSignals(True)
            self.edit.setText(text)
            self.edit.blockSignals(False)
            self.ok_button.setEnabled(True)
