"""Slash commands through real windows: each built-in command, ``/help``, an unknown
command, wrong arguments, and a command registered by a test (as a feature module
would register its own) being run and listed.

Two ``ChatWindow``s (Alice and Bob) on one real server on 127.0.0.1, port 0; the
tests type into Alice's message box with ``qtbot`` and read what each window's
models show.
"""

from __future__ import annotations

import pytest
from gui_harness import WAIT_MS
from helpers import chat_window
from PySide6.QtCore import Qt

from qtchat.gui.commands import REGISTRY, CommandError, CommandRegistry, command
from qtchat.gui.conversation import Conversation
from qtchat.gui.main_window import ChatWindow
from qtchat.gui.models import ConversationKind, MessageModel, MessageRoles, NoticeKind, RowKind

# The offscreen platform plugin says this whenever a QMainWindow is shown; it is
# about the test platform, not about the app.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")

HELP_FOOTER = "Tab completes names; Up and Down recall what you typed."


# --- helpers ------------------------------------------------------------------------


def open_window(qtbot, make_client, port: int, name: str) -> ChatWindow:
    return chat_window(qtbot, make_client(), port, name, timeout=WAIT_MS)


@pytest.fixture
def people(qtbot, server, make_client):
    """Alice's and Bob's windows on one server, each seeing the other in the lobby."""
    alice = open_window(qtbot, make_client, server.port, "Alice")
    bob = open_window(qtbot, make_client, server.port, "Bob")
    qtbot.waitUntil(lambda: "Bob" in lobby(alice).members.names(), timeout=WAIT_MS)
    return alice, bob


def lobby(window: ChatWindow) -> Conversation:
    conv = window.conversation(ConversationKind.ROOM, "lobby", create=False)
    assert conv is not None
    return conv


def private(window: ChatWindow, name: str) -> Conversation | None:
    return window.conversation(ConversationKind.PRIVATE, name, create=False)


def type_line(qtbot, window: ChatWindow, text: str) -> None:
    qtbot.keyClicks(window.input, text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)


def rows(model: MessageModel, kind: RowKind) -> list[str]:
    return [model.index(row).data(MessageRoles.Text) for row in range(model.rowCount())
            if model.index(row).data(MessageRoles.Kind) == kind]


def notices(model: MessageModel, kind: NoticeKind | None = None) -> list[str]:
    return [model.index(row).data(MessageRoles.Text) for row in range(model.rowCount())
            if model.index(row).data(MessageRoles.Kind) == RowKind.NOTICE
            and (kind is None or model.index(row).data(MessageRoles.NoticeKind) == kind)]


def delivered(model: MessageModel, text: str) -> bool:
    return any(model.index(row).data(MessageRoles.Text) == text and
               model.index(row).data(MessageRoles.Seq) is not None
               for row in range(model.rowCount()))


def round_trip(qtbot, window: ChatWindow) -> None:
    """A ping answered: anything the host would have sent before it has arrived."""
    with qtbot.waitSignal(window.client.pongReceived, timeout=WAIT_MS):
        window.client.ping()


def nothing_sent(qtbot, alice: ChatWindow, bob: ChatWindow) -> None:
    round_trip(qtbot, alice)
    round_trip(qtbot, bob)
    assert alice.client.pending_ids == []
    assert rows(lobby(bob).model, RowKind.MESSAGE) == []
    assert private(bob, "Alice") is None


# --- /w and its aliases -------------------------------------------------------------


@pytest.mark.parametrize("word", ["w", "msg", "whisper", "query", "W"])
def test_whisper_and_its_aliases_reach_only_the_person_named(qtbot, people, word):
    alice, bob = people
    type_line(qtbot, alice, f"/{word} Bob meet me at noon")
    qtbot.waitUntil(lambda: private(bob, "Alice") is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: delivered(private(bob, "Alice").model, "meet me at noon"),
                    timeout=WAIT_MS)
    # Alice stays where she typed it; a short line there says where it went.
    assert alice.current() is lobby(alice)
    assert "✉ to Bob: meet me at noon" in notices(lobby(alice).model, NoticeKind.INFO)
    qtbot.waitUntil(lambda: delivered(private(alice, "Bob").model, "meet me at noon"),
                    timeout=WAIT_MS)
    assert rows(lobby(bob).model, RowKind.MESSAGE) == []


