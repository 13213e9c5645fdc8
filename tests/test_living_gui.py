"""The living-room widgets with real widgets (pytest-qt): the settings dialog from the
window's menu, the dark theme (and the message delegate's colours in it), the typing
line under a conversation, the search bar."""

from __future__ import annotations

import pytest
from gui_harness import WAIT_MS
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMainWindow
from test_delegate import Chat

from qtchat.gui.message_view import MessageView
from qtchat.gui.search_bar import SEQ_ROLE, SPANS_ROLE, SearchBar, match_spans
from qtchat.gui.settings_dialog import Preferences, SettingsDialog
from qtchat.gui.start_dialog import settings
from qtchat.gui.theme import dark_palette, palette_for
from qtchat.gui.typing_label import TypingLabel
from qtchat.protocol.server_frames import Message

# The offscreen platform says so whenever a shown window's size constraints change.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def luminance(colour: QColor) -> float:
    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
    return (0.2126 * channel(colour.redF()) + 0.7152 * channel(colour.greenF())
            + 0.0722 * channel(colour.blueF()))


def contrast(a: QColor, b: QColor) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture
def app_palette(qapp):
    """Themes change the application's palette: put it back for the next test."""
    saved = QPalette(qapp.palette())
    yield
    qapp.setPalette(saved)


# ------------------------------------------------------------------------ theme


def render_on_base(chat: Chat, row: int) -> tuple[QImage, QColor]:
    entry = chat.model.entry(row)
    width = chat.view.viewport().width()
    height = chat.delegate.measure(entry)
    base = chat.view.palette().color(QPalette.ColorRole.Base)
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(base)
    painter = QPainter(image)
    chat.delegate.paint(painter, QRect(0, 0, width, height), entry, False)
    painter.end()
    return image, base


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_failed_and_unread_reds_are_legible_in_both_themes(qtbot, theme):
    chat = Chat(qtbot)
    chat.view.setPalette(palette_for(theme))  # a PaletteChange: the delegate restyles
    chat.model.add_message(Message(seq=1, ts="2026-01-01T10:00:00Z", sender="alice",
                                   room="lobby", text="hello"))
    chat.model.set_unread_marker()
    chat.model.add_pending("p1", "this one did not go")
    chat.model.mark_failed("p1")
    chat.settle()
    for row in (1, 2):  # the "new messages" marker, the failed message's status line
        image, base = render_on_base(chat, row)
        reds = [image.pixelColor(x, y) for x in range(image.width())
                for y in range(image.height())]
        reds = [c for c in reds if c.red() - max(c.green(), c.blue()) > 40]
        assert reds, f"row {row} shows no red in the {theme} theme"
        best = max(contrast(c, base) for c in reds)
        assert best >= 4.5, f"row {row}: red text at {best:.1f}:1 on the {theme} Base"


def test_dark_palette_text_contrast():
    palette = dark_palette()
    role = QPalette.ColorRole
    for fg, bg in ((role.Text, role.Base), (role.WindowText, role.Window),
                   (role.ButtonText, role.Button), (role.HighlightedText, role.Highlight),
                   (role.Link, role.Base), (role.ToolTipText, role.ToolTipBase)):
        assert contrast(palette.color(fg), palette.color(bg)) >= 4.5, (fg, bg)


# ------------------------------------------------------------------------- settings


