"""Moderation in the app, end to end: Alice hosts (host mode makes her the owner with a
secret of its own), Bob joins with the identity his app keeps for that host. The member
menu, the kick dialog, what the kicked window says, the topic bar, the commands."""

from __future__ import annotations

import pytest
from gui_harness import WAIT_MS
from test_gui import lobby, notices, type_line

from qtchat.gui import moderation as m
from qtchat.gui.app import host_identity, identity_key
from qtchat.gui.members import MemberRoles
from qtchat.gui.start_dialog import settings

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


def member_row(window, name: str) -> str:
    members = lobby(window).members
    return members.index(members.row_of(name)).data()


def test_the_owner_menu_kicks_through_its_dialog_and_the_kicked_window_says_so(qtbot, pair):
    alice, bob = pair
    assert alice.client.role == "owner" and bob.client.role == "member"
    qtbot.waitUntil(lambda: bob.client.roles() == {"Alice": "owner"}, timeout=WAIT_MS)
    assert member_row(bob, "Alice") == "Alice (host)"
    assert alice.moderation.menu_for("Bob").entries() == \
        ["Whisper", "Kick…", "Ban…", "Mute…", "Make op"]
    assert bob.moderation.menu_for("Alice").entries() == ["Whisper"]
    assert alice.moderation.menu_for("Alice").entries() == []  # yourself: nothing
    attempts = []
    bob.client.reconnecting.connect(lambda attempt, reason: attempts.append(attempt))
    menu = alice.moderation.menu_for("Bob")
    with qtbot.waitSignal(menu.chosen):
        menu.entry(m.KICK).trigger()
    dialog = alice.findChild(m.ModerationDialog)
    assert dialog is not None and dialog.isVisible()
    dialog.reason_edit.setText("<b>enough</b> for today")
    with qtbot.waitSignal(bob.client.closed, timeout=WAIT_MS):
        dialog.accept()
    said = [text for _kind, text in notices(lobby(bob).model)]
    assert "Alice removed you from this host: <b>enough</b> for today" in said
    assert "The host disconnected you." not in said  # said once, with who and why
    assert not bob.input.isEnabled() and bob.client.state == "disconnected"
    qtbot.waitUntil(lambda: "Bob" not in lobby(alice).members.names(), timeout=WAIT_MS)
    assert any("Alice removed Bob from the host" in text
               for _k, text in notices(lobby(alice).model))
    assert attempts == []  # the kicked window never tried to come back


def test_the_topic_bar_and_the_commands(qtbot, pair):
    alice, bob = pair
    bar = alice.moderation.topic_bar
    qtbot.waitUntil(bar.isVisible, timeout=WAIT_MS)
    assert bar.start_editing()  # the owner may
    bar.edit.setText("Release on Friday")
    with qtbot.waitSignal(bob.client.topicChanged, timeout=WAIT_MS):
        qtbot.keyClick(bar.edit, "\r")
    assert bob.moderation.topic_bar.topic() == "Release on Friday"
    with qtbot.waitSignal(bob.client.roleChanged, timeout=WAIT_MS):
        type_line(qtbot, alice, "/op Bob")
    qtbot.waitUntil(lambda: member_row(alice, "Bob") == "Bob (op)", timeout=WAIT_MS)
    assert lobby(bob).members.index(lobby(bob).members.row_of("Bob")).data(
        MemberRoles.Name) == "Bob"
    assert bob.client.role == "op"
    with qtbot.waitSignal(bob.client.errorReceived, timeout=WAIT_MS) as refused:
        type_line(qtbot, bob, "/kick Alice")  # an op does not act on the owner
    assert refused.args[0] == "not_permitted"


def test_the_app_keeps_one_identity_per_host(qtbot, pair):
    alice, bob = pair
    endpoint = bob.client.endpoint
    key = identity_key(endpoint, endpoint.address)
    assert settings().value(key) == bob.client.identity
    assert host_identity(endpoint, endpoint.address) == bob.client.identity  # kept
    assert alice.client.identity != bob.client.identity  # another scope: the host's own
