"""The living-room features over real sockets: an in-process ChatServer with raw line
clients, and a ``qtchat serve`` child for the host flag and for a crash.

The rules themselves are in test_living_core.py (hand clock); here: that the server
offers the features by default, the frames survive the wire both ways, and what is
stored is stored (an edit and a delete outlive a kill -9 of the host).
"""

from __future__ import annotations

import test_full_disk
from helpers import LineClient, ServeProcess, SyncClient

ALL = ["search", "edit", "typing", "presence"]
small_disk = test_full_disk.small_disk  # a 2 MB tmpfs that really fills


def joined(qtbot, server, name: str, features=ALL) -> LineClient:
    client = LineClient(qtbot, server.port)
    answer = client.register(name, **({} if features is None else {"features": features}))
    assert answer["type"] == "registered"
    return client


def test_search_and_edit_over_the_wire(qtbot, make_server):
    server = make_server()
    ann = joined(qtbot, server, "Ann")
    bob = joined(qtbot, server, "Bob")
    old = joined(qtbot, server, "Old", features=None)
    ann.send({"type": "broadcast", "text": "Réunion à 15h au café", "id": "m1"})
    seq = ann.wait_for("broadcast", id="m1")["seq"]
    bob.send({"type": "search", "query": "CAFE reu", "id": "s1"})
    found = bob.wait_for("search_results")
    assert found["id"] == "s1" and found["query"] == "CAFE reu" and found["more"] is False
    assert [(m["seq"], m["text"]) for m in found["messages"]] == [(seq, "Réunion à 15h au café")]
    ann.send({"type": "edit", "seq": seq, "text": "Réunion à 16h au café", "id": "e1"})
    for client in (ann, bob):
        edited = client.wait_for("edited")
        assert (edited["seq"], edited["text"], edited["room"]) == (
            seq, "Réunion à 16h au café", "lobby")
    assert [f["type"] for f in old.sync()] == ["broadcast"]  # the message, no edit
    ann.sync()
    bob.send({"type": "delete", "seq": seq, "id": "d1"})
    error = bob.wait_for("error")
    assert (error["code"], error["ref"], error["id"]) == ("not_permitted", "delete", "d1")
    ann.send({"type": "delete", "seq": seq})
    assert bob.wait_for("deleted")["by"] == "Ann"
    bob.send({"type": "search", "query": "reunion"})
    assert bob.wait_for("search_results")["messages"] == []


def test_typing_and_presence_over_the_wire(qtbot, make_server):
    server = make_server()
    ann = joined(qtbot, server, "Ann")
    bob = joined(qtbot, server, "Bob")
    bob.sync()
    ann.send({"type": "typing", "state": "active"})
    ann.send({"type": "typing", "state": "active"})  # within 2 s: dropped
    ann.send({"type": "status", "state": "busy", "text": "in a call"})
    ann.sync()  # the server has handled all three (and queued Bob's copies first)
    assert [f["type"] for f in bob.sync()] == ["typing", "user_status"]
    assert bob.frames[-2]["text"] == "in a call"  # (the pong is last)
    cid = joined(qtbot, server, "Cid")
    registered = cid.frames[0]
    assert registered["statuses"] == {"Ann": {"state": "busy", "text": "in a call"}}


def test_the_edit_window_flag_reaches_a_served_host(tmp_path):
    with ServeProcess(tmp_path / "data", "--edit-window", "0") as host:
        ann = SyncClient(host.port)
        ann.register("Ann", features=ALL)
        ann.send({"type": "broadcast", "text": "final", "id": "m"})
        message, _ = ann.recv_until("broadcast", id="m")
        ann.send({"type": "edit", "seq": message["seq"], "text": "changed"})
        error, _ = ann.recv_until("error")
        assert error["code"] == "edit_window_expired"
        ann.close()


def test_an_edit_and_a_delete_that_were_told_survive_a_kill_of_the_host(tmp_path):
    data = tmp_path / "data"
    with ServeProcess(data) as host:
        ann = SyncClient(host.port)
        ann.register("Ann", features=ALL)
        seqs = []
        for text in ("first draft", "oops wrong room"):
            ann.send({"type": "broadcast", "text": text, "id": text})
            seqs.append(ann.recv_until("broadcast", id=text)[0]["seq"])
        ann.send({"type": "edit", "seq": seqs[0], "text": "final draft"})
        ann.recv_until("edited")
        ann.send({"type": "delete", "seq": seqs[1]})
        ann.recv_until("deleted")
        host.kill()  # SIGKILL: nothing is flushed on the way out
        ann.close()
    with ServeProcess(data) as host:
        bob = SyncClient(host.port)
        bob.register("Bob", features=ALL)
        bob.send({"type": "history", "room": "lobby"})
        page, _ = bob.recv_until("history")
        by_seq = {m["seq"]: m for m in page["messages"]}
        assert by_seq[seqs[0]]["text"] == "final draft" and "edited" in by_seq[seqs[0]]
        assert by_seq[seqs[1]]["text"] == "" and by_seq[seqs[1]]["deleted"]["by"] == "Ann"
        bob.close()


def test_an_edit_the_full_disk_refuses_is_told_to_nobody_but_the_editor(small_disk):
    """Stored means stored (features §0): an edit that cannot be committed is answered
    with storage_error, others hear nothing of it, and it works once there is room."""
    from test_full_disk import TIMEOUT, fill, post, post_until_refused

    with ServeProcess(small_disk / "data") as host:
        ann = SyncClient(host.port, timeout=TIMEOUT)
        ann.register("Ann", features=ALL)
        bob = SyncClient(host.port, timeout=TIMEOUT)
        bob.register("Bob", features=ALL)
        seq = post(ann, "before the disk filled", "first")["seq"]
        filler = fill(small_disk)
        post_until_refused(ann, "filling")
        ann.send({"type": "edit", "seq": seq, "text": "x" * 3000, "id": "e"})
        error, _ = ann.recv_until("error", id="e")
        assert error["code"] == "storage_error" and error["ref"] == "edit"
        assert [f["type"] for f in bob.sync() if f["type"] == "edited"] == []
        filler.unlink()
        ann.send({"type": "edit", "seq": seq, "text": "after", "id": "e2"})
        edited, _ = bob.recv_until("edited")
        assert (edited["seq"], edited["text"]) == (seq, "after")
        ann.close()
        bob.close()
