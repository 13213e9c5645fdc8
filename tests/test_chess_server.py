"""Chess over real sockets: whole games frame by frame, refusals, and a host killed mid-game.

The rules and the clocks are tested on the core with a hand clock (test_chess_rules.py);
here the same frames travel over TCP to an in-process ``ChatServer``, and to a
``qtchat serve`` child that is killed with SIGKILL and started again.
"""

from __future__ import annotations

import io

import chess
import chess.pgn
import test_full_disk
from helpers import LineClient, ServeProcess, SyncClient

CHESS = ["chess"]


def chess_player(qtbot, port: int, name: str) -> LineClient:
    client = LineClient(qtbot, port)
    assert client.register(name, features=CHESS)["features"] == CHESS
    client.sync()
    return client


def start_game(white: LineClient, black: LineClient, **offer) -> str:
    white.send({"type": "game_offer", "to": black.name, "color": "white", **offer})
    game = black.wait_for("game_offered")["game"]
    black.send({"type": "game_accept", "game": game})
    white.wait_for("game_started", game=game)
    black.wait_for("game_started", game=game)
    return game


def test_fools_mate_over_sockets_with_a_watcher_and_the_pgn_parses_back(qtbot, server):
    white, black, watcher = (chess_player(qtbot, server.port, name)
                             for name in ("Wanda", "Boris", "Vera"))
    for client in (white, black, watcher):
        client.send({"type": "join", "room": "club"})
        client.wait_for("joined")
    game = start_game(white, black, room="club")
    assert watcher.wait_for("game_started")["game"] == game
    for client, uci in ((white, "f2f3"), (black, "e7e5"), (white, "g2g4"), (black, "d8h4")):
        client.send({"type": "game_move", "game": game, "move": uci})
        watcher.wait_for("game_moved", uci=uci)
    over = watcher.wait_for("game_over", game=game)
    assert (over["result"], over["reason"]) == ("0-1", "checkmate")
    notice = watcher.wait_for("broadcast", room="club")
    assert notice["game"]["result"] == "0-1" and "Black wins" in notice["text"]
    parsed = chess.pgn.read_game(io.StringIO(over["pgn"]))
    expected = chess.Board()
    for uci in ("f2f3", "e7e5", "g2g4", "d8h4"):
        expected.push_uci(uci)
    assert parsed is not None and parsed.end().board().fen() == expected.fen()


def test_refusals_over_sockets_carry_their_codes_and_ids(qtbot, server):
    white, black, stranger = (chess_player(qtbot, server.port, name)
                              for name in ("Wanda", "Boris", "Sid"))
    game = start_game(white, black)
    cases = ((black, "e7e5", "not_your_turn"), (white, "e2e5", "illegal_move"),
             (white, "0000", "illegal_move"), (stranger, "e2e4", "not_permitted"))
    for index, (client, uci, code) in enumerate(cases):
        client.send({"type": "game_move", "game": game, "move": uci, "id": f"m{index}"})
        error = client.wait_for("error", id=f"m{index}")
        assert (error["code"], error["ref"]) == (code, "game_move")
    assert not [f for f in black.sync() if f["type"] == "game_moved"]


def test_resign_and_abort_over_sockets(qtbot, server):
    white, black = (chess_player(qtbot, server.port, name) for name in ("Wanda", "Boris"))
    game = start_game(white, black)
    black.send({"type": "game_abort", "game": game})
    over = white.wait_for("game_over", game=game)
    assert (over["result"], over["reason"]) == ("*", "aborted")
    game = start_game(white, black, clock={"initial": 300, "increment": 3})
    white.send({"type": "game_move", "game": game, "move": "e2e4"})
    white.send({"type": "game_resign", "game": game})
    over = black.wait_for("game_over", game=game)
    assert (over["result"], over["reason"]) == ("0-1", "resign")
    assert "[%clk 0:05:0" in over["pgn"]  # 300 s + 3, less White's thinking time


