"""Slash commands typed into the message box: each one a function that registers itself.

The window hands everything typed after a ``/`` to ``REGISTRY.run``; ``/help``
lists what is registered. Adding a command is one decorated function (the shape of
qutebrowser's ``@cmdutils.register``)::

    @command("topic", args="[TEXT]", help="show or set this room's topic",
             feature="moderation")
    def topic(ctx: CommandContext, text: str) -> None:
        if ctx.target.kind != ConversationKind.ROOM:
            raise CommandError("Topics belong to rooms.")
        ctx.client.set_topic(ctx.target.title, text)

- ``args`` is the usage and the parser at once. Each word is one argument, handed
  to the function as the keyword of the same name in lower case (``NAME`` →
  ``name``); a word in brackets is optional ("" when left out); every argument but
  the last is one word, the last takes the rest of the line, spaces and all. A
  command without arguments ignores what follows its name.
- A required argument left out answers with the command's usage
  ("Usage: /join ROOM"), and the function is not called. A function that refuses
  what it was given raises ``CommandError`` with the sentence to show.
- ``feature`` names a protocol feature (``PROTOCOL-FEATURES.md``): the command is
  listed and run only when the host accepted that feature for this connection; on
  another host it says so instead of sending frames the host does not know.
- A feature's commands may live in the feature's own module under ``qtchat/gui/``;
  they register when it is imported, so the window imports it.

Everything reaches the person as notices in the conversation the command was typed
in (the lobby when none is open), in plain text like every notice.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from qtchat import protocol as p
from qtchat.gui.conversation import Conversation, fold
from qtchat.gui.models import ACTION_PREFIX, ConversationKind, NoticeKind
from qtchat.names import InvalidName, parse_name

if TYPE_CHECKING:
    from qtchat.client.chat_client import ChatClient
    from qtchat.gui.main_window import ChatWindow

log = logging.getLogger(__name__)

__all__ = [
    "REGISTRY",
    "Argument",
    "Command",
    "CommandContext",
    "CommandError",
    "CommandRegistry",
    "command",
]

Handler = TypeVar("Handler", bound=Callable[..., None])

#: The last line of ``/help``: what the message box does besides commands.
HELP_FOOTER = "Tab completes names; Up and Down recall what you typed."
_ARGUMENT = re.compile(r"\[?([A-Z][A-Z_]*)\]?")
_COMMAND_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class CommandError(Exception):
    """A command refuses what it was given; ``str(error)`` is shown as an error notice."""


@dataclass(frozen=True, slots=True)
class Argument:
    """One word of a command's ``args``: ``NAME``, or ``[TEXT]`` when optional."""

    name: str
    optional: bool

    @property
    def keyword(self) -> str:
        """The handler's parameter that receives it."""
        return self.name.lower()

    def __str__(self) -> str:
        return f"[{self.name}]" if self.optional else self.name


def parse_args_spec(spec: str) -> tuple[Argument, ...]:
    """``"NAME [TEXT]"`` → its arguments; ValueError for a spec that cannot be parsed
    (optional arguments only after the required ones, each name once)."""
    arguments: list[Argument] = []
    for word in spec.split():
        match = _ARGUMENT.fullmatch(word)
        optional = word.startswith("[")
        if match is None or optional != word.endswith("]"):
            raise ValueError(f"bad argument {word!r} in {spec!r}: write NAME or [NAME]")
        if arguments and arguments[-1].optional and not optional:
            raise ValueError(f"required {word} after an optional argument in {spec!r}")
        if any(known.name == match[1] for known in arguments):
            raise ValueError(f"{word} twice in {spec!r}")
        arguments.append(Argument(match[1], optional))
    return tuple(arguments)


