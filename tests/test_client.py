"""ChatClient against a real ChatServer over real sockets on 127.0.0.1.

Every test runs an in-process host on a free port and drives clients the way the
app does, through their public API and signals. What a network does to a
connection is done to the server's side of it (the socket is aborted), so the
client sees a real drop and must resume: nothing lost, nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _scripted_host import ScriptedHost, registered

from qtchat.client.chat_client import ChatClient, ConnectError, Endpoint
from qtchat.protocol.server_frames import Message
from qtchat.server.chat_server import ChatServer, ServerConfig

pytest_plugins = ("_qasync_loop",)

WAIT = 5000  # ms; every wait ends far sooner unless something is broken


# --- fixtures and helpers -----------------------------------------------------------------


def host_config(data_dir: Path, port: int = 0, **overrides: Any) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=port, data_dir=data_dir, **overrides)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChatServer]:
    host = ChatServer(host_config(tmp_path / "host"))
    host.start()
    yield host
    host.stop()
    host.close_store()


def endpoint(server: ChatServer | ScriptedHost) -> Endpoint:
    return Endpoint("127.0.0.1", server.port)


def join(qtbot, client: ChatClient, where: ChatServer | ScriptedHost, name: str) -> dict:
    with qtbot.waitSignal(client.registered, timeout=WAIT) as blocker:
        client.open(endpoint(where), name)
    return blocker.args[0]


def round_trip(qtbot, client: ChatClient) -> None:
    """Ping and wait for the pong: everything the server sent before it has arrived."""
    sent: list[str] = []
    with qtbot.waitSignal(client.pongReceived, timeout=WAIT,
                          check_params_cb=lambda token: token in sent):
        sent.append(client.ping())


def cut(server: ChatServer, name: str) -> None:
    """A network blip: the server's side of ``name``'s connection dies without a word."""
    assert server.drop_connection(name)


def held_names(server: ChatServer) -> set[str]:
    """Names the server keeps (connected, or within their resume grace)."""
    return set(server.held_names())


class Inbox:
    """Everything one client's messageReceived delivered, in order."""

    def __init__(self, client: ChatClient) -> None:
        self.frames: list[Message] = []
        client.messageReceived.connect(self.frames.append)

    def texts(self) -> list[str]:
        return [frame.text for frame in self.frames]

    def count(self, text: str) -> int:
        return self.texts().count(text)


def record(signal) -> list[tuple]:
    """The arguments of every emission of ``signal`` from now on."""
    calls: list[tuple] = []
    signal.connect(lambda *args: calls.append(args))
    return calls


def has_text(text: str) -> Callable[[Message], bool]:
    return lambda frame: frame.text == text


@pytest.fixture
def pair(qtbot, server, make_client) -> tuple[ChatClient, ChatClient]:
    alice, bob = make_client(), make_client()
    join(qtbot, alice, server, "alice")
    join(qtbot, bob, server, "bob")
    return alice, bob


# --- joining ------------------------------------------------------------------------------


def test_connect_and_register(qtbot, server, make_client):
    client = make_client()
    states: list[str] = []
    client.stateChanged.connect(states.append)
    frame = join(qtbot, client, server, "Alice")
    assert frame.name == "Alice"
    assert frame.resumed is False
    assert "Alice" in frame.users
    assert len(frame.session) >= 22  # ≥ 128 bits, URL-safe base64
    assert states == ["connecting", "connected"]
    assert client.connected and client.session == frame.session
    assert server.users() == ["Alice"]


def test_username_taken_then_another_name_on_the_same_connection(qtbot, server, make_client):
    join(qtbot, make_client(), server, "alice")
    client = make_client()
    states: list[str] = []
    client.stateChanged.connect(states.append)
    with qtbot.waitSignal(client.usernameTaken, timeout=WAIT) as taken:
        client.open(endpoint(server), "ALICE")  # folded form collides
    assert taken.args == ["ALICE"]
    assert not client.connected

    # An invalid name is refused on the spot, and the connection still stays.
    with qtbot.waitSignal(client.connectFailed, timeout=WAIT) as failed:
        client.register("no spaces allowed")
    assert failed.args[0].kind == "invalid_name"

    with qtbot.assertNotEmitted(client.connectFailed), \
            qtbot.waitSignal(client.registered, timeout=WAIT) as accepted:
        client.register("bob")
    assert accepted.args[0].name == "bob"
    assert states == ["connecting", "connected"]  # never dropped in between
    assert sorted(server.users()) == ["alice", "bob"]