def test_a_host_killed_mid_game_restarts_and_the_game_goes_on(tmp_path):
    data = tmp_path / "data"
    with ServeProcess(data) as host:
        white, black = SyncClient(host.port), SyncClient(host.port)
        white.register("Wanda", features=CHESS)
        black.register("Boris", features=CHESS)
        white.send({"type": "game_offer", "to": "Boris", "color": "white",
                    "clock": {"initial": 600, "increment": 0}})
        offered, _ = black.recv_until("game_offered")
        black.send({"type": "game_accept", "game": offered["game"]})
        white.recv_until("game_started")
        white.send({"type": "game_move", "game": offered["game"], "move": "e2e4"})
        black.recv_until("game_moved")  # stored before it was sent
        host.kill()
    with ServeProcess(data) as host:
        white2 = SyncClient(host.port)
        (started,) = white2.register("Wanda", resume=white.session, features=CHESS)["games"]
        assert started["game"] == offered["game"] and started["moves"] == ["e2e4"]
        assert started["turn"] == "black" and started["black_ms"] > 590_000
        black2 = SyncClient(host.port)
        black2.register("Boris", resume=black.session, features=CHESS)
        black2.send({"type": "game_move", "game": offered["game"], "move": "e7e5"})
        moved, _ = white2.recv_until("game_moved")
        assert moved["ply"] == 2 and moved["san"] == "e5"
        host.terminate()


def play(white: LineClient, black: LineClient, game: str, moves: str) -> list[dict]:
    """Play UCI moves in turn; returns the game_moved frames White saw."""
    seen = []
    for index, uci in enumerate(moves.split()):
        (white if index % 2 == 0 else black).send(
            {"type": "game_move", "game": game, "move": uci})
        seen.append(white.wait_for("game_moved", game=game, uci=uci))
    return seen


def test_whole_games_over_sockets_stalemate_castling_en_passant_and_underpromotion(
        qtbot, server):
    white, black = (chess_player(qtbot, server.port, name) for name in ("Wanda", "Boris"))
    game = start_game(white, black)
    play(white, black, game, "e2e3 a7a5 d1h5 a8a6 h5a5 h7h5 h2h4 a6h6 a5c7 f7f6 c7d7 e8f7 "
                             "d7b7 d8d3 b7b8 d3h7 b8c8 f7g6 c8e6")
    over = black.wait_for("game_over", game=game)
    assert (over["result"], over["reason"]) == ("1/2-1/2", "stalemate")

    game = start_game(white, black)
    sans = [m["san"] for m in play(white, black, game,
                                   "e2e4 d7d5 g1f3 c8g4 f1e2 b8c6 e1g1 d8d7 d2d3 e8c8")]
    assert sans[6] == "O-O" and sans[9] == "O-O-O"
    white.send({"type": "game_resign", "game": game})
    black.wait_for("game_over", game=game)

    game = start_game(white, black)
    moved = play(white, black, game, "e2e4 a7a6 e4e5 d7d5 e5d6")
    assert moved[-1]["san"] == "exd6" and chess.Board(moved[-1]["fen"]).piece_at(
        chess.D5) is None  # the pawn taken en passant is gone
    white.send({"type": "game_resign", "game": game})
    black.wait_for("game_over", game=game)

    game = start_game(white, black)
    moved = play(white, black, game, "a2a4 b7b5 a4b5 a7a6 b5a6 c8b7 a6b7 b8c6 b7a8n")
    assert moved[-1]["san"] == "bxa8=N"
    assert chess.Board(moved[-1]["fen"]).piece_at(chess.A8) == chess.Piece(chess.KNIGHT,
                                                                            chess.WHITE)


def test_a_threefold_claim_is_refused_early_and_granted_on_the_third_time(qtbot, server):
    white, black = (chess_player(qtbot, server.port, name) for name in ("Wanda", "Boris"))
    game = start_game(white, black)
    play(white, black, game, "g1f3 g8f6 f3g1 f6g8")
    white.send({"type": "game_draw", "game": game, "action": "claim", "id": "c1"})
    assert white.wait_for("error", id="c1")["code"] == "not_permitted"
    play(white, black, game, "g1f3 g8f6 f3g1 f6g8")
    white.send({"type": "game_draw", "game": game, "action": "claim"})
    over = black.wait_for("game_over", game=game)
    assert (over["result"], over["reason"]) == ("1/2-1/2", "threefold_repetition")


def test_a_player_who_drops_and_resumes_sees_the_same_position_and_clocks(qtbot, server):
    white, black = (chess_player(qtbot, server.port, name) for name in ("Wanda", "Boris"))
    game = start_game(white, black, clock={"initial": 600, "increment": 5})
    moved = play(white, black, game, "e2e4 e7e5")[-1]
    white.close()  # a network drop: the session is held
    back = LineClient(qtbot, server.port)
    registered = back.register("Wanda", resume=white.session, features=CHESS)
    assert registered["resumed"]
    (started,) = registered["games"]
    assert started["moves"] == ["e2e4", "e7e5"] and started["fen"] == moved["fen"]
    assert started["black_ms"] == moved["black_ms"]  # not Black's turn: not charged
    assert moved["white_ms"] - 2_000 < started["white_ms"] <= moved["white_ms"]
    back.send({"type": "game_move", "game": game, "move": "g1f3"})
    assert black.wait_for("game_moved", game=game, uci="g1f3")["san"] == "Nf3"


