"""Chess in real windows: ``/chess Bob 5+3``, the challenge answered with ``/chess accept``,
a board tab on each side, moves typed on one board arriving on the other, and a
resignation ending it for both. Two ``ChatWindow``s on a real server on 127.0.0.1.
"""

from __future__ import annotations

import io
import time

import chess
import chess.pgn
import pytest
from gui_harness import WAIT_MS
from helpers import chat_window
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from test_commands import lobby, notices, private, type_line

from qtchat.client.chat_client import Endpoint
from qtchat.gui.chess_board import ChessPanel, format_clock
from qtchat.gui.chess_dialogs import ChallengeDialog
from qtchat.gui.chess_games import parse_time_control
from qtchat.gui.commands import CommandError
from qtchat.gui.main_window import ChatWindow
from qtchat.gui.models import ConversationKind

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


def chess_window(qtbot, make_client, port: int, name: str) -> ChatWindow:
    return chat_window(qtbot, make_client(features=("chess",)), port, name, timeout=WAIT_MS)


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


# --- the challenge bar, the member menu, the banner, the Games list, the clocks --------


def two_windows(qtbot, make_client, port: int) -> tuple[ChatWindow, ChatWindow]:
    alice = chess_window(qtbot, make_client, port, "Alice")
    bob = chess_window(qtbot, make_client, port, "Bob")
    qtbot.waitUntil(lambda: "Bob" in lobby(alice).members.names(), timeout=WAIT_MS)
    return alice, bob


def start_game(qtbot, alice: ChatWindow, bob: ChatWindow, line: str = "/chess Bob 5+3"):
    """Alice challenges, Bob accepts with the bar's button; (white, black) windows."""
    before = set(alice.chess.panels)
    bob.show_conversation(lobby(bob))  # the bar is the lobby's, where the offer was made
    alice.show_conversation(lobby(alice))
    type_line(qtbot, alice, line)
    qtbot.waitUntil(lambda: bob.chess.challenge_bar.isVisible(), timeout=WAIT_MS)
    bob.chess.challenge_bar.accept_button.click()
    qtbot.waitUntil(lambda: bool(set(alice.chess.panels) - before
                                 and set(bob.chess.panels) - before), timeout=WAIT_MS)
    game = next(iter(set(alice.chess.panels) - before))
    snapshot = alice.chess.snapshots[game]
    return game, ((alice, bob) if snapshot["white"] == "Alice" else (bob, alice))


def play(qtbot, window: ChatWindow, game: str, san: str) -> None:
    other_count = len(window.chess.snapshots[game]["moves"]) + 1
    entry = window.chess.panels[game].entry
    qtbot.keyClicks(entry, san)
    qtbot.keyClick(entry, "\r")
    qtbot.waitUntil(lambda: len(window.chess.snapshots[game]["moves"]) == other_count,
                    timeout=WAIT_MS)


def test_a_challenge_shows_a_bar_with_accept_and_decline_in_its_conversation(
        qtbot, server, make_client):
    alice, bob = two_windows(qtbot, make_client, server.port)
    bar = bob.chess.challenge_bar
    assert not bar.isVisible()
    type_line(qtbot, alice, "/chess Bob 3+2")
    qtbot.waitUntil(bar.isVisible, timeout=WAIT_MS)
    assert bar.label.text() == "Alice challenges you to chess (3+2, you play a colour drawn " \
                               "by lot)."
    assert not alice.chess.challenge_bar.isVisible()  # the challenger has nothing to answer
    # Another conversation in front: the bar is the lobby's, so it goes; back, it returns.
    type_line(qtbot, bob, "/join Den")
    qtbot.waitUntil(lambda: bob.current() is not None and bob.current().title == "Den",
                    timeout=WAIT_MS)
    assert not bar.isVisible()
    bob.show_conversation(lobby(bob))
    assert bar.isVisible()
    with qtbot.waitSignal(alice.client.gameOfferEnded, timeout=WAIT_MS) as ended:
        bar.decline_button.click()
    assert ended.args[0].reason == "declined"
    assert not bar.isVisible()
    qtbot.waitUntil(lambda: any("chess offer declined" in text
                                for text in notices(lobby(alice).model)), timeout=WAIT_MS)
    # A second challenge, accepted with the bar: a board on both sides.
    game, _players = start_game(qtbot, alice, bob)
    assert not bar.isVisible()
    assert bob.tabs.currentWidget() is bob.chess.panels[game]