def test_whisper_typed_in_the_private_tab_says_nothing_about_where_it_went(qtbot, people):
    alice, bob = people
    type_line(qtbot, alice, "/w Bob")  # no text: opens the conversation, sends nothing
    mine = private(alice, "Bob")
    assert mine is not None and alice.current() is mine
    assert "Private with Bob" in alice.members_label.text()
    nothing_sent(qtbot, alice, bob)
    type_line(qtbot, alice, "/w Bob hello")
    qtbot.waitUntil(lambda: delivered(mine.model, "hello"), timeout=WAIT_MS)
    assert not [text for text in notices(mine.model) if text.startswith("✉ to")]
    qtbot.waitUntil(lambda: private(bob, "Alice") is not None, timeout=WAIT_MS)


@pytest.mark.parametrize(("line", "said"), [
    ("/w", "Usage: /w NAME [TEXT]"),
    ("/msg   ", "Usage: /w NAME [TEXT]"),
    ("/w Bob! hi", "A name may contain only letters, digits and _ - . (not “!”)."),
])
def test_whisper_with_wrong_arguments_is_answered_and_sends_nothing(qtbot, people, line, said):
    alice, bob = people
    type_line(qtbot, alice, line)
    assert said in notices(lobby(alice).model, NoticeKind.ERROR)
    assert [conv.kind for conv in alice._conversations.values()] == [ConversationKind.ROOM]
    nothing_sent(qtbot, alice, bob)


# --- /me ----------------------------------------------------------------------------


def test_me_is_an_action_in_the_room_and_in_a_private_conversation(qtbot, people):
    alice, bob = people
    type_line(qtbot, alice, "/me waves")
    qtbot.waitUntil(lambda: delivered(lobby(bob).model, "waves"), timeout=WAIT_MS)
    model = lobby(bob).model
    row = next(model.index(r) for r in range(model.rowCount())
               if model.index(r).data(MessageRoles.Text) == "waves")
    assert row.data(MessageRoles.IsAction) is True
    assert row.data(Qt.ItemDataRole.DisplayRole) == "* Alice waves"

    type_line(qtbot, alice, "/w Bob")
    type_line(qtbot, alice, "/me nods")  # typed in the private tab: a whispered action
    qtbot.waitUntil(lambda: private(bob, "Alice") is not None and
                    delivered(private(bob, "Alice").model, "nods"), timeout=WAIT_MS)
    model = private(bob, "Alice").model
    row = next(model.index(r) for r in range(model.rowCount())
               if model.index(r).data(MessageRoles.Text) == "nods")
    assert row.data(MessageRoles.IsAction) is True and row.data(MessageRoles.IsWhisper)
    assert "nods" not in rows(lobby(bob).model, RowKind.MESSAGE)


def test_me_without_text_gives_its_usage(qtbot, people):
    alice, bob = people
    type_line(qtbot, alice, "/me   ")
    assert "Usage: /me TEXT" in notices(lobby(alice).model, NoticeKind.ERROR)
    nothing_sent(qtbot, alice, bob)


# --- /join and /leave ---------------------------------------------------------------


def test_join_and_leave_and_part(qtbot, people):
    alice, _bob = people
    with qtbot.waitSignal(alice.client.roomJoined, timeout=WAIT_MS):
        type_line(qtbot, alice, "/JOIN dev")
    dev = alice.conversation(ConversationKind.ROOM, "dev", create=False)
    assert dev is not None and alice.current() is dev
    with qtbot.waitSignal(alice.client.roomLeft, timeout=WAIT_MS):
        type_line(qtbot, alice, "/leave")  # the room in front
    assert alice.conversation(ConversationKind.ROOM, "dev", create=False) is None
    assert alice.current() is lobby(alice)

    with qtbot.waitSignal(alice.client.roomJoined, timeout=WAIT_MS):
        type_line(qtbot, alice, "/join dev")
    alice.show_conversation(lobby(alice))
    with qtbot.waitSignal(alice.client.roomLeft, timeout=WAIT_MS,
                          check_params_cb=lambda room: room == "dev"):
        type_line(qtbot, alice, "/part dev")  # a room named from elsewhere
    assert alice.conversation(ConversationKind.ROOM, "dev", create=False) is None


