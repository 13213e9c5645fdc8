"""The conversation tabs in the middle of the window (``ConversationTabs``).

One tab per open conversation, each holding its ``MessageView``: a room's tab is
its name, a private one "✉ name". The lobby's tab has no close button: everyone
stays in the lobby, so the button could only refuse.
"""

from __future__ import annotations

from PySide6.QtWidgets import QTabBar, QTabWidget, QWidget

from qtchat import protocol as p
from qtchat.gui.conversation import fold
from qtchat.gui.models import ConversationKind

__all__ = ["ConversationTabs", "tab_label"]


def tab_label(kind: ConversationKind, title: str) -> str:
    """What a conversation's tab says."""
    return title if kind == ConversationKind.ROOM else f"✉ {title}"


class ConversationTabs(QTabWidget):
    """Closable tabs in document mode; ``tabCloseRequested`` goes to the window, which
    closes a private tab at once and a room's tab once the host confirms the leave."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabsClosable(True)
        self.setDocumentMode(True)

    def add_conversation(self, view: QWidget, kind: ConversationKind, title: str) -> int:
        """Add ``view`` as the tab of conversation ``title``; returns its index."""
        index = self.addTab(view, tab_label(kind, title))
        if kind == ConversationKind.ROOM and fold(title) == p.LOBBY:
            # Everyone stays in the lobby: no close button that could only refuse.
            # (the close button's side depends on the style: clear both)
            for side in (QTabBar.ButtonPosition.LeftSide, QTabBar.ButtonPosition.RightSide):
                self.tabBar().setTabButton(index, side, None)
        return index

    def step(self, by: int) -> None:
        """Bring the tab ``by`` places on (or back) to the front, wrapping around."""
        count = self.count()
        if count:
            self.setCurrentIndex((self.currentIndex() + by) % count)

    def go_to(self, number: int) -> None:
        """Bring tab ``number`` (counted from 1, as Alt+1…9 do) to the front, if it exists."""
        if number <= self.count():
            self.setCurrentIndex(number - 1)