def test_challenge_to_chess_from_a_members_menu_through_the_dialog(qtbot, server, make_client):
    alice, bob = two_windows(qtbot, make_client, server.port)
    menu = bob.members_panel.menu_for("Alice")
    assert [a.text() for a in menu.actions()] == ["Whisper", "Challenge to chess…"]
    assert menu.actions()[1].isEnabled()
    assert not bob.members_panel.menu_for("Bob").actions()[1].isEnabled()  # not yourself
    # An app that did not ask for chess has nobody to challenge.
    carol_client = make_client()
    with qtbot.waitSignal(carol_client.registered, timeout=WAIT_MS) as registered:
        carol_client.open(Endpoint("127.0.0.1", server.port), "Carol")
    carol = ChatWindow(carol_client)
    qtbot.addWidget(carol)
    carol._on_registered(registered.args[0])
    assert not carol.members_panel.menu_for("Alice").actions()[1].isEnabled()
    menu.actions()[1].trigger()
    dialogs = bob.findChildren(ChallengeDialog)
    assert len(dialogs) == 1
    dialog = dialogs[0]
    presets = [dialog.time_control.itemText(i) for i in range(dialog.time_control.count())]
    assert [text.split()[0] for text in presets] == ["Untimed", "1+0", "3+2", "5+3", "10+5",
                                                    "15+10", "30+0"]
    dialog.color.setCurrentIndex(dialog.color.findData("black"))
    dialog.time_control.setCurrentIndex(2)  # 3+2
    dialog.ok_button.click()
    bar = alice.chess.challenge_bar
    qtbot.waitUntil(bar.isVisible, timeout=WAIT_MS)
    assert bar.label.text() == "Bob challenges you to chess (3+2, you play white)."
    bar.accept_button.click()
    qtbot.waitUntil(lambda: bool(alice.chess.snapshots), timeout=WAIT_MS)
    snapshot = next(iter(alice.chess.snapshots.values()))
    assert (snapshot["white"], snapshot["black"]) == ("Alice", "Bob")
    assert snapshot["white_ms"] == snapshot["black_ms"] == 180_000
    # Whisper in the same menu opens the private conversation.
    bob.members_panel.menu_for("Alice").actions()[0].trigger()
    qtbot.waitUntil(lambda: private(bob, "Alice") is not None, timeout=WAIT_MS)


def test_the_end_of_a_game_is_a_banner_with_the_pgn_to_save_and_copy(
        qtbot, server, make_client, tmp_path):
    alice, bob = two_windows(qtbot, make_client, server.port)
    game, (white, black) = start_game(qtbot, alice, bob)
    banner_of = white.chess.banners.get
    for window, san in ((white, "f3"), (black, "e5"), (white, "g4")):
        play(qtbot, window, game, san)
    assert banner_of(game) is None
    with qtbot.waitSignal(white.client.gameOver, timeout=WAIT_MS):
        play(qtbot, black, game, "Qh4#")
    for window in (white, black):
        qtbot.waitUntil(lambda w=window: game in w.chess.banners
                        and w.chess.banners[game].isVisible(), timeout=WAIT_MS)
        banner = window.chess.banners[game]
        assert banner.label.text() == "Black won by checkmate"
        assert banner.detail.text() == f"{white.me} – {black.me} · 0-1 · 2 moves"
    banner = white.chess.banners[game]
    banner.copy_button.click()
    copied = QGuiApplication.clipboard().text()
    assert "Qh4#" in copied and '[Result "0-1"]' in copied
    banner.save_button.click()
    dialog = banner.save_dialog
    assert dialog is not None and dialog.isVisible()
    target = tmp_path / "fools-mate.pgn"
    dialog.selectFile(str(target))
    dialog.accept()
    game_read = chess.pgn.read_game(io.StringIO(target.read_text(encoding="utf-8")))
    final = game_read.end().board()
    assert final.is_checkmate() and final.fen() == white.chess.snapshots[game]["fen"]


