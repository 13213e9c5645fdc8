"""ChatClient and private conversations that last (PROTOCOL-FEATURES §1): the list of an
identity's conversations from ``registered``, and ``history {with}`` pages, against a
real server over sockets."""

from __future__ import annotations

from test_client import WAIT, endpoint, join

from qtchat.server.identity import new_identity


def test_a_client_with_the_identity_lists_its_conversations_and_pages_them(
        qtbot, server, make_client):
    alice_id = new_identity()
    alice, bob = make_client(), make_client()
    alice.identity, bob.identity = alice_id, new_identity()
    join(qtbot, alice, server, "Alice")
    join(qtbot, bob, server, "Bob")
    sent = []
    for text in ("first of three", "second of three", "third of three"):
        with qtbot.waitSignal(bob.messageReceived, timeout=WAIT) as arrived:
            alice.send_whisper("Bob", text)
        sent.append(arrived.args[0])
    bob.close()
    alice.close()
    qtbot.waitUntil(lambda: server.held_names() == [], timeout=WAIT)  # both sessions ended
    again = make_client()
    again.identity = alice_id
    with qtbot.waitSignal(again.conversationsReceived, timeout=WAIT) as listed:
        again.open(endpoint(server), "Alice")
    assert listed.args[0] == [{"with": "Bob", "last_seq": sent[-1].seq}]
    assert again.conversations == listed.args[0]
    with qtbot.waitSignal(again.privateHistoryReceived, timeout=WAIT) as page:
        again.request_private_history("Bob", limit=2)
    assert page.args[0].with_ == "Bob"
    assert [m.text for m in page.args[0].messages] == ["second of three", "third of three"]
    with qtbot.waitSignal(again.privateHistoryReceived, timeout=WAIT) as older:
        again.request_private_history("Bob", before=page.args[0].messages[0].seq)
    assert [m.text for m in older.args[0].messages] == ["first of three"]


def test_a_client_without_identity_has_no_conversations(qtbot, server, make_client):
    client = make_client()
    join(qtbot, client, server, "Carol")
    assert client.conversations == []
