"""The server core over real sockets on 127.0.0.1: identity, names, deltas, messages, garbage.

Every rule of PROTOCOL.md's framing, identity, client→server and server→client
sections that does not involve rooms, resume or limits (those have their own
files), including the three bugs of the classic Perspective Broker chat this
protocol descends from: a spoofed sender, a whisper to an absent user, and the
wrong user removed on disconnect.
"""

from __future__ import annotations

import base64
import json
import re
import threading

import pytest
from helpers import GARBAGE_LINES, LineClient, SyncClient, connect_clients, run_threads, unique_name

from qtchat import protocol as p
from qtchat.names import parse_name

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# --- register ---------------------------------------------------------------------------------


def test_registered_carries_what_the_protocol_promises(qtbot, server):
    alice = LineClient(qtbot, server.port)
    registered = alice.register("Alice")
    assert registered["type"] == "registered"
    assert registered["name"] == "Alice"
    assert registered["users"] == ["Alice"]
    assert "lobby" in registered["rooms"]
    assert registered["server"]["name"] == "test"
    assert registered["server"]["version"]
    assert registered["server"]["tls"] is False
    assert registered["protocol"] == 1
    assert registered["resumed"] is False
    assert registered["in_rooms"] == ["lobby"]
    secret = base64.urlsafe_b64decode(registered["session"] + "==")
    assert len(secret) * 8 >= 128
    assert server.users() == ["Alice"]
    assert server.client_count == 1


def test_names_are_shown_as_typed_after_nfkc(qtbot, server):
    client = LineClient(qtbot, server.port)
    assert client.register("Ｚｏｅ")["name"] == "Zoe"


@pytest.mark.parametrize(
    ("first", "second"),
    [("Bob", "bob"), ("Bob", "ｂｏｂ"), ("Bob", "BOB"), ("scope", "ѕсоре"), ("ѕсоре", "scope"),
     ("user1", "userl")],
)
def test_colliding_names_get_username_taken_and_may_retry(qtbot, server, first, second):
    holder = LineClient(qtbot, server.port)
    assert holder.register(first)["type"] == "registered"
    other = LineClient(qtbot, server.port)
    taken = other.register(second)
    assert taken == {"type": "username_taken", "name": parse_name(second).display}
    assert not other.closed
    assert other.register("Carol")["type"] == "registered"
    assert holder.wait_for("user_joined")["name"] == "Carol"
    assert server.users() == [holder.name, "Carol"]


def test_two_registrations_of_one_name_racing_exactly_one_wins(qtbot, server):
    first, second = LineClient(qtbot, server.port), LineClient(qtbot, server.port)
    for client in (first, second):
        client.send({"type": "register", "name": "Racer", "protocol": 1})
    answers = sorted(c._answer()["type"] for c in (first, second))
    assert answers == ["registered", "username_taken"]
    assert server.users() == ["Racer"]


@pytest.mark.parametrize("name", ["pаypal", "Ѕcope", "abcαβγ"])
def test_mixed_script_names_are_invalid(qtbot, server, name):
    client = LineClient(qtbot, server.port)
    error = client.register(name)
    assert (error["type"], error["code"], error["ref"]) == ("error", "invalid_name", "register")
    assert "one script" in error["message"]
    assert client.register("fine")["type"] == "registered"


@pytest.mark.parametrize("name", [
    "", "two words", "a" * 33, "😀", "\u200bbob", "a/b", "nul\x00",
    "Za\u0301\u0300\u0302\u0303\u0304",  # 5 accents; NFC makes it á and 4 more
    "Zu\u0308\u0301\u0300\u0302\u0303\u0304",  # 6 accents; NFC makes it ǘ and 4 more
    "\u01d8\u0300\u0302\u0303\u0304",  # ǘ written composed, then 4 more: 6 accents
])
def test_invalid_names_get_invalid_name_and_the_connection_stays(qtbot, server, name):
    client = LineClient(qtbot, server.port)
    error = client.register(name)
    assert (error["type"], error["code"]) == ("error", "invalid_name")
    assert client.register("valid")["type"] == "registered"


