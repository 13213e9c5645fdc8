"""ClientSession driven directly: bytes in, events out, a clock advanced by hand.

No sockets, no Qt, no sleeps (h11's way of testing a connection): what a host sends is
written here as the lines it would put on the wire, and what the client would write is
read back from ``pull_output``. The socket tests in test_client.py keep the façade and the
end-to-end paths; these pin down the rules themselves — resume and dedupe, the outbox
matched by id, the keep-alive, the backoff and the give-up, hostile frames.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtchat.client import session as s
from qtchat.client.session import ClientSession, ClientState, IllegalTransition
from qtchat.protocol.server_frames import Message, Registered

WHERE = "192.0.2.1:8800"
TS = "2024-05-01T12:34:56.789Z"


def wire(*frames: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(frame).encode() + b"\n" for frame in frames)


def registered(name: str = "alice", session: str = "s-1", **extra: Any) -> dict[str, Any]:
    return {"type": "registered", "name": name, "session": session, "users": [name],
            "rooms": ["lobby"], "in_rooms": ["lobby"],
            "server": {"name": "test", "version": "1", "history": "h1"}, "protocol": 1,
            "resumed": False, "gap": False, **extra}


def message(seq: int, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"type": "broadcast", "seq": seq, "ts": TS, "from": "bob", "room": "lobby",
            "text": text, **extra}


class Host:
    """One ClientSession and a hand-advanced clock; collects what it decides."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("rng", random.Random(7))
        self.session = ClientSession(**options)
        self.now = 1000.0
        self.events: list[s.Event] = []

    def run(self, events: list[s.Event]) -> list[s.Event]:
        self.events += events
        return events

    def open(self, name: str = "alice", resume: tuple[str, int] | None = None) -> None:
        self.run(self.session.open(WHERE, name, None, resume))
        self.run(self.session.connection_made())

    def join(self, **extra: Any) -> Registered:
        self.open()
        self.feed(registered(**extra))
        [event] = self.of(s.RegisteredEvent)
        return event.frame

    def feed(self, *frames: dict[str, Any] | bytes) -> list[s.Event]:
        data = b"".join(f if isinstance(f, bytes) else wire(f) for f in frames)
        return self.run(self.session.receive_data(data, self.now))

    def sent(self) -> list[dict[str, Any]]:
        """The frames the client would write now, decoded."""
        data, _wait = self.session.pull_output(self.now)
        return [json.loads(line) for line in data.splitlines()]

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def clear(self) -> None:
        self.events.clear()


def test_the_session_imports_without_qt():
    code = ("import sys, qtchat.client.session; "
            "assert not [m for m in sys.modules if m.startswith('PySide6')]")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- states --------------------------------------------------------------------------------


def test_states_go_connecting_registering_live_and_say_so_once_each():
    host = Host()
    assert host.session.state is ClientState.IDLE
    host.run(host.session.open(WHERE, "alice", None, None))
    assert host.session.state is ClientState.CONNECTING
    assert isinstance(host.events[-1], s.StartConnection)
    host.run(host.session.connection_made())
    assert host.session.state is ClientState.REGISTERING
    [register] = host.sent()
    assert register["type"] == "register" and register["name"] == "alice"
    assert register["features"] == []  # a features session, asking for none yet
    assert "resume" not in register and "since" not in register
    host.feed(registered())
    assert host.session.state is ClientState.LIVE and host.session.live
    assert [e.state for e in host.of(s.StateChanged)] == ["connecting", "connected"]


def test_a_move_outside_the_table_is_a_bug_and_changes_nothing():
    session = ClientSession()
    with pytest.raises(IllegalTransition, match="IDLE -> LIVE"):
        session._transition(ClientState.LIVE)
    assert session.state is ClientState.IDLE
    for allowed in s.TRANSITIONS.values():  # every state can end, and ``open`` restarts it
        assert ClientState.CLOSED in allowed and ClientState.CONNECTING in allowed


def test_an_invalid_name_fails_at_once_without_connecting():
    host = Host()
    host.run(host.session.open(WHERE, "has space", None, None))
    [failed] = host.of(s.ConnectFailed)
    assert failed.error.kind == "invalid_name" and WHERE in failed.error.message
    assert not host.of(s.StartConnection)


# --- resume and dedupe ---------------------------------------------------------------------


