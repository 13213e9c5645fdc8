"""Private conversations that last (PROTOCOL-FEATURES §1) end to end: a real ``qtchat
serve`` process restarted on the same history folder, raw protocol clients on real
sockets, each person from an address of their own on the loopback."""

from __future__ import annotations

from helpers import ServeProcess, SyncClient
from test_moderation_server import person

from qtchat.server.identity import new_identity

ADMIN = "a host's own secret"
FEATURES = ["search"]


def leave(client: SyncClient) -> None:
    """``bye``, then read until the server closes: the session has ended."""
    client.send({"type": "bye"})
    try:
        while True:
            client.recv()
    except ConnectionError:
        pass
    client.close()


def private_page(client: SyncClient, with_: str) -> list[str]:
    """The texts of ``history {with}``; [] when nobody has that name."""
    client.send({"type": "history", "with": with_})
    while True:
        frame = client.recv()
        if frame["type"] == "history":
            assert frame["with"].casefold() == with_.casefold()
            return [m["text"] for m in frame["messages"]]
        if frame["type"] == "error" and frame.get("ref") == "history":
            assert frame["code"] == "no_such_user"
            return []


def search(client: SyncClient, query: str) -> list[str]:
    client.send({"type": "search", "id": "q", "query": query})
    frame, _ = client.recv_until("search_results", id="q")
    return [m["text"] for m in frame["messages"]]


def test_whispers_stay_with_their_identities_across_a_restart_and_never_reach_a_new_holder(
        tmp_path):
    alice_id, bob_id = new_identity(), new_identity()
    args = ("--admin-password", ADMIN, "--resume-grace", "1")
    with ServeProcess(tmp_path, *args) as server:
        alice, _ = person(server, "Alice", "127.0.0.2", identity=alice_id, features=FEATURES)
        bob, _ = person(server, "Bob", "127.0.0.3", identity=bob_id, features=FEATURES)
        alice.send({"type": "whisper", "to": "Bob", "text": "the plan is on the fridge"})
        bob.recv_until("whisper", text="the plan is on the fridge")
        bob.send({"type": "whisper", "to": "Alice", "text": "got it, burning it now"})
        last, _ = alice.recv_until("whisper", text="got it, burning it now")
        leave(alice)
        leave(bob)
        assert server.terminate() == 0
    with ServeProcess(tmp_path, *args) as server:
        # Bob is gone (his session ended before the restart): Alice still has him.
        alice, answer = person(server, "Alice", "127.0.0.2", identity=alice_id,
                               features=FEATURES)
        assert answer["conversations"] == [{"with": "Bob", "last_seq": last["seq"]}]
        assert private_page(alice, "Bob") == ["the plan is on the fridge",
                                              "got it, burning it now"]
        # An offline whisper: Bob's name is bound to his identity, which has no session.
        alice.send({"type": "whisper", "to": "Bob", "text": "are you there?", "id": "w"})
        echo, _ = alice.recv_until("whisper", id="w")
        owner, _ = person(server, "Root", "127.0.0.9", admin=ADMIN, features=["moderation"])
        owner.send({"type": "release_name", "name": "Bob"})
        owner.sync()
        # Whoever takes the name now sees none of it: without an identity, or with one.
        mallory, answer = person(server, "Bob", "127.0.0.4", features=FEATURES)
        assert answer["type"] == "registered" and "conversations" not in answer
        assert private_page(mallory, "Alice") == []
        assert search(mallory, "fridge") == [] and search(mallory, "there") == []
        leave(mallory)
        eve, answer = person(server, "Bob", "127.0.0.5", identity=new_identity(),
                             features=FEATURES)
        assert answer["type"] == "registered" and answer["conversations"] == []
        assert private_page(eve, "Alice") == []
        assert search(eve, "fridge") == []
        # Alice's own whispers are still hers to search.
        assert search(alice, "fridge") == ["the plan is on the fridge"]
        assert echo["to"] == "Bob"
        for client in (alice, owner, eve):
            client.close()
        assert server.terminate() == 0
    with ServeProcess(tmp_path, *args) as server:
        # The real Bob lost his name (released, then taken); his whispers are not lost:
        # under another name, his identity finds its conversation with Alice.
        bob, answer = person(server, "Robert", "127.0.0.3", identity=bob_id,
                             features=FEATURES)
        assert answer["conversations"] == [{"with": "Alice", "last_seq": echo["seq"]}]
        assert private_page(bob, "Alice") == ["the plan is on the fridge",
                                              "got it, burning it now", "are you there?"]
        bob.close()
