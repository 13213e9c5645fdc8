"""The search bar (Ctrl+F): a query, a scope, and the results with their words marked.

The bar asks and shows; the window's glue does the asking of the host:
``searchRequested(query, everywhere, before)`` → a ``search`` frame, and the answer
back through ``show_results(query, messages, more)``. Choosing a result emits
``resultChosen(seq)`` (the glue loads the history around it and scrolls to it).

Results are peer text, so they are painted from plain text with ``QTextLayout``
and ``QTextCharFormat`` ranges for the matched words, never rich text: a message
that says ``<b>hi</b>`` shows those characters. The words are matched here the
way the host matched them (qtchat/server/search.py: NFKC, case folding, accents
off; the last word as a prefix; spaceless scripts by any part).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QFont,
    QKeySequence,
    QPalette,
    QShortcut,
    QStandardItem,
    QStandardItemModel,
    QTextCharFormat,
    QTextLayout,
    QTextOption,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from qtchat.server.search import _SPACELESS, PREFIXES, fold

SEQ_ROLE = Qt.ItemDataRole.UserRole + 1
SPANS_ROLE = Qt.ItemDataRole.UserRole + 2
SEARCH_DELAY_MS = 300  # after the last key press, so typing a word sends one search

_RUN = re.compile(f"[{_SPACELESS}]+")
_WORD = re.compile(f"(?:(?![{_SPACELESS}])[^\\W_])+")


def _norm(text: str) -> str:
    """Folded and without accents, as the host's index compares words."""
    decomposed = unicodedata.normalize("NFD", fold(text))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def match_spans(text: str, query: str) -> list[tuple[int, int]]:
    """Where the query's words are in ``text``: sorted (start, length) in characters."""
    folded = _norm(query)
    runs = _RUN.findall(folded)
    words = _WORD.findall(_RUN.sub(" ", folded))
    last = words[-1] if words and not _RUN.search(folded.rstrip()[-1:] or " ") else None
    spans = []
    for found in _WORD.finditer(text):
        key = _norm(found.group())
        if key in words or (last is not None and len(last) >= PREFIXES[0]
                            and key.startswith(last)):
            spans.append((found.start(), found.end() - found.start()))
    if runs:
        # Character by character, so a match maps back to the text as written.
        chars, where = [], []
        for index, char in enumerate(text):
            for piece in _norm(char):
                chars.append(piece)
                where.append(index)
        flat = "".join(chars)
        for run in runs:
            start = flat.find(run)
            while start >= 0:
                first, end = where[start], where[start + len(run) - 1] + 1
                spans.append((first, end - first))
                start = flat.find(run, start + 1)
    return sorted(set(spans))


class _ResultDelegate(QStyledItemDelegate):
    """One result: the sender in bold, the text with the matched words marked."""

    def _layout(self, index: QModelIndex, width: int, font: QFont,
                palette: QPalette) -> QTextLayout:
        text = index.data(Qt.ItemDataRole.DisplayRole) or ""
        layout = QTextLayout(text, font)
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        layout.setTextOption(option)
        ranges = []
        sender_len = text.find(": ")
        if sender_len > 0:
            bold = QTextLayout.FormatRange()
            bold.start, bold.length = 0, sender_len
            bold.format = QTextCharFormat()
            bold.format.setFontWeight(QFont.Weight.Bold)
            ranges.append(bold)
        for start, length in index.data(SPANS_ROLE) or ():
            mark = QTextLayout.FormatRange()
            mark.start, mark.length = start, length
            mark.format = QTextCharFormat()
            mark.format.setFontWeight(QFont.Weight.Bold)
            mark.format.setBackground(palette.color(QPalette.ColorRole.Highlight))
            mark.format.setForeground(palette.color(QPalette.ColorRole.HighlightedText))
            ranges.append(mark)
        layout.setFormats(ranges)
        layout.beginLayout()
        y = 0.0
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(max(width, 10))
            line.setPosition(QRect(0, round(y), 0, 0).topLeft())
            y += line.height()
            if layout.lineCount() >= 3:  # a result is a glimpse; the message is one click away
                break
        layout.endLayout()
        return layout

    def paint(self, painter, option, index) -> None:
        self.initStyleOption(option, index)
        option.text = ""
        style = option.widget.style() if option.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter,
                              option.widget)
        rect = option.rect.adjusted(6, 3, -6, -3)
        layout = self._layout(index, rect.width(), option.font, option.palette)
        painter.save()
        selected = option.state & QStyle.StateFlag.State_Selected
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.setPen(option.palette.color(role))
        layout.draw(painter, rect.topLeft())
        painter.restore()

    def sizeHint(self, option, index) -> QSize:
        width = (option.widget.viewport().width() if option.widget else 300) - 12
        layout = self._layout(index, width, option.font, option.palette)
        return QSize(width, round(layout.boundingRect().height()) + 6)


