"""What an identity keeps past its sessions (PROTOCOL-FEATURES §1, §6, §7): its own
messages to edit and delete within the window, and the receipts between it and another
identity, after an app restart past the resume grace period.

Driven through ``ServerCore`` over a history file (``FileNet``: the server restarts in
between) with a hand clock that moves both the core's ``now`` and its ``timestamp()`` (the
edit window is measured between a message's ``ts`` and that)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_moderation_core import ADMIN, DAY, FileNet, join, last

from qtchat.server.identity import new_identity

EPOCH = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
GRACE = 120.0  # the resume grace period (seconds), shorter than the window
WINDOW = 15.0  # the edit window (minutes)
ALL = ["edit", "receipts", "search"]


class ClockNet(FileNet):
    """``FileNet`` whose wall clock (message ``ts``, the edit window) follows ``now``."""

    def _start(self) -> None:
        super()._start()

        def timestamp() -> str:
            when = EPOCH + timedelta(seconds=self.now - 1000.0)
            return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"

        self.core.timestamp = timestamp


@pytest.fixture
def net(tmp_path):
    made = ClockNet(tmp_path / "history.db", admin_password=ADMIN, resume_grace=GRACE,
                    edit_window=WINDOW, idle_timeout=10 * DAY)
    yield made
    made.store.close()


def said(client: Any, kind: str, text: str, **fields: Any) -> int:
    """Send a broadcast or whisper and return the seq of the sender's copy."""
    client.send(type=kind, text=text, **fields)
    echo = last(client, kind)
    assert echo["text"] == text
    return echo["seq"]


def answer(client: Any, **frame: Any) -> dict[str, Any]:
    """Send ``frame`` and return the last frame that came back (after a ping: all in)."""
    client.new()
    client.send(**frame)
    client.send(type="ping", token="after")
    frames = [f for f in client.new() if f["type"] != "pong"]
    assert frames, f"nothing came back for {frame}"
    return frames[-1]


def restart_past_grace(net: ClockNet, *clients: Any) -> None:
    """The apps quit without a word and the host restarts; the sessions' grace ends."""
    del clients  # they are gone with the old core
    net.restart()
    net.advance(GRACE + 60)


def test_the_same_identity_edits_its_room_message_and_whisper_after_an_app_restart(net):
    alice_id, bob_id = new_identity(), new_identity()
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=alice_id, features=ALL)
    bob, _ = join(net, "Bob", "10.0.0.2:1", identity=bob_id, features=ALL)
    room = said(alice, "broadcast", "meet at five", room="lobby")
    whisper = said(alice, "whisper", "bring the keys", to="Bob")
    doomed = said(alice, "broadcast", "my phone number is ...", room="lobby")
    restart_past_grace(net, alice, bob)
    alice, registered = join(net, "Alice", "10.0.0.1:2", identity=alice_id, features=ALL)
    assert registered["resumed"] is False  # a new session of the same identity
    bob, _ = join(net, "Bob", "10.0.0.2:2", identity=bob_id, features=ALL)
    bob.new()

    edited = answer(alice, type="edit", seq=room, text="meet at six")
    assert edited["type"] == "edited" and edited["text"] == "meet at six"
    assert last(bob, "edited")["seq"] == room
    edited = answer(alice, type="edit", seq=whisper, text="bring the spare keys")
    assert edited["type"] == "edited" and edited["to"] == "Bob"
    assert last(bob, "edited")["text"] == "bring the spare keys"  # the other side hears it
    deleted = answer(alice, type="delete", seq=doomed)
    assert deleted["type"] == "deleted" and deleted["by"] == "Alice"
    assert last(bob, "deleted")["seq"] == doomed

    history = answer(bob, type="history", **{"with": "Alice"})
    assert [m["text"] for m in history["messages"]] == ["bring the spare keys"]


