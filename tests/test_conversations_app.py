"""The app brings its private tabs back after a restart (PROTOCOL-FEATURES §1): real
windows (pytest-qt), a real server over sockets, the app's own settings (its identity
for the host) kept between the two starts."""

from __future__ import annotations

from test_client import WAIT, join

from qtchat.gui.models import ConversationKind
from qtchat.gui.tabs import tab_label
from qtchat.server.identity import new_identity


def whispers(conv) -> list[str]:
    return [entry.text for entry in conv.model.entries() if entry.seq is not None]


def tab_titles(window) -> list[str]:
    return [window.tabs.tabText(index) for index in range(window.tabs.count())]


def close_app(qtbot, apps, controller, server) -> None:
    """Close the window as the person does (bye, session saved) without quitting Qt."""
    window = controller.window
    window.closedByUser.disconnect()
    controller.release_session()
    window._force_close = True
    window.close()
    apps.controllers.remove(controller)
    window.deleteLater()
    qtbot.waitUntil(lambda: "Alice" not in server.held_names(), timeout=WAIT)


def alice_whispers_to_bob(qtbot, apps, server, make_client, text: str):
    """Alice's app joins; Bob (a client with an identity) joins and gets her whisper.
    Returns (Alice's app controller, Bob's client)."""
    alice = apps.join(server.port, "Alice")
    bob = make_client()
    bob.identity = new_identity()
    join(qtbot, bob, server, "Bob")
    with qtbot.waitSignal(bob.messageReceived, timeout=WAIT):
        alice.window.send_whisper("Bob", text)
    return alice, bob


def test_private_tabs_come_back_with_their_whispers_after_the_app_restarts(
        qtbot, apps, make_server, make_client):
    server = make_server()
    first, bob = alice_whispers_to_bob(qtbot, apps, server, make_client,
                                       "meet me at the station at nine")
    bob.close()  # Bob is gone too: only the host keeps the conversation now
    close_app(qtbot, apps, first, server)

    again = apps.join(server.port, "Alice")
    window = again.window
    conv = window.conversation(ConversationKind.PRIVATE, "Bob", create=False)
    assert conv is not None, tab_titles(window)
    assert tab_label(ConversationKind.PRIVATE, "Bob") in tab_titles(window)
    assert window.current().kind == ConversationKind.ROOM  # the lobby stays in front
    with qtbot.waitSignal(again.client.privateHistoryReceived, timeout=WAIT):
        window.show_conversation(conv)  # its newest page is loaded when shown
    assert whispers(conv) == ["meet me at the station at nine"]
    # Bob is away, his name his identity's: a whisper to him is kept for him.
    with qtbot.waitSignal(again.client.sendConfirmed, timeout=WAIT):
        window.send_whisper("Bob", "are you still coming?")
    assert whispers(conv) == ["meet me at the station at nine", "are you still coming?"]


def test_a_closed_private_tab_reopened_shows_the_conversation_from_the_host(
        qtbot, apps, make_server, make_client):
    server = make_server()
    first, _bob = alice_whispers_to_bob(qtbot, apps, server, make_client,
                                        "the tickets are in the drawer")
    close_app(qtbot, apps, first, server)

    again = apps.join(server.port, "Alice")
    window = again.window
    conv = window.conversation(ConversationKind.PRIVATE, "Bob", create=False)
    assert conv is not None and whispers(conv) == []  # not shown yet: nothing loaded
    window._close_tab(window.tabs.indexOf(conv.view))
    assert window.conversation(ConversationKind.PRIVATE, "Bob", create=False) is None
    with qtbot.waitSignal(again.client.privateHistoryReceived, timeout=WAIT):
        reopened = window.conversation(ConversationKind.PRIVATE, "Bob")
        window.show_conversation(reopened)
    assert whispers(reopened) == ["the tickets are in the drawer"]