@dataclass(frozen=True, slots=True)
class Command:
    """A registered command: what runs it, what it takes, and what ``/help`` says."""

    name: str
    handler: Callable[..., None]
    help: str
    arguments: tuple[Argument, ...] = ()
    aliases: tuple[str, ...] = ()
    feature: str | None = None

    def usage(self) -> str:
        """"/w NAME [TEXT]"."""
        return " ".join([f"/{self.name}", *map(str, self.arguments)])

    def help_line(self) -> str:
        """"/w NAME [TEXT] (or /msg) — a private message to one person"."""
        also = f" (or {', '.join(f'/{alias}' for alias in self.aliases)})" if self.aliases \
            else ""
        return f"{self.usage()}{also} — {self.help}"

    def parse(self, rest: str) -> dict[str, str] | None:
        """The handler's keyword arguments from what followed the command's name
        (already stripped), or None when a required one is missing."""
        values: dict[str, str] = {}
        for position, argument in enumerate(self.arguments):
            if position == len(self.arguments) - 1:
                value, rest = rest, ""
            else:
                value, _, rest = rest.partition(" ")
            if not value and not argument.optional:
                return None
            values[argument.keyword] = value
        return values


@dataclass(slots=True)
class CommandContext:
    """What a command runs with.

    ``target`` is the conversation it was typed in (the lobby when none is open).
    The window offers commands ``conversation``, ``show_conversation``,
    ``close_conversation``, ``send_broadcast``, ``send_whisper`` and ``close``;
    ``client`` is its ``ChatClient``.
    """

    window: ChatWindow
    target: Conversation
    command: Command

    @property
    def client(self) -> ChatClient:
        return self.window.client

    def notice(self, text: str, kind: NoticeKind = NoticeKind.INFO) -> None:
        """Tell the person something, in the conversation the command was typed in."""
        self.target.model.add_notice(text, kind)

    def checked_name(self, text: str, what: str = "name") -> str:
        """``text`` if it is a valid name (``what``: "name", "room name"), else the
        CommandError that says what is wrong with it."""
        try:
            parse_name(text, what)
        except InvalidName as exc:
            raise CommandError(str(exc)) from None
        return text


def host_has_feature(client: Any, feature: str) -> bool:
    """Whether the host accepted ``feature`` for this connection.

    A client without feature negotiation (``has_feature``) speaks protocol 1 only."""
    has_feature = getattr(client, "has_feature", None)
    return bool(has_feature(feature)) if callable(has_feature) else False


