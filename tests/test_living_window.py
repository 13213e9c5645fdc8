"""The chat window's living-room wiring with real widgets and a real server: Up-arrow
edit, the search bar jumping to an old message, the typing line, deletes."""

from __future__ import annotations

import pytest
from helpers import LineClient
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit
from test_commands import lobby, open_window, private
from test_gui import type_line

from qtchat.gui.models import MessageRoles, RowKind
from qtchat.gui.search_bar import SEQ_ROLE
from qtchat.gui.settings_dialog import Preferences
from qtchat.gui.status_menu import clean_line
from qtchat.living import IdleTimer

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
WAIT_MS = 10_000


def texts(window) -> list[str]:
    model = lobby(window).model
    return [model.index(row).data(MessageRoles.Text) for row in range(model.rowCount())
            if model.index(row).data(MessageRoles.Kind) == RowKind.MESSAGE]


@pytest.fixture
def people(qtbot, server, make_client):
    alice = open_window(qtbot, make_client, server.port, "Alice")
    bob = open_window(qtbot, make_client, server.port, "Bob")
    qtbot.waitUntil(lambda: "Bob" in lobby(alice).members.names(), timeout=WAIT_MS)
    return alice, bob


def test_up_in_an_empty_box_edits_the_last_message_and_everyone_sees_edited(qtbot, people):
    alice, bob = people
    type_line(qtbot, alice, "teh plan")
    qtbot.waitUntil(lambda: "teh plan" in texts(bob), timeout=WAIT_MS)
    qtbot.keyClick(alice.input, Qt.Key.Key_Up)
    assert alice.input.text() == "teh plan" and alice.input.editing is not None
    alice.input.clear()
    type_line(qtbot, alice, "the plan")
    qtbot.waitUntil(lambda: "the plan (edited)" in texts(bob), timeout=WAIT_MS)
    assert "teh plan" not in texts(bob) and "the plan (edited)" in texts(alice)
    model = lobby(bob).model
    row = model.row_of_seq(lobby(alice).model.last_own_seq())
    assert "edited" in model.index(row).data(Qt.ItemDataRole.ToolTipRole)
    # Editing again starts from the text as written, without "(edited)".
    qtbot.keyClick(alice.input, Qt.Key.Key_Up)
    assert alice.input.text() == "the plan"
    qtbot.keyClick(alice.input, Qt.Key.Key_Escape)
    assert alice.input.text() == "" and alice.input.editing is None


def test_a_deleted_message_leaves_message_deleted(qtbot, people):
    alice, bob = people
    type_line(qtbot, alice, "oops")
    qtbot.waitUntil(lambda: "oops" in texts(bob), timeout=WAIT_MS)
    seq = lobby(alice).model.last_own_seq()
    alice.client.delete_message(seq)
    qtbot.waitUntil(lambda: "message deleted" in texts(bob), timeout=WAIT_MS)
    assert "oops" not in texts(bob)