def test_an_invalid_name_fails_before_connecting(qtbot, server, make_client):
    client = make_client()
    with qtbot.waitSignal(client.connectFailed, timeout=WAIT) as failed:
        client.open(endpoint(server), "two words")
    error = failed.args[0]
    assert isinstance(error, ConnectError) and error.kind == "invalid_name"
    assert endpoint(server).address in str(error)
    assert client.state == "disconnected"


def test_connect_async_returns_registered_or_raises(server, make_client, arun):
    frame = arun(make_client().connect_async(endpoint(server), "alice"))
    assert frame.name == "alice"
    with pytest.raises(ConnectError) as taken:
        arun(make_client().connect_async(endpoint(server), "Alice"))
    assert taken.value.kind == "username_taken"
    assert endpoint(server).address in str(taken.value) and "another name" in str(taken.value)


# --- messages -----------------------------------------------------------------------------


def test_broadcast_round_trip(qtbot, pair):
    alice, bob = pair
    alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
    confirmed = record(alice.sendConfirmed)
    with qtbot.waitSignals([alice.sendConfirmed, bob.messageReceived], timeout=WAIT):
        message_id = alice.send_broadcast("hello, room")
    [(confirmed_id, stored)] = confirmed
    assert confirmed_id == message_id
    assert stored.id == message_id and stored.sender == "alice"
    assert stored.room == "lobby" and isinstance(stored.seq, int)
    round_trip(qtbot, alice)
    round_trip(qtbot, bob)
    assert alice_inbox.frames == [stored]  # the sender's copy, once
    assert bob_inbox.count("hello, room") == 1
    received = bob_inbox.frames[0]
    assert received.seq == stored.seq and received.id is None  # ids are the sender's
    assert alice.pending_ids == []


def test_whisper_round_trip(qtbot, pair, server, make_client):
    alice, bob = pair
    carol = make_client()
    join(qtbot, carol, server, "carol")
    alice_inbox, bob_inbox, carol_inbox = Inbox(alice), Inbox(bob), Inbox(carol)
    confirmed = record(alice.sendConfirmed)
    with qtbot.waitSignals([alice.sendConfirmed, bob.messageReceived], timeout=WAIT):
        message_id = alice.send_whisper("Bob", "just between us")
    assert [args[0] for args in confirmed] == [message_id]
    for client in (alice, bob, carol):
        round_trip(qtbot, client)
    [mine] = alice_inbox.frames
    [theirs] = bob_inbox.frames
    assert mine.type == theirs.type == "whisper"
    assert (theirs.sender, theirs.to, theirs.text) == ("alice", "bob", "just between us")
    assert mine.seq == theirs.seq and mine.id == message_id
    assert carol_inbox.frames == []


def test_duplicates_are_dropped_by_seq(qtbot, make_client):
    """A host that sends a message twice (as a replay overlapping live traffic would)."""
    message = {"type": "broadcast", "seq": 7, "ts": "2025-01-01T00:00:00.000Z",
               "from": "bob", "room": "lobby", "text": "once"}
    later = {**message, "seq": 8, "text": "twice?"}

    def answer(frame: dict) -> list:
        if frame["type"] == "register":
            return [registered(frame), message, message, later, message, later]
        if frame["type"] == "ping":
            return [{"type": "pong", "token": frame["token"]}]
        return []

    host = ScriptedHost(answer)
    client = make_client()
    inbox = Inbox(client)
    join(qtbot, client, host, "alice")
    round_trip(qtbot, client)
    assert inbox.texts() == ["once", "twice?"]
    assert client.last_seq == 8
    host.close()


