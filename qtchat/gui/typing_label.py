"""The line under a conversation's message view: "Bob is typing…".

A ``TypingTracker`` (qtchat/living.py) holds who is typing; this label shows its
sentence and wakes up by a single-shot timer exactly when the next state expires
(active 6 s, paused 30 s), not by polling. Names are peer text: the label is plain
text, always. It keeps its height when empty so the view above does not jump each
time someone starts or stops typing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QLabel, QWidget

from qtchat.living import TypingTracker, typing_sentence


class TypingLabel(QLabel):
    """Who is typing in one conversation. ``clock`` gives seconds (tests pass their own)."""

    def __init__(self, parent: QWidget | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setObjectName("typingLabel")
        self.setIndent(6)
        font = self.font()
        font.setItalic(True)
        self.setFont(font)
        self.setForegroundRole(self.foregroundRole().PlaceholderText)
        self.setMinimumHeight(self.fontMetrics().height())
        self.tracker = TypingTracker()
        self._clock = clock
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refresh)

    def typing(self, name: str, state: str) -> None:
        """A ``typing`` frame from ``name`` for this conversation."""
        self.tracker.update(name, state, self._clock())
        self.refresh()

    def message_from(self, name: str) -> None:
        """A message from ``name``: they are no longer typing it. (Nothing to redraw when
        they were not typing: this runs for every message of a 20,000-message burst.)"""
        if self.tracker.message_from(name):
            self.refresh()

    def clear(self) -> None:
        """Left, or disconnected: nobody is typing here."""
        self.tracker.clear()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        now = self._clock()
        self.setText(typing_sentence(self.tracker.typing(now)))
        wait = self.tracker.next_change(now)
        if wait is None:
            self._timer.stop()
        else:
            self._timer.start(max(1, round(wait * 1000)))
