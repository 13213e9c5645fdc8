"""Rooms and persistent history: membership, confinement, paging, retention, restarts."""

from __future__ import annotations

import re
import sqlite3

import pytest
from helpers import LineClient, connect_clients

from qtchat import protocol as p

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def join(client: LineClient, room: str) -> dict:
    client.send({"type": "join", "room": room})
    return client.wait_for("joined")


def post(client: LineClient, texts, room: str = "lobby") -> list[dict]:
    """Send broadcasts and return the sender's copies."""
    texts = list(texts)
    for text in texts:
        client.send({"type": "broadcast", "text": text, "room": room})
    return [client.wait_for("broadcast", text=text) for text in texts]


def test_everyone_is_in_the_lobby(qtbot, server):
    first, second = connect_clients(qtbot, server.port, 2, "lobby")
    assert server.users("lobby") == [first.name, second.name]
    assert first.frames[0]["in_rooms"] == ["lobby"]


def test_join_creates_a_room_and_announces_only_inside_it(qtbot, server):
    alice, bob, carol = connect_clients(qtbot, server.port, 3, "room")
    joined = join(alice, "Games")
    assert joined == {"type": "joined", "room": "Games", "users": [alice.name], "history": []}
    joined = join(bob, "games")  # compared folded, shown as first created
    assert joined["room"] == "Games"
    assert joined["users"] == [alice.name, bob.name]
    assert alice.sync() == [{"type": "user_joined", "name": bob.name, "room": "Games"}]
    assert carol.sync() == []  # not in Games: hears nothing of it
    assert server.users("Games") == [alice.name, bob.name]
    assert server.users("lobby") == [alice.name, bob.name, carol.name]
    late = LineClient(qtbot, server.port)
    assert "Games" in late.register("Late")["rooms"]


def test_joining_a_room_again_resends_joined_without_announcing(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "again")
    join(alice, "Again")
    join(bob, "Again")
    alice.sync()
    assert join(bob, "AGAIN")["users"] == [alice.name, bob.name]
    assert alice.sync() == []


def test_broadcasts_are_confined_to_their_room(qtbot, server):
    alice, bob, carol = connect_clients(qtbot, server.port, 3, "conf")
    join(alice, "Side")
    join(bob, "Side")
    (sent,) = post(alice, ["side talk"], room="side")
    assert sent["room"] == "Side"
    assert bob.wait_for("broadcast") == sent
    assert carol.sync() == []


def test_not_in_room_and_no_such_room(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "nir")
    join(alice, "Private")
    bob.send({"type": "broadcast", "text": "let me in", "room": "Private"})
    error = bob.wait_for("error")
    assert (error["code"], error["ref"]) == ("not_in_room", "broadcast")
    bob.send({"type": "broadcast", "text": "hello?", "room": "Nowhere"})
    assert bob.wait_for("error")["code"] == "no_such_room"
    bob.send({"type": "history", "room": "Private"})
    assert bob.wait_for("error")["code"] == "not_in_room"
    bob.send({"type": "history", "room": "Nowhere"})
    assert bob.wait_for("error")["code"] == "no_such_room"
    bob.send({"type": "leave", "room": "Private"})
    assert bob.wait_for("error")["code"] == "not_in_room"
    bob.send({"type": "leave", "room": "Nowhere"})
    assert bob.wait_for("error")["code"] == "no_such_room"
    assert alice.sync() == []


def test_leave_announces_to_the_room_only(qtbot, server):
    alice, bob, carol = connect_clients(qtbot, server.port, 3, "leave")
    join(alice, "Club")
    join(bob, "Club")
    alice.sync()
    bob.send({"type": "leave", "room": "club"})
    assert bob.wait_for("left") == {"type": "left", "room": "Club"}
    assert alice.sync() == [{"type": "user_left", "name": bob.name, "room": "Club",
                             "reason": "left"}]
    assert carol.sync() == []
    assert server.users("Club") == [alice.name]
    alice.send({"type": "broadcast", "text": "bob is gone", "room": "Club"})
    alice.wait_for("broadcast")
    assert bob.sync() == []
    bob.send({"type": "leave", "room": "Club"})
    assert bob.wait_for("error")["code"] == "not_in_room"