def test_a_resume_sends_since_and_a_replay_shows_nothing_twice():
    host = Host()
    host.open(resume=("saved", 7))
    [register] = host.sent()
    assert (register["resume"], register["since"]) == ("saved", 7)
    host.feed(registered(session="saved", resumed=True))
    host.feed(message(8, "eight"), message(9, "nine"), message(8, "eight again"))
    shown = [e.message for e in host.of(s.MessageReceived)]
    assert [(m.seq, m.text) for m in shown] == [(8, "eight"), (9, "nine")]
    assert all(isinstance(m, Message) for m in shown)
    assert host.session.last_seq == 9

    # The connection drops; the next one resumes from what was seen.
    host.clear()
    host.run(host.session.connection_lost("the connection closed", host.now))
    assert host.session.state is ClientState.RECONNECTING
    [arm] = [e for e in host.of(s.ArmTimer) if e.timer == "reconnect"]
    host.now += arm.seconds
    host.run(host.session.reconnect_due(host.now))
    host.run(host.session.connection_made())
    [register] = host.sent()
    assert (register["resume"], register["since"]) == ("saved", 9)
    host.clear()
    host.feed(registered(session="saved", resumed=True), message(9, "nine"), message(10))
    assert [e.message.seq for e in host.of(s.MessageReceived)] == [10]
    assert [e.gap for e in host.of(s.Reconnected)] == [False]


def test_a_host_with_a_new_history_starts_over_and_forgets_the_seqs_seen():
    host = Host()
    host.join()
    host.feed(message(1, "old one"))
    host.run(host.session.connection_lost("gone", host.now))
    host.now += 60
    host.run(host.session.reconnect_due(host.now))
    host.run(host.session.connection_made())
    host.clear()
    host.feed(registered(server={"name": "test", "history": "h2"}), message(1, "new one"))
    assert host.of(s.StartedOver)
    assert [e.message.text for e in host.of(s.MessageReceived)] == ["new one"]
    assert [e.gap for e in host.of(s.Reconnected)] == [True]


# --- the outbox, by id ---------------------------------------------------------------------


def test_refusals_and_confirmations_are_matched_by_id_with_two_kinds_in_flight():
    host = Host()
    host.join(features=[])
    host.sent()
    session = host.session
    to_dev = session.send_message(s.p.Broadcast(text="for dev", room="dev", id="b1"))
    to_ghost = session.send_message(s.p.Whisper(to="ghost", text="psst", id="w1"))
    to_lobby = session.send_message(s.p.Broadcast(text="for all", id="b2"))
    assert [f["id"] for f in host.sent()] == ["b1", "w1", "b2"]
    host.clear()
    # The host answers out of the order of the sends: in order, the first refusal would
    # have been taken for "b1" and the whisper's for the lobby message.
    host.feed(
        {"type": "error", "code": "no_such_user", "message": "No one called ghost.",
         "ref": "whisper", "id": "w1"},
        message(5, "for all", id="b2", **{"from": "alice"}),
        {"type": "error", "code": "not_in_room", "message": "Join dev first.",
         "ref": "broadcast", "id": "b1"},
    )
    assert [(e.id, e.code) for e in host.of(s.SendFailed)] == \
        [(to_ghost, "no_such_user"), (to_dev, "not_in_room")]
    assert [(e.id, e.message.seq) for e in host.of(s.SendConfirmed)] == [(to_lobby, 5)]
    assert session.failed_ids == [to_dev, to_ghost] and session.pending_ids == [to_dev, to_ghost]

    # An error without an id from a host that names ids is not about any send.
    host.clear()
    host.feed({"type": "error", "code": "rate_limited", "message": "Slow down.",
               "ref": "broadcast"})
    assert not host.of(s.SendFailed)
    assert [(e.code, e.ref) for e in host.of(s.ErrorReceived)] == [("rate_limited", "broadcast")]

    # A refused message is sent again only when asked, with its id.
    session.retry(to_dev)
    assert [(f["type"], f["id"]) for f in host.sent()] == [("broadcast", to_dev)]


