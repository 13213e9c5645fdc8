"""Moderation's rules (PROTOCOL-FEATURES.md §4) in qtchat.server.moderation: the
permission table, bans, mutes, room modes and topics, with a hand-advanced clock."""

from __future__ import annotations

import pytest

from qtchat.names import parse_name
from qtchat.protocol import LocalProtocolError
from qtchat.server.identity import hash_identity, new_identity
from qtchat.server.moderation import (
    MAX_TOPIC_CHARS,
    MEMBER,
    OP,
    OWNER,
    BanList,
    Mutes,
    Roles,
    RoomMode,
    RoomModes,
    check,
    check_topic,
    iso_time,
    speech_refusal,
)

T0 = 1_800_000_000.0
MINUTE = 60.0
CAROL_ID, MALLORY_ID = hash_identity(new_identity()), hash_identity(new_identity())

# --- who may do what --------------------------------------------------------------------------

ON_PERSON = ("kick", "ban", "mute", "unmute")


@pytest.mark.parametrize("action", ON_PERSON)
@pytest.mark.parametrize("actor", [OWNER, OP, MEMBER])
def test_nobody_can_act_on_the_owner(actor, action):
    assert check(actor, action, OWNER) == "not_permitted"


@pytest.mark.parametrize("action", ON_PERSON)
def test_an_op_cannot_act_on_another_op_but_the_owner_can(action):
    assert check(OP, action, OP) == "not_permitted"
    assert check(OWNER, action, OP) is None


@pytest.mark.parametrize("action", ON_PERSON)
def test_ops_and_the_owner_act_on_members_and_members_do_not(action):
    assert check(OWNER, action, MEMBER) is None
    assert check(OP, action, MEMBER) is None
    assert check(MEMBER, action, MEMBER) == "not_permitted"


@pytest.mark.parametrize("action", ["unban", "ban_list", "room_mode", "delete_others"])
def test_staff_only_actions(action):
    assert check(OWNER, action) is None
    assert check(OP, action) is None
    assert check(MEMBER, action) == "not_permitted"


@pytest.mark.parametrize("action", ["set_role", "release_name"])
def test_owner_only_actions(action):
    assert check(OWNER, action, MEMBER) is None
    assert check(OP, action, MEMBER) == "not_permitted"
    assert check(MEMBER, action, MEMBER) == "not_permitted"


def test_the_owner_demotes_an_op_but_nobody_changes_the_owners_role():
    assert check(OWNER, "set_role", OP) is None
    assert check(OWNER, "set_role", OWNER) == "not_permitted"


@pytest.mark.parametrize("actor", [OWNER, OP, MEMBER])
def test_anyone_sets_an_unlocked_topic_and_speaks_in_an_unmoderated_room(actor):
    assert check(actor, "topic", mode=RoomMode()) is None
    assert check(actor, "speak", mode=RoomMode()) is None
    assert check(actor, "speak", mode=RoomMode(topic_locked=True)) is None


def test_a_locked_topic_and_a_moderated_room_are_for_ops_and_the_owner():
    locked, moderated = RoomMode(topic_locked=True), RoomMode(moderated=True)
    assert check(MEMBER, "topic", mode=locked) == "not_permitted"
    assert check(OP, "topic", mode=locked) is None
    assert check(OWNER, "topic", mode=locked) is None
    assert check(MEMBER, "speak", mode=moderated) == "not_permitted"
    assert check(OP, "speak", mode=moderated) is None
    assert check(OWNER, "speak", mode=moderated) is None
    assert check(MEMBER, "topic", mode=moderated) is None  # moderation does not lock it


def test_an_unknown_action_is_a_bug_not_a_refusal():
    with pytest.raises(KeyError):
        check(OWNER, "nuke")