def test_a_resume_that_replays_seen_messages_shows_none_twice(qtbot, server, pair):
    alice, bob = pair
    bob_inbox = Inbox(bob)
    for text in ("one", "two", "three"):
        with qtbot.waitSignal(bob.messageReceived, check_params_cb=has_text(text),
                              timeout=WAIT):
            alice.send_broadcast(text)
    bob.last_seq = 0  # the resume asks for everything since the start: all seen already
    with qtbot.waitSignal(bob.reconnected, timeout=WAIT):
        cut(server, "bob")
    round_trip(qtbot, bob)
    assert bob_inbox.texts() == ["one", "two", "three"]


# --- drops, restarts, goodbyes ------------------------------------------------------------


def test_network_blip_loses_nothing_and_doubles_nothing(qtbot, server, pair):
    alice, bob = pair
    alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
    with qtbot.waitSignal(bob.messageReceived, check_params_cb=has_text("before"),
                          timeout=WAIT):
        alice.send_broadcast("before")

    server.pause_accepting()  # Bob's reconnect waits in the backlog
    left = record(alice.userLeft)
    with qtbot.waitSignals([bob.connectionLost, alice.userLeft], timeout=WAIT):
        cut(server, "bob")
    assert left == [("bob", "lobby", "disconnected")]
    assert not bob.connected

    queued_id = bob.send_broadcast("typed while cut off")
    sent: list[str] = []
    with qtbot.waitSignals([alice.sendConfirmed, alice.sendConfirmed], timeout=WAIT,
                           check_params_cbs=[lambda i, _f: i == sent[0],
                                             lambda i, _f: i == sent[1]]):
        sent.append(alice.send_broadcast("said during the gap"))
        sent.append(alice.send_whisper("bob", "psst, during the gap"))  # held for Bob
    assert not bob.connected

    back = record(bob.reconnected)
    with qtbot.waitSignals([bob.reconnected, alice.userJoined], timeout=WAIT):
        server.resume_accepting()
    assert back == [(False,)]  # resumed, no gap
    qtbot.waitUntil(lambda: alice_inbox.count("typed while cut off") == 1, timeout=WAIT)
    qtbot.waitUntil(lambda: bob_inbox.count("psst, during the gap") == 1, timeout=WAIT)
    round_trip(qtbot, alice)
    round_trip(qtbot, bob)

    assert bob_inbox.texts() == ["before", "said during the gap", "psst, during the gap",
                                 "typed while cut off"]
    assert alice_inbox.texts() == ["before", "said during the gap", "psst, during the gap",
                                   "typed while cut off"]
    seqs = [frame.seq for frame in bob_inbox.frames]
    assert seqs == sorted(seqs)
    assert bob.pending_ids == [] and queued_id not in bob.failed_ids


def test_a_message_whose_echo_was_lost_is_not_posted_twice(qtbot, server, pair):
    """The drop comes after the server stored Bob's message, before his copy left."""
    alice, bob = pair
    alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
    confirmed = record(bob.sendConfirmed)

    def drop_bob(_frames: list) -> None:
        server.messagesPosted.disconnect(drop_bob)
        cut(server, "bob")

    server.messagesPosted.connect(drop_bob)
    with qtbot.waitSignals([bob.connectionLost, bob.reconnected], order="strict",
                           timeout=WAIT):
        message_id = bob.send_broadcast("stored, then the line dropped")
    qtbot.waitUntil(lambda: len(confirmed) == 1, timeout=WAIT)
    round_trip(qtbot, bob)  # Bob's re-send reached the server and was answered
    round_trip(qtbot, alice)
    assert alice_inbox.count("stored, then the line dropped") == 1
    assert bob_inbox.count("stored, then the line dropped") == 1
    assert [args[0] for args in confirmed] == [message_id] and bob.pending_ids == []