def test_past_the_window_the_same_identity_is_refused(net):
    alice_id = new_identity()
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=alice_id, features=ALL)
    seq = said(alice, "broadcast", "meet at five", room="lobby")
    restart_past_grace(net, alice)
    net.advance(WINDOW * 60)  # with the grace above: past the window
    alice, _ = join(net, "Alice", "10.0.0.1:2", identity=alice_id, features=ALL)
    for frame in ({"type": "edit", "seq": seq, "text": "meet at six"},
                  {"type": "delete", "seq": seq}):
        error = answer(alice, **frame)
        assert error["type"] == "error" and error["code"] == "edit_window_expired"


def test_a_later_holder_of_the_name_may_not_change_the_earlier_holders_messages(net):
    alice_id = new_identity()
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=alice_id, features=ALL)
    bob, _ = join(net, "Bob", "10.0.0.2:1", identity=new_identity(), features=ALL)
    room = said(alice, "broadcast", "meet at five", room="lobby")
    whisper = said(alice, "whisper", "bring the keys", to="Bob")
    restart_past_grace(net, alice, bob)
    owner, _ = join(net, "Root", "10.0.0.7:1", admin=ADMIN, features=["moderation"])
    owner.send(type="release_name", name="Alice")
    # Another identity takes the name, within the window: not the author.
    mallory, registered = join(net, "Alice", "10.0.0.6:1", identity=new_identity(),
                               features=ALL)
    assert registered["type"] == "registered"
    error = answer(mallory, type="edit", seq=room, text="meet at midnight")
    assert (error["type"], error["code"]) == ("error", "not_permitted")
    error = answer(mallory, type="delete", seq=room)
    assert (error["type"], error["code"]) == ("error", "not_permitted")
    error = answer(mallory, type="edit", seq=whisper, text="forget the keys")
    assert (error["type"], error["code"]) == ("error", "no_such_message")  # not hers to see
    mallory.send(type="bye")
    owner.send(type="release_name", name="Alice")
    # Nor does someone without any identity under that name.
    anonymous, registered = join(net, "Alice", "10.0.0.5:1", features=ALL)
    assert registered["type"] == "registered"
    error = answer(anonymous, type="edit", seq=room, text="meet at midnight")
    assert (error["type"], error["code"]) == ("error", "not_permitted")
    # The identity that wrote it still may (it holds another name now).
    alice, _ = join(net, "Alicia", "10.0.0.1:2", identity=alice_id, features=ALL)
    edited = answer(alice, type="edit", seq=room, text="meet at six")
    assert edited["type"] == "edited"


def read_up_to(client: Any, with_: str) -> dict[str, int]:
    page = answer(client, type="history", **{"with": with_})
    assert page["type"] == "history", page
    return page["read_up_to"]


def test_receipts_follow_the_identities_across_restarts_and_only_forwards(net):
    alice_id, bob_id = new_identity(), new_identity()
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=alice_id, features=ALL)
    bob, _ = join(net, "Bob", "10.0.0.2:1", identity=bob_id, features=ALL)
    first = said(alice, "whisper", "are you coming?", to="Bob")
    second = said(alice, "whisper", "bring the keys", to="Bob")
    bob.send(type="receipt", **{"with": "Alice"}, seq=second, state="read")
    assert last(alice, "receipt") == {"type": "receipt", "from": "Bob", "seq": second,
                                      "state": "read"}
    restart_past_grace(net, alice, bob)
    net.advance(3 * DAY)
    net.restart()
    alice, _ = join(net, "Alice", "10.0.0.1:2", identity=alice_id, features=ALL)
    assert read_up_to(alice, "Bob") == {"you": 0, "them": second}  # Bob is not even here
    bob, _ = join(net, "Bob", "10.0.0.2:2", identity=bob_id, features=ALL)
    assert read_up_to(bob, "Alice") == {"you": second, "them": 0}
    # Only forwards: Bob's new app acknowledging the first whisper again changes nothing,
    # and Alice is not told of it.
    alice.new()
    bob.send(type="receipt", **{"with": "Alice"}, seq=first, state="read")
    assert read_up_to(alice, "Bob") == {"you": 0, "them": second}
    assert not alice.of("receipt")
    # Alice reads Bob's answer after his app quit: kept for his identity all the same.
    answered = said(bob, "whisper", "on my way", to="Alice")
    bob.send(type="bye")
    alice.send(type="receipt", **{"with": "Bob"}, seq=answered, state="read")
    net.restart()
    bob, _ = join(net, "Bob", "10.0.0.2:3", identity=bob_id, features=ALL)
    assert read_up_to(bob, "Alice") == {"you": second, "them": answered}