def test_roles_are_kept_by_identity_and_round_trip():
    roles = Roles()
    assert roles.role_of(CAROL_ID) == MEMBER
    assert roles.set_role(CAROL_ID, OP)
    assert not roles.set_role(CAROL_ID, OP)  # no change, nothing to announce
    assert roles.role_of(CAROL_ID) == OP
    assert roles.role_of(None) == MEMBER
    assert roles.role_of(None, owner=True) == OWNER
    again = Roles.from_records(roles.to_records())
    assert again.role_of(CAROL_ID) == OP and again.role_of(MALLORY_ID) == MEMBER
    assert again.set_role(CAROL_ID, MEMBER)
    assert again.role_of(CAROL_ID) == MEMBER
    with pytest.raises(ValueError):
        roles.set_role(CAROL_ID, OWNER)


# --- bans ----------------------------------------------------------------------------------


def ban_mallory(bans: BanList, minutes: int | None, now: float = T0):
    return bans.add(parse_name("Mallory"), identity=MALLORY_ID, address="10.0.0.66",
                    minutes=minutes, by="Carol", reason="spamming", now=now)


def test_a_ban_catches_the_identity_the_address_and_the_name():
    bans = BanList()
    ban_mallory(bans, 10)
    other = parse_name("Eve")
    assert bans.match(identity=MALLORY_ID, address="10.0.0.9", name=other, now=T0)
    assert bans.match(identity=None, address="10.0.0.66", name=other, now=T0)
    assert bans.match(identity=None, address="10.0.0.9", name=parse_name("mallory"), now=T0)
    assert bans.match(identity=CAROL_ID, address="10.0.0.9", name=other, now=T0) is None


def test_a_ban_by_skeleton_catches_a_confusable_name():
    bans = BanList()
    bans.add(parse_name("papa"), identity=None, address=None, minutes=0, by="Carol",
             reason=None, now=T0)
    cyrillic = parse_name("рара")  # Cyrillic er and a: another name that looks the same
    assert cyrillic.display != "papa"
    assert bans.match(identity=None, address=None, name=cyrillic, now=T0) is not None
    assert bans.match(identity=None, address=None, name=parse_name("PAPA"), now=T0)
    assert bans.match(identity=None, address=None, name=parse_name("mama"), now=T0) is None


def test_a_ban_ends_at_its_time_and_one_until_lifted_does_not():
    bans = BanList()
    ban = ban_mallory(bans, 10)
    assert ban.until == T0 + 10 * MINUTE
    mallory = {"identity": MALLORY_ID, "address": "10.0.0.66", "name": parse_name("Mallory")}
    assert bans.match(**mallory, now=T0 + 10 * MINUTE - 1) is not None
    assert bans.match(**mallory, now=T0 + 10 * MINUTE) is None
    assert [b.name for b in bans.expire(T0 + 10 * MINUTE)] == ["Mallory"]
    assert len(bans) == 0
    forever = ban_mallory(bans, 0)
    assert forever.until is None
    assert bans.match(**mallory, now=T0 + 10 * 365 * 86_400) is forever
    assert bans.expire(T0 + 10 * 365 * 86_400) == []


def test_unban_lifts_by_name_and_its_lookalikes():
    bans = BanList()
    ban_mallory(bans, 0)
    assert [b.name for b in bans.lift(parse_name("MALLORY"))] == ["Mallory"]
    assert bans.match(identity=MALLORY_ID, address="10.0.0.66", name=None, now=T0) is None


def test_banning_again_sets_a_new_time():
    bans = BanList()
    ban_mallory(bans, 0)
    ban_mallory(bans, 5)
    assert len(bans) == 1
    assert bans.match(identity=MALLORY_ID, address=None, name=None,
                      now=T0 + 6 * MINUTE) is None


def test_ban_list_shows_names_times_and_reasons_not_addresses():
    bans = BanList()
    ban_mallory(bans, 60)
    [entry] = bans.listed(T0)
    assert entry == {"name": "Mallory", "until": iso_time(T0 + 60 * MINUTE), "by": "Carol",
                     "ts": iso_time(T0), "reason": "spamming"}
    assert entry["until"].endswith("Z")
    assert bans.listed(T0 + 61 * MINUTE) == []