class SearchBar(QWidget):
    """Search over this conversation or everything; hidden until ``open``."""

    searchRequested = Signal(str, bool, object)  # query, everywhere, before (seq or None)
    resultChosen = Signal(int)  # seq

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.query_edit = QLineEdit()
        self.query_edit.setPlaceholderText("Search messages")
        self.query_edit.setClearButtonEnabled(True)
        self.query_edit.setMaxLength(200)  # the protocol's limit
        self.scope_combo = QComboBox()
        self.scope_combo.addItem("This conversation", False)
        self.scope_combo.addItem("Everything", True)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Close the search (Esc)")
        close.clicked.connect(self.close_bar)
        top = QHBoxLayout()
        top.addWidget(self.query_edit, 1)
        top.addWidget(self.scope_combo)
        top.addWidget(close)

        self.model = QStandardItemModel(self)
        self.results = QListView()
        self.results.setModel(self.model)
        self.results.setItemDelegate(_ResultDelegate(self.results))
        self.results.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        self.results.setWordWrap(True)
        self.results.setUniformItemSizes(False)
        self.results.activated.connect(self._chosen)  # Enter, or a click where that activates
        single = self.results.style().styleHint(
            QStyle.StyleHint.SH_ItemView_ActivateItemOnSingleClick, None, self.results)
        if not single:  # one click is enough here too, but must not choose it twice
            self.results.clicked.connect(self._chosen)
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.more_button = QPushButton("Older results")
        self.more_button.clicked.connect(self._more)
        self.more_button.hide()
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.more_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.results, 1)
        layout.addLayout(bottom)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SEARCH_DELAY_MS)
        self._timer.timeout.connect(self._search)
        self.query_edit.textEdited.connect(lambda _text: self._timer.start())
        self.query_edit.returnPressed.connect(self._search)
        self.scope_combo.currentIndexChanged.connect(lambda _i: self._search())
        self._shown_query = ""
        self._oldest: int | None = None
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.close_bar,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.hide()

    def attach_shortcut(self, window: QWidget) -> QShortcut:
        """Ctrl+F (the platform's Find) in ``window`` opens the bar."""
        return QShortcut(QKeySequence(QKeySequence.StandardKey.Find), window, self.open)

    @property
    def everywhere(self) -> bool:
        return bool(self.scope_combo.currentData())

    @Slot()
    def open(self) -> None:
        self.show()
        self.query_edit.setFocus()
        self.query_edit.selectAll()

    @Slot()
    def close_bar(self) -> None:
        self._timer.stop()
        self.hide()

    @Slot()
    def _search(self) -> None:
        self._timer.stop()
        query = self.query_edit.text().strip()
        if not query:
            self.model.clear()
            self.status.clear()
            self.more_button.hide()
            return
        self.status.setText("Searching…")
        self.searchRequested.emit(query, self.everywhere, None)

    @Slot()
    def _more(self) -> None:
        if self._oldest is not None:
            self.more_button.setEnabled(False)
            self.searchRequested.emit(self._shown_query, self.everywhere, self._oldest)

    def show_results(self, query: str, messages: Iterable, more: bool, *,
                     append: bool = False) -> None:
        """The host's answer: ``messages`` (objects with seq, sender, text, room/to),
        newest first; ``append`` for the next page of the same query."""
        if not append:
            self.model.clear()
        self._shown_query = query
        for message in messages:
            where = f" → {message.to}" if getattr(message, "to", None) else ""
            line = f"{message.sender}{where}: {message.text}"
            item = QStandardItem(line)
            item.setData(message.seq, SEQ_ROLE)
            offset = len(line) - len(message.text)
            item.setData([(start + offset, length)
                          for start, length in match_spans(message.text, query)], SPANS_ROLE)
            item.setToolTip(getattr(message, "ts", "") or "")
            self.model.appendRow(item)
            self._oldest = message.seq
        count = self.model.rowCount()
        self.status.setText("Nothing found" if not count else
                            f"{count} result{'s' if count != 1 else ''}" + (" so far" if more
                                                                             else ""))
        self.more_button.setVisible(more)
        self.more_button.setEnabled(True)

    @Slot(QModelIndex)
    def _chosen(self, index: QModelIndex) -> None:
        seq = index.data(SEQ_ROLE)
        if seq is not None:
            self.resultChosen.emit(int(seq))