def test_the_lobby_cannot_be_left(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "stay")
    alice.send({"type": "leave", "room": "Lobby"})
    error = alice.wait_for("error")
    assert (error["code"], error["ref"]) == ("not_in_room", "leave")
    assert "lobby" in error["message"]
    assert server.users("lobby") == [alice.name, bob.name]
    assert bob.sync() == []


def test_invalid_room_names(qtbot, server):
    client = connect_clients(qtbot, server.port, 1)[0]
    for bad in ("two words", "", "x" * 33, "pаypal"):
        client.send({"type": "join", "room": bad})
        assert client.wait_for("error")["code"] == "invalid_name"


def test_a_drop_leaves_every_room_of_the_user(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "rooms")
    join(alice, "One")
    join(alice, "Two")
    join(bob, "One")
    join(bob, "Two")
    alice.sync()
    bob.close()
    lefts = {(f["room"], f["reason"]) for f in
             (alice.wait_for("user_left"), alice.wait_for("user_left"),
              alice.wait_for("user_left"))}
    assert lefts == {("lobby", "disconnected"), ("One", "disconnected"),
                     ("Two", "disconnected")}
    assert server.users("One") == server.users("Two") == [alice.name]


# --- history ----------------------------------------------------------------------------------


def test_joined_carries_the_last_50_messages_oldest_first(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "hist")
    join(alice, "Log")
    sent = post(alice, [f"line {i}" for i in range(60)], room="Log")
    joined = join(bob, "Log")
    assert joined["history"] == sent[-50:]
    for message in joined["history"]:
        assert TS.fullmatch(message["ts"])
        assert "id" not in message


def test_history_pages_backwards_with_before_and_limit(qtbot, server):
    client = connect_clients(qtbot, server.port, 1)[0]
    sent = post(client, [f"page {i}" for i in range(30)])
    client.send({"type": "history", "room": "lobby", "limit": 10})
    newest = client.wait_for("history")
    assert newest["room"] == "lobby"
    assert newest["messages"] == sent[-10:]
    client.send({"type": "history", "room": "lobby", "limit": 10,
                 "before": newest["messages"][0]["seq"]})
    assert client.wait_for("history")["messages"] == sent[-20:-10]
    client.send({"type": "history", "room": "lobby", "before": sent[3]["seq"]})
    assert client.wait_for("history")["messages"] == sent[:3]
    client.send({"type": "history", "room": "lobby", "before": sent[0]["seq"]})
    assert client.wait_for("history")["messages"] == []
    client.send({"type": "history", "room": "lobby"})  # default limit 50
    assert client.wait_for("history")["messages"] == sent


def test_retention_keeps_the_newest_messages_of_each_room(qtbot, make_server):
    server = make_server(history_retention=5)
    alice = connect_clients(qtbot, server.port, 1)[0]
    join(alice, "Busy")
    post(alice, ["quiet 1", "quiet 2"])
    busy = post(alice, [f"busy {i}" for i in range(40)], room="Busy")
    alice.send({"type": "history", "room": "Busy", "limit": 200})
    assert alice.wait_for("history")["messages"] == busy[-5:]
    alice.send({"type": "history", "room": "lobby", "limit": 200})
    assert [m["text"] for m in alice.wait_for("history")["messages"]] == ["quiet 1", "quiet 2"]


def test_seq_and_history_survive_a_restart_and_are_never_reused(qtbot, make_server, tmp_path):
    first = make_server(history_retention=5)
    client = connect_clients(qtbot, first.port, 1)[0]
    before = post(client, [f"old {i}" for i in range(12)])
    first.stop()
    first.close_store()
    client.wait_closed()

    second = make_server(history_retention=5)
    client = connect_clients(qtbot, second.port, 1)[0]
    client.send({"type": "history", "room": "lobby"})
    assert client.wait_for("history")["messages"] == before[-5:]
    after = post(client, ["new"])
    assert after[0]["seq"] == before[-1]["seq"] + 1