def test_bans_round_trip_through_records():
    bans = BanList()
    ban_mallory(bans, 30)
    bans.add(parse_name("рара"), identity=None, address=None, minutes=0, by="Carol",
             reason=None, now=T0)
    again = BanList.from_records(list(bans.to_records()))
    assert again.to_records() == bans.to_records()
    assert again.match(identity=None, address=None, name=parse_name("papa"), now=T0)
    assert again.match(identity=None, address="10.0.0.66", name=None, now=T0 + 29 * MINUTE)
    assert again.match(identity=None, address="10.0.0.66", name=None,
                       now=T0 + 30 * MINUTE) is None


def test_minutes_out_of_range_are_bad_frames():
    bans = BanList()
    for minutes in (-1, True, 1.5, 10**9):
        with pytest.raises(LocalProtocolError) as caught:
            ban_mallory(bans, minutes)
        assert caught.value.code == "bad_frame"


# --- mutes ----------------------------------------------------------------------------------


def test_a_room_mute_covers_that_rooms_broadcasts_only():
    mutes = Mutes()
    mutes.add(parse_name("Mallory"), identity=MALLORY_ID, room="chess", minutes=5, by="Carol",
              now=T0)
    mallory = parse_name("Mallory")
    assert mutes.muted(identity=MALLORY_ID, name=mallory, room="chess", now=T0)
    assert mutes.muted(identity=MALLORY_ID, name=mallory, room="lobby", now=T0) is None
    assert mutes.muted(identity=MALLORY_ID, name=mallory, room=None, now=T0) is None  # whisper


def test_a_server_mute_covers_every_room_and_whispers():
    mutes = Mutes()
    mutes.add(parse_name("Mallory"), identity=MALLORY_ID, room=None, minutes=0, by="Carol",
              now=T0)
    mallory = parse_name("Mallory")
    for room in ("chess", "lobby", None):
        assert mutes.muted(identity=MALLORY_ID, name=mallory, room=room, now=T0)


def test_a_mute_holds_by_identity_and_by_skeleton():
    mutes = Mutes()
    mutes.add(parse_name("papa"), identity=MALLORY_ID, room=None, minutes=0, by="Carol",
              now=T0)
    # Back under another name with the same identity, or under a look-alike without one.
    assert mutes.muted(identity=MALLORY_ID, name=parse_name("Zed"), room="x", now=T0)
    assert mutes.muted(identity=None, name=parse_name("рара"), room="x", now=T0)
    assert mutes.muted(identity=CAROL_ID, name=parse_name("Carol"), room="x", now=T0) is None


def test_an_expired_mute_stops_matching():
    mutes = Mutes()
    mutes.add(parse_name("Mallory"), identity=MALLORY_ID, room="chess", minutes=5, by="Carol",
              now=T0)
    mallory = parse_name("Mallory")
    assert mutes.muted(identity=None, name=mallory, room="chess", now=T0 + 5 * MINUTE - 1)
    assert mutes.muted(identity=None, name=mallory, room="chess", now=T0 + 5 * MINUTE) is None
    assert [m.name for m in mutes.expire(T0 + 5 * MINUTE)] == ["Mallory"]


def test_unmute_lifts_only_that_scope():
    mutes = Mutes()
    mallory = parse_name("Mallory")
    mutes.add(mallory, identity=MALLORY_ID, room="chess", minutes=0, by="Carol", now=T0)
    mutes.add(mallory, identity=MALLORY_ID, room=None, minutes=0, by="Carol", now=T0)
    assert len(mutes.remove(mallory, identity=MALLORY_ID, room=None)) == 1
    assert mutes.muted(identity=MALLORY_ID, name=mallory, room=None, now=T0) is None
    assert mutes.muted(identity=MALLORY_ID, name=mallory, room="chess", now=T0)


def test_mutes_round_trip_through_records():
    mutes = Mutes()
    mutes.add(parse_name("Mallory"), identity=MALLORY_ID, room="chess", minutes=5,
              by="Carol", now=T0)
    mutes.add(parse_name("рара"), identity=None, room=None, minutes=0, by="Carol", now=T0)
    again = Mutes.from_records(list(mutes.to_records()))
    assert again.to_records() == mutes.to_records()
    assert again.muted(identity=MALLORY_ID, name=parse_name("Zed"), room="chess", now=T0)
    assert again.muted(identity=None, name=parse_name("papa"), room=None, now=T0)