@pytest.mark.parametrize("text", [
    "family 👩\u200d👩\u200d👧\u200d👦",  # a ZWJ sequence
    "\u2764\ufe0f",  # a heart with VS16, alone
    "👍🏽",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # a tag sequence
    "漢字とかな、한국어",
    "مرحبا بالعالم",
    "\u200fשלום\u200f",  # RTL marks around Hebrew
    "नमस्ते",
    "col1\tcol2",
    "line one\nline two\r\nline three",
    "Ñandú — “quoted” …",
])
def test_ordinary_text_is_delivered_as_sent(qtbot, server, text):
    sender, watcher = connect_clients(qtbot, server.port, 2, "texter")
    sender.send({"type": "broadcast", "text": text})
    assert watcher.wait_for("broadcast")["text"] == text
    assert sender.sync()[-1]["text"] == text


def test_already_registered(qtbot, server):
    client = LineClient(qtbot, server.port)
    client.register("Once")
    client.send({"type": "register", "name": "Twice", "protocol": 1})
    error = client.wait_for("error")
    assert (error["code"], error["ref"]) == ("already_registered", "register")
    assert server.users() == ["Once"]


def test_protocol_mismatch_keeps_the_connection(qtbot, server):
    client = LineClient(qtbot, server.port)
    error = client.register("Future", protocol=2)
    assert error["code"] == "protocol_mismatch"
    assert client.register("Present")["type"] == "registered"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "broadcast", "text": "hi"},
        {"type": "whisper", "to": "x", "text": "hi"},
        {"type": "join", "room": "games"},
        {"type": "leave", "room": "games"},
        {"type": "history", "room": "lobby"},
        {"type": "broadcast"},  # malformed too: still "register first"
    ],
    ids=lambda f: f["type"] + ("" if len(f) > 1 else "-malformed"),
)
def test_anything_but_register_first_gets_not_registered(qtbot, server, frame):
    watcher = connect_clients(qtbot, server.port, 1)[0]
    client = LineClient(qtbot, server.port)
    client.send(frame)
    error = client.wait_for("error")
    assert (error["code"], error["ref"]) == ("not_registered", frame["type"])
    assert watcher.sync() == []
    assert client.register("Late")["type"] == "registered"


def test_ping_before_register_is_answered(qtbot, server):
    client = LineClient(qtbot, server.port)
    client.send({"type": "ping", "token": "early"})
    assert client.next() == {"type": "pong", "token": "early"}


# --- deltas, never the whole list -------------------------------------------------------------


def test_joins_and_leaves_are_sent_as_deltas(qtbot, server):
    first, second = connect_clients(qtbot, server.port, 2, "delta")
    third = LineClient(qtbot, server.port)
    registered = third.register("Third")
    assert registered["users"] == [first.name, second.name, "Third"]
    for client in (first, second):
        assert client.sync() == [{"type": "user_joined", "name": "Third", "room": "lobby"}]
    third.bye()
    for client in (first, second):
        assert client.sync() == [
            {"type": "user_left", "name": "Third", "room": "lobby", "reason": "quit"}
        ]


def test_news_of_a_join_never_comes_after_what_the_newcomer_says(qtbot, server):
    """Frames to one client keep their order: the news of a join comes before what the
    newcomer says, which comes before the news of its leaving."""
    (first,) = connect_clients(qtbot, server.port, 1, "order")
    talker = LineClient(qtbot, server.port)
    start = first.pos
    talker.send_raw(b'{"type":"register","name":"Talker","protocol":1}\n'
                    b'{"type":"broadcast","text":"hello at once"}\n'
                    b'{"type":"join","room":"Side"}\n'
                    b'{"type":"leave","room":"Side"}\n'
                    b'{"type":"bye"}\n')
    first.wait_for("user_left", name="Talker")
    kinds = [(f["type"], f.get("text") or f.get("reason")) for f in first.frames[start:]
             if f["type"] in ("user_joined", "broadcast", "user_left")]
    assert kinds == [("user_joined", None), ("broadcast", "hello at once"),
                     ("user_left", "quit")]


