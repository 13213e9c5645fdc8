"""The desktop app end to end: real widgets, a real server on 127.0.0.1, port 0.

Two ``AppController``s play two people on one machine: one hosts (as
``qtchat host`` would, minus the LAN announcement), the other joins; the tests
type into ``ChatInput`` with ``qtbot`` and read what the *other* window shows
from its models. Settings and data directories are the test's own temp dirs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_harness import WAIT_MS, Apps, gui_args, isolate_settings
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QTabBar

from qtchat.address import parse_join_target
from qtchat.gui import delegate as delegate_module
from qtchat.gui.conversation import Conversation
from qtchat.gui.main_window import ChatWindow
from qtchat.gui.members import MemberRoles
from qtchat.gui.models import (
    ConversationKind,
    MessageModel,
    MessageRoles,
    NoticeKind,
    RowKind,
)
from qtchat.gui.start_dialog import HostChoice, JoinChoice, StartDialog, settings
from qtchat.server.chat_server import ChatServer, ServerConfig

# The offscreen platform plugin says this whenever a QMainWindow is shown; it is
# about the test platform, not about the app.
pytestmark = [pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints"),
              pytest.mark.usefixtures("isolated_settings")]
__all__ = ["Apps", "gui_args", "isolate_settings"]  # the harness, for older imports


# --- helpers ------------------------------------------------------------------------


def lobby(window: ChatWindow) -> Conversation:
    conv = window.conversation(ConversationKind.ROOM, "lobby", create=False)
    assert conv is not None
    return conv


def messages(model: MessageModel) -> list[tuple[str, str]]:
    """(sender, text) of every message row, in order."""
    rows = []
    for row in range(model.rowCount()):
        index = model.index(row)
        if index.data(MessageRoles.Kind) == RowKind.MESSAGE:
            rows.append((index.data(MessageRoles.Sender), index.data(MessageRoles.Text)))
    return rows


def notices(model: MessageModel) -> list[tuple[int, str]]:
    rows = []
    for row in range(model.rowCount()):
        index = model.index(row)
        if index.data(MessageRoles.Kind) == RowKind.NOTICE:
            rows.append((index.data(MessageRoles.NoticeKind), index.data(MessageRoles.Text)))
    return rows


def delivered(model: MessageModel, text: str) -> int:
    """How many confirmed (seq-carrying) message rows show ``text``."""
    count = 0
    for row in range(model.rowCount()):
        index = model.index(row)
        if index.data(MessageRoles.Text) == text and index.data(MessageRoles.Seq) is not None:
            count += 1
    return count


def type_line(qtbot, window: ChatWindow, text: str) -> None:
    qtbot.keyClicks(window.input, text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)


def wait_for_text(qtbot, model: MessageModel, text: str) -> None:
    qtbot.waitUntil(lambda: delivered(model, text) >= 1, timeout=WAIT_MS)


# --- the tests ----------------------------------------------------------------------


def test_broadcast_typed_in_one_window_arrives_in_the_others_lobby(qtbot, pair, qtmodeltester):
    alice, bob = pair
    type_line(qtbot, alice, "hello from Alice")
    assert alice.input.text() == ""
    wait_for_text(qtbot, lobby(bob).model, "hello from Alice")
    assert ("Alice", "hello from Alice") in messages(lobby(bob).model)
    # Alice's own row went from pending to confirmed, exactly once.
    wait_for_text(qtbot, lobby(alice).model, "hello from Alice")
    assert messages(lobby(alice).model).count(("Alice", "hello from Alice")) == 1
    for window in (alice, bob):
        qtmodeltester.check(lobby(window).model)
        qtmodeltester.check(lobby(window).members)
        qtmodeltester.check(window.rooms)


def test_whisper_opens_a_private_tab_for_the_recipient_only(qtbot, pair, qtmodeltester):
    alice, bob = pair
    type_line(qtbot, alice, "/w Bob meet me at noon")
    qtbot.waitUntil(lambda: bob.conversation(ConversationKind.PRIVATE, "Alice",
                                             create=False) is not None, timeout=WAIT_MS)
    private = bob.conversation(ConversationKind.PRIVATE, "Alice", create=False)
    wait_for_text(qtbot, private.model, "meet me at noon")
    row = private.model.index(private.model.rowCount() - 1)
    assert row.data(MessageRoles.IsWhisper) is True
    assert row.data(MessageRoles.Sender) == "Alice"
    assert "✉ Alice" in [bob.tabs.tabText(i) for i in range(bob.tabs.count())]
    assert bob.rooms.unread("Alice", ConversationKind.PRIVATE) == 1
    assert all(text != "meet me at noon" for _, text in messages(lobby(bob).model))
    # The sender sees it in her own private tab with Bob; she stays in the lobby, where
    # a short line says where it went.
    mine = alice.conversation(ConversationKind.PRIVATE, "Bob", create=False)
    assert mine is not None and alice.current() is lobby(alice)
    wait_for_text(qtbot, mine.model, "meet me at noon")
    assert all(text != "meet me at noon" for _, text in messages(lobby(alice).model))
    assert (NoticeKind.INFO, "✉ to Bob: meet me at noon") in notices(lobby(alice).model)
    qtmodeltester.check(private.model)
    qtmodeltester.check(bob.rooms)


def test_taken_name_is_answered_in_the_start_dialog(qtbot, apps):
    alice = apps.host("Alice")
    port = alice.host_runtime.server.port
    # Bob is on another computer: no session of "alice" stored in *his* settings
    # (see test_second_instance_with_the_same_name_keeps_its_hands_off).
    settings().remove("sessions")
    bob = apps.controller()
    bob.show_dialog()
    dialog = bob.dialog
    assert isinstance(dialog, StartDialog)
    dialog.name_edit.setText("alice")  # the same name, differently cased
    dialog.tabs.setCurrentIndex(1)
    dialog.address_edit.setText(f"127.0.0.1:{port}")
    qtbot.mouseClick(dialog.join_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "taken" in dialog.error_label.text(), timeout=WAIT_MS)
    assert not dialog.error_label.isHidden()
    assert dialog.error_label.textFormat() == Qt.TextFormat.PlainText
    assert dialog.join_button.isEnabled()  # fix the name and try again
    assert bob.window is None and bob.client is None
    # ... and a different name then gets in from the same dialog.
    dialog.name_edit.setText("Bob")
    qtbot.mouseClick(dialog.join_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bob.window is not None, timeout=WAIT_MS)
    assert dialog.isHidden()


def test_second_instance_with_the_same_name_keeps_its_hands_off(qtbot, apps):
    # The saved session is locked by the first copy: the second registers afresh.
    alice = apps.host("Alice")
    port = alice.host_runtime.server.port
    again = apps.controller()  # same settings: the app opened twice by one person
    again.join(JoinChoice(name="Alice", target=parse_join_target(f"127.0.0.1:{port}"),
                          password=None))
    with qtbot.assertNotEmitted(alice.client.connectionLost, wait=1500):
        pass


def test_server_restart_loses_and_doubles_nothing(qtbot, apps, tmp_path):
    data_dir = tmp_path / "restart-data"

    def start_server(port: int) -> ChatServer:
        server = ChatServer(ServerConfig(host="127.0.0.1", port=port, server_name="restart",
                                         data_dir=data_dir, rate_limit=0.0))
        server.start()
        return server

    server = start_server(0)
    port = server.port
    try:
        alice = apps.join(port, "Alice").window
        bob = apps.join(port, "Bob").window
        type_line(qtbot, alice, "before the outage")
        wait_for_text(qtbot, lobby(bob).model, "before the outage")

        with qtbot.waitSignals([alice.client.connectionLost, bob.client.connectionLost],
                               timeout=WAIT_MS):
            server.stop()
        server.close_store()
        assert alice.state_label.text().startswith("Connection lost")
        type_line(qtbot, alice, "typed while down")  # queued in the outbox
        type_line(qtbot, bob, "Bob typed while down")
        assert delivered(lobby(alice).model, "typed while down") == 0  # still pending

        with qtbot.waitSignals([alice.client.reconnected, bob.client.reconnected],
                               timeout=WAIT_MS):
            server = start_server(port)
        for window in (alice, bob):
            for text in ("before the outage", "typed while down", "Bob typed while down"):
                wait_for_text(qtbot, lobby(window).model, text)
        # A ping round trip: anything doubled by the resume would have arrived by now.
        for window in (alice, bob):
            with qtbot.waitSignal(window.client.pongReceived, timeout=WAIT_MS):
                window.client.ping()
        for window in (alice, bob):
            model = lobby(window).model
            for text in ("before the outage", "typed while down", "Bob typed while down"):
                assert delivered(model, text) == 1, (window.me, text, messages(model))
            assert not model.pending_entries()
            assert any(kind == NoticeKind.RECONNECTED for kind, _ in notices(model))
        assert alice.state_label.text().startswith("Connected")
        assert alice.input.isEnabled()
    finally:
        if server.is_listening:
            server.stop()
        server.close_store()


def test_a_host_that_starts_over_with_new_history_loses_nothing_new(qtbot, apps, tmp_path):
    """The host comes back with an empty data folder, so its seq counts from 1 again:
    what was said before stays on screen under a notice, and every new message shows
    (none is taken for one already seen because it reuses a number)."""
    def start_server(port: int, data_dir) -> ChatServer:
        server = ChatServer(ServerConfig(host="127.0.0.1", port=port, server_name="over",
                                         data_dir=data_dir, rate_limit=0.0))
        server.start()
        return server

    server = start_server(0, tmp_path / "first")
    port = server.port
    try:
        alice = apps.join(port, "Alice").window
        bob = apps.join(port, "Bob").window
        for text in ("old one", "old two"):
            type_line(qtbot, alice, text)
            wait_for_text(qtbot, lobby(bob).model, text)
        for window in (alice, bob):
            window.grab()  # painted: the delegates now hold the old rows' layouts
        with qtbot.waitSignals([alice.client.connectionLost, bob.client.connectionLost],
                               timeout=WAIT_MS):
            server.stop()
        server.close_store()
        with qtbot.waitSignals([alice.client.startedOver, bob.client.startedOver,
                                alice.client.reconnected, bob.client.reconnected],
                               timeout=WAIT_MS):
            server = start_server(port, tmp_path / "second")
        for text in ("new one", "new two", "new three"):
            type_line(qtbot, alice, text)
        for window in (alice, bob):
            model = lobby(window).model
            for text in ("new one", "new two", "new three"):
                wait_for_text(qtbot, model, text)
            shown = [text for _sender, text in messages(model)]
            assert shown[:2] == ["old one", "old two"], shown  # still there, and first
            assert shown[2:] == ["new one", "new two", "new three"], shown
            assert any("started over" in text for _kind, text in notices(model))
            window.grab()
            view = lobby(window).view
            painted = [view.painted_text(row) for row in range(model.rowCount())
                       if model.index(row).data(MessageRoles.Kind) == RowKind.MESSAGE]
            for text, on_screen in zip(shown, painted, strict=True):  # what a person reads
                assert text in on_screen, (text, on_screen)
    finally:
        if server.is_listening:
            server.stop()
        server.close_store()


@pytest.mark.parametrize("text", ["<img src=/etc/hostname>", "<b>x</b>"])
def test_html_looking_text_is_shown_literally(qtbot, pair, text):
    alice, bob = pair
    type_line(qtbot, alice, text)
    model = lobby(bob).model
    wait_for_text(qtbot, model, text)
    row = next(r for r in range(model.rowCount())
               if model.index(r).data(MessageRoles.Text) == text)
    index = model.index(row)
    assert text in index.data(Qt.ItemDataRole.DisplayRole)
    view = lobby(bob).view
    assert isinstance(view.delegate(), delegate_module.MessageDelegate)
    assert text in view.painted_text(row)  # the eight characters, not markup
    assert "<" not in (index.data(Qt.ItemDataRole.ToolTipRole) or "")
    bob.resize(900, 600)
    image = bob.grab().toImage()  # paints every row; rich text would try to load the image
    assert not image.isNull()
    assert image.pixelColor(image.width() // 2, image.height() // 2).isValid()


def test_delegate_never_reaches_for_rich_text():
    source = Path(delegate_module.__file__).read_text(encoding="utf-8")
    code = "\n".join(line for line in source.splitlines()
                     if not line.lstrip().startswith(("#", '"', "``")))
    for rich in ("QTextDocument(", "setHtml", "mightBeRichText", "Qt.RichText",
                 "TextFormat.RichText"):
        assert rich not in code


def test_members_list_marks_the_host(qtbot, pair, qtmodeltester):
    alice, bob = pair
    members = lobby(bob).members
    assert members.names() == ["Alice", "Bob"]
    assert members.is_host("Alice") and not members.is_host("Bob")
    host_row = members.index(members.row_of("Alice"))
    assert host_row.data(MemberRoles.IsHost) is True
    assert host_row.data(Qt.ItemDataRole.DisplayRole) == "Alice (host)"
    assert bob.members_view.model() is members
    assert lobby(alice).members.is_host("Alice")
    assert "(hosting)" in alice.windowTitle() and "(hosting)" not in bob.windowTitle()
    qtmodeltester.check(members)


def test_join_creates_a_room_tab_and_leave_removes_it(qtbot, pair, qtmodeltester):
    alice, bob = pair
    tabs_before = alice.tabs.count()
    with qtbot.waitSignal(alice.client.roomJoined, timeout=WAIT_MS):
        type_line(qtbot, alice, "/join dev")
    dev = alice.conversation(ConversationKind.ROOM, "dev", create=False)
    assert dev is not None
    assert alice.tabs.count() == tabs_before + 1
    assert alice.current() is dev
    assert alice.members_view.model() is dev.members and dev.members.names() == ["Alice"]
    assert alice.rooms.row_of("dev") >= 0
    qtmodeltester.check(dev.members)
    qtmodeltester.check(alice.rooms)
    # Bob joins too, and a message to "dev" stays out of the lobby.
    with qtbot.waitSignal(bob.client.roomJoined, timeout=WAIT_MS):
        type_line(qtbot, bob, "/join dev")
    qtbot.waitUntil(lambda: "Bob" in dev.members.names(), timeout=WAIT_MS)
    type_line(qtbot, bob, "only for dev")
    wait_for_text(qtbot, dev.model, "only for dev")
    assert delivered(lobby(alice).model, "only for dev") == 0

    with qtbot.waitSignal(alice.client.roomLeft, timeout=WAIT_MS):
        type_line(qtbot, alice, "/leave")
    assert alice.conversation(ConversationKind.ROOM, "dev", create=False) is None
    assert alice.tabs.count() == tabs_before
    assert alice.rooms.row_of("dev") < 0
    qtbot.waitUntil(lambda: "Alice" not in bob.conversation(
        ConversationKind.ROOM, "dev", create=False).members.names(), timeout=WAIT_MS)


def test_lobby_cannot_be_left(qtbot, pair):
    alice, _ = pair
    bar = alice.tabs.tabBar()
    lobby_index = alice.tabs.indexOf(lobby(alice).view)
    assert bar.tabButton(lobby_index, QTabBar.ButtonPosition.RightSide) is None
    assert bar.tabButton(lobby_index, QTabBar.ButtonPosition.LeftSide) is None
    type_line(qtbot, alice, "/leave")
    assert (NoticeKind.ERROR, "Everyone stays in the lobby; it cannot be left.") in \
        notices(lobby(alice).model)


def test_up_and_down_recall_what_was_typed(qtbot, pair):
    alice, _ = pair
    line = alice.input
    for text in ("first", "second"):
        type_line(qtbot, alice, text)
    expected = ["second", "first", "first"]  # Up stops at the oldest
    for text in expected:
        qtbot.keyClick(line, Qt.Key.Key_Up)
        assert line.text() == text
    qtbot.keyClick(line, Qt.Key.Key_Down)
    assert line.text() == "second"
    qtbot.keyClick(line, Qt.Key.Key_Down)
    assert line.text() == ""


def test_tab_completes_a_members_name(qtbot, pair):
    alice, _ = pair
    line = alice.input
    qtbot.keyClicks(line, "bo")
    qtbot.keyClick(line, Qt.Key.Key_Tab)
    assert line.text() == "Bob: "
    assert line.hasFocus() or not alice.isActiveWindow()  # Tab did not move the focus away
    line.clear()
    qtbot.keyClicks(line, "thanks b")
    qtbot.keyClick(line, Qt.Key.Key_Tab)
    assert line.text() == "thanks Bob "
    line.clear()
    qtbot.keyClicks(line, "zz")
    qtbot.keyClick(line, Qt.Key.Key_Tab)
    assert line.text() == "zz"


def test_unknown_command_gives_a_notice(qtbot, pair, qtmodeltester):
    alice, bob = pair
    sent: list[str] = []
    alice.client.sendConfirmed.connect(lambda message_id, _frame: sent.append(message_id))
    type_line(qtbot, alice, "/frobnicate now")
    model = lobby(alice).model
    assert (NoticeKind.ERROR, "Unknown command /frobnicate — type /help for the list.") in \
        notices(model)
    # Nothing went to the server: a ping round trip proves no echo is on its way.
    with qtbot.waitSignal(alice.client.pongReceived, timeout=WAIT_MS):
        alice.client.ping()
    assert sent == []
    assert all("frobnicate" not in text for _, text in messages(lobby(bob).model))
    type_line(qtbot, alice, "/help")
    assert any(text.startswith("Commands:") for _, text in notices(model))
    qtmodeltester.check(model)


def test_me_action_and_double_slash(qtbot, pair):
    alice, bob = pair
    type_line(qtbot, alice, "/me waves")
    type_line(qtbot, alice, "//etc is a path")
    model = lobby(bob).model
    wait_for_text(qtbot, model, "/etc is a path")
    action = next(model.index(r) for r in range(model.rowCount())
                  if model.index(r).data(MessageRoles.IsAction))
    assert action.data(MessageRoles.Text) == "waves"
    assert action.data(Qt.ItemDataRole.DisplayRole) == "* Alice waves"



def test_a_tls_invite_copied_by_the_host_and_pasted_into_join_connects_pinned(
        qtbot, apps, monkeypatch):
    # The host's invite names its first LAN address; here that is loopback, so the
    # joining side really connects to it (tests talk to 127.0.0.1 only).
    monkeypatch.setattr("qtchat.gui.app.local_addresses", lambda versions=(4, 6): ["127.0.0.1"])
    alice = apps.controller()
    alice.host(HostChoice(name="Alice", room_name="Secret room", port=0, password=None,
                          tls=True))
    qtbot.waitUntil(lambda: alice.window is not None, timeout=WAIT_MS)
    server = alice.host_runtime.server
    assert server.fingerprint

    alice.window.invite_button.click()
    invite = QGuiApplication.clipboard().text()
    assert invite == f"qtchat://127.0.0.1:{server.port}?fp={server.fingerprint}"

    bob = apps.controller()
    bob.show_dialog()
    dialog = bob.dialog
    assert dialog is not None
    dialog.name_edit.setText("Bob")
    dialog.tabs.setCurrentIndex(1)
    dialog.address_edit.setText(invite)
    dialog.join_button.click()
    qtbot.waitUntil(lambda: bob.window is not None, timeout=WAIT_MS)

    assert bob.client.endpoint.tls
    assert bob.client.peer_fingerprint == server.fingerprint
    assert any(server.fingerprint in text for _, text in notices(lobby(bob.window).model))
    type_line(qtbot, bob.window, "over the invite")
    wait_for_text(qtbot, lobby(alice.window).model, "over the invite")


def test_whisper_to_nobody_leaves_no_tab_and_says_so(qtbot, pair):
    alice, _bob = pair
    type_line(qtbot, alice, "/w Nobody are you there?")
    qtbot.waitUntil(lambda: alice.conversation(ConversationKind.PRIVATE, "Nobody",
                                               create=False) is None, timeout=WAIT_MS)
    assert any("Nobody called Nobody is here" in text for _, text in notices(lobby(alice).model))
    assert alice.client.pending_ids == []


def test_whisper_to_nobody_from_the_lobby_stays_in_the_lobby(qtbot, pair):
    """With a private tab open next to it, a refused whisper typed in the lobby is told
    in the lobby, and the lobby stays the tab in front."""
    alice, bob = pair
    type_line(qtbot, alice, "/w Bob hi")
    wait_for_text(qtbot, bob.conversation(ConversationKind.PRIVATE, "Alice").model, "hi")
    alice.show_conversation(lobby(alice))
    type_line(qtbot, alice, "/w Ghost boo")
    qtbot.waitUntil(lambda: alice.conversation(ConversationKind.PRIVATE, "Ghost",
                                               create=False) is None, timeout=WAIT_MS)
    assert alice.current() is lobby(alice)
    assert any("Nobody called Ghost is here" in text for _, text in notices(lobby(alice).model))
    private = alice.conversation(ConversationKind.PRIVATE, "Bob", create=False)
    assert not any("Ghost" in text for _, text in notices(private.model))


def test_a_paste_too_long_is_kept_and_explained_not_cut(qtbot, pair):
    alice, bob = pair
    alice.input.setText("x" * 4500)  # as a paste does
    qtbot.keyClick(alice.input, Qt.Key.Key_Return)
    assert alice.input.text() == "x" * 4500  # still there, to shorten
    assert any("4,500 characters" in text and "4,000" in text
               for _, text in notices(lobby(alice).model))
    assert alice.client.pending_ids == []
    emoji = "\N{GRINNING FACE}" * 4000  # 4,000 characters: 8,000 UTF-16 units, allowed
    alice.input.setText(emoji)
    qtbot.keyClick(alice.input, Qt.Key.Key_Return)
    assert alice.input.text() == ""
    wait_for_text(qtbot, lobby(bob).model, emoji)


def test_leave_in_a_private_tab_closes_it_and_the_side_panel_follows(qtbot, pair):
    alice, _bob = pair
    type_line(qtbot, alice, "/w Bob")
    private = alice.conversation(ConversationKind.PRIVATE, "Bob", create=False)
    assert private is not None and alice.current() is private
    assert alice.members_panel.isHidden()  # nobody to list in a private conversation
    type_line(qtbot, alice, "/leave")
    assert alice.conversation(ConversationKind.PRIVATE, "Bob", create=False) is None
    assert alice.current() is lobby(alice)
    assert not alice.members_panel.isHidden()
    assert alice.members_label.text() == "In lobby · 2 people"


def test_host_and_join_stay_disabled_while_an_attempt_runs(qtbot, apps):
    controller = apps.controller()
    controller.show_dialog()
    dialog = controller.dialog
    assert dialog is not None
    dialog.name_edit.setText("Carol")
    dialog.set_busy(True, "Connecting…")
    qtbot.keyClicks(dialog.name_edit, "x")  # typing used to re-enable them
    assert not dialog.host_button.isEnabled() and not dialog.join_button.isEnabled()
    dialog.show_error("Nothing is listening there.")
    assert dialog.host_button.isEnabled() and dialog.join_button.isEnabled()


def test_a_restarted_host_window_shows_the_rooms_history(qtbot, apps):
    alice = apps.host("Alice")  # on port 0: the restart below gets another port
    type_line(qtbot, alice.window, "said before the restart")
    wait_for_text(qtbot, lobby(alice.window).model, "said before the restart")
    window = alice.window  # quit the app as Ctrl-C would, without questions
    window.closedByUser.disconnect()
    window._force_close = True
    window.close()
    alice.release_session()  # what the app does as it exits
    alice.host_runtime.server.wait_stopped()
    alice.window = alice.host_runtime = None

    again = apps.host("Alice")  # same data dir and settings: it resumes its saved session
    wait_for_text(qtbot, lobby(again.window).model, "said before the restart")
    assert delivered(lobby(again.window).model, "said before the restart") == 1


# --- the side panels ------------------------------------------------------------------


def test_join_button_asks_for_a_room_and_joins_it(qtbot, pair):
    from PySide6.QtCore import QTimer

    from qtchat.gui.pick_dialog import PickDialog

    alice, _bob = pair

    def answer() -> None:
        dialog = next(w for w in alice.findChildren(PickDialog) if w.isVisible())
        dialog.edit.setText("dev")
        dialog.accept()

    QTimer.singleShot(0, answer)
    with qtbot.waitSignal(alice.client.roomJoined, timeout=WAIT_MS):
        qtbot.mouseClick(alice.conversation_list.join_button, Qt.MouseButton.LeftButton)
    dev = alice.conversation(ConversationKind.ROOM, "dev", create=False)
    assert dev is not None and alice.current() is dev


def test_clicking_a_conversation_brings_its_tab_to_the_front(qtbot, pair):
    alice, _bob = pair
    type_line(qtbot, alice, "/w Bob")
    assert alice.current().kind == ConversationKind.PRIVATE
    view = alice.rooms_view
    row = alice.rooms.index(alice.rooms.row_of("lobby"))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                     pos=view.visualRect(row).center())
    assert alice.current() is lobby(alice)
    assert view.currentIndex().row() == row.row()
    assert not alice.members_panel.isHidden()


def test_double_clicking_a_member_opens_a_private_conversation(qtbot, pair):
    alice, _bob = pair
    view = alice.members_view
    members = lobby(alice).members

    def double_click(name: str) -> None:  # press, release, then the double click
        where = view.visualRect(members.index(members.row_of(name))).center()
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=where)
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=where)

    double_click("Alice")
    assert alice.current() is lobby(alice)  # no conversation with oneself
    double_click("Bob")
    private = alice.conversation(ConversationKind.PRIVATE, "Bob", create=False)
    assert private is not None and alice.current() is private
    assert alice.members_panel.isHidden()
    assert alice.members_label.text() == "Private with Bob"