def test_the_games_list_shows_running_and_finished_games_and_opens_a_running_one(
        qtbot, server, make_client):
    alice, bob = two_windows(qtbot, make_client, server.port)
    first, (first_white, _) = start_game(qtbot, alice, bob)
    with qtbot.waitSignal(alice.client.gameOver, timeout=WAIT_MS):
        alice.chess.panels[first].buttons.resign.click()  # Alice resigns
    resigned = "0-1 · Black" if first_white is alice else "1-0 · White"
    aborted, _ = start_game(qtbot, alice, bob)
    with qtbot.waitSignal(alice.client.gameOver, timeout=WAIT_MS):
        alice.chess.panels[aborted].buttons.abort.click()
    second, _ = start_game(qtbot, alice, bob, "/chess Bob 10+5")
    alice.tabs.tabCloseRequested.emit(alice.tabs.indexOf(alice.chess.panels[second]))
    assert second not in alice.chess.panels
    menu_texts = [a.text() for m in alice.menuBar().actions() if m.menu()
                  for a in m.menu().actions()]
    assert "&Games…" in menu_texts
    with qtbot.waitSignal(alice.client.gameList, timeout=WAIT_MS):
        alice.chess.games_action.trigger()
    tree = alice.chess.games_dialog.tree
    rows = [[tree.topLevelItem(i).text(c) for c in range(3)]
            for i in range(tree.topLevelItemCount())]
    assert rows[0][1] == "Running" and rows[0][2].startswith("10+5")
    assert [row[1:] for row in rows[1:]] == [  # the newest finished game first
        ["Finished", "* · Game aborted"],
        ["Finished", f"{resigned} won by resignation"]]
    item = tree.topLevelItem(0)
    qtbot.waitExposed(alice.chess.games_dialog)
    # A double-click is a press, a release, then the second press as a DblClick event.
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton,
                     pos=tree.visualItemRect(item).center())
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton,
                      pos=tree.visualItemRect(item).center())
    assert second in alice.chess.panels
    assert alice.tabs.currentWidget() is alice.chess.panels[second]
    assert not alice.chess.games_dialog.isVisible()
    # The reopened board is live: the host's next move arrives on it.
    white = alice if alice.chess.snapshots[second]["white"] == "Alice" else bob
    play(qtbot, white, second, "e4")
    qtbot.waitUntil(lambda: alice.chess.panels[second].moves.count() == 1, timeout=WAIT_MS)


def test_the_clocks_shown_match_the_servers_figures_within_100_ms(qtbot, server, make_client):
    alice, bob = two_windows(qtbot, make_client, server.port)
    game, (white, black) = start_game(qtbot, alice, bob, "/chess Bob 1+0")
    received: list[tuple[float, object]] = []
    black.client.gameMoved.connect(lambda frame: received.append((time.monotonic(), frame)))
    play(qtbot, white, game, "e4")
    qtbot.waitUntil(lambda: bool(received), timeout=WAIT_MS)
    at, frame = received[-1]
    clocks = black.chess.panels[game].clocks
    assert frame.turn == "black"
    # Let Black's clock run a visible while (its labels tick each 100 ms).
    first = clocks.labels[chess.BLACK].text()
    qtbot.waitUntil(lambda: clocks.labels[chess.BLACK].text() != first, timeout=WAIT_MS)
    for _ in range(3):
        label_text = clocks.labels[chess.BLACK].text()
        expected = frame.black_ms - (time.monotonic() - at) * 1000
        shown = clocks.shown_ms(chess.BLACK)
        assert abs(shown - expected) <= 100
        # The label shows that figure (to its resolution, a second above ten seconds).
        low = _label_ms(label_text)
        assert low - 100 <= expected <= low + 1000 + 100
        assert clocks.labels[chess.WHITE].text() == format_clock(frame.white_ms)
        qtbot.waitUntil(lambda t=label_text: clocks.labels[chess.BLACK].text() != t,
                        timeout=WAIT_MS)


def _label_ms(text: str) -> int:
    """'0:58' → 58000, '0:09.4' → 9400: the lowest figure a clock label stands for."""
    minutes, seconds = text.split(":")[-2:]
    return int(minutes) * 60_000 + round(float(seconds) * 1000)