small_disk = test_full_disk.small_disk  # a 2 MB tmpfs that really fills


def test_a_move_the_full_disk_refuses_is_not_played(small_disk):
    """Stored means stored (features §0): a move the host cannot commit is refused with
    storage_error, the opponent hears nothing, the position stays, and once the disk
    has room the same move is played."""
    from test_full_disk import TIMEOUT, fill, post_until_refused

    with ServeProcess(small_disk / "data") as host:
        white, black = SyncClient(host.port, timeout=TIMEOUT), SyncClient(host.port,
                                                                        timeout=TIMEOUT)
        white.register("Wanda", features=CHESS)
        black.register("Boris", features=CHESS)
        white.send({"type": "game_offer", "to": "Boris", "color": "white"})
        offered, _ = black.recv_until("game_offered")
        game = offered["game"]
        black.send({"type": "game_accept", "game": game})
        white.recv_until("game_started")
        white.send({"type": "game_move", "game": game, "move": "e2e4"})
        black.recv_until("game_moved")
        filler = fill(small_disk)
        post_until_refused(white, "filling")
        black.send({"type": "game_move", "game": game, "move": "e7e5", "id": "m1"})
        error, _ = black.recv_until("error", id="m1")
        assert (error["code"], error["ref"]) == ("storage_error", "game_move")
        assert [f for f in white.sync() if f["type"] == "game_moved"] == []
        black.send({"type": "game_list", "id": "l1"})
        listed, _ = black.recv_until("game_list", id="l1")
        assert listed["games"][0]["moves"] == ["e2e4"]  # the position as it was
        filler.unlink()
        black.send({"type": "game_move", "game": game, "move": "e7e5", "id": "m2"})
        moved, _ = white.recv_until("game_moved")
        assert (moved["ply"], moved["san"]) == (2, "e5")
        host.terminate()
    with ServeProcess(small_disk / "data") as host:  # and what is stored is that
        again = SyncClient(host.port, timeout=TIMEOUT)
        (started,) = again.register("Wanda", resume=white.session, features=CHESS)["games"]
        assert started["moves"] == ["e2e4", "e7e5"]
        again.close()
        host.terminate()


def test_a_game_between_identities_is_adjourned_and_resumes_over_sockets(qtbot, server):
    """Boris quits (bye): Wanda and the room hear game_adjourned, a move is refused;
    Boris's app starts again with the same identity and the game goes on."""
    from qtchat.server.identity import new_identity

    identities = {name: new_identity() for name in ("Wanda", "Boris", "Vera")}
    clients = {}
    for name, identity in identities.items():
        client = LineClient(qtbot, server.port)
        assert client.register(name, features=CHESS, identity=identity)["identity"] is True
        client.send({"type": "join", "room": "club"})
        client.wait_for("joined")
        clients[name] = client
    white, black, watcher = clients["Wanda"], clients["Boris"], clients["Vera"]
    game = start_game(white, black, room="club", clock={"initial": 300, "increment": 0})
    play(white, black, game, "e2e4 e7e5")
    black.send({"type": "bye"})
    assert white.wait_for("game_adjourned")["game"] == game
    assert watcher.wait_for("game_adjourned")["game"] == game
    white.send({"type": "game_move", "game": game, "move": "g1f3", "id": "m"})
    assert white.wait_for("error", id="m")["code"] == "not_permitted"
    again = LineClient(qtbot, server.port)
    registered = again.register("Boris", features=CHESS, identity=identities["Boris"])
    assert [(g["game"], g["adjourned"]) for g in registered["games"]] == [(game, True)]
    started = white.wait_for("game_started", game=game)
    assert started["moves"] == ["e2e4", "e7e5"] and "adjourned" not in started
    assert watcher.wait_for("game_started", game=game)["turn"] == "white"
    white.send({"type": "game_move", "game": game, "move": "g1f3"})
    assert again.wait_for("game_moved", game=game)["san"] == "Nf3"