def test_history_is_sqlite_wal_in_the_data_dir(qtbot, make_server, tmp_path):
    server = make_server()
    client = connect_clients(qtbot, server.port, 1)[0]
    post(client, ["persist me"])
    database = tmp_path / "data" / "history.sqlite3"
    assert database.exists()
    assert (tmp_path / "data" / "history.sqlite3-wal").exists()
    server.stop()
    server.close_store()
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute("SELECT text FROM messages").fetchall()
    assert rows == [("persist me",)]


def test_a_second_server_on_the_same_data_dir_is_refused(qtbot, make_server):
    from qtchat.server.chat_server import ServerError

    make_server()
    with pytest.raises(ServerError, match="in use by another qtchat server"):
        make_server()


def test_the_log_is_copied_into_the_history_beside_the_server_not_in_its_commits(tmp_path):
    """Checkpoints run in the store's own thread: a commit never copies the log into
    the database (SQLite's automatic checkpoint did, every ~1,000 pages, pausing the
    room 60-170 ms); the checkpointer does soon after, and a burst's long log is cut
    back once it is copied."""
    import time

    from qtchat.server import store as store_module

    path = tmp_path / "history.sqlite3"
    store = store_module.MessageStore(path)
    try:
        before = path.stat().st_size
        text = "x" * 1000
        for batch in range(8):  # ~8 MB of log: 2,000 pages, twice SQLite's default cue
            for number in range(1000):
                store.add(ts="2026-12-03T00:00:00.000Z", bucket="lobby", room="lobby",
                          sender="Alice", sender_sid=1, text=f"{batch}.{number} {text}")
            store.commit()
        deadline = time.monotonic() + 30
        while path.stat().st_size < before + 8_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= before + 8_000_000, "the log was never copied"
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        store.close()
    assert not path.with_name(path.name + "-wal").exists()  # the last close removes it
    reopened = store_module.MessageStore(path)  # the folder's lock was let go
    try:
        assert reopened.last_seq == 8000
    finally:
        reopened.close()


def test_a_long_log_starts_over_while_messages_keep_coming(tmp_path, monkeypatch):
    """The writer always holds a snapshot (a transaction is open between passes), and
    SQLite rewinds the log only for a writer whose snapshot began after everything was
    copied: without the store's catch-up the log grew by every message for as long as
    the room never paused (723 MiB in 12 s of a tight loop)."""
    from qtchat.server import store as store_module

    monkeypatch.setattr(store_module, "WAL_SIZE_LIMIT", 1 << 20)
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 0.05)  # this loop writes fast
    path = tmp_path / "history.sqlite3"
    wal = path.with_name(path.name + "-wal")
    store = store_module.MessageStore(path, retention=1000)
    largest = 0
    try:
        text = "y" * 3000
        for number in range(20_000):  # ~60 MiB of log in all, never a pause
            store.add(ts="2026-12-03T00:00:00.000Z", bucket="lobby", room="lobby",
                      sender="Alice", sender_sid=1, text=f"{number} {text}")
            if number % 20 == 19:  # a pass: its messages committed, then a read
                store.commit()
                store.page("lobby", None, 50)
                largest = max(largest, wal.stat().st_size)
        assert store.last_seq == 20_000
    finally:
        store.close()
    # (~60 MiB written; 158 MiB of log without the catch-up, 17 with it)
    assert largest < 40 << 20, f"the log grew to {largest / 2**20:.0f} MiB"
    reopened = store_module.MessageStore(path, retention=1000)
    try:
        newest = reopened.page("lobby", None, 1)
        assert [m.text.split()[0] for m in newest] == ["19999"]
    finally:
        reopened.close()


# --- frames that would not fit ---------------------------------------------------------------