def test_after_a_reconnect_each_own_running_game_is_a_board_tab_again(
        qtbot, server, make_client):
    """The host lists your games in ``registered.games``: a board whose tab was closed
    (or an app started again) comes back on the position the host has."""
    alice, bob = two_windows(qtbot, make_client, server.port)
    game, (white, black) = start_game(qtbot, alice, bob)
    play(qtbot, white, game, "e4")
    alice.tabs.tabCloseRequested.emit(alice.tabs.indexOf(alice.chess.panels[game]))
    assert game not in alice.chess.panels
    with qtbot.waitSignal(alice.client.registered, timeout=15_000) as resumed:
        assert server.drop_connection("Alice")
    assert [g["game"] for g in resumed.args[0].games] == [game]
    qtbot.waitUntil(lambda: game in alice.chess.panels, timeout=WAIT_MS)
    panel = alice.chess.panels[game]
    assert [panel.moves.item(i).text() for i in range(panel.moves.count())] == ["1. e4"]
    assert alice.chess.snapshots[game]["state"] == "running"
    play(qtbot, black, game, "e5")  # and it is live: the next move arrives on it
    qtbot.waitUntil(lambda: panel.moves.item(0).text() == "1. e4 e5", timeout=WAIT_MS)


def test_an_adjourned_game_stops_the_board_until_both_are_back(qtbot, server, make_client):
    from qtchat.server.identity import new_identity

    secrets_of = {"Alice": new_identity(), "Bob": new_identity()}

    def window_with_identity(name: str) -> ChatWindow:
        client = make_client(features=("chess",))
        client.identity = secrets_of[name]
        return chat_window(qtbot, client, server.port, name, timeout=WAIT_MS)

    alice, bob = window_with_identity("Alice"), window_with_identity("Bob")
    qtbot.waitUntil(lambda: "Bob" in lobby(alice).members.names(), timeout=WAIT_MS)
    game, (white, black) = start_game(qtbot, alice, bob)
    play(qtbot, white, game, "e4")
    panel = alice.chess.panels[game]
    with qtbot.waitSignal(alice.client.gameAdjourned, timeout=WAIT_MS):
        bob.client.close()  # Bob quits the app: his session ends
    assert alice.chess.snapshots[game]["state"] == "adjourned"
    assert not panel.board.can_move() and not panel.buttons.resign.isEnabled()
    assert any("adjourned" in text for text in notices(lobby(alice).model))
    with qtbot.waitSignal(alice.client.gameStarted, timeout=WAIT_MS):
        window_with_identity("Bob")  # his app again, with the same identity
    assert alice.chess.snapshots[game]["state"] == "running"
    assert alice.chess.snapshots[game]["moves"] == ["e2e4"]
    assert panel.buttons.resign.isEnabled()
    assert panel.board.can_move() == (alice is black)


# --- a game played by dragging pieces, watched from the room ---------------------------


