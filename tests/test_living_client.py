"""ChatClient's living-room methods and signals against a real server over sockets."""

from __future__ import annotations

from test_client import WAIT, join, round_trip

from qtchat.client.chat_client import CLIENT_FEATURES


def pair(qtbot, server, make_client):
    ann, bob = make_client(), make_client()
    join(qtbot, ann, server, "Ann")
    join(qtbot, bob, server, "Bob")
    assert ann.features == list(CLIENT_FEATURES)
    return ann, bob


def posted(qtbot, client, text: str, to: str | None = None):
    with qtbot.waitSignal(client.sendConfirmed, timeout=WAIT) as sent:
        if to is None:
            client.send_broadcast(text)
        else:
            client.send_whisper(to, text)
    return sent.args[1]


def test_search_answers_with_the_id_it_was_asked_with(qtbot, server, make_client):
    ann, bob = pair(qtbot, server, make_client)
    message = posted(qtbot, ann, "Lunch at the Café?")
    with qtbot.waitSignal(bob.searchResults, timeout=WAIT) as answer:
        asked = bob.search("cafe")
    frame = answer.args[0]
    assert frame.id == asked and not frame.more
    assert [(m.seq, m.text, m.sender) for m in frame.messages] == [
        (message.seq, "Lunch at the Café?", "Ann")]


def test_edit_and_delete_reach_both_and_history_shows_them(qtbot, server, make_client):
    ann, bob = pair(qtbot, server, make_client)
    message = posted(qtbot, ann, "teh plan")
    with qtbot.waitSignals([ann.messageEdited, bob.messageEdited], timeout=WAIT):
        assert ann.edit_message(message.seq, "the plan")
    with qtbot.waitSignal(bob.errorReceived, timeout=WAIT) as refused:
        bob.delete_message(message.seq)
    assert refused.args[0] == "not_permitted" and refused.args[2] == "delete"
    with qtbot.waitSignal(bob.messageDeleted, timeout=WAIT) as gone:
        ann.delete_message(message.seq)
    assert (gone.args[0].seq, gone.args[0].by) == (message.seq, "Ann")
    with qtbot.waitSignal(bob.historyReceived, timeout=WAIT) as page:
        bob.request_history("lobby")
    tombstone = page.args[1][-1]
    assert tombstone.seq == message.seq and tombstone.text == ""
    assert tombstone.deleted["by"] == "Ann"


def test_typing_and_status_arrive_and_the_switches_stop_sending(qtbot, server, make_client):
    ann, bob = pair(qtbot, server, make_client)
    with qtbot.waitSignal(bob.typingReceived, timeout=WAIT) as typing:
        assert ann.send_typing("active")
    assert (typing.args[0].sender, typing.args[0].room, typing.args[0].state) == (
        "Ann", "lobby", "active")
    with qtbot.waitSignal(bob.statusReceived, timeout=WAIT) as status:
        ann.set_status("away", "back at 3")
    assert (status.args[0].name, status.args[0].state, status.args[0].text) == (
        "Ann", "away", "back at 3")
    # Turned off: nothing leaves, so nothing arrives.
    whisper = posted(qtbot, bob, "did you read this?", to="Ann")
    ann.typing_enabled = ann.receipts_enabled = False
    received = []
    bob.typingReceived.connect(received.append)
    bob.receiptReceived.connect(received.append)
    assert not ann.send_typing("paused")
    assert not ann.send_receipt("Bob", whisper.seq, "read")
    round_trip(qtbot, ann)
    round_trip(qtbot, bob)
    assert received == []
    ann.receipts_enabled = True
    with qtbot.waitSignal(bob.receiptReceived, timeout=WAIT) as receipt:
        assert ann.send_receipt("Bob", whisper.seq, "read")
    assert (receipt.args[0].sender, receipt.args[0].seq, receipt.args[0].state) == (
        "Ann", whisper.seq, "read")
