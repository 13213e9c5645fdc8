"""Resume: nothing lost across a network blip, nothing leaked to a later holder of a name."""

from __future__ import annotations

import json
import random
import threading

from helpers import LineClient, ServeProcess, SyncClient, connect_clients, run_threads


def join(client: LineClient, room: str) -> dict:
    client.send({"type": "join", "room": room})
    return client.wait_for("joined")


def last_seq(client: LineClient) -> int:
    return max((f["seq"] for f in client.frames if "seq" in f), default=0)


def resume(qtbot, server, old: LineClient, *, since: int | None = None, name=None,
           **extra) -> tuple[LineClient, dict]:
    client = LineClient(qtbot, server.port)
    fields = {"resume": old.session, **extra}
    if since is not None:
        fields["since"] = since
    return client, client.register(name or old.name, **fields)


def dropped(qtbot, watcher: LineClient, client: LineClient) -> None:
    """Drop ``client`` uncleanly and wait until ``watcher`` hears of it."""
    client.close()
    left = watcher.wait_for("user_left", name=client.name)
    assert left["reason"] == "disconnected"


def test_the_name_is_held_during_grace_after_an_unclean_drop(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "held")
    dropped(qtbot, alice, bob)
    thief = LineClient(qtbot, server.port)
    assert thief.register(bob.name.upper())["type"] == "username_taken"
    assert thief.register(bob.name, resume="not-the-secret")["type"] == "username_taken"
    assert server.users() == [alice.name]


def test_resume_replays_missed_room_messages_and_whispers_in_order_before_live(qtbot, server):
    alice, bob, carol = connect_clients(qtbot, server.port, 3, "rp")
    join(alice, "Side")
    join(bob, "Side")
    join(alice, "Elsewhere")
    bob.send({"type": "broadcast", "text": "seen"})
    since = bob.wait_for("broadcast", text="seen")["seq"]
    dropped(qtbot, alice, bob)

    alice.send({"type": "broadcast", "text": "lobby 1"})
    alice.send({"type": "whisper", "to": bob.name, "text": "whisper to bob"})
    alice.send({"type": "broadcast", "text": "side 1", "room": "Side"})
    alice.send({"type": "broadcast", "text": "not for bob", "room": "Elsewhere"})
    carol.send({"type": "whisper", "to": alice.name, "text": "not about bob"})
    alice.send({"type": "broadcast", "text": "lobby 2"})
    whisper_echo = alice.wait_for("whisper", text="whisper to bob")  # accepted, echoed
    assert whisper_echo["to"] == bob.name
    alice.wait_for("broadcast", text="lobby 2")

    new_bob, registered = resume(qtbot, server, bob, since=since)
    assert registered["resumed"] is True and registered["gap"] is False
    assert registered["name"] == bob.name
    assert registered["session"] == bob.session
    assert registered["in_rooms"] == ["lobby", "Side"]
    assert alice.wait_for("user_joined", name=bob.name)["room"] in ("lobby", "Side")
    alice.send({"type": "broadcast", "text": "live"})
    new_bob.wait_for("broadcast", text="live")
    got = [(f["type"], f["text"]) for f in new_bob.frames[1:]
           if f["type"] in ("broadcast", "whisper")]
    assert got == [("broadcast", "lobby 1"), ("whisper", "whisper to bob"),
                   ("broadcast", "side 1"), ("broadcast", "lobby 2"), ("broadcast", "live")]
    seqs = [f["seq"] for f in new_bob.frames if "seq" in f]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert server.users("Side") == [alice.name, bob.name]


def test_whisper_to_a_held_name_is_kept_and_no_such_user_only_when_not_held(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "keep")
    dropped(qtbot, alice, bob)
    alice.send({"type": "whisper", "to": bob.name, "text": "for later", "id": "k1"})
    assert alice.wait_for("whisper")["id"] == "k1"
    alice.send({"type": "whisper", "to": "NeverWasHere", "text": "?"})
    assert alice.wait_for("error")["code"] == "no_such_user"
    new_bob, registered = resume(qtbot, server, bob)
    assert registered["resumed"] is True
    replayed = new_bob.wait_for("whisper")
    assert replayed["text"] == "for later" and replayed["from"] == alice.name
    assert "id" not in replayed  # only the sender's copy carries its id


