"""Identity and moderation (PROTOCOL-FEATURES §1, §4) through ``ServerCore`` directly: fake
clients, a hand-advanced clock (30 days take no time), a history file for restarts.

The socket tests in test_moderation_server.py show the same rules end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_core_rules import FakeClient, Net

from qtchat.server.core import ServerCore
from qtchat.server.identity import new_identity
from qtchat.server.store import MessageStore

DAY = 86_400.0
ADMIN = "correct horse battery"
MOD = ["moderation"]


class FileNet(Net):
    """``Net`` over a history file, so that a test can stop the server and start another
    on the same file (``restart``) with the same clock."""

    def __init__(self, path: Path, **config: Any) -> None:
        self.path = path
        super().__init__(**config)
        self.store.close()
        self._start()

    def _start(self) -> None:
        self.store = MessageStore(self.path, retention=self.config.history_retention)
        self.core = ServerCore(self.config, self.store, now=self.now,
                               timestamp=lambda: "2026-12-03T12:00:00.000Z")
        self.clients = {}

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop the server cleanly and start another on the same file ``down_for``
        seconds later (time the host was down)."""
        self.core.shutdown()
        self.settle()
        self.store.close()
        self.now += down_for
        self._start()


def join(net: Net, name: str, peer: str, **fields: Any) -> tuple[FakeClient, dict[str, Any]]:
    client = net.client(peer)
    answer = client.register(name, **fields)
    return client, answer


def last(client: FakeClient, kind: str) -> dict[str, Any]:
    frames = client.of(kind)
    assert frames, f"no {kind} among {[f['type'] for f in client.frames]}"
    return frames[-1]


@pytest.fixture
def net(tmp_path):
    made = FileNet(tmp_path / "history.db", admin_password=ADMIN)
    yield made
    made.store.close()


# --- a name that stays yours ---------------------------------------------------------------


def test_a_name_is_kept_for_its_identity_across_a_restart_and_lapses_after_the_days(net):
    alice_id = new_identity()
    alice, answer = join(net, "Alice", "10.0.0.1:1", identity=alice_id)
    assert answer["type"] == "registered" and answer["identity"] is True
    alice.send(type="bye")
    net.advance(200)  # past the resume grace period: the session is gone
    net.restart()
    for fields in ({}, {"identity": new_identity()}):  # no identity, or another one
        _other, refused = join(net, "alice", "10.0.0.2:1", **fields)  # and a look-alike
        assert refused == {"type": "username_taken", "name": "alice", "reason": "reserved"}
    _back, again = join(net, "Alice", "10.0.0.1:2", identity=alice_id)
    assert again["type"] == "registered" and again["identity"] is True
    _back.send(type="bye")
    net.advance(29 * DAY)
    assert join(net, "Alice", "10.0.0.3:1")[1]["reason"] == "reserved"
    net.advance(1.01 * DAY)  # 30 days without that identity
    assert join(net, "Alice", "10.0.0.3:2")[1]["type"] == "registered"


def test_a_protocol_1_client_without_identity_keeps_its_old_answers(net):
    _bob, answer = join(net, "Bob", "10.0.0.1:1")
    assert answer["type"] == "registered" and "identity" not in answer and "roles" not in answer
    assert join(net, "bob", "10.0.0.2:1")[1] == {"type": "username_taken", "name": "bob"}


def test_a_fresh_register_with_the_holding_identity_ends_its_previous_session(net):
    me = new_identity()
    first, _ = join(net, "Carol", "10.0.0.1:1", identity=me)
    watcher, _ = join(net, "Dave", "10.0.0.2:1")
    _second, answer = join(net, "Carol", "10.0.0.1:2", identity=me)
    assert answer["type"] == "registered" and answer["resumed"] is False
    assert last(first, "bye")["reason"] == "replaced" and first.closed
    kinds = [(f["type"], f["name"]) for f in watcher.frames if f["type"].startswith("user_")]
    assert kinds[-2:] == [("user_left", "Carol"), ("user_joined", "Carol")]


def test_an_identity_that_is_not_random_enough_is_a_bad_frame(net):
    _c, answer = join(net, "Eve", "10.0.0.1:1", identity="a" * 40)
    assert answer["type"] == "error" and answer["code"] == "bad_frame"


# --- the owner ----------------------------------------------------------------------------


def test_the_admin_secret_makes_the_owner_and_five_wrong_ones_lock_the_address(net):
    _owner, answer = join(net, "Root", "10.0.0.9:1", admin=ADMIN, features=MOD)
    assert answer["role"] == "owner" and answer["roles"] == {"Root": "owner"}
    for attempt in range(5):
        guesser, refused = join(net, f"G{attempt}", "10.0.0.7:1", admin="guess")
        assert refused["code"] == "wrong_password" and guesser.closed
    locked, refused = join(net, "G5", "10.0.0.7:1", admin=ADMIN)
    assert refused["code"] == "rate_limited" and locked.closed
    net.advance(15 * 60 + 1)
    assert join(net, "G6", "10.0.0.7:1", admin=ADMIN, features=MOD)[1]["role"] == "owner"


