"""One open conversation of the chat window, and how names and rooms compare.

A ``Conversation`` bundles what the window keeps per room or private conversation:
its messages (``MessageModel``), the view that shows them, and for a room its
members. The window owns them; commands and panels are handed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qtchat.gui.members import MemberModel
from qtchat.gui.message_view import MessageView
from qtchat.gui.models import ConversationKind, MessageModel
from qtchat.names import InvalidName, parse_name

__all__ = ["Conversation", "fold"]


def fold(name: str) -> str:
    """The comparison form of a name or room (falls back to casefold if invalid)."""
    try:
        return parse_name(name).folded
    except (InvalidName, TypeError):
        return name.casefold()


@dataclass
class Conversation:
    """One open conversation: a room, or the whispers with one person."""

    kind: ConversationKind
    title: str
    model: MessageModel
    view: MessageView
    members: MemberModel | None = None
    history_requested: set[int] = field(default_factory=set)

    @property
    def key(self) -> tuple[ConversationKind, str]:
        """How the window files it: (kind, folded title)."""
        return (self.kind, fold(self.title))