# --- messages ---------------------------------------------------------------------------------


def test_broadcast_reaches_everyone_and_the_sender_with_a_stored_seq(qtbot, server):
    clients = connect_clients(qtbot, server.port, 3, "bc")
    clients[0].send({"type": "broadcast", "text": "hello, all"})
    copies = [client.wait_for("broadcast") for client in clients]
    first = copies[0]
    assert all(copy == first for copy in copies)
    assert first["from"] == clients[0].name
    assert first["room"] == "lobby"
    assert first["text"] == "hello, all"
    assert isinstance(first["seq"], int) and first["seq"] > 0
    assert TS.fullmatch(first["ts"])
    assert "id" not in first
    assert server.store.page("lobby", None, 10)[-1].seq == first["seq"]


def test_the_senders_copy_alone_carries_its_id(qtbot, server):
    sender, other = connect_clients(qtbot, server.port, 2, "id")
    sender.send({"type": "broadcast", "text": "tagged", "id": "c-42"})
    assert sender.wait_for("broadcast")["id"] == "c-42"
    assert "id" not in other.wait_for("broadcast")


def test_seq_strictly_increases_across_rooms_and_whispers(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "seq")
    alice.send({"type": "join", "room": "side"})
    alice.wait_for("joined")
    frames = [
        {"type": "broadcast", "text": "1"},
        {"type": "whisper", "to": bob.name, "text": "2"},
        {"type": "broadcast", "text": "3", "room": "side"},
        {"type": "broadcast", "text": "4"},
    ]
    for frame in frames:
        alice.send(frame)
    seqs = [alice.wait_for(kind, text=text)["seq"]
            for kind, text in [("broadcast", "1"), ("whisper", "2"), ("broadcast", "3"),
                               ("broadcast", "4")]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_a_spoofed_from_is_ignored(qtbot, server):
    """Seed bug 1: the sender could claim any name."""
    alice, bob = connect_clients(qtbot, server.port, 2, "spoof")
    bob.send({"type": "broadcast", "text": "I am Alice", "from": alice.name})
    assert alice.wait_for("broadcast")["from"] == bob.name
    bob.send({"type": "whisper", "to": alice.name, "text": "really", "from": alice.name})
    assert alice.wait_for("whisper")["from"] == bob.name


def test_whisper_goes_to_the_recipient_and_echoes_to_the_sender_only(qtbot, server):
    alice, bob, carol = connect_clients(qtbot, server.port, 3, "wh")
    alice.send({"type": "whisper", "to": bob.name.upper(), "text": "psst", "id": "w-1"})
    received = bob.wait_for("whisper")
    echo = alice.wait_for("whisper")
    assert received["from"] == alice.name and received["to"] == bob.name
    assert received["text"] == "psst" and "id" not in received
    assert echo["id"] == "w-1"
    assert {k: v for k, v in echo.items() if k != "id"} == received
    assert carol.sync() == []


def test_whisper_to_an_absent_user_is_no_such_user(qtbot, server):
    """Seed bug 2: a whisper to an absent user crashed the server."""
    alice, bob = connect_clients(qtbot, server.port, 2, "absent")
    alice.send({"type": "whisper", "to": "Nobody", "text": "hello?"})
    error = alice.wait_for("error")
    assert (error["code"], error["ref"]) == ("no_such_user", "whisper")
    alice.send({"type": "broadcast", "text": "still here"})
    assert bob.wait_for("broadcast")["text"] == "still here"


def test_whisper_to_a_user_who_quit_is_no_such_user(qtbot, server):
    alice, bob = connect_clients(qtbot, server.port, 2, "quit")
    bob.bye()
    alice.wait_for("user_left", name=bob.name)
    alice.send({"type": "whisper", "to": bob.name, "text": "gone?"})
    assert alice.wait_for("error")["code"] == "no_such_user"


@pytest.mark.parametrize("victim", [0, 1, 2, 3])
def test_a_drop_removes_exactly_the_user_who_dropped(qtbot, server, victim):
    """Seed bug 3: a disconnect removed the wrong user."""
    clients = connect_clients(qtbot, server.port, 4, "drop")
    gone = clients.pop(victim)
    gone.close()  # abort: an unclean drop
    for client in clients:
        left = client.wait_for("user_left")
        assert left == {"type": "user_left", "name": gone.name, "room": "lobby",
                        "reason": "disconnected"}
    assert server.users() == [c.name for c in clients]
    clients[0].send({"type": "broadcast", "text": "after"})
    for client in clients:
        assert client.wait_for("broadcast")["from"] == clients[0].name


def test_bye_removes_the_user_closes_and_frees_the_name(qtbot, server):
    stay, leave = connect_clients(qtbot, server.port, 2, "bye")
    leave.bye()
    assert stay.wait_for("user_left") == {"type": "user_left", "name": leave.name,
                                          "room": "lobby", "reason": "quit"}
    assert server.users() == [stay.name]
    assert LineClient(qtbot, server.port).register(leave.name)["type"] == "registered"


def test_ping_is_answered_with_the_same_token(qtbot, server):
    client = connect_clients(qtbot, server.port, 1)[0]
    client.send({"type": "ping", "token": "abc"})
    assert client.next() == {"type": "pong", "token": "abc"}
    client.send({"type": "ping"})
    assert client.next() == {"type": "pong"}


def test_unknown_type_is_an_error_and_the_connection_stays(qtbot, server):
    client = connect_clients(qtbot, server.port, 1)[0]
    client.send({"type": "dance", "style": "tango"})
    error = client.next()
    assert (error["type"], error["code"], error["ref"]) == ("error", "unknown_type", "dance")
    assert client.sync() == []


# --- garbage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "code"), [(raw, code) for _, raw, code in GARBAGE_LINES],
                         ids=[label for label, _, _ in GARBAGE_LINES])
