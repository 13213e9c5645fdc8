"""Rough edges of the app a newcomer hit, seen from the start dialog.

Uses the two-person ``apps`` harness of ``test_gui``: real controllers, real widgets,
a real server on 127.0.0.1.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from test_gui import WAIT_MS, Apps, gui_args

from qtchat.cli import build_parser
from qtchat.gui.app import AppController, _app_data_dir
from qtchat.gui.start_dialog import HostChoice, StartDialog, fingerprint_lines
from qtchat.tlsutil import PinStore

pytestmark = [pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints"),
              pytest.mark.usefixtures("isolated_settings")]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fingerprint_lines_are_two_halves_that_line_up():
    fingerprint = ":".join(f"{n:02X}" for n in range(32))
    first, second = fingerprint_lines(fingerprint).splitlines()
    assert first == ":".join(f"{n:02X}" for n in range(16))
    assert second == ":".join(f"{n:02X}" for n in range(16, 32))


def test_a_changed_certificate_shows_both_fingerprints_whole_and_can_be_trusted(
        qtbot, apps: Apps):
    alice = apps.controller()
    alice.host(HostChoice(name="Alice", room_name="Secret", port=0, password=None, tls=True))
    qtbot.waitUntil(lambda: alice.window is not None, timeout=WAIT_MS)
    server = alice.host_runtime.server
    address = f"127.0.0.1:{server.port}"
    old = ":".join(["CD"] * 32)
    PinStore(_app_data_dir()).remember(address, old)  # what Bob saw last time

    bob = apps.controller()
    bob.show_dialog()
    dialog = bob.dialog
    assert isinstance(dialog, StartDialog)
    dialog.resize(dialog.minimumSizeHint())  # as small as it opens
    dialog.name_edit.setText("Bob")
    dialog.tabs.setCurrentIndex(1)
    dialog.address_edit.setText(f"qtchat://{address}?tls=1")
    dialog.join_button.click()
    qtbot.waitUntil(dialog.cert_box.isVisible, timeout=WAIT_MS)

    shown = dialog.cert_fingerprints.text()
    assert fingerprint_lines(old) in shown
    assert fingerprint_lines(server.fingerprint) in shown
    assert "changed" in dialog.error_label.text()
    # Nothing clipped: the fingerprints' label and the button fit inside the dialog.
    label = dialog.cert_fingerprints
    assert label.width() >= label.sizeHint().width()
    bottom = dialog.trust_button.mapTo(dialog, dialog.trust_button.rect().bottomRight())
    assert bottom.y() <= dialog.height() and bottom.x() <= dialog.width()
    assert bob.window is None

    dialog.trust_button.click()
    qtbot.waitUntil(lambda: bob.window is not None, timeout=WAIT_MS)
    assert bob.client.peer_fingerprint == server.fingerprint
    assert PinStore(_app_data_dir()).get(address) == server.fingerprint


def test_qtchat_join_that_fails_opens_the_dialog_filled_in(qtbot, apps: Apps, tmp_path: Path):
    port = _closed_port()
    args = gui_args(tmp_path / "host", command="join")
    args.address, args.nick, args.password = f"127.0.0.1:{port}", "Bob", "sesame"
    controller = AppController(args)
    apps.controllers.append(controller)
    controller.start()
    qtbot.waitUntil(lambda: controller.dialog is not None and
                    bool(controller.dialog.error_label.text()), timeout=WAIT_MS)
    dialog = controller.dialog
    assert dialog.isVisible()
    assert dialog.tabs.currentIndex() == 1
    assert dialog.address_edit.text() == f"127.0.0.1:{port}"
    assert dialog.name_edit.text() == "Bob"
    assert dialog.join_password.text() == "sesame"
    assert "nothing is listening" in dialog.error_label.text().lower() or \
        "refused" in dialog.error_label.text().lower(), dialog.error_label.text()
    assert dialog.join_button.isEnabled()
    assert controller.exit_code == 0


def test_qtchat_host_on_a_port_in_use_opens_the_dialog_with_a_free_port(
        qtbot, apps: Apps, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = build_parser().parse_args([  # what `qtchat host` parses
            "host", "--nick", "Alice", "--port", str(port), "--server-name", "Team room",
            "--no-announce", "--data-dir", str(tmp_path / "host")])
        controller = AppController(args)
        apps.controllers.append(controller)
        controller.start()  # the room's server says why it cannot start, a moment later
        qtbot.waitUntil(lambda: controller.dialog is not None
                        and controller.dialog.isVisible(), timeout=WAIT_MS)
        dialog = controller.dialog
        assert "already in use" in dialog.error_label.text()
        assert dialog.tabs.currentIndex() == 0
        assert dialog.room_edit.text() == "Team room"
        assert dialog.port_spin.value() != port
        assert f"Port {dialog.port_spin.value()} is free" in dialog.error_label.text()


def test_double_clicking_a_password_room_asks_for_the_password_first(qtbot, qapp):
    from qtchat.discovery import SERVICE_TYPE, DiscoveredRoom, DiscoveredRoomsModel

    model = DiscoveredRoomsModel(qapp)
    model.upsert_room(DiscoveredRoom(name="Locked", host="127.0.0.1", port=8801, tls=False,
                                     fingerprint=None, addresses=("127.0.0.1",),
                                     service_name=f"Locked.{SERVICE_TYPE}", password=True))
    dialog = StartDialog(model)
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("Bob")
    dialog.tabs.setCurrentIndex(1)
    with qtbot.assertNotEmitted(dialog.joinRequested):
        dialog._join_discovered(model.index(0))
    assert "Locked needs a password" in dialog.error_label.text()
    assert dialog.address_edit.text() == "127.0.0.1:8801"
    assert dialog.join_password.placeholderText() == "this room needs a password"
    dialog.join_password.setText("sesame")
    with qtbot.waitSignal(dialog.joinRequested) as asked:
        dialog._join_discovered(model.index(0))
    assert asked.args[0].password == "sesame"


# --- the chat window ---------------------------------------------------------------------

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from test_gui import lobby, type_line, wait_for_text  # noqa: E402

from qtchat.gui.models import ConversationKind  # noqa: E402


def test_a_closed_private_tab_comes_back_with_its_conversation(qtbot, pair):
    alice, bob = pair
    type_line(qtbot, alice, "/w Bob are you there?")
    private = bob.conversation(ConversationKind.PRIVATE, "Alice", create=False)
    qtbot.waitUntil(lambda: bob.conversation(ConversationKind.PRIVATE, "Alice",
                                             create=False) is not None, timeout=WAIT_MS)
    private = bob.conversation(ConversationKind.PRIVATE, "Alice", create=False)
    wait_for_text(qtbot, private.model, "are you there?")
    bob.tabs.tabCloseRequested.emit(bob.tabs.indexOf(private.view))
    assert bob.conversation(ConversationKind.PRIVATE, "Alice", create=False) is None
    assert bob.current() is lobby(bob)
    # Double-clicking Alice (or /w Alice) opens it again, with what was said.
    type_line(qtbot, bob, "/w Alice")
    again = bob.conversation(ConversationKind.PRIVATE, "Alice", create=False)
    assert again is not None and bob.current() is again
    assert any(again.model.index(row).data(Qt.ItemDataRole.DisplayRole) and
               "are you there?" in str(again.model.index(row).data(Qt.ItemDataRole.DisplayRole))
               for row in range(again.model.rowCount()))


def test_leaving_a_room_lands_on_the_lobby_and_the_member_count_shows(qtbot, pair):
    alice, _bob = pair
    assert alice.members_label.text() == "In lobby · 2 people"
    type_line(qtbot, alice, "/w Bob")  # a private tab in front of the lobby
    type_line(qtbot, alice, "/join dev")
    qtbot.waitUntil(lambda: alice.current() is not None and alice.current().title == "dev",
                    timeout=WAIT_MS)
    assert alice.members_label.text() == "In dev · 1 person"
    type_line(qtbot, alice, "/leave")
    qtbot.waitUntil(lambda: alice.conversation(ConversationKind.ROOM, "dev",
                                               create=False) is None, timeout=WAIT_MS)
    assert alice.current() is lobby(alice)


def shortcut(window, keys: str) -> None:
    """Press a window shortcut (offscreen windows are never active, so trigger its action)."""
    from PySide6.QtGui import QAction, QKeySequence

    matches = [action for action in window.findChildren(QAction)
               if QKeySequence(keys) in action.shortcuts()]
    assert len(matches) == 1, keys
    matches[0].trigger()


def test_keyboard_moves_between_conversations_and_the_title_counts_unread(qtbot, pair):
    alice, bob = pair
    type_line(qtbot, bob, "/w Alice psst")
    qtbot.waitUntil(lambda: alice.rooms.unread("Bob", ConversationKind.PRIVATE) == 1,
                    timeout=WAIT_MS)
    assert alice.windowTitle().startswith("(1) ")
    shortcut(alice, "Alt+2")
    assert alice.current().kind == ConversationKind.PRIVATE
    assert not alice.windowTitle().startswith("(")
    shortcut(alice, "Ctrl+PgUp")
    assert alice.current() is lobby(alice)
    shortcut(alice, "Ctrl+Tab")
    assert alice.current().kind == ConversationKind.PRIVATE
    menus = [action.text().replace("&", "") for action in alice.menuBar().actions()]
    assert menus == ["Chat", "View", "Help"]


def test_join_a_room_lists_the_hosts_rooms(qtbot, pair):
    alice, bob = pair
    type_line(qtbot, alice, "/join design")
    qtbot.waitUntil(lambda: alice.conversation(ConversationKind.ROOM, "design",
                                               create=False) is not None, timeout=WAIT_MS)
    bob.client.close()  # a fresh registration lists the rooms that exist now
    from qtchat.gui.pick_dialog import PickDialog

    seen: list[list[str]] = []

    def pick() -> None:
        dialog = next(w for w in bob.findChildren(PickDialog) if w.isVisible())
        seen.append([dialog.list.item(i).text() for i in range(dialog.list.count())])
        dialog.list.setCurrentRow(0)
        dialog.reject()

    bob._server_rooms = ["lobby", "design"]  # as registered listed them
    QTimer.singleShot(0, pick)
    bob._ask_join()
    assert seen == [["design"]]  # not the lobby, which Bob is in


def test_the_window_gives_the_messages_room_when_narrow(qtbot, pair):
    alice, _bob = pair
    alice.resize(alice.minimumSize())
    qtbot.waitUntil(lambda: alice.splitter.sizes()[1] > 0, timeout=WAIT_MS)
    middle = alice.splitter.sizes()[1]
    assert middle >= alice.splitter.width() // 2


def test_a_damaged_saved_session_still_joins(qtbot, apps: Apps):
    from qtchat.address import parse_join_target
    from qtchat.gui.app import session_key
    from qtchat.gui.start_dialog import JoinChoice, settings

    alice = apps.host("Alice")
    port = alice.host_runtime.server.port
    settings().setValue(session_key(f"127.0.0.1:{port}", "Bob"), ["secret", "not a number"])
    bob = apps.controller()
    bob.join(JoinChoice(name="Bob", target=parse_join_target(f"127.0.0.1:{port}"),
                        password=None))
    qtbot.waitUntil(lambda: bob.window is not None, timeout=WAIT_MS)
