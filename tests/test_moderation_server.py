"""Identity and moderation end to end (PROTOCOL-FEATURES §1, §4): a real ``qtchat serve``
process with ``--admin-password``, raw protocol clients on real sockets, each person
connecting from an address of their own on the loopback (127.0.0.x) since bans hold
addresses, and restarts of the process on the same history folder."""

from __future__ import annotations

from typing import Any

from helpers import ServeProcess, SyncClient

from qtchat.server.identity import new_identity

ADMIN = "a host's own secret"
MOD = ["moderation"]


def person(server: ServeProcess, name: str, address: str, **fields: Any
           ) -> tuple[SyncClient, dict[str, Any]]:
    client = SyncClient(server.port, source=address)
    return client, client.register(name, **fields)


def refused_and_closed(client: SyncClient) -> bool:
    try:
        client.recv()
    except ConnectionError:
        return True
    return False


def test_a_reserved_name_is_refused_to_others_across_a_restart_of_qtchat_serve(tmp_path):
    alice_id = new_identity()
    with ServeProcess(tmp_path, "--resume-grace", "1") as server:
        alice, answer = person(server, "Alice", "127.0.0.2", identity=alice_id)
        assert answer["type"] == "registered" and answer["identity"] is True
        alice.send({"type": "bye"})
        assert refused_and_closed(alice)
        other, refused = person(server, "ALICE", "127.0.0.3")
        assert refused == {"type": "username_taken", "name": "ALICE", "reason": "reserved"}
        other.close()
        assert server.terminate() == 0
    with ServeProcess(tmp_path, "--resume-grace", "1") as server:
        for fields in ({}, {"identity": new_identity()}):
            other, refused = person(server, "Alice", "127.0.0.3", **fields)
            assert refused["reason"] == "reserved"
            other.close()
        alice, answer = person(server, "Alice", "127.0.0.2", identity=alice_id)
        assert answer["type"] == "registered" and answer["identity"] is True
        alice.close()


def test_owner_op_and_member_over_sockets_and_a_ban_that_survives_a_restart(tmp_path):
    args = ("--admin-password", ADMIN)
    with ServeProcess(tmp_path, *args) as server:
        owner, answer = person(server, "Host", "127.0.0.9", admin=ADMIN, features=MOD)
        assert answer["role"] == "owner"
        people = {}
        for name, address in (("Olga", "127.0.0.2"), ("Oscar", "127.0.0.3"),
                              ("Mallory", "127.0.0.4"), ("Bob", "127.0.0.5")):
            people[name], answer = person(server, name, address, identity=new_identity(),
                                          features=MOD)
            assert answer["type"] == "registered"
        olga, oscar, mallory, bob = (people[n] for n in ("Olga", "Oscar", "Mallory", "Bob"))
        for name in ("Olga", "Oscar"):
            owner.send({"type": "set_role", "name": name, "role": "op"})
            role, _ = bob.recv_until("user_role", name=name)
            assert role == {"type": "user_role", "name": name, "role": "op", "by": "Host"}

        # A member may not; an op may not act on another op.
        mallory.send({"type": "kick", "name": "Bob", "id": "k1"})
        error, _ = mallory.recv_until("error")
        assert (error["code"], error["id"]) == ("not_permitted", "k1")
        olga.send({"type": "ban", "name": "Oscar"})
        assert olga.recv_until("error")[0]["code"] == "not_permitted"
        oscar.sync()  # still here

        # The owner mutes: a whisper is refused too; others are told.
        owner.send({"type": "mute", "name": "Mallory", "minutes": 10})
        muted, _ = bob.recv_until("user_muted")
        assert (muted["name"], muted["by"]) == ("Mallory", "Host") and muted["until"]
        mallory.send({"type": "whisper", "to": "Bob", "text": "psst"})
        assert mallory.recv_until("error")[0]["code"] == "muted"
        owner.send({"type": "unmute", "name": "Mallory"})
        bob.recv_until("user_unmuted")

        # The owner kicks Bob from the server: he is told why and by whom.
        owner.send({"type": "kick", "name": "Bob", "reason": "time out"})
        bye, _ = bob.recv_until("bye")
        assert bye == {"type": "bye", "reason": "kicked", "by": "Host", "text": "time out"}
        assert refused_and_closed(bob)
        left, _ = olga.recv_until("user_left", name="Bob")
        assert (left["reason"], left["by"], left["text"]) == ("kicked", "Host", "time out")

        # An op bans Mallory until lifted.
        olga.send({"type": "ban", "name": "Mallory", "reason": "spam"})
        assert mallory.recv_until("bye")[0]["reason"] == "banned"
        assert refused_and_closed(mallory)
        olga.sync()
        assert server.terminate() == 0
    with ServeProcess(tmp_path, *args) as server:
        # Banned by the skeleton of the name (a capital I for each l, from elsewhere) ...
        lookalike, answer = person(server, "MaIIory", "127.0.0.44")
        assert (answer["type"], answer["code"], answer["until"]) == ("error", "banned", None)
        assert refused_and_closed(lookalike)
        # ... and by the address, under any name.
        other, answer = person(server, "Nobody", "127.0.0.4")
        assert answer["code"] == "banned"
        other.close()
        owner, answer = person(server, "Host2", "127.0.0.9", admin=ADMIN, features=MOD)
        owner.send({"type": "ban_list", "id": "l"})
        listed, _ = owner.recv_until("ban_list")
        assert [(b["name"], b["by"], b["reason"]) for b in listed["bans"]] == \
            [("Mallory", "Olga", "spam")]
        owner.send({"type": "unban", "name": "Mallory"})
        owner.sync()
        again, answer = person(server, "Nobody", "127.0.0.4")
        assert answer["type"] == "registered"
        again.close()
        owner.close()