def test_ctrl_f_finds_an_old_message_and_jumps_to_it(qtbot, server, make_client):
    writer = LineClient(qtbot, server.port)
    writer.register("Writer")
    writer.send({"type": "broadcast", "text": "the needle in the haystack", "id": "needle"})
    needle = writer.wait_for("broadcast", id="needle")["seq"]
    for i in range(80):
        writer.send({"type": "broadcast", "text": f"hay {i}"})
    writer.sync()
    bob = open_window(qtbot, make_client, server.port, "Bob")
    qtbot.waitUntil(lambda: "hay 79" in texts(bob), timeout=WAIT_MS)
    assert not lobby(bob).model.has_seq(needle)  # too old for the join's history
    qtbot.keyClick(bob, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    bar = bob.search_bar
    assert bar.isVisible()
    qtbot.keyClicks(bar.query_edit, "NEEDLE")
    qtbot.keyClick(bar.query_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bar.model.rowCount() == 1, timeout=WAIT_MS)
    index = bar.model.index(0, 0)
    assert index.data(SEQ_ROLE) == needle
    bar.results.activated.emit(index)
    model = lobby(bob).model
    qtbot.waitUntil(lambda: model.has_seq(needle), timeout=WAIT_MS)
    view = lobby(bob).view
    row = model.row_of_seq(needle)
    qtbot.waitUntil(lambda: view.selected_rows() == [row], timeout=WAIT_MS)
    assert row in [shown for shown, _rect in view.visible_rows()]


def test_the_typing_line_says_who_is_typing_and_clears_on_their_message(qtbot, people):
    alice, bob = people
    label = bob.living.label(lobby(bob))
    qtbot.keyClicks(alice.input, "hel")
    qtbot.waitUntil(lambda: label.text() == "Alice is typing…", timeout=WAIT_MS)
    assert bob.living.typing_stack.currentWidget() is label
    qtbot.keyClicks(alice.input, "lo")
    qtbot.keyClick(alice.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: label.text() == "", timeout=WAIT_MS)


def test_members_show_who_is_away_with_their_line_as_plain_text(qtbot, people):
    alice, bob = people
    members = lobby(bob).members
    alice.client.set_status("busy", "in a call <b>not bold</b>")
    qtbot.waitUntil(lambda: members.status("Alice")[0] == "busy", timeout=WAIT_MS)
    index = members.index(members.row_of("Alice"))
    assert index.data(Qt.ItemDataRole.ToolTipRole) == "Busy\nin a call <b>not bold</b>"
    assert index.data(Qt.ItemDataRole.DecorationRole) is not None


def test_someone_who_comes_later_sees_the_status_from_registered(qtbot, server, make_client):
    alice = open_window(qtbot, make_client, server.port, "Alice")
    with qtbot.waitSignal(alice.client.pongReceived, timeout=WAIT_MS):
        alice.client.set_status("away", "lunch")
        alice.client.ping()
    cid = open_window(qtbot, make_client, server.port, "Cid")
    members = lobby(cid).members
    qtbot.waitUntil(lambda: "Alice" in members.names(), timeout=WAIT_MS)
    assert members.status("Alice") == ("away", "lunch")


def test_the_app_goes_away_after_the_set_time_and_back_on_input(qtbot, people):
    alice, bob = people
    clock = [1000.0]
    glue = alice.living
    glue._clock = lambda: clock[0]
    glue.idle = IdleTimer(clock[0], away_after=600.0)
    members = lobby(bob).members
    clock[0] += 599.0
    glue._check_idle()  # what its timer does when the time comes
    clock[0] += 1.0
    glue._check_idle()
    qtbot.waitUntil(lambda: members.status("Alice")[0] == "away", timeout=WAIT_MS)
    qtbot.keyClick(alice.input, Qt.Key.Key_Shift)  # any input brings the person back
    qtbot.waitUntil(lambda: members.status("Alice")[0] == "online", timeout=WAIT_MS)


def test_with_typing_turned_off_nothing_is_sent(qtbot, people):
    alice, bob = people
    alice.living.apply_preferences(Preferences(typing=False))
    label = bob.living.label(lobby(bob))
    received = []
    bob.client.typingReceived.connect(received.append)
    qtbot.keyClicks(alice.input, "secret thoughts")
    for window in (alice, bob):
        with qtbot.waitSignal(window.client.pongReceived, timeout=WAIT_MS):
            window.client.ping()
    assert received == [] and label.text() == ""


def own_receipt(window, peer: str, text: str) -> str:
    conv = private(window, peer)
    if conv is None:
        return ""
    model = conv.model
    for row in range(model.rowCount()):
        entry = model.entry(row)
        if entry.text == text and entry.seq is not None:
            return entry.receipt
    return ""


def test_a_whisper_shows_delivered_then_read_when_they_look_at_it(qtbot, people):
    alice, bob = people
    alice.send_whisper("Bob", "psst")
    qtbot.waitUntil(lambda: own_receipt(alice, "Bob", "psst") == "delivered", timeout=WAIT_MS)
    bob.show_conversation(private(bob, "Alice"))
    bob.activateWindow()
    qtbot.waitUntil(bob.isActiveWindow, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: own_receipt(alice, "Bob", "psst") == "read", timeout=WAIT_MS)


def test_with_receipts_turned_off_a_whisper_stays_sent(qtbot, people):
    alice, bob = people
    bob.living.apply_preferences(Preferences(receipts=False))
    alice.send_whisper("Bob", "are you there?")
    qtbot.waitUntil(lambda: own_receipt(alice, "Bob", "are you there?") == "sent",
                    timeout=WAIT_MS)
    bob.show_conversation(private(bob, "Alice"))
    bob.activateWindow()
    qtbot.waitUntil(bob.isActiveWindow, timeout=WAIT_MS)
    for window in (bob, alice):
        with qtbot.waitSignal(window.client.pongReceived, timeout=WAIT_MS):
            window.client.ping()
    assert own_receipt(alice, "Bob", "are you there?") == "sent"


def test_a_private_page_brings_back_the_whispers_and_how_far_they_were_read(qtbot, people):
    alice, bob = people
    alice.send_whisper("Bob", "remember this")
    bob_side = lambda: private(bob, "Alice")  # noqa: E731
    qtbot.waitUntil(lambda: bob_side() is not None, timeout=WAIT_MS)
    bob.show_conversation(bob_side())
    bob.activateWindow()
    qtbot.waitUntil(lambda: own_receipt(alice, "Bob", "remember this") == "read",
                    timeout=WAIT_MS)
    private(alice, "Bob").model.clear()  # as if the app had just started
    assert own_receipt(alice, "Bob", "remember this") == ""
    alice.client.request_private_history("Bob")
    qtbot.waitUntil(lambda: own_receipt(alice, "Bob", "remember this") == "read",
                    timeout=WAIT_MS)


def test_the_context_menu_edits_and_deletes_a_message(qtbot, people):
    alice, bob = people
    type_line(qtbot, alice, "first thought")
    type_line(qtbot, alice, "second thought")
    qtbot.waitUntil(lambda: "second thought" in texts(bob), timeout=WAIT_MS)
    conv = lobby(alice)
    actions = {action.text(): action for action in conv.view.actions()}
    conv.view.select_rows(*(2 * [conv.model.row_of_seq(conv.model.last_own_seq() - 1)]))
    actions["&Edit"].trigger()
    assert alice.input.text() == "first thought" and alice.input.editing is not None
    qtbot.keyClick(alice.input, Qt.Key.Key_Escape)
    actions["&Delete"].trigger()
    qtbot.waitUntil(lambda: "message deleted" in texts(bob), timeout=WAIT_MS)
    assert texts(bob)[-2:] == ["message deleted", "second thought"]
    # Bob may not delete Alice's message: the host says so, in a notice.
    bob_conv = lobby(bob)
    bob_conv.view.select_rows(*(2 * [bob_conv.model.rowCount() - 1]))
    with qtbot.waitSignal(bob.client.errorReceived, timeout=WAIT_MS) as refused:
        {a.text(): a for a in bob_conv.view.actions()}["&Delete"].trigger()
    assert refused.args[0] == "not_permitted"


def test_someone_who_leaves_stops_typing_at_once(qtbot, people, server):
    alice, bob = people
    label = bob.living.label(lobby(bob))
    qtbot.keyClicks(alice.input, "half a thou")
    qtbot.waitUntil(lambda: label.text() == "Alice is typing…", timeout=WAIT_MS)
    alice.client.close()  # bye: Bob's lobby hears user_left
    # Well before "active" would expire by itself (6 s).
    qtbot.waitUntil(lambda: label.text() == "", timeout=3000)


def status_menu_of(window):
    """Chat ▸ Status, found the way a person finds it: through the menu bar."""
    chat = next(action.menu() for action in window.menuBar().actions()
                if action.text() == "&Chat")
    return next(action.menu() for action in chat.actions()
                if action.menu() is not None and action.text() == "&Status")


def test_the_person_chooses_busy_and_a_status_line_from_the_chat_menu(qtbot, people):
    alice, bob = people
    menu = status_menu_of(alice)
    members = lobby(bob).members
    menu.state_actions["busy"].trigger()
    assert menu.state_actions["busy"].isChecked()
    assert not menu.state_actions["online"].isChecked()  # exclusive
    qtbot.waitUntil(lambda: members.status("Alice") == ("busy", ""), timeout=WAIT_MS)
    assert lobby(alice).members.status("Alice") == ("busy", "")  # our own row too
    menu.line_action.trigger()
    dialog = menu.line_dialog
    assert dialog is not None and dialog.isVisible()
    edit = dialog.findChild(QLineEdit)
    qtbot.keyClicks(edit, "in a call <b>" + "x" * 200)
    assert len(edit.text()) == 100  # the box takes no more than the host allows
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    wanted = ("busy", ("in a call <b>" + "x" * 200)[:100])
    qtbot.waitUntil(lambda: members.status("Alice") == wanted, timeout=WAIT_MS)
    assert lobby(alice).members.status("Alice") == wanted
    # Online again keeps the line; an empty line clears it.
    menu.state_actions["online"].trigger()
    qtbot.waitUntil(lambda: members.status("Alice") == ("online", wanted[1]),
                    timeout=WAIT_MS)
    menu.line_action.trigger()
    edit = menu.line_dialog.findChild(QLineEdit)
    assert edit.text() == wanted[1]  # the dialog starts from the line as it is
    edit.clear()
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: members.status("Alice") == ("online", ""), timeout=WAIT_MS)
    assert lobby(alice).members.status("Alice") == ("online", "")


