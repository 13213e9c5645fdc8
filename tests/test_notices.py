"""What the chat view shows of people coming and going, whose colour a name is
in, and a message that names you (issue 13, points 5, 6, 8 and part of 12)."""

from __future__ import annotations

import pytest
from helpers import LineClient
from PySide6.QtGui import QColor
from test_message_view import lobby_view, open_window, painted_messages
from view_harness import TS, ShownView, broadcast

from qtchat.gui.models import (
    NAME_HUES,
    ConversationKind,
    RowKind,
    name_slot,
    sender_color,
)
from qtchat.protocol.server_frames import Message

WAIT_MS = 10_000
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


class Chat(ShownView):
    """A shown MessageView over its own MessageModel (the user is "me")."""

    def __init__(self, qtbot, width: int = 600, height: int = 300):
        super().__init__(qtbot, width, height)

    def painted(self) -> list[str]:
        self.settle()
        return [self.view.painted_text(row).replace("\u2068", "").replace("\u2069", "")
                for row, _rect in self.view.visible_rows()]


@pytest.fixture
def chat(qtbot) -> Chat:
    return Chat(qtbot)


# ------------------------------------------------------------ joins and leaves


def test_a_burst_of_300_joining_and_leaving_is_one_summary_row(chat):
    chat.model.add_messages([broadcast(1)])
    names = [f"guest{i:03}" for i in range(300)]
    for name in names:
        chat.model.add_membership(name, "joined")
    for name in names[:150]:
        chat.model.add_membership(name, "left")
    chat.model.add_membership("carol", "lost their connection", dropped=True)

    assert chat.model.rowCount() == 2  # the message and one summary
    assert chat.painted()[-1] == ("guest000, guest001 and 298 others joined · "
                                  "guest000, guest001 and 148 others left · "
                                  "carol lost their connection")
    row = chat.model.rowCount() - 1
    assert chat.model.entry(row).kind == RowKind.NOTICE
    full = chat.view.accessible_text(row)  # a screen reader hears every name
    tip = chat.model.data(chat.model.index(row), 0x03)  # Qt.ToolTipRole
    for name in names:
        assert name in full and name in tip


def test_a_message_between_starts_a_new_summary(chat):
    chat.model.add_messages([broadcast(1)])
    chat.model.add_membership("bob", "joined")
    chat.model.add_membership("dave", "joined")
    chat.model.add_message(broadcast(2, "bob", "hello"))
    chat.model.add_membership("erin", "joined")
    chat.model.add_membership("bob", "left")
    assert chat.painted() == ["alice: message 1", "bob and dave joined", "bob: hello",
                              "erin joined · bob left"]


def test_someone_who_came_back_is_not_said_to_have_left(chat):
    # Bob quits, and starts the app again minutes later, no message said between: the
    # row must not end on "bob left" while he is in the member list.
    chat.model.add_messages([broadcast(1)])
    chat.model.add_membership("bob", "joined")
    chat.model.add_membership("bob", "left")
    assert chat.painted()[-1] == "bob joined · bob left"
    chat.model.add_membership("bob", "joined")
    assert chat.painted()[-1] == "bob joined"
    chat.model.add_membership("carol", "left")
    chat.model.add_membership("carol", "joined")
    chat.model.add_membership("carol", "left")
    assert chat.painted()[-1] == "bob joined · carol left"


def test_a_dropped_connection_and_rejoin_cancel_out(chat):
    chat.model.add_messages([broadcast(1)])
    for name in ("bob", "carol", "dave"):  # a host frozen for a few seconds
        chat.model.add_membership(name, "lost their connection", dropped=True)
    for name in ("bob", "carol", "dave"):
        chat.model.add_membership(name, "joined")
    assert chat.painted() == ["alice: message 1"]
    assert chat.model.rowCount() == 1


def test_a_rejoin_after_a_message_is_a_quiet_reconnected_within_the_grace(chat):
    chat.model.add_messages([broadcast(1)])
    chat.model.add_membership("bob", "lost their connection", dropped=True, ts=1_000)
    chat.model.add_membership("carol", "lost their connection", dropped=True, ts=1_000)
    chat.model.add_message(broadcast(2, "alice", "anyone?"))
    chat.model.add_membership("bob", "joined", ts=1_000 + chat.model.reconnect_grace_ms)
    chat.model.add_membership("carol", "joined", ts=2_000 + chat.model.reconnect_grace_ms)
    assert chat.painted()[-1] == "bob reconnected · carol joined"


# ------------------------------------------------------------------- colours


