"""A ban by address does not shut out the neighbours (PROTOCOL-FEATURES §4, docs/protocol.md
"Moderation"): people behind one NAT share an address, so a ban holds the banned
person's identity and name everywhere and their address only against clients without an
identity. A real ``qtchat serve`` process, raw clients on real sockets, two of them on
the same loopback address."""

from __future__ import annotations

from helpers import ServeProcess
from test_moderation_server import ADMIN, MOD, person, refused_and_closed

from qtchat.gui.moderation import BAN, ModerationDialog
from qtchat.server.identity import new_identity

SHARED = "127.0.0.4"  # one router's address, for Mallory and her neighbour Nina


def test_a_ban_catches_the_address_only_for_clients_without_an_identity(tmp_path):
    nina_id, mallory_id = new_identity(), new_identity()
    with ServeProcess(tmp_path, "--admin-password", ADMIN) as server:
        owner, answer = person(server, "Host", "127.0.0.9", admin=ADMIN, features=MOD)
        assert answer["role"] == "owner"
        mallory, answer = person(server, "Mallory", SHARED, identity=mallory_id)
        assert answer["type"] == "registered"
        nina, answer = person(server, "Nina", SHARED, identity=nina_id)
        assert answer["type"] == "registered"

        owner.send({"type": "ban", "name": "Mallory", "reason": "spam"})
        assert mallory.recv_until("bye")[0]["reason"] == "banned"
        assert refused_and_closed(mallory)
        nina.sync()  # the neighbour stays
        nina.send({"type": "bye"})
        assert refused_and_closed(nina)

        # The neighbour comes back from the same address with her identity: welcome.
        nina, answer = person(server, "Nina", SHARED, identity=nina_id)
        assert answer["type"] == "registered"
        # Someone new there with an identity of their own: welcome too.
        guest, answer = person(server, "Guest", SHARED, identity=new_identity())
        assert answer["type"] == "registered"
        # From that address without an identity, under any name: refused.
        anonymous, answer = person(server, "Nobody", SHARED)
        assert (answer["type"], answer["code"]) == ("error", "banned")
        assert refused_and_closed(anonymous)
        # Mallory's identity from anywhere, under another name: refused.
        elsewhere, answer = person(server, "Marlene", "127.0.0.77", identity=mallory_id)
        assert answer["code"] == "banned"
        assert refused_and_closed(elsewhere)
        # Her name (a look-alike) from anywhere, with a fresh identity: refused.
        lookalike, answer = person(server, "MaIIory", "127.0.0.78", identity=new_identity())
        assert answer["code"] == "banned"
        assert refused_and_closed(lookalike)
        for client in (owner, nina, guest):
            client.close()


def test_the_ban_dialog_says_whom_the_address_catches(qtbot):
    dialog = ModerationDialog(BAN, "Mallory")
    qtbot.addWidget(dialog)
    said = dialog.question.text()
    assert "Mallory" in said and "identity will be refused" in said
    assert "only to apps without an identity" in said and "can still join" in said
