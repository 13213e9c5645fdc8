"""MessageView: only what is on screen is laid out; selection, copy, keyboard,
scroll-keeping, accessibility; and the real ChatWindow against a real server."""

from __future__ import annotations

import random

import pytest
from helpers import LineClient, chat_window
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt
from PySide6.QtGui import QAccessible, QColor, QGuiApplication, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QAbstractSlider, QApplication
from view_harness import ShownView, broadcast

from qtchat.gui.main_window import ChatWindow
from qtchat.gui.message_view import MessageView, RowHeights
from qtchat.gui.models import ConversationKind, RowKind

WAIT_MS = 10_000

# The offscreen platform plugin says this whenever a QMainWindow is shown.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")



class Chat(ShownView):
    """A shown MessageView over its own MessageModel (the user is "me")."""


    def top(self) -> tuple[int | None, int]:
        """(seq, y) of the row at the top of the viewport."""
        row, rect = self.view.visible_rows()[0]
        return self.model.entry(row).seq, rect.top()

    def click(self, row: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
        pos = self.view.row_rect(row).center()
        self.qtbot.mouseClick(self.view.viewport(), Qt.MouseButton.LeftButton, modifiers, pos)


@pytest.fixture
def chat(qtbot) -> Chat:
    return Chat(qtbot)


# ------------------------------------------------------------- what is painted


def test_only_the_rows_on_screen_are_laid_out_and_painted(chat):
    chat.view.warm_ms = 3_600_000  # the pages around the screen: the next test
    chat.model.add_messages([broadcast(s) for s in range(1, 10_001)])
    chat.settle()
    view, model = chat.view, chat.model
    rows = view.visible_rows()
    assert rows[-1][0] == model.rowCount() - 1  # the newest row, at the bottom
    assert rows[-1][1].bottom() <= view.viewport().height()
    assert 5 < len(rows) < 40
    for row, _rect in rows:
        assert f"alice: \u2068message {row + 1}\u2069" == view.painted_text(row)
    # Heights were measured for what was shown, not for the 10,000 rows.
    assert sum(view._measured) <= 2 * len(rows)
    # Text layouts are kept for the rows on screen only.
    assert set(view.delegate()._paints) == {model.entry(row).uid for row, _ in rows}
    # And it is ink on the screen: the newest row's line is not blank.
    image = view.viewport().grab().toImage()
    last = rows[-1][1]
    base = image.pixelColor(last.right() - 2, last.top() + 1)
    assert any(image.pixelColor(x, last.center().y()) != base for x in range(60, 200))

    chat.model.add_message(broadcast(10_001, "bob", "a live one"))
    chat.settle()
    assert view.visible_rows()[-1][0] == 10_000
    assert view.painted_text(10_000) == "bob: \u2068a live one\u2069"
    assert sum(view._measured) <= 2 * len(rows) + 1


def test_rows_streaming_in_are_painted_as_a_full_repaint_would(chat, qtbot):
    # At the bottom, new rows scroll what is painted up and paint only themselves;
    # what is on the screen must be what painting everything would give.
    rng = random.Random(5)
    chat.model.add_messages([broadcast(s, text="word " * rng.randint(1, 30))
                             for s in range(1, 100)])
    chat.settle()
    seq = 100
    view = chat.view
    for burst in (1, 1, 3, 1, 7, 1, 1, 2):
        for _ in range(burst):  # several in one event-loop pass, or one
            chat.model.add_message(broadcast(seq, "bob", "word " * rng.randint(1, 30)))
            seq += 1
            if seq % 3 == 0:  # read (by a screen reader, say) before it is painted
                QAccessible.queryAccessibleInterface(view).childCount()
        qtbot.wait(5)
    qtbot.wait(view.frame_ms + 5)  # a paint held back in a burst comes when its frame ends
    assert view.visible_rows()[-1][0] == chat.model.rowCount() - 1
    # A loaded machine may end qtbot.wait before the last burst's paint has run;
    # a wrong partial paint stays wrong, so waiting for the paint hides nothing.
    qtbot.waitUntil(lambda: _on_screen_matches_a_full_repaint(view), timeout=3000)


def _on_screen_matches_a_full_repaint(view: MessageView) -> bool:
    """Whether the pixels on the screen (the window's backing store) are what painting
    the whole view afresh gives."""
    viewport = view.viewport().geometry()
    on_screen = view.screen().grabWindow(view.winId()).toImage().copy(viewport)
    return on_screen == view.grab().toImage().copy(viewport)


def test_a_part_painted_before_new_rows_scroll_in_is_painted_where_it_is_shown(chat, qtbot):
    # New rows at the bottom are scrolled in on the next event-loop pass. A paint of a
    # part of the view that comes first (the strips a previous pass asked for, an
    # expose) must paint that part of what is on screen, not of the scrolled picture
    # (the top strip would show rows the scroll then moves up again: a torn screen).
    chat.model.add_messages([broadcast(s, text="word " * (s % 25 + 1)) for s in range(1, 60)])
    chat.settle()
    view = chat.view
    assert _on_screen_matches_a_full_repaint(view)
    for seq in range(60, 64):
        chat.model.add_message(broadcast(seq, "bob", "a new row " * (seq % 4 + 1)))
        view.viewport().repaint(0, 0, view.viewport().width(), 60)  # before the scroll
        qtbot.wait(5)
    assert view.visible_rows()[-1][0] == chat.model.rowCount() - 1
    qtbot.waitUntil(lambda: _on_screen_matches_a_full_repaint(view), timeout=3000)


def test_notices_markers_and_pending_rows_are_on_screen(chat):
    model = chat.model
    model.add_messages([broadcast(s) for s in range(1, 4)])
    model.add_notice("bob joined")
    model.set_unread_marker()
    model.add_gap_marker()
    model.add_pending("p1", "on its way")
    chat.settle()
    shown = [row for row, _ in chat.view.visible_rows()]
    assert shown == list(range(model.rowCount()))
    kinds = [model.entry(row).kind for row in shown]
    assert kinds.count(RowKind.UNREAD_MARKER) == 1 and kinds.count(RowKind.GAP_MARKER) == 1
    assert chat.view.painted_text(3) == "bob joined"
    pending = chat.view.row_rect(6)
    assert pending.height() > chat.view.row_rect(0).height()  # the "sending…" line


# ---------------------------------------------------------- selection and copy


def _drag(view: MessageView, start: QPoint, end: QPoint) -> None:
    viewport = view.viewport()
    left = Qt.MouseButton.LeftButton
    for etype, pos, buttons in ((QEvent.Type.MouseButtonPress, start, left),
                                (QEvent.Type.MouseMove, end, left),
                                (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)):
        event = QMouseEvent(etype, QPointF(pos), viewport.mapToGlobal(QPointF(pos)), left,
                            buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)


def test_shift_click_selects_across_rows_and_ctrl_c_copies_them(chat, qtbot):
    chat.model.add_messages([broadcast(s) for s in range(1, 30)])
    chat.settle()
    first = chat.view.visible_rows()[2][0]
    chat.click(first)
    chat.click(first + 3, Qt.KeyboardModifier.ShiftModifier)
    assert chat.view.selected_rows() == list(range(first, first + 4))
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(chat.view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QGuiApplication.clipboard().text().splitlines()
    expected = [f"alice: message {chat.model.entry(r).seq}" for r in range(first, first + 4)]
    assert [line.split("  ", 1)[1] for line in copied] == expected
    assert all(line[:5].count(":") == 1 for line in copied)  # each line starts "hh:mm"


def test_dragging_selects_and_the_context_menu_copies(chat):
    chat.model.add_messages([broadcast(s) for s in range(1, 30)])
    chat.settle()
    view = chat.view
    rows = view.visible_rows()
    assert not view.copy_action.isEnabled()  # nothing selected: nothing to copy
    _drag(view, rows[1][1].center(), rows[4][1].center())
    assert view.selected_rows() == [rows[i][0] for i in range(1, 5)]
    assert view.copy_action in view.actions()  # what the context menu lists
    assert view.copy_action.isEnabled()
    QGuiApplication.clipboard().clear()
    view.copy_action.trigger()
    copied = QGuiApplication.clipboard().text().splitlines()
    assert [line.split("  ", 1)[1] for line in copied] == [
        f"alice: message {chat.model.entry(rows[i][0]).seq}" for i in range(1, 5)
    ]
    # Selected rows are painted tinted.
    image = view.viewport().grab().toImage()
    inside, outside = rows[2][1], rows[6][1]
    tint = image.pixelColor(inside.right() - 3, inside.top() + 1)
    plain = image.pixelColor(outside.right() - 3, outside.top() + 1)
    assert tint != plain


# ------------------------------------------------------------------ keyboard


def test_keyboard_moves_through_rows_and_pages(chat, qtbot):
    chat.model.add_messages([broadcast(s) for s in range(1, 301)])
    chat.settle()
    view = chat.view
    view.setFocus()
    with qtbot.waitSignal(view.topReached):
        qtbot.keyClick(view, Qt.Key.Key_Home)
    chat.settle()
    assert view.current_row() == 0 and chat.top() == (1, 0)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.current_row() == 2 and view.selected_rows() == [2]
    qtbot.keyClick(view, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    assert view.selected_rows() == [2, 3]
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    chat.settle()
    page_row = view.current_row()
    assert page_row > 8  # a viewport's worth of rows further
    assert page_row in [row for row, _ in view.visible_rows()]
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    assert view.current_row() < page_row
    qtbot.keyClick(view, Qt.Key.Key_End)
    chat.settle()
    assert view.current_row() == 299 and view.at_bottom()
    assert chat.bar.value() == chat.bar.maximum()
    qtbot.keyClick(view, Qt.Key.Key_Up)
    chat.settle()
    assert view.current_row() == 298
    assert 298 in [row for row, _ in view.visible_rows()]


def test_a_still_view_lays_out_the_pages_around_it_without_moving(chat, qtbot):
    """Once the reader stops, a page above and a page below are measured and shaped in
    slices: Page Up then paints rows already laid out, and nothing on screen moved
    while their guessed heights were replaced by measured ones."""
    rng = random.Random(11)
    words = ["ünïcode", "wörds", "that", "wrap", "längër", "lines", "ok"]
    chat.model.add_messages([  # long and short, wrapped and not, ASCII (no layout to
        broadcast(s, text=f"ok {s}" if s % 3 else  # measure) and not
                  " ".join(rng.choices(words, k=rng.choice([1, 3, 30, 90]))))
        for s in range(1, 5001)])
    view, bar = chat.view, chat.bar
    view.warm_ms = 3_600_000  # still, but not yet: see the picture first
    chat.settle()
    bar.setValue(bar.maximum() // 2)
    chat.settle()
    shown = [(view.painted_text(row), rect) for row, rect in view.visible_rows()]
    picture = view.viewport().grab().toImage()
    first, last = view.visible_rows()[0][0], view.visible_rows()[-1][0]
    paints = view.delegate()._paints
    uid = chat.model.entry
    assert uid(first - 1).uid not in paints and uid(last + 1).uid not in paints

    view.warm_ms = 0
    chat.settle()  # paints, and the warm-up starts
    qtbot.waitUntil(lambda: view._warm_todo == [], timeout=WAIT_MS)
    view.viewport().repaint()
    assert [(view.painted_text(row), rect) for row, rect in view.visible_rows()] == shown
    assert view.viewport().grab().toImage() == picture
    qtbot.waitUntil(lambda: not view._bar_stale, timeout=WAIT_MS)
    above = [row for row in range(first - 1, -1, -1)
             if view.row_rect(row).bottom() >= -view.viewport().height()]
    below = [row for row in range(last + 1, chat.model.rowCount())
             if view.row_rect(row).top() < 2 * view.viewport().height()]
    assert above and below
    assert all(view._measured[row] and uid(row).uid in paints for row in above + below)

    ready = set(paints)
    was = view.row_rect(first).top()
    bar.triggerAction(QAbstractSlider.SliderAction.SliderPageStepSub)  # a click above the
    view.viewport().repaint()  # handle: a page up, exactly (the handle kept up with the
    assert view.row_rect(first).top() == was + bar.pageStep()  # heights measured above)
    now = [row for row, _rect in view.visible_rows()]
    assert now[0] < first and all(uid(row).uid in ready for row in now)
    assert view.painted_text(now[0]) == f"alice: \u2068{uid(now[0]).text}\u2069"


# ------------------------------------------------------------ scroll-keeping


def test_prepending_long_history_keeps_the_view_still(chat):
    rng = random.Random(7)
    chat.model.add_messages([broadcast(s, text="word " * rng.randint(1, 60))
                             for s in range(1000, 1300)])
    chat.settle()
    chat.bar.setValue(chat.bar.maximum() // 3)
    chat.settle()
    before = chat.top()
    # Older history with rows of every height, guessed until shown.
    chat.model.add_messages([broadcast(s, text="long " * rng.randint(1, 200))
                             for s in range(800, 1000)])
    chat.settle()
    assert chat.top() == before
    chat.bar.setValue(0)  # all the way up through the guessed rows: now measured
    chat.settle()
    assert chat.top() == (800, 0)


def test_bottom_follows_new_rows_but_a_reader_above_stays(chat):
    chat.model.add_messages([broadcast(s) for s in range(1, 200)])
    chat.settle()
    chat.bar.setValue(chat.bar.maximum() - 200)
    chat.settle()
    before = chat.top()
    for seq in range(200, 260):
        chat.model.add_message(broadcast(seq))
    chat.settle()
    assert chat.top() == before and not chat.view.at_bottom()
    chat.bar.setValue(chat.bar.maximum())
    chat.settle()
    chat.model.add_message(broadcast(260))
    chat.settle()
    assert chat.view.visible_rows()[-1][0] == chat.model.rowCount() - 1


def _wheel_up(view: MessageView) -> None:
    pos = QPointF(view.viewport().rect().center())
    event = QWheelEvent(pos, view.viewport().mapToGlobal(pos), QPoint(), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def test_turning_the_wheel_up_at_the_top_asks_again_each_time(chat, qtbot):
    chat.model.add_messages([broadcast(s) for s in range(50, 100)])
    chat.settle()
    chat.bar.setValue(0)
    chat.settle()
    for _ in range(2):  # the answer may be slow or empty: every turn asks again
        with qtbot.waitSignal(chat.view.topReached):
            _wheel_up(chat.view)
    chat.bar.setValue(chat.bar.maximum())
    chat.settle()
    with qtbot.assertNotEmitted(chat.view.topReached):
        _wheel_up(chat.view)  # a turn up from the bottom just scrolls


# ------------------------------------------------------------- accessibility


def test_accessible_children_are_the_messages_on_screen(chat, qtbot):
    chat.model.add_messages([broadcast(s, text=f"hello {s}") for s in range(1, 100)])
    chat.model.add_notice("carol joined")
    chat.settle()
    iface = QAccessible.queryAccessibleInterface(chat.view)
    assert iface is not None and iface.role() == QAccessible.Role.List
    shown = chat.view.visible_rows()
    assert iface.childCount() == len(shown)
    names = [iface.child(i).text(QAccessible.Text.Name) for i in range(iface.childCount())]
    time = chat.view.accessible_text(0).rsplit(", at ", 1)[1]
    assert len(time) == 5 and time[2] == ":"
    expected = [f"alice: hello {chat.model.entry(r).seq}, at {time}" for r, _ in shown[:-1]]
    assert names[:-1] == expected
    assert names[-1].startswith("carol joined, at ")
    child = iface.child(1)
    assert child.role() == QAccessible.Role.ListItem
    assert iface.indexOfChild(child) == 1 and child.parent() is not None
    assert iface.rect().contains(child.rect())  # on screen, where it is painted
    # A new message from someone else is announced politely; one's own is not.
    with qtbot.waitSignal(chat.view.announced) as blocker:
        chat.model.add_message(broadcast(100, "bob", "are you there?"))
    assert blocker.args == ["bob: are you there?"]
    with qtbot.assertNotEmitted(chat.view.announced):
        chat.model.add_pending("p", "yes")


def test_a_burst_in_one_pass_is_shown_at_the_bottom_and_announced_briefly(chat, qtbot):
    # 2,000 live messages in one event-loop pass (one slice of a burst): one insertion;
    # the newest is painted at the bottom, and a screen reader hears the last few, not
    # 2,000 announcements.
    chat.model.coalesce_appends = True
    chat.model.add_messages([broadcast(s) for s in range(1, 51)])
    chat.settle()
    announced: list[str] = []
    chat.view.announced.connect(announced.append)
    inserted: list[tuple[int, int]] = []
    chat.model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    with qtbot.waitSignal(chat.model.rowsInserted, timeout=WAIT_MS):
        for s in range(51, 2051):
            chat.model.add_message(broadcast(s, "bob"))
    chat.settle()
    assert inserted == [(50, 2049)]
    rows = chat.view.visible_rows()
    assert rows[-1][0] == chat.model.rowCount() - 1
    assert chat.view.painted_text(rows[-1][0]) == "bob: \u2068message 2050\u2069"
    assert announced == [f"bob: message {s}" for s in range(2046, 2051)]


def test_a_burst_of_screenfuls_is_painted_once_per_frame(chat, qtbot):
    # Each event-loop pass brings more new rows than the screen holds: painting every
    # pass would draw rows the next pass pushes off. Within one frame (a hand-held
    # clock) the screen is painted for the first pass only; the frame over, the newest
    # rows are shown.
    view, app = chat.view, QApplication.instance()
    # The clock and the frame are held from before the first rows: 50 rows right after
    # the view was shown are a burst too, held back on a real 16 ms timer that would
    # otherwise end one of the passes' frames below, whenever it came round.
    view.frame_ms = 60_000  # one long frame: no real timer ends it during the test
    now = [view.clock() + 61]  # the view's first paint is a frame ago
    view.clock = lambda: now[0]
    chat.model.coalesce_appends = True
    chat.model.add_messages([broadcast(s) for s in range(1, 51)])
    chat.settle()
    now[0] += 61  # the last paint (settle's) is a frame ago
    paints: list[int] = []

    class PaintCount(QObject):
        def eventFilter(self, _watched, event):
            if event.type() == QEvent.Type.Paint:
                paints.append(chat.model.rowCount())
            return False

    counter = PaintCount()
    view.viewport().installEventFilter(counter)
    seq = 51
    for _ in range(10):  # ten passes of 40 rows each (a screen shows about 15)
        for _ in range(40):
            chat.model.add_message(broadcast(seq, "bob"))
            seq += 1
        for _ in range(3):
            app.processEvents()
    assert 1 <= len(paints) <= 2  # the first pass's (its scrolled strip may come apart)
    assert paints[-1] <= 130  # nothing painted after the second pass
    now[0] += 61  # the frame is over: the next pass paints at once
    chat.model.add_message(broadcast(seq, "bob"))
    qtbot.waitUntil(lambda: paints[-1] == seq, timeout=WAIT_MS)
    rows = view.visible_rows()
    assert view.painted_text(rows[-1][0]) == f"bob: \u2068message {seq}\u2069"


# --------------------------------------------------------------- RowHeights


_height_ops = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(1, 3000)),
        st.tuples(st.just("remove"), st.integers(0, 10**6), st.integers(1, 2500)),
        st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(1, 500)),
    ),
    max_size=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=_height_ops, seed=st.integers(0, 1000))
def test_row_heights_agree_with_a_plain_list(operations, seed):
    from array import array

    rng = random.Random(seed)
    heights = RowHeights()
    plain: list[int] = []
    for what, where, n in operations:
        if what == "insert":
            at = where % (len(plain) + 1)
            block = [rng.randint(1, 90) for _ in range(n)]
            heights.insert(at, array("H", block))
            plain[at:at] = block
        elif plain and what == "remove":
            at = where % len(plain)
            heights.remove(at, n)
            del plain[at : at + n]
        elif plain:
            at = where % len(plain)
            heights.set(at, n)
            plain[at] = n
        assert len(heights) == len(plain) and heights.total() == sum(plain)
    tops = [0]
    for h in plain:
        tops.append(tops[-1] + h)
    for row in rng.sample(range(len(plain)), min(len(plain), 30)):
        assert heights.top_of(row) == tops[row] and heights.get(row) == plain[row]
        y = tops[row] + rng.randrange(plain[row])
        assert heights.row_at(y) == row


# ----------------------------------------------- the real window, a real server


def open_window(qtbot, make_client, port: int, name: str) -> ChatWindow:
    window = chat_window(qtbot, make_client(), port, name, timeout=WAIT_MS)
    window.resize(800, 500)
    return window


def lobby_view(window: ChatWindow) -> MessageView:
    conv = window.conversation(ConversationKind.ROOM, "lobby", create=False)
    assert conv is not None
    return conv.view


def painted_messages(view: MessageView) -> list[str]:
    view.viewport().repaint()
    model = view.model()
    return [view.painted_text(row) for row, _ in view.visible_rows()
            if model.entry(row).kind == RowKind.MESSAGE]


def test_the_chat_window_shows_what_is_posted(qtbot, server, make_client, isolated_settings):
    window = open_window(qtbot, make_client, server.port, "Alice")
    peer = LineClient(qtbot, server.port)
    assert peer.register("Bob")["type"] == "registered"
    view = lobby_view(window)
    for n in range(40):
        peer.send({"type": "broadcast", "text": f"from bob {n}"})
    peer.wait_for("broadcast", text="from bob 39")  # stored before Alice types
    qtbot.keyClicks(window.input, "from alice <b>plain</b>")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    peer.wait_for("broadcast", text="from alice <b>plain</b>")

    def shown() -> bool:
        texts = painted_messages(view)
        return any("from alice <b>plain</b>" in t for t in texts) and any(
            "from bob 39" in t for t in texts)

    qtbot.waitUntil(shown, timeout=WAIT_MS)
    assert view.at_bottom()
    texts = painted_messages(view)
    assert texts[-1].startswith("Alice: ")  # own message last, in seq order
    assert [t for t in texts if "from bob" in t][-1] == "Bob: \u2068from bob 39\u2069"
    image = window.grab().toImage()
    assert not image.isNull() and image.pixelColor(5, 5) != QColor()


def test_scrolling_up_in_the_window_loads_older_pages_again_and_again(
        qtbot, server, make_client, isolated_settings):
    peer = LineClient(qtbot, server.port)
    assert peer.register("Bob")["type"] == "registered"
    for n in range(1, 401):
        peer.send({"type": "broadcast", "text": f"old {n}"})
    peer.wait_for("broadcast", text="old 400")
    window = open_window(qtbot, make_client, server.port, "Alice")
    view = lobby_view(window)
    model = view.model()
    qtbot.waitUntil(lambda: model.newest_seq() is not None, timeout=WAIT_MS)
    oldest = model.oldest_seq()
    assert oldest > 1
    bar = view.verticalScrollBar()
    pages = 0

    def first_message() -> tuple[object, int]:
        view.viewport().repaint()
        for row, rect in view.visible_rows():
            if model.entry(row).kind == RowKind.MESSAGE:
                return model.entry(row), rect.top()
        raise AssertionError("no message on screen")

    while model.oldest_seq() > 1:
        # The scroll bar catches up with new rows within 50 ms: the user scrolls a bar
        # that shows there is something above (else setValue(0) would change nothing).
        qtbot.waitUntil(lambda: bar.value() > 0, timeout=WAIT_MS)
        with qtbot.waitSignal(window.client.historyReceived, timeout=WAIT_MS):
            bar.setValue(0)  # the user scrolls to the top
            shown_before = first_message()
        assert model.oldest_seq() < oldest  # a page came …
        oldest = model.oldest_seq()
        assert first_message() == shown_before  # … above, out of sight: nothing moved
        assert bar.value() > 0  # and the top is further up: scrolling there asks again
        pages += 1
    assert pages >= 3
    bar.setValue(0)
    first_row = view.visible_rows()[0][0]
    assert model.entry(first_row).seq == 1  # the oldest message first, no notice above it
    seqs = [e.seq for e in model.entries() if e.seq is not None]
    assert seqs == sorted(seqs) and seqs[0] == 1 and len(seqs) == len(set(seqs))