def test_the_senders_own_whispers_and_ids_are_replayed_to_it(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "own")
    alice.send({"type": "whisper", "to": bob.name, "text": "mine", "id": "m-1"})
    seq = alice.wait_for("whisper")["seq"]
    new_alice, _ = resume(qtbot, server, alice, since=seq - 1)
    assert new_alice.wait_for("whisper") == {
        "type": "whisper", "seq": seq, "ts": alice.frames[-1]["ts"], "from": alice.name,
        "to": bob.name, "text": "mine", "id": "m-1"}


def test_gap_is_set_when_retention_lost_missed_messages(qtbot, make_server):
    server = make_server(history_retention=5)
    alice, bob = connect_clients(qtbot, server.port, 2, "gap")
    alice.send({"type": "broadcast", "text": "before"})
    since = bob.wait_for("broadcast")["seq"]
    dropped(qtbot, alice, bob)
    texts = [f"missed {i}" for i in range(20)]
    for text in texts:
        alice.send({"type": "broadcast", "text": text})
    alice.wait_for("broadcast", text=texts[-1])
    new_bob, registered = resume(qtbot, server, bob, since=since)
    assert registered["gap"] is True
    alice.send({"type": "broadcast", "text": "live"})
    new_bob.wait_for("broadcast", text="live")
    got = [f["text"] for f in new_bob.frames if f["type"] == "broadcast"]
    assert got == [*texts[-5:], "live"]


def test_no_gap_when_retention_removed_only_what_came_before_since(qtbot, make_server):
    server = make_server(history_retention=5)
    alice, bob = connect_clients(qtbot, server.port, 2, "nogap")
    for i in range(20):
        alice.send({"type": "broadcast", "text": f"old {i}"})
    since = bob.wait_for("broadcast", text="old 19")["seq"]
    dropped(qtbot, alice, bob)
    alice.send({"type": "broadcast", "text": "missed"})
    alice.wait_for("broadcast", text="missed")
    _new_bob, registered = resume(qtbot, server, bob, since=since)
    assert registered["gap"] is False


def test_a_resume_with_an_unknown_session_is_a_plain_registration(qtbot, server):
    client = LineClient(qtbot, server.port)
    registered = client.register("Fresh", resume="made-up-secret", since=0)
    assert registered["resumed"] is False
    assert "gap" not in registered
    assert registered["session"] != "made-up-secret"


def test_a_session_belongs_to_its_name(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "own")
    dropped(qtbot, alice, bob)
    other = LineClient(qtbot, server.port)
    registered = other.register("SomeoneElse", resume=bob.session)
    assert registered["resumed"] is False
    assert registered["session"] != bob.session


def test_client_ids_deduplicate_a_retried_send_across_a_resume(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "dedup")
    bob.send({"type": "broadcast", "text": "only once", "id": "send-1"})
    original = bob.wait_for("broadcast")
    alice.wait_for("broadcast")
    dropped(qtbot, alice, bob)
    new_bob, _ = resume(qtbot, server, bob, since=original["seq"])
    new_bob.send({"type": "broadcast", "text": "only once", "id": "send-1"})
    new_bob.send({"type": "whisper", "to": alice.name, "text": "w", "id": "send-2"})
    new_bob.send({"type": "whisper", "to": alice.name, "text": "w", "id": "send-2"})
    assert new_bob.wait_for("broadcast") == original
    first, second = new_bob.wait_for("whisper"), new_bob.wait_for("whisper")
    assert first == second and first["id"] == "send-2"
    assert [f["text"] for f in alice.sync() if f["type"] in ("broadcast", "whisper")] == ["w"]
    assert sum(1 for m in server.store.page("lobby", None, 100) if m.text == "only once") == 1


def test_resume_without_since_replays_what_the_old_connection_was_not_sent(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "nosince")
    alice.send({"type": "broadcast", "text": "delivered"})
    bob.wait_for("broadcast", text="delivered")
    dropped(qtbot, alice, bob)
    alice.send({"type": "broadcast", "text": "missed"})
    alice.wait_for("broadcast", text="missed")
    new_bob, registered = resume(qtbot, server, bob)
    assert registered["resumed"] is True
    assert [f["text"] for f in new_bob.sync() if f["type"] == "broadcast"] == ["missed"]


