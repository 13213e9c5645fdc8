"""Rough edges of a session a newcomer hit: a host that closed the room, Qt's error
strings mid-sentence, and the message box (multi-line, Enter sends, Up recalls).

Real widgets and a real server on 127.0.0.1 (the ``apps`` harness of ``test_gui``), or
the scripted host of the client tests where a real server will not misbehave on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _scripted_host import ScriptedHost, registered
from PySide6.QtCore import QPoint, Qt
from test_gui import (
    WAIT_MS,
    delivered,
    lobby,
    messages,
    notices,
    type_line,
    wait_for_text,
)

from qtchat.client.chat_client import Endpoint, qt_error_text
from qtchat.gui.main_window import ChatWindow
from qtchat.server.chat_server import ChatServer, ServerConfig

pytestmark = [pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints"),
              pytest.mark.usefixtures("isolated_settings")]


@pytest.fixture
def room(tmp_path: Path):
    """A host the test can close and open again on the same port."""

    class Room:
        def __init__(self) -> None:
            self.server: ChatServer | None = None
            self.port = 0

        def start(self, **config) -> ChatServer:
            self.server = ChatServer(ServerConfig(
                host="127.0.0.1", port=self.port, server_name="room",
                data_dir=tmp_path / "room-data", rate_limit=0.0, **config))
            self.server.start()
            self.port = self.server.port
            return self.server

        def stop(self) -> None:
            if self.server is not None and self.server.is_listening:
                self.server.stop()
                self.server.close_store()

    made = Room()
    yield made
    made.stop()


def shut_down(qtbot, room, window: ChatWindow) -> None:
    """The host closes the room (``bye`` with reason ``shutdown``) under the guest."""
    with qtbot.waitSignal(window.client.connectionLost, timeout=WAIT_MS):
        room.stop()


# --- 9: the host closed the room --------------------------------------------------------


def test_a_guest_whose_host_closed_the_room_sees_it_and_can_stop_trying(qtbot, apps, room):
    room.start()
    bob = apps.join(room.port, "Bob").window
    shut_down(qtbot, room, bob)
    assert not bob.reconnect_bar.isHidden()
    assert bob.reconnect_label.text() == \
        "The host closed the room — trying to reconnect (attempt 1)…"
    assert bob.reconnect_button.text() == "Stop trying"

    with qtbot.waitSignal(bob.client.reconnectStopped, timeout=WAIT_MS):
        qtbot.mouseClick(bob.reconnect_button, Qt.MouseButton.LeftButton)
    assert bob.client.state == "disconnected"
    assert not bob.client._reconnect_timer.isActive()  # no attempt is scheduled any more
    assert bob.reconnect_button.text() == "Reconnect"
    assert "press Reconnect to try again" in bob.reconnect_label.text()
    assert bob.state_label.text() == "Not connected"

    # The host opens the room again: stopped means stopped, until Reconnect is pressed.
    room.start()
    assert bob.client.state == "disconnected"
    with qtbot.waitSignal(bob.client.reconnected, timeout=WAIT_MS):
        qtbot.mouseClick(bob.reconnect_button, Qt.MouseButton.LeftButton)
    assert bob.reconnect_bar.isHidden()
    assert bob.input.isEnabled()
    type_line(qtbot, bob, "back again")
    wait_for_text(qtbot, lobby(bob).model, "back again")


def test_the_guest_gives_up_by_itself_after_the_grace_period(qtbot, apps, room):
    room.start()
    bob = apps.join(room.port, "Bob").window
    bob.client.give_up_after = 0.4  # the host's 120 s, shortened for the test
    attempts: list[int] = []
    bob.client.reconnecting.connect(lambda attempt, _reason: attempts.append(attempt))
    shut_down(qtbot, room, bob)
    with qtbot.waitSignal(bob.client.reconnectStopped, timeout=WAIT_MS) as stopped:
        pass
    sentence = stopped.args[0]
    assert sentence.startswith(f"Gave up reconnecting to 127.0.0.1:{room.port} after 0.4 s")
    assert sentence.endswith("Press Reconnect to try again.")
    assert attempts and attempts[0] == 1
    assert bob.client.state == "disconnected"
    assert not bob.client._reconnect_timer.isActive()
    assert bob.reconnect_label.text() == sentence
    assert bob.reconnect_button.text() == "Reconnect"
    assert sentence in [text for _kind, text in notices(lobby(bob).model)]


def test_the_grace_period_comes_from_the_host(qtbot, apps, room):
    room.start(resume_grace=42.0)
    bob = apps.join(room.port, "Bob").window
    assert bob.client.server_info["grace"] == 42.0
    assert bob.client.grace_period() == 42.0
    bob.client.server_info.pop("grace")  # an older host that does not say
    assert bob.client.grace_period() == 120.0


# --- 12: Qt's error strings mid-sentence -----------------------------------------------


def test_qt_error_strings_are_lower_case_mid_sentence(qtbot, make_client):
    def answer(frame):
        return [registered(frame)] if frame["type"] == "register" else []

    host = ScriptedHost(answer)
    client = make_client()
    window = ChatWindow(client)
    qtbot.addWidget(window)
    with qtbot.waitSignal(client.registered, timeout=WAIT_MS):
        client.open(Endpoint("127.0.0.1", host.port), "alice")
    with qtbot.waitSignal(client.connectionLost, timeout=WAIT_MS) as lost:
        host.close()  # drops the connection without a bye
    assert lost.args[0] == "the remote host closed the connection"
    texts = [text for _kind, text in notices(lobby(window).model)]
    assert "Connection lost (the remote host closed the connection) — reconnecting…" in texts
    assert window.reconnect_label.text() == ("Connection lost (the remote host closed the "
                                             "connection) — trying to reconnect (attempt 1)…")
    client.stop_reconnecting()


def test_qt_error_text_keeps_acronyms():
    assert qt_error_text("The remote host closed the connection") == \
        "the remote host closed the connection"
    assert qt_error_text("SSL handshake failed") == "SSL handshake failed"
    assert qt_error_text("") == "network error"


# --- 12: the message box ---------------------------------------------------------------


def test_shift_enter_makes_a_two_line_message_that_arrives_whole(qtbot, pair):
    alice, bob = pair
    box = alice.input
    qtbot.keyClicks(box, "first line")
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    one_line = box.height()
    qtbot.keyClicks(box, "second line")
    assert box.text() == "first line\nsecond line"  # Shift+Enter did not send
    assert delivered(lobby(alice).model, "first line\nsecond line") == 0
    assert box.height() > one_line or box.document().size().height() >= 2
    qtbot.keyClick(box, Qt.Key.Key_Return)
    assert box.text() == ""
    wait_for_text(qtbot, lobby(bob).model, "first line\nsecond line")
    assert ("Alice", "first line\nsecond line") in messages(lobby(bob).model)


def test_the_box_grows_to_six_lines_then_scrolls(qtbot, pair):
    alice, _ = pair
    box = alice.input
    heights = []
    for line in range(9):
        qtbot.keyClicks(box, f"line {line}")
        heights.append(box.height())
        qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert heights[0] < heights[1] < heights[5]
    assert heights[5] == heights[8]  # six lines, then it scrolls
    assert box.verticalScrollBar().maximum() > 0


def test_enter_sends_and_up_recalls_a_multi_line_message(qtbot, pair):
    alice, bob = pair
    box = alice.input
    type_line(qtbot, alice, "one")
    qtbot.keyClicks(box, "two")
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(box, "lines")
    qtbot.keyClick(box, Qt.Key.Key_Return)
    wait_for_text(qtbot, lobby(bob).model, "two\nlines")
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert box.text() == "two\nlines"
    # The cursor is on the last line: Up moves within the message, not to older ones.
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert box.text() == "two\nlines"
    qtbot.keyClick(box, Qt.Key.Key_Up)  # now on the first line
    assert box.text() == "one"
    qtbot.keyClick(box, Qt.Key.Key_Down)
    assert box.text() == "two\nlines"


def test_where_the_room_stands_is_saved_while_messages_arrive(qtbot, apps):
    """A second after messages arrive the app saves the newest seq it has seen (in a
    thread of its own: the settings file is rewritten each time), so the next start
    resumes from there; closing saves it at once."""
    from qtchat.gui.app import session_key
    from qtchat.gui.start_dialog import settings

    alice = apps.host("Alice")
    bob = apps.join(alice.host_runtime.server.port, "Bob")
    key = session_key(bob._session_scope, "Bob")

    def saved() -> list[str]:
        return [str(value) for value in settings().value(key) or []]

    for number in range(3):
        type_line(qtbot, alice.window, f"note {number}")
    wait_for_text(qtbot, lobby(bob.window).model, "note 2")
    newest = bob.client.last_seq
    qtbot.waitUntil(lambda: saved() == [bob.client.session, str(newest)], timeout=WAIT_MS)
    type_line(qtbot, alice.window, "one more")
    wait_for_text(qtbot, lobby(bob.window).model, "one more")
    bob.release_session()  # what closing the window does
    assert saved() == [bob.client.session, str(bob.client.last_seq)]
    assert bob.client.last_seq > newest


def test_a_short_grace_from_the_host_still_leaves_time_to_come_back(qtbot, apps, room):
    room.start(resume_grace=0.2)
    bob = apps.join(room.port, "Bob").window
    assert bob.client.grace_period() == 30.0  # MIN_GIVE_UP_S: rejoining stays possible


# --- 12: a 4,000-character message -----------------------------------------------------


def test_a_very_long_message_is_clipped_with_show_more_and_show_less(qtbot):
    from test_message_view import Chat, broadcast

    from qtchat.gui.message_view import CLIP_LINES

    chat = Chat(qtbot, width=500, height=600)
    view, model = chat.view, chat.model
    long_text = " ".join(f"word{n:04d}" for n in range(440))[:4000]
    model.add_messages([broadcast(1, text="just before"), broadcast(2, text=long_text)])
    chat.settle()
    line = view.delegate().line_height()
    tall = model.rowCount() - 1
    clipped = view.row_rect(tall).height()
    assert view.is_clipped(tall)
    assert clipped <= (CLIP_LINES + 3) * line  # twelve lines and the link, not the view
    shown = [row for row, _rect in view.visible_rows()]
    assert tall - 1 in shown  # the message before it is still on screen

    def click_link() -> None:
        rect = view.row_rect(tall)
        pos = QPoint(rect.right() - 20, rect.bottom() - 4)  # "Show more", right-aligned
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier, pos)
        chat.settle()

    click_link()
    assert not view.is_clipped(tall)
    whole = view.row_rect(tall).height()
    assert whole > view.viewport().height() > clipped  # all 4,000 characters, scrolling
    assert view.delegate().measure(model.entry(tall)) <= whole
    click_link()  # "Show less", at the bottom of the row the view follows
    assert view.is_clipped(tall)
    assert view.row_rect(tall).height() == clipped


def test_a_message_of_a_few_lines_is_shown_whole(qtbot):
    from test_message_view import Chat, broadcast

    chat = Chat(qtbot, width=500, height=600)
    chat.model.add_messages([broadcast(1, text="one\ntwo\nthree\nfour")])
    chat.settle()
    assert not chat.view.is_clipped(0)


def test_enter_on_the_current_row_shows_more_from_the_keyboard(qtbot):
    from test_message_view import Chat, broadcast

    chat = Chat(qtbot, width=500, height=600)
    long_text = " ".join(f"word{n:04d}" for n in range(440))[:4000]
    chat.model.add_messages([broadcast(1, text=long_text)])
    chat.settle()
    chat.view.setFocus()
    qtbot.keyClick(chat.view, Qt.Key.Key_End)  # the newest row becomes the current one
    assert chat.view.is_clipped(0)
    qtbot.keyClick(chat.view, Qt.Key.Key_Return)
    chat.settle()
    assert not chat.view.is_clipped(0)
