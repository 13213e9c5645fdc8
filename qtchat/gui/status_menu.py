"""Chat ▸ Status: the person chooses online, away or busy, and a status line.

The three states are checkable and exclusive (a ``QActionGroup``); the check shows the
state the person *chose*, which is what ``IdleTimer.choose`` keeps (going away by itself
after a while does not move the check: it is not a choice). "Set a status line…" asks
with a ``QInputDialog`` opened window-modal (not ``exec``: the event loop, and the
chat, go on while it is up). The line is plain text on one line of at most 100
characters: controls and line breaks become spaces, so what the person pasted is what
the others read, and an empty line clears it. The menu only says what was chosen; the
glue (``living_glue.py``) sends it.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMenu, QWidget

from qtchat.living import STATUS_TEXT_MAX

STATES = (("online", "&Online"), ("away", "&Away"), ("busy", "&Busy"))
_NOT_PLAIN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # controls, line breaks


def clean_line(text: str) -> str:
    """A status line as it is sent: one line, no controls, at most 100 characters."""
    return " ".join(_NOT_PLAIN.sub(" ", text).split())[:STATUS_TEXT_MAX].strip()


class StatusMenu(QMenu):
    """Signals: ``stateChosen(str)`` (online, away, busy), ``lineChosen(str)`` ('' clears)."""

    stateChosen = Signal(str)
    lineChosen = Signal(str)

    def __init__(self, parent: QWidget) -> None:
        super().__init__("&Status", parent)
        self.setStatusTip("Tell the others whether you are here")
        group = QActionGroup(self)
        group.setExclusive(True)
        self.state_actions: dict[str, QAction] = {}
        for state, text in STATES:
            action = QAction(text, self)
            action.setCheckable(True)
            action.setChecked(state == "online")
            action.triggered.connect(lambda _checked=False, s=state: self.stateChosen.emit(s))
            group.addAction(action)
            self.addAction(action)
            self.state_actions[state] = action
        self.addSeparator()
        self.line_action = QAction("Set a status &line…", self)
        self.line_action.triggered.connect(self.ask_line)
        self.addAction(self.line_action)
        self.line = ""
        self.line_dialog: QInputDialog | None = None

    def show_chosen(self, state: str) -> None:
        """Check ``state`` (without emitting anything)."""
        self.state_actions[state].setChecked(True)

    @Slot()
    def ask_line(self) -> None:
        dialog = QInputDialog(self.parentWidget())
        dialog.setWindowTitle("Status line")
        dialog.setLabelText(f"What the others see beside your name (at most "
                            f"{STATUS_TEXT_MAX} characters; empty clears it):")
        dialog.setInputMode(QInputDialog.InputMode.TextInput)
        dialog.setTextValue(self.line)
        edit = dialog.findChild(QLineEdit)
        if edit is not None:
            edit.setMaxLength(STATUS_TEXT_MAX)
        dialog.textValueSelected.connect(lambda text: self.lineChosen.emit(clean_line(text)))
        dialog.finished.connect(dialog.deleteLater)
        dialog.finished.connect(lambda _result: setattr(self, "line_dialog", None))
        self.line_dialog = dialog
        dialog.open()