def test_garbage_gets_an_error_and_the_connection_stays(qtbot, server, raw, code):
    client, watcher = connect_clients(qtbot, server.port, 2, "garbage")
    client.send_raw(raw + b"\n")
    error = client.next()
    assert (error["type"], error["code"]) == ("error", code)
    assert isinstance(error["message"], str) and error["message"]
    assert client.sync() == []
    assert watcher.sync() == []
    client.send({"type": "broadcast", "text": "still fine"})
    assert watcher.wait_for("broadcast")["text"] == "still fine"


def test_frames_split_byte_by_byte_are_reassembled(qtbot, server):
    watcher = connect_clients(qtbot, server.port, 1)[0]
    data = (json.dumps({"type": "register", "name": "Slow", "protocol": 1}) + "\n"
            + json.dumps({"type": "broadcast", "text": "one byte at a time ✓"}) + "\n").encode()
    client = SyncClient(server.port)

    def trickle():
        for index in range(len(data)):
            client.send_raw(data[index:index + 1])
        return client.recv_until("broadcast")[0]

    (echo,) = run_threads(qtbot, [trickle])
    assert echo["text"] == "one byte at a time ✓"
    assert watcher.wait_for("broadcast")["from"] == "Slow"


def test_several_frames_in_one_chunk_are_all_handled_in_order(qtbot, server):
    client = LineClient(qtbot, server.port)
    chunk = b"".join(
        json.dumps(frame).encode() + b"\n"
        for frame in [{"type": "register", "name": "Burst", "protocol": 1},
                      *({"type": "broadcast", "text": f"m{i}"} for i in range(20)),
                      {"type": "ping", "token": "end"}]
    )
    client.send_raw(chunk)
    client.wait_for("pong", token="end")
    texts = [f["text"] for f in client.frames if f["type"] == "broadcast"]
    assert texts == [f"m{i}" for i in range(20)]