def test_joined_history_is_trimmed_to_fit_a_frame_keeping_the_newest(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "fat")
    join(alice, "Fat")
    sent = post(alice, [f"{i:02d}" + "界" * 3990 for i in range(50)], room="Fat")
    alice.frames.clear()
    alice.pos = 0
    joined = join(bob, "Fat")
    history = joined["history"]
    assert 0 < len(history) < 50
    assert history == sent[-len(history):]
    bob.send({"type": "history", "room": "Fat", "limit": 200})
    assert bob.wait_for("history")["messages"] == sent[-len(history):]


def test_thousands_of_rooms_do_not_break_registration(qtbot, make_server):
    server = make_server(max_rooms_per_user=5000)
    creator = connect_clients(qtbot, server.port, 1)[0]
    names = [f"room{i:05d}" + "r" * 23 for i in range(2200)]  # 32 characters each
    for name in names:
        creator.send({"type": "join", "room": name})
    creator.sync(timeout=60_000)
    late = LineClient(qtbot, server.port)
    registered = late.register("Latecomer")
    assert registered["type"] == "registered"
    assert registered["in_rooms"] == ["lobby"]
    assert registered["rooms"][0] == "lobby"  # the user's own rooms are kept first
    assert len(registered["rooms"]) == 101  # own rooms, then at most 100 others
    assert registered["rooms_total"] == 2201


def test_lobby_members_that_do_not_fit_follow_as_user_joined(qtbot, server, monkeypatch):
    monkeypatch.setattr(p, "MAX_FRAME_BYTES", 1024)  # what the server may send
    crowd = connect_clients(qtbot, server.port, 40, "member" + "m" * 20)
    late = LineClient(qtbot, server.port)
    registered = late.register("Late")
    assert registered["type"] == "registered"
    assert len(registered["users"]) < 41
    following = late.sync()
    assert all(f["type"] == "user_joined" and f["room"] == "lobby" for f in following)
    everyone = registered["users"] + [f["name"] for f in following]
    assert sorted(everyone) == sorted([c.name for c in crowd] + ["Late"])
    join(crowd[0], "Crowd")
    for client in crowd[1:]:
        join(client, "Crowd")
    joined = join(late, "Crowd")
    members = joined["users"] + [f["name"] for f in late.sync()]
    assert sorted(members) == sorted([c.name for c in crowd] + ["Late"])


def test_rooms_per_person_and_per_server_are_capped(qtbot, make_server):
    server = make_server(max_rooms_per_user=3, max_rooms=5)  # the lobby counts in both
    alice, bob, carol = connect_clients(qtbot, server.port, 3, "capped")
    for room in ("one", "two"):
        alice.send({"type": "join", "room": room})
        alice.wait_for("joined", room=room)
    alice.send({"type": "join", "room": "three"})
    error = alice.wait_for("error")
    assert (error["code"], error["ref"]) == ("too_many_rooms", "join")
    assert "leave one first" in error["message"]
    for room in ("three", "four"):  # now the server holds five rooms
        bob.send({"type": "join", "room": room})
        bob.wait_for("joined", room=room)
    carol.send({"type": "join", "room": "five"})
    error = carol.wait_for("error")
    assert error["code"] == "too_many_rooms"
    assert "join one of them" in error["message"]
    carol.send({"type": "join", "room": "one"})  # an existing room is still open to join
    assert carol.wait_for("joined", room="one")["users"] == [alice.name, carol.name]
    bob.send({"type": "leave", "room": "four"})  # empty, and nothing was said in it: gone
    bob.wait_for("left", room="four")
    carol.send({"type": "join", "room": "five"})
    assert carol.wait_for("joined", room="five")["users"] == [carol.name]


