"""Chess over real sockets: whole games frame by frame, refusals, and a host killed mid-game.

The rules and the clocks are tested on the core with a hand clock (test_chess_rules.py);
here the same frames travel over TCP to an in-process ``ChatServer``, and to a
``qtchat serve`` child that is killed with SIGKILL and started again.
"""

from __future__ import annotations

import io

import chess
import chess.pgn
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
        white2.register("Wanda", resume=white.session, features=CHESS)
        started, _ = white2.recv_until("game_started")
        assert started["game"] == offered["game"] and started["moves"] == ["e2e4"]
        assert started["turn"] == "black" and started["black_ms"] > 590_000
        black2 = SyncClient(host.port)
        black2.register("Boris", resume=black.session, features=CHESS)
        black2.send({"type": "game_move", "game": offered["game"], "move": "e7e5"})
        moved, _ = white2.recv_until("game_moved")
        assert moved["ply"] == 2 and moved["san"] == "e5"
        host.terminate()
