"""Private conversations that last (PROTOCOL-FEATURES §1) through ``ServerCore``: whispers
belong to the identities that exchanged them. A hand-advanced clock makes "days later"
take no time, a history file lets the server restart in between (``FileNet``).

The same rules over real sockets, with ``qtchat serve``: test_conversations_server.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_moderation_core import ADMIN, DAY, FileNet, join, last

from qtchat.server.identity import new_identity
from qtchat.server.store import MIGRATIONS, SCHEMA_VERSION, MessageStore

FEATURES = ["search"]  # a client that negotiates: it gets conversations (and search)


@pytest.fixture
def net(tmp_path):
    made = FileNet(tmp_path / "history.db", admin_password=ADMIN)
    yield made
    made.store.close()


def page(client: Any, with_: str, **fields: Any) -> dict[str, Any]:
    """Ask ``history {with}`` and return the answer (a page or an error)."""
    client.new()
    client.send(type="history", **{"with": with_}, **fields)
    answers = [f for f in client.new() if f["type"] in ("history", "error")]
    assert answers, "no answer to history {with}"
    return answers[-1]


def texts(answer: dict[str, Any]) -> list[str]:
    assert answer["type"] == "history", answer
    return [m["text"] for m in answer["messages"]]


def seen(answer: dict[str, Any]) -> list[str]:
    """The whispers a page shows; none when the answer is that nobody has that name."""
    if answer["type"] == "error":
        assert answer["code"] == "no_such_user", answer
        return []
    return texts(answer)


def found(client: Any, query: str, **scope: Any) -> list[str]:
    client.new()
    client.send(type="search", id="s", query=query, **scope)
    answer = last(client, "search_results")
    return [m["text"] for m in answer["messages"]]


def talk(net: FileNet) -> tuple[str, str, int]:
    """Alice and Bob, each with an identity, whisper each other and leave; returns their
    identities and the seq of the last whisper."""
    alice_id, bob_id = new_identity(), new_identity()
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=alice_id, features=FEATURES)
    bob, _ = join(net, "Bob", "10.0.0.2:1", identity=bob_id, features=FEATURES)
    alice.send(type="whisper", to="Bob", text="the key is under the mat")
    bob.send(type="whisper", to="Alice", text="thanks, see you friday")
    last_seq = last(alice, "whisper")["seq"]
    assert last(alice, "whisper")["text"] == "thanks, see you friday"
    alice.send(type="bye")
    bob.send(type="bye")
    return alice_id, bob_id, last_seq


def test_private_history_comes_back_to_the_same_identity_days_later_after_a_restart(net):
    alice_id, bob_id, last_seq = talk(net)
    net.advance(3 * DAY)  # far past the resume grace period: both sessions are gone
    net.restart()
    alice, answer = join(net, "Alice", "10.0.0.1:2", identity=alice_id, features=FEATURES)
    assert answer["resumed"] is False
    assert answer["conversations"] == [{"with": "Bob", "last_seq": last_seq}]
    # Bob is not here (nor held): his name is his identity's, and so are the whispers.
    assert texts(page(alice, "Bob")) == ["the key is under the mat", "thanks, see you friday"]
    assert texts(page(alice, "Bob", before=last_seq)) == ["the key is under the mat"]
    assert found(alice, "mat") == ["the key is under the mat"]
    assert found(alice, "friday", **{"with": "Bob"}) == ["thanks, see you friday"]
    bob, answer = join(net, "Bob", "10.0.0.2:2", identity=bob_id, features=FEATURES)
    assert answer["conversations"] == [{"with": "Alice", "last_seq": last_seq}]
    assert texts(page(bob, "Alice")) == ["the key is under the mat", "thanks, see you friday"]


def test_a_later_holder_of_the_name_never_sees_the_earlier_holders_whispers(net):
    alice_id, _bob_id, _seq = talk(net)
    net.advance(31 * DAY)  # both identities stayed away: their names lapsed
    anonymous, answer = join(net, "Bob", "10.0.0.9:1")  # a client without identity
    assert answer["type"] == "registered" and "conversations" not in answer
    assert seen(page(anonymous, "Alice")) == []
    anonymous.send(type="bye")
    # Alice's own whispers stay hers, found by her identity days later, also under the
    # name Bob had while nobody holds it.
    alice, answer = join(net, "Alice", "10.0.0.1:2", identity=alice_id, features=FEATURES)
    assert [c["with"] for c in answer["conversations"]] == ["Bob"]
    assert texts(page(alice, "Bob")) == ["the key is under the mat", "thanks, see you friday"]
    alice.send(type="bye")
    net.advance(31 * DAY)
    # Another identity takes the name: nothing of the earlier Bob's, and Alice's page
    # with "Bob" is now her conversation with this one.
    newbob, answer = join(net, "Bob", "10.0.0.9:2", identity=new_identity(),
                          features=FEATURES)
    assert answer["type"] == "registered" and answer["conversations"] == []
    assert seen(page(newbob, "Alice")) == []
    assert found(newbob, "mat") == [] and found(newbob, "friday") == []
    alice, answer = join(net, "Alice", "10.0.0.1:3", identity=alice_id, features=FEATURES)
    assert texts(page(alice, "Bob")) == []
    assert found(alice, "mat") == ["the key is under the mat"]  # still hers to search


def test_a_released_name_taken_by_another_identity_gets_none_of_the_old_whispers(net):
    alice_id, _bob_id, _seq = talk(net)
    owner, _ = join(net, "Root", "10.0.0.7:1", admin=ADMIN, features=["moderation"])
    owner.send(type="release_name", name="Bob")
    mallory, answer = join(net, "Bob", "10.0.0.6:1", identity=new_identity(),
                           features=FEATURES)
    assert answer["type"] == "registered" and answer["conversations"] == []
    assert texts(page(mallory, "Alice")) == []
    mallory.send(type="search", id="s", query="mat")
    assert last(mallory, "search_results")["messages"] == []
    # Alice's conversation with the new Bob is a new one: the old whispers are not shown
    # under his name either, and hers to him are only theirs.
    alice, _ = join(net, "Alice", "10.0.0.1:2", identity=alice_id, features=FEATURES)
    assert texts(page(alice, "Bob")) == []
    alice.send(type="whisper", to="Bob", text="who are you?")
    assert texts(page(mallory, "Alice")) == ["who are you?"]


def test_an_offline_whisper_is_stored_and_found_when_the_identity_comes_back(net):
    alice_id, bob_id = new_identity(), new_identity()
    bob, _ = join(net, "Bob", "10.0.0.2:1", identity=bob_id, features=FEATURES)
    bob.send(type="bye")
    net.advance(2 * DAY)
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=alice_id, features=FEATURES)
    alice.send(type="whisper", to="bob", text="call me when you are back", id="w1")
    echo = last(alice, "whisper")
    assert echo["to"] == "Bob" and echo["id"] == "w1"  # accepted, echoed (as bound)
    assert not alice.of("error")
    net.restart()
    bob, answer = join(net, "Bob", "10.0.0.2:2", identity=bob_id, features=FEATURES)
    assert answer["conversations"] == [{"with": "Alice", "last_seq": echo["seq"]}]
    assert texts(page(bob, "Alice")) == ["call me when you are back"]
    # A name nobody holds and nobody uses is still nobody.
    bob.send(type="whisper", to="Nobody", text="hello?")
    assert last(bob, "error")["code"] == "no_such_user"


def test_conversations_are_newest_first_and_at_most_fifty(net):
    me = new_identity()
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=me, features=FEATURES)
    for number in range(55):
        friend, _ = join(net, f"Friend{number}", f"10.0.1.{number}:1", identity=new_identity())
        friend.send(type="whisper", to="Alice", text=f"hello from {number}")
        friend.send(type="bye")
    alice.send(type="whisper", to="Friend3", text="back to you")  # offline: bound name
    alice.send(type="bye")
    _again, answer = join(net, "Alice", "10.0.0.1:2", identity=me, features=FEATURES)
    listed = [c["with"] for c in answer["conversations"]]
    assert len(listed) == 50
    assert listed[:3] == ["Friend3", "Friend54", "Friend53"]
    assert "Friend4" not in listed  # among the oldest five, left out


def test_protocol_1_clients_get_no_conversations_field(net):
    bob, answer = join(net, "Bob", "10.0.0.2:1")
    assert "conversations" not in answer
    _alice, answer = join(net, "Alice", "10.0.0.1:1", identity=new_identity())
    assert "conversations" not in answer  # an identity, but no features: no new fields
    # A session without identity keeps its own whispers, as before.
    bob.send(type="whisper", to="Alice", text="hi")
    assert texts(page(bob, "Alice")) == ["hi"]


def test_the_store_step_adds_whisper_identities_to_an_older_history(tmp_path):
    """The step appended for §1 upgrades a history of the version before it, keeping its
    whispers (they have no identity: found by session, as before)."""
    import sqlite3

    import qtchat.server.store as store_module

    path = tmp_path / "old.db"
    original = store_module.MIGRATIONS
    store_module.MIGRATIONS = original[:original.index(store_module._whisper_identities)]
    try:
        old = MessageStore(path)
        old._db.execute("INSERT INTO messages (seq, ts, bucket, sender, sender_sid, recipient, "
                        "recipient_sid, text) VALUES (1, 't', '', 'A', 1, 'B', 2, 'old whisper')")
        old.close()
    finally:
        store_module.MIGRATIONS = original
    store = MessageStore(path)
    try:
        version = store._db.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION == len(MIGRATIONS)
        assert [m.text for m in store.whisper_page(1, 2, None, 10)] == ["old whisper"]
    finally:
        store.close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(messages)")}
    assert {"sender_identity", "recipient_identity"} <= columns


def test_a_server_muted_person_cannot_whisper_offline_either(net):
    bob_id = new_identity()
    bob, _ = join(net, "Bob", "10.0.0.2:1", identity=bob_id, features=FEATURES)
    bob.send(type="bye")
    owner, _ = join(net, "Root", "10.0.0.7:1", admin=ADMIN, features=["moderation"])
    mallory, _ = join(net, "Mallory", "10.0.0.6:1", identity=new_identity())
    owner.send(type="mute", name="Mallory")
    mallory.send(type="whisper", to="Bob", text="you cannot escape me")
    assert last(mallory, "error")["code"] == "muted" and not mallory.of("whisper")
    _bob, answer = join(net, "Bob", "10.0.0.2:2", identity=bob_id, features=FEATURES)
    assert answer["conversations"] == []


def test_reading_a_kept_conversation_whose_writer_is_gone_is_no_error(net):
    """The app acknowledges what it reads (receipts); a conversation brought back after a
    restart is often with someone who has no session: nobody to tell, and no error."""
    alice_id, _bob_id, last_seq = talk(net)
    alice, _ = join(net, "Alice", "10.0.0.1:2", identity=alice_id,
                    features=[*FEATURES, "receipts"])
    alice.send(type="receipt", **{"with": "Bob"}, seq=last_seq, state="read")
    alice.send(type="ping", token="after")
    assert last(alice, "pong")["token"] == "after" and not alice.of("error")
    alice.send(type="receipt", **{"with": "Nobody"}, seq=last_seq, state="read")
    assert last(alice, "error")["code"] == "no_such_user"  # a name nobody had: as before


def test_typing_an_offline_whisper_is_no_error(net):
    """The app says it is typing to the person of a private tab; typing a whisper to
    someone away (an offline whisper) has nobody to tell, and is no error either."""
    alice_id, _bob_id, _seq = talk(net)
    alice, _ = join(net, "Alice", "10.0.0.1:2", identity=alice_id,
                    features=[*FEATURES, "typing"])
    alice.send(type="typing", to="Bob", state="active")
    alice.send(type="ping", token="after")
    assert last(alice, "pong")["token"] == "after" and not alice.of("error")
