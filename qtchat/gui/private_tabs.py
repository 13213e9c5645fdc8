"""Private conversations that come back (PROTOCOL-FEATURES §1): the window's private
tabs after a restart of the app.

The host keeps an identity's whispers and lists its conversations in
``registered.conversations`` (``ChatClient.conversations``). ``PrivateTabs`` opens a
tab for each of them once per window (a tab the person closes stays closed through
reconnects; it comes back on the next start of the app), behind the tab in front, and
asks for a private tab's newest page of ``history {with}`` the first time it is shown —
lazily, so fifty conversations cost nothing until looked at. The page itself is shown
by the living glue's ``privateHistoryReceived`` handler (it adds to the tab's model,
which drops what it already has); older pages follow by scrolling up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Slot

from qtchat.gui.conversation import fold
from qtchat.gui.models import ConversationKind

if TYPE_CHECKING:
    from qtchat.client.chat_client import ChatClient
    from qtchat.gui.main_window import ChatWindow

NEWEST_PAGE = 50  # whispers loaded when a private tab is first shown


class PrivateTabs(QObject):
    def __init__(self, window: ChatWindow, client: ChatClient) -> None:
        super().__init__(window)
        self.window = window
        self.client = client
        self._restored: set[str] = set()  # folded names already brought back
        client.conversationsReceived.connect(self.restore)
        window.tabs.currentChanged.connect(self._shown)
        self.restore(client.conversations)

    @Slot(list)
    def restore(self, conversations: list[dict[str, Any]]) -> None:
        """Open a tab for each conversation not brought back before in this window."""
        window = self.window
        front = window.tabs.currentWidget()
        for entry in conversations:
            name = str(entry.get("with", ""))
            key = fold(name)
            if not name or key in self._restored or key == fold(window.me):
                continue
            self._restored.add(key)
            window.conversation(ConversationKind.PRIVATE, name)
        if front is not None:  # adding tabs never takes the person elsewhere
            window.tabs.setCurrentWidget(front)

    @Slot(int)
    def _shown(self, _index: int) -> None:
        """A private tab shown for the first time: its newest page, and older pages when
        scrolled to the top (the window pages rooms only)."""
        conv = self.window.current()
        if conv is None or conv.kind != ConversationKind.PRIVATE:
            return
        view = conv.view
        if view.property("privateLoaded"):
            return
        view.setProperty("privateLoaded", True)
        view.topReached.connect(lambda: self._older(view))
        self.client.request_private_history(conv.title, limit=NEWEST_PAGE)

    def _older(self, view: Any) -> None:
        conv = self.window.current()
        if conv is None or conv.view is not view:
            return
        oldest = conv.model.oldest_seq()
        if oldest is not None and oldest > 1 and oldest not in conv.history_requested:
            conv.history_requested.add(oldest)
            self.client.request_private_history(conv.title, before=oldest, limit=100)