def test_host_restart_under_connected_clients(qtbot, tmp_path, make_client):
    first = ChatServer(host_config(tmp_path / "host"))
    first.start()
    port = first.port
    alice, bob = make_client(), make_client()
    join(qtbot, alice, first, "alice")
    join(qtbot, bob, first, "bob")
    alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
    with qtbot.waitSignal(bob.messageReceived, timeout=WAIT):
        alice.send_broadcast("before the restart")

    with qtbot.waitSignals([alice.connectionLost, bob.connectionLost], timeout=WAIT):
        first.stop()  # says bye "shutdown": the clients keep trying
    first.close_store()
    alice.send_broadcast("typed while the host was down")
    bob.send_whisper("alice", "whispered while the host was down")

    second = ChatServer(host_config(tmp_path / "host", port=port))
    try:
        back = record(alice.reconnected)
        bob.reconnected.connect(lambda gap: back.append((gap,)))
        with qtbot.waitSignals([alice.reconnected, bob.reconnected], timeout=WAIT):
            second.start()
        assert back == [(False,), (False,)]  # both resumed, no gap
        qtbot.waitUntil(lambda: bob_inbox.count("typed while the host was down") == 1,
                        timeout=WAIT)
        qtbot.waitUntil(lambda: alice_inbox.count("whispered while the host was down") == 1,
                        timeout=WAIT)
        for client in (alice, bob):
            round_trip(qtbot, client)
        expected = {"before the restart": 1, "typed while the host was down": 1,
                    "whispered while the host was down": 1}
        for inbox in (alice_inbox, bob_inbox):
            assert {text: inbox.count(text) for text in expected} == expected
            assert len(inbox.frames) == 3
        assert alice.pending_ids == bob.pending_ids == []
        assert sorted(second.users()) == ["alice", "bob"]
        assert alice.session is not None and bob.session is not None
    finally:
        second.stop()
        second.close_store()


@pytest.fixture
def short_grace_server(tmp_path: Path) -> Iterator[ChatServer]:
    host = ChatServer(host_config(tmp_path / "host", resume_grace=0.2))
    host.start()
    yield host
    host.stop()
    host.close_store()


def away_past_the_grace_period(qtbot, server: ChatServer, client: ChatClient) -> None:
    """Cut ``client`` off and hold its reconnect back until the server forgot it."""
    server.pause_accepting()
    with qtbot.waitSignal(client.connectionLost, timeout=WAIT):
        cut(server, client.name)
    qtbot.waitUntil(lambda: client.name not in held_names(server), timeout=WAIT)


def test_back_after_the_grace_period_rejoins_as_a_new_session(
        qtbot, short_grace_server, make_client):
    server = short_grace_server
    bob = make_client()
    join(qtbot, bob, server, "bob")
    with qtbot.waitSignal(bob.roomJoined, timeout=WAIT):
        bob.join("dev")
    old_session = bob.session
    away_past_the_grace_period(qtbot, server, bob)
    gaps = record(bob.reconnected)
    with qtbot.waitSignals([bob.reconnected, bob.roomJoined, bob.historyReceived],
                           timeout=WAIT):
        server.resume_accepting()
    assert gaps == [(True,)]  # not resumed: what was said meanwhile may be missing
    assert bob.session != old_session
    assert sorted(bob.rooms) == ["dev", "lobby"]
    assert server.users("dev") == ["bob"]


def test_back_after_the_grace_period_to_a_name_taken_meanwhile(
        qtbot, short_grace_server, make_client):
    server = short_grace_server
    bob, newcomer = make_client(), make_client()
    join(qtbot, bob, server, "bob")
    with qtbot.waitSignal(newcomer.usernameTaken, timeout=WAIT):
        newcomer.open(endpoint(server), "Bob")  # stays connected, unregistered
    away_past_the_grace_period(qtbot, server, bob)
    with qtbot.waitSignal(newcomer.registered, timeout=WAIT):
        newcomer.register("Bob")  # the name is free now
    with qtbot.assertNotEmitted(bob.usernameTaken), \
            qtbot.waitSignal(bob.connectFailed, timeout=WAIT) as failed:
        server.resume_accepting()
    error = failed.args[0]
    assert error.kind == "username_taken"
    assert endpoint(server).address in str(error) and "another name" in str(error)
    assert bob.state == "disconnected"


