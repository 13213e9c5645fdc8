"""ChatClient plays chess against a real server: offers, moves and the end as signals."""

from __future__ import annotations

from test_client import WAIT, join, round_trip

from qtchat.protocol import chess as pc


def test_two_clients_play_fools_mate_through_the_signals(qtbot, server, make_client):
    white = make_client(features=("chess",))
    black = make_client(features=("chess",))
    join(qtbot, white, server, "Wanda")
    join(qtbot, black, server, "Boris")
    assert white.has_feature("chess")
    with qtbot.waitSignal(black.gameOffered, timeout=WAIT) as offered:
        assert white.offer_game("Boris", color="white", initial=60, increment=1)
    offer = offered.args[0]
    assert isinstance(offer, pc.GameOffered) and offer.sender == "Wanda"
    assert offer.clock == {"initial": 60, "increment": 1}
    with qtbot.waitSignal(white.gameStarted, timeout=WAIT) as started:
        black.accept_game(offer.game)
    assert (started.args[0].white, started.args[0].white_ms) == ("Wanda", 60_000)
    moves = (white, "f2f3"), (black, "e7e5"), (white, "g2g4")
    for client, uci in moves:
        with qtbot.waitSignal(black.gameMoved, timeout=WAIT,
                              check_params_cb=lambda f, u=uci: f.uci == u):
            client.move(offer.game, uci)
    with qtbot.waitSignal(white.gameOver, timeout=WAIT) as over:
        black.move(offer.game, "d8h4")
    assert (over.args[0].result, over.args[0].reason) == ("0-1", "checkmate")


def test_a_refused_move_is_an_error_with_its_ref_and_nothing_moves(qtbot, server,
                                                                   make_client):
    white = make_client(features=("chess",))
    black = make_client(features=("chess",))
    join(qtbot, white, server, "Wanda")
    join(qtbot, black, server, "Boris")
    with qtbot.waitSignal(black.gameOffered, timeout=WAIT) as offered:
        white.offer_game("Boris", color="white")
    with qtbot.waitSignal(white.gameStarted, timeout=WAIT):
        black.accept_game(offered.args[0].game)
    moved: list = []
    white.gameMoved.connect(moved.append)
    with qtbot.waitSignal(black.errorReceived, timeout=WAIT) as refused:
        black.move(offered.args[0].game, "e7e5")
    assert refused.args[0] == "not_your_turn" and refused.args[2] == "game_move"
    round_trip(qtbot, white)
    assert moved == []


def test_a_client_that_did_not_ask_for_chess_gets_no_game_signals(qtbot, server, make_client):
    chessy = make_client(features=("chess",))
    plain = make_client()
    join(qtbot, chessy, server, "Chessy")
    join(qtbot, plain, server, "Plain")
    with qtbot.waitSignal(chessy.errorReceived, timeout=WAIT) as refused:
        chessy.offer_game("Plain")
    assert refused.args[0] == "not_permitted"


MOVED = {"type": "game_moved", "game": "g", "ply": 1, "uci": "e2e4", "san": "e4",
         "fen": "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1",
         "white_ms": None, "black_ms": None, "turn": "black"}


def scripted(accepted: list[str], after: list[dict]):
    from _scripted_host import ScriptedHost, registered

    def answer(frame: dict) -> list:
        if frame["type"] == "register":
            return [{**registered(frame), "features": accepted}, *after]
        if frame["type"] == "ping":
            return [{"type": "pong", "token": frame.get("token")}]
        return []

    return ScriptedHost(answer)


def test_game_frames_from_a_host_that_did_not_accept_chess_are_ignored(qtbot, make_client):
    host = scripted([], [MOVED])
    client = make_client(features=("chess",))
    moved: list = []
    client.gameMoved.connect(moved.append)
    join(qtbot, client, host, "Wanda")
    round_trip(qtbot, client)
    assert moved == []
    host.close()


def test_a_malformed_game_frame_is_a_protocol_error_not_a_move(qtbot, make_client):
    host = scripted(["chess"], [{**MOVED, "turn": "purple"}])
    client = make_client(features=("chess",))
    moved: list = []
    client.gameMoved.connect(moved.append)
    with qtbot.waitSignal(client.protocolError, timeout=WAIT) as broken:
        join(qtbot, client, host, "Wanda")
    assert "game_moved" in str(broken.args[0]) and moved == []
    host.close()