def test_resume_replays_nothing_from_before_the_session_began(qtbot, server):
    early = connect_clients(qtbot, server.port, 1, "early")[0]
    for i in range(5):
        early.send({"type": "broadcast", "text": f"before bob {i}"})
    early.wait_for("broadcast", text="before bob 4")
    bob = connect_clients(qtbot, server.port, 1, "newcomer")[0]
    dropped(qtbot, early, bob)
    new_bob, registered = resume(qtbot, server, bob, since=0)
    assert registered["gap"] is False
    assert [f for f in new_bob.sync() if f["type"] == "broadcast"] == []


def test_resume_takes_over_a_connection_the_server_thinks_is_alive(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "takeover")
    new_bob, registered = resume(qtbot, server, bob, since=0)
    assert registered["resumed"] is True
    bob.wait_closed()
    assert alice.wait_for("user_left", name=bob.name)["reason"] == "disconnected"
    assert alice.wait_for("user_joined", name=bob.name)
    assert server.users() == [alice.name, bob.name]
    alice.send({"type": "broadcast", "text": "to the new one"})
    assert new_bob.wait_for("broadcast")["text"] == "to the new one"


def test_a_client_that_drops_during_5000_messages_gets_all_on_resume(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "bulk")
    dropped(qtbot, alice, bob)
    since = server.store.last_seq
    count = 5000
    alice.send_raw(b"".join(
        b'{"type":"broadcast","text":"bulk %d"}\n' % i for i in range(count)))
    alice.wait_for("broadcast", text=f"bulk {count - 1}", timeout=60_000)
    new_bob, registered = resume(qtbot, server, bob, since=since)
    assert registered["resumed"] is True and registered["gap"] is False
    qtbot.waitUntil(lambda: sum(f["type"] == "broadcast" for f in new_bob.frames) >= count,
                    timeout=60_000)
    alice.send({"type": "broadcast", "text": "live after"})
    new_bob.wait_for("broadcast", text="live after")
    texts = [f["text"] for f in new_bob.frames if f["type"] == "broadcast"]
    assert texts == [f"bulk {i}" for i in range(count)] + ["live after"]
    seqs = [f["seq"] for f in new_bob.frames if f["type"] == "broadcast"]
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)
    assert new_bob.sync() == []
    assert not new_bob.closed


def test_ten_senders_while_a_client_drops_and_resumes_at_random_points(qtbot, server):
    senders, per_sender = 10, 500
    total = senders * per_sender
    rng = random.Random(20240611)
    drop_points = sorted(rng.sample(range(50, total - 50), 10))
    receiver = SyncClient(server.port)
    (registered,) = run_threads(qtbot, [lambda: receiver.register("Receiver")])
    assert registered["type"] == "registered"
    start_seq = server.store.last_seq
    go = threading.Event()

    def send(index: int):
        client = SyncClient(server.port)
        assert client.register(f"sender{index}")["type"] == "registered"
        go.wait(30)
        for n in range(per_sender):
            client.send({"type": "broadcast", "text": f"s{index} n{n}"})
            if n % 50 == 49:
                client.sync()  # keep the sender's own inbox drained
        client.sync()
        client.send({"type": "bye"})
        return index

    def receive():
        nonlocal receiver
        seqs: list[int] = []
        points = list(drop_points)
        session = receiver.session
        go.set()
        client = receiver
        while len(seqs) < total:
            frame = client.recv()
            if frame["type"] != "broadcast" or frame["from"] == "Receiver":
                continue
            seqs.append(frame["seq"])
            if points and len(seqs) >= points[0]:
                points.pop(0)
                client.reset()
                client = SyncClient(server.port)
                answer = client.register("Receiver", resume=session, since=seqs[-1])
                assert answer["type"] == "registered" and answer["resumed"], answer
        client.send({"type": "bye"})
        return seqs

    results = run_threads(qtbot, [receive, *(lambda i=i: send(i) for i in range(senders))],
                          timeout=110_000)
    seqs = results[0]
    stored = [m.seq for m in server.store.page("lobby", None, 100_000)
              if m.seq > start_seq and m.sender != "Receiver"]
    assert len(stored) == total
    assert seqs == stored  # in order, none missing, none twice