def test_the_posting_veto_says_muted_or_not_permitted():
    mutes = Mutes()
    mallory, owner = parse_name("Mallory"), parse_name("Carol")
    mutes.add(mallory, identity=MALLORY_ID, room="chess", minutes=0, by="Carol", now=T0)
    mutes.add(owner, identity=None, room=None, minutes=0, by="Dave", now=T0)  # a stray mute
    free, moderated = RoomMode(), RoomMode(moderated=True)

    def veto(role, name, identity, room, mode):
        return speech_refusal(role, mutes=mutes, identity=identity, name=name, room=room,
                              mode=mode, now=T0)

    assert veto(MEMBER, mallory, MALLORY_ID, "chess", free) == "muted"
    assert veto(MEMBER, mallory, MALLORY_ID, "lobby", free) is None
    assert veto(MEMBER, mallory, MALLORY_ID, None, None) is None  # a room mute spares whispers
    assert veto(MEMBER, mallory, MALLORY_ID, "lobby", moderated) == "not_permitted"
    assert veto(OP, parse_name("Dave"), CAROL_ID, "lobby", moderated) is None
    assert veto(OWNER, owner, None, "lobby", free) is None  # the owner is never muted
    assert veto(OWNER, owner, None, None, None) is None


# --- room modes and topics ------------------------------------------------------------------


def test_room_mode_changes_only_what_is_given():
    modes = RoomModes()
    assert modes.mode("chess") == RoomMode()
    assert modes.set_mode("chess", moderated=True) == RoomMode(True, False)
    assert modes.set_mode("chess", topic_locked=True) == RoomMode(True, True)
    assert modes.set_mode("chess", moderated=False) == RoomMode(False, True)
    assert modes.mode("lobby") == RoomMode()


@pytest.mark.parametrize("text", ["", "Opening theory tonight", "x" * MAX_TOPIC_CHARS,
                                  "<b>not bold</b> & co", "Schach ♞ 象棋"])
def test_topics_take_plain_text_up_to_300_characters(text):
    modes = RoomModes()
    topic = modes.set_topic("chess", text, by="Carol", now=T0)
    assert (topic.text, topic.by) == (text, "Carol")
    assert topic.to_wire("Chess") == {"room": "Chess", "text": text, "by": "Carol",
                                      "ts": iso_time(T0)}


@pytest.mark.parametrize(("text", "code"), [
    ("x" * (MAX_TOPIC_CHARS + 1), "invalid_text"),
    ("bell\x07", "invalid_text"),
    ("escape \x1b[31m red", "invalid_text"),
    ("\u200b\u200b", "invalid_text"),  # only zero-width spaces: shows as nothing
    ("   ", "invalid_text"),
    ("\ud800 broken", "invalid_text"),
    (None, "bad_frame"),
    (42, "bad_frame"),
])
def test_topics_refuse_what_a_message_refuses(text, code):
    with pytest.raises(LocalProtocolError) as caught:
        check_topic(text)
    assert caught.value.code == code
    assert "message" not in caught.value.message  # the sentence speaks of a topic
    modes = RoomModes()
    with pytest.raises(LocalProtocolError):
        modes.set_topic("chess", text, by="Carol", now=T0)
    assert modes.topic("chess") is None


def test_modes_and_topics_round_trip_through_records():
    modes = RoomModes()
    modes.set_mode("chess", moderated=True)
    modes.set_topic("chess", "Blitz at 8", by="Carol", now=T0)
    modes.set_topic("lobby", "Welcome", by="Dave", now=T0 + 1)
    modes.set_mode("quiet", topic_locked=True)
    again = RoomModes.from_records(list(modes.to_records()))
    assert again.to_records() == modes.to_records()
    assert again.mode("chess") == RoomMode(moderated=True)
    assert again.mode("quiet") == RoomMode(topic_locked=True)
    assert again.topic("lobby").text == "Welcome"
    assert again.topic("quiet") is None