def test_a_protocol_1_host_without_ids_refuses_the_oldest_send_of_that_type_only():
    host = Host()
    host.join()  # no ``features`` in registered: a protocol-1 host
    assert host.session.host_negotiates is False and host.session.features == []
    first = host.session.send_message(s.p.Broadcast(text="one", id="b1"))
    whisper = host.session.send_message(s.p.Whisper(to="ghost", text="psst", id="w1"))
    host.clear()
    host.feed({"type": "error", "code": "no_such_user", "message": "No one.",
               "ref": "whisper"})
    assert [e.id for e in host.of(s.SendFailed)] == [whisper]
    assert host.session.failed_ids == [whisper] and first in host.session.pending_ids


def test_what_was_not_confirmed_goes_again_with_the_resume_and_fails_at_the_end():
    host = Host()
    host.join()
    host.sent()
    session = host.session
    waiting = session.send_message(s.p.Broadcast(text="in the air", id="m1"))
    host.run(session.connection_lost("the connection closed", host.now))
    host.now += 30
    host.run(session.reconnect_due(host.now))
    host.run(session.connection_made())
    host.feed(registered(resumed=True))
    assert [(f["type"], f.get("id")) for f in host.sent()] == \
        [("register", None), ("broadcast", waiting)]
    host.clear()
    host.feed({"type": "bye", "reason": "kicked"})
    assert [(e.id, e.code) for e in host.of(s.SendFailed)] == [(waiting, "not_connected")]
    assert [e.reason for e in host.of(s.Closed)] == ["kicked"]
    assert session.state is ClientState.CLOSED


# --- features ------------------------------------------------------------------------------


def test_features_offered_are_kept_as_the_host_accepted_them():
    host = Host(features=("files", "chess"))
    host.open()
    [register] = host.sent()
    assert register["features"] == ["files", "chess"]
    host.feed(registered(features=["chess", "edits"]))  # "edits" was never offered
    assert host.session.features == ["chess"] and host.session.host_negotiates
    assert host.session.has_feature("chess") and not host.session.has_feature("edits")


# --- keep-alive ----------------------------------------------------------------------------


def test_keepalive_pings_and_gives_up_on_a_host_silent_for_a_whole_period():
    host = Host(keepalive=10.0)
    host.join()
    host.sent()
    session = host.session
    host.now += 4  # the timer woke early: nothing yet, it waits for the rest
    host.run(session.keepalive_tick(host.now))
    assert host.sent() == [] and host.events[-1] == s.ArmTimer("keepalive", 6.0)
    host.now += 6
    host.run(session.keepalive_tick(host.now))
    [ping] = host.sent()
    assert ping["type"] == "ping"
    host.now += 10  # not a byte since the ping
    host.clear()
    host.run(session.keepalive_tick(host.now))
    assert [e.reason for e in host.of(s.ConnectionLost)] == ["the host stopped answering"]
    assert session.state is ClientState.RECONNECTING


def test_a_host_busy_sending_is_alive_though_its_pong_is_late():
    host = Host(keepalive=10.0)
    host.join()
    host.sent()
    session = host.session
    host.now += 10
    host.run(session.keepalive_tick(host.now))
    [ping] = host.sent()
    for _ in range(3):  # a long burst: bytes keep coming, the pong is behind them
        host.now += 10
        session.bytes_read()
        host.run(session.keepalive_tick(host.now))
    assert not host.of(s.ConnectionLost) and host.sent() == []  # no second ping either
    host.feed({"type": "pong", "token": ping["token"]})
    host.now += 10
    host.run(session.keepalive_tick(host.now))
    assert [f["type"] for f in host.sent()] == ["ping"]


def test_a_ping_flood_costs_one_pong_per_half_second():
    host = Host()
    host.join()
    host.sent()
    for i in range(50):
        host.feed({"type": "ping", "token": f"p{i}"})
    assert [f["token"] for f in host.sent()] == ["p49"]
    host.feed({"type": "ping", "token": "p50"})
    host.now += 0.2
    data, wait = host.session.pull_output(host.now)
    assert data == b"" and wait == pytest.approx(0.3)
    host.now += 0.3
    assert [f["token"] for f in host.sent()] == ["p50"]