def test_settings_dialog_from_the_menu_saves_and_applies_the_theme(apps, qtbot, app_palette):
    window = apps.host("Alice").window
    assert window.settings_action.text() == "&Settings…"
    window.settings_action.trigger()
    qtbot.waitUntil(lambda: window.findChild(SettingsDialog) is not None, timeout=WAIT_MS)
    dialog = window.findChild(SettingsDialog)
    qtbot.waitExposed(dialog)
    assert dialog.receipts_check.text() == "Tell others when I have &read their messages"
    assert dialog.receipts_check.isChecked() and dialog.typing_check.isChecked()
    assert dialog.away_spin.value() == 10  # the default: 10 minutes

    dialog.receipts_check.click()
    dialog.typing_check.click()
    dialog.away_spin.setValue(5)
    dialog.download_edit.setText("/tmp/qtchat-downloads")
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    with qtbot.waitSignal(dialog.saved, timeout=WAIT_MS) as saved:
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok),
                         Qt.MouseButton.LeftButton)
    prefs = saved.args[0]
    assert (prefs.receipts, prefs.typing, prefs.away_minutes, prefs.theme) == (
        False, False, 5, "dark")
    assert Preferences.load() == prefs  # in QSettings
    assert settings().value("theme") == "dark"
    # The whole app went dark, the conversation's message view included.
    base = QApplication.instance().palette().color(QPalette.ColorRole.Base)
    assert base.lightness() < 80
    views = window.findChildren(MessageView)
    assert views  # widgets take the new palette on the next pass of the event loop
    qtbot.waitUntil(lambda: all(v.palette().color(QPalette.ColorRole.Base).lightness() < 80
                                for v in views), timeout=WAIT_MS)
    assert all(v._delegate._dark for v in views)  # names in their lighter shades

    window.settings_action.trigger()  # opened again, it shows what was saved
    qtbot.waitUntil(lambda: any(d.isVisible() for d in window.findChildren(SettingsDialog)),
                    timeout=WAIT_MS)
    again = next(d for d in window.findChildren(SettingsDialog) if d.isVisible())
    assert not again.receipts_check.isChecked() and again.away_spin.value() == 5
    assert again.theme_combo.currentData() == "dark"
    again.reject()


def test_settings_dialog_refuses_a_bad_name_and_stays_open(qtbot, isolated_settings):
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.name_edit.setText("bad name\u0000")
    dialog.accept()
    assert dialog.isVisible() and dialog.error_label.isVisible()
    assert dialog.error_label.text()
    assert settings().value("name") is None  # nothing saved


# ------------------------------------------------------------------------- typing


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_typing_label_says_who_and_expires_on_a_hand_clock(qtbot):
    clock = Clock()
    label = TypingLabel(clock=clock)
    qtbot.addWidget(label)
    assert label.text() == ""
    label.typing("<b>Bob</b>", "active")
    assert label.text() == "<b>Bob</b> is typing…"  # plain text: peer names shown as typed
    assert label.textFormat() == Qt.TextFormat.PlainText
    assert label._timer.isActive() and label._timer.interval() == 6000  # when it expires
    label.typing("Carol", "paused")
    assert label.text() == "<b>Bob</b> and Carol are typing…"
    label.typing("Dave", "active")
    assert label.text() == "Several people are typing…"
    clock.now += 6
    label.refresh()  # what the timer does
    assert label.text() == "Carol is typing…"  # paused lasts 30 s
    label.message_from("Carol")
    assert label.text() == "" and not label._timer.isActive()


def test_typing_label_clears_itself_when_the_time_runs_out(qtbot):
    label = TypingLabel()  # the real clock and timer, with a short expiry
    qtbot.addWidget(label)
    label.tracker.expiry = {"active": 0.2, "paused": 30.0}
    label.typing("Bob", "active")
    assert label.text() == "Bob is typing…"
    qtbot.waitUntil(lambda: label.text() == "", timeout=WAIT_MS)


# ------------------------------------------------------------------------- search


def test_match_spans_marks_words_as_the_host_matched_them():
    text = "Meet at the Café Über-Straße, <b>deploy</b> 東京タワーに行く"
    def marked(query):
        return [text[s:s + n] for s, n in match_spans(text, query)]
    assert marked("cafe") == ["Café"]
    assert marked("UBER strasse") == ["Über", "Straße"]
    assert marked("dep") == ["deploy"]  # the last word as a prefix
    assert marked("dep meet") == ["Meet"]  # only the last
    assert marked("京タワ") == ["京タワ"]
    assert marked('"b" OR') == ["b", "b"]  # the tag's letters are words like any
    assert marked("***") == []


@pytest.fixture
def bar(qtbot):
    window = QMainWindow()
    search = SearchBar()
    window.setCentralWidget(search)
    search.attach_shortcut(window)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window, search


