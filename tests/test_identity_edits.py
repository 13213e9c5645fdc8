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