# --- backoff and giving up -----------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_15_s_and_gives_up_after_the_grace():
    host = Host(give_up_after=60.0)
    host.join()
    session = host.session
    start = host.now
    host.run(session.connection_lost("the connection closed", host.now))
    assert [e.seconds for e in host.of(s.ArmTimer) if e.timer == "give_up"] == [60.0]
    delays = []
    for attempt in range(1, 9):
        [arm] = [e for e in host.of(s.ArmTimer) if e.timer == "reconnect"][-1:]
        delays.append(arm.seconds)
        assert [e.attempt for e in host.of(s.Reconnecting)][-1] == attempt
        host.now += arm.seconds
        host.run(session.reconnect_due(host.now))
        assert host.events[-1] == s.StartConnection()
        host.run(session.connection_failed(s.ConnectError("refused", "no"), retry=True,
                                           now=host.now))
    for n, delay in enumerate(delays):
        base = min(15.0, 0.25 * 2 ** n)
        assert 0.7 * base <= delay <= 1.3 * base
    assert not host.of(s.ConnectFailed)  # a reconnect that may succeed is not a failure
    host.clear()
    host.now = start + 59.0
    host.run(session.give_up_due(host.now))
    assert not host.of(s.ReconnectStopped)
    host.now = start + 60.0
    host.run(session.give_up_due(host.now))
    [stopped] = host.of(s.ReconnectStopped)
    assert stopped.sentence.startswith(f"Gave up reconnecting to {WHERE} after 60 s")
    assert session.state is ClientState.STOPPED and session.public_state == "disconnected"
    host.clear()
    host.run(session.reconnect_now(host.now))
    assert [e.attempt for e in host.of(s.Reconnecting)] == [1]
    assert session.state is ClientState.CONNECTING and host.events[-1] == s.StartConnection()


# --- a hostile host ------------------------------------------------------------------------


@pytest.mark.parametrize(("frame", "said"), [
    (message(2**53), "'seq'"),
    ({"type": "joined", "room": "r0", "users": [], "history": []}, "did not ask to join"),
    ({"type": "history", "room": "lobby", "messages": []}, "history we did not ask for"),
    (registered(session="again"), "'registered' a second time"),
    ({"type": "username_taken", "name": "alice"}, "'username_taken' after"),
    (b"\xff\xfe not json\n", "not a qtchat frame"),
])
def test_a_frame_that_breaks_the_protocol_ends_the_connection_and_says_what(frame, said):
    host = Host()
    host.join()
    host.clear()
    host.feed(frame, message(3, "behind it"))
    [broken] = host.of(s.ProtocolBroken)
    assert said in broken.error.message and WHERE in broken.error.message
    assert host.of(s.DropConnection) and not host.of(s.MessageReceived)
    assert host.session.state is ClientState.RECONNECTING


def test_unknown_types_and_fields_are_ignored():
    host = Host()
    host.join()
    host.clear()
    host.feed({"type": "future_thing", "x": 1}, message(4, "fine", extra={"new": True}))
    assert [e.message.text for e in host.of(s.MessageReceived)] == ["fine"]
    assert not host.of(s.ProtocolBroken)


def test_three_broken_connections_in_a_row_and_the_client_stops():
    host = Host()
    host.join()
    for _ in range(2):
        host.feed(message(-1))
        assert host.session.state is ClientState.RECONNECTING
        host.now += 1
        [arm] = [e for e in host.of(s.ArmTimer) if e.timer == "reconnect"][-1:]
        host.now += arm.seconds
        host.run(host.session.reconnect_due(host.now))
        host.run(host.session.connection_made())
        host.feed(registered(resumed=True))
    host.clear()
    host.feed(message(-1))
    [failed] = host.of(s.ConnectFailed)
    assert "3 times in a row" in failed.error.message
    assert host.session.state is ClientState.CLOSED


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)
_known = st.sampled_from(["registered", "broadcast", "whisper", "joined", "history",
                          "user_joined", "user_left", "left", "error", "ping", "pong", "bye",
                          "username_taken"])
_fields = st.sampled_from(["name", "session", "users", "rooms", "server", "room", "seq",
                           "ts", "from", "to", "text", "id", "history", "messages", "code",
                           "message", "ref", "reason", "token", "features", "retry_after"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda kind, body: wire({**body, "type": kind}), _known,
              st.dictionaries(_fields, _json, max_size=8)),
), max_size=8))
def test_whatever_a_host_sends_the_session_answers_with_events_never_a_crash(chunks):
    host = Host()
    host.join()
    for chunk in chunks:
        host.run(host.session.receive_data(chunk, host.now))
        host.now += 1
    assert host.session.state in s.TRANSITIONS
    for message in host.of(s.MessageReceived):  # only checked values reach the window
        assert isinstance(message.message.seq, int) and 0 <= message.message.seq < 2**53