# --- kick, ban, mute, roles -------------------------------------------------------------


@pytest.fixture
def cast(net):
    """The owner, an op (Olga), another op (Oscar), a member (Mallory) and a bystander,
    all in the room ``den``."""
    people = {}
    net.ids = {}
    people["owner"], _ = join(net, "Root", "10.0.0.9:1", admin=ADMIN, features=MOD)
    for who, name, peer in (("olga", "Olga", "10.0.0.2:1"), ("oscar", "Oscar", "10.0.0.3:1"),
                            ("mallory", "Mallory", "10.0.0.4:1"),
                            ("bob", "Bob", "10.0.0.5:1")):
        net.ids[name] = new_identity()
        people[who], answer = join(net, name, peer, identity=net.ids[name], features=MOD)
        assert answer["type"] == "registered"
    for client in people.values():
        client.send(type="join", room="den")
    people["owner"].send(type="set_role", name="Olga", role="op")
    people["owner"].send(type="set_role", name="Oscar", role="op")
    assert last(people["bob"], "user_role") == {"type": "user_role", "name": "Oscar",
                                                "role": "op", "by": "Root"}
    for client in people.values():
        client.new()
    return people


def test_the_owner_kicks_from_a_room_and_from_the_server(net, cast):
    owner, mallory, bob = cast["owner"], cast["mallory"], cast["bob"]
    owner.send(type="kick", name="Mallory", room="den", reason="spam")
    assert last(mallory, "left") == {"type": "left", "room": "den", "reason": "kicked",
                                     "by": "Root", "text": "spam"}
    assert last(bob, "user_left") == {"type": "user_left", "name": "Mallory", "room": "den",
                                      "reason": "kicked", "by": "Root", "text": "spam"}
    assert not mallory.closed
    bob.new()
    owner.send(type="kick", name="Mallory")
    assert last(mallory, "bye")["reason"] == "kicked" and mallory.closed
    # Told once per room, saying who did it (not a second, bare "kicked" from the close).
    assert [(f["room"], f.get("by")) for f in bob.new() if f["type"] == "user_left"] == \
        [("lobby", "Root")]
    # Kicked from the server ends the session: no resume.
    back = net.client("10.0.0.4:2")
    answer = back.register("Mallory", resume=mallory.session, identity=net.ids["Mallory"])
    assert answer["resumed"] is False


def test_an_op_cannot_act_on_another_op_nor_on_the_owner_and_members_on_nobody(net, cast):
    olga, mallory = cast["olga"], cast["mallory"]
    for frame in ({"type": "kick", "name": "Oscar"}, {"type": "ban", "name": "Oscar"},
                  {"type": "mute", "name": "Oscar"}, {"type": "kick", "name": "Root"},
                  {"type": "set_role", "name": "Bob", "role": "op"}):
        olga.send(**frame, id="x")
        error = last(olga, "error")
        assert (error["code"], error["ref"], error["id"]) == ("not_permitted", frame["type"],
                                                              "x")
    for frame in ({"type": "kick", "name": "Bob"}, {"type": "ban_list"},
                  {"type": "room_mode", "room": "den", "moderated": True},
                  {"type": "release_name", "name": "Bob"}):
        mallory.send(**frame)
        assert last(mallory, "error")["code"] == "not_permitted"
    assert not cast["oscar"].closed and not cast["owner"].closed and not cast["bob"].of("bye")


def test_a_ban_holds_the_name_skeleton_identity_and_address_and_lifts_at_its_time(net, cast):
    owner, olga, mallory = cast["owner"], cast["olga"], cast["mallory"]
    olga.send(type="ban", name="Mallory", minutes=60, reason="flooding")
    assert last(mallory, "bye")["reason"] == "banned" and mallory.closed
    for name, peer in (("MaIIory", "10.0.1.1:1"),  # capital I for l: the same skeleton
                       ("Someone", "10.0.0.4:7")):  # the address
        client, refused = join(net, name, peer)
        assert refused["type"] == "error" and refused["code"] == "banned" and client.closed
        assert refused["until"].endswith("Z")
    owner.send(type="ban_list", id="b")
    listed = last(owner, "ban_list")
    assert listed["id"] == "b" and [b["name"] for b in listed["bans"]] == ["Mallory"]
    assert listed["bans"][0]["reason"] == "flooding" and listed["bans"][0]["by"] == "Olga"
    net.advance(61 * 60)
    assert join(net, "Mallory", "10.0.0.4:8", identity=net.ids["Mallory"])[1]["type"] == \
        "registered"


