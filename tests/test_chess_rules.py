"""The chess feature's rules, on ``ServerCore`` with a hand-advanced clock (no sockets).

What a player and a watcher would see frame by frame: an offer and its end, a game
played to mate, refusals with their codes, clocks that run out while nobody moves, and
a game that outlives a host restart without being charged the time it was down.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import chess
import chess.pgn
from test_core_rules import FakeClient, Net
from test_moderation_core import FileNet

from qtchat.server.domain import ConnState
from qtchat.server.identity import new_identity
from qtchat.server.store import MessageStore

CHESS = ["chess"]


def players(net: Net, *names: str) -> list[FakeClient]:
    made = [net.registered(name, features=CHESS) for name in names]
    for client in made:
        client.new()
    return made


def last(client: FakeClient, kind: str) -> dict[str, Any]:
    found = [f for f in client.new() if f["type"] == kind]
    assert found, f"no {kind} among {client.frames[-5:]}"
    return found[-1]


def start(net: Net, white: FakeClient, black: FakeClient, **offer: Any) -> str:
    """White offers (as White) and Black accepts; returns the game id."""
    white.send(type="game_offer", to=black.name, color="white", **offer)
    offered = last(black, "game_offered")
    assert offered["from"] == white.name and offered["expires"] == 60
    black.send(type="game_accept", game=offered["game"])
    started = last(white, "game_started")
    assert (started["white"], started["black"]) == (white.name, black.name)
    assert started["moves"] == [] and started["turn"] == "white"
    black.new()
    return offered["game"]


def errors(client: FakeClient) -> list[str]:
    return [f["code"] for f in client.new() if f["type"] == "error"]


def test_fools_mate_is_played_watched_and_ends_with_a_pgn_and_a_line_in_the_room():
    net = Net()
    white, black, watcher = players(net, "Wanda", "Boris", "Vera")
    for client in (white, black, watcher):
        client.send(type="join", room="club")
        client.new()
    game = start(net, white, black, room="club")
    assert last(watcher, "game_started")["game"] == game  # the room watches
    for client, uci in ((white, "f2f3"), (black, "e7e5"), (white, "g2g4"), (black, "d8h4")):
        client.send(type="game_move", game=game, move=uci)
    moved = [f for f in watcher.frames if f["type"] == "game_moved"]
    assert [m["san"] for m in moved] == ["f3", "e5", "g4", "Qh4#"]
    over = last(watcher, "game_over")
    assert (over["result"], over["reason"]) == ("0-1", "checkmate")
    parsed = chess.pgn.read_game(io.StringIO(over["pgn"]))
    assert parsed is not None and parsed.end().board().is_checkmate()
    assert parsed.headers["White"] == "Wanda" and parsed.headers["Result"] == "0-1"
    said = [f for f in watcher.frames if f["type"] == "broadcast" and "game" in f]
    assert said[-1]["game"] == {"game": game, "result": "0-1", "reason": "checkmate"}
    assert said[-1]["from"] == "Boris" and "Black wins" in said[-1]["text"]
    # Over means over: another move is refused.
    white.send(type="game_move", game=game, move="e2e4")
    assert errors(white) == ["game_finished"]


def test_illegal_out_of_turn_null_and_watcher_moves_are_refused_with_their_codes():
    net = Net()
    white, black, stranger = players(net, "Wanda", "Boris", "Sid")
    game = start(net, white, black)
    black.send(type="game_move", game=game, move="e7e5", id="m1")
    refused = last(black, "error")
    assert (refused["code"], refused["id"]) == ("not_your_turn", "m1")
    white.send(type="game_move", game=game, move="e2e5")
    assert errors(white) == ["illegal_move"]
    white.send(type="game_move", game=game, move="0000")
    assert errors(white) == ["illegal_move"]
    stranger.send(type="game_move", game=game, move="e2e4")
    assert errors(stranger) == ["not_permitted"]
    white.send(type="game_move", game="nope", move="e2e4")
    assert errors(white) == ["no_such_game"]
    # None of it moved a piece: the first real move is ply 1.
    white.send(type="game_move", game=game, move="e2e4")
    assert last(black, "game_moved")["ply"] == 1


def test_chess_frames_are_unknown_to_a_session_that_did_not_ask_for_chess():
    net = Net()
    plain = net.registered("Plain", features=[])
    (other,) = players(net, "Chessy")
    plain.new()
    plain.send(type="game_offer", to="Chessy")
    assert errors(plain) == ["unknown_type"]
    other.send(type="game_offer", to="Plain")  # Plain has no board: not_permitted
    assert errors(other) == ["not_permitted"]
    other.send(type="game_offer", to="Chessy")
    assert errors(other) == ["not_permitted"]


def test_a_flag_falls_at_the_servers_sweep_while_nobody_moves():
    net = Net()
    white, black = players(net, "Wanda", "Boris")
    game = start(net, white, black, clock={"initial": 2, "increment": 0})
    net.advance(1.0)
    assert not [f for f in white.new() if f["type"] == "game_over"]
    net.advance(1.5)
    over = last(black, "game_over")
    assert (over["game"], over["result"], over["reason"]) == (game, "0-1", "timeout")
    assert "[%clk 0:00:00]" not in over["pgn"]  # nobody moved: no clock comment
    white.send(type="game_move", game=game, move="e2e4")
    assert errors(white) == ["game_finished"]


def test_resign_abort_and_a_draw_by_agreement():
    net = Net()
    white, black = players(net, "Wanda", "Boris")
    game = start(net, white, black)
    white.send(type="game_move", game=game, move="e2e4")
    white.send(type="game_abort", game=game)  # White has moved, Black not: still allowed
    over = last(black, "game_over")
    assert (over["result"], over["reason"]) == ("*", "aborted")

    game = start(net, white, black)
    white.send(type="game_move", game=game, move="e2e4")
    black.send(type="game_move", game=game, move="e7e5")
    white.send(type="game_abort", game=game)
    assert errors(white) == ["not_permitted"]
    black.send(type="game_draw", game=game, action="accept")  # nobody offered
    assert errors(black) == ["not_permitted"]
    black.send(type="game_draw", game=game, action="claim")  # no repetition yet
    assert errors(black) == ["not_permitted"]
    white.send(type="game_draw", game=game, action="offer")
    relayed = last(black, "game_draw")
    assert (relayed["from"], relayed["action"]) == ("Wanda", "offer")
    black.send(type="game_draw", game=game, action="accept")
    over = last(white, "game_over")
    assert (over["result"], over["reason"]) == ("1/2-1/2", "agreement")

    game = start(net, white, black)
    black.send(type="game_resign", game=game)
    assert last(white, "game_over")["result"] == "1-0"


def test_an_offer_expires_after_a_minute_and_when_either_drops():
    net = Net()
    white, black, third = players(net, "Wanda", "Boris", "Tess")
    white.send(type="game_offer", to="Boris")
    offered = last(black, "game_offered")
    net.advance(59)
    assert not [f for f in black.new() if f["type"] == "game_offer_ended"]
    net.advance(2)
    assert last(white, "game_offer_ended") == {
        "type": "game_offer_ended", "game": offered["game"], "reason": "expired"}
    black.send(type="game_accept", game=offered["game"])
    assert errors(black) == ["no_such_game"]

    third.send(type="game_offer", to="Boris")
    offered = last(black, "game_offered")
    net.drop(third)
    assert last(black, "game_offer_ended")["reason"] == "gone"


def test_at_most_five_running_games_per_player():
    net = Net()
    white, *others = players(net, "Wanda", "B1", "B2", "B3", "B4", "B5", "B6")
    for opponent in others[:5]:
        start(net, white, opponent)
    white.send(type="game_offer", to="B6")
    assert errors(white) == ["too_many_games"]


def test_a_game_outlives_a_host_restart_and_no_time_is_charged_while_down(tmp_path: Path):
    path = tmp_path / "history.db"
    net = Net()
    net.store.close()
    net.store = MessageStore(path)
    from qtchat.server.core import ServerCore

    def core_on(store: MessageStore) -> ServerCore:
        return ServerCore(net.config, store, now=net.now,
                          timestamp=lambda: "2026-12-03T12:00:00.000Z")

    net.core = core_on(net.store)
    white, black = players(net, "Wanda", "Boris")
    game = start(net, white, black, clock={"initial": 60, "increment": 2})
    net.advance(5)
    white.send(type="game_move", game=game, move="e2e4")
    assert last(black, "game_moved")["white_ms"] == 57_000  # 60 - 5 + 2
    net.advance(3)  # Black thinks 3 s, then the host goes down
    net.core.shutdown()
    net.settle()
    net.store.close()

    net.now += 3600  # an hour down
    net.store = MessageStore(path)
    net.core = core_on(net.store)
    net.clients.clear()
    white2 = net.client()
    white2.register("Wanda", resume=white.session, features=CHESS)
    net.settle()
    (registered,) = white2.of("registered")
    (started,) = registered["games"]  # the running game comes with registered
    assert not white2.of("game_started")  # and is not sent again
    assert started["game"] == game and started["moves"] == ["e2e4"]
    assert started["black_ms"] == 57_000  # 3 s charged before, none for the hour
    net.advance(1)
    black2 = net.client()
    black2.register("Boris", resume=black.session, features=CHESS)
    net.settle()
    black2.new()
    black2.send(type="game_move", game=game, move="e7e5")
    assert last(white2, "game_moved")["black_ms"] == 58_000  # 57 - 1 + 2
    net.store.close()


def test_a_player_whose_session_ends_abandons_the_game():
    net = Net()
    white, black = players(net, "Wanda", "Boris")
    game = start(net, white, black)
    white.send(type="game_move", game=game, move="e2e4")
    net.drop(black)  # held for its resume: the game waits
    net.advance(1)
    assert not [f for f in white.new() if f["type"] == "game_over"]
    net.advance(net.config.resume_grace + 2)
    over = last(white, "game_over")
    assert (over["result"], over["reason"]) == ("1-0", "abandoned")


def test_game_list_has_the_running_games_and_the_finished_with_their_pgn():
    net = Net()
    white, black = players(net, "Wanda", "Boris")
    done = start(net, white, black)
    black.send(type="game_resign", game=done)
    running = start(net, white, black)
    net.advance(1)  # the sweep commits
    white.send(type="game_list", id="l1")
    listed = last(white, "game_list")
    assert listed["id"] == "l1"
    assert [g["game"] for g in listed["games"]] == [running]
    assert [g["game"] for g in listed["finished"]] == [done]
    assert '[Result "1-0"]' in listed["finished"][0]["pgn"]


def test_step_3_adds_the_games_table_to_a_version_2_history_and_keeps_its_messages(
        tmp_path: Path, monkeypatch):
    import sqlite3

    from qtchat.server import store as store_module

    path = tmp_path / "history.db"
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
    old = MessageStore(path)
    old.add(ts="2026-01-01T00:00:00Z", bucket="lobby", room="lobby", sender="Ann",
            sender_sid=1, text="before chess")
    old.commit()
    old.close()
    monkeypatch.undo()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()

    store = MessageStore(path)
    assert [m.text for m in store.page("lobby", None, 10, 65_536)] == ["before chess"]
    store.save_game("g1", "Ann", "Bo", 1, 2, "running", {"game": "g1", "moves": ["e2e4"]})
    store.commit(messages_only=True)  # a game counts as urgent as a message
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION >= 3
    assert db.execute("SELECT game, state FROM games").fetchall() == [("g1", "running")]
    db.close()
    again = MessageStore(path)
    assert again.open_games() == [(1, 2, {"game": "g1", "moves": ["e2e4"]})]
    again.close()


def test_joining_a_room_mid_game_shows_its_game_to_watch():
    net = Net()
    white, black, late = players(net, "Wanda", "Boris", "Lena")
    for client in (white, black):
        client.send(type="join", room="club")
    game = start(net, white, black, room="club")
    white.send(type="game_move", game=game, move="e2e4")
    late.new()
    late.send(type="join", room="club")
    frames = late.new()
    (started,) = next(f for f in frames if f["type"] == "joined")["games"]
    assert "game_started" not in [f["type"] for f in frames]
    assert started["game"] == game and started["moves"] == ["e2e4"]
    black.send(type="game_move", game=game, move="e7e5")
    assert last(late, "game_moved")["san"] == "e5"


# --- registered.games / joined.games, and adjournment between identities ---------------


def with_identity(net: Net, name: str, identity: str, **fields: Any) -> FakeClient:
    client = net.registered(name, features=CHESS, identity=identity, **fields)
    client.new()
    return client


def test_registered_lists_your_games_and_your_rooms_games_in_the_started_shape():
    net = Net()
    white, black, watcher = players(net, "Wanda", "Boris", "Vera")
    for client in (white, black, watcher):
        client.send(type="join", room="club")
    own = start(net, white, black)
    room_game = start(net, white, black, room="club")
    black.send(type="game_move", game=own, move="e2e4")  # not Black's move: refused
    white.send(type="game_move", game=own, move="e2e4")
    net.drop(watcher)
    back = net.client()
    registered = back.register("Vera", resume=watcher.session, features=CHESS)
    assert [g["game"] for g in registered["games"]] == [room_game]  # watched, not others'
    net.drop(white)
    back = net.client()
    registered = back.register("Wanda", resume=white.session, features=CHESS)
    games = {g["game"]: g for g in registered["games"]}
    assert set(games) == {own, room_game}
    assert games[own]["moves"] == ["e2e4"] and games[own]["turn"] == "black"
    assert games[room_game]["room"] == "club" and "adjourned" not in games[own]
    plain = net.client()  # a protocol-1 client (or one without chess) gets no games
    assert "games" not in plain.register("Sid")


def test_a_move_made_while_a_resume_replays_comes_as_game_started_once_live():
    net = Net(send_queue_bytes=256 * 1024)  # a replay turn then holds 64 KB at most
    white, black = players(net, "Wanda", "Boris")
    game = start(net, white, black)
    net.drop(black)
    for number in range(600):  # something to replay, so that the resume takes passes
        white.send(type="broadcast", text=f"line {number} " + "x" * 200)
    back = net.client(window=4096)  # reads slowly: its replay takes many passes
    back.send(type="register", name="Boris", protocol=1, resume=black.session,
              features=CHESS)
    assert back.conn.state is not ConnState.LIVE  # still replaying
    white.send(type="game_move", game=game, move="e2e4")  # while Boris replays
    back.read()
    while back.pending or back.unread:
        back.read()
    (registered,) = back.of("registered")
    assert registered["games"][0]["moves"] == []
    started = back.of("game_started")
    assert [s["moves"] for s in started] == [["e2e4"]]


def test_a_game_that_ends_while_a_resume_replays_comes_as_game_over_once_live():
    net = Net(send_queue_bytes=256 * 1024)  # a replay turn then holds 64 KB at most
    white, black = players(net, "Wanda", "Boris")
    game = start(net, white, black)
    net.drop(black)
    for number in range(600):
        white.send(type="broadcast", text=f"line {number} " + "x" * 200)
    back = net.client(window=4096)
    back.send(type="register", name="Boris", protocol=1, resume=black.session,
              features=CHESS)
    assert back.conn.state is not ConnState.LIVE  # still replaying
    white.send(type="game_resign", game=game)
    while back.pending or back.unread or back.conn.state is not ConnState.LIVE:
        back.read()
    (registered,) = back.of("registered")
    assert [g["game"] for g in registered["games"]] == [game]
    (over,) = back.of("game_over")
    assert (over["game"], over["result"], over["reason"]) == (game, "0-1", "resign")
    assert '[Result "0-1"]' in over["pgn"]


IDENT_W, IDENT_B = new_identity(), new_identity()


def test_a_game_between_identities_is_adjourned_then_resumed_with_its_clocks():
    net = Net()
    white = with_identity(net, "Wanda", IDENT_W)
    black = with_identity(net, "Boris", IDENT_B)
    watcher = with_identity(net, "Vera", new_identity())
    for client in (white, black, watcher):
        client.send(type="join", room="club")
        client.new()
    game = start(net, white, black, room="club", clock={"initial": 60, "increment": 0})
    watcher.new()
    net.advance(4)
    white.send(type="game_move", game=game, move="e2e4")  # White 56 s left
    net.advance(2)  # Black thinks 2 s, then quits for good
    black.send(type="bye")
    net.advance(1)  # the sweep sees the session gone
    assert last(white, "game_adjourned") == {"type": "game_adjourned", "game": game}
    assert last(watcher, "game_adjourned")["game"] == game
    assert not [f for f in white.new() + watcher.new() if f["type"] == "game_over"]
    white.send(type="game_move", game=game, move="d2d4", id="m")
    (error,) = [f for f in white.new() if f["type"] == "error"]
    assert (error["code"], error["id"]) == ("not_permitted", "m")
    net.advance(600)  # ten minutes: no clock runs, nothing ends it
    white.send(type="game_list")
    (listed,) = last(white, "game_list")["games"]
    assert listed["adjourned"] is True and listed["black_ms"] == 57_000  # 2 s + the sweep's
    assert listed["white_ms"] == 56_000
    # Boris comes back: a new session, the same identity (the app restarted).
    black2 = net.client()
    registered = black2.register("Boris", features=CHESS, identity=IDENT_B)
    (listed,) = registered["games"]
    assert listed["game"] == game and listed["adjourned"] is True
    net.settle()
    (started,) = black2.of("game_started")  # right after registered: both are back
    assert started["game"] == game and "adjourned" not in started
    assert (started["white_ms"], started["black_ms"], started["moves"]) == (
        56_000, 57_000, ["e2e4"])
    assert last(white, "game_started")["game"] == game
    assert last(watcher, "game_started")["game"] == game
    net.advance(3)
    black2.send(type="game_move", game=game, move="e7e5")
    moved = last(white, "game_moved")
    assert (moved["san"], moved["black_ms"]) == ("e5", 54_000)  # 57 - 3: not the 10 min


def test_an_adjourned_game_resumes_after_a_host_restart_when_both_are_back(tmp_path: Path):
    net = FileNet(tmp_path / "history.db")
    white = with_identity(net, "Wanda", IDENT_W)
    black = with_identity(net, "Boris", IDENT_B)
    game = start(net, white, black, clock={"initial": 600, "increment": 0})
    white.send(type="game_move", game=game, move="e2e4")
    net.drop(white)
    net.advance(net.config.resume_grace + 2)  # Wanda's session ends: adjourned
    assert last(black, "game_adjourned")["game"] == game
    net.restart(down_for=3600)
    white2 = net.client()
    (listed,) = white2.register("Wanda", features=CHESS, identity=IDENT_W)["games"]
    assert listed["adjourned"] is True
    net.advance(2)
    assert not white2.of("game_started")  # Boris is not back yet
    black2 = net.client()
    black2.register("Boris", resume=black.session, features=CHESS, identity=IDENT_B)
    net.settle()
    started = last(white2, "game_started")
    assert started["game"] == game and started["moves"] == ["e2e4"]
    # Boris's clock ran while Wanda could still come back (the grace, and the sweep that
    # found her gone), then never: not for the restart, nor the hour.
    assert started["black_ms"] == 600_000 - round((net.config.resume_grace + 2) * 1000)
    black2.send(type="game_move", game=game, move="e7e5")
    assert last(white2, "game_moved")["san"] == "e5"
    net.store.close()


def test_without_identities_a_game_whose_player_leaves_is_abandoned_not_adjourned():
    net = Net()
    white = with_identity(net, "Wanda", IDENT_W)
    black, = players(net, "Boris")  # no identity
    game = start(net, white, black)
    white.send(type="game_move", game=game, move="e2e4")
    black.send(type="bye")
    net.advance(1)
    frames = white.new()
    assert "game_adjourned" not in [f["type"] for f in frames]
    (over,) = [f for f in frames if f["type"] == "game_over"]
    assert (over["result"], over["reason"]) == ("1-0", "abandoned")


# --- the end of a room game, as said in the room and kept in its history ----------------


def fools_mate(net: Net, white: FakeClient, black: FakeClient, room: str) -> str:
    game = start(net, white, black, room=room)
    for client, uci in ((white, "f2f3"), (black, "e7e5"), (white, "g2g4"), (black, "d8h4")):
        client.send(type="game_move", game=game, move=uci)
    return game


def test_the_result_said_in_the_room_keeps_its_game_in_history_and_after_a_restart(
        tmp_path: Path):
    net = FileNet(tmp_path / "history.db")
    white, black = players(net, "Wanda", "Boris")
    old = net.registered("Olga")  # protocol 1: no features at all
    for client in (white, black, old):
        client.send(type="join", room="club")
        client.new()
    game = fools_mate(net, white, black, "club")
    said = {"game": game, "result": "0-1", "reason": "checkmate"}
    (live,) = [f for f in white.new() if f["type"] == "broadcast"]
    assert live["game"] == said and "Black wins" in live["text"]
    (plain,) = [f for f in old.new() if f["type"] == "broadcast"]
    assert "game" not in plain and plain["text"] == live["text"]  # a plain broadcast
    later = players(net, "Lena")[0]
    later.send(type="join", room="club")
    joined = last(later, "joined")
    assert [m.get("game") for m in joined["history"]] == [said]
    net.drop(white)
    net.restart()
    back = net.client()
    back.register("Wanda", resume=white.session, features=CHESS, since=0)
    net.settle()
    replayed = [f for f in back.frames if f["type"] == "broadcast"]
    assert [m.get("game") for m in replayed] == [said]
    back.send(type="history", room="club")
    (page,) = back.of("history")
    assert [m.get("game") for m in page["messages"]] == [said]
    net.store.close()


def test_the_game_notices_step_adds_its_table_to_the_history_before_it(
        tmp_path: Path, monkeypatch):
    import sqlite3

    from qtchat.server import store as store_module

    path = tmp_path / "history.db"
    step = store_module.MIGRATIONS.index(store_module._game_notices)
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:step])
    old = MessageStore(path)
    old.add(ts="2026-01-01T00:00:00Z", bucket="club", room="club", sender="Ann",
            sender_sid=1, text="before")
    old.commit()
    old.close()
    monkeypatch.undo()
    store = MessageStore(path)
    assert store.game_notices == {}
    seq = store.add(ts="2026-01-01T00:01:00Z", bucket="club", room="club", sender="Ann",
                    sender_sid=1, text="Chess: Draw")
    store.add_game_notice(seq, {"game": "g1", "result": "1/2-1/2", "reason": "agreement"})
    store.commit(messages_only=True)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(store_module.MIGRATIONS)
    db.close()
    again = MessageStore(path)
    assert [(m.text, m.game) for m in again.page("club", None, 10)] == [
        ("before", None),
        ("Chess: Draw", {"game": "g1", "result": "1/2-1/2", "reason": "agreement"})]
    again.close()


def test_an_app_restarted_with_its_identity_takes_its_game_over_without_an_adjournment():
    net = Net()
    white = with_identity(net, "Wanda", IDENT_W)
    black = with_identity(net, "Boris", IDENT_B)
    game = start(net, white, black, clock={"initial": 300, "increment": 0})
    white.send(type="game_move", game=game, move="e2e4")
    net.drop(black)  # the app is gone; its session is held
    fresh = net.client()  # the app again: a fresh register with the same identity
    (listed,) = fresh.register("Boris", features=CHESS, identity=IDENT_B)["games"]
    assert listed["game"] == game and "adjourned" not in listed
    net.advance(1)
    net.advance(1)
    assert "game_adjourned" not in [f["type"] for f in white.new() + fresh.new()]
    fresh.send(type="game_move", game=game, move="e7e5")
    assert last(white, "game_moved")["san"] == "e5"
