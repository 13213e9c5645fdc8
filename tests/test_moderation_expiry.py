"""Timed mutes and bans ending by themselves, on the core with a hand-advanced clock
(PROTOCOL-FEATURES §4): a mute that runs out is said with ``user_unmuted`` (``reason:
"expired"``) by the server's own sweep, to those who heard ``user_muted``; a ban that
runs out tells nobody (there is no frame for it) and leaves the ban list, stored."""

from __future__ import annotations

import pytest
from gui_harness import WAIT_MS
from test_moderation_core import ADMIN, MOD, FileNet, join, last

from qtchat.gui.moderation import unmute_notice
from qtchat.server.features.moderation import SWEEP_EVERY
from qtchat.server.identity import new_identity


@pytest.fixture
def net(tmp_path):
    made = FileNet(tmp_path / "history.db", admin_password=ADMIN, idle_timeout=3600.0)
    yield made
    made.store.close()


@pytest.fixture
def people(net):
    """Olga (an op), Mallory and Bob in the room ``den``; Cid in the lobby only."""
    owner, _ = join(net, "Root", "10.0.0.9:1", admin=ADMIN, features=MOD)
    cast = {"owner": owner}
    for name, peer in (("Olga", "10.0.0.2:1"), ("Mallory", "10.0.0.4:1"),
                       ("Bob", "10.0.0.5:1"), ("Cid", "10.0.0.6:1")):
        cast[name], answer = join(net, name, peer, identity=new_identity(), features=MOD)
        assert answer["type"] == "registered"
        if name != "Cid":
            cast[name].send(type="join", room="den")
    owner.send(type="set_role", name="Olga", role="op")
    for client in cast.values():
        client.new()
    return cast


def unmuted(client) -> list[dict]:
    """The ``user_unmuted`` frames since the last look, after a ping round trip (so that
    none is still on its way)."""
    client.send(type="ping", token="t")
    frames = client.new()
    assert frames[-1] == {"type": "pong", "token": "t"}
    return [f for f in frames if f["type"] == "user_unmuted"]


def test_a_room_mute_that_runs_out_is_said_to_the_room_by_the_sweep(net, people):
    olga, mallory, bob, cid = (people[n] for n in ("Olga", "Mallory", "Bob", "Cid"))
    olga.send(type="mute", name="Mallory", room="den", minutes=1)
    assert last(bob, "user_muted")["until"] is not None
    for client in people.values():
        client.new()
    net.advance(59)
    assert unmuted(bob) == [] and unmuted(mallory) == []
    mallory.send(type="broadcast", room="den", text="now?")
    assert last(mallory, "error")["code"] == "muted"
    net.advance(1 + SWEEP_EVERY)  # the sweep runs every few seconds
    said = {"type": "user_unmuted", "name": "Mallory", "room": "den", "by": "Olga",
            "reason": "expired"}
    assert unmuted(bob) == [said]
    assert unmuted(mallory) == [said]  # the muted person hears it too
    assert unmuted(olga) == [said]  # and whoever muted them
    assert unmuted(cid) == []  # not in den: never heard of the mute
    mallory.send(type="broadcast", room="den", text="back")
    assert last(bob, "broadcast")["text"] == "back"
    net.advance(10 * SWEEP_EVERY)
    assert unmuted(bob) == []  # said once


def test_a_server_mute_that_runs_out_is_said_around_the_person_and_survives_a_restart(
        net, people):
    olga, mallory = people["Olga"], people["Mallory"]
    olga.send(type="mute", name="Mallory", minutes=2)
    mallory.send(type="whisper", to="Bob", text="psst")
    assert last(mallory, "error")["code"] == "muted"
    net.advance(60)
    net.restart()  # the mute is stored; its end still comes by itself
    back = {}
    for name, peer in (("Mallory", "10.0.0.4:2"), ("Cid", "10.0.0.6:2")):
        back[name], answer = join(net, name, peer, resume=people[name].session, features=MOD)
        assert answer["resumed"] is True
    back["Mallory"].send(type="broadcast", room="lobby", text="still?")
    assert last(back["Mallory"], "error")["code"] == "muted"
    # The restarted core takes the wall clock afresh (the hand clock moved 60 s that the
    # real one did not): the 2 minutes are safely over 2 minutes after the restart.
    net.advance(120 + SWEEP_EVERY)
    said = {"type": "user_unmuted", "name": "Mallory", "by": "Olga", "reason": "expired"}
    assert unmuted(back["Cid"]) == [said]  # shares the lobby with her
    assert unmuted(back["Mallory"]) == [said]
    back["Mallory"].send(type="whisper", to="Cid", text="free")
    assert last(back["Cid"], "whisper")["text"] == "free"


def test_a_ban_that_runs_out_tells_nobody_and_leaves_the_ban_list(net, people):
    owner, olga = people["owner"], people["Olga"]
    olga.send(type="ban", name="Mallory", minutes=1)
    owner.send(type="ban_list")
    assert [b["name"] for b in last(owner, "ban_list")["bans"]] == ["Mallory"]
    for client in people.values():
        client.new()
    net.advance(60 + SWEEP_EVERY)
    for client in (owner, olga, people["Bob"]):  # nobody is told
        client.send(type="ping", token="t")
        assert client.new() == [{"type": "pong", "token": "t"}]
    owner.send(type="ban_list")
    assert last(owner, "ban_list")["bans"] == []
    assert list(net.store.rows("SELECT name FROM bans")) == []  # stored as lifted


def test_the_window_says_a_mute_ran_out_rather_than_that_someone_lifted_it():
    # by "": what ChatClient reports for user_unmuted {reason: "expired"}.
    assert unmute_notice("Mallory", "", "den") == \
        "Mallory may speak again in #den: the mute has run out."
    assert unmute_notice("Mallory", "", None, me=True) == \
        "You may speak again: the mute has run out."
    assert unmute_notice("Mallory", "Olga", "den") == "Olga let Mallory speak again in #den."


def test_a_client_hears_a_mute_run_out_with_no_one_named_over_sockets(qtbot, make_server,
                                                                      make_client):
    from test_moderation_client import owner_and_member

    server, owner, member = owner_and_member(qtbot, make_server, make_client)
    with qtbot.waitSignal(member.userMuted, timeout=WAIT_MS):
        owner.mute("Mallory", None, 1)
    moderation = server.core.moderation
    # The host's wall clock moves on two minutes (the core reads it as its own clock
    # plus an offset): the next sweep finds the mute over.
    moderation._offset += 120.0
    with qtbot.waitSignal(member.userUnmuted, timeout=WAIT_MS) as ended:
        pass
    assert ended.args == ["Mallory", "", ""]  # server-wide, and nobody lifted it
