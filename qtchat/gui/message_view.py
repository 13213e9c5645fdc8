"""``MessageView``: a chat view that lays out and paints only the rows on screen.

A ``QListView`` with rows of different heights lays out *every* row on each
insertion (13 ms per live message at 3,000 rows); chat clients that stay smooth
with huge backlogs draw their own view (Quassel's ``ChatView``, Chatterino's
``ChannelView``). This one is a ``QAbstractScrollArea`` over a ``MessageModel``:

- **Heights** live in ``RowHeights``, 2 bytes a row in chunks of about 1,024 with
  a sum per chunk, so appending is O(1) and finding the row at a y offset or the
  y of a row costs a bisect over the chunk sums plus one chunk summed in C. A
  row the view has not shown yet carries a guess from its text length
  (``MessageDelegate.estimate_table``: no text layout at all for a backlog); a
  row is measured exactly, once per width, just before it is first painted.
- **Where the reader is** is a row and a pixel offset into it (``_anchor_row``,
  ``_anchor_off``), or "following the bottom". Rows inserted above the anchor
  move its index, not the picture: older history prepended at the top, or
  guessed heights above replaced by measured ones, never move what is shown.
- **Text layouts** are kept for the rows on screen (``MessageDelegate.retain``) and
  for a page above and a page below it (between, for the rows just scrolled off, up
  to the delegate's bound of 512): once the view has been still for
  ``_WARM_DELAY_MS``, ``_warm_up`` measures and lays those out a few ms per pass, so a
  Page Up/Down or a wheel turn paints rows already shaped (shaping is most of a page
  never shown). What the reader sees does not move when they are measured.
- **A burst** that brings a screenful of rows per pass is painted at most once per
  frame (``frame_ms``): rows the next pass pushes off are never laid out.
- Scrolling to the top (or a wheel turn up while there) emits ``topReached``,
  every time: each older page arrives above the reader, who can scroll up again.

What ``QListView`` gave for free is rebuilt here: row selection by click, drag
and Shift+click, Ctrl+C and a context-menu Copy, keyboard navigation
(Up/Down/PgUp/PgDn/Home/End), tooltips with the full time, and accessibility: a
``QAccessibleInterface`` with a child per visible message (its text and time)
and polite announcements of new messages (``QAccessibleAnnouncementEvent``).

Signals:
    retryRequested(str): the user clicked a failed message; its local id.
    linkActivated(str): the user clicked an http(s) URL in a message; the window
        decides whether to open it.
    topReached(): the user scrolled to (or further up at) the top: time to ask
        for ``history {before: model.oldest_seq()}``.
    announced(str): a new message was announced to assistive technology.
"""

from __future__ import annotations

import logging
import time
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import Any

