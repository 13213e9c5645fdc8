"""The server's rules, driven through ``ServerCore`` directly: no sockets, no Qt, no sleeps.

``Net`` pairs a core with fake in-memory clients the way h11's tests pair two connection
objects: bytes a client sends go into ``ServerCore.feed``; each pass ends with
``end_pass`` and its out-lists are delivered to the fake clients, its actions carried out
as a transport would (a close, a reset, a pause of reading). The clock is a number the
test advances by hand, so a 120 s grace period takes no time at all.

The socket tests (test_server.py, test_limits.py, test_resume.py…) keep what needs a
real transport: framing over TCP, slow readers, descriptors, TLS, end-to-end paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from qtchat import protocol as p
from qtchat.protocol.server_frames import ServerPong
from qtchat.server.config import ServerConfig
from qtchat.server.core import CLOSE_GRACE, Do, ServerCore
from qtchat.server.domain import Connection, ConnState, StateError
from qtchat.server.features.base import Feature, handles
from qtchat.server.store import MessageStore, StorageError


class Handle:
    """What the adapter would pass to ``ServerCore.open``: a transport with a peer."""

    def __init__(self, peer: str) -> None:
        self.peer = peer


class FakeClient:
    """One client on an in-memory connection. ``window``: bytes its kernel buffer takes
    before the server's writes wait (None: it reads everything at once)."""

    def __init__(self, net: Net, peer: str, window: int | None) -> None:
        self.net = net
        self.conn: Connection = net.core.open(Handle(peer), net.now)
        self.window = window
        self.frames: list[dict[str, Any]] = []
        self.pos = 0  # frames before this were looked at (see new)
        self.unread = b""  # in its receive buffer, not yet parsed (window clients)
        self.partial = b""  # the start of a line not all received yet
        self.pending = b""  # what the server's transport holds for it (over the window)
        self.outbox = b""  # sent while the server does not read it (paused)
        self.paused = False
        self.closing = self.closed = self.was_reset = False
        self.name = ""
        self.session = ""
        net.clients[self.conn] = self

    # --- sending -----------------------------------------------------------------------

    def send(self, **frame: Any) -> None:
        self.send_raw(json.dumps(frame).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        assert not self.closed
        self.outbox += data
        self.net.pump(self)
        self.net.settle()

    def register(self, name: str, **fields: Any) -> dict[str, Any]:
        self.send(type="register", name=name, protocol=1, **fields)
        self.peek()
        answer = self.new()[0]
        if answer["type"] == "registered":
            self.name, self.session = answer["name"], answer["session"]
        return answer

    # --- receiving ---------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.window is None:
            self._parse(data)
            return
        room = max(0, self.window - len(self.unread)) if not self.pending else 0
        self.unread += data[:room]
        self.pending += data[room:]
        if self.pending:
            self.net.core.backlog(self.conn, len(self.pending), 0, self.net.now)

    def read(self) -> None:
        """Take everything waiting for it, here and with the server's transport."""
        self._parse(self.unread + self.pending)
        self.unread = self.pending = b""
        if self.closing:
            self.net.closed(self, reset=False)
        else:
            self.net.core.drained(self.conn, self.net.now)
        self.net.settle()

    def peek(self) -> None:
        """Parse what is in the buffer without freeing room for more."""
        self._parse(self.unread)
        self.unread = b""

    def _parse(self, data: bytes) -> None:
        """Whole lines become frames; a line cut short waits for the rest."""
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        self.frames += [p.parse_server_frame(line) for line in data[:cut].split(b"\n") if line]

    def new(self) -> list[dict[str, Any]]:
        """Frames that arrived since the last call."""
        frames, self.pos = self.frames[self.pos:], len(self.frames)
        return frames

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


class Net:
    """A ``ServerCore`` with a hand-advanced clock, and the fake clients it serves."""

    def __init__(self, *, features: tuple[Any, ...] = (), **config: Any) -> None:
        settings = {"host": "127.0.0.1", "port": 0, "rate_limit": 0.0, **config}
        self.config = ServerConfig(**settings)
        self.now = 1000.0
        self.store = MessageStore(None, retention=self.config.history_retention)
        self.core = ServerCore(self.config, self.store, now=self.now, features=features,
                               timestamp=lambda: "2026-12-03T12:00:00.000Z")
        self.clients: dict[Connection, FakeClient] = {}
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self.timers: list[tuple[float, FakeClient]] = []  # rate-limit pauses
        self.passes = 0
        self.high_water: dict[FakeClient, int] = {}  # most bytes out + pending, per client

    def client(self, peer: str = "10.0.0.1:5000", *, window: int | None = None) -> FakeClient:
        return FakeClient(self, peer, window)

    def registered(self, name: str, **fields: Any) -> FakeClient:
        client = self.client()
        assert client.register(name, **fields)["type"] == "registered"
        return client

    def pump(self, client: FakeClient) -> None:
        """Hand what the client sent to the core, unless the server is not reading it."""
        if client.outbox and not client.paused and client.conn.wants_input:
            data, client.outbox = client.outbox, b""
            self.core.feed(client.conn, data, self.now)

    def settle(self) -> None:
        """Run passes until the core has nothing left to do (as the event loop would)."""
        core = self.core
        for _ in range(10_000):
            while core.work():
                self._note_outstanding()
            self._note_outstanding()
            if not core.has_output:
                if not core.has_work:
                    return
                continue
            done = core.end_pass()
            self.passes += 1
            self.events += done.events
            for conn in done.dirty:
                if conn.out:
                    data = b"".join(conn.out)
                    conn.out.clear()
                    self.clients[conn].receive(data)
            for conn in done.watch:
                if not self.clients[conn].pending:
                    core.drained(conn, self.now)
            for action, conn, until in done.actions:
                client = self.clients[conn]
                if action is Do.CLOSE:
                    if client.pending:
                        client.closing = True  # once the peer has taken its last bytes
                    else:
                        self.closed(client, reset=False)
                elif action is Do.ABORT:
                    self.closed(client, reset=True)
                elif action is Do.PAUSE_READING:
                    client.paused = True
                    if until is not None:
                        self.timers.append((until, client))
                elif action is Do.RESUME_READING:
                    client.paused = False
                    self.pump(client)
        raise AssertionError("the core never settled")

    def _note_outstanding(self) -> None:
        for conn, client in self.clients.items():
            size = sum(map(len, conn.out)) + len(client.pending)
            if size > self.high_water.get(client, 0):
                self.high_water[client] = size

    def closed(self, client: FakeClient, *, reset: bool) -> None:
        if not client.closed:
            client.closed, client.was_reset = True, reset
            self.core.lost(client.conn, self.now)

    def drop(self, client: FakeClient) -> None:
        """The network drops ``client``: its transport reports the connection lost."""
        self.closed(client, reset=True)
        self.settle()

    def advance(self, seconds: float) -> None:
        """Let time pass: due rate-limit pauses end, then the sweep runs."""
        self.now += seconds
        due = [entry for entry in self.timers if entry[0] <= self.now]
        self.timers = [entry for entry in self.timers if entry[0] > self.now]
        for _until, client in due:
            self.core.budget_refilled(client.conn, self.now)
        self.core.tick(self.now)
        self.settle()
        for _until, client in due:
            self.pump(client)
        self.settle()


@pytest.fixture
def net():
    made = Net()
    yield made
    made.store.close()


def pings(count: int, prefix: str = "p", **extra: Any) -> bytes:
    return b"".join(json.dumps({"type": "ping", "token": f"{prefix}{i}", **extra}).encode()
                    + b"\n" for i in range(count))


# --- the rate limit ----------------------------------------------------------------------


def test_past_the_burst_frames_are_dropped_with_one_error_a_second_and_reading_pauses():
    net = Net(rate_limit=20.0, rate_burst=10)
    client = net.registered("Flood")  # registering took one frame of the burst
    client.new()
    client.send_raw(pings(40))
    frames = client.new()
    assert frames[0]["type"] == "error" and frames[0]["code"] == "rate_limited"
    assert "ref" not in frames[0] and "id" not in frames[0]  # about the pace, not a frame
    assert [f["token"] for f in frames[1:]] == [f"p{i}" for i in range(9)]  # the burst
    assert client.paused  # not read until a frame's worth of budget is back
    (until, _client), = net.timers
    assert until == pytest.approx(net.now + 1 / 20)
    client.send(type="ping", token="waits")
    assert client.new() == []  # TCP holds it meanwhile
    net.advance(0.051)  # (the adapter's timer fires a millisecond late too)
    assert [f["token"] for f in client.new()] == ["waits"]
    net.advance(0.5)  # half a second after the first error: dropped, not told again
    client.send_raw(pings(40, "q"))
    assert [f["type"] for f in client.new()] == ["pong"] * 10
    net.advance(0.55)  # more than a second after the first error: told again
    client.send_raw(pings(40, "r"))
    frames = client.new()
    assert frames[0]["code"] == "rate_limited" and len(frames) == 11
    assert not client.closed


def test_a_session_that_negotiated_features_hears_of_each_dropped_frame_with_an_id():
    """PROTOCOL-FEATURES §0: per-id ``rate_limited`` for a session that sent
    ``features``, even an empty list; the rest keep the one-error-a-second rule."""
    net = Net(rate_limit=20.0, rate_burst=5)
    modern = net.registered("Modern", features=[])
    plain = net.registered("Plain")
    flood = b"".join([
        *(json.dumps({"type": "broadcast", "text": f"m{i}", "id": f"m{i}"}).encode() + b"\n"
          for i in range(8)),
        b'{"type":"ping"}\n',  # no id: the once-a-second error covers it
        b'{"type":"ping","id":' + b'"' + b"x" * 65 + b'"}\n',  # an id that cannot be echoed
    ])
    for client in (modern, plain):
        client.new()
        client.send_raw(flood)
    errors = [f for f in modern.new() if f["type"] == "error"]
    assert [(e["code"], e.get("id"), e.get("ref")) for e in errors] == [
        *(("rate_limited", f"m{i}", "broadcast") for i in range(4, 8)),
        ("rate_limited", None, None)]
    errors = [f for f in plain.new() if f["type"] == "error"]
    assert [(e["code"], e.get("id")) for e in errors] == [("rate_limited", None)]
    # Within the same second a features session still gets its per-id answers.
    net.advance(0.2)
    modern.send_raw(b"".join(json.dumps({"type": "ping", "id": f"late{i}"}).encode() + b"\n"
                             for i in range(12)))
    errors = [f for f in modern.new() if f["type"] == "error"]
    assert errors and all(e["code"] == "rate_limited" and e["id"].startswith("late")
                          for e in errors)


# --- clocks: registration, keep-alive, grace -----------------------------------------------


def test_no_register_within_the_deadline_gets_not_registered_then_closed():
    net = Net(register_timeout=10.0)
    early = net.client()
    early.send(type="ping", token="still here")
    assert early.new() == [{"type": "pong", "token": "still here"}]
    net.advance(9.9)
    assert early.new() == [] and not early.closed
    net.advance(0.2)
    (error,) = early.new()
    assert error["code"] == "not_registered" and early.closed and not early.was_reset


def test_silence_gets_a_ping_and_no_answer_closes_with_timeout():
    net = Net(idle_timeout=30.0)
    watcher, quiet = net.registered("Watcher"), net.registered("Quiet")
    for client in (watcher, quiet):
        client.new()
    net.advance(29.0)
    assert quiet.new() == []
    watcher.send(type="ping")  # the watcher keeps talking
    net.advance(1.1)
    (ping,) = quiet.new()
    assert ping["type"] == "ping" and ping["token"]
    quiet.send(type="pong", token=ping["token"])
    net.advance(30.1)  # answered: kept, and pinged again once silent again
    assert [f["type"] for f in quiet.new()] == ["ping"]
    watcher.send(type="ping")
    net.advance(30.1)  # no answer this time
    assert quiet.new() == [{"type": "bye", "reason": "timeout"}]
    assert quiet.closed and not quiet.was_reset
    left = [f for f in watcher.new() if f["type"] == "user_left"]
    assert left == [{"type": "user_left", "name": "Quiet", "room": "lobby", "reason": "timeout"}]
    # A timeout is an unclean end: the session is held for its resume.
    back = net.client()
    assert back.register("Quiet", resume=quiet.session)["resumed"] is True


def test_after_the_grace_period_the_name_is_free_and_old_whispers_stay_with_the_old_session():
    net = Net(resume_grace=120.0)
    alice, bob = net.registered("Alice"), net.registered("Bob")
    net.drop(bob)
    assert [f for f in alice.new() if f["type"] == "user_left"][-1]["reason"] == "disconnected"
    alice.send(type="whisper", to="Bob", text="for old bob only")  # held: accepted
    assert alice.new()[-1]["type"] == "whisper"
    thief = net.client()
    assert thief.register("bob")["type"] == "username_taken"
    net.advance(119.0)
    assert "Bob" in net.core.held_names()
    net.advance(2.0)
    assert "Bob" not in net.core.held_names()
    new_bob = net.client()
    registered = new_bob.register("Bob")
    assert registered["resumed"] is False and registered["session"] != bob.session
    assert new_bob.new() == []
    # Even asking for everything from the beginning of time on the new session.
    again = net.client()
    assert again.register("Bob", resume=new_bob.session, since=0)["resumed"] is True
    assert again.of("whisper") == []
    # The old secret is unknown now: a plain registration, so the taken name is refused.
    stale = net.client()
    assert stale.register("Bob", resume=bob.session, since=0)["type"] == "username_taken"
    assert stale.register("Other", resume=bob.session)["resumed"] is False
    assert stale.of("whisper") == []


def test_a_close_the_peer_does_not_take_is_reset_after_its_grace():
    net = Net()
    stuck = net.client(window=64)
    stuck.send(type="register", name="Stuck", protocol=1)  # more than 64 bytes come back
    stuck.send(type="bye")
    assert stuck.closing and not stuck.closed
    assert stuck.conn.state is ConnState.CLOSING
    net.advance(CLOSE_GRACE - 0.5)
    assert not stuck.closed
    net.advance(1.0)
    assert stuck.closed and stuck.was_reset
    assert stuck.conn.state is ConnState.GONE


# --- a resume's replay ---------------------------------------------------------------------


def test_a_replay_is_fed_as_the_reader_takes_it_and_what_it_sends_waits_for_it():
    net = Net()
    alice, bystander = net.registered("Alice"), net.registered("Bystander")
    bob = net.registered("Bob")
    since = net.store.last_seq
    net.drop(bob)
    count = 3000
    alice.send_raw(b"".join(json.dumps({"type": "broadcast", "text": f"{i} " + "x" * 200})
                            .encode() + b"\n" for i in range(count)))
    new_bob = net.client(window=16 * 1024)
    assert new_bob.register("Bob", resume=bob.session, since=since)["resumed"] is True
    assert new_bob.conn.state is ConnState.REPLAYING
    new_bob.send(type="ping", token="behind the replay")
    bystander.new()
    bystander.send(type="ping", token="between turns")
    assert bystander.new() == [{"type": "pong", "token": "between turns"}]
    budget = max(64 * 1024, net.config.send_queue_bytes // 4)
    turns = 0
    while new_bob.conn.state is ConnState.REPLAYING:
        turns += 1
        assert turns < 1000
        new_bob.read()
    new_bob.read()
    texts = [f["text"].split()[0] for f in new_bob.of("broadcast")]
    assert texts == [str(i) for i in range(count)]  # all, in order, once
    assert new_bob.of("pong") == [{"type": "pong", "token": "behind the replay"}]
    pong_at = new_bob.frames.index(new_bob.of("pong")[0])
    assert all(f["type"] != "broadcast" for f in new_bob.frames[pong_at:])  # after them all
    # Never more queued than the replay budget (plus the frame that crossed it): a long
    # replay cannot trip the send-queue cap, however slowly the peer reads.
    assert net.high_water[new_bob] <= budget + 300
    replayed = sum(len(json.dumps(f)) for f in new_bob.of("broadcast"))
    assert turns >= replayed // budget  # so it took the reader that many reads
    alice.send(type="broadcast", text="live after")
    new_bob.read()
    assert new_bob.of("broadcast")[-1]["text"] == "live after"


# --- negotiation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Poke(p.ClientFrame):
    """A made-up client frame of a made-up negotiated feature."""

    type: ClassVar[str] = "poke"
    _required: ClassVar[tuple[str, ...]] = ("who",)
    who: str

    def __post_init__(self) -> None:
        if not isinstance(self.who, str):
            raise p.LocalProtocolError("bad_frame", "who must be a string")


class PokeFeature(Feature):
    name = "poke"

    @handles(Poke)
    def _poke(self, conn: Connection, frame: Poke) -> None:
        self.core.queue(conn, ServerPong(token=f"poked {frame.who}").encode())


@pytest.fixture
def poke_net(monkeypatch):
    monkeypatch.setitem(p.CLIENT_FRAME_TYPES, "poke", Poke)
    made = Net(features=(PokeFeature,))
    yield made
    made.store.close()


def test_registered_lists_the_features_accepted_and_only_to_who_asked(poke_net):
    asked = poke_net.client()
    assert asked.register("Asked", features=["poke", "teleport", "poke"])["features"] == ["poke"]
    empty = poke_net.client()
    assert empty.register("Empty", features=[])["features"] == []
    old = poke_net.client()
    assert "features" not in old.register("Old")


def test_a_features_frame_is_unknown_to_a_session_that_did_not_accept_it(poke_net):
    early = poke_net.client()
    early.send(type="poke", who="x", id="e1")  # before register: as from a server without it
    (error,) = early.new()
    assert (error["code"], error["ref"], error["id"]) == ("unknown_type", "poke", "e1")
    asked = poke_net.registered("Asked", features=["poke"])
    old, empty = poke_net.registered("Old"), poke_net.registered("Empty", features=[])
    for client in (asked, old, empty):
        client.new()
        client.send(type="poke", who="you", id="k1")
        client.send(type="poke", who=5, id="k2")  # malformed
    assert asked.new() == [
        {"type": "pong", "token": "poked you"},
        {"type": "error", "code": "bad_frame", "message": "who must be a string",
         "ref": "poke", "id": "k2"}]
    for client in (old, empty):
        assert [(f["code"], f["ref"], f["id"]) for f in client.new()] == [
            ("unknown_type", "poke", "k1"), ("unknown_type", "poke", "k2")]
    # The features are the connection's: a resume negotiates again.
    again = poke_net.client()
    assert "features" not in again.register("Asked", resume=asked.session)
    again.send(type="poke", who="me")
    assert again.new()[-1]["code"] == "unknown_type"


def test_two_modules_cannot_handle_one_frame_type():
    class Rival(Feature):
        @handles(p.Ping)
        def _ping(self, conn: Connection, frame: p.Ping) -> None:
            pass

    with pytest.raises(ValueError, match="'ping' is handled by"):
        Net(features=(Rival,))


# --- the veto on posting (moderation's hook) -------------------------------------------------


class Muting(Feature):
    """Refuses what ``Muted`` posts: what a moderation module will do with a mute."""

    def may_post(self, conn, session, target, text):
        if session.name.display == "Muted":
            return ("muted", "You are muted here.")
        return None


def test_a_veto_refuses_a_message_before_it_is_stored_or_sent():
    net = Net(features=(Muting,))
    muted, other = net.registered("Muted"), net.registered("Other")
    for client in (muted, other):
        client.new()
    before = net.store.last_seq
    muted.send(type="broadcast", text="hello", id="b1")
    muted.send(type="whisper", to="Other", text="psst", id="w1")
    assert [(f["code"], f["ref"], f["id"]) for f in muted.new()] == [
        ("muted", "broadcast", "b1"), ("muted", "whisper", "w1")]
    assert other.new() == [] and net.store.last_seq == before
    other.send(type="broadcast", text="not muted")
    assert muted.new()[0]["text"] == "not muted"


# --- errors name their frame -----------------------------------------------------------------


def test_errors_from_every_rule_carry_the_frames_id(net):
    client = net.registered("Asker")
    client.new()
    client.send(type="history", room="nowhere", id="h1")
    client.send(type="join", room="somewhere", id="j1")
    client.send(type="leave", room="lobby", id="l1")
    client.send(type="leave", room="elsewhere", id="l2")
    client.send(type="register", name="Again", protocol=1, id="r1")
    client.send(type="history", room="somewhere", id="h2", limit=999)
    errors = [f for f in client.new() if f["type"] == "error"]
    assert [(e["code"], e["ref"], e.get("id")) for e in errors] == [
        ("no_such_room", "history", "h1"), ("not_in_room", "leave", "l1"),
        ("no_such_room", "leave", "l2"), ("already_registered", "register", "r1"),
        ("bad_frame", "history", "h2")]


# --- stored before sent ----------------------------------------------------------------------


def test_nothing_leaves_before_end_pass_and_end_pass_commits_first(net):
    alice, bob = net.registered("Alice"), net.registered("Bob")
    alice.new(), bob.new()
    net.core.feed(alice.conn, b'{"type":"broadcast","text":"one"}\n', net.now)
    assert net.store.has_uncommitted_messages and bob.conn.out  # queued, not sent
    shared = bob.conn.out[0]
    assert alice.conn.out[0] is shared  # encoded once: the same bytes object
    done = net.core.end_pass()
    assert not net.store.has_uncommitted_messages  # committed before anything is handed over
    assert {alice.conn, bob.conn} <= set(done.dirty)
    (_signal, (posted,)), = [e for e in done.events if e[0] == "messagesPosted"]
    assert [m.text for m in posted] == ["one"]


def test_a_failed_commit_takes_every_copy_back_and_tells_the_sender(net, monkeypatch):
    alice, bob = net.registered("Alice"), net.registered("Bob")
    alice.new(), bob.new()

    def full_disk(*, messages_only: bool = False) -> bool:
        lost = net.store._roll_back()
        raise StorageError("database or disk is full", lost)

    monkeypatch.setattr(net.store, "commit", full_disk)
    alice.send(type="broadcast", text="lost", id="x1")
    assert bob.new() == []
    (error,) = alice.new()
    assert (error["code"], error["ref"], error["id"]) == ("storage_error", "broadcast", "x1")
    assert not [e for e in net.events if e[0] == "messagesPosted"]


# --- the connection's states -------------------------------------------------------------------


def test_a_connection_goes_through_its_states_by_the_table_only(net):
    alice = net.client()
    assert alice.conn.state is ConnState.NEW
    alice.register("Alice")
    assert alice.conn.state is ConnState.LIVE
    with pytest.raises(StateError):
        alice.conn.to(ConnState.REGISTERED)
    net.drop(alice)
    assert alice.conn.state is ConnState.GONE
    back = net.client()
    back.register("Alice", resume=alice.session)
    assert back.conn.state is ConnState.LIVE  # replayed (nothing) and live
    back.send(type="bye")
    assert back.conn.state is ConnState.GONE and back.closed and not back.was_reset