@pytest.mark.parametrize(("line", "said"), [
    ("/join", "Usage: /join ROOM"),
    ("/join two words", "A room name cannot contain spaces."),
    ("/leave", "Everyone stays in the lobby; it cannot be left."),
    ("/leave LOBBY", "Everyone stays in the lobby; it cannot be left."),
])
def test_join_and_leave_refusals(qtbot, people, line, said):
    alice, _bob = people
    type_line(qtbot, alice, line)
    assert said in notices(lobby(alice).model, NoticeKind.ERROR)
    round_trip(qtbot, alice)  # no joined/left is on its way either
    assert list(alice._conversations) == [(ConversationKind.ROOM, "lobby")]


def test_leave_in_a_private_tab_closes_it(qtbot, people):
    alice, _bob = people
    type_line(qtbot, alice, "/w Bob")
    assert alice.current() is private(alice, "Bob")
    type_line(qtbot, alice, "/leave")
    assert private(alice, "Bob") is None
    assert alice.current() is lobby(alice)
    assert alice.members_label.text() == "In lobby · 2 people"


# --- /help, unknown commands, /quit -------------------------------------------------


def test_help_lists_every_command_from_the_registry(qtbot, people):
    alice, _bob = people
    type_line(qtbot, alice, "/help")
    shown = notices(lobby(alice).model, NoticeKind.INFO)
    start = shown.index("Commands:")
    assert shown[start:] == [
        "Commands:",
        "/w NAME [TEXT] (or /msg, /whisper, /query) — a private message to one person",
        "/me TEXT — an action, shown as “* you TEXT”",
        "/join ROOM — enter a room (made if new)",
        "/leave [ROOM] (or /part) — leave this room or private tab",
        "/help [COMMAND] — this list, or what one command does",
        "/quit (or /exit) — leave and close the window",
        # The moderation feature's commands (qtchat/gui/moderation_glue.py): this host
        # accepted it.
        "/kick NAME [REASON] — remove someone from this room (in the lobby: from the host)",
        "/ban NAME [REASON] — refuse someone's name, identity and address until lifted "
        "(/unban)",
        "/unban NAME — lift a ban",
        "/bans — list who is banned",
        "/mute NAME [MINUTES] — stop someone speaking in this room (in the lobby: "
        "everywhere)",
        "/unmute NAME — let someone speak again",
        "/topic [TEXT] — show or set this room's topic",
        "/op NAME — make someone an op (the owner only)",
        "/deop NAME — take someone's op role away",
        HELP_FOOTER,
    ]
    assert shown[start + 1:-1] == [made.help_line() for made in
                                   REGISTRY.available(alice.client)]  # nothing unregistered


def test_help_for_one_command(qtbot, people):
    alice, _bob = people
    type_line(qtbot, alice, "/help /part")
    assert notices(lobby(alice).model, NoticeKind.INFO)[-1] == \
        "/leave [ROOM] (or /part) — leave this room or private tab"
    type_line(qtbot, alice, "/help frobnicate")
    assert notices(lobby(alice).model, NoticeKind.ERROR)[-1] == \
        "Unknown command /frobnicate — type /help for the list."


@pytest.mark.parametrize("line", ["/frobnicate now", "/", "/ w Bob hi"])
def test_unknown_command_names_help_and_sends_nothing(qtbot, people, line):
    alice, bob = people
    type_line(qtbot, alice, line)
    word = line[1:].partition(" ")[0]
    assert notices(lobby(alice).model, NoticeKind.ERROR) == \
        [f"Unknown command /{word} — type /help for the list."]
    nothing_sent(qtbot, alice, bob)


def test_double_slash_sends_the_text_with_one_slash(qtbot, people):
    alice, bob = people
    type_line(qtbot, alice, "//help is not a command")
    qtbot.waitUntil(lambda: delivered(lobby(bob).model, "/help is not a command"),
                    timeout=WAIT_MS)
    assert "Commands:" not in notices(lobby(alice).model)