def test_a_pasted_status_line_becomes_one_plain_line():
    assert clean_line("  lunch\nback\tat 2\x07 ") == "lunch back at 2"
    assert clean_line("é" * 150) == "é" * 100


def test_away_chosen_by_hand_is_not_undone_by_input(qtbot, people):
    alice, bob = people
    members = lobby(bob).members
    status_menu_of(alice).state_actions["away"].trigger()
    qtbot.waitUntil(lambda: members.status("Alice")[0] == "away", timeout=WAIT_MS)
    qtbot.keyClicks(alice.input, "still here?")  # input, yet the person said away
    qtbot.mouseClick(alice.input, Qt.MouseButton.LeftButton)
    for window in (alice, bob):
        with qtbot.waitSignal(window.client.pongReceived, timeout=WAIT_MS):
            window.client.ping()
    assert members.status("Alice")[0] == "away"
    assert lobby(alice).members.status("Alice")[0] == "away"


def test_the_auto_away_keeps_the_chosen_line_and_comes_back_with_it(qtbot, people):
    alice, bob = people
    clock = [1000.0]
    glue = alice.living
    glue._clock = lambda: clock[0]
    glue.idle = IdleTimer(clock[0], away_after=600.0)
    members = lobby(bob).members
    glue.set_line("working from home")
    qtbot.waitUntil(lambda: members.status("Alice") == ("online", "working from home"),
                    timeout=WAIT_MS)
    clock[0] += 600.0
    glue._check_idle()
    qtbot.waitUntil(lambda: members.status("Alice") == ("away", "working from home"),
                    timeout=WAIT_MS)
    qtbot.keyClick(alice.input, Qt.Key.Key_Shift)
    qtbot.waitUntil(lambda: members.status("Alice") == ("online", "working from home"),
                    timeout=WAIT_MS)


