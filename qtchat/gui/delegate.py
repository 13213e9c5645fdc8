"""Painting chat rows: ``MessageDelegate`` measures and paints ``MessageModel`` rows
for ``qtchat.gui.message_view.MessageView``.

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
  ▌ 12:06  bob: hi alice, look                     (mentions you: amber bar, tint)
    12:06  me: pending text
           ◷ sending…   /   ⚠ failed — click to retry   (red)

The delegate keeps no per-row state but the text layouts of the rows the view
painted last (``retain``): the view keeps the heights. ``measure`` is exact, and
cheap for a short single-line ASCII row (summed per-character advances instead of
a text layout); ``estimate_table`` gives the view a height guess per text length for
rows it has not measured yet (off screen), so a backlog costs no layout at all.
"""

from __future__ import annotations

import logging
import math
import re
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, attrgetter

from PySide6.QtCore import QObject, QPoint, QPointF, QRect, QSize, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QPalette,
    QPen,
    QStaticText,
    QTextCharFormat,
    QTextLayout,
    QTextLine,
    QTextOption,
    QTransform,
)
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionProgressBar, QWidget

from qtchat.gui.models import (
    MessageEntry,
    MessageModel,
    RowKind,
    SendState,
    file_of,
    format_time,
    sender_color,
)

log = logging.getLogger(__name__)

__all__ = ["FileRow", "MessageDelegate", "estimate_code", "estimate_codes"]

_PAD_X = 6  # left/right margin of a row
_PAD_Y = 2  # top/bottom margin of a row
_GAP = 8  # between the time column and the text
_LAYOUT_CACHE = 512  # at most this many layouts, whatever the view asks to retain

_SENDING_TEXT = "◷ sending…"
_FAILED_TEXT = "⚠ failed — click to retry"
# An own whisper's receipts (features §6): stored by the host, in their app, looked at.
_RECEIPT_TEXT = {"sent": "✓ sent", "delivered": "✓✓ delivered", "read": "✓✓ read"}
_UNREAD_TEXT = "new messages"
_GAP_TEXT = "⚠ some history was lost"
_FAILED_COLOR = QColor(0xD3, 0x2F, 0x2F)
_UNREAD_COLOR = QColor(0xC6, 0x28, 0x28)  # was E53935: 4.2:1 on white, under 4.5:1
# The reds lighter, for a dark Base: the ones above are ~3:1 there.
_RED_ON_DARK = QColor(0xFF, 0x8A, 0x80)
_GAP_COLOR = QColor(0xC7, 0x7C, 0x02)  # amber, legible on light and dark
_MENTION_BAR = QColor(0xF5, 0x9E, 0x0B)  # amber bar (and, faint, tint) of a mention

# First-strong isolation (U+2068 … U+2069): right-to-left or override characters in
# a peer's text cannot reorder the name in front of it.
_FSI = "\u2068"
_PDI = "\u2069"
_LINE_SEP = "\u2028"  # QTextLayout breaks lines at U+2028, not at "\n"
_NEWLINES = re.compile(r"\r\n|\r|\n")
_URL = re.compile(r"https?://[^\s<>\"'\u2028]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""


PICTURE_BOX = QSize(320, 240)  # the largest a picture is shown inline


@dataclass(slots=True)
class FileRow:
    """What a file row shows under its message, from whoever tracks its transfers
    (``MessageDelegate.files.file_row(entry)``, the files glue). All plain text.

    ``picture``: the decoded preview to draw, or ``picture_note`` in its place ("picture
    too large to show", "loading the picture…"); ``fraction``: a progress bar (0–1)
    with ``state`` written on it, None for a state line alone; ``actions``: (key, label)
    links on the last line, e.g. ("save", "Save as…"), ("cancel", "Cancel").
    """

    title: str
    detail: str
    state: str = ""
    fraction: float | None = None
    failed: bool = False
    picture: QImage | None = None
    picture_note: str = ""
    actions: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _RowPaint:
    """What ``paint`` needs for one row at one width (built once, LRU-cached)."""

    height: int
    layout: QTextLayout | None = None  # the wrapped text (messages and notices)
    text_origin: QPointF = field(default_factory=QPointF)  # relative to the row's top-left
    links: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, url)
    status: str = ""  # pending state line
    status_y: float = 0.0
    file_top: int = 0  # a file row: where its box starts (0: no file box)
    file_lines: int = 0  # … and its text lines: name, size and type, a state if any
    picture: QSize = field(default_factory=QSize)  # the picture's size in that box


