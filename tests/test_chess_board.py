"""The chess board widgets, used as a player would: drag, click, keys and typed moves.

The board only proposes moves (``moveChosen``); nothing here changes its position
except ``set_moves``/``set_position``, as the server's answer will.
"""

from __future__ import annotations

import chess
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from qtchat.gui.chess_board import (
    ChessBoard,
    ChessClocks,
    ChessPanel,
    GameButtons,
    MoveEntry,
    MoveList,
    format_clock,
    piece_pixmap,
)

# The offscreen platform cannot raise a popup or grab the keyboard for it (the
# promotion chooser is a Qt.Popup); a real display can.
pytestmark = pytest.mark.qt_log_ignore(
    r"This plugin does not support (raise\(\)|grabbing the keyboard|propagateSizeHints)"
)


@pytest.fixture
def board(qtbot) -> ChessBoard:
    widget = ChessBoard()
    widget.resize(400, 400)
    widget.set_you(chess.WHITE)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def at(board: ChessBoard, name: str) -> QPoint:
    return board.square_center(chess.parse_square(name))


def drag(qtbot, board: ChessBoard, source: str, target: str) -> None:
    start, end = at(board, source), at(board, target)
    qtbot.mousePress(board, Qt.MouseButton.LeftButton, pos=start)
    middle = (start + end) / 2
    qtbot.mouseMove(board, middle)
    qtbot.mouseMove(board, end)
    qtbot.mouseRelease(board, Qt.MouseButton.LeftButton, pos=end)


def click(qtbot, board: ChessBoard, square: str) -> None:
    qtbot.mouseClick(board, Qt.MouseButton.LeftButton, pos=at(board, square))


def test_a_drag_from_e2_to_e4_emits_the_move(qtbot, board) -> None:
    with qtbot.waitSignal(board.moveChosen) as chosen:
        drag(qtbot, board, "e2", "e4")
    assert chosen.args == ["e2e4"]
    # It waits for the server: the pawn is still on e2 until the next position comes.
    assert board.position.piece_at(chess.E2) == chess.Piece(chess.PAWN, chess.WHITE)
    board.set_moves(["e2e4"])
    assert board.position.piece_at(chess.E4) == chess.Piece(chess.PAWN, chess.WHITE)


def test_click_click_emits_the_move(qtbot, board) -> None:
    click(qtbot, board, "g1")
    assert board.selected_square == chess.G1
    assert board.legal_targets(chess.G1) == {chess.F3, chess.H3}
    with qtbot.waitSignal(board.moveChosen) as chosen:
        click(qtbot, board, "f3")
    assert chosen.args == ["g1f3"]


def test_an_illegal_target_emits_nothing(qtbot, board) -> None:
    with qtbot.assertNotEmitted(board.moveChosen):
        drag(qtbot, board, "e2", "e5")
        click(qtbot, board, "d2")
        click(qtbot, board, "d5")
        click(qtbot, board, "e7")  # not yours
        click(qtbot, board, "e5")
        QApplication.processEvents()
    assert board.selected_square is None


def test_nothing_moves_when_it_is_not_your_turn_or_you_watch(qtbot, board) -> None:
    board.set_moves(["e2e4"])  # Black to move; you are White
    with qtbot.assertNotEmitted(board.moveChosen):
        drag(qtbot, board, "d2", "d4")
        board.set_you(None)
        drag(qtbot, board, "e7", "e5")
        QApplication.processEvents()


def test_a_promotion_through_the_chooser(qtbot, board) -> None:
    board.set_position("k7/4P3/8/8/8/8/8/4K3 w - - 0 1")
    with qtbot.assertNotEmitted(board.moveChosen):
        drag(qtbot, board, "e7", "e8")
    chooser = board.promotion_chooser
    assert chooser is not None and chooser.isVisible()
    assert [b.accessibleName() for b in chooser.buttons.values()] == [
        "Queen",
        "Rook",
        "Bishop",
        "Knight",
    ]
    with qtbot.waitSignal(board.moveChosen) as chosen:
        qtbot.mouseClick(chooser.buttons[chess.KNIGHT], Qt.MouseButton.LeftButton)
    assert chosen.args == ["e7e8n"]


