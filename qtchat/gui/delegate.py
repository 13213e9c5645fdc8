"""Painting chat rows: ``MessageDelegate`` for a QListView over a ``MessageModel``.

Everything a peer sends is drawn as plain text with ``QTextLayout`` (no
``QTextDocument``, no HTML, no ``Qt.mightBeRichText`` guessing): ``<b>x</b>`` shows
as those eight characters. The only formatting is ours: the sender's name in its
colour, underlined http(s) URLs (found for the click handler, never turned into
markup), italics for whispers and notices.

Row look::

    12:04  alice: the message text, wrapped under itself
    12:05  ← bob: a whisper from bob (italic)          own rows: tinted background
    12:05  * alice waves                               (a /me action)
           ── alice joined ──                          (notices: centred, grey)
    ────────────────────── new messages ──             (the unread marker)
    ⚠ ─ ─ ─ ─ some history was lost ─ ─ ─ ─            (the gap marker)
    12:06  me: pending text
           ◷ sending…   /   ⚠ failed — click to retry   (red)

Sizes: a QListView calls ``sizeHint`` for *every* row on every insertion, so the
delegate caches row heights per (row identity, width) — ``MessageEntry.uid``,
which changes whenever a row's content does — and measures short single-line
ASCII rows from a per-character advance table instead of a full text layout.

``configure_view(view)`` applies the view settings this needs and adds a
``ScrollKeeper`` that keeps the view at the bottom while following, keeps the
reader's place when rows arrive above, and reveals or requests older history
when the top is reached.
"""

from __future__ import annotations

import logging
import math
import re
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
    QTextCharFormat,
    QTextLayout,
    QTextLine,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)

from qtchat.gui.models import (
    MessageEntry,
    MessageModel,
    RowKind,
    SendState,
    format_time,
    sender_color,
)

log = logging.getLogger(__name__)

__all__ = ["MessageDelegate", "ScrollKeeper", "configure_view"]

_PAD_X = 6  # left/right margin of a row
_PAD_Y = 2  # top/bottom margin of a row
_GAP = 8  # between the time column and the text
_LAYOUT_CACHE = 256  # rows whose text layouts are kept for repainting

_SENDING_TEXT = "◷ sending…"
_FAILED_TEXT = "⚠ failed — click to retry"
_UNREAD_TEXT = "new messages"
_GAP_TEXT = "⚠ some history was lost"
_FAILED_COLOR = QColor(0xD3, 0x2F, 0x2F)
_UNREAD_COLOR = QColor(0xE5, 0x39, 0x35)
_GAP_COLOR = QColor(0xC7, 0x7C, 0x02)  # amber, legible on light and dark

# First-strong isolation (U+2068 … U+2069): right-to-left or override characters in
# a peer's text cannot reorder the name in front of it.
_FSI = "\u2068"
_PDI = "\u2069"
_LINE_SEP = "\u2028"  # QTextLayout breaks lines at U+2028, not at "\n"
_NEWLINES = re.compile(r"\r\n|\r|\n")
_URL = re.compile(r"https?://[^\s<>\"'\u2028]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""


@dataclass(slots=True)
class _RowPaint:
    """What ``paint`` needs for one row at one width (built once, LRU-cached)."""

    height: int
    layout: QTextLayout | None = None  # the wrapped text (messages and notices)
    text_origin: QPointF = field(default_factory=QPointF)  # relative to the row's top-left
    links: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, url)
    status: str = ""  # pending state line
    status_y: float = 0.0