class MessageDelegate(QObject):
    """Measures and paints ``MessageModel`` rows for one view at one width.

    ``view`` gives the font, palette and layout direction; call ``update_style``
    when they change and ``set_width`` when the viewport's width does.
    """

    def __init__(self, view: QWidget) -> None:
        super().__init__(view)
        self._view = view
        self.files = None  # has file_row(entry) -> FileRow: the files glue sets it
        self._width = max(view.width(), 1)
        self._paints: OrderedDict[int, _RowPaint] = OrderedDict()
        self._estimates: list[int] | None = None
        self.update_style()

    # ------------------------------------------------------------ style state

    def update_style(self) -> None:
        """Take the view's font and palette again (every cached layout goes)."""
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
        self._avg_char = max(fm.averageCharWidth(), 1.0)
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
        mention = QColor(_MENTION_BAR)
        mention.setAlpha(40)  # faint: the bar says it, the tint only groups
        self._mention_tint = mention
        link = palette.color(QPalette.ColorRole.Link)
        self._link_color = link.lighter(150) if self._dark else link
        self._failed_color = _RED_ON_DARK if self._dark else _FAILED_COLOR
        self._unread_color = _RED_ON_DARK if self._dark else _UNREAD_COLOR
        # Per-character advances for the single-line fast path (printable ASCII).
        self._adv = _advance_table(font)
        self._adv_bold = _advance_table(self._bold)
        # ": " after the bold name, plus a few pixels for rounding.
        self._prefix_slack = _advance_table(self._bold)[ord(":")] + fm.horizontalAdvance(" ") + 4
        self._invalidate()

    def _invalidate(self) -> None:
        self._paints.clear()
        self._name_formats: dict[str, QTextCharFormat] = {}
        self._option = QTextOption()
        self._option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self._option.setTextDirection(self._view.layoutDirection())
        self._centred_option = QTextOption(self._option)
        self._centred_option.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self._statics: dict[str, QStaticText] = {}
        self._one_line: int | None = None
        self._estimates = None

    def width(self) -> int:
        return self._width

    def set_width(self, width: int) -> bool:
        """Lay out for rows ``width`` px wide; True if that changed anything."""
        width = max(width, 1)
        if width == self._width:
            return False
        self._width = width
        self._invalidate()
        return True

    def _text_width(self) -> int:
        return max(self._width - 2 * _PAD_X - self._time_w - _GAP, 20)

    def measure(self, entry: MessageEntry) -> int:
        """The row's exact height at this width (see ``_measure``)."""
        return self._measure(entry)

    def line_height(self) -> int:
        return self._line_h

    def estimate_table(self) -> list[int]:
        """Height guesses at this width, indexed by ``estimate_code(entry)``.

        A row's text of ``n`` characters wraps to about ``n × average advance ÷
        text width`` lines; each line break in it and a pending status add one.
        Only for rows not measured yet: the view measures a row exactly before it
        paints it. A list (indexing it in a comprehension is the fastest lookup
        from Python: a million rows re-guessed in ~40 ms) of shared int objects.
        """
        table = self._estimates
        if table is None:  # 65,536 entries, a few hundred distinct heights
            per_line = max(int(self._text_width() / self._avg_char), 1)
            line_h = self._line_h
            one = self._one_line_height()
            shared: dict[int, int] = {}
            table = []
            for extra in range(_CODE_EXTRA_MAX + 1):
                base = one + extra * line_h
                table.extend(
                    shared.setdefault(h, h)
                    for h in (
                        min(base + ((chars - 1) // per_line) * line_h, 0xFFFF)
                        if chars
                        else self._marker_h
                        for chars in range(_CODE_CHARS_MAX + 1)
                    )
                )
            self._estimates = table
        return table

    def _measure(self, entry: MessageEntry) -> int:
        """Row height; cheap for a short single-line ASCII message, exact otherwise."""
        if (
            entry.kind == RowKind.MESSAGE
            and entry.state == SendState.SENT
            and not entry.is_whisper
            and not entry.is_action
            and file_of(entry) is None
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
        # The sender's colour, also on "→ bob:" and "* me waves" in a private tab:
        # one person, one colour, wherever they write.
        name = entry.sender
        name_fmt = self._name_formats.get(name)
        if name_fmt is None:
            if len(self._name_formats) > 2048:
                self._name_formats.clear()
            name_fmt = QTextCharFormat()
            name_fmt.setFontWeight(QFont.Weight.Bold)
            name_fmt.setForeground(QBrush(sender_color(name, self._dark)))
            self._name_formats[name] = name_fmt
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
        if entry.state != SendState.SENT and file_of(entry) is None:  # (a file: its box)
            built.status = _FAILED_TEXT if entry.state == SendState.FAILED else _SENDING_TEXT
            built.status_y = _PAD_Y + height
            built.height += self._status_h
        elif entry.is_whisper and entry.is_own and entry.receipt:
            built.status = _RECEIPT_TEXT[entry.receipt]  # sent, delivered, read
            built.status_y = _PAD_Y + height
            built.height += self._status_h
        row = self.file_row(entry)
        if row is not None:
            built.file_top = built.height
            if row.picture is not None and not row.picture.isNull():
                box = QSize(min(PICTURE_BOX.width(), self._text_width()), PICTURE_BOX.height())
                size = row.picture.size()
                if size.width() > box.width() or size.height() > box.height():
                    size = size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio)
                built.picture = QSize(max(size.width(), 1), max(size.height(), 1))
                built.height += built.picture.height() + 4
            elif row.picture_note:
                built.height += self._line_h
            built.file_lines = 3 if row.state or row.fraction is not None else 2
            built.height += (built.file_lines + 1) * self._line_h + 2 * _PAD_Y
        return built

    def file_row(self, entry: MessageEntry) -> FileRow | None:
        """What the files glue says a file row shows (None: not a file row)."""
        if self.files is None or file_of(entry) is None or entry.kind != RowKind.MESSAGE:
            return None
        return self.files.file_row(entry)

    def prepare(self, entry: MessageEntry) -> None:
        """Lay out ``entry``'s text now, ahead of its first paint (kept like a row on
        screen's while the view retains it)."""
        if entry.kind in (RowKind.MESSAGE, RowKind.NOTICE):
            self._paint_for(entry)

    def forget(self, uid: int) -> None:
        """Build that row again when next measured (its file box changed)."""
        self._paints.pop(uid, None)

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
        layout.setTextOption(self._centred_option if centred else self._option)
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

    def laid_out_text(self, entry: MessageEntry) -> str:
        """The exact string handed to QTextLayout for ``entry`` ("" for markers).

        For tests and accessibility checks: the peer's text appears in it verbatim
        (newlines become U+2028, and it is wrapped in U+2068 … U+2069).
        """
        built = self._paint_for(entry)
        return built.layout.text() if built.layout is not None else ""

    def retain(self, uids: Iterable[int]) -> None:
        """Keep the text layouts of these rows (the ones on screen), drop the rest."""
        keep = set(uids)
        paints = self._paints
        for uid in [uid for uid in paints if uid not in keep]:
            del paints[uid]

    # ------------------------------------------------------------- painting

    def paint(self, painter: QPainter, rect: QRect, entry: MessageEntry, selected: bool) -> None:
        """Paint ``entry`` into ``rect`` (as wide as the width set, as tall as measured)."""
        painter.save()
        try:
            kind = entry.kind
            if kind == RowKind.UNREAD_MARKER:
                self._paint_marker(painter, rect, _UNREAD_TEXT, self._unread_color,
                                   dashed=False)
            elif kind == RowKind.GAP_MARKER:
                self._paint_marker(painter, rect, _GAP_TEXT, _GAP_COLOR, dashed=True)
            else:
                self._paint_text_row(painter, rect, entry, selected)
        finally:
            painter.restore()

    def _paint_text_row(
        self, painter: QPainter, rect: QRect, entry: MessageEntry, selected: bool
    ) -> None:
        built = self._paint_for(entry)
        if selected:
            painter.fillRect(rect, self._select_tint)
        elif entry.is_own:
            painter.fillRect(rect, self._own_tint)
        if self.is_mention(entry):
            if not selected:
                painter.fillRect(rect, self._mention_tint)
            painter.fillRect(QRect(rect.left(), rect.top(), 3, rect.height()), _MENTION_BAR)
        painter.setFont(self._font)
        painter.setPen(self._muted)
        stamp = self._static_text(format_time(entry.ts))
        x = rect.left() + _PAD_X + self._time_w - stamp.size().width()  # right-aligned
        painter.drawStaticText(QPointF(x, rect.top() + _PAD_Y), stamp)
        if built.layout is not None:
            painter.setPen(self._muted if entry.kind == RowKind.NOTICE else self._text_color)
            built.layout.draw(painter, QPointF(rect.topLeft()) + built.text_origin)
        if built.status:
            failed = entry.state == SendState.FAILED
            painter.setPen(self._failed_color if failed else self._muted)
            origin = QPointF(rect.left() + built.text_origin.x(), rect.top() + built.status_y)
            painter.drawStaticText(origin, self._static_text(built.status))
        if built.file_top:
            row = self.file_row(entry)
            if row is not None:
                self._paint_file(painter, rect, built, row)

    # ------------------------------------------------------------- file rows

    def _file_rects(self, built: _RowPaint, row: FileRow) -> dict[str, QRect]:
        """Where a file box's parts are, relative to the row's top-left: "box",
        "picture" (or "note"), "lines" (the text lines) and each action's key."""
        x = int(built.text_origin.x())
        width = min(self._text_width(), 480)
        y = built.file_top + _PAD_Y
        rects: dict[str, QRect] = {}
        if not built.picture.isEmpty():
            rects["picture"] = QRect(QPoint(x, y), built.picture)
            y += built.picture.height() + 4
        elif row.picture_note:
            rects["note"] = QRect(x, y, width, self._line_h)
            y += self._line_h
        rects["lines"] = QRect(x, y, width, built.file_lines * self._line_h)
        fm = QFontMetricsF(self._font)
        ax = x
        actions_y = y + built.file_lines * self._line_h
        for key, label in row.actions:
            w = math.ceil(fm.horizontalAdvance(label))
            rects[key] = QRect(ax, actions_y, w, self._line_h)
            ax += w + 2 * _GAP
        rects["box"] = QRect(x - 4, built.file_top, width + 8,
                             actions_y + self._line_h + _PAD_Y - built.file_top)
        return rects

    def _paint_file(self, painter: QPainter, rect: QRect, built: _RowPaint, row: FileRow) -> None:
        rects = {k: r.translated(rect.topLeft()) for k, r in self._file_rects(built, row).items()}
        box = rects["box"]
        frame = QColor(self._muted)
        frame.setAlpha(90)
        painter.setPen(QPen(frame, 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(box.adjusted(0, 0, -1, -1), 4, 4)
        picture = rects.get("picture")
        if picture is not None and row.picture is not None and not row.picture.isNull():
            painter.drawImage(picture, row.picture)
        note = rects.get("note")
        if note is not None:  # plain text: ours ("picture too large to show")
            painter.setFont(self._italic)
            painter.setPen(self._muted)
            painter.drawText(note, Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextSingleLine,
                             row.picture_note)
        lines = rects["lines"]
        line_h = self._line_h
        flags = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter | \
            Qt.TextFlag.TextSingleLine
        painter.setFont(self._bold)
        painter.setPen(self._text_color)
        fm = painter.fontMetrics()
        title = fm.elidedText(f"{_FSI}{row.title}{_PDI}", Qt.TextElideMode.ElideMiddle,
                              lines.width())
        painter.drawText(QRect(lines.left(), lines.top(), lines.width(), line_h), flags, title)
        painter.setFont(self._font)
        painter.setPen(self._muted)
        fm = painter.fontMetrics()
        detail = fm.elidedText(row.detail, Qt.TextElideMode.ElideRight, lines.width())
        painter.drawText(QRect(lines.left(), lines.top() + line_h, lines.width(), line_h),
                         flags, detail)
        state_rect = QRect(lines.left(), lines.top() + 2 * line_h, lines.width(), line_h)
        if built.file_lines < 3:
            pass  # no state when it was laid out (a refresh is on its way)
        elif row.fraction is not None:
            bar = QStyleOptionProgressBar()
            bar.rect = state_rect.adjusted(0, 1, 0, -1)
            bar.minimum, bar.maximum = 0, 1000
            bar.progress = max(0, min(1000, int(row.fraction * 1000)))
            bar.text = row.state
            bar.textVisible = True
            bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
            style = self._view.style() if self._view is not None else QApplication.style()
            style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, self._view)
        elif row.state:
            painter.setPen(self._failed_color if row.failed else self._muted)
            painter.drawText(state_rect, flags,
                             fm.elidedText(row.state, Qt.TextElideMode.ElideRight,
                                           state_rect.width()))
        painter.setPen(self._link_color)
        link_font = QFont(self._font)
        link_font.setUnderline(True)
        painter.setFont(link_font)
        for key, label in row.actions:
            painter.drawText(rects[key], flags, label)

    def file_action_at(self, entry: MessageEntry, pos: QPoint) -> str | None:
        """The file row's part under ``pos`` (row coordinates): "picture" or an
        action's key ("save", "cancel", …); None elsewhere."""
        if entry.kind != RowKind.MESSAGE or file_of(entry) is None:
            return None
        built = self._paint_for(entry)
        row = self.file_row(entry)
        if not built.file_top or row is None:
            return None
        for key, area in self._file_rects(built, row).items():
            if key in ("box", "lines", "note"):
                continue
            if area.contains(pos):
                return key
        return None

    def file_lines(self, entry: MessageEntry) -> list[str]:
        """The text a file row shows in its box, top to bottom (tests, accessibility)."""
        row = self.file_row(entry)
        if row is None:
            return []
        lines = [row.picture_note] if row.picture_note else []
        lines += [row.title, row.detail, row.state, *(label for _key, label in row.actions)]
        return [line for line in lines if line]

    def name_color(self, entry: MessageEntry) -> QColor | None:
        """The colour the row's name is painted in (None for rows without one)."""
        built = self._paint_for(entry)
        if entry.kind != RowKind.MESSAGE or built.layout is None:
            return None
        ranges = built.layout.formats()  # keep the list: its formats live in it
        fmt = ranges[0].format
        return QColor(fmt.foreground().color())

    def is_mention(self, entry: MessageEntry) -> bool:
        """Whether ``entry`` names the view's user (painted with a tint and a bar)."""
        model = getattr(self._view, "model", None)
        model = model() if callable(model) else None
        return isinstance(model, MessageModel) and model.mentions_me(entry)

    def _static_text(self, text: str) -> QStaticText:
        """Our own short strings (times, status lines) with their glyphs laid out
        once: ``drawText`` would lay the same "12:04" out again for every row."""
        found = self._statics.get(text)
        if found is None:
            if len(self._statics) > 4096:
                self._statics.clear()
            found = QStaticText(text)
            found.setTextFormat(Qt.TextFormat.PlainText)
            found.setPerformanceHint(QStaticText.PerformanceHint.AggressiveCaching)
            found.prepare(QTransform(), self._font)
            self._statics[text] = found
        return found

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


_CODE_CHARS_MAX = 4095  # estimate_code: 12 bits of characters …
_CODE_EXTRA_MAX = 15  # … and 4 bits of extra lines


def estimate_code(entry: MessageEntry) -> int:
    """A 16-bit summary of a row for ``MessageDelegate.estimate_table``: its text
    length (0 for a marker) and its extra lines (line breaks, a pending status)."""
    kind = entry.kind
    if kind == RowKind.UNREAD_MARKER or kind == RowKind.GAP_MARKER:
        return 0
    text = entry.text
    chars = len(text) + len(entry.sender) + 2
    extra = text.count("\n") if "\n" in text else 0
    if entry.state != SendState.SENT or entry.receipt:  # a pending or receipt line
        extra += 1
    if chars > _CODE_CHARS_MAX:
        chars = _CODE_CHARS_MAX
    if extra > _CODE_EXTRA_MAX:
        extra = _CODE_EXTRA_MAX
    return (extra << 12) | chars


def estimate_codes(entries: list[MessageEntry]) -> array:
    """``estimate_code`` of many rows at C speed (no Python call per row): text and
    sender length only (a backlog is messages; line breaks and markers are guessed
    as text, and corrected when measured)."""
    if len(entries) < 32:
        return array("H", map(estimate_code, entries))
    lengths = map(add, map(len, map(_get_text, entries)), map(len, map(_get_sender, entries)))
    return array("H", map(min, lengths, repeat(_CODE_CHARS_MAX)))


_get_text = attrgetter("text")
_get_sender = attrgetter("sender")


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