def test_closing_the_promotion_chooser_cancels(qtbot, board) -> None:
    board.set_position("k7/4P3/8/8/8/8/8/4K3 w - - 0 1")
    drag(qtbot, board, "e7", "e8")
    with qtbot.assertNotEmitted(board.moveChosen):
        qtbot.keyClick(board.promotion_chooser, Qt.Key.Key_Escape)
        QApplication.processEvents()
    assert board.selected_square is None


def test_flip(qtbot, board) -> None:
    bottom_left = QPoint(10, board.height() - 10)
    assert board.square_at(bottom_left) == chess.A1
    board.flip()
    assert board.flipped and board.square_at(bottom_left) == chess.H8
    assert at(board, "e2").y() < board.height() / 2  # White's pawns are at the top now
    with qtbot.waitSignal(board.moveChosen) as chosen:
        drag(qtbot, board, "e2", "e4")
    assert chosen.args == ["e2e4"]


def test_playing_black_shows_black_at_the_bottom(qtbot, board) -> None:
    board.set_you(chess.BLACK)
    assert board.flipped
    board.set_moves(["d2d4"])
    with qtbot.waitSignal(board.moveChosen) as chosen:
        drag(qtbot, board, "g8", "f6")
    assert chosen.args == ["g8f6"]


def test_keyboard_move(qtbot, board) -> None:
    board.setFocus()
    assert board.focus_square == chess.E2
    qtbot.keyClick(board, Qt.Key.Key_Space)  # pick up the e2 pawn
    assert board.selected_square == chess.E2
    qtbot.keyClick(board, Qt.Key.Key_Up)
    qtbot.keyClick(board, Qt.Key.Key_Up)
    assert board.focus_square == chess.E4
    assert "e4" in board.accessibleName()
    with qtbot.waitSignal(board.moveChosen) as chosen:
        qtbot.keyClick(board, Qt.Key.Key_Return)  # put it down
    assert chosen.args == ["e2e4"]


def test_keyboard_follows_the_screen_when_flipped(qtbot, board) -> None:
    board.set_you(chess.BLACK)
    board.set_moves(["e2e4"])
    board.setFocus()
    for key in (Qt.Key.Key_Right, Qt.Key.Key_Right):  # screen right = towards the a-file
        qtbot.keyClick(board, key)
    for key in (Qt.Key.Key_Down,) * 5:  # screen down = towards Black's back rank
        qtbot.keyClick(board, key)
    assert board.focus_square == chess.C7
    qtbot.keyClick(board, Qt.Key.Key_Space)
    qtbot.keyClick(board, Qt.Key.Key_Up)
    qtbot.keyClick(board, Qt.Key.Key_Up)
    with qtbot.waitSignal(board.moveChosen) as chosen:
        qtbot.keyClick(board, Qt.Key.Key_Space)
    assert chosen.args == ["c7c5"]


def test_typing_nf3_emits_g1f3(qtbot, board) -> None:
    entry = MoveEntry(board)
    qtbot.addWidget(entry)
    with qtbot.waitSignal(board.moveChosen) as chosen:
        qtbot.keyClicks(entry, "Nf3")
        qtbot.keyClick(entry, Qt.Key.Key_Return)
    assert chosen.args == ["g1f3"]
    assert entry.text() == ""
    with qtbot.waitSignal(board.moveChosen) as chosen:
        qtbot.keyClicks(entry, "d2d4")
        qtbot.keyClick(entry, Qt.Key.Key_Return)
    assert chosen.args == ["d2d4"]
    with qtbot.assertNotEmitted(board.moveChosen):
        qtbot.keyClicks(entry, "Ke2")
        qtbot.keyClick(entry, Qt.Key.Key_Return)
    assert entry.text() == "Ke2" and "not a legal move" in entry.toolTip()


def test_accessible_text_says_the_position_and_last_move(board) -> None:
    board.set_moves(["e2e4", "d7d5", "e4d5"])
    text = board.accessibleDescription()
    assert text.startswith("Black to move.")
    assert "Last move: White pawn from e4 to d5, taking the pawn." in text
    assert "White: king e1, queen d1" in text and "Black: king e8" in text
    board.set_moves(["f2f3", "e7e5", "g2g4", "d8h4"])
    assert board.accessibleDescription().startswith("Checkmate, Black wins.")