from PySide6.QtCore import (
    QDateTime,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import (
    QAccessible,
    QAccessibleAnnouncementEvent,
    QAccessibleInterface,
    QAction,
    QContextMenuEvent,
    QFocusEvent,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QRegion,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAccessibleWidget,
    QApplication,
    QToolTip,
    QWidget,
)

from qtchat.gui.delegate import MessageDelegate, estimate_code, estimate_codes
from qtchat.gui.models import (
    MessageEntry,
    MessageModel,
    RowKind,
    SendState,
    display_text,
    file_of,
    format_time,
)

log = logging.getLogger(__name__)

__all__ = ["MessageView", "RowHeights"]

_CHUNK = 256  # rows per chunk of RowHeights (split at twice this)
_BAR_DELAY_MS = 50  # the scroll bar lags rows streaming in at the bottom by at most this
_MAX_HEIGHT = 0xFFFF  # heights are stored in 16 bits
#: While a burst streams in below a reader at the bottom, at most one paint per frame
#: (60 Hz): a pass that brings a screenful of new rows would paint rows the next pass
#: pushes off again, and a screen shows no more than this anyway.
_FRAME_MS = 16
#: A page above and below the screen are laid out once the view has been still this long
#: (a burst that paints every frame never pays for it), at most _WARM_SLICE_S a pass.
_WARM_DELAY_MS = 60
_WARM_SLICE_S = 0.002
_ANNOUNCE_MAX = 5  # new messages announced per insertion (a burst is not read out whole)
_Parent = QModelIndex | QPersistentModelIndex
# A message taller than this many lines is shown clipped to it, with a "Show more"
# link under it: a 4,000-character paste must not fill the whole view.
CLIP_LINES = 12
SHOW_MORE = "Show more"
SHOW_LESS = "Show less"


class RowHeights:
    """Row heights in pixels, 2 bytes a row, with O(1) append and cheap lookups.

    Rows sit in chunks (``array('H')`` of up to ``2 × _CHUNK``) with a sum per
    chunk. The start row and top y of every chunk are prefix sums rebuilt
    lazily (C-speed ``accumulate`` over ~1,000 numbers at a million rows), and
    only when a chunk other than the last changed: appending, the common case,
    touches the last chunk alone.
    """

    __slots__ = ("_chunks", "_count", "_starts", "_sums", "_tops", "_total")

    def __init__(self) -> None:
        self.replace(array("H"))

    def replace(self, heights: array) -> None:
        """All rows at once (a new model, a new width)."""
        chunks = [heights[i : i + _CHUNK] for i in range(0, len(heights), _CHUNK)]
        self._chunks: list[array] = chunks or [array("H")]
        self._sums = [sum(c) for c in self._chunks]
        self._total = sum(self._sums)
        self._count = len(heights)
        self._starts: list[int] | None = None
        self._tops: list[int] | None = None

    def __len__(self) -> int:
        return self._count

    def total(self) -> int:
        return self._total

    def _index(self) -> tuple[list[int], list[int]]:
        starts, tops = self._starts, self._tops
        if starts is None:
            starts = self._starts = [0, *accumulate(len(c) for c in self._chunks[:-1])]
        if tops is None:
            tops = self._tops = [0, *accumulate(self._sums[:-1])]
        return starts, tops

    def _locate(self, row: int) -> tuple[int, int]:
        starts = self._starts if self._starts is not None else self._index()[0]
        c = bisect_right(starts, row) - 1
        return c, row - starts[c]

    def insert(self, row: int, heights: array) -> None:
        c, off = self._locate(row)
        chunk = self._chunks[c]
        if off == len(chunk):
            chunk.extend(heights)
        else:
            chunk[off:off] = heights
        added = sum(heights)
        self._sums[c] += added
        self._total += added
        self._count += len(heights)
        if len(chunk) > 2 * _CHUNK:
            pieces = [chunk[i : i + _CHUNK] for i in range(0, len(chunk), _CHUNK)]
            self._chunks[c : c + 1] = pieces
            self._sums[c : c + 1] = [sum(p) for p in pieces]
            self._starts = self._tops = None
        elif c != len(self._chunks) - 1:
            self._starts = self._tops = None

    def remove(self, row: int, count: int) -> None:
        while count > 0 and row < self._count:
            c, off = self._locate(row)
            chunk = self._chunks[c]
            take = min(count, len(chunk) - off)
            gone = sum(chunk[off : off + take])
            del chunk[off : off + take]
            self._sums[c] -= gone
            self._total -= gone
            self._count -= take
            count -= take
            if not chunk and len(self._chunks) > 1:
                del self._chunks[c]
                del self._sums[c]
            self._starts = self._tops = None

    def take(self, row: int, count: int) -> array:
        """Remove ``count`` rows from ``row`` and return their heights."""
        out = array("H")
        for r in range(row, row + count):
            out.append(self.get(r))
        self.remove(row, count)
        return out

    def get(self, row: int) -> int:
        c, off = self._locate(row)
        return self._chunks[c][off]

    def set(self, row: int, height: int) -> None:
        c, off = self._locate(row)
        chunk = self._chunks[c]
        delta = height - chunk[off]
        if delta:
            chunk[off] = height
            self._sums[c] += delta
            self._total += delta
            if c != len(self._chunks) - 1:
                self._tops = None

    def top_of(self, row: int) -> int:
        """y of the top of ``row`` (``total()`` for ``row == len(self)``)."""
        if row >= self._count:
            return self._total
        _starts, tops = self._index()
        c, off = self._locate(row)
        return tops[c] + (sum(self._chunks[c][:off]) if off else 0)

    def row_at(self, y: int) -> int:
        """The row covering ``y`` (clamped to the first and last row); -1 if none."""
        count = self._count
        if count == 0:
            return -1
        if y <= 0:
            return 0
        if y >= self._total:
            return count - 1
        starts, tops = self._index()
        c = bisect_right(tops, y) - 1
        chunk = self._chunks[c]
        i = bisect_right(list(accumulate(chunk)), y - tops[c])
        return min(starts[c] + i, count - 1)


class MessageView(QAbstractScrollArea):
    """Shows one ``MessageModel``; see the module docstring."""

    retryRequested = Signal(str)
    linkActivated = Signal(str)
    topReached = Signal()
    announced = Signal(str)

    def __init__(self, model: MessageModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _install_accessibility()
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)  # no re-wrap flips
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.viewport().setMouseTracking(True)
        self.viewport().setBackgroundRole(QPalette.ColorRole.Base)
        self.viewport().setAutoFillBackground(True)
        self.setAccessibleName("Messages")
        self._delegate = MessageDelegate(self)
        self._delegate.set_width(self.viewport().width())
        self._model: MessageModel | None = None
        self._heights = RowHeights()
        self._codes = array("H")  # estimate_code per row: re-guess heights at a new width
        self._measured = bytearray()  # 1 where the height is exact at this width
        self._follow = True  # showing the bottom, and staying there
        self._anchor_row = 0  # the row at the viewport's top …
        self._anchor_off = 0  # … and how many of its pixels are scrolled past
        self._visible: list[tuple[int, int, int]] = []  # (row, y, height) laid out last
        self._current = -1  # keyboard focus row
        self._expanded: set[int] = set()  # uids of tall messages shown whole ("Show more")
        self._sel_anchor = -1  # selection: rows between these two, inclusive
        self._sel_end = -1
        self._press_row = -1
        self._press_pos = QPoint()
        self._dragged = False
        self._setting_bar = False
        self._dirty = True  # positions need computing again (_relayout)
        self._full_repaint = True  # the whole viewport needs painting again
        self._flush_pending = False  # _flush_appends is posted
        self._last_top = 0  # content y at the viewport's top, as last laid out
        self._painted_top = 0  # … and as the pixels on screen show it
        self._appended_from = 0  # first row appended since the last flush
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(0)
        self._flush_timer.timeout.connect(self._flush_appends)
        #: Seconds, monotonic (a test may hand-advance it), and the frame in ms.
        self.clock = time.perf_counter
        self.frame_ms = _FRAME_MS
        self._painted_at = float("-inf")  # self.clock() at the last paint
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.timeout.connect(self._frame_due)
        # Painting a QScrollBar costs more than a new row (about 1 ms offscreen); while
        # rows stream in at the bottom the bar is brought up to date at most every
        # _BAR_DELAY_MS instead of on each row (its handle moves by a pixel or less).
        self._bar_stale = False
        self._bar_timer = QTimer(self)
        self._bar_timer.setSingleShot(True)
        self._bar_timer.setInterval(_BAR_DELAY_MS)
        self._bar_timer.timeout.connect(self._sync_bar)
        self._warm_todo: list[int] | None = None  # rows left to lay out; None: not begun
        #: ms the view must be still before the pages around it are laid out.
        self.warm_ms = _WARM_DELAY_MS
        self._warm_timer = QTimer(self)
        self._warm_timer.setSingleShot(True)
        self._warm_timer.timeout.connect(self._warm_up)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_bar_value)
        bar.setSingleStep(max(self._delegate.line_height(), 1))

        self.copy_action = QAction("&Copy", self)
        self.copy_action.setShortcut(QKeySequence.StandardKey.Copy)
        self.copy_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.copy_action.triggered.connect(self.copy)
        self.select_all_action = QAction("Select &all", self)
        self.select_all_action.setShortcut(QKeySequence.StandardKey.SelectAll)
        self.select_all_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.select_all_action.triggered.connect(self.select_all)
        self.addAction(self.copy_action)
        self.addAction(self.select_all_action)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self._update_actions()
        if model is not None:
            self.setModel(model)

    # ---------------------------------------------------------------- model

    def model(self) -> MessageModel | None:
        return self._model

    def delegate(self) -> MessageDelegate:
        return self._delegate

    def setModel(self, model: MessageModel | None) -> None:
        old = self._model
        if old is not None:
            for signal, slot in self._connections(old):
                signal.disconnect(slot)
        self._model = model
        if model is not None:
            for signal, slot in self._connections(model):
                signal.connect(slot)
        self._rebuild()

    def _connections(self, model: MessageModel) -> list[tuple[Any, Any]]:
        return [
            (model.rowsInserted, self._on_rows_inserted),
            (model.rowsRemoved, self._on_rows_removed),
            (model.rowsMoved, self._on_rows_moved),
            (model.dataChanged, self._on_data_changed),
            (model.modelReset, self._rebuild),
            (model.layoutChanged, self._rebuild),
        ]

    @Slot()
    def _rebuild(self) -> None:
        model = self._model
        entries = list(model.entries()) if model is not None else []
        self._codes = estimate_codes(entries)
        self._delegate.retain(())  # layouts are cached by uid, and uids are per model
        self._warm_todo = None
        self._reguess_heights()
        self._follow = True
        self._anchor_row = self._anchor_off = 0
        self._current = self._sel_anchor = self._sel_end = -1
        self._changed()

    def _reguess_heights(self) -> None:
        table = self._delegate.estimate_table()
        self._heights.replace(array("H", [table[code] for code in self._codes]))
        self._measured = bytearray(len(self._codes))

    def _row_map(self, fn: Any) -> None:
        """Apply ``fn(row) -> row`` to every row the view remembers."""
        if self._anchor_row >= 0:
            self._anchor_row = fn(self._anchor_row)
        for name in ("_current", "_sel_anchor", "_sel_end", "_press_row"):
            row = getattr(self, name)
            if row >= 0:
                setattr(self, name, fn(row))

    @Slot(QModelIndex, int, int)
    def _on_rows_inserted(self, _parent: _Parent, first: int, last: int) -> None:
        model = self._model
        assert model is not None
        entries = model.entries_between(first, last)
        codes = estimate_codes(entries)
        table = self._delegate.estimate_table()
        count = len(codes)
        appended = first == len(self._codes)
        self._codes[first:first] = codes
        self._measured[first:first] = bytes(count)
        added = array("H", [table[code] for code in codes])
        self._heights.insert(first, added)
        self._row_map(lambda row: row + count if row >= first else row)
        wait = self._frame_wait(sum(added)) if appended and self._follow else 0
        if wait > 0 and self.isVisible():
            # A burst: a screenful or more since the last paint, which was less than a
            # frame ago. Paint it all when the frame is over, not on every pass.
            self._dirty = True
            self._full_repaint = True
            if not self._frame_timer.isActive():
                self._frame_timer.start(wait)
        elif appended and self._follow and not self._full_repaint and self.isVisible():
            # The common case of a live chat: rows below the others while the reader
            # is at the bottom. Scroll what is painted up and paint only the new rows,
            # once per event-loop pass however many arrive in it.
            self._dirty = True
            if not self._flush_pending:
                self._flush_pending = True
                self._appended_from = first
                self._flush_timer.start()
        else:
            self._changed()
        if (count == 1 or model.inserting_live) and \
                last == model.rowCount() - 1 - len(model.pending_entries()):
            # New messages at the bottom (one, or the live ones of one event-loop
            # pass), not a history page; a burst announces its last few only.
            for entry in entries[-_ANNOUNCE_MAX:]:
                self._announce(entry)

    @Slot(QModelIndex, int, int)
    def _on_rows_removed(self, _parent: _Parent, first: int, last: int) -> None:
        count = last - first + 1
        del self._codes[first : last + 1]
        del self._measured[first : last + 1]
        self._heights.remove(first, count)
        remaining = len(self._codes)

        def shift(row: int) -> int:
            if row > last:
                return row - count
            if row >= first:
                return min(first, remaining - 1)
            return row

        if first <= self._anchor_row <= last:
            self._anchor_off = 0
        self._row_map(shift)
        self._changed()

    @Slot(QModelIndex, int, int, QModelIndex, int)
    def _on_rows_moved(
        self, _parent: _Parent, start: int, end: int, _dest: _Parent, row: int
    ) -> None:
        count = end - start + 1
        new = row if row < start else row - count  # where the block starts afterwards
        codes = self._codes[start : end + 1]
        measured = self._measured[start : end + 1]
        heights = self._heights.take(start, count)
        del self._codes[start : end + 1]
        del self._measured[start : end + 1]
        self._codes[new:new] = codes
        self._measured[new:new] = measured
        self._heights.insert(new, heights)

        def move(r: int) -> int:
            if start <= r <= end:
                return new + (r - start)
            r2 = r - count if r > end else r
            return r2 + count if r2 >= new else r2

        self._row_map(move)
        self._changed()

    @Slot(QModelIndex, QModelIndex)
    def _on_data_changed(self, top: QModelIndex, bottom: QModelIndex, _roles: Any = None) -> None:
        model = self._model
        assert model is not None
        first, last = top.row(), bottom.row()
        table = self._delegate.estimate_table()
        heights = self._heights
        for row, entry in enumerate(model.entries_between(first, last), first):
            code = estimate_code(entry)
            self._codes[row] = code
            self._measured[row] = 0
            heights.set(row, table[code])
        self._changed()

    def _changed(self) -> None:
        self._dirty = True
        self._full_repaint = True
        self.viewport().update()
        self._update_actions()

    def _frame_wait(self, added_height: int) -> int:
        """How many ms to hold back the paint of rows just appended at the bottom: the
        rest of the frame begun by the last paint, when the rows since then fill the
        screen (or a whole repaint is due anyway); else 0, paint on this pass."""
        if added_height < self.viewport().height() and not self._full_repaint:
            return 0
        elapsed = (self.clock() - self._painted_at) * 1000
        frame = self.frame_ms
        return max(0, int(frame - elapsed) + 1) if elapsed < frame else 0

    @Slot()
    def _frame_due(self) -> None:
        if self._dirty or self._full_repaint:  # not painted since: now
            self._changed()

    @Slot()
    def _flush_appends(self) -> None:
        self._flush_pending = False
        if self._full_repaint:
            return  # a whole repaint is coming anyway
        self.ensure_laid_out(sync_bar=False)
        if self._bar_stale and not self._bar_timer.isActive():
            self._bar_timer.start()
        shift = self._last_top - self._painted_top  # how far the pixels are behind
        viewport = self.viewport()
        if not self._follow or shift < 0 or shift >= viewport.height():
            self._changed()
            return
        if shift:
            viewport.scroll(0, -shift)  # moves the pixels, repaints the strip uncovered
            self._painted_top = self._last_top
        fresh = self._appended_from
        for row, y, height in self._visible:  # and the new rows, wherever they are
            if row >= fresh:
                viewport.update(0, y, viewport.width(), height)

    # --------------------------------------------------------------- layout

    def _measure_row(self, row: int) -> int:
        if self._measured[row]:
            return self._heights.get(row)
        assert self._model is not None
        entry = self._model.entry(row)
        height = self._delegate.measure(entry)
        if self._clippable(entry, height):
            shown = height if entry.uid in self._expanded else self._clip_height()
            height = shown + self._strip_height()
        height = min(height, _MAX_HEIGHT)
        self._heights.set(row, height)
        self._measured[row] = 1
        return height

    def _clip_height(self) -> int:
        return CLIP_LINES * max(self._delegate.line_height(), 1) + 2

    def _strip_height(self) -> int:
        """The line under a tall message that holds its Show more / Show less link."""
        return max(self._delegate.line_height(), 1) + 4

    def _clippable(self, entry: MessageEntry, full: int) -> bool:
        """A confirmed message taller than CLIP_LINES (+2, not to clip a line or two):
        a pending or failed one keeps its status line, which says what to do, in view."""
        return (entry.kind == RowKind.MESSAGE and entry.state == SendState.SENT
                and full > self._clip_height() + 2 * max(self._delegate.line_height(), 1)
                and file_of(entry) is None)  # a file's box (its picture) shows whole

    def is_clipped(self, row: int) -> bool:
        """True when ``row`` is a tall message shown cut short, with "Show more"."""
        assert self._model is not None
        entry = self._model.entry(row)
        return self._clippable(entry, self._delegate.measure(entry)) and \
            entry.uid not in self._expanded

    def toggle_expanded(self, row: int) -> None:
        """Show a tall message whole, or clipped again ("Show more" / "Show less")."""
        assert self._model is not None
        entry = self._model.entry(row)
        if not self._clippable(entry, self._delegate.measure(entry)):
            return
        self._expanded ^= {entry.uid}
        self._measured[row] = 0
        if len(self._expanded) > 1000:  # uids of rows long gone: keep it bounded
            self._expanded = {entry.uid} & self._expanded
        self._changed()

    def _strip_at(self, row: int, local: QPoint) -> bool:
        """Whether ``local`` (row coordinates) is on a tall message's link line."""
        assert self._model is not None
        entry = self._model.entry(row)
        if not self._clippable(entry, self._delegate.measure(entry)):
            return False
        return local.y() >= self.row_rect(row).height() - self._strip_height()

    def _paint_strip(self, painter: QPainter, rect: QRect, expanded: bool) -> None:
        strip = self._strip_height()
        link = self.palette().color(QPalette.ColorRole.Link)
        painter.save()
        painter.setPen(link)
        font = painter.font()
        font.setUnderline(True)
        painter.setFont(font)
        painter.drawText(QRect(rect.left() + 6, rect.bottom() + 1 - strip, rect.width() - 12,
                               strip),
                         int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                         SHOW_LESS if expanded else SHOW_MORE)
        painter.restore()

    def ensure_laid_out(self, *, sync_bar: bool = True) -> None:
        """Measure the rows on screen, place them, and set the scroll bar (what a
        paint does first; for callers that need positions before the next paint)."""
        if self._dirty:
            self._relayout(sync_bar=sync_bar)
        elif sync_bar and self._bar_stale:
            self._sync_bar()

    @Slot()
    def _sync_bar(self) -> None:
        if self._dirty:
            self._relayout()
        elif self._bar_stale:
            self._set_bar(self._last_top, self._heights.total(), max(self.viewport().height(), 1))

    def _relayout(self, *, sync_bar: bool = True) -> None:
        self._dirty = False
        heights = self._heights
        count = len(heights)
        vh = max(self.viewport().height(), 1)
        if count == 0:
            self._visible = []
            self._last_top = 0
            self._anchor_row, self._anchor_off = 0, 0
            self._set_bar(0, 0, vh)
            return
        self._place(vh)
        if sync_bar:
            self._set_bar(self._last_top, heights.total(), vh)
        else:
            self._bar_stale = True

    def _place(self, vh: int) -> None:
        """Measure what is on screen and where; set ``_visible`` and ``_last_top``."""
        heights = self._heights
        count = len(heights)
        measure = self._measure_row
        if self._follow:
            filled, row = 0, count - 1
            while row >= 0 and filled < vh:
                filled += measure(row)
                row -= 1
            top = max(0, heights.total() - vh)
        else:
            anchor = min(max(self._anchor_row, 0), count - 1)
            offset = min(max(self._anchor_off, 0), measure(anchor) - 1)
            filled, row = heights.get(anchor) - offset, anchor + 1
            while row < count and filled < vh:
                filled += measure(row)
                row += 1
            if filled < vh:  # too close to the end: show rows above it too
                need, row = vh - filled, anchor - 1
                while row >= 0 and need > 0:
                    need -= measure(row)
                    row -= 1
            top = heights.top_of(anchor) + offset
            bottom = max(0, heights.total() - vh)
            if top >= bottom:
                top = bottom
                self._follow = True
        row = heights.row_at(top)
        y = heights.top_of(row) - top
        visible = []
        while row < count and y < vh:
            height = measure(row)
            visible.append((row, y, height))
            y += height
            row += 1
        self._visible = visible
        self._last_top = top
        first = visible[0][0]
        self._anchor_row, self._anchor_off = first, top - heights.top_of(first)

    def _rows_from(self, top: int, y0: int, y1: int) -> list[tuple[int, int, int]]:
        """(row, y, height) of the rows between ``y0`` and ``y1`` (viewport
        coordinates) when the viewport's top is at content y ``top``."""
        heights = self._heights
        count = len(heights)
        row = heights.row_at(top + y0)
        if row < 0:
            return []
        y = heights.top_of(row) - top
        rows = []
        while row < count and y < y1:
            height = self._measure_row(row)
            rows.append((row, y, height))
            y += height
            row += 1
        return rows

    def _set_bar(self, top: int, total: int, vh: int) -> None:
        self._bar_stale = False
        self._bar_timer.stop()
        bar = self.verticalScrollBar()
        self._setting_bar = True
        try:
            bar.setRange(0, max(0, total - vh))
            bar.setPageStep(vh)
            bar.setValue(top)
        finally:
            self._setting_bar = False

    @Slot(int)
    def _on_bar_value(self, value: int) -> None:
        if self._setting_bar:
            return
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 2
        heights = self._heights
        row = heights.row_at(value)
        if row >= 0:
            self._anchor_row, self._anchor_off = row, value - heights.top_of(row)
        self._changed()
        if value == bar.minimum() and bar.maximum() > bar.minimum():
            self.topReached.emit()

    def scrollContentsBy(self, _dx: int, _dy: int) -> None:
        """Nothing: positions come from ``_relayout`` (``_on_bar_value`` asks for it)."""

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._delegate.set_width(self.viewport().width()):
            self._reguess_heights()
        self._changed()

    def changeEvent(self, event: Any) -> None:
        super().changeEvent(event)
        if event.type() in (
            event.Type.FontChange,
            event.Type.PaletteChange,
            event.Type.StyleChange,
            event.Type.LayoutDirectionChange,
        ):
            self._delegate.update_style()
            self._reguess_heights()
            self.verticalScrollBar().setSingleStep(max(self._delegate.line_height(), 1))
            self._changed()

    # ------------------------------------------------------------- painting

    def paintEvent(self, event: QPaintEvent) -> None:
        clip = event.rect()
        # The region, not its bounding rect: two strips (top and bottom) are not all.
        whole = (QRegion(self.viewport().rect()) - event.region()).isEmpty()
        self.ensure_laid_out(sync_bar=whole)
        model = self._model
        if model is None:
            return
        if whole or self._painted_top == self._last_top:
            rows = self._visible
        else:
            # Rows were appended since the pixels on screen were painted, and their
            # scroll (_flush_appends) has not run yet: the pixels outside this region
            # still show the rows at _painted_top. Painting this part at the new top
            # would tear the picture (and the scroll, finding nothing to move, would
            # never mend it): paint the part of the picture that is on screen.
            rows = self._rows_from(self._painted_top, clip.top(), clip.bottom() + 1)
        painter = QPainter(self.viewport())
        width = self.viewport().width()
        lo, hi = self._selection()
        delegate = self._delegate
        focus = self.hasFocus()
        clipped_least = self._clip_height() + self._strip_height()  # a clipped row's height
        try:
            for row, y, height in rows:
                rect = QRect(0, y, width, height)
                if not rect.intersects(clip):
                    continue
                entry = model.entry(row)
                if height >= clipped_least and \
                        self._clippable(entry, full := delegate.measure(entry)):
                    body = QRect(0, y, width, height - self._strip_height())
                    painter.save()
                    painter.setClipRect(body)
                    delegate.paint(painter, QRect(0, y, width, full), entry,
                                   lo <= row <= hi)
                    painter.restore()
                    self._paint_strip(painter, rect, entry.uid in self._expanded)
                else:
                    delegate.paint(painter, rect, entry, lo <= row <= hi)
                if focus and row == self._current:
                    pen = QPen(self.palette().color(QPalette.ColorRole.Highlight))
                    pen.setStyle(Qt.PenStyle.DotLine)
                    painter.setPen(pen)
                    painter.drawRect(rect.adjusted(0, 0, -1, -1))
        finally:
            painter.end()
        self._painted_at = self.clock()
        if whole:
            self._painted_top = self._last_top
            self._full_repaint = False
        # The layouts of rows scrolled off are dropped by the warm-up, once still
        # (deleting 35 QTextLayouts took ~1 ms of a page up), or by the cache's bound.
        self._warm_todo = None
        self._warm_timer.start(self.warm_ms)  # again: only once the view is still

    @Slot()
    def _warm_up(self) -> None:
        """Measure and lay out the rows of a page above the screen, then a page below,
        for ``_WARM_SLICE_S`` at most, and come back on the next pass for the rest.

        Heights measured above the first row on screen move the content's y, not the
        picture: the view's top and the pixels' top move with them, and the scroll bar
        follows (its handle moves by what the guesses were off)."""
        model = self._model
        if model is None or not self._visible or self._dirty:
            return  # the next paint starts it again
        heights = self._heights
        count = len(heights)
        first, last = self._visible[0][0], self._visible[-1][0]
        if self._warm_todo is None:
            self._delegate.retain(model.entry(row).uid for row, _y, _h in self._visible)
            vh = max(self.viewport().height(), 1)
            todo = []
            for rows in (range(first - 1, -1, -1), range(last + 1, count)):  # up, down
                filled = 0
                for row in rows:
                    if filled >= vh:
                        break
                    filled += heights.get(row)
                    todo.append(row)
            todo.reverse()  # popped from the end: the rows above first
            self._warm_todo = todo
        todo = self._warm_todo
        deadline = self.clock() + _WARM_SLICE_S
        moved = 0
        while todo and self.clock() < deadline:
            row = todo.pop()
            if row >= count:
                continue
            before = heights.get(row)
            height = self._measure_row(row)
            entry = model.entry(row)
            self._delegate.prepare(entry)
            if row < first:
                moved += height - before
        if moved:
            self._last_top += moved
            self._painted_top += moved
            self._bar_stale = True
            if not self._bar_timer.isActive():
                self._bar_timer.start()
        if todo:
            self._warm_timer.start(0)

    # ------------------------------------------------------- reading (tests, a11y)

    def visible_rows(self) -> list[tuple[int, QRect]]:
        """(row, rect in viewport coordinates) of every row on screen, top first."""
        self.ensure_laid_out()
        width = self.viewport().width()
        return [(row, QRect(0, y, width, h)) for row, y, h in self._visible]

    def painted_text(self, row: int) -> str:
        """The string laid out (and painted) for ``row``: peer text verbatim, bidi-
        isolated, newlines as U+2028; "" for markers."""
        assert self._model is not None
        return self._delegate.laid_out_text(self._model.entry(row))

    def row_rect(self, row: int) -> QRect:
        """Where ``row`` is in viewport coordinates (off screen: outside the viewport)."""
        self.ensure_laid_out()
        for r, y, h in self._visible:
            if r == row:
                return QRect(0, y, self.viewport().width(), h)
        top = self._heights.top_of(row) - self.verticalScrollBar().value()
        return QRect(0, top, self.viewport().width(), self._heights.get(row))

    def row_at(self, pos: QPoint) -> int:
        """The row under ``pos`` (viewport coordinates), -1 if none."""
        self.ensure_laid_out()
        y = pos.y()
        for row, top, height in self._visible:
            if top <= y < top + height:
                return row
        return -1

    def at_bottom(self) -> bool:
        return self._follow

    def scroll_to_bottom(self) -> None:
        """Jump to the newest row and follow it again."""
        self._follow = True
        self._changed()
        self.ensure_laid_out()

    def scroll_to_row(self, row: int) -> None:
        """Make ``row`` fully visible, scrolling as little as possible."""
        count = len(self._heights)
        if not 0 <= row < count:
            return
        self.ensure_laid_out()
        vh = self.viewport().height()
        for r, y, h in self._visible:
            if r == row and y >= 0 and (y + h <= vh or y == 0):
                return
        height = self._measure_row(row)
        top = self._heights.top_of(row)
        current = self.verticalScrollBar().value()
        if top < current or height >= vh:
            self._anchor_row, self._anchor_off = row, 0
            self._follow = row == count - 1 and height >= vh
        else:  # below: put it at the bottom edge
            self._anchor_row = self._heights.row_at(top + height - vh)
            self._anchor_off = top + height - vh - self._heights.top_of(self._anchor_row)
            self._follow = row == count - 1
        self._changed()
        self.ensure_laid_out()

    # ------------------------------------------------------------- selection

    def _selection(self) -> tuple[int, int]:
        if self._sel_anchor < 0 or self._sel_end < 0:
            return 0, -1
        return min(self._sel_anchor, self._sel_end), max(self._sel_anchor, self._sel_end)

    def selected_rows(self) -> list[int]:
        lo, hi = self._selection()
        return list(range(lo, hi + 1))

    def current_row(self) -> int:
        return self._current

    def select_rows(self, first: int, last: int) -> None:
        count = len(self._heights)
        if count == 0:
            return
        self._sel_anchor = min(max(first, 0), count - 1)
        self._sel_end = self._current = min(max(last, 0), count - 1)
        self._changed()

    @Slot()
    def select_all(self) -> None:
        self.select_rows(0, len(self._heights) - 1)

    def clear_selection(self) -> None:
        self._sel_anchor = self._sel_end = -1
        self._changed()

    def selected_text(self) -> str:
        """What Copy puts on the clipboard: one line per row, "hh:mm text"."""
        model = self._model
        lo, hi = self._selection()
        if model is None or hi < 0:
            return ""
        lines = []
        for entry in model.entries_between(lo, hi):
            if entry.kind in (RowKind.MESSAGE, RowKind.NOTICE):
                lines.append(f"{format_time(entry.ts)}  {display_text(entry)}")
        return "\n".join(lines)

    @Slot()
    def copy(self) -> None:
        text = self.selected_text()
        if text:
            QGuiApplication.clipboard().setText(text)

    def _update_actions(self) -> None:
        self.copy_action.setEnabled(self._sel_end >= 0)

    # ---------------------------------------------------------------- mouse

    def _entry_at(self, pos: QPoint) -> tuple[int, MessageEntry | None, QPoint]:
        row = self.row_at(pos)
        if row < 0 or self._model is None:
            return -1, None, QPoint()
        rect = self.row_rect(row)
        return row, self._model.entry(row), pos - rect.topLeft()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        pos = event.position().toPoint()
        row = self.row_at(pos)
        self._press_pos = pos
        self._press_row = row
        self._dragged = False
        if row < 0:
            self.clear_selection()
            return
        shift = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        if shift and self._sel_anchor >= 0:
            self._sel_end = self._current = row
        else:
            self._sel_anchor = self._sel_end = self._current = row
        self._changed()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position().toPoint()
        if event.buttons() & Qt.MouseButton.LeftButton and self._press_row >= 0:
            if (pos - self._press_pos).manhattanLength() >= QApplication.startDragDistance():
                self._dragged = True
            bar = self.verticalScrollBar()
            if pos.y() < 0:  # dragging above or below: scroll along
                bar.setValue(bar.value() - bar.singleStep())
            elif pos.y() >= self.viewport().height():
                bar.setValue(bar.value() + bar.singleStep())
            self.ensure_laid_out()
            clamped = QPoint(pos.x(), min(max(pos.y(), 0), self.viewport().height() - 1))
            row = self.row_at(clamped)
            if row >= 0 and row != self._sel_end:
                self._sel_end = self._current = row
                self._changed()
            return
        row, entry, local = self._entry_at(pos)
        hand = entry is not None and (
            self._is_retry_target(entry) or self._delegate.link_at(entry, local) is not None
            or (entry.kind == RowKind.MESSAGE and self._strip_at(row, local))
        )
        self.viewport().setCursor(
            Qt.CursorShape.PointingHandCursor if hand else Qt.CursorShape.ArrowCursor
        )

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mouseReleaseEvent(event)
            return
        pos = event.position().toPoint()
        row, entry, local = self._entry_at(pos)
        pressed, self._press_row = self._press_row, -1
        if self._dragged or entry is None or row != pressed:
            return
        if entry.kind != RowKind.MESSAGE:
            return
        if self._strip_at(row, local):
            self.toggle_expanded(row)
            return
        url = self._delegate.link_at(entry, local)
        if url is not None:
            self.linkActivated.emit(url)
        elif self._is_retry_target(entry):
            self.retryRequested.emit(entry.local_id)

    @staticmethod
    def _is_retry_target(entry: MessageEntry) -> bool:
        return entry.state == SendState.FAILED and entry.local_id is not None

    def wheelEvent(self, event: QWheelEvent) -> None:
        bar = self.verticalScrollBar()
        at_top = bar.value() == bar.minimum()
        super().wheelEvent(event)
        if at_top and event.angleDelta().y() > 0 and len(self._heights):
            self.topReached.emit()  # already at the top and still going: ask again

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        row = self.row_at(self.viewport().mapFrom(self, event.pos()))
        lo, hi = self._selection()
        if row >= 0 and not lo <= row <= hi:  # right-click outside the selection selects it
            self.select_rows(row, row)
        self._update_actions()
        super().contextMenuEvent(event)

    def viewportEvent(self, event: Any) -> bool:
        if event.type() == event.Type.ToolTip and self._model is not None:
            row = self.row_at(event.pos())
            if row >= 0:
                # The time, and for a join/leave summary every name in it.
                tip = self._model.data(self._model.index(row), Qt.ItemDataRole.ToolTipRole)
                QToolTip.showText(event.globalPos(), tip, self)
                return True
        return super().viewportEvent(event)

    # ------------------------------------------------------------- keyboard

    def keyPressEvent(self, event: QKeyEvent) -> None:
        count = len(self._heights)
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            return
        if event.matches(QKeySequence.StandardKey.SelectAll):
            self.select_all()
            return
        key = event.key()
        bar = self.verticalScrollBar()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space) and \
                0 <= self._current < count:
            self.toggle_expanded(self._current)  # "Show more" from the keyboard
            return
        if count == 0 or key not in _NAV_KEYS:
            super().keyPressEvent(event)
            return
        self.ensure_laid_out()
        current = self._current
        if current < 0:  # start from what is on screen
            current = self._visible[-1][0] if self._visible else count - 1
        if key == Qt.Key.Key_Up:
            target = current - 1
        elif key == Qt.Key.Key_Down:
            target = current + 1
        elif key == Qt.Key.Key_Home:
            target = 0
        elif key == Qt.Key.Key_End:
            target = count - 1
        else:  # a page: the row a viewport's height away
            step = bar.pageStep() if key == Qt.Key.Key_PageDown else -bar.pageStep()
            y = self._heights.top_of(current) + step
            target = self._heights.row_at(y)
            if target == current:
                target += 1 if step > 0 else -1
        target = min(max(target, 0), count - 1)
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            if self._sel_anchor < 0:
                self._sel_anchor = current
            self._sel_end = target
        else:
            self._sel_anchor = self._sel_end = target
        self._current = target
        if key == Qt.Key.Key_End:
            self.scroll_to_bottom()
        else:
            self.scroll_to_row(target)
        self._changed()
        upward = key in (Qt.Key.Key_Up, Qt.Key.Key_PageUp, Qt.Key.Key_Home)
        if upward and bar.value() == 0:  # at the top, and still going: older history
            self.topReached.emit()

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        self.viewport().update()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self.viewport().update()

    # -------------------------------------------------------- accessibility

    def accessible_text(self, row: int) -> str:
        """What a screen reader reads for ``row``: the sender, the text, the time."""
        assert self._model is not None
        entry = self._model.entry(row)
        if entry.kind == RowKind.UNREAD_MARKER:
            return "New messages below"
        if entry.kind == RowKind.GAP_MARKER:
            return "Some history was lost here"
        return f"{display_text(entry)}, at {format_time(entry.ts)}"

    def _announce(self, entry: MessageEntry) -> None:
        if entry.kind not in (RowKind.MESSAGE, RowKind.NOTICE) or entry.is_own:
            return
        text = display_text(entry)
        if QAccessible.isActive():
            event = QAccessibleAnnouncementEvent(self, text)
            event.setPoliteness(QAccessible.AnnouncementPoliteness.Polite)
            QAccessible.updateAccessibility(event)
        self.announced.emit(text)


