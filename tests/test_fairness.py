"""Fairness: a flood, a heavy replay or a pile of rooms costs its sender, not everyone else.

Behaviour only (benchmarks/fairness_bench.py has the timings): what each side receives,
and in what order, over real sockets.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading

from helpers import LineClient, connect_clients
from PySide6.QtCore import QTimer


def _pings(count: int, prefix: str) -> bytes:
    return b"".join(b'{"type":"ping","token":"%s%d"}\n' % (prefix.encode(), i)
                    for i in range(count))


def _ping_until_answered(qtbot, client: LineClient) -> None:
    """Ping until a pong comes: frames over the rate limit are dropped, not delayed."""
    tokens: list[str] = []

    def answered() -> bool:
        tokens.append(f"late{len(tokens)}")
        client.send({"type": "ping", "token": tokens[-1]})
        return any(f["type"] == "pong" and f.get("token") in tokens for f in client.frames)

    qtbot.waitUntil(answered, timeout=10_000)


def test_a_flood_is_dropped_unparsed_past_the_budget_and_a_bystander_is_answered(
        qtbot, make_server):
    server = make_server(rate_limit=20.0, rate_burst=40)
    flooder, bystander = connect_clients(qtbot, server.port, 2, "flood")
    flooder.send_raw(_pings(20_000, "f"))  # 600 KB in one go
    assert bystander.sync() == []  # answered, whatever the flood still holds
    _ping_until_answered(qtbot, flooder)  # read again once its bucket refills
    pongs = [f for f in flooder.frames if f["type"] == "pong" and f["token"].startswith("f")]
    assert 0 < len(pongs) <= 41 + 20 * 10  # the burst and the rate, not 20,000
    order = [int(f["token"][1:]) for f in pongs]
    assert order[:30] == list(range(30))  # the burst, then some of the rest, in order
    assert order == sorted(order)
    errors = [f for f in flooder.frames if f["type"] == "error"]
    assert errors and {e["code"] for e in errors} == {"rate_limited"}
    assert not flooder.closed


def test_a_flood_of_blank_lines_costs_against_the_budget(qtbot, make_server):
    """Blank keep-alive lines are cheap, not free: 64 of them cost what a frame does, so
    a flood of them cannot make the server spin on nothing."""
    server = make_server(rate_limit=20.0, rate_burst=40)
    (client,) = connect_clients(qtbot, server.port, 1, "blank")
    client.send_raw(b"\n" * 100_000 + _pings(30, "after"))
    error = client.wait_for("error")
    assert error["code"] == "rate_limited"
    _ping_until_answered(qtbot, client)
    pongs = [f for f in client.frames if f["type"] == "pong" and f["token"].startswith("after")]
    assert len(pongs) < 30  # some went with the flood
    assert not client.closed


def test_a_resume_of_thousands_arrives_complete_and_in_order_beside_a_bystander(qtbot,
                                                                                server):
    alice, bob, carol = connect_clients(qtbot, server.port, 3, "replay")
    bob.close()
    alice.wait_for("user_left", name=bob.name)
    since = server.store.last_seq
    count = 6000
    alice.send_raw(b"".join(b'{"type":"broadcast","text":"missed %d"}\n' % i
                            for i in range(count)))
    alice.wait_for("broadcast", text=f"missed {count - 1}", timeout=60_000)
    carol.wait_for("broadcast", text=f"missed {count - 1}", timeout=60_000)
    carol.pos = len(carol.frames)
    back = LineClient(qtbot, server.port)
    back.send_raw(json.dumps({"type": "register", "name": bob.name, "protocol": 1,
                              "resume": bob.session, "since": since}).encode() + b"\n"
                  + b'{"type":"ping","token":"caught-up"}\n')
    back.wait_for("registered")
    assert carol.sync() == []  # answered while the replay runs
    back.wait_for("pong", token="caught-up", timeout=60_000)
    texts = [f["text"] for f in back.frames if f["type"] == "broadcast"]
    assert texts == [f"missed {i}" for i in range(count)]
    carol.wait_for("user_joined", name=bob.name)


def test_registered_lists_a_bounded_number_of_rooms(qtbot, make_server):
    server = make_server(max_rooms_per_user=500)
    (maker,) = connect_clients(qtbot, server.port, 1, "maker")
    frames = []
    for i in range(300):
        frames += [{"type": "join", "room": f"topic{i:03d}"},
                   {"type": "broadcast", "room": f"topic{i:03d}", "text": "kept"}]
    frames += [{"type": "leave", "room": f"topic{i:03d}"} for i in range(150)]
    maker.send_raw(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
    maker.sync(timeout=60_000)
    late = LineClient(qtbot, server.port)
    registered = late.register("Browser")
    assert registered["rooms"][0] == "lobby"  # the user's own rooms first
    assert len(registered["rooms"]) <= 101
    assert registered["rooms_total"] == 301
    assert registered["rooms"][1:51] == [f"topic{i:03d}" for i in range(150, 200)]  # busiest


def test_rooms_kept_are_capped_and_the_longest_idle_one_is_retired(qtbot, make_server):
    server = make_server(max_kept_rooms=3)  # the lobby and two more
    alice, bob = connect_clients(qtbot, server.port, 2, "kept")
    for room in ("first", "second"):
        alice.send({"type": "join", "room": room})
        alice.wait_for("joined", room=room)
        alice.send({"type": "broadcast", "room": room, "text": f"in {room}"})
        alice.wait_for("broadcast", room=room)
        alice.send({"type": "leave", "room": room})
        alice.wait_for("left", room=room)
    bob.send({"type": "join", "room": "third"})  # "first" is idle the longest: it goes
    bob.wait_for("joined", room="third")
    registered = connect_clients(qtbot, server.port, 1, "look")[0].frames[0]
    assert sorted(registered["rooms"]) == ["lobby", "second", "third"]
    alice.send({"type": "join", "room": "second"})  # kept, with its history
    assert [m["text"] for m in alice.wait_for("joined", room="second")["history"]] == \
        ["in second"]
    bob.send({"type": "join", "room": "fourth"})  # every room kept is in use now
    error = bob.wait_for("error")
    assert (error["code"], error["ref"]) == ("too_many_rooms", "join")
    alice.send({"type": "join", "room": "first"})  # made afresh, without its old history
    alice.wait_for("error", code="too_many_rooms")
    bob.send({"type": "leave", "room": "third"})  # nothing said there: gone at once
    bob.wait_for("left", room="third")
    alice.send({"type": "join", "room": "first"})
    assert alice.wait_for("joined", room="first")["history"] == []


def test_an_error_about_a_frame_with_an_id_carries_that_id(qtbot, server):
    """PROTOCOL-FEATURES §0 (Correlation): the error names the frame by its ``id``."""
    (client,) = connect_clients(qtbot, server.port, 1, "corr")
    client.send({"type": "broadcast", "text": " ", "id": "m1"})
    client.send({"type": "history", "room": "lobby", "limit": 999, "id": "h1"})
    client.send({"type": "frobnicate", "id": "u1"})
    client.send({"type": "broadcast", "text": " ", "id": "x" * 65})  # not a valid id
    errors = [f for f in client.sync() if f["type"] == "error"]
    assert [(e["code"], e["ref"], e.get("id")) for e in errors] == [
        ("invalid_text", "broadcast", "m1"), ("bad_frame", "history", "h1"),
        ("unknown_type", "frobnicate", "u1"), ("bad_frame", "broadcast", None)]



def test_errors_from_the_rules_carry_the_frames_id_too(qtbot, server):
    """Not only decoding errors: a refusal by the server's rules names the frame too."""
    (client,) = connect_clients(qtbot, server.port, 1, "rules")
    client.send({"type": "whisper", "to": "nobody", "text": "hi", "id": "w1"})
    client.send({"type": "broadcast", "room": "elsewhere", "text": "hi", "id": "b1"})
    client.send({"type": "broadcast", "room": "elsewhere", "text": "hi"})
    client.send({"type": "history", "room": "elsewhere", "id": "h1"})  # a page waits its turn
    errors = [f for f in client.sync() if f["type"] == "error"]
    assert [(e["code"], e["ref"], e.get("id")) for e in errors] == [
        ("no_such_user", "whisper", "w1"), ("no_such_room", "broadcast", "b1"),
        ("no_such_room", "broadcast", None), ("no_such_room", "history", "h1")]