def drag_move(qtbot, window: ChatWindow, game: str, uci: str) -> None:
    """Press on the piece, move the mouse across the board, release on the target."""
    board = window.chess.panels[game].board
    window.tabs.setCurrentWidget(window.chess.panels[game])
    qtbot.waitExposed(board)
    start = board.square_center(chess.parse_square(uci[:2]))
    end = board.square_center(chess.parse_square(uci[2:4]))
    qtbot.mousePress(board, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(board, (start + end) / 2)
    qtbot.mouseMove(board, end)
    qtbot.mouseRelease(board, Qt.MouseButton.LeftButton, pos=end)


@pytest.mark.qt_log_ignore(r"This plugin does not support (raise\(\)|grabbing the keyboard)")
def test_two_windows_play_by_dragging_a_third_watches_and_a_promotion_is_chosen(
        qtbot, server, make_client):
    from test_commands import rows

    from qtchat.gui.models import RowKind

    alice, bob = two_windows(qtbot, make_client, server.port)
    carol = chess_window(qtbot, make_client, server.port, "Carol")
    for window in (alice, bob, carol):
        type_line(qtbot, window, "/join club")
    club = {w: (lambda w=w: w.conversation(ConversationKind.ROOM, "club", create=False))
            for w in (alice, bob, carol)}
    qtbot.waitUntil(lambda: all(c() is not None for c in club.values()), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: {"Alice", "Bob", "Carol"} <= set(club[alice]().members.names()),
                    timeout=WAIT_MS)
    alice.show_conversation(club[alice]())
    type_line(qtbot, alice, "/chess Bob")
    qtbot.waitUntil(lambda: bool(bob.chess.offers), timeout=WAIT_MS)
    type_line(qtbot, bob, "/chess accept")
    qtbot.waitUntil(lambda: all(w.chess.panels for w in (alice, bob, carol)),
                    timeout=WAIT_MS)
    (game,) = alice.chess.panels
    snapshot = alice.chess.snapshots[game]
    assert snapshot["room"] == "club"
    white, black = (alice, bob) if snapshot["white"] == "Alice" else (bob, alice)
    watched = carol.chess.panels[game]
    assert not watched.board.can_move()  # a watcher's board takes no moves
    moves = ["a2a4", "b7b5", "a4b5", "a7a6", "b5a6", "c8b7", "a6b7", "b8c6"]
    for ply, uci in enumerate(moves, start=1):
        mover = white if ply % 2 else black
        with qtbot.waitSignal(carol.client.gameMoved, timeout=WAIT_MS) as moved:
            drag_move(qtbot, mover, game, uci)
        assert moved.args[0].uci == uci
        assert carol.chess.snapshots[game]["moves"] == moves[:ply]
    # The promotion: the pawn dragged to the last rank, then a knight in the chooser.
    drag_move(qtbot, white, game, "b7a8")
    chooser = white.chess.panels[game].board.promotion_chooser
    assert chooser is not None and chooser.isVisible()
    with qtbot.waitSignal(carol.client.gameMoved, timeout=WAIT_MS) as moved:
        qtbot.mouseClick(chooser.buttons[chess.KNIGHT], Qt.MouseButton.LeftButton)
    assert (moved.args[0].uci, moved.args[0].san) == ("b7a8n", "bxa8=N")
    assert chess.Board(carol.chess.snapshots[game]["fen"]).piece_at(chess.A8) == \
        chess.Piece(chess.KNIGHT, chess.WHITE)
    assert watched.moves.item(4).text() == "5. bxa8=N"
    # Black resigns: the room hears it as a notice, not as something Black said.
    with qtbot.waitSignal(carol.client.gameOver, timeout=WAIT_MS):
        black.chess.panels[game].buttons.resign.click()
    said = f"Chess, {white.me} (White) against {black.me} (Black): White wins (1-0), resign."
    qtbot.waitUntil(lambda: said in notices(club[carol]().model), timeout=WAIT_MS)
    assert said not in rows(club[carol]().model, RowKind.MESSAGE)
    # And so it stays in the room's history for someone who comes later.
    dora = chess_window(qtbot, make_client, server.port, "Dora")
    type_line(qtbot, dora, "/join club")
    qtbot.waitUntil(lambda: dora.conversation(ConversationKind.ROOM, "club", create=False)
                    is not None, timeout=WAIT_MS)
    model = dora.conversation(ConversationKind.ROOM, "club", create=False).model
    qtbot.waitUntil(lambda: said in notices(model), timeout=WAIT_MS)
    assert said not in rows(model, RowKind.MESSAGE)


def test_a_game_that_ended_while_you_were_away_shows_its_end_after_the_reconnect(
        qtbot, server, make_client):
    alice, bob = two_windows(qtbot, make_client, server.port)
    game, (white, black) = start_game(qtbot, alice, bob)
    play(qtbot, white, game, "e4")
    server.pause_accepting()  # Alice's reconnect waits in the backlog
    assert server.drop_connection("Alice")
    with qtbot.waitSignal(bob.client.gameOver, timeout=WAIT_MS):
        bob.chess.panels[game].buttons.resign.click()
    assert alice.chess.snapshots[game]["state"] == "running"  # she has not heard yet
    with qtbot.waitSignal(alice.client.gameList, timeout=15_000):
        server.resume_accepting()
    assert alice.chess.snapshots[game]["state"] == "finished"
    banner = alice.chess.banners[game]
    assert banner.label.text() == ("White won by resignation" if bob is black
                                   else "Black won by resignation")
    assert not alice.chess.panels[game].buttons.resign.isEnabled()
