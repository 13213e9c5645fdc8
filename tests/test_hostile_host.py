"""ChatClient against a hostile host: a scripted host on a real socket (or anyone in the
middle of a plain TCP connection) sends what a real ChatServer never would.

The client must check every frame before acting on it, leave a host that breaks the
protocol with a sentence (and stop after a few times in a row), answer a ping flood
with one pong at a time, keep nothing a host can grow without bound, never keep or
save a value it did not check, and handle a burst in slices so the window repaints.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from _scripted_host import ScriptedHost, registered
from PySide6.QtCore import QTimer

from qtchat import protocol as p
from qtchat.client.chat_client import ChatClient, ConnectError, Endpoint
from qtchat.client.session import MAX_VIOLATIONS
from qtchat.server.chat_server import ChatServer, ServerConfig

pytest_plugins = ("_qasync_loop",)

WAIT = 5000  # ms


def endpoint(host: ScriptedHost | ChatServer) -> Endpoint:
    return Endpoint("127.0.0.1", host.port)


def message(seq: Any, text: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"type": "broadcast", "seq": seq, "ts": "2026-01-01T00:00:00.000Z",
            "from": "mallory", "room": "lobby", "text": text, **fields}


def blob(frames: list[dict[str, Any]]) -> bytes:
    """Many frames in one write, as a flood arrives."""
    return b"".join(json.dumps(frame).encode() + b"\n" for frame in frames)


def hostile(after_registered: list[dict[str, Any] | bytes],
            registered_frame: dict[str, Any] | None = None) -> ScriptedHost:
    """A host that accepts every register, then sends ``after_registered``; it answers
    pings, and records everything the client sends."""

    def answer(frame: dict[str, Any]) -> list[dict[str, Any] | bytes]:
        if frame["type"] == "register":
            return [registered_frame or registered(frame), *after_registered]
        if frame["type"] == "ping":
            return [{"type": "pong", "token": frame.get("token")}]
        return []

    return ScriptedHost(answer)


def assert_sentence(error: ConnectError, where: Endpoint, *fragments: str) -> None:
    """A sentence a person can act on: the address, what was wrong, what to try."""
    assert isinstance(error, ConnectError) and error.kind == "protocol"
    message = str(error)
    assert where.address in message and message[0].isupper() and message.endswith(".")
    assert "check that this address is the qtchat host you meant" in message
    for fragment in fragments:
        assert fragment in message, message


def round_trip(qtbot, client: ChatClient) -> None:
    sent: list[str] = []
    with qtbot.waitSignal(client.pongReceived, timeout=WAIT,
                          check_params_cb=lambda token: token in sent):
        sent.append(client.ping())


@pytest.fixture
def genuine(tmp_path: Path):
    server = ChatServer(ServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "host"))
    server.start()
    yield server
    server.stop()
    server.close_store()


# --- a seq of 2^70 ---------------------------------------------------------------------------


def test_a_seq_past_2_53_is_left_never_kept_and_a_genuine_host_still_joins(
        qtbot, make_client, genuine):
    """Before: the seq was kept and saved, and every later register raised before a
    byte was sent, so the app could not join even a genuine host again."""
    host = hostile([message(2**70, "poison")])
    client = make_client()
    shown: list[dict] = []
    client.messageReceived.connect(shown.append)
    with qtbot.waitSignal(client.connectFailed, timeout=3 * WAIT) as stopped:
        client.open(endpoint(host), "alice")
    assert_sentence(stopped.args[0], endpoint(host), "'seq'", "2^53",
                    f"{MAX_VIOLATIONS} times in a row", "stopped")
    assert host.connections == MAX_VIOLATIONS  # left, came back at a growing pause, gave up
    assert shown == [] and client.last_seq == 0
    assert client.state == "disconnected"

    # What the app would have saved lets it join a genuine host.
    again = make_client()
    with qtbot.waitSignal(again.registered, timeout=WAIT):
        again.open(endpoint(genuine), "alice", resume=(client.session, client.last_seq))
    host.close()


def test_a_seq_saved_out_of_range_by_an_older_version_still_joins(qtbot, make_client, genuine):
    client = make_client()
    with qtbot.waitSignal(client.registered, timeout=WAIT) as joined:
        client.open(endpoint(genuine), "alice", resume=("old-session", 2**70))
    assert joined.args[0].resumed is False  # a fresh session: nothing to resume there
    assert client.last_seq < 2**53


# --- every frame is checked ----------------------------------------------------------------------

_LONG = "x" * 200
BAD_FRAMES = [
    pytest.param(message(-1), "'seq'", id="negative seq"),
    pytest.param(message("7"), "'seq'", id="seq as text"),
    pytest.param(message(1.0), "'seq'", id="seq as float"),
    pytest.param(message(True), "'seq'", id="seq as bool"),
    pytest.param(message(1, ts=5), "'ts'", id="ts as number"),
    pytest.param(message(1, text=["x"]), "'text'", id="text as list"),
    pytest.param({**message(1), "from": _LONG}, "'from'", id="a 200-character name"),
    pytest.param({"type": "whisper", "seq": 1, "ts": "t", "from": "m", "text": "x"}, "'to'",
                 id="whisper without to"),
    pytest.param({"type": "user_joined", "name": "bob", "room": {"a": 1}}, "'room'",
                 id="room as object"),
    pytest.param({"type": "ping", "token": _LONG}, "'token'", id="a ping token too long to echo"),
    pytest.param({"type": "error", "code": 7, "message": "m"}, "'code'", id="error code number"),
    pytest.param({"type": "bye", "reason": ["x"]}, "'reason'", id="bye reason as list"),
    pytest.param({"type": "joined", "room": "r", "users": [],
                  "history": [message(1), message(2**60)]}, "'history[1].seq'",
                 id="a joined history message out of range"),
    pytest.param({"type": "joined", "room": "nowhere", "users": [], "history": []},
                 "did not ask to join", id="joined not asked for"),
    pytest.param({"type": "history", "room": "lobby", "messages": []}, "did not ask for",
                 id="history not asked for"),
    pytest.param({"type": "username_taken", "name": "alice"}, "username_taken",
                 id="username_taken after registered"),
    pytest.param(b"\xff\xfe not json\n", "not a qtchat frame", id="not UTF-8"),
    pytest.param(b"[1, 2]\n", "not a qtchat frame", id="not an object"),
]


@pytest.mark.parametrize(("frame", "said"), BAD_FRAMES)
def test_a_frame_that_breaks_the_protocol_ends_the_connection_with_a_sentence(
        qtbot, make_client, frame, said):
    host = hostile([frame, message(5, "after it")])
    client = make_client(reconnect=False)
    shown: list[dict] = []
    client.messageReceived.connect(shown.append)
    with qtbot.waitSignal(client.connectFailed, timeout=WAIT) as stopped:
        client.open(endpoint(host), "alice")
    assert_sentence(stopped.args[0], endpoint(host), said)
    assert shown == [] and client.last_seq == 0  # nothing after it was acted on either
    host.close()


def test_a_second_registered_is_refused_and_nothing_is_sent_twice(qtbot, make_client):
    """Each registered used to re-send every unconfirmed message and rejoin every room."""
    host = hostile([])
    client = make_client(reconnect=False)
    with qtbot.waitSignal(client.registered, timeout=WAIT) as joined:
        client.open(endpoint(host), "alice")
    again = {**joined.args[0].to_wire(), "session": "another"}
    host.answer = lambda frame: [again] if frame["type"] == "broadcast" else []
    with qtbot.waitSignal(client.connectFailed, timeout=WAIT) as stopped:
        client.send_broadcast("unconfirmed")
    assert_sentence(stopped.args[0], endpoint(host), "'registered' a second time")
    assert client.session == "scripted-session"
    assert [f["type"] for f in host.received] == ["register", "broadcast"]
    host.close()


def test_registered_with_a_string_for_server_fails_with_a_sentence(qtbot, make_client):
    """Before: the client stayed "connecting" for ever, with no error."""
    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**registered(frame), "server": "evil"}] if frame["type"] == "register" else []

    host = ScriptedHost(answer)
    client = make_client()
    with qtbot.assertNotEmitted(client.registered), \
            qtbot.waitSignal(client.connectFailed, timeout=WAIT) as failed:
        client.open(endpoint(host), "alice")
    assert_sentence(failed.args[0], endpoint(host), "'server' is not an object")
    assert client.state == "disconnected" and host.connections == 1
    host.close()


def test_a_host_that_breaks_the_protocol_once_is_rejoined(qtbot, make_client):
    """One bad frame costs one reconnect (a resume), not the conversation."""
    bad = [message(2**70)]

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] == "register":
            reply = [registered(frame), *bad]
            bad.clear()
            return reply
        return [{"type": "pong", "token": frame["token"]}] if frame["type"] == "ping" else []

    host = ScriptedHost(answer)
    client = make_client()
    errors: list[ConnectError] = []
    client.protocolError.connect(errors.append)
    with qtbot.assertNotEmitted(client.connectFailed), \
            qtbot.waitSignals([client.registered, client.connectionLost, client.reconnected],
                              order="simple", timeout=WAIT):
        client.open(endpoint(host), "alice")
    assert len(errors) == 1
    assert_sentence(errors[0], endpoint(host), "'seq'", "will try again")
    assert host.received[-1]["resume"] == "scripted-session"
    round_trip(qtbot, client)
    assert client.connected
    host.close()


# --- floods ----------------------------------------------------------------------------------


def test_a_ping_flood_gets_one_pong_at_a_time_and_never_delays_a_message(qtbot, make_client):
    """Before: 5,000 pongs queued at the client's pace (15/s) ahead of the person's
    message, which would have left after five and a half minutes."""
    pings = [{"type": "ping", "token": f"p{i}"} for i in range(5000)]
    host = hostile([blob(pings)])
    client = make_client()
    with qtbot.waitSignal(client.registered, timeout=WAIT):
        client.open(endpoint(host), "alice")
    client.send_broadcast("hello")
    qtbot.waitUntil(lambda: any(f["type"] == "broadcast" for f in host.received),
                    timeout=2000)
    # The newest ping is answered (an older unsent pong gives way to it)...
    qtbot.waitUntil(lambda: any(f.get("token") == "p4999" for f in host.received),
                    timeout=WAIT)
    pongs = [f["token"] for f in host.received if f["type"] == "pong"]
    assert len(pongs) <= 3 and pongs[-1] == "p4999"
    host.close()


def test_a_joined_flood_grows_no_room_list(qtbot, make_client):
    """Before: every unasked-for room was added (52,000 rooms, a 29 s freeze)."""
    rooms = [{"type": "joined", "room": f"r{i}", "users": ["mallory"], "history": []}
             for i in range(5000)]
    host = hostile([blob(rooms)])
    client = make_client(reconnect=False)
    joined: list[dict] = []
    client.roomJoined.connect(joined.append)
    with qtbot.waitSignal(client.connectFailed, timeout=WAIT) as stopped:
        client.open(endpoint(host), "alice")
    assert_sentence(stopped.args[0], endpoint(host), "did not ask to join", "\"r0\"")
    assert joined == [] and client.rooms == [p.LOBBY]
    host.close()


def test_an_asked_for_room_is_joined_and_a_user_joined_flood_is_bounded(
        qtbot, make_client, monkeypatch):
    monkeypatch.setattr("qtchat.client.session.MAX_MEMBERS_PER_ROOM", 100)
    host = hostile([])
    client = make_client()
    with qtbot.waitSignal(client.registered, timeout=WAIT):
        client.open(endpoint(host), "alice")
    flood = [{"type": "user_joined", "name": f"u{i}", "room": "Chess"} for i in range(500)]
    host.answer = lambda frame: (
        [{"type": "joined", "room": "Chess", "users": ["alice"], "history": [message(3)]},
         blob(flood)] if frame["type"] == "join" else
        [{"type": "pong", "token": frame["token"]}] if frame["type"] == "ping" else [])
    members: list[str] = []
    client.userJoined.connect(lambda name, _room: members.append(name))
    with qtbot.waitSignal(client.roomJoined, timeout=WAIT):
        client.join("chess")  # the host names the room as it exists
    round_trip(qtbot, client)
    assert client.rooms == [p.LOBBY, "Chess"]
    assert len(members) == 99  # alice and 99 others: the room's member bound
    assert client.connected
    host.close()


def test_a_burst_is_handled_in_slices_and_the_event_loop_runs_between(qtbot, make_client):
    """20,000 messages in one write (a replay at full speed): the event loop gets to run
    (the window repaints, timers fire) every few hundred frames, not after all of them."""
    count = 20_000
    host = hostile([blob([message(seq) for seq in range(1, count + 1)])])
    client = make_client(keepalive=0)
    seqs: list[int] = []
    client.messageReceived.connect(lambda frame: seqs.append(frame.seq))
    ticks: list[int] = []  # messages handled when the event loop got a turn
    tick = QTimer()
    tick.setInterval(0)
    tick.timeout.connect(lambda: ticks.append(len(seqs)))
    first_turn: list[int] = []

    def on_first(_frame: dict) -> None:
        client.messageReceived.disconnect(on_first)
        QTimer.singleShot(0, lambda: first_turn.append(len(seqs)))

    client.messageReceived.connect(on_first)
    tick.start()
    with qtbot.waitSignal(client.registered, timeout=WAIT):
        client.open(endpoint(host), "alice")
    qtbot.waitUntil(lambda: len(seqs) == count, timeout=4 * WAIT)
    tick.stop()
    assert seqs == list(range(1, count + 1))
    assert first_turn and first_turn[0] < count  # a zero timer fired before the last one
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(steps) <= 1000, max(steps)
    assert client.last_seq == count
    host.close()


# --- the window --------------------------------------------------------------------------------


def test_the_window_says_what_the_host_did_and_when_the_client_gave_up(qtbot, make_client):
    from qtchat.gui.main_window import ChatWindow
    from qtchat.gui.models import MessageRoles, NoticeKind, RowKind

    host = hostile([message(2**70)])
    client = make_client()
    window = ChatWindow(client)
    qtbot.addWidget(window)
    client.registered.connect(window._on_registered)  # as the app does for its window
    with qtbot.waitSignal(client.connectFailed, timeout=3 * WAIT):
        client.open(endpoint(host), "alice")
    model = window.conversation(window.current().kind, p.LOBBY).model
    errors = [model.index(row).data(MessageRoles.Text) for row in range(model.rowCount())
              if model.index(row).data(MessageRoles.Kind) == RowKind.NOTICE
              and model.index(row).data(MessageRoles.NoticeKind) == NoticeKind.ERROR]
    assert any("will try again" in text and "'seq'" in text for text in errors)
    assert "stopped talking to it" in errors[-1]
    assert not window.input.isEnabled()
    host.close()


def test_a_host_busy_sending_is_alive_even_while_our_pong_waits_behind_its_frames(
        qtbot, make_client):
    """A burst: the keep-alive's pong waits behind frames not handled yet. Frames still
    coming mean the host is there; only silence ends the connection."""
    from PySide6.QtCore import QTimer

    def answer(frame: dict[str, Any]) -> list[dict[str, Any] | bytes]:
        return [registered(frame)] if frame["type"] == "register" else []  # no pongs

    host = ScriptedHost(answer)
    client = make_client(keepalive=0.2)
    with qtbot.waitSignal(client.registered, timeout=WAIT):
        client.open(endpoint(host), "alice")
    [socket] = list(host._buffers)
    seqs = iter(range(1, 1_000_000))
    stream = QTimer()
    stream.timeout.connect(lambda: socket.write(blob([message(next(seqs))])))
    stream.start(50)
    with qtbot.assertNotEmitted(client.connectionLost, wait=1200):  # six keep-alive ticks
        pass
    assert client.connected
    with qtbot.waitSignal(client.connectionLost, timeout=WAIT) as lost:
        stream.stop()  # the host falls silent: two ticks later it is given up
    assert "stopped answering" in lost.args[0]
    client.close()
    host.close()