# --- across a crash of the server process ---------------------------------------------------


def test_sigkill_restart_keeps_seq_history_and_sessions(tmp_path):
    data_dir = tmp_path / "data"
    with ServeProcess(data_dir) as first:
        alice, bob = SyncClient(first.port), SyncClient(first.port)
        assert alice.register("Alice")["type"] == "registered"
        assert bob.register("Bob")["type"] == "registered"
        bob.sync()
        for i in range(10):
            alice.send({"type": "broadcast", "text": f"before crash {i}"})
        last, _ = bob.recv_until("broadcast", text="before crash 9")
        first.kill()
    with ServeProcess(data_dir) as second:
        carol = SyncClient(second.port)
        assert carol.register("Bob")["type"] == "username_taken"  # held across the restart
        assert carol.register("Carol")["type"] == "registered"
        carol.send({"type": "history", "room": "lobby"})
        history, _ = carol.recv_until("history")
        assert [m["text"] for m in history["messages"]] == [f"before crash {i}"
                                                             for i in range(10)]
        assert history["messages"][-1]["seq"] == last["seq"]
        carol.send({"type": "broadcast", "text": "after restart"})
        after, _ = carol.recv_until("broadcast")
        assert after["seq"] > last["seq"]
        new_bob = SyncClient(second.port)
        answer = new_bob.register("Bob", resume=bob.session, since=last["seq"])
        assert answer["resumed"] is True and answer["gap"] is False
        replayed, _ = new_bob.recv_until("broadcast")
        assert replayed == after
        assert new_bob.sync() == []
        assert second.terminate() == 0


def test_frames_sent_during_a_long_replay_keep_everything_in_order(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "during")
    join(alice, "Late")
    alice.sync()
    dropped(qtbot, alice, bob)
    since = server.store.last_seq
    count = 3000  # more than one replay budget: the replay is still running below
    alice.send_raw(b"".join(
        b'{"type":"broadcast","text":"backlog %d"}\n' % i for i in range(count)))
    alice.wait_for("broadcast", text=f"backlog {count - 1}", timeout=60_000)
    alice.pos = len(alice.frames)
    new_bob = LineClient(qtbot, server.port)
    new_bob.send_raw(b"".join(json.dumps(frame).encode() + b"\n" for frame in [
        {"type": "register", "name": bob.name, "protocol": 1, "resume": bob.session,
         "since": since},
        {"type": "join", "room": "Late"},
        {"type": "broadcast", "room": "Late", "text": "hi from the replay", "id": "r1"},
        {"type": "whisper", "to": alice.name, "text": "psst from the replay"},
    ]))
    mine = new_bob.wait_for("broadcast", text="hi from the replay", timeout=60_000)
    assert mine["id"] == "r1"
    new_bob.wait_for("whisper", text="psst from the replay")
    alice.send({"type": "broadcast", "text": "live", "room": "Late"})
    new_bob.wait_for("broadcast", text="live")
    seqs = [f["seq"] for f in new_bob.frames if f["type"] in ("broadcast", "whisper")]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) == count + 3
    assert sum(f["type"] == "joined" for f in new_bob.frames) == 1
    # Bob's frames waited for his replay: his joined comes after everything he missed.
    kinds = [f["type"] for f in new_bob.frames]
    assert kinds.index("joined") > max(i for i, f in enumerate(new_bob.frames)
                                       if f.get("text", "").startswith("backlog"))
    # Alice saw Bob come back in each room first, and only then his messages.
    seen = [(f["type"], f.get("room"), f.get("text")) for f in alice.sync()
            if f["type"] != "broadcast" or f["text"] != "live"]
    assert seen == [("user_joined", "lobby", None), ("user_joined", "Late", None),
                    ("broadcast", "Late", "hi from the replay"),
                    ("whisper", None, "psst from the replay")]
    assert server.users("Late") == [alice.name, bob.name]