def test_a_ban_until_lifted_survives_a_restart_and_unban_lifts_it(net, cast):
    cast["owner"].send(type="ban", name="Mallory", minutes=0)
    net.restart()
    _m, refused = join(net, "Mallory", "10.0.5.5:1")
    assert refused["code"] == "banned" and refused["until"] is None and "until" in refused
    owner, _ = join(net, "Root2", "10.0.0.9:2", admin=ADMIN, features=MOD)
    owner.send(type="unban", name="mallory")
    assert join(net, "Mallory", "10.0.5.5:2", identity=net.ids["Mallory"])[1]["type"] == \
        "registered"


def test_the_right_admin_secret_is_never_refused_by_a_ban(net, cast):
    cast["owner"].send(type="ban", name="Bob")
    _r, answer = join(net, "Root2", "10.0.0.5:9", admin=ADMIN)  # Bob's banned address
    assert answer["type"] == "registered"


def test_a_muted_person_cannot_broadcast_nor_whisper_and_others_hear_of_it(net, cast):
    olga, mallory, bob = cast["olga"], cast["mallory"], cast["bob"]
    olga.send(type="mute", name="Mallory", room="den", minutes=5)
    assert last(bob, "user_muted")["room"] == "den"
    mallory.send(type="broadcast", room="den", text="hi", id="m1")
    assert last(mallory, "error")["code"] == "muted"
    mallory.send(type="broadcast", room="lobby", text="still here")  # a room mute: den only
    mallory.send(type="whisper", to="Bob", text="psst")
    assert [f["text"] for f in bob.frames if f["type"] in ("broadcast", "whisper")] == \
        ["still here", "psst"]
    olga.send(type="mute", name="Mallory")  # a server mute covers whispers too
    mallory.new()
    mallory.send(type="whisper", to="Bob", text="psst again")
    assert [f["code"] for f in mallory.new() if f["type"] == "error"] == ["muted"]
    olga.send(type="unmute", name="Mallory")
    olga.send(type="unmute", name="Mallory", room="den")
    assert last(bob, "user_unmuted")["by"] == "Olga"
    mallory.send(type="broadcast", room="den", text="back")
    assert last(bob, "broadcast")["text"] == "back"


def test_topic_and_a_moderated_room_with_a_locked_topic(net, cast):
    owner, olga, bob = cast["owner"], cast["olga"], cast["bob"]
    bob.send(type="topic", room="den", text="Plans for <b>Friday</b>")
    topic = last(owner, "topic")
    assert (topic["room"], topic["text"], topic["by"]) == ("den", "Plans for <b>Friday</b>",
                                                           "Bob")
    olga.send(type="room_mode", room="den", moderated=True, topic_locked=True)
    assert last(bob, "room_mode") == {"type": "room_mode", "room": "den", "moderated": True,
                                      "topic_locked": True, "by": "Olga"}
    bob.send(type="topic", room="den", text="mine now")
    bob.send(type="broadcast", room="den", text="hello?")
    assert [f["code"] for f in bob.new() if f["type"] == "error"] == ["not_permitted"] * 2
    olga.send(type="broadcast", room="den", text="ops speak")
    assert last(bob, "broadcast")["text"] == "ops speak"
    late, _ = join(net, "Late", "10.0.0.8:1", identity=new_identity(), features=MOD)
    late.send(type="join", room="den")
    joined = last(late, "joined")
    assert joined["topic"]["text"] == "Plans for <b>Friday</b>"
    assert joined["mode"] == {"moderated": True, "topic_locked": True}
    assert joined["roles"] == {"Root": "owner", "Olga": "op", "Oscar": "op"}


def test_release_name_frees_a_reserved_name_for_someone_else(net, cast):
    cast["bob"].send(type="bye")
    net.advance(1)
    assert join(net, "Bob", "10.0.3.3:1")[1]["reason"] == "reserved"
    cast["owner"].send(type="release_name", name="Bob")
    assert join(net, "Bob", "10.0.3.3:2")[1]["type"] == "registered"


def test_moderation_frames_from_a_session_that_did_not_ask_are_unknown(net):
    plain, _ = join(net, "Plain", "10.0.0.1:1", admin=ADMIN)  # the owner, without the feature
    plain.send(type="kick", name="Plain")
    assert last(plain, "error")["code"] == "unknown_type"


def test_ops_are_kept_by_identity_across_a_restart(net, cast):
    secret = cast["olga"].session
    net.restart()
    olga = net.client("10.0.0.2:2")
    answer = olga.register("Olga", resume=secret, features=MOD)
    assert answer["resumed"] is True and answer["role"] == "op"
    net.advance(1)
    mallory, _ = join(net, "Mallory", "10.0.0.4:2", resume=cast["mallory"].session)
    olga.send(type="kick", name="Mallory")
    assert mallory.closed and not olga.of("error")