class CommandRegistry:
    """Commands by name and alias, in the order they were registered (``/help``'s)."""

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._by_name: dict[str, Command] = {}

    def register(self, name: str, *, help: str, args: str = "",
                 aliases: tuple[str, ...] = (), feature: str | None = None,
                 ) -> Callable[[Handler], Handler]:
        """Decorator: register the function as ``/name``; it is called as
        ``handler(ctx, **arguments)`` (see the module docstring).

        ValueError at import for a name already taken, an ``args`` that cannot be
        parsed, or a function that cannot take the arguments ``args`` names."""
        arguments = parse_args_spec(args)

        def decorate(handler: Handler) -> Handler:
            names = (name, *aliases)
            for word in names:
                if not _COMMAND_NAME.fullmatch(word):
                    raise ValueError(f"/{word}: a command's name is lower case, no spaces")
                if word in self._by_name:
                    raise ValueError(f"/{word} is registered already")
            try:
                inspect.signature(handler).bind(None, **{a.keyword: "" for a in arguments})
            except TypeError as exc:
                raise ValueError(f"/{name}: {handler.__qualname__} cannot take {args!r}: "
                                 f"{exc}") from None
            made = Command(name, handler, help, arguments, tuple(aliases), feature)
            self._commands.append(made)
            for word in names:
                self._by_name[word] = made
            return handler

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``/name`` and its aliases (a test's own commands, afterwards)."""
        made = self._by_name.get(name)
        if made is None:
            return
        self._commands.remove(made)
        for word in (made.name, *made.aliases):
            del self._by_name[word]

    def find(self, name: str) -> Command | None:
        """The command called ``name`` (or aliased so), case-insensitively."""
        return self._by_name.get(name.lower())

    def __iter__(self) -> Iterator[Command]:
        return iter(list(self._commands))

    def available(self, client: Any) -> list[Command]:
        """The commands this connection can run: the features it needs are accepted."""
        return [made for made in self._commands
                if made.feature is None or host_has_feature(client, made.feature)]

    def help_lines(self, client: Any) -> list[str]:
        """``/help``'s answer, a notice per line (short lines: notices are centred)."""
        return ["Commands:", *(made.help_line() for made in self.available(client)),
                HELP_FOOTER]

    def run(self, window: ChatWindow, text: str, target: Conversation) -> None:
        """Run the command typed as ``text`` ("/join dev") in conversation ``target``."""
        word, _, rest = text[1:].partition(" ")
        word = word.lower()
        found = self.find(word)
        if found is None:
            target.model.add_notice(f"Unknown command /{word} — type /help for the list.",
                                    NoticeKind.ERROR)
            return
        if found.feature is not None and not host_has_feature(window.client, found.feature):
            target.model.add_notice(f"/{word} needs a host that offers {found.feature}; this "
                                    "one does not.", NoticeKind.ERROR)
            return
        values = found.parse(rest.strip())
        if values is None:
            target.model.add_notice(f"Usage: {found.usage()}", NoticeKind.ERROR)
            return
        try:
            found.handler(CommandContext(window, target, found), **values)
        except CommandError as exc:
            target.model.add_notice(str(exc), NoticeKind.ERROR)


#: The commands of every chat window.
REGISTRY = CommandRegistry()
#: ``@command("me", args="TEXT", help="…")``: register a function in ``REGISTRY``.
command = REGISTRY.register


# ------------------------------------------------------------ the built-in commands


@command("w", args="NAME [TEXT]", aliases=("msg", "whisper", "query"),
         help="a private message to one person")
def whisper(ctx: CommandContext, name: str, text: str) -> None:
    ctx.checked_name(name)
    window = ctx.window
    private = window.conversation(ConversationKind.PRIVATE, name)
    assert private is not None
    if not text.strip():
        window.show_conversation(private)  # "/w Bob": open the conversation
    elif private is ctx.target:
        window.send_whisper(name, text)
    else:
        # Sent from elsewhere: stay there; the private tab keeps the message.
        window.send_whisper(name, text, came_from=ctx.target)
        if window.conversation(ConversationKind.PRIVATE, name, create=False) is private:
            # (not refused before sending)
            shown = text if len(text) <= 80 else text[:79] + "…"
            ctx.notice(f"✉ to {private.title}: {shown}")


@command("me", args="TEXT", help="an action, shown as “* you TEXT”")
def action(ctx: CommandContext, text: str) -> None:
    if ctx.target.kind == ConversationKind.PRIVATE:
        ctx.window.send_whisper(ctx.target.title, ACTION_PREFIX + text)
    else:
        ctx.window.send_broadcast(ctx.target, ACTION_PREFIX + text)


@command("join", args="ROOM", help="enter a room (made if new)")
def join(ctx: CommandContext, room: str) -> None:
    ctx.client.join(ctx.checked_name(room, "room name"))


@command("leave", args="[ROOM]", aliases=("part",), help="leave this room or private tab")
def leave(ctx: CommandContext, room: str) -> None:
    target = ctx.target
    if not room and target.kind == ConversationKind.PRIVATE:
        ctx.window.close_conversation(target)
        return
    room = room or target.title
    if not room or fold(room) == p.LOBBY:
        raise CommandError("Everyone stays in the lobby; it cannot be left.")
    ctx.client.leave(room)  # the tab closes when the host confirms (roomLeft)


@command("help", args="[COMMAND]", help="this list, or what one command does")
def help_(ctx: CommandContext, command: str) -> None:
    registry = ctx.window.commands
    if command:
        word = command.split()[0].lstrip("/").lower()
        found = registry.find(word)
        if found is None or found not in registry.available(ctx.client):
            raise CommandError(f"Unknown command /{word} — type /help for the list.")
        ctx.notice(found.help_line())
        return
    for line in registry.help_lines(ctx.client):
        ctx.notice(line)


@command("quit", aliases=("exit",), help="leave and close the window")
def quit_(ctx: CommandContext) -> None:
    ctx.window.close()
