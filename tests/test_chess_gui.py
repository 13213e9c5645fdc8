"""Chess in real windows: ``/chess Bob 5+3``, the challenge answered with ``/chess accept``,
a board tab on each side, moves typed on one board arriving on the other, and a
resignation ending it for both. Two ``ChatWindow``s on a real server on 127.0.0.1.
"""

from __future__ import annotations

import pytest
from gui_harness import WAIT_MS
from test_commands import lobby, notices, type_line

from qtchat.client.chat_client import Endpoint
from qtchat.gui.chess_board import ChessPanel
from qtchat.gui.chess_games import parse_time_control
from qtchat.gui.commands import CommandError
from qtchat.gui.main_window import ChatWindow

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


def chess_window(qtbot, make_client, port: int, name: str) -> ChatWindow:
    client = make_client(features=("chess",))
    with qtbot.waitSignal(client.registered, timeout=WAIT_MS) as blocker:
        client.open(Endpoint("127.0.0.1", port), name)
    window = ChatWindow(client)
    qtbot.addWidget(window)
    window._on_registered(blocker.args[0])
    window.show()
    return window


def panel_of(window: ChatWindow) -> ChessPanel | None:
    panels = list(window.chess.panels.values())
    return panels[0] if panels else None


def test_a_challenge_typed_answered_and_played_on_two_boards(qtbot, server, make_client):
    alice = chess_window(qtbot, make_client, server.port, "Alice")
    bob = chess_window(qtbot, make_client, server.port, "Bob")
    qtbot.waitUntil(lambda: "Bob" in lobby(alice).members.names(), timeout=WAIT_MS)
    type_line(qtbot, alice, "/chess Bob 5+3")
    qtbot.waitUntil(lambda: any("Alice challenges you to chess (5+3" in text
                                for text in notices(lobby(bob).model)), timeout=WAIT_MS)
    type_line(qtbot, bob, "/chess accept")
    qtbot.waitUntil(lambda: panel_of(alice) is not None and panel_of(bob) is not None,
                    timeout=WAIT_MS)
    assert alice.tabs.currentWidget() is panel_of(alice)  # a player's game comes to the front
    snapshot = next(iter(alice.chess.snapshots.values()))
    white, black = (alice, bob) if snapshot["white"] == "Alice" else (bob, alice)
    assert snapshot["white_ms"] == 300_000
    entry = panel_of(white).entry
    qtbot.keyClicks(entry, "e4")
    qtbot.keyClick(entry, "\r")
    qtbot.waitUntil(lambda: panel_of(black).moves.count() == 1, timeout=WAIT_MS)
    assert panel_of(black).moves.item(0).text() == "1. e4"
    assert panel_of(black).board.can_move()
    with qtbot.waitSignal(white.client.gameOver, timeout=WAIT_MS) as over:
        panel_of(black).buttons.resign.click()
    assert over.args[0].reason == "resign"
    qtbot.waitUntil(lambda: not panel_of(black).buttons.resign.isEnabled(), timeout=WAIT_MS)
    assert any("Chess:" in text and "resign" in text for text in notices(lobby(white).model))


def test_time_controls_as_players_write_them():
    assert parse_time_control("5+3") == (300, 3)
    assert parse_time_control("180+0") == (10_800, 0)
    for wrong in ("5", "181+0", "5+181", "five"):
        with pytest.raises(CommandError):
            parse_time_control(wrong)