_NAV_KEYS = frozenset(
    {
        Qt.Key.Key_Up,
        Qt.Key.Key_Down,
        Qt.Key.Key_PageUp,
        Qt.Key.Key_PageDown,
        Qt.Key.Key_Home,
        Qt.Key.Key_End,
    }
)


# ----------------------------------------------------------- accessibility


class _RowAccessible(QAccessibleInterface):
    """One message on screen, as a list item a screen reader can read."""

    def __init__(self, owner: _ViewAccessible, view: MessageView, uid: int) -> None:
        super().__init__()
        self._owner = owner
        self._view = view
        self._uid = uid

    def _row(self) -> int:
        model = self._view.model()
        if model is None:
            return -1
        for row, _y, _h in self._view._visible:
            if model.entry(row).uid == self._uid:
                return row
        return -1

    def isValid(self) -> bool:
        return self._row() >= 0

    def object(self) -> QObject | None:
        return None

    def window(self) -> Any:
        return self._view.window().windowHandle()

    def parent(self) -> QAccessibleInterface:
        return self._owner

    def child(self, _index: int) -> None:
        return None

    def childCount(self) -> int:
        return 0

    def indexOfChild(self, _child: QAccessibleInterface) -> int:
        return -1

    def childAt(self, _x: int, _y: int) -> None:
        return None

    def text(self, kind: QAccessible.Text) -> str:
        row = self._row()
        if row < 0:
            return ""
        if kind == QAccessible.Text.Name:
            return self._view.accessible_text(row)
        if kind == QAccessible.Text.Description:
            model = self._view.model()
            assert model is not None
            stamp = QDateTime.fromMSecsSinceEpoch(model.entry(row).ts)
            return stamp.toString("yyyy-MM-dd hh:mm:ss")
        return ""

    def setText(self, _kind: QAccessible.Text, _text: str) -> None:
        pass

    def rect(self) -> QRect:
        row = self._row()
        if row < 0:
            return QRect()
        rect = self._view.row_rect(row)
        viewport = self._view.viewport()
        return QRect(viewport.mapToGlobal(rect.topLeft()), rect.size())

    def role(self) -> QAccessible.Role:
        return QAccessible.Role.ListItem

    def state(self) -> QAccessible.State:
        state = QAccessible.State()
        row = self._row()
        state.selectable = True
        state.focusable = True
        if row >= 0:
            state.selected = row in self._view.selected_rows()
            state.focused = self._view.hasFocus() and row == self._view.current_row()
        else:
            state.invisible = True
        return state