def test_pages_wait_their_turn_but_answers_keep_the_order_of_the_requests(qtbot, server):
    (pager,) = connect_clients(qtbot, server.port, 1, "pager")
    pager.send_raw(b"".join(b'{"type":"broadcast","text":"%d %s"}\n' % (i, "\N{GRINNING FACE}"
                                                                         .encode() * 3000)
                            for i in range(300)))
    pager.wait_for("broadcast", text=f"299 {chr(0x1F600) * 3000}", timeout=60_000)
    pager.pos = len(pager.frames)
    requests = [{"type": "history", "room": "lobby", "limit": 200, "before": 300 - 20 * i}
                for i in range(10)]
    pager.send_raw(b"".join(json.dumps(r).encode() + b"\n" for r in requests)
                   + b'{"type":"ping","token":"behind"}\n')
    answers = pager.sync()
    assert [f["type"] for f in answers] == ["history"] * 10 + ["pong"]
    for request, answer in zip(requests, answers, strict=False):
        seqs = [m["seq"] for m in answer["messages"]]
        assert seqs and seqs[-1] < request["before"] and seqs == sorted(seqs)
        assert len(json.dumps(answer, ensure_ascii=False).encode()) < 65_536  # what fits


def test_the_budgeted_decoder_charges_before_parsing_and_keeps_the_framing():
    from qtchat import protocol as p

    calls: list[bytes] = []

    def parse(line: bytes) -> bytes:
        calls.append(line)
        return line

    stream = b"".join(b'{"n":%d}\n' % i for i in range(10)) + b"\n" * 128 + b'{"n":"tail"'
    whole = p.FrameDecoder(parse=parse)
    items, left, dropped = whole.feed_budgeted(stream, 1e9)
    assert items == [b'{"n":%d}' % i for i in range(10)] and not dropped
    assert left == 1e9 - 10 - 128 / p.BLANK_LINES_PER_FRAME
    bytewise = p.FrameDecoder(parse=parse)
    got = [item for byte in range(len(stream))
           for item in bytewise.feed_budgeted(stream[byte:byte + 1], 1e9)[0]]
    assert got == items and bytewise.buffered == whole.buffered == len(b'{"n":"tail"')
    calls.clear()
    tight = p.FrameDecoder(parse=parse)
    items, left, dropped = tight.feed_budgeted(stream, 3.5)
    assert items == calls == [b'{"n":0}', b'{"n":1}', b'{"n":2}']  # the rest never parsed
    assert dropped and left == 0.5
    assert tight.feed_budgeted(b"}\n", 1.0)[0] == [b'{"n":"tail"}']  # framing kept
    capped = p.FrameDecoder(parse=parse, max_frame=64)
    items, _left, dropped = capped.feed_budgeted(b"x\n" * 10 + b"y" * 100, 1.0)
    assert dropped and isinstance(items[-1], p.RemoteProtocolError) and capped.closed