@pytest.mark.parametrize("line", ["/quit", "/exit", "/QUIT now"])
def test_quit_closes_the_window_and_leaves(qtbot, people, line):
    alice, bob = people
    with qtbot.waitSignals([alice.closedByUser, alice.client.closed], timeout=WAIT_MS):
        type_line(qtbot, alice, line)
    assert not alice.isVisible()
    qtbot.waitUntil(lambda: "Alice" not in lobby(bob).members.names(), timeout=WAIT_MS)


# --- a command registered by a test -------------------------------------------------


@pytest.fixture
def shout():
    """``/shout TEXT`` (or ``/yell``): sends TEXT in capitals; the calls it got."""
    calls: list[tuple[str, str]] = []

    @command("shout", args="TEXT", aliases=("yell",), help="say TEXT in capitals")
    def shout_(ctx, text: str) -> None:
        if text == "quietly":
            raise CommandError("Shouting quietly is not a thing.")
        calls.append((ctx.target.title, text))
        ctx.window.send_broadcast(ctx.target, text.upper())

    yield calls
    REGISTRY.unregister("shout")


def test_a_registered_command_is_dispatched_and_listed(qtbot, people, shout):
    alice, bob = people
    type_line(qtbot, alice, "/shout hello there")
    assert shout == [("lobby", "hello there")]
    qtbot.waitUntil(lambda: delivered(lobby(bob).model, "HELLO THERE"), timeout=WAIT_MS)

    type_line(qtbot, alice, "/yell")  # its alias, without its argument
    assert notices(lobby(alice).model, NoticeKind.ERROR)[-1] == "Usage: /shout TEXT"
    type_line(qtbot, alice, "/shout quietly")  # the command refuses, in its own words
    assert notices(lobby(alice).model, NoticeKind.ERROR)[-1] == \
        "Shouting quietly is not a thing."
    assert len(shout) == 1

    type_line(qtbot, alice, "/help")
    shown = notices(lobby(alice).model, NoticeKind.INFO)
    assert "/shout TEXT (or /yell) — say TEXT in capitals" in shown
    assert shown[-1] == HELP_FOOTER

    REGISTRY.unregister("shout")
    type_line(qtbot, alice, "/shout again")
    assert notices(lobby(alice).model, NoticeKind.ERROR)[-1] == \
        "Unknown command /shout — type /help for the list."
    assert len(shout) == 1


def test_a_command_of_a_feature_the_host_lacks_is_neither_run_nor_listed(qtbot, people):
    alice, bob = people
    calls: list[str] = []

    @command("poke", args="NAME", feature="pokes", help="poke someone")
    def poke(ctx, name: str) -> None:
        calls.append(name)

    try:
        type_line(qtbot, alice, "/poke Bob")
        assert notices(lobby(alice).model, NoticeKind.ERROR)[-1] == \
            "/poke needs a host that offers pokes; this one does not."
        type_line(qtbot, alice, "/help")
        assert not [line for line in notices(lobby(alice).model) if "/poke" in line and
                    "needs a host" not in line]
        assert calls == []
        nothing_sent(qtbot, alice, bob)
    finally:
        REGISTRY.unregister("poke")


# --- the registry's own checks ------------------------------------------------------


def test_registering_a_command_wrongly_fails_at_once():
    registry = CommandRegistry()

    @registry.register("kick", args="NAME [REASON]", help="…")
    def kick(ctx, name: str, reason: str) -> None: ...

    assert registry.find("KICK").usage() == "/kick NAME [REASON]"
    with pytest.raises(ValueError, match="registered already"):
        registry.register("kick", help="…")(kick)
    with pytest.raises(ValueError, match="cannot take"):
        registry.register("ban", args="NAME", help="…")(lambda ctx, who: None)
    for spec in ("[REASON] NAME", "name", "NAME NAME", "[NAME"):
        with pytest.raises(ValueError):
            registry.register("mute", args=spec, help="…")
    with pytest.raises(ValueError, match="lower case"):
        registry.register("Topic", help="…")(lambda ctx: None)
    assert [made.name for made in registry] == ["kick"]
