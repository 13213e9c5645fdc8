"""ChessGame: the rules, clocks and storage of one game, driven with a hand-advanced clock.

No Qt and no sockets: what the server's chess module will rely on, checked move by move.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys

import chess
import chess.pgn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtchat.chess import (
    ChessGame,
    Clock,
    GameFinished,
    IllegalMove,
    NotPermitted,
    NotYourTurn,
)

W, B = "alice", "bob"


def new_game(clock: Clock | None = None, now: float = 100.0) -> ChessGame:
    return ChessGame(
        white=W, black=B, now=now, clock=clock, date=dt.date(2026, 12, 3), game_id="g1"
    )


def play(game: ChessGame, moves: str, now: float = 100.0, step: float = 0.0) -> float:
    """Play space-separated UCI moves alternately; returns the time after the last one."""
    for uci in moves.split():
        now += step
        game.move(game.player_to_move, uci, now)
    return now


def parse_pgn(text: str) -> chess.pgn.Game:
    game = chess.pgn.read_game(io.StringIO(text))
    assert game is not None and not game.errors, game.errors if game else text
    return game


def test_imports_without_qt() -> None:
    """The server core uses it in a process that may have no Qt at all."""
    code = (
        "import sys; sys.modules['PySide6'] = None\n"
        "import qtchat.chess.game\n"
        "assert not any(m.startswith('PySide6') and sys.modules[m] for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fools_mate() -> None:
    game = new_game()
    play(game, "f2f3 e7e5 g2g4 d8h4")
    assert (game.state, game.result, game.reason, game.ended_by) == (
        "finished",
        "0-1",
        "checkmate",
        B,
    )
    snap = game.snapshot()
    assert snap["san"] == "Qh4#" and snap["ply"] == 4 and snap["turn"] == "white"
    assert snap["white_ms"] is None and snap["black_ms"] is None
    with pytest.raises(GameFinished):
        game.move(W, "e2e4", 101.0)


def test_stalemate() -> None:
    # The shortest known stalemate (Sam Loyd, 10 moves).
    game = new_game()
    play(
        game,
        "e2e3 a7a5 d1h5 a8a6 h5a5 h7h5 h2h4 a6h6 a5c7 f7f6 c7d7 e8f7 d7b7 d8d3 "
        "b7b8 d3h7 b8c8 f7g6 c8e6",
    )
    assert (game.result, game.reason) == ("1/2-1/2", "stalemate")


def test_castling_both_ways() -> None:
    game = new_game()
    play(game, "e2e4 e7e5 g1f3 b8c6 f1c4 d7d6 e1g1 c8g4 d2d3 d8d7 b1c3 e8c8")
    snap = game.snapshot()
    board = chess.Board(snap["fen"])
    assert board.piece_at(chess.G1) == chess.Piece(chess.KING, chess.WHITE)
    assert board.piece_at(chess.F1) == chess.Piece(chess.ROOK, chess.WHITE)
    assert board.piece_at(chess.C8) == chess.Piece(chess.KING, chess.BLACK)
    assert board.piece_at(chess.D8) == chess.Piece(chess.ROOK, chess.BLACK)
    assert snap["san"] == "O-O-O" and game.board.move_stack[6].uci() == "e1g1"


def test_en_passant() -> None:
    game = new_game()
    play(game, "e2e4 a7a6 e4e5 d7d5")
    uci, san = game.move(W, "e5d6", 100.0)
    assert (uci, san) == ("e5d6", "exd6")
    assert game.board.piece_at(chess.D5) is None  # the captured pawn is gone


def test_promotion_to_a_knight() -> None:
    game = new_game()
    play(game, "a2a4 b7b5 a4b5 a7a6 b5a6 c8b7 a6b7 b8c6")
    uci, san = game.move(W, "b7a8n", 100.0)
    assert (uci, san) == ("b7a8n", "bxa8=N")
    assert game.board.piece_at(chess.A8) == chess.Piece(chess.KNIGHT, chess.WHITE)
    with pytest.raises(IllegalMove):
        new_game().move(W, "e2e4q", 100.0)  # a promotion where there is none


def test_threefold_claim_and_a_refused_early_claim() -> None:
    game = new_game()
    play(game, "g1f3 g8f6 f3g1 f6g8 g1f3 g8f6 f3g1")
    with pytest.raises(NotPermitted):  # the start position has been seen twice only
        game.draw(B, "claim", 100.0)
    assert game.state == "running"
    play(game, "f6g8")  # third time
    assert game.can_claim_draw()
    assert game.draw(W, "claim", 100.0) == "claim"
    assert (game.result, game.reason, game.ended_by) == ("1/2-1/2", "threefold_repetition", W)


def quiet_moves(plies: int) -> list[str]:
    """Piece moves with no capture and no pawn move, never visiting a position three times."""
    board = chess.Board()
    seen = {board.epd(): 1}
    moves = []
    for _ in range(plies):
        candidates = []
        for move in sorted(board.legal_moves, key=lambda move: move.uci()):
            if board.is_capture(move) or board.piece_type_at(move.from_square) == chess.PAWN:
                continue
            board.push(move)
            candidates.append((seen.get(board.epd(), 0), move.uci()))
            board.pop()
        count, uci = min(candidates)
        assert count < 2
        board.push_uci(uci)
        seen[board.epd()] = count + 1
        moves.append(uci)
    return moves


def test_fifty_move_claim_and_a_refused_early_one() -> None:
    game = new_game()
    moves = quiet_moves(100)
    play(game, " ".join(moves[:99]))
    with pytest.raises(NotPermitted):  # 49.5 moves without progress are not enough
        game.draw(B, "claim", 100.0)
    play(game, moves[99])
    assert game.draw(B, "claim", 100.0) == "claim"
    assert (game.result, game.reason) == ("1/2-1/2", "fifty_moves")


def test_draw_by_agreement_and_offers() -> None:
    game = new_game()
    with pytest.raises(NotPermitted):  # nobody offered
        game.draw(W, "accept", 100.0)
    assert game.draw(W, "offer", 100.0) == "offer"
    with pytest.raises(NotPermitted):  # your own offer is not yours to accept
        game.draw(W, "accept", 100.0)
    assert game.draw(B, "decline", 100.0) == "decline"
    assert game.draw_offer_from is None
    game.draw(B, "offer", 100.0)
    play(game, "e2e4")  # a move lets a pending offer lapse
    assert game.draw_offer_from is None
    with pytest.raises(NotPermitted):
        game.draw(W, "accept", 100.0)
    game.draw(W, "offer", 100.0)
    assert game.snapshot()["draw_offer_from"] == W
    assert game.draw(B, "accept", 100.0) == "accept"
    assert (game.result, game.reason, game.ended_by) == ("1/2-1/2", "agreement", B)


def test_offering_while_the_opponent_offers_is_agreement() -> None:
    game = new_game()
    game.draw(W, "offer", 100.0)
    assert game.draw(B, "offer", 100.0) == "accept"
    assert game.reason == "agreement"


def test_resignation() -> None:
    game = new_game()
    play(game, "e2e4")
    game.resign(W, 100.0)
    assert (game.result, game.reason, game.ended_by) == ("0-1", "resign", W)
    with pytest.raises(GameFinished):
        game.resign(B, 100.0)


def test_flag_fall_with_a_2_second_clock_is_a_loss() -> None:
    game = new_game(Clock(initial=2, increment=0), now=0.0)
    assert game.deadline() == 2.0
    assert not game.tick(1.999)
    assert game.snapshot(1.5)["white_ms"] == 500
    assert game.tick(2.0)
    assert (game.result, game.reason, game.ended_by) == ("0-1", "timeout", W)
    assert game.snapshot()["white_ms"] == 0 and game.snapshot()["black_ms"] == 2000
    assert game.deadline() is None


def test_a_move_after_the_flag_fell_does_not_count() -> None:
    game = new_game(Clock(initial=2, increment=0), now=0.0)
    play(game, "e2e4", now=0.0, step=1.0)  # White at 1 s: 1 s left
    with pytest.raises(GameFinished):
        game.move(B, "e7e5", 3.5)  # Black's 2 s ran out at 3.0
    assert (game.result, game.reason) == ("1-0", "timeout")


def test_flag_fall_against_a_bare_king_is_a_draw() -> None:
    game = new_game(Clock(initial=2, increment=0), now=0.0)
    game._board = chess.Board("8/8/4k3/8/8/3K4/8/R7 b - - 0 1")  # Black has a bare king
    game._since = 0.0
    assert game.tick(2.0)
    assert (game.result, game.reason) == ("1-0", "timeout")  # Black flagged; White can mate
    game = new_game(Clock(initial=2, increment=0), now=0.0)
    game._board = chess.Board("8/8/4k3/8/8/3K4/8/R7 w - - 0 1")
    assert game.tick(2.0)  # White flagged, but Black (a bare king) cannot mate
    assert (game.result, game.reason) == ("1/2-1/2", "timeout")


def test_clocks_run_for_the_side_to_move_and_gain_the_increment() -> None:
    game = new_game(Clock(initial=60, increment=2), now=10.0)
    game.move(W, "e2e4", 13.0)  # White: 60 - 3 + 2
    snap = game.snapshot()
    assert (snap["white_ms"], snap["black_ms"]) == (59_000, 60_000)
    assert game.deadline() == 13.0 + 60.0
    game.move(B, "e7e5", 20.5)  # Black: 60 - 7.5 + 2
    assert (game.snapshot()["white_ms"], game.snapshot()["black_ms"]) == (59_000, 54_500)
    assert game.snapshot(21.0)["white_ms"] == 58_500  # White's clock runs again


def test_abort_rules() -> None:
    game = new_game()
    game.abort(B, 100.0)  # before any move: either player
    assert (game.result, game.reason, game.ended_by) == ("*", "aborted", B)
    game = new_game()
    play(game, "e2e4")
    assert game.can_abort()
    game.abort(W, 100.0)  # Black has not moved yet
    assert game.reason == "aborted"
    game = new_game()
    play(game, "e2e4 e7e5")
    assert not game.can_abort()
    with pytest.raises(NotPermitted):
        game.abort(B, 100.0)
    with pytest.raises(NotPermitted):  # a watcher cannot abort either
        new_game().abort("carol", 100.0)


def test_moves_refused_with_the_contracts_codes() -> None:
    game = new_game()
    with pytest.raises(NotYourTurn) as out_of_turn:
        game.move(B, "e7e5", 100.0)
    assert out_of_turn.value.code == "not_your_turn"
    with pytest.raises(NotPermitted) as watcher:
        game.move("carol", "e2e4", 100.0)
    assert watcher.value.code == "not_permitted"
    for bad in ("0000", "e2e5", "e2", "E2E4", "e2e4 ", "e9e4", "Nf3", "", "e2e4qq", "a1a1"):
        with pytest.raises(IllegalMove) as illegal:
            game.move(W, bad, 100.0)
        assert illegal.value.code == "illegal_move", bad
    with pytest.raises(IllegalMove):
        game.move(W, None, 100.0)  # type: ignore[arg-type]
    assert game.ply == 0 and game.snapshot()["fen"] == chess.STARTING_FEN
    game.resign(B, 100.0)
    with pytest.raises(GameFinished) as finished:
        game.move(W, "e2e4", 100.0)
    assert finished.value.code == "game_finished"


def test_adjourned_game_takes_no_moves_and_no_time() -> None:
    game = new_game(Clock(initial=60, increment=0), now=0.0)
    play(game, "e2e4", now=0.0, step=5.0)  # Black to move from t=5
    game.adjourn(8.0)  # Black has used 3 s
    assert game.state == "adjourned" and game.deadline() is None
    with pytest.raises(NotPermitted):
        game.move(B, "e7e5", 9.0)
    assert game.snapshot(1000.0)["black_ms"] == 57_000
    game.resume(5000.0)
    assert game.state == "running" and game.deadline() == 5000.0 + 57.0
    game.move(B, "e7e5", 5001.0)
    assert game.snapshot()["black_ms"] == 56_000


def test_pause_and_resume_charge_no_time() -> None:
    game = new_game(Clock(initial=30, increment=1), now=0.0)
    play(game, "e2e4 e7e5", now=0.0, step=2.0)  # White 29, Black 29; White to move at 4
    game.pause(6.0)  # White used 2 s
    assert game.paused and game.deadline() is None
    assert not game.tick(10_000.0)
    with pytest.raises(NotPermitted):
        game.move(W, "g1f3", 50.0)
    game.resume(100.0)
    assert game.snapshot(100.0)["white_ms"] == 27_000
    game.move(W, "g1f3", 101.0)
    assert game.snapshot()["white_ms"] == 27_000  # 27 - 1 + 1


def test_record_round_trip_mid_game_with_clocks() -> None:
    game = new_game(Clock(initial=300, increment=3), now=0.0)
    now = play(game, "e2e4 c7c5 g1f3 d7d6 d2d4", now=0.0, step=4.25)
    game.draw(W, "offer", now)
    record = json.loads(json.dumps(game.to_record()))  # through storage as JSON
    copy = ChessGame.from_record(record)
    for t in (now, now + 7.5, now + 1000.0):
        assert copy.snapshot(t) == game.snapshot(t)
    assert copy.deadline() == game.deadline()
    assert copy.pgn() == game.pgn()
    copy.move(B, "c5d4", now + 2.0)
    game.move(B, "c5d4", now + 2.0)
    assert copy.snapshot() == game.snapshot()


def test_restore_after_host_downtime_charges_nobody() -> None:
    game = new_game(Clock(initial=60, increment=0), now=0.0)
    play(game, "e2e4", now=0.0, step=10.0)  # stored at t=10, Black to move, 60 s left
    record = game.to_record()
    back = ChessGame.from_record(record, resume_at=3600.0)  # an hour later
    assert back.deadline() == 3600.0 + 60.0
    assert back.snapshot(3605.0)["black_ms"] == 55_000
    assert back.snapshot(3605.0)["white_ms"] == 50_000


def test_finished_game_record_round_trip() -> None:
    game = new_game(Clock(initial=2, increment=0), now=0.0)
    game.tick(5.0)
    copy = ChessGame.from_record(game.to_record(), resume_at=10.0)
    assert copy.snapshot() == game.snapshot() and copy.deadline() is None
    assert (copy.result, copy.reason, copy.ended_by) == ("0-1", "timeout", W)


def test_pgn_round_trip_with_clock_comments() -> None:
    game = new_game(Clock(initial=180, increment=2), now=0.0)
    play(game, "f2f3 e7e5 g2g4 d8h4", now=0.0, step=3.0)
    text = game.pgn()
    parsed = parse_pgn(text)
    assert parsed.headers["White"] == W and parsed.headers["Black"] == B
    assert parsed.headers["Result"] == "0-1" and parsed.headers["Date"] == "2026.12.03"
    assert parsed.headers["TimeControl"] == "180+2"
    assert parsed.end().board().fen() == game.snapshot()["fen"]
    clocks = [node.clock() for node in parsed.mainline()]
    assert clocks == [179.0, 179.0, 178.0, 178.0]  # each side thinks 3 s, gains 2
    assert "[%clk 0:02:59]" in text


def test_untimed_pgn_has_no_clock_comments() -> None:
    game = new_game()
    play(game, "e2e4 e7e5")
    game.resign(B, 100.0)
    text = game.pgn()
    assert "%clk" not in text and "TimeControl" in text
    parsed = parse_pgn(text)
    assert parsed.headers["Result"] == "1-0"
    assert [m.uci() for m in parsed.mainline_moves()] == ["e2e4", "e7e5"]


def test_clock_limits() -> None:
    for bad in (dict(initial=-1), dict(initial=10_801), dict(increment=181), dict(initial=1.5)):
        with pytest.raises(ValueError):
            Clock(**bad)
    with pytest.raises(ValueError):
        ChessGame(white=W, black=W, now=0.0)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), timed=st.booleans())
def test_random_games_agree_between_snapshot_record_and_pgn(data, timed) -> None:
    """Random legal play: the snapshot, a stored-and-restored copy and the PGN agree."""
    clock = Clock(initial=600, increment=1) if timed else Clock()
    game = new_game(clock, now=0.0)
    now = 0.0
    for _ in range(data.draw(st.integers(0, 60), label="plies")):
        legal = sorted(game.board.legal_moves, key=lambda move: move.uci())
        if game.state != "running" or not legal:
            break
        move = data.draw(st.sampled_from(legal), label="move")
        now += data.draw(st.floats(0.0, 5.0, allow_nan=False), label="think")
        uci, san = game.move(game.player_to_move, move.uci(), now)
        assert game.snapshot()["san"] == san and game.snapshot()["uci"] == uci
    if game.state == "running" and data.draw(st.booleans(), label="resign"):
        game.resign(game.player_to_move, now)
    snap = game.snapshot(now)
    copy = ChessGame.from_record(json.loads(json.dumps(game.to_record())))
    assert copy.snapshot(now) == snap
    board = chess.Board()
    for uci in snap["moves"]:
        board.push_uci(uci)
    assert board.fen() == snap["fen"] and len(snap["moves"]) == snap["ply"]
    parsed = parse_pgn(game.pgn())
    assert parsed.end().board().fen() == snap["fen"]
    assert parsed.headers["Result"] == (game.result or "*")
    clocks = [node.clock() for node in parsed.mainline()]
    assert all(c is not None for c in clocks) if timed else all(c is None for c in clocks)