def test_close_says_bye_and_frees_the_name(qtbot, server, pair, make_client):
    alice, bob = pair
    closed, left = record(alice.closed), record(bob.userLeft)
    with qtbot.waitSignals([alice.closed, bob.userLeft], timeout=WAIT):
        alice.close()
    assert closed == [("quit",)]
    assert left == [("alice", "lobby", "quit")]  # a goodbye, not a drop
    assert alice.state == "disconnected" and not alice.connected
    # A goodbye ends the session: the name is free at once, not held for a resume.
    join(qtbot, make_client(), server, "alice")


def test_bye_from_the_host_ends_the_conversation(qtbot, server, make_client):
    client = make_client()
    join(qtbot, client, server, "alice")
    with qtbot.assertNotEmitted(client.connectionLost), \
            qtbot.waitSignal(client.closed, timeout=WAIT) as closed:
        server.stop("kicked")
    assert closed.args == ["kicked"]
    assert client.state == "disconnected" and not client.connected
    message_id = client.send_broadcast("anyone?")  # kept for a later open(), not sent
    assert client.pending_ids == [message_id]


@pytest.mark.parametrize(("reason", "resumes"), [
    ("shutdown", True),  # the host may come back
    ("timeout", True),  # the host gave up on a frozen client but holds its session
    ("kicked", False),
    ("host quit", False),
])
def test_bye_reasons(qtbot, make_client, reason, resumes):
    byes = [{"type": "bye", "reason": reason}]  # once, right after the first registration

    def answer(frame: dict) -> list:
        if frame["type"] != "register":
            return []
        reply = [registered(frame), *byes]
        byes.clear()
        return reply

    host = ScriptedHost(answer)
    client = make_client()
    if resumes:
        with qtbot.assertNotEmitted(client.closed), \
                qtbot.waitSignals([client.registered, client.connectionLost,
                                   client.reconnected], order="simple", timeout=WAIT):
            client.open(endpoint(host), "alice")
        assert host.connections == 2 and client.connected
    else:
        with qtbot.assertNotEmitted(client.connectionLost), \
                qtbot.waitSignals([client.registered, client.closed], order="strict",
                                  timeout=WAIT):
            client.open(endpoint(host), "alice")
        assert client.state == "disconnected" and host.connections == 1
    host.close()


def test_keepalive_detects_a_host_that_stopped_answering(qtbot, make_client):
    def answer(frame: dict) -> list:  # says registered, then never another word
        return [registered(frame)] if frame["type"] == "register" else []

    host = ScriptedHost(answer)
    client = make_client(keepalive=0.1)
    lost = record(client.connectionLost)
    with qtbot.waitSignals([client.registered, client.connectionLost, client.reconnected],
                           order="simple", timeout=WAIT):
        client.open(endpoint(host), "alice")
    assert lost == [("the host stopped answering",)]
    assert [frame["type"] for frame in host.received[:2]] == ["register", "ping"]
    assert host.received[-1]["resume"] == "scripted-session"  # resumed, not re-registered
    host.close()


def test_keepalive_keeps_a_live_connection(qtbot, server, make_client):
    client = make_client(keepalive=0.05)
    join(qtbot, client, server, "alice")
    pongs: list[str] = []
    client.pongReceived.connect(pongs.append)
    with qtbot.assertNotEmitted(client.connectionLost):
        qtbot.waitUntil(lambda: len(pongs) >= 4, timeout=WAIT)
    assert client.connected


# --- refused sends ------------------------------------------------------------------------


