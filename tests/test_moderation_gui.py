"""The moderation widgets (qtchat.gui.moderation) with real widgets via pytest-qt: what
the member menu offers per role, what the dialog returns, the topic bar's editing, and
peer text shown literally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QLabel

from qtchat.gui.moderation import (
    BAN,
    KICK,
    MAKE_OP,
    MUTE,
    REMOVE_OP,
    UNMUTE,
    WHISPER,
    MemberMenu,
    ModerationDialog,
    ModerationRequest,
    TopicBar,
    banned_sentence,
    kick_notice,
    kicked_sentence,
    may_set_topic,
    muted_sentence,
    topic_notice,
)
from qtchat.server.moderation import MAX_TOPIC_CHARS, MEMBER, OP, OWNER, RoomMode

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

# --- the member menu ----------------------------------------------------------------------

EVERYTHING = ["Whisper", "Kick…", "Ban…", "Mute…"]


@pytest.mark.parametrize(("me", "them", "entries"), [
    (OWNER, MEMBER, [*EVERYTHING, "Make op"]),
    (OWNER, OP, [*EVERYTHING, "Remove op"]),
    (OP, MEMBER, EVERYTHING),
    (OP, OP, ["Whisper"]),  # an op cannot act on another op
    (OP, OWNER, ["Whisper"]),
    (MEMBER, MEMBER, ["Whisper"]),
    (MEMBER, OP, ["Whisper"]),
    (MEMBER, OWNER, ["Whisper"]),
])
def test_the_member_menu_offers_what_my_role_may_do_to_theirs(qtbot, me, them, entries):
    menu = MemberMenu("Dave", me, them)
    qtbot.addWidget(menu)
    assert menu.entries() == entries
    assert not any("chess" in entry.casefold() for entry in menu.entries())


def test_the_menu_for_myself_is_empty_and_a_muted_member_gets_unmute(qtbot):
    mine = MemberMenu("Carol", OWNER, OWNER, is_me=True)
    qtbot.addWidget(mine)
    assert mine.entries() == []
    muted = MemberMenu("Dave", OP, MEMBER, muted=True)
    qtbot.addWidget(muted)
    assert muted.entries() == ["Whisper", "Kick…", "Ban…", "Unmute"]


@pytest.mark.parametrize("action", [WHISPER, KICK, BAN, MUTE, MAKE_OP])
def test_picking_an_entry_emits_the_action_and_the_name(qtbot, action):
    menu = MemberMenu("<b>Dave</b>", OWNER, MEMBER)
    qtbot.addWidget(menu)
    with qtbot.waitSignal(menu.chosen) as blocker:
        menu.entry(action).trigger()
    assert blocker.args == [action, "<b>Dave</b>"]


def test_remove_op_and_unmute_emit_too(qtbot):
    menu = MemberMenu("Dave", OWNER, OP, muted=True)
    qtbot.addWidget(menu)
    for action in (REMOVE_OP, UNMUTE):
        with qtbot.waitSignal(menu.chosen) as blocker:
            menu.entry(action).trigger()
        assert blocker.args == [action, "Dave"]


# --- the kick / ban / mute dialog ---------------------------------------------------------------


def press_ok(dialog):
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()


def test_the_ban_dialog_returns_the_chosen_duration_and_reason(qtbot):
    dialog = ModerationDialog(BAN, "Mallory", room="chess")
    qtbot.addWidget(dialog)
    labels = [dialog.duration_box.itemText(i) for i in range(dialog.duration_box.count())]
    assert labels == ["10 minutes", "1 hour", "1 day", "1 week", "Until lifted"]
    dialog.duration_box.setCurrentIndex(2)
    qtbot.keyClicks(dialog.reason_edit, "  spamming links ")
    with qtbot.waitSignal(dialog.requested) as blocker:
        press_ok(dialog)
    # A ban is host-wide whatever room the menu was opened in.
    assert blocker.args == [ModerationRequest(BAN, "Mallory", None, 1440, "spamming links")]
    assert dialog.result() == ModerationDialog.DialogCode.Accepted


def test_until_lifted_is_zero_minutes(qtbot):
    dialog = ModerationDialog(BAN, "Mallory")
    qtbot.addWidget(dialog)
    dialog.set_duration(0)
    assert dialog.request().minutes == 0


def test_the_mute_dialog_offers_its_durations_in_the_room_or_everywhere(qtbot):
    dialog = ModerationDialog(MUTE, "Mallory", room="chess")
    qtbot.addWidget(dialog)
    labels = [dialog.duration_box.itemText(i) for i in range(dialog.duration_box.count())]
    assert labels == ["5 minutes", "1 hour", "Until lifted"]
    dialog.set_duration(5)
    assert dialog.request() == ModerationRequest(MUTE, "Mallory", "chess", 5, "")
    dialog.whole_host_box.setChecked(True)
    assert dialog.request().room is None


def test_the_kick_dialog_has_no_duration_and_may_kick_from_the_host(qtbot):
    dialog = ModerationDialog(KICK, "Mallory", room="chess")
    qtbot.addWidget(dialog)
    assert dialog.duration_box is None
    dialog.reason_edit.setText("flooding")
    dialog.whole_host_box.setChecked(True)
    with qtbot.waitSignal(dialog.requested) as blocker:
        press_ok(dialog)
    assert blocker.args == [ModerationRequest(KICK, "Mallory", None, None, "flooding")]


def test_cancel_requests_nothing(qtbot):
    dialog = ModerationDialog(KICK, "Mallory", room="chess")
    qtbot.addWidget(dialog)
    with qtbot.assertNotEmitted(dialog.requested):
        dialog.findChild(QDialogButtonBox).button(
            QDialogButtonBox.StandardButton.Cancel).click()
    assert dialog.result() == ModerationDialog.DialogCode.Rejected


def test_the_reason_is_capped(qtbot):
    dialog = ModerationDialog(KICK, "Mallory")
    qtbot.addWidget(dialog)
    dialog.reason_edit.setText("x" * 1000)
    assert len(dialog.request().reason) == 300


# --- the topic bar ----------------------------------------------------------------------


def test_the_topic_bar_edits_in_place_and_emits_the_new_text(qtbot):
    bar = TopicBar()
    qtbot.addWidget(bar)
    bar.set_topic("Blitz tonight", by="Carol")
    bar.set_editable(True)
    bar.show()
    qtbot.mouseDClick(bar.label, Qt.MouseButton.LeftButton)
    assert bar.is_editing()
    assert bar.edit.text() == "Blitz tonight"
    assert bar.counter.text() == f"13/{MAX_TOPIC_CHARS}"
    bar.edit.clear()
    qtbot.keyClicks(bar.edit, "Rapid at 8")
    assert bar.counter.text() == f"10/{MAX_TOPIC_CHARS}"
    with qtbot.waitSignal(bar.topicEdited) as blocker:
        qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert blocker.args == ["Rapid at 8"]
    assert not bar.is_editing()


def test_the_topic_is_limited_to_300_characters(qtbot):
    bar = TopicBar()
    qtbot.addWidget(bar)
    bar.set_editable(True)
    assert bar.start_editing()
    bar.edit.setText("y" * 400)
    assert len(bar.edit.text()) == MAX_TOPIC_CHARS
    assert bar.counter.text() == f"{MAX_TOPIC_CHARS}/{MAX_TOPIC_CHARS}"


def test_escape_cancels_and_clearing_emits_empty(qtbot):
    bar = TopicBar()
    qtbot.addWidget(bar)
    bar.set_topic("Old", by="Carol")
    bar.set_editable(True)
    bar.show()
    bar.start_editing()
    with qtbot.assertNotEmitted(bar.topicEdited):
        qtbot.keyClicks(bar.edit, "New")
        qtbot.keyClick(bar.edit, Qt.Key.Key_Escape)
    assert not bar.is_editing() and bar.label.text() == "Old"
    bar.start_editing()
    bar.edit.clear()
    with qtbot.waitSignal(bar.topicEdited) as blocker:
        qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert blocker.args == [""]


def test_the_topic_bar_refuses_editing_when_not_allowed(qtbot):
    bar = TopicBar()
    qtbot.addWidget(bar)
    bar.set_topic("Locked topic", by="Carol")
    bar.set_editable(may_set_topic(MEMBER, RoomMode(topic_locked=True)))
    bar.show()
    with qtbot.assertNotEmitted(bar.topicEdited):
        qtbot.mouseDClick(bar.label, Qt.MouseButton.LeftButton)
        assert not bar.start_editing()
    assert not bar.is_editing()
    assert not bar.pencil.isVisible()
    # Losing the right while editing closes the editor.
    bar.set_editable(may_set_topic(OP, RoomMode(topic_locked=True)))
    assert bar.pencil.isVisible()
    assert bar.start_editing()
    bar.set_editable(False)
    assert not bar.is_editing()


def test_a_topic_with_html_shows_literally(qtbot):
    bar = TopicBar()
    qtbot.addWidget(bar)
    topic = '<b>bold</b> <a href="http://x">link</a> &amp;'
    bar.set_topic(topic, by="<i>Mallory</i>")
    assert bar.label.textFormat() == Qt.TextFormat.PlainText
    assert bar.label.text() == topic
    assert bar.label.toolTip() == "Set by <i>Mallory</i>"
    bar.set_topic("two\nlines")
    assert bar.label.text() == "two lines"  # one line above the messages


def test_a_dialog_about_an_html_name_shows_it_literally(qtbot):
    dialog = ModerationDialog(KICK, "<b>Mallory</b>", room="chess")
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Kick <b>Mallory</b>"
    [label] = [label for label in dialog.findChildren(QLabel) if "Remove" in label.text()]
    assert label.textFormat() == Qt.TextFormat.PlainText
    assert label.text() == "Remove <b>Mallory</b> from #chess?"


# --- the sentences ---------------------------------------------------------------------------

NOW = datetime(2027, 1, 15, 13, 50, tzinfo=UTC)


def test_a_kicked_person_is_told_by_whom_and_why():
    assert kicked_sentence("Carol", "chess", "spamming") == \
        "Carol removed you from #chess: spamming"
    assert kicked_sentence("Carol", None, None) == "Carol removed you from this host."


def test_a_banned_person_is_told_until_when():
    until = datetime(2027, 1, 15, 14, 5, tzinfo=UTC)
    assert banned_sentence(until, NOW, by="Carol", reason="spamming", tz=UTC) == \
        "You are banned from this host until 14:05 (by Carol): spamming"
    assert banned_sentence(NOW + timedelta(days=2), NOW, tz=UTC) == \
        "You are banned from this host until 17 Jan 13:50."
    assert banned_sentence(None, NOW, by="Carol", tz=UTC) == \
        "You are banned from this host until it is lifted (by Carol)."


def test_a_muted_person_is_told_where_and_until_when():
    assert muted_sentence("Carol", "chess", NOW + timedelta(minutes=5), NOW, tz=UTC) == \
        "Carol muted you in #chess until 13:55."
    assert muted_sentence("Carol", None, None, NOW, tz=UTC) == \
        "Carol muted you on this host until it is lifted."


def test_notices_keep_peer_text_as_it_is():
    assert kick_notice("<b>M</b>", "Carol", "chess", "<script>x</script>") == \
        "Carol removed <b>M</b> from #chess: <script>x</script>"
    assert topic_notice("", "Carol") == "Carol cleared the topic."