def test_joining_and_leaving_made_up_rooms_uses_up_nothing(qtbot, make_server):
    """One person cannot fill the server's room limit for everyone by joining and
    leaving rooms; a room that was spoken in stays, with its history, and counts only
    while someone is in it."""
    server = make_server(max_rooms=3, max_rooms_per_user=3)
    alice, bob = connect_clients(qtbot, server.port, 2, "churn")
    for i in range(20):
        alice.send({"type": "join", "room": f"junk{i}"})
        alice.wait_for("joined", room=f"junk{i}")
        alice.send({"type": "leave", "room": f"junk{i}"})
        alice.wait_for("left", room=f"junk{i}")
    assert alice.sync() == []
    join(alice, "Kept")
    alice.send({"type": "broadcast", "room": "Kept", "text": "remember me"})
    alice.wait_for("broadcast", room="Kept")
    alice.send({"type": "leave", "room": "Kept"})
    alice.wait_for("left", room="Kept")
    for room in ("team", "other"):  # the lobby and these two: the cap of three
        bob.send({"type": "join", "room": room})
        bob.wait_for("joined", room=room)
    fresh = connect_clients(qtbot, server.port, 1, "late")[0]
    registered = next(f for f in fresh.frames if f["type"] == "registered")
    assert "Kept" in registered["rooms"]
    assert not [room for room in registered["rooms"] if room.startswith("junk")]
    fresh.send({"type": "join", "room": "Kept"})  # spoken in, so still there, history too
    error = fresh.wait_for("error")
    assert error["code"] == "too_many_rooms"  # ... but it would be a fourth room in use
    bob.send({"type": "leave", "room": "other"})
    bob.wait_for("left", room="other")
    fresh.send({"type": "join", "room": "Kept"})
    joined = fresh.wait_for("joined", room="Kept")
    assert [m["text"] for m in joined["history"]] == ["remember me"]


@pytest.mark.parametrize("text", ["\N{GRINNING FACE}" * 4000, "w" * 3000, "short"])
def test_a_page_too_large_keeps_the_newest_messages_that_fit_and_no_fewer(text):
    """The `joined`/`history` answer is one frame: the newest messages that fit, as
    many as fit (one more would not), the rest left out for `history {before}`."""
    from qtchat import protocol as p
    from qtchat.protocol.server_frames import Joined, Message
    from qtchat.server.features.base import encode_trimmed, texts_exceed_a_frame

    messages = [Message(seq=i, ts="2026-11-24T22:00:00.000Z", room="lobby", sender="someone",
                        text=f"{i} {text}") for i in range(1, 201)]
    history = [m.to_wire() for m in messages]
    users = [f"user{i}" for i in range(50)]
    data, cut = encode_trimmed(Joined(room="lobby", users=users, history=messages).to_wire(),
                               ("history", True), ("users", False),
                               surely_too_large=texts_exceed_a_frame(messages))
    assert len(data) <= p.MAX_FRAME_BYTES
    frame = p.parse_server_frame(data.rstrip(b"\n"))
    kept = frame["history"]
    assert kept == history[len(history) - len(kept):]  # the newest, in order
    assert cut.get("history", []) == history[:len(history) - len(kept)]
    assert frame["users"] == users and "users" not in cut
    if cut.get("history"):  # one more would not have fitted
        more = {**frame, "history": history[len(history) - len(kept) - 1:]}
        assert not _fits(more)


def _fits(frame) -> bool:
    from qtchat import protocol as p
    try:
        p.encode(frame)
    except p.LocalProtocolError:
        return False
    return True


def test_after_a_restart_rooms_spoken_in_stay_and_empty_silent_ones_go(qtbot, make_server,
                                                                        tmp_path):
    from qtchat.server.store import MessageStore

    data = tmp_path / "old-data"
    data.mkdir()
    store = MessageStore(data / "history.sqlite3")  # as an older qtchat left it:
    store.save_room("silent", "Silent")  # a room nobody is in, where nothing was said
    store.save_room("spoken", "Spoken")
    store.add(ts="2026-11-24T22:00:00.000Z", bucket="spoken", room="Spoken", sender="Ann",
              sender_sid=1, text="still here")
    store.close()
    server = make_server(data_dir=data)
    (client,) = connect_clients(qtbot, server.port, 1, "after")
    registered = next(f for f in client.frames if f["type"] == "registered")
    assert "Spoken" in registered["rooms"] and "Silent" not in registered["rooms"]
    joined = join(client, "Spoken")
    assert [m["text"] for m in joined["history"]] == ["still here"]
