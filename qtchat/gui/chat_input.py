"""The message box under the conversation tabs (``ChatInput``).

Enter sends, Shift+Enter starts a new line, Up and Down recall what was typed, Tab
completes a member's name. What it sends is plain text; the window decides whether
it is a command (``qtchat.gui.commands``) or a message. Files dropped or pasted on it,
and pictures pasted from the clipboard, are offered to the window as files to send.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QMimeData, Qt, Signal, Slot
from PySide6.QtGui import QImage, QKeyEvent, QResizeEvent, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QSizePolicy, QWidget

from qtchat import protocol as p

__all__ = ["ChatInput", "local_files"]


def local_files(source: QMimeData) -> list[str]:
    """The local files a drop or a paste carries (a file manager's ``file://`` URLs);
    other URLs (a link dragged from a browser) are text, not files."""
    if not source.hasUrls():
        return []
    return [url.toLocalFile() for url in source.urls() if url.isLocalFile()
            and url.toLocalFile()]


class ChatInput(QPlainTextEdit):
    """The message box: Enter sends, Shift+Enter starts a new line, Up/Down recall
    (from the first / last line, so they still move within a multi-line message), Tab
    completes names. It grows with its text up to ``MAX_LINES`` lines, then scrolls.

    Signals:
        submitted(str text): Enter was pressed on non-empty text.
        refused(str why): Enter was pressed on text that cannot be sent as it is (too
            long); the text stays, for the person to shorten.
        editSubmitted(int seq, str text): Enter while editing message ``seq`` (see
            ``start_edit``: Up in an empty box, when the window offers ``edit_last``).
        filesOffered(list paths): files dropped or pasted here (local files only): the
            window sends them; their paths never become text in the box.
        pictureOffered(QImage): a picture pasted from the clipboard (a screenshot), not
            a file: the window saves it as a PNG and sends that.
    """

    submitted = Signal(str)
    refused = Signal(str)
    editSubmitted = Signal(int, str)
    filesOffered = Signal(list)
    pictureOffered = Signal(QImage)
    MAX_LINES = 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Short enough for one line beside the File… button in a window of 800 px.
        self.setPlaceholderText("Message — Enter sends, Shift+Enter new line, /help")
        self.setTabChangesFocus(False)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._history: list[str] = []
        self._history_pos = 0
        self.names_provider = lambda: []  # set by the window
        # Up in an empty box: the window starts editing our last message and says True
        # (None, or False: Up recalls what was typed, as before).
        self.edit_last: Callable[[], bool] | None = None
        self.editing: int | None = None  # the seq being edited
        self._placeholder = self.placeholderText()
        self.document().documentLayout().documentSizeChanged.connect(self._fit_height)
        self._fit_height()

    # Files and pictures dropped or pasted: offered to the window, not typed.
    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return bool(local_files(source)) or source.hasImage() or \
            super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        files = local_files(source)
        if files:
            self.filesOffered.emit(files)
            return
        if source.hasImage():
            image = QImage(source.imageData())
            if not image.isNull():
                self.pictureOffered.emit(image)
                return
        super().insertFromMimeData(source)

    # The QLineEdit-like API the window and the tests use.
    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:
        self.setPlainText(text)
        self.moveCursor(QTextCursor.MoveOperation.End)

    def cursorPosition(self) -> int:
        return self.textCursor().position()

    def setCursorPosition(self, position: int) -> None:
        cursor = self.textCursor()
        cursor.setPosition(max(0, min(position, len(self.toPlainText()))))
        self.setTextCursor(cursor)

    @Slot()
    def _fit_height(self) -> None:
        """One line when empty, growing to MAX_LINES visual lines, then a scroll bar."""
        lines = max(1, int(self.document().size().height()))  # plain layout: in lines
        shown = min(lines, self.MAX_LINES)
        margins = self.contentsMargins()
        height = (shown * self.fontMetrics().lineSpacing()
                  + int(2 * self.document().documentMargin())
                  + margins.top() + margins.bottom() + 2)
        if height != self.height() or self.minimumHeight() != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_height()  # a narrower box wraps into more lines

    @Slot()
    def _submit(self) -> None:
        text = self.text()
        if not text.strip():
            return
        if len(text) > p.MAX_TEXT_CHARS:
            self.refused.emit(f"Not sent: that message is {len(text):,} characters long, and "
                              f"the most is {p.MAX_TEXT_CHARS:,}. Shorten it, or send it in "
                              "parts.")
            return
        if self.editing is not None:
            seq = self.editing
            self.cancel_edit()
            self.editSubmitted.emit(seq, text)
            return
        self._history.append(text)
        self._history = self._history[-200:]
        self._history_pos = len(self._history)
        self.clear()
        self.submitted.emit(text)

    def event(self, event: QEvent) -> bool:
        # Tab is a focus-change key; take it before QWidget does.
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) and \
                event.key() == Qt.Key.Key_Tab:
            self.complete_name()
            return True
        return super().event(event)

    def _can_move(self, operation: QTextCursor.MoveOperation) -> bool:
        cursor = QTextCursor(self.textCursor())
        return cursor.movePosition(operation)

    def start_edit(self, seq: int, text: str) -> None:
        """Edit message ``seq``: its text in the box; Enter saves, Esc cancels."""
        self.editing = seq
        if self._history and self._history[-1] == text:
            # What Up would have recalled: a further Up goes on to the one before it.
            self._history_pos = len(self._history) - 1
        self.setPlaceholderText("Editing — Enter saves, Esc cancels")
        self.setText(text)

    def cancel_edit(self) -> None:
        if self.editing is None:
            return
        self.editing = None
        self.setPlaceholderText(self._placeholder)
        self.clear()

    def _stop_editing(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.setPlaceholderText(self._placeholder)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Escape and self.editing is not None:
            self.cancel_edit()
            return
        if key == Qt.Key.Key_Up and not self.toPlainText() and self.editing is None \
                and self.edit_last is not None and self.edit_last():
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self._submit()
            return
        if key == Qt.Key.Key_Up and self._history and \
                not self._can_move(QTextCursor.MoveOperation.Up):
            self._stop_editing()  # recalling what was typed is not editing it
            self._history_pos = max(0, self._history_pos - 1)
            self.setText(self._history[self._history_pos])
            return
        if key == Qt.Key.Key_Down and self._history and \
                not self._can_move(QTextCursor.MoveOperation.Down):
            self._stop_editing()
            self._history_pos = min(len(self._history), self._history_pos + 1)
            self.setText(self._history[self._history_pos]
                         if self._history_pos < len(self._history) else "")
            return
        super().keyPressEvent(event)

    def complete_name(self) -> None:
        """Complete the word before the cursor to a member's name."""
        text, cursor = self.text(), self.cursorPosition()
        start = cursor
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        prefix = text[start:cursor]
        if not prefix:
            return
        folded = prefix.casefold()
        matches = sorted(n for n in self.names_provider() if n.casefold().startswith(folded))
        if not matches:
            return
        name = matches[0]
        suffix = ": " if start == 0 else " "
        self.setText(text[:start] + name + suffix + text[cursor:])
        self.setCursorPosition(start + len(name) + len(suffix))