def test_refused_send_fails_with_its_id_and_retry_sends_it(qtbot, server, pair):
    alice, bob = pair
    bob_inbox = Inbox(bob)
    with qtbot.waitSignal(bob.roomJoined, timeout=WAIT):
        bob.join("dev")

    failed, confirmed = record(alice.sendFailed), record(alice.sendConfirmed)
    with qtbot.waitSignals([alice.sendFailed, alice.sendConfirmed], timeout=WAIT):
        refused_id = alice.send_broadcast("hello dev", room="dev")
        fine_id = alice.send_broadcast("hello lobby")
    [(failed_id, code, why)] = failed
    assert (failed_id, code) == (refused_id, "not_in_room") and "join" in why
    assert [args[0] for args in confirmed] == [fine_id]
    assert alice.failed_ids == [refused_id]

    with qtbot.waitSignal(alice.sendFailed, timeout=WAIT) as no_one:
        ghost_id = alice.send_whisper("nobody", "are you there?")
    assert no_one.args[:2] == [ghost_id, "no_such_user"]
    alice.discard(ghost_id)

    # A refused message is not sent again by itself, not even after a resume.
    with qtbot.assertNotEmitted(alice.sendFailed), \
            qtbot.waitSignal(alice.reconnected, timeout=WAIT):
        cut(server, "alice")
    round_trip(qtbot, alice)

    with qtbot.waitSignal(alice.roomJoined, timeout=WAIT):
        alice.join("dev")
    with qtbot.waitSignals([alice.sendConfirmed, bob.messageReceived], timeout=WAIT):
        alice.retry(refused_id)
    assert [args[0] for args in confirmed] == [fine_id, refused_id]
    round_trip(qtbot, bob)
    assert bob_inbox.count("hello dev") == 1
    assert alice.pending_ids == [] and alice.failed_ids == []


def test_retry_while_disconnected_goes_with_the_resume(qtbot, server, pair):
    alice, bob = pair
    with qtbot.waitSignal(alice.sendFailed, timeout=WAIT):
        refused_id = alice.send_broadcast("for dev", room="dev")  # no such room yet
    with qtbot.waitSignal(bob.roomJoined, timeout=WAIT):
        bob.join("dev")
    with qtbot.waitSignal(alice.roomJoined, timeout=WAIT):
        alice.join("dev")
    server.pause_accepting()
    with qtbot.waitSignal(alice.connectionLost, timeout=WAIT):
        cut(server, "alice")
    alice.retry(refused_id)
    with qtbot.waitSignals([alice.sendConfirmed, bob.messageReceived], timeout=WAIT):
        server.resume_accepting()
    assert alice.pending_ids == []


def test_a_protocol_1_host_refusing_a_whisper_fails_the_whisper_not_an_older_broadcast(
        qtbot, make_client):
    """An older host names no id in its errors. The client used to take every refusal for
    its oldest send in flight, whatever its kind: a broadcast still on its way was marked
    failed for a whisper to nobody, and the whisper stayed 'sending' forever."""
    def answer(frame: dict) -> list:
        if frame["type"] == "register":
            return [registered(frame)]  # no ``features``: a protocol-1 host
        if frame["type"] == "whisper":
            return [{"type": "error", "code": "no_such_user", "message": "No one is called "
                     "ghost.", "ref": "whisper"}]
        return []  # the broadcast: stored later (not answered in this test)

    host = ScriptedHost(answer)
    client = make_client()
    join(qtbot, client, host, "alice")
    with qtbot.waitSignal(client.sendFailed, timeout=WAIT) as failed:
        broadcast_id = client.send_broadcast("on its way")
        whisper_id = client.send_whisper("ghost", "psst")
    assert failed.args[:2] == [whisper_id, "no_such_user"]
    assert client.failed_ids == [whisper_id]
    assert client.pending_ids == [broadcast_id, whisper_id]
    host.close()


def test_the_client_offers_its_features_and_keeps_those_the_host_accepted(
        qtbot, server, make_client):
    def answer(frame: dict) -> list:
        if frame["type"] == "register":
            return [{**registered(frame), "features": ["chess", "files"]}]
        return []

    host = ScriptedHost(answer)
    client = make_client(features=("chess",))
    join(qtbot, client, host, "alice")
    assert host.received[0]["features"] == ["chess"]
    assert client.features == ["chess"]  # "files" was never asked for
    assert client.has_feature("chess") and not client.has_feature("files")
    host.close()

    # The app asks for what it implements (the living-room features) and nothing else.
    from qtchat.client.chat_client import CLIENT_FEATURES

    plain = make_client()
    join(qtbot, plain, server, "bob")
    assert plain.features == list(CLIENT_FEATURES) and not plain.has_feature("chess")
