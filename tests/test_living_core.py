"""The living-room features (search, edit, typing, presence) driven through ``ServerCore``.

No sockets, no sleeps: ``Net`` (test_core_rules.py) delivers what the core hands out, and
the clock is a number the test moves, both the core's ``now`` (the typing throttle) and
its ``timestamp()`` (a message's ``ts``, which the edit window is measured from).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from test_core_rules import FakeClient, Net

from qtchat.server.core import DEFAULT_FEATURES
from qtchat.server.features.base import Feature

ALL = ["search", "edit", "typing", "presence"]
EPOCH = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def living_net(**config: Any) -> Net:
    net = Net(features=DEFAULT_FEATURES, **{"idle_timeout": 3600.0, **config})

    def timestamp() -> str:  # the wall clock follows the hand clock
        when = EPOCH + timedelta(seconds=net.now - 1000.0)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"

    net.core.timestamp = timestamp
    return net


@pytest.fixture
def net():
    made = living_net()
    yield made
    made.store.close()


def say(client: FakeClient, text: str, room: str = "lobby") -> int:
    """Broadcast and return the seq of the sender's copy."""
    client.send(type="broadcast", room=room, text=text, id=f"say-{text[:20]}")
    mine = [f for f in client.new() if f["type"] == "broadcast" and f.get("id")]
    return mine[-1]["seq"]


def whisper(client: FakeClient, to: str, text: str) -> int:
    client.send(type="whisper", to=to, text=text)
    return [f for f in client.new() if f["type"] == "whisper"][-1]["seq"]


def search(client: FakeClient, query: str, **fields: Any) -> dict[str, Any]:
    client.new()
    client.send(type="search", query=query, id="q", **fields)
    answer, = client.new()
    return answer


def texts(answer: dict[str, Any]) -> list[str]:
    return [m["text"] for m in answer["messages"]]


# --- negotiation --------------------------------------------------------------------------


def test_the_features_are_offered_and_unknown_to_a_client_that_did_not_ask(net):
    modern = net.registered("Ann", features=[*ALL, "nonsense"])
    assert modern.frames[0]["features"] == ALL
    plain = net.registered("Bob")
    assert "features" not in plain.frames[0]
    plain.new()
    for frame in ({"type": "search", "query": "x", "id": "s"},
                  {"type": "edit", "seq": 1, "text": "x"}, {"type": "delete", "seq": 1},
                  {"type": "typing", "state": "active"}, {"type": "status", "state": "away"}):
        plain.send(**frame)
    codes = [(f["code"], f["ref"]) for f in plain.new()]
    assert codes == [("unknown_type", kind) for kind in
                     ("search", "edit", "delete", "typing", "status")]


# --- search -------------------------------------------------------------------------------


def test_search_folds_case_and_accents_and_takes_the_last_word_as_a_prefix(net):
    ann = net.registered("Ann", features=ALL)
    say(ann, "Le CAFÉ est fermé")
    say(ann, "nothing here")
    say(ann, "Cafeteria downstairs")
    answer = search(ann, "cafe")
    assert answer["type"] == "search_results" and answer["id"] == "q"
    assert answer["query"] == "cafe" and answer["more"] is False
    assert texts(answer) == ["Cafeteria downstairs", "Le CAFÉ est fermé"]  # newest first
    assert texts(search(ann, "FERM est")) == []  # every word; only the last is a prefix
    assert texts(search(ann, "est ferm")) == ["Le CAFÉ est fermé"]
    assert texts(search(ann, "cafe nothing")) == []


