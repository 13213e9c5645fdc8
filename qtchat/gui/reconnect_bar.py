"""The bar above the message box while the connection is down (``ReconnectBar``).

It says what is happening ("Connection lost (…) — trying to reconnect (attempt 2)…")
and offers a button to stop trying or, once stopped, to try again. The window
decides what the button does (it asks the client which of the two applies).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

__all__ = ["ReconnectBar"]


class ReconnectBar(QWidget):
    """Hidden while connected; ``show_attempt`` and ``show_stopped`` bring it up.

    ``button.clicked`` is the person asking to stop trying, or to try again.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # reasons come from Qt
        self.label.setWordWrap(True)
        self.button = QPushButton("Stop trying")
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.hide()

    def show_attempt(self, attempt: int, reason: str) -> None:
        """Reconnect attempt ``attempt`` is under way after losing the connection."""
        if reason == "the host closed the room":
            what = "The host closed the room"
        else:
            what = f"Connection lost ({reason})" if reason else "Connection lost"
        self.label.setText(f"{what} — trying to reconnect (attempt {attempt})…")
        self.button.setText("Stop trying")
        self.show()

    def show_stopped(self, sentence: str) -> None:
        """The client gave up (or was told to): say why, and offer to try again."""
        self.label.setText(sentence)
        self.button.setText("Reconnect")
        self.show()