class _ViewAccessible(QAccessibleWidget):
    """The view as a list whose children are the messages on screen."""

    def __init__(self, view: MessageView) -> None:
        super().__init__(view, QAccessible.Role.List, "Messages")
        self._view = view
        self._rows: dict[int, _RowAccessible] = {}  # by uid, the ones on screen

    def _visible_uids(self) -> list[int]:
        view = self._view
        model = view.model()
        if model is None:
            return []
        view.ensure_laid_out()
        return [model.entry(row).uid for row, _y, _h in view._visible]

    def childCount(self) -> int:
        return len(self._visible_uids())

    def child(self, index: int) -> QAccessibleInterface | None:
        uids = self._visible_uids()
        if not 0 <= index < len(uids):
            return None
        uid = uids[index]
        found = self._rows.get(uid)
        if found is None:
            found = self._rows[uid] = _RowAccessible(self, self._view, uid)
            if len(self._rows) > 4 * len(uids) + 64:  # forget rows long gone
                keep = set(uids)
                self._rows = {u: r for u, r in self._rows.items() if u in keep}
        return found

    def indexOfChild(self, child: QAccessibleInterface) -> int:
        uid = getattr(child, "_uid", None)
        uids = self._visible_uids()
        return uids.index(uid) if uid in uids else -1

    def childAt(self, x: int, y: int) -> QAccessibleInterface | None:
        view = self._view
        pos = view.viewport().mapFromGlobal(QPoint(x, y))
        row = view.row_at(pos)
        if row < 0:
            return None
        uids = self._visible_uids()
        model = view.model()
        assert model is not None
        uid = model.entry(row).uid
        return self.child(uids.index(uid)) if uid in uids else None


def _accessible_factory(_key: str, obj: QObject) -> QAccessibleInterface | None:
    if isinstance(obj, MessageView):
        return _ViewAccessible(obj)
    return None


_factory_installed = False


def _install_accessibility() -> None:
    global _factory_installed
    if not _factory_installed:
        QAccessible.installFactory(_accessible_factory)
        _factory_installed = True