def test_a_later_holder_of_the_name_never_inherits_its_receipts(net):
    alice_id, bob_id = new_identity(), new_identity()
    alice, _ = join(net, "Alice", "10.0.0.1:1", identity=alice_id, features=ALL)
    bob, _ = join(net, "Bob", "10.0.0.2:1", identity=bob_id, features=ALL)
    seq = said(alice, "whisper", "bring the keys", to="Bob")
    bob.send(type="receipt", **{"with": "Alice"}, seq=seq, state="read")
    restart_past_grace(net, alice, bob)
    owner, _ = join(net, "Root", "10.0.0.7:1", admin=ADMIN, features=["moderation"])
    owner.send(type="release_name", name="Bob")
    alice, _ = join(net, "Alice", "10.0.0.1:2", identity=alice_id, features=ALL)
    # Another identity under the name: Alice's page with "Bob" is with this one now.
    newbob, _ = join(net, "Bob", "10.0.0.6:1", identity=new_identity(), features=ALL)
    assert read_up_to(alice, "Bob") == {"you": 0, "them": 0}
    assert read_up_to(newbob, "Alice") == {"you": 0, "them": 0}
    newbob.send(type="bye")
    owner.send(type="release_name", name="Bob")
    # Nor someone without identity.
    anonymous, registered = join(net, "Bob", "10.0.0.5:1", features=ALL)
    assert registered["type"] == "registered"
    assert read_up_to(alice, "Bob") == {"you": 0, "them": 0}
    assert read_up_to(anonymous, "Alice") == {"you": 0, "them": 0}
    anonymous.send(type="bye")
    # The identity that read it still carries it, under the name it holds now.
    _bob, _ = join(net, "Robert", "10.0.0.2:2", identity=bob_id, features=ALL)
    assert read_up_to(alice, "Robert") == {"you": 0, "them": seq}


def test_the_store_step_keeps_an_older_historys_receipts_by_identity(tmp_path, monkeypatch):
    """The step appended for this upgrades a history of the version before it: receipts
    kept by session between two sessions with a stored identity move to those
    identities (the higher seq wins); the others stay by session."""
    import qtchat.server.store as store_module
    from qtchat.server.store import MIGRATIONS, SCHEMA_VERSION, MessageStore

    path = tmp_path / "old.db"
    monkeypatch.setattr(store_module, "MIGRATIONS",
                        MIGRATIONS[:MIGRATIONS.index(store_module._author_identities)])
    old = MessageStore(path)
    old._db.executemany("INSERT INTO session_identities VALUES (?, ?, 0)",
                        [(1, "alice"), (2, "bob"), (3, "bob")])
    old._db.executemany("INSERT INTO receipts VALUES (?, ?, ?, ?)",
                        [(2, 1, "read", 7), (3, 1, "read", 9), (2, 1, "delivered", 7),
                         (4, 1, "read", 5)])  # session 4 has no identity
    old._db.execute("COMMIT")
    old.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    store = MessageStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert sorted(store.identity_receipts()) == [("bob", "alice", "delivered", 7),
                                                     ("bob", "alice", "read", 9)]
        assert (4, 1, "read", 5) in store.receipts()
    finally:
        store.close()