def test_typing_pauses_after_five_seconds_without_a_change_and_resumes(qtbot, people):
    alice, bob = people
    clock = [1000.0]
    alice.living._clock = lambda: clock[0]
    label = bob.living.label(lobby(bob))
    states = []
    bob.client.typingReceived.connect(lambda frame: states.append(frame.state))
    qtbot.keyClicks(alice.input, "hmm, let me")
    qtbot.waitUntil(lambda: states == ["active"], timeout=WAIT_MS)
    clock[0] += 4.9
    alice.living._check_paused()  # what its timer does when the time comes: not yet
    clock[0] += 0.1
    alice.living._check_paused()
    alice.living._check_paused()  # once only
    qtbot.waitUntil(lambda: states == ["active", "paused"], timeout=WAIT_MS)
    assert label.tracker.typing(label._clock(), "paused") == ["Alice"]
    assert label.text() == "Alice is typing…"  # paused still shows, 30 s by the contract
    clock[0] += 1.0  # well within the 3 s repeat: a change of state goes at once
    qtbot.keyClicks(alice.input, " think")
    qtbot.waitUntil(lambda: states == ["active", "paused", "active"], timeout=WAIT_MS)
    assert label.tracker.typing(label._clock(), "active") == ["Alice"]
    qtbot.keyClick(alice.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: label.text() == "", timeout=WAIT_MS)
    clock[0] += 10.0
    alice.living._check_paused()  # sent: nothing left to pause
    for window in (alice, bob):
        with qtbot.waitSignal(window.client.pongReceived, timeout=WAIT_MS):
            window.client.ping()
    assert states == ["active", "paused", "active", "done"]


def test_a_box_emptied_after_a_pause_says_done(qtbot, people):
    alice, bob = people
    clock = [1000.0]
    alice.living._clock = lambda: clock[0]
    states = []
    bob.client.typingReceived.connect(lambda frame: states.append(frame.state))
    qtbot.keyClicks(alice.input, "nah")
    clock[0] += 5.0
    alice.living._check_paused()
    qtbot.waitUntil(lambda: states == ["active", "paused"], timeout=WAIT_MS)
    alice.input.clear()
    qtbot.waitUntil(lambda: states == ["active", "paused", "done"], timeout=WAIT_MS)


def test_notifications_follow_the_setting(qtbot, people):
    """A whisper to a window not in front notifies; with "Show notifications" off in the
    settings it does not (the message still arrives)."""
    alice, bob = people
    alice.activateWindow()  # Bob's window is behind
    qtbot.waitUntil(lambda: not bob.isActiveWindow(), timeout=WAIT_MS)
    with qtbot.waitSignal(bob.notified, timeout=WAIT_MS) as shown:
        alice.send_whisper("Bob", "first")
    assert shown.args == ["Whisper from Alice", "first"]
    bob.living.apply_preferences(Preferences(notifications=False))
    seen: list[tuple[str, str]] = []
    bob.notified.connect(lambda title, text: seen.append((title, text)))
    alice.send_whisper("Bob", "second")
    model = private(bob, "Alice").model
    qtbot.waitUntil(lambda: any(model.index(row).data(MessageRoles.Text) == "second"
                                for row in range(model.rowCount())), timeout=WAIT_MS)
    with qtbot.waitSignal(bob.client.pongReceived, timeout=WAIT_MS):
        bob.client.ping()
    assert seen == []