def _contrast(a: QColor, b: QColor) -> float:
    def lum(c: QColor) -> float:
        def ch(v: float) -> float:
            return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
        return 0.2126 * ch(c.redF()) + 0.7152 * ch(c.greenF()) + 0.0722 * ch(c.blueF())
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_own_me_in_a_private_tab_is_in_your_own_colour(chat):
    chat.model.conversation = "alice"
    chat.model.add_pending("l1", "waves", peer="alice", whisper=True, action=True)
    chat.model.add_message(Message(seq=1, ts=TS, sender="me", to="alice", text="/me waves",
                                   id="l1"))
    chat.model.add_message(Message(seq=2, ts=TS, sender="me", to="alice", text="hello"))
    chat.model.add_message(Message(seq=3, ts=TS, sender="alice", to="me",
                                   text="/me waves back"))
    delegate = chat.view.delegate()
    dark = chat.view.palette().base().color().lightness() < 128
    mine, theirs = sender_color("me", dark), sender_color("alice", dark)
    assert mine != theirs
    assert chat.painted()[0] == "* me waves"
    assert [delegate.name_color(chat.model.entry(r)) for r in range(3)] == [mine, mine, theirs]


def test_alice_and_carol_are_far_apart_and_every_colour_is_readable():
    hue_gap = abs(NAME_HUES[name_slot("Alice")] - NAME_HUES[name_slot("Carol")]) % 360
    assert min(hue_gap, 360 - hue_gap) >= 90
    a, c = sender_color("Alice"), sender_color("Carol")
    assert sum(abs(x - y) for x, y in zip(a.getRgb()[:3], c.getRgb()[:3], strict=True)) > 150
    assert len(set(NAME_HUES)) == 12
    for slot in range(12):
        name = next(f"n{i}" for i in range(10_000) if name_slot(f"n{i}") == slot)
        for background in ("#ffffff", "#000000"):  # the default: on light and dark alike
            assert _contrast(sender_color(name), QColor(background)) >= 4.5
        for background in ("#000000", "#1e1e1e", "#2d2d2d", "#353535"):
            assert _contrast(sender_color(name, dark=True), QColor(background)) >= 4.5


# ------------------------------------------------------------------- mentions


def test_a_message_naming_you_is_highlighted_and_others_are_not(chat):
    chat.model.add_messages([
        broadcast(1, "bob", "hey ME, look at this"),
        broadcast(2, "bob", "meet me at noon"),  # "me" as a word, inside a sentence
        broadcast(3, "bob", "some memes and a theme"),
        broadcast(4, "bob", "<b>me</b>"),
    ])
    chat.model.add_pending("p1", "this is me talking")  # your own: never a mention
    chat.settle()
    image = chat.view.viewport().grab().toImage()
    bars = []
    for _row, rect in chat.view.visible_rows():
        bars.append(image.pixelColor(1, rect.center().y()) == QColor(0xF5, 0x9E, 0x0B))
    assert bars == [True, True, False, True, False]
    assert chat.painted()[3] == "bob: <b>me</b>"  # still plain text


# ------------------------------------------------- the real window, a real server


def test_a_peer_dropping_and_resuming_leaves_no_trace_in_the_window(
        qtbot, server, make_client, isolated_settings):
    window = open_window(qtbot, make_client, server.port, "Alice")
    view = lobby_view(window)
    bob = LineClient(qtbot, server.port)
    assert bob.register("Bob")["type"] == "registered"
    bob.send({"type": "broadcast", "text": "back in a sec"})
    bob.wait_for("broadcast", text="back in a sec")

    def notices() -> list[str]:
        view.viewport().repaint()
        model = view.model()
        return [view.painted_text(row) for row, _ in view.visible_rows()
                if model.entry(row).kind == RowKind.NOTICE and row > model.row_of_seq(
                    model.newest_seq())]

    qtbot.waitUntil(lambda: any("back in a sec" in t for t in painted_messages(view)),
                    timeout=WAIT_MS)
    bob.close()  # the connection drops; the host holds Bob's name for a resume
    qtbot.waitUntil(lambda: notices() == ["Bob lost their connection"], timeout=WAIT_MS)
    again = LineClient(qtbot, server.port)
    assert again.register("Bob", resume=bob.session)["resumed"] is True
    qtbot.waitUntil(lambda: notices() == [], timeout=WAIT_MS)
    again.sync()  # a ping round trip: nothing more is on its way
    assert notices() == []
    members = window.conversation(ConversationKind.ROOM, "lobby").members
    assert "Bob" in [members.data(members.index(r)) for r in range(members.rowCount())]


def test_the_model_stays_consistent_while_summaries_change(qtmodeltester, chat):
    chat.model.add_membership("early", "joined")  # before any message: floating,
    chat.model.add_messages([broadcast(1)])  # so the room's history goes above it
    for i in range(20):
        chat.model.add_membership(f"p{i}", "lost their connection", dropped=True)
    for i in range(20):
        chat.model.add_membership(f"p{i}", "joined")  # the whole row cancels out
    chat.model.add_membership("late", "joined")
    qtmodeltester.check(chat.model, force_py=True)
    assert chat.painted() == ["alice: message 1", "early and late joined"]
    chat.model.add_message(broadcast(2, "bob", "hi"))
    chat.model.add_membership("bob", "left")
    qtmodeltester.check(chat.model, force_py=True)
    assert chat.painted() == ["alice: message 1", "early and late joined", "bob: hi", "bob left"]