class MessageDelegate(QStyledItemDelegate):
    """Paints ``MessageModel`` rows; requires a ``MessageModel`` (not a proxy).

    Signals:
        retryRequested(str): the user clicked a failed message; its local id.
        linkActivated(str): the user clicked an http(s) URL in a message. The
            window decides whether to open it (``QDesktopServices.openUrl``).
    """

    retryRequested = Signal(str)
    linkActivated = Signal(str)

    def __init__(self, view: QAbstractItemView) -> None:
        super().__init__(view)
        self._view = view
        self._width = max(view.viewport().width(), 1)
        self._model: MessageModel | None = None
        self._heights: dict[int, int] = {}
        self._per_model: weakref.WeakKeyDictionary[MessageModel, dict[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._paints: OrderedDict[int, _RowPaint] = OrderedDict()
        self._update_style()
        view.viewport().installEventFilter(self)
        view.installEventFilter(self)

    # ------------------------------------------------------------ style state

    def _update_style(self) -> None:
        view = self._view
        font = QFont(view.font())
        self._font = font
        self._bold = QFont(font)
        self._bold.setBold(True)
        self._italic = QFont(font)
        self._italic.setItalic(True)
        fm = QFontMetricsF(font)
        self._line_h = math.ceil(fm.height())
        self._time_w = math.ceil(fm.horizontalAdvance("00:00"))
        self._status_h = math.ceil(fm.height())
        self._marker_h = self._line_h + 2 * _PAD_Y + 2
        palette = view.palette()
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        self._dark = base.lightness() < 128
        self._text_color = text
        self._muted = _blend(text, base, 0.45)
        tint = QColor(palette.color(QPalette.ColorRole.Highlight))
        tint.setAlpha(28)
        self._own_tint = tint
        select = QColor(palette.color(QPalette.ColorRole.Highlight))
        select.setAlpha(70)
        self._select_tint = select
        link = palette.color(QPalette.ColorRole.Link)
        self._link_color = link.lighter(150) if self._dark else link
        # Per-character advances for the single-line fast path (printable ASCII).
        self._adv = _advance_table(font)
        self._adv_bold = _advance_table(self._bold)
        # ": " after the bold name, plus a few pixels for rounding.
        self._prefix_slack = _advance_table(self._bold)[ord(":")] + fm.horizontalAdvance(" ") + 4
        self._invalidate()

    def _invalidate(self) -> None:
        self._heights.clear()
        self._per_model.clear()
        self._model = None
        self._paints.clear()
        self._sizes: dict[int, QSize] = {}
        self._one_line: int | None = None

    def _text_width(self) -> int:
        return max(self._width - 2 * _PAD_X - self._time_w - _GAP, 20)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        etype = event.type()
        if etype == QEvent.Type.Resize and watched is self._view.viewport():
            width = max(self._view.viewport().width(), 1)
            if width != self._width:
                self._width = width
                self._invalidate()  # QListView (resizeMode Adjust) relayouts next
        elif (
            etype
            in (
                QEvent.Type.FontChange,
                QEvent.Type.PaletteChange,
                QEvent.Type.StyleChange,
            )
            and watched is self._view
        ):
            self._update_style()
            self._view.scheduleDelayedItemsLayout()
        return False

    # ------------------------------------------------------------- measuring

    def _cache_for(self, model: MessageModel) -> dict[int, int]:
        heights = self._per_model.get(model)
        if heights is None:
            heights = self._per_model[model] = {}
        self._model = model
        self._heights = heights
        return heights

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        model = index.model()
        heights = self._heights if model is self._model else self._cache_for(model)
        entry = model.entry(index.row())
        height = heights.get(entry.uid)
        if height is None:
            height = heights[entry.uid] = self._measure(entry)
        size = self._sizes.get(height)
        if size is None:
            size = self._sizes[height] = QSize(self._width, height)
        return size

    def _measure(self, entry: MessageEntry) -> int:
        """Row height; cheap for a short single-line ASCII message, exact otherwise."""
        if (
            entry.kind == RowKind.MESSAGE
            and entry.state == SendState.SENT
            and not entry.is_whisper
            and not entry.is_action
        ):
            # A plain "name: text" message, the bulk of a backlog. Summed per-glyph
            # ASCII advances plus a margin for kerning and rounding bound its width;
            # when that fits, it is one line of a known height, no layout needed.
            # (test_single_line_shortcut_agrees_with_the_full_layout checks this.)
            text = entry.text
            sender = entry.sender
            if text.isascii() and text.isprintable() and sender.isascii():
                adv = self._adv
                width = sum(map(adv.__getitem__, text.encode())) + sum(
                    map(self._adv_bold.__getitem__, sender.encode())
                )
                if width * 1.02 + self._prefix_slack <= self._text_width():
                    return self._one_line_height()
        # Keep the layout: the last rows measured in a pass are usually the ones
        # about to be painted (a chat view sits at the bottom).
        return self._paint_for(entry).height

    def _one_line_height(self) -> int:
        height = self._one_line
        if height is None:
            sample = MessageEntry(
                key=0, uid=0, seq=0, kind=RowKind.MESSAGE, ts=0, sender="x", text="x"
            )
            height = self._one_line = self._build(sample).height
        return height

    # ------------------------------------------------------------- building

    def _paint_for(self, entry: MessageEntry) -> _RowPaint:
        paints = self._paints
        built = paints.get(entry.uid)
        if built is None:
            built = paints[entry.uid] = self._build(entry)
            if len(paints) > _LAYOUT_CACHE:
                paints.popitem(last=False)
        else:
            paints.move_to_end(entry.uid)
        return built

    def _build(self, entry: MessageEntry) -> _RowPaint:
        kind = entry.kind
        if kind == RowKind.MESSAGE:
            return self._build_message(entry)
        if kind == RowKind.NOTICE:
            layout, height = self._lay_out(
                entry.text, self._italic, [], self._text_width(), centred=True
            )
            origin = QPointF(_PAD_X + self._time_w + _GAP, _PAD_Y)
            return _RowPaint(height=height + 2 * _PAD_Y, layout=layout, text_origin=origin)
        return _RowPaint(height=self._marker_h)  # markers: a line and a label

    def _build_message(self, entry: MessageEntry) -> _RowPaint:
        prefix, body = _message_parts(entry)
        text = f"{prefix}{_FSI}{body}{_PDI}"
        name_fmt = QTextCharFormat()
        name_fmt.setFontWeight(QFont.Weight.Bold)
        name = entry.peer if entry.is_whisper and entry.is_own else entry.sender
        name_fmt.setForeground(QBrush(sender_color(name, self._dark)))
        formats = [_format_range(0, len(prefix), name_fmt)]
        links: list[tuple[int, int, str]] = []
        body_start = len(prefix) + 1
        for match in _URL.finditer(body):
            url = match.group().rstrip(_URL_TRAILING)
            start = body_start + match.start()
            links.append((start, start + len(url), url))
            link_fmt = QTextCharFormat()
            link_fmt.setFontUnderline(True)
            link_fmt.setForeground(QBrush(self._link_color))
            formats.append(_format_range(start, len(url), link_fmt))
        font = self._italic if entry.is_whisper else self._font
        layout, height = self._lay_out(text, font, formats, self._text_width())
        built = _RowPaint(
            height=height + 2 * _PAD_Y,
            layout=layout,
            text_origin=QPointF(_PAD_X + self._time_w + _GAP, _PAD_Y),
            links=links,
        )
        if entry.state != SendState.SENT:
            built.status = _FAILED_TEXT if entry.state == SendState.FAILED else _SENDING_TEXT
            built.status_y = _PAD_Y + height
            built.height += self._status_h
        return built

    def _lay_out(
        self,
        text: str,
        font: QFont,
        formats: list[QTextLayout.FormatRange],
        width: int,
        *,
        centred: bool = False,
    ) -> tuple[QTextLayout, int]:
        layout = QTextLayout(text, font)
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        option.setTextDirection(self._view.layoutDirection())
        if centred:
            option.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        layout.setTextOption(option)
        if formats:
            layout.setFormats(formats)
        layout.setCacheEnabled(True)
        layout.beginLayout()
        y = 0.0
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(width)
            line.setPosition(QPointF(0.0, y))
            y += line.height()
        layout.endLayout()
        return layout, max(math.ceil(y), self._line_h)

    def laid_out_text(self, index: QModelIndex) -> str:
        """The exact string handed to QTextLayout for ``index`` ("" for markers).

        For tests and accessibility checks: the peer's text appears in it verbatim
        (newlines become U+2028, and it is wrapped in U+2068 … U+2069).
        """
        built = self._paint_for(index.model().entry(index.row()))
        return built.layout.text() if built.layout is not None else ""

    # ------------------------------------------------------------- painting

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        rect = option.rect
        width = self._view.viewport().width()
        if width != self._width and width > 0:
            # Resize tracking missed a change (e.g. before the first show).
            self._width = width
            self._invalidate()
            self._view.scheduleDelayedItemsLayout()
        entry: MessageEntry = index.model().entry(index.row())
        painter.save()
        try:
            kind = entry.kind
            if kind == RowKind.UNREAD_MARKER:
                self._paint_marker(painter, rect, _UNREAD_TEXT, _UNREAD_COLOR, dashed=False)
            elif kind == RowKind.GAP_MARKER:
                self._paint_marker(painter, rect, _GAP_TEXT, _GAP_COLOR, dashed=True)
            else:
                self._paint_text_row(painter, option, entry)
                self._check_height(index, entry)
        finally:
            painter.restore()

    def _check_height(self, index: QModelIndex, entry: MessageEntry) -> None:
        """Defence in depth: if a cached height ever disagrees with the layout
        just painted (the single-line shortcut guessed wrong on some font), fix
        the cache and have the view lay out again instead of clipping text."""
        built = self._paints.get(entry.uid)
        model = index.model()
        heights = self._heights if model is self._model else self._cache_for(model)
        if built is not None and heights.get(entry.uid, built.height) != built.height:
            log.warning(
                "row %s measured %s px, laid out %s px", entry.uid, heights[entry.uid], built.height
            )
            heights[entry.uid] = built.height
            self.sizeHintChanged.emit(index)

    def _paint_text_row(
        self, painter: QPainter, option: QStyleOptionViewItem, entry: MessageEntry
    ) -> None:
        rect = option.rect
        built = self._paint_for(entry)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(rect, self._select_tint)
        elif entry.is_own:
            painter.fillRect(rect, self._own_tint)
        painter.setFont(self._font)
        painter.setPen(self._muted)
        time_rect = QRectF(rect.left() + _PAD_X, rect.top() + _PAD_Y, self._time_w, self._line_h)
        painter.drawText(time_rect, Qt.AlignmentFlag.AlignRight, format_time(entry.ts))
        if built.layout is not None:
            painter.setPen(self._muted if entry.kind == RowKind.NOTICE else self._text_color)
            built.layout.draw(painter, QPointF(rect.topLeft()) + built.text_origin)
        if built.status:
            failed = entry.state == SendState.FAILED
            painter.setPen(_FAILED_COLOR if failed else self._muted)
            status_rect = QRectF(
                rect.left() + built.text_origin.x(),
                rect.top() + built.status_y,
                self._text_width(),
                self._status_h,
            )
            painter.drawText(status_rect, Qt.AlignmentFlag.AlignLeft, built.status)

    def _paint_marker(
        self, painter: QPainter, rect: QRect, label: str, color: QColor, *, dashed: bool
    ) -> None:
        painter.setFont(self._font)
        fm = painter.fontMetrics()
        label_w = fm.horizontalAdvance(label) + 2 * _GAP
        mid_y = rect.top() + rect.height() // 2
        pen = QPen(color, 1, Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
        painter.setPen(pen)
        if dashed:  # centred label with the line on both sides
            label_x = rect.left() + (rect.width() - label_w) // 2
        else:  # "new messages" near the right edge, like most chat apps
            label_x = rect.right() - _PAD_X - label_w
        painter.drawLine(rect.left() + _PAD_X, mid_y, label_x, mid_y)
        painter.drawLine(label_x + label_w, mid_y, rect.right() - _PAD_X, mid_y)
        painter.drawText(
            QRect(label_x, rect.top(), label_w, rect.height()),
            Qt.AlignmentFlag.AlignCenter,
            label,
        )

    # ---------------------------------------------------------------- clicks

    def editorEvent(
        self,
        event: QEvent,
        model: object,
        option: QStyleOptionViewItem,
        index: QModelIndex,
    ) -> bool:
        etype = event.type()
        if etype not in (QEvent.Type.MouseButtonRelease, QEvent.Type.MouseMove):
            return False
        if not isinstance(model, MessageModel) or not index.isValid():
            return False
        assert isinstance(event, QMouseEvent)
        entry = model.entry(index.row())
        if entry.kind != RowKind.MESSAGE:
            return False
        pos = event.position().toPoint() - option.rect.topLeft()
        failed = entry.state == SendState.FAILED and entry.local_id is not None
        url = self.link_at(entry, pos)
        if etype == QEvent.Type.MouseMove:
            hand = failed or url is not None
            self._view.viewport().setCursor(
                Qt.CursorShape.PointingHandCursor if hand else Qt.CursorShape.ArrowCursor
            )
            return False
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        if url is not None:
            self.linkActivated.emit(url)
            return True
        if failed:
            self.retryRequested.emit(entry.local_id)
            return True
        return False

    def link_at(self, entry: MessageEntry, pos: QPoint) -> str | None:
        """The URL under ``pos`` (relative to the row's top-left), if any."""
        built = self._paint_for(entry)
        if not built.links or built.layout is None:
            return None
        point = QPointF(pos) - built.text_origin
        layout = built.layout
        for i in range(layout.lineCount()):
            line = layout.lineAt(i)
            if line.rect().contains(point):
                cursor = line.xToCursor(point.x(), QTextLine.CursorPosition.CursorOnCharacter)
                for start, end, url in built.links:
                    if start <= cursor < end:
                        return url
                return None
        return None


# ------------------------------------------------------------------ helpers


def _message_parts(entry: MessageEntry) -> tuple[str, str]:
    """(prefix in the name's colour, body) of a message row."""
    if entry.is_action:
        prefix = f"* {entry.sender} "
    elif entry.is_whisper:
        prefix = f"→ {entry.peer}: " if entry.is_own else f"← {entry.sender}: "
    else:
        prefix = f"{entry.sender}: "
    text = entry.text
    if "\n" in text or "\r" in text:
        text = _NEWLINES.sub(_LINE_SEP, text)
    return prefix, text


def _format_range(start: int, length: int, fmt: QTextCharFormat) -> QTextLayout.FormatRange:
    fr = QTextLayout.FormatRange()
    fr.start = start
    fr.length = length
    fr.format = fmt
    return fr


def _advance_table(font: QFont) -> tuple[float, ...]:
    """Advance of each ASCII code point in ``font`` (0 for non-printables)."""
    fm = QFontMetricsF(font)
    return tuple(fm.horizontalAdvance(chr(c)) if 32 <= c < 127 else 0.0 for c in range(128))


def _blend(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` moved ``t`` of the way towards ``b``."""
    return QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


# ------------------------------------------------------------- ScrollKeeper


class ScrollKeeper(QObject):
    """Keeps a chat view's scroll position sensible as rows come and go.

    - While the view shows the bottom it stays there (and tells the model it
      follows the tail, so a ``MessageModel`` with a ``window`` hides old rows).
    - Otherwise the row at the top stays put when rows are inserted above it
      (history pages, revealed rows, late out-of-order messages).
    - Scrolling to the very top reveals hidden older rows; when there are none,
      ``topReached`` asks the window to fetch ``history {before: oldest_seq()}``.

    Signals:
        topReached(): the user scrolled to the top and every stored row is shown.
    """

    topReached = Signal()

    #: Older rows revealed per arrival at the top.
    REVEAL_STEP = 1000

    def __init__(self, view: QListView) -> None:
        super().__init__(view)
        self._view = view
        self._bar = view.verticalScrollBar()
        self._at_bottom = True
        self._anchor = QPersistentModelIndex()
        self._anchor_top = 0
        self._model = view.model()
        self._bar.valueChanged.connect(self._on_value_changed)
        self._bar.rangeChanged.connect(self._on_range_changed)

    def at_bottom(self) -> bool:
        return self._at_bottom

    def scroll_to_bottom(self) -> None:
        """Jump to the newest row and follow it again."""
        self._set_at_bottom(True)
        self._bar.setValue(self._bar.maximum())

    def _set_at_bottom(self, value: bool) -> None:
        self._at_bottom = value
        model = self._view.model()
        if isinstance(model, MessageModel):
            model.follow_tail = value

    def _remember_anchor(self) -> None:
        index = self._view.indexAt(QPoint(1, 1))
        if index.isValid():
            self._anchor = QPersistentModelIndex(index)
            self._anchor_top = self._view.visualRect(index).top()
        else:
            self._anchor = QPersistentModelIndex()

    @Slot(int)
    def _on_value_changed(self, value: int) -> None:
        bar = self._bar
        self._set_at_bottom(value >= bar.maximum() - 2)
        self._remember_anchor()
        if value == bar.minimum() and bar.maximum() > bar.minimum():
            model = self._view.model()
            if isinstance(model, MessageModel) and model.hidden_count():
                model.reveal_older(self.REVEAL_STEP)
            else:
                self.topReached.emit()

    @Slot(int, int)
    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        bar = self._bar
        model = self._view.model()
        if model is not self._model:  # another conversation: start at its newest row
            self._model = model
            self._set_at_bottom(True)
        if self._at_bottom:
            bar.setValue(maximum)
            return
        anchor = self._anchor
        if anchor.isValid() and anchor.model() is self._view.model():
            top = self._view.visualRect(QModelIndex(anchor)).top()
            delta = top - self._anchor_top
            if delta:
                bar.setValue(bar.value() + delta)


def configure_view(view: QListView) -> tuple[MessageDelegate, ScrollKeeper]:
    """Set up ``view`` to show a ``MessageModel``; returns its delegate and keeper.

    Settings, and why:

    - ``setUniformItemSizes(False)``: rows wrap to different heights.
    - ``ScrollPerPixel``: rows can be taller than the viewport; per-item
      scrolling jumps.
    - ``setResizeMode(Adjust)``: re-wrap when the width changes.
    - ``setLayoutMode(SinglePass)``: ``Batched`` lays out from the top in
      steps, so a view kept at the bottom shows blank space and jumps while a
      big model is being laid out; with the delegate's cached heights and the
      model's tail window one pass is short.
    - Vertical scroll bar always on: its appearing would narrow the viewport,
      re-wrap every row and possibly hide it again.
    - No horizontal scroll bar, no editing, mouse tracking on (link cursor).

    Wire ``delegate.retryRequested(local_id)`` to resend, ``delegate.linkActivated``
    to open a URL after any check the window wants, and ``keeper.topReached`` to
    request older history. The delegate caches per model, so one view may switch
    between conversation models with ``setModel``.
    """
    view.setUniformItemSizes(False)
    view.setViewMode(QListView.ViewMode.ListMode)
    view.setFlow(QListView.Flow.TopToBottom)
    view.setWrapping(False)
    view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setLayoutMode(QListView.LayoutMode.SinglePass)
    view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
    view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setMouseTracking(True)
    view.verticalScrollBar().setSingleStep(max(view.fontMetrics().height(), 1) * 3)
    delegate = MessageDelegate(view)
    view.setItemDelegate(delegate)
    keeper = ScrollKeeper(view)
    return delegate, keeper