def test_search_never_finds_a_room_you_are_not_in_or_someone_elses_whisper(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    cid = net.registered("Cid", features=ALL)
    bob.send(type="join", room="secret")
    say(bob, "the treasure is buried", room="secret")
    whisper(bob, "Cid", "treasure map for you")
    say(ann, "treasure hunting in the lobby")
    assert texts(search(ann, "treasure")) == ["treasure hunting in the lobby"]
    assert texts(search(cid, "treasure")) == ["treasure hunting in the lobby",
                                              "treasure map for you"]
    answer = search(ann, "treasure", room="secret")
    assert answer["type"] == "error" and answer["code"] == "not_in_room"
    assert answer["id"] == "q"
    assert texts(search(bob, "treasure", room="secret")) == ["the treasure is buried"]
    assert texts(search(cid, "treasure", **{"with": "Bob"})) == ["treasure map for you"]
    assert texts(search(ann, "treasure", **{"with": "Bob"})) == []


def test_a_query_is_words_never_query_syntax(net):
    ann = net.registered("Ann", features=ALL)
    say(ann, 'he said "near" or NEAR(this) * star')
    say(ann, "other words")
    for query in ['"near"', "near(", "NEAR(this", "star *", "OR", "or near"]:
        assert texts(search(ann, query)) == ['he said "near" or NEAR(this) * star'], query
    assert texts(search(ann, '"*"')) == []  # no letters or digits: nothing
    both = search(ann, "x", room="lobby", **{"with": "Ann"})
    assert both["type"] == "error" and both["code"] == "bad_frame" and both["id"] == "q"


def test_search_pages_with_before(net):
    ann = net.registered("Ann", features=ALL)
    seqs = [say(ann, f"page word {i}") for i in range(7)]
    first = search(ann, "word", limit=3)
    assert texts(first) == ["page word 6", "page word 5", "page word 4"] and first["more"]
    second = search(ann, "word", limit=3, before=first["messages"][-1]["seq"])
    assert texts(second) == ["page word 3", "page word 2", "page word 1"] and second["more"]
    last = search(ann, "word", limit=3, before=second["messages"][-1]["seq"])
    assert texts(last) == ["page word 0"] and last["more"] is False
    assert last["messages"][0]["seq"] == seqs[0]


# --- edit and delete ------------------------------------------------------------------------


def test_the_author_edits_within_the_window_and_everyone_who_knows_edits_is_told(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    old = net.registered("Old")  # a protocol-1 client
    seq = say(ann, "teh typo")
    for client in (ann, bob, old):
        client.new()
    net.advance(60)
    ann.send(type="edit", seq=seq, text="the typo fixed", id="e1")
    edited = {"type": "edited", "seq": seq, "room": "lobby", "text": "the typo fixed",
              "edited_ts": "2026-12-03T12:01:00.000Z"}
    assert ann.new() == [edited] and bob.new() == [edited]
    old.send(type="ping", token="sync")
    assert old.new() == [{"type": "pong", "token": "sync"}]  # nothing about the edit
    # History and search show the new text, with `edited`; the old words are gone.
    bob.send(type="history", room="lobby")
    page, = bob.new()
    assert page["messages"][-1] == {"type": "broadcast", "seq": seq,
                                    "ts": "2026-12-03T12:00:00.000Z",
                                    "from": "Ann", "room": "lobby", "text": "the typo fixed",
                                    "edited": "2026-12-03T12:01:00.000Z"}
    assert texts(search(bob, "teh")) == [] and texts(search(bob, "fixed")) == ["the typo fixed"]


def test_edit_is_refused_after_the_window_to_others_and_for_what_you_cannot_see(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    seq = say(ann, "mine")
    ann.send(type="join", room="hidden")
    hidden = say(ann, "in hidden", room="hidden")
    secret = whisper(ann, "Ann", "note to self")
    bob.new()
    for target in (seq, hidden, secret, 999):
        bob.send(type="edit", seq=target, text="hijacked", id=f"b{target}")
    errors = [(f["code"], f["ref"], f["id"]) for f in bob.new()]
    assert errors == [("not_permitted", "edit", f"b{seq}"),
                      ("no_such_message", "edit", f"b{hidden}"),
                      ("no_such_message", "edit", f"b{secret}"),
                      ("no_such_message", "edit", "b999")]
    net.advance(15 * 60 + 1)  # the default window is 15 minutes
    ann.new()
    ann.send(type="edit", seq=seq, text="too late")
    error, = ann.new()
    assert error["code"] == "edit_window_expired"
    ann.send(type="delete", seq=seq)
    error, = ann.new()
    assert error["code"] == "edit_window_expired"


def test_an_edit_window_of_zero_lets_no_author_edit_or_delete():
    net = living_net(edit_window=0)
    ann = net.registered("Ann", features=ALL)
    seq = say(ann, "set in stone")
    ann.send(type="edit", seq=seq, text="changed")
    ann.send(type="delete", seq=seq)
    assert [f["code"] for f in ann.new()] == ["edit_window_expired"] * 2
    net.store.close()


def test_delete_leaves_a_tombstone_for_clients_that_know_and_nothing_for_the_others(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    keep = say(ann, "keep this")
    seq = say(ann, "regrettable words")
    bob.new()
    net.advance(5)
    ann.send(type="delete", seq=seq)
    deleted = {"type": "deleted", "seq": seq, "room": "lobby", "by": "Ann",
               "ts": "2026-12-03T12:00:05.000Z"}
    assert ann.new() == [deleted] and bob.new() == [deleted]
    bob.send(type="history", room="lobby")
    page, = bob.new()
    assert page["messages"][-1]["text"] == "" and page["messages"][-1]["deleted"] == {
        "by": "Ann", "ts": "2026-12-03T12:00:05.000Z"}
    assert texts(search(bob, "regrettable")) == []
    old = net.registered("Old")
    old.send(type="history", room="lobby")
    page = old.of("history")[-1]
    assert [m["seq"] for m in page["messages"]] == [keep]  # a protocol-1 client: gone
    ann.send(type="delete", seq=seq)
    assert ann.new()[-1]["code"] == "no_such_message"  # already gone
    ann.send(type="edit", seq=seq, text="undo")
    assert ann.new()[-1]["code"] == "no_such_message"


def test_a_resume_replays_the_tombstone_and_the_edited_text(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    first = say(bob, "first version")
    gone = say(bob, "soon gone")
    ann.new()
    net.drop(ann)
    bob.send(type="edit", seq=first, text="second version")
    bob.send(type="delete", seq=gone)
    again = net.client()
    again.register("Ann", resume=ann.session, since=first - 1, features=ALL)
    replayed = {f["seq"]: f for f in again.of("broadcast")}
    assert replayed[first]["text"] == "second version" and "edited" in replayed[first]
    assert replayed[gone]["text"] == "" and replayed[gone]["deleted"]["by"] == "Bob"


def test_a_whisper_edit_reaches_both_parties_and_nobody_else(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    cid = net.registered("Cid", features=ALL)
    seq = whisper(ann, "Bob", "psst")
    bob.new(), cid.new()
    ann.send(type="edit", seq=seq, text="psst!")
    edited = {"type": "edited", "seq": seq, "to": "Bob", "text": "psst!",
              "edited_ts": "2026-12-03T12:00:00.000Z"}
    assert ann.new() == [edited] and bob.new() == [edited]
    cid.send(type="ping")
    assert [f["type"] for f in cid.new()] == ["pong"]
    bob.send(type="delete", seq=seq)  # the recipient did not write it
    assert bob.new()[-1]["code"] == "not_permitted"


# --- typing -------------------------------------------------------------------------------


def test_typing_is_relayed_throttled_and_never_stored(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    old = net.registered("Old")
    for client in (ann, bob, old):
        client.new()
    ann.send(type="typing", state="active")
    notice = {"type": "typing", "from": "Ann", "room": "lobby", "state": "active"}
    assert bob.new() == [notice] and ann.new() == []
    ann.send(type="typing", state="active")  # the same state within 2 s: dropped
    net.advance(1.9)
    ann.send(type="typing", state="active")
    assert bob.new() == []
    ann.send(type="typing", state="paused")  # a change: always
    assert bob.new() == [{**notice, "state": "paused"}]
    net.advance(0.5)
    ann.send(type="typing", state="active")
    assert bob.new() == [notice]
    net.advance(2.0)
    ann.send(type="typing", state="active")  # 2 s after the last one relayed
    assert bob.new() == [notice]
    old.send(type="ping")
    assert [f["type"] for f in old.new()] == ["pong"]  # a client without typing: nothing
    # Never stored: a newcomer's history and a resume's replay hold no trace of it.
    assert net.store.last_seq == 0
    cid = net.registered("Cid", features=ALL)
    cid.send(type="join", room="lobby")
    assert cid.of("joined")[-1]["history"] == []


def test_typing_to_one_person(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    cid = net.registered("Cid", features=ALL)
    ann.new(), bob.new(), cid.new()
    ann.send(type="typing", to="Bob", state="active")
    assert bob.new() == [{"type": "typing", "from": "Ann", "to": "Bob", "state": "active"}]
    cid.send(type="ping")
    assert [f["type"] for f in cid.new()] == ["pong"]
    ann.send(type="typing", to="Nobody", state="active", id="t")
    error, = ann.new()
    assert (error["code"], error["ref"], error["id"]) == ("no_such_user", "typing", "t")


# --- presence -----------------------------------------------------------------------------


def test_status_is_told_to_those_sharing_a_room_and_listed_on_register_and_join(net):
    ann = net.registered("Ann", features=ALL)
    bob = net.registered("Bob", features=ALL)
    old = net.registered("Old")
    bob.new(), old.new()
    ann.send(type="status", state="away", text="lunch <b>")
    assert bob.new() == [{"type": "user_status", "name": "Ann", "state": "away",
                          "text": "lunch <b>"}]
    ann.send(type="status", state="away", text="lunch <b>")  # no change: not told again
    assert bob.new() == []
    old.send(type="ping")
    assert [f["type"] for f in old.new()] == ["pong"]
    cid = net.registered("Cid", features=ALL)
    assert cid.frames[0]["statuses"] == {"Ann": {"state": "away", "text": "lunch <b>"}}
    ann.send(type="join", room="den")
    bob.send(type="join", room="den")
    assert bob.of("joined")[-1]["statuses"] == {"Ann": {"state": "away",
                                                        "text": "lunch <b>"}}
    ann.send(type="status", state="online")
    assert bob.new()[-1] == {"type": "user_status", "name": "Ann", "state": "online",
                             "text": ""}
    dee = net.registered("Dee", features=ALL)
    assert dee.frames[0]["statuses"] == {}
    assert "statuses" not in net.registered("Eve").frames[0]


# --- receipts -----------------------------------------------------------------------------


def test_receipts_go_only_forward_only_to_the_writer_and_are_stored(tmp_path):
    net = living_net()
    ann = net.registered("Ann", features=[*ALL, "receipts"])
    bob = net.registered("Bob", features=[*ALL, "receipts"])
    cid = net.registered("Cid", features=[*ALL, "receipts"])
    first = whisper(ann, "Bob", "one")
    second = whisper(ann, "Bob", "two")
    ann.new(), cid.new()
    bob.send(type="receipt", state="delivered", seq=second, **{"with": "Ann"})
    assert ann.new() == [{"type": "receipt", "from": "Bob", "seq": second,
                          "state": "delivered"}]
    bob.send(type="receipt", state="delivered", seq=first, **{"with": "Ann"})  # backwards
    bob.send(type="receipt", state="read", seq=first, **{"with": "Ann"})
    assert ann.new() == [{"type": "receipt", "from": "Bob", "seq": first, "state": "read"}]
    cid.send(type="ping")
    assert [f["type"] for f in cid.new()] == ["pong"]  # only between the two
    bob.send(type="receipt", state="read", seq=10**6, id="r", **{"with": "Ann"})
    assert bob.new()[-1]["code"] == "no_such_message"
    assert sorted(net.store.receipts()) == sorted([
        (bob.conn.session.sid, ann.conn.session.sid, "delivered", second),
        (bob.conn.session.sid, ann.conn.session.sid, "read", first)])
    net.store.close()


def test_a_receipt_to_someone_without_receipts_is_stored_not_sent(net):
    ann = net.registered("Ann", features=ALL)  # no receipts
    bob = net.registered("Bob", features=[*ALL, "receipts"])
    seq = whisper(ann, "Bob", "hello")
    ann.new()
    bob.send(type="receipt", state="read", seq=seq, **{"with": "Ann"})
    ann.send(type="ping")
    assert [f["type"] for f in ann.new()] == ["pong"]
    assert {(state, upto) for *_, state, upto in net.store.receipts()} == {
        ("read", seq), ("delivered", seq)}


# --- history {with} -------------------------------------------------------------------------


def test_history_with_pages_a_private_conversation_with_read_up_to(net):
    ann = net.registered("Ann", features=[*ALL, "receipts"])
    bob = net.registered("Bob", features=[*ALL, "receipts"])
    cid = net.registered("Cid", features=ALL)
    seqs = [whisper(ann, "Bob", f"to bob {i}") for i in range(3)]
    whisper(cid, "Bob", "from cid")
    reply = whisper(bob, "Ann", "to ann")
    bob.send(type="receipt", seq=seqs[1], state="read", **{"with": "Ann"})
    ann.new()
    ann.send(type="history", limit=3, id="h", **{"with": "Bob"})
    page, = ann.new()
    assert page["type"] == "history" and page["with"] == "Bob" and "room" not in page
    assert [m["text"] for m in page["messages"]] == ["to bob 1", "to bob 2", "to ann"]
    assert page["read_up_to"] == {"you": 0, "them": seqs[1]}
    ann.send(type="history", before=seqs[1], **{"with": "Bob"})
    page, = ann.new()
    assert [m["seq"] for m in page["messages"]] == [seqs[0]]
    cid.new()
    cid.send(type="history", **{"with": "Ann"})  # nothing between them
    page, = cid.new()
    assert page["messages"] == [] and "read_up_to" not in page  # Cid has no receipts
    assert reply > seqs[-1]


def test_history_needs_a_room_or_someone(net):
    ann = net.registered("Ann", features=ALL)
    ann.new()
    ann.send(type="history", id="x")
    ann.send(type="history", room="lobby", id="y", **{"with": "Ann"})
    ann.send(type="history", id="z", **{"with": "Nobody"})
    assert [(f["code"], f["id"]) for f in ann.new()] == [
        ("bad_frame", "x"), ("bad_frame", "y"), ("no_such_user", "z")]


def test_statuses_of_a_crowd_stay_within_the_registered_frame(net):
    away = []
    for i in range(520):  # 520 lines of 100 characters: more than a frame holds
        person = net.registered(f"Person{i}", features=ALL)
        person.send(type="status", state="away", text="x" * 100)
        away.append(person)
    late = net.registered("Late", features=ALL)
    registered = late.frames[0]
    assert registered["type"] == "registered"
    assert 0 < len(registered["statuses"]) < 520  # as many as fit the budget
    away[0].send(type="bye")
    assert "Person0" not in net.registered("Later", features=ALL).frames[0]["statuses"]


class _Ops(Feature):
    """A stand-in for the moderation module's ``role_of`` (its branch is not merged)."""

    ops: ClassVar[set[str]] = {"Mod"}

    def role_of(self, session) -> str:
        return "op" if session.name.display in self.ops else "member"


def test_an_op_deletes_anyones_room_message_whatever_the_window_but_never_edits_it():
    net = living_net()
    net.core.features.append(_Ops(net.core))
    ann = net.registered("Ann", features=ALL)
    mod = net.registered("Mod", features=ALL)
    seq = say(ann, "spam spam")
    secret = whisper(ann, "Mod", "private to mod")
    net.advance(3600)  # long past the window
    mod.new()
    mod.send(type="edit", seq=seq, text="not yours")
    assert mod.new()[-1]["code"] == "not_permitted"
    mod.send(type="delete", seq=seq)
    assert mod.new()[-1] == {"type": "deleted", "seq": seq, "room": "lobby", "by": "Mod",
                             "ts": "2026-12-03T13:00:00.000Z"}
    mod.send(type="delete", seq=secret)  # a whisper is not a room message
    assert mod.new()[-1]["code"] == "not_permitted"
    net.store.close()