def test_pieces_are_rendered_once_per_size(board) -> None:
    knight = chess.Piece(chess.KNIGHT, chess.BLACK)
    first = piece_pixmap(knight, 50)
    assert first.cacheKey() == piece_pixmap(knight, 50).cacheKey()
    image = first.toImage()
    assert image.pixelColor(25, 25).alpha() > 0  # something is drawn in the middle
    assert image.pixelColor(0, 0).alpha() == 0  # on a transparent square


def test_clocks_count_down_from_the_servers_figures() -> None:
    now = [1000.0]
    clocks = ChessClocks(monotonic=lambda: now[0])
    clocks.set_clocks(60_000, 45_000, chess.WHITE)
    now[0] += 1.5
    clocks.refresh()
    assert clocks.shown_ms(chess.WHITE) == 58_500 and clocks.shown_ms(chess.BLACK) == 45_000
    assert clocks.labels[chess.WHITE].text() == "0:58"
    assert "running" in clocks.labels[chess.WHITE].accessibleDescription()
    clocks.set_clocks(59_000, 45_000, chess.BLACK)  # the server's figures win
    now[0] += 40
    clocks.refresh()
    assert clocks.labels[chess.BLACK].text() == "0:05.0"
    assert clocks.labels[chess.WHITE].text() == "0:59"
    clocks.set_clocks(None, None, chess.WHITE)
    assert clocks.labels[chess.WHITE].text() == "–"
    assert format_clock(3_723_000) == "1:02:03"


def test_move_list_in_san() -> None:
    moves = MoveList()
    moves.set_moves(["e2e4", "e7e5", "g1f3"])
    assert [moves.item(i).text() for i in range(moves.count())] == ["1. e4 e5", "2. Nf3"]


def test_buttons_follow_the_rules() -> None:
    buttons = GameButtons()
    game = {"white": "ann", "black": "bob", "state": "running", "moves": []}
    buttons.update_for(game, "ann")
    assert buttons.abort.isEnabled() and buttons.resign.isEnabled()
    assert buttons.offer_draw.isEnabled() and not buttons.claim_draw.isEnabled()
    buttons.update_for({**game, "moves": ["e2e4", "e7e5"], "draw_offer_from": "ann"}, "ann")
    assert not buttons.abort.isEnabled() and not buttons.offer_draw.isEnabled()
    buttons.update_for({**game, "moves": ["e2e4"], "draw_offer_from": "ann"}, "bob")
    assert buttons.offer_draw.isEnabled() and buttons.offer_draw.text() == "Accept draw"
    repeated = ["g1f3", "g8f6", "f3g1", "f6g8"] * 2
    buttons.update_for({**game, "moves": repeated}, "bob")
    assert buttons.claim_draw.isEnabled()
    buttons.update_for({**game, "moves": repeated}, "carol")  # a watcher
    assert not any(
        b.isEnabled()
        for b in (buttons.resign, buttons.abort, buttons.offer_draw, buttons.claim_draw)
    )
    buttons.update_for({**game, "state": "finished"}, "ann")
    assert not buttons.resign.isEnabled()


def test_panel_shows_a_snapshot(qtbot) -> None:
    panel = ChessPanel()
    qtbot.addWidget(panel)
    snapshot = {
        "white": "ann",
        "black": "bob",
        "state": "running",
        "moves": ["e2e4", "e7e5"],
        "fen": "",
        "white_ms": 300_000,
        "black_ms": 298_000,
        "turn": "white",
    }
    panel.apply_snapshot(snapshot, "bob")
    assert panel.board.you == chess.BLACK and panel.board.flipped
    assert panel.moves.item(0).text() == "1. e4 e5"
    assert panel.clocks.labels[chess.BLACK].text() == "4:58"
    assert not panel.buttons.abort.isEnabled()
    # Your clock by your edge of the board (the bottom), the opponent's by theirs.
    side = panel._side
    assert side.indexOf(panel.clocks.labels[chess.WHITE]) == 0
    assert side.indexOf(panel.clocks.labels[chess.BLACK]) == side.count() - 1
    panel.flip()
    assert not panel.board.flipped
    assert side.indexOf(panel.clocks.labels[chess.BLACK]) == 0
    for widget in (panel.board, panel.entry, panel.moves, panel.flip_button, panel.buttons.resign):
        assert widget.accessibleName()