def messages() -> list[Message]:
    return [Message(seq=40, ts="2026-01-01T10:00:00Z", sender="Bob",
                    text="<b>Café</b> at noon?", room="lobby"),
            Message(seq=12, ts="2026-01-01T09:00:00Z", sender="Carol",
                    text="the cafe is closed", to="Alice")]


def test_ctrl_f_opens_the_bar_and_typing_asks_the_host(bar, qtbot):
    window, search = bar
    assert not search.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(search.isVisible, timeout=WAIT_MS)
    assert search.query_edit.hasFocus()
    with qtbot.waitSignal(search.searchRequested, timeout=WAIT_MS) as asked:
        qtbot.keyClicks(search.query_edit, "CAFE")  # sent once, after the typing stops
    assert asked.args == ["CAFE", False, None]
    with qtbot.waitSignal(search.searchRequested, timeout=WAIT_MS) as asked:
        search.scope_combo.setCurrentIndex(1)
    assert asked.args == ["CAFE", True, None]
    qtbot.keyClick(search.query_edit, Qt.Key.Key_Escape)
    assert not search.isVisible()


def test_results_are_plain_text_with_the_words_marked_and_choosable(bar, qtbot):
    _window, search = bar
    search.open()
    search.show_results("CAFE", messages(), more=True)
    model = search.model
    assert model.rowCount() == 2
    first = model.index(0, 0)
    line = first.data()
    assert line == "Bob: <b>Café</b> at noon?"  # the tag as typed, never rendered
    assert [line[s:s + n] for s, n in first.data(SPANS_ROLE)] == ["Café"]
    second = model.index(1, 0)
    assert second.data() == "Carol → Alice: the cafe is closed"
    assert search.status.text() == "2 results so far" and search.more_button.isVisible()
    # Marked words are painted in the Highlight colour.
    search.results.clearSelection()
    highlight = search.results.palette().color(QPalette.ColorRole.Highlight)
    image = search.results.viewport().grab().toImage()
    rect = search.results.visualRect(first)
    colours = {image.pixelColor(x, y).rgb() for x in range(rect.left(), rect.right())
               for y in range(rect.top(), rect.bottom())}
    assert highlight.rgb() in colours
    # Older results: the next page asks from the oldest seq shown.
    with qtbot.waitSignal(search.searchRequested, timeout=WAIT_MS) as asked:
        qtbot.mouseClick(search.more_button, Qt.MouseButton.LeftButton)
    assert asked.args == ["CAFE", False, 12]
    search.show_results("CAFE", [Message(seq=3, ts="2026-01-01T08:00:00Z", sender="Dave",
                                         text="café!", room="lobby")], more=False,
                        append=True)
    assert [model.index(r, 0).data(SEQ_ROLE) for r in range(3)] == [40, 12, 3]
    assert search.status.text() == "3 results" and not search.more_button.isVisible()
    # Choosing one says which message to jump to.
    with qtbot.waitSignal(search.resultChosen, timeout=WAIT_MS) as chosen:
        qtbot.mouseClick(search.results.viewport(), Qt.MouseButton.LeftButton,
                         pos=search.results.visualRect(model.index(1, 0)).center())
    assert chosen.args == [12]
    search.show_results("zzz", [], more=False)
    assert search.status.text() == "Nothing found" and model.rowCount() == 0


def test_a_result_is_chosen_once_by_a_click_and_by_enter(bar, qtbot):
    _window, search = bar
    search.open()
    search.show_results("cafe", messages(), more=False)
    chosen = []
    search.resultChosen.connect(chosen.append)
    qtbot.mouseClick(search.results.viewport(), Qt.MouseButton.LeftButton,
                     pos=search.results.visualRect(search.model.index(0, 0)).center())
    assert chosen == [40]
    search.results.setFocus()
    search.results.setCurrentIndex(search.model.index(1, 0))
    qtbot.keyClick(search.results, Qt.Key.Key_Return)
    assert chosen == [40, 12]