def _broadcasts(count: int, prefix: str) -> bytes:
    return b"".join(b'{"type":"broadcast","text":"%s%d"}\n' % (prefix.encode(), i)
                    for i in range(count))


def test_a_flood_with_flood_control_off_is_fed_a_slice_a_pass(qtbot, make_server):
    """20,000 messages in one write, no flood control (the host's choice): the server
    takes them a slice per event-loop pass and sends between slices, instead of a whole
    read (256 KiB, ~7,000 of these) in one pass that sent nobody anything meanwhile.
    Everything arrives, in order."""
    server = make_server(rate_limit=0.0)
    flooder, bystander = connect_clients(qtbot, server.port, 2, "slice")
    count = 20_000
    stored: list[int] = []  # the newest seq, each time the event loop got a turn
    tick = QTimer()
    tick.setInterval(0)
    tick.timeout.connect(lambda: stored.append(server.store.last_seq))
    tick.start()
    flooder.send_raw(_broadcasts(count, "f"))
    bystander.wait_for("broadcast", text=f"f{count - 1}", timeout=60_000)
    tick.stop()
    texts = [f["text"] for f in bystander.frames if f["type"] == "broadcast"]
    assert texts == [f"f{i}" for i in range(count)]
    steps = [b - a for a, b in itertools.pairwise(stored)]
    assert max(steps) <= 1000, max(steps)


def test_a_flood_cut_short_by_its_sender_is_all_handled_before_its_end(qtbot, make_server):
    """A client that writes thousands of messages and closes its side at once: what it
    sent is all handled, in order, before its end is (nothing waits behind the close)."""
    server = make_server(rate_limit=0.0)
    (bystander,) = connect_clients(qtbot, server.port, 1, "end")
    count = 10_000
    done = threading.Event()

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b'{"type":"register","name":"Flood","protocol":1}\n'
                         + _broadcasts(count, "e"))
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):  # read everything the server answers, to its close
                pass
        done.set()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    bystander.wait_for("broadcast", text=f"e{count - 1}", timeout=60_000)
    qtbot.waitUntil(done.is_set, timeout=60_000)
    texts = [f["text"] for f in bystander.frames if f["type"] == "broadcast"]
    assert texts == [f"e{i}" for i in range(count)]
