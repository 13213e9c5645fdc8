"""The client side of identity and moderation: ChatClient against an in-process
ChatServer over real sockets (signals, the sentences people read, no reconnect loop)."""

from __future__ import annotations

from test_client import WAIT, endpoint, join, round_trip

from qtchat.server.identity import new_identity

ADMIN = "owner's secret"


def owner_and_member(qtbot, make_server, make_client):
    server = make_server(admin_password=ADMIN)
    owner = make_client()
    owner.admin = ADMIN
    join(qtbot, owner, server, "Host")
    member = make_client()
    member.identity = new_identity()
    join(qtbot, member, server, "Mallory")
    return server, owner, member


def test_the_owner_is_told_its_role_and_roles_reach_the_others(qtbot, make_server,
                                                                make_client):
    _server, owner, member = owner_and_member(qtbot, make_server, make_client)
    assert owner.role == "owner" and member.role == "member"
    with qtbot.waitSignal(member.roleChanged, timeout=WAIT) as changed:
        owner.set_role("Mallory", "op")
    assert changed.args == ["Mallory", "op", "Host"]
    assert member.role == "op" and member.roles()["Mallory"] == "op"


def test_a_kicked_client_is_told_by_whom_and_why_and_does_not_reconnect(
        qtbot, make_server, make_client):
    _server, owner, member = owner_and_member(qtbot, make_server, make_client)
    attempts = []
    member.reconnecting.connect(lambda attempt, reason: attempts.append(attempt))
    with qtbot.waitSignal(member.removed, timeout=WAIT) as removed, \
            qtbot.waitSignal(member.closed, timeout=WAIT) as closed:
        owner.kick("Mallory", reason="take a break")
    assert removed.args == ["", "kicked", "Host", "take a break", ""]
    assert closed.args == ["kicked"]
    round_trip(qtbot, owner)
    assert member.state == "disconnected" and attempts == []


def test_mute_topic_and_room_kick_signals(qtbot, make_server, make_client):
    _server, owner, member = owner_and_member(qtbot, make_server, make_client)
    with qtbot.waitSignal(member.userMuted, timeout=WAIT) as muted:
        owner.mute("Mallory", minutes=5)
    assert muted.args[:3] == ["Mallory", "", "Host"] and muted.args[3].endswith("Z")
    with qtbot.waitSignal(member.sendFailed, timeout=WAIT) as failed:
        member.send_whisper("Host", "let me speak")
    assert failed.args[1] == "muted" and "muted" in failed.args[2]
    with qtbot.waitSignal(member.topicChanged, timeout=WAIT) as topic:
        owner.set_topic("lobby", "Release on <i>Friday</i>")
    assert topic.args == ["lobby", "Release on <i>Friday</i>", "Host"]
    assert member.topic() == "Release on <i>Friday</i>"
    for client in (owner, member):
        with qtbot.waitSignal(client.roomJoined, timeout=WAIT):
            client.join("den")
    with qtbot.waitSignal(member.removed, timeout=WAIT) as removed:
        owner.kick("Mallory", room="den", reason="off topic")
    assert removed.args == ["den", "kicked", "Host", "off topic", ""]
    assert "den" not in member.rooms and member.state == "connected"


def test_a_reserved_name_and_a_ban_are_sentences(qtbot, make_server, make_client):
    server, owner, member = owner_and_member(qtbot, make_server, make_client)
    plain = make_client()
    with qtbot.waitSignal(plain.usernameTaken, timeout=WAIT):
        plain.open(endpoint(server), "Host")
    assert plain.taken_reason is None  # in use by the host, who has no identity
    other = make_client()
    member.close()
    qtbot.waitUntil(lambda: "Mallory" not in server.held_names(), timeout=WAIT)
    with qtbot.waitSignal(other.usernameTaken, timeout=WAIT):
        other.open(endpoint(server), "mallory")
    assert other.taken_reason == "reserved"
    other.close()
    owner.ban("Mallory", reason="spam")  # not present: the name and its identity
    round_trip(qtbot, owner)
    again = make_client()
    again.identity = member.identity
    with qtbot.waitSignal(again.connectFailed, timeout=WAIT) as failed:
        again.open(endpoint(server), "Mallory")
    error = failed.args[0]
    assert error.kind == "banned" and "until the ban is lifted" in str(error)
