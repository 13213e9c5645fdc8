"""MessageDelegate in a MessageView: plain-text painting, cached sizes, clicks,
and the view's bottom-following and place-keeping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QImage, QPainter
from view_harness import TS, ShownView, broadcast

from qtchat.gui import delegate as delegate_module
from qtchat.gui.delegate import MessageDelegate
from qtchat.gui.models import MessageEntry, MessageModel, NoticeKind, RowKind
from qtchat.protocol.server_frames import Message

WHITE = QColor(255, 255, 255)



class Chat(ShownView):
    """A shown MessageView over its own MessageModel (the user is "me")."""


    def top_seq(self) -> int | None:
        """The seq of the message at the top of the viewport."""
        return self.model.entry(self.view.row_at(QPoint(1, 1))).seq

    def render_row(self, row: int) -> QImage:
        """Paint one row with the delegate into a white image."""
        entry = self.model.entry(row)
        width = self.view.viewport().width()
        height = self.delegate.measure(entry)
        image = QImage(width, height, QImage.Format.Format_RGB32)
        image.fill(WHITE)
        painter = QPainter(image)
        self.delegate.paint(painter, QRect(0, 0, width, height), entry, False)
        painter.end()
        return image


def ink_right(image: QImage) -> int:
    """The rightmost column with a non-white pixel (-1 if blank)."""
    for x in range(image.width() - 1, -1, -1):
        for y in range(image.height()):
            if image.pixelColor(x, y) != WHITE:
                return x
    return -1


@pytest.fixture
def chat(qtbot) -> Chat:
    return Chat(qtbot)


# --------------------------------------------------------------- plain text only


@pytest.mark.parametrize("markup", ["<b>bold</b>", "<img src=/etc/hostname>",
                                    "<a href='http://x'>link</a>", "&lt;tag&gt; &amp;"])
def test_html_is_laid_out_and_drawn_literally(chat, markup):
    chat.model.add_message(broadcast(1, "bob", markup))
    chat.model.add_message(broadcast(2, "bob", "bold"))
    chat.settle()
    laid_out = chat.view.painted_text(0)
    assert markup in laid_out
    assert laid_out.startswith("bob: ")
    # The drawn ink reaches as far as the literal characters would.
    fm = QFontMetricsF(chat.view.font())
    literal = ink_right(chat.render_row(0))
    plain = ink_right(chat.render_row(1))
    extra = fm.horizontalAdvance(markup) - fm.horizontalAdvance("bold")
    assert literal - plain >= 0.8 * extra


def test_delegate_source_has_no_rich_text_path():
    source = Path(delegate_module.__file__).read_text(encoding="utf-8")
    code = re.sub(r'""".*?"""', "", source, flags=re.DOTALL)  # docstrings may say "HTML"
    for rich in ("QTextDocument", "setHtml", "mightBeRichText", "RichText", "QLabel"):
        assert rich not in code


def test_bidi_controls_cannot_move_the_name(chat):
    chat.model.add_message(broadcast(1, "bob", "\u202eevil"))
    text = chat.view.painted_text(0)
    assert text == "bob: \u2068\u202eevil\u2069"  # the peer's text is isolated


def test_message_prefixes(chat):
    model = chat.model
    model.add_message(broadcast(1, "erin", "/me waves"))
    model.add_message(Message(seq=2, ts=TS, sender="bob", to="me", text="psst"))
    model.add_message(Message(seq=3, ts=TS, sender="me", to="carol", text="hi"))
    model.add_message(broadcast(4, "dave", "two\nlines\r\nthree"))
    texts = [chat.view.painted_text(r) for r in range(4)]
    assert texts[0] == "* erin \u2068waves\u2069"
    assert texts[1] == "← bob: \u2068psst\u2069"
    assert texts[2] == "→ carol: \u2068hi\u2069"
    assert texts[3] == "dave: \u2068two\u2028lines\u2028three\u2069"


def test_every_row_kind_paints_and_differs(chat):
    model = chat.model
    model.add_message(broadcast(1, "alice", "hello"))
    model.add_message(broadcast(2, "me", "hello"))  # own: tinted
    model.add_notice("bob joined", NoticeKind.JOIN)
    model.set_unread_marker()
    model.add_gap_marker()
    model.add_pending("p1", "sending")
    model.add_pending("p2", "failing")
    model.mark_failed("p2")
    chat.settle()
    images = [chat.render_row(r) for r in range(model.rowCount())]
    assert all(ink_right(image) > 0 for image in images)
    # Own rows have a tinted background; others stay white.
    assert images[0].pixelColor(images[0].width() - 2, 1) == WHITE
    assert images[1].pixelColor(images[1].width() - 2, 1) != WHITE
    # Pending rows carry a status line: taller than a sent row.
    assert images[5].height() > images[1].height()
    assert images[6].height() == images[5].height()
    # The failed row says so in red.
    reds = [images[6].pixelColor(x, y) for x in range(images[6].width())
            for y in range(images[6].height() // 2, images[6].height())]
    assert any(c.red() > 150 and c.green() < 100 and c.blue() < 100 for c in reds)
    assert chat.view.painted_text(3) == ""  # markers have no text layout


# ------------------------------------------------------------------------- sizes


def test_view_settings(chat):
    view = chat.view
    assert isinstance(chat.delegate, MessageDelegate) and chat.delegate.parent() is view
    # Always on: a bar appearing would narrow the rows, re-wrap them and maybe vanish again.
    assert view.verticalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOn
    assert view.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    assert view.focusPolicy() == Qt.FocusPolicy.StrongFocus
    assert view.copy_action in view.actions()  # the context menu's Copy


def test_heights_are_measured_once_per_row_and_width(chat, monkeypatch):
    long_text = "word " * 60  # wraps, but under the "Show more" clip (12 lines) at 300 px
    chat.model.add_message(broadcast(1, "alice", long_text))
    chat.settle()
    builds = []
    real_build = chat.delegate._build
    monkeypatch.setattr(chat.delegate, "_build", lambda e: builds.append(e.uid) or real_build(e))
    first = chat.view.row_rect(0).height()
    chat.view.viewport().repaint()
    chat.view.viewport().repaint()
    assert chat.view.row_rect(0).height() == first
    assert builds == []  # measured and laid out during the first paint already
    chat.view.resize(300, 300)  # narrower: re-measured, taller
    chat.settle()
    assert builds.count(1) == 1  # (uid 0 is the one-line sample the guesses start from)
    assert chat.view.row_rect(0).height() > first


def test_state_change_re_measures_the_row(chat):
    chat.model.add_pending("p", "hello")
    chat.settle()
    pending_h = chat.view.row_rect(0).height()
    chat.model.add_message(broadcast(1, "me", "hello", id="p"))
    chat.settle()
    assert chat.view.row_rect(0).height() < pending_h


_ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1,
                      max_size=120)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_ascii_text, sender=st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True),
       width=st.integers(120, 900), own=st.booleans())
def test_single_line_shortcut_agrees_with_the_full_layout(chat, text, sender, width, own):
    # _measure skips QTextLayout for short ASCII lines; it must never disagree.
    delegate = chat.delegate
    delegate.set_width(width)
    delegate._invalidate()  # every example is uid 1
    entry = MessageEntry(key=1, uid=1, seq=1, kind=RowKind.MESSAGE, ts=0, sender=sender,
                         text=text, flags=1 if own else 0)
    assert delegate._measure(entry) == delegate._build(entry).height


def test_guessed_heights_become_measured_ones_without_moving_the_reader(chat):
    # Rows off screen carry a guess from their length; shown rows are measured. A
    # narrow line of wide glyphs is guessed one line high and wraps to several.
    chat.model.add_messages([broadcast(s, text="W" * (40 + s % 50)) for s in range(1, 400)])
    chat.settle()
    view = chat.view
    chat.bar.setValue(chat.bar.maximum() // 2)
    chat.settle()
    for row, rect in view.visible_rows():
        assert rect.height() == chat.delegate.measure(chat.model.entry(row))
    chat.bar.setValue(chat.bar.value() - chat.bar.pageStep())  # a page up: rows measured …
    chat.settle()
    top_seq = chat.top_seq()
    y = view.row_rect(view.row_at(QPoint(1, 1))).top()
    for _ in range(3):  # … and nothing moves once they are
        chat.settle()
        assert chat.top_seq() == top_seq
        assert view.row_rect(view.row_at(QPoint(1, 1))).top() == y


def test_switching_models_keeps_each_one_right(qtbot):
    chat = Chat(qtbot)
    other = MessageModel(chat.view)
    chat.model.add_messages([broadcast(s) for s in range(1, 50)])
    other.add_messages([broadcast(s, text="other " * 30) for s in range(1, 50)])
    chat.settle()
    chat.view.setModel(other)
    chat.settle()
    heights_other = chat.view.row_rect(48).height()
    chat.view.setModel(chat.model)
    chat.settle()
    assert chat.view.row_rect(48).height() < heights_other
    assert chat.bar.value() == chat.bar.maximum()  # a new model starts at its newest row


# ------------------------------------------------------------------------ clicks


def test_clicking_a_failed_message_asks_for_a_retry(chat, qtbot):
    chat.model.add_message(broadcast(1))
    chat.model.add_pending("local-7", "lost")
    chat.model.add_pending("local-8", "in flight")
    chat.model.mark_failed("local-7")
    chat.settle()
    with qtbot.assertNotEmitted(chat.view.retryRequested):
        rect = chat.view.row_rect(2)
        qtbot.mouseClick(chat.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.waitSignal(chat.view.retryRequested) as blocker:
        rect = chat.view.row_rect(1)
        qtbot.mouseClick(chat.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == ["local-7"]


def test_clicking_a_url_activates_it(chat, qtbot):
    url = "https://example.org/a?b=1"
    chat.model.add_message(broadcast(1, "bob", f"see {url}, then <b>this</b>"))
    chat.settle()
    entry = chat.model.entry(0)
    built = chat.delegate._paint_for(entry)
    start = chat.view.painted_text(0).index(url)
    line = built.layout.lineForTextPosition(start + 3)
    x = line.cursorToX(start + 3)[0]
    rect = chat.view.row_rect(0)
    pos = rect.topLeft() + QPoint(int(built.text_origin.x() + x),
                                  int(built.text_origin.y() + line.y() + line.height() / 2))
    assert chat.delegate.link_at(entry, pos - rect.topLeft()) == url  # no trailing comma
    with qtbot.waitSignal(chat.view.linkActivated) as blocker:
        qtbot.mouseClick(chat.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == [url]
    assert chat.delegate.link_at(entry, QPoint(2, 2)) is None  # the time column


# ------------------------------------------------------------- scroll-keeping


def test_follows_the_bottom_while_there(chat):
    chat.model.add_messages([broadcast(s) for s in range(1, 200)])
    chat.settle()
    assert chat.bar.maximum() > 0 and chat.bar.value() == chat.bar.maximum()
    before = chat.bar.maximum()
    for seq in range(200, 230):
        chat.model.add_message(broadcast(seq))
    chat.settle()
    assert chat.bar.maximum() > before and chat.bar.value() == chat.bar.maximum()
    assert chat.view.at_bottom()
    assert chat.view.visible_rows()[-1][0] == chat.model.rowCount() - 1


def test_keeps_the_readers_place_when_history_is_prepended(chat):
    chat.model.add_messages([broadcast(s) for s in range(1000, 1200)])
    chat.settle()
    chat.bar.setValue(chat.bar.maximum() // 2)
    chat.settle()
    assert not chat.view.at_bottom()
    view = chat.view
    seq, y = chat.top_seq(), view.row_rect(view.row_at(QPoint(1, 1))).top()
    chat.model.add_messages([broadcast(s) for s in range(900, 1000)])  # a history page
    chat.model.add_message(broadcast(1200))  # and a live one below
    chat.settle()
    assert chat.top_seq() == seq
    assert abs(view.row_rect(view.row_at(QPoint(1, 1))).top() - y) <= 1
    view.scroll_to_bottom()
    chat.settle()
    assert chat.bar.value() == chat.bar.maximum() and view.at_bottom()


def test_the_top_asks_for_history_again_after_each_page(chat, qtbot):
    chat.model.add_messages([broadcast(s) for s in range(301, 401)])
    chat.settle()
    for page_start in (201, 101, 1):
        with qtbot.waitSignal(chat.view.topReached):
            chat.bar.setValue(0)
        oldest = chat.model.oldest_seq()
        top_before = chat.top_seq()
        chat.model.add_messages([broadcast(s) for s in range(page_start, oldest)])
        chat.settle()
        assert chat.top_seq() == top_before  # the page went in above, out of sight
        assert chat.bar.value() > 0  # so there is room to scroll up again
    assert chat.model.oldest_seq() == 1