def test_a_line_over_64_kib_is_frame_too_large_then_closed(qtbot, server):
    client, watcher = connect_clients(qtbot, server.port, 2, "big")
    client.send_raw(b'{"type":"broadcast","text":"' + b"x" * p.MAX_FRAME_BYTES + b'"}\n')
    client.wait_closed()
    assert client.frames[-1]["type"] == "error"
    assert client.frames[-1]["code"] == "frame_too_large"
    assert watcher.wait_for("user_left")["name"] == client.name


def test_a_10_mb_endless_line_is_cut_off_at_the_cap(qtbot, server):
    client = SyncClient(server.port)
    (registered,) = run_threads(qtbot, [lambda: client.register("Endless")])
    assert registered["type"] == "registered"
    received: list[dict] = []

    def read():
        try:
            while True:
                received.append(client.recv())
        except (ConnectionError, OSError):
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def write():
        sent = 0
        try:
            while sent < 10_000_000:
                client.send_raw(b"A" * 65_536)
                sent += 65_536
        except OSError:
            pass  # the server closed: what it should do
        return sent

    (sent,) = run_threads(qtbot, [write])
    qtbot.waitUntil(lambda: not reader.is_alive(), timeout=30_000)
    assert [f.get("code") for f in received if f["type"] == "error"] == ["frame_too_large"]
    assert sent < 10_000_000  # the server closed long before the end
    assert all(conn.decoder.buffered < p.MAX_FRAME_BYTES for conn in server.core.connections())
    assert "Endless" not in server.users()


# --- scale ------------------------------------------------------------------------------------


def test_200_clients_register_at_once_and_each_receives_every_broadcast(qtbot, server):
    count = 200
    barrier = threading.Barrier(count)
    names = [unique_name("crowd") for _ in range(count)]

    def client_life(index: int):
        client = SyncClient(server.port)
        barrier.wait()
        registered = client.register(names[index])
        assert registered["type"] == "registered", registered
        barrier.wait()  # everyone is in
        client.send({"type": "broadcast", "text": f"from {index}"})
        texts = set()
        whole_lists = 0
        while len(texts) < count:
            frame = client.recv()
            if frame["type"] == "broadcast":
                texts.add(frame["text"])
            elif "users" in frame:
                whole_lists += 1
        client.send({"type": "bye"})
        client.close()
        return texts, whole_lists

    results = run_threads(qtbot, [lambda i=i: client_life(i) for i in range(count)],
                          timeout=90_000)
    expected = {f"from {i}" for i in range(count)}
    for texts, whole_lists in results:
        assert texts == expected
        assert whole_lists == 0


# --- the server's own signals (what the host's window shows) ---------------------------------


def test_signals_for_the_host(qtbot, server):
    with qtbot.waitSignal(server.userJoined) as joined, \
            qtbot.waitSignal(server.clientCountChanged) as counted:
        alice = LineClient(qtbot, server.port)
        alice.register("Alice")
    assert joined.args == ["Alice", "lobby"]
    assert counted.args == [1]
    assert server.client_count == 1
    with qtbot.assertNotEmitted(server.userJoined):
        taken = LineClient(qtbot, server.port)
        assert taken.register("alice")["type"] == "username_taken"
        taken.sync()
    with qtbot.waitSignal(server.messagesPosted) as posted:
        alice.send({"type": "broadcast", "text": "for the log", "id": "private-id"})
    (message,) = posted.args[0]
    assert message.text == "for the log" and message.sender == "Alice"
    assert message.id is None  # the sender's id is for the sender's copy only
    with qtbot.waitSignal(server.userLeft) as left:
        alice.close()
    assert left.args == ["Alice", "lobby", "disconnected"]
    assert server.client_count == 0
