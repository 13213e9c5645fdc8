"""The chat window: conversations on the left, messages in tabs, members on the right.

``ChatWindow`` composes the feature widgets, each in its own module with its model:
the conversation list (``conversation_list``: ``RoomModel``), the tabs
(``tabs``: one ``MessageView`` per conversation), the members panel (``members``:
``MemberModel``), the message box (``chat_input``), the reconnect bar
(``reconnect_bar``) and, when hosting, the status bar's addresses and invite
(``host_status``). It reads ``ChatClient`` signals into the models and turns what
the person types into client calls; slash commands go through the registry in
``commands``. Peer text only ever reaches widgets through the models and the
plain-text delegate, a plain-text label, or an escaped notification.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from qtchat import protocol as p
from qtchat.client.chat_client import ChatClient, ConnectError
from qtchat.gui.chat_input import ChatInput, local_files
from qtchat.gui.chess_games import ChessGames
from qtchat.gui.commands import REGISTRY, CommandRegistry
from qtchat.gui.conversation import Conversation, fold
from qtchat.gui.conversation_list import ConversationList, RoomModel
from qtchat.gui.host_status import HostStatus
from qtchat.gui.living_glue import LivingGlue
from qtchat.gui.members import MemberModel, MembersPanel
from qtchat.gui.message_view import MessageView
from qtchat.gui.models import (
    ACTION_PREFIX,
    ConversationKind,
    MessageModel,
    NoticeKind,
)
from qtchat.gui.pick_dialog import PickDialog
from qtchat.gui.reconnect_bar import ReconnectBar
from qtchat.gui.settings_dialog import SettingsDialog
from qtchat.gui.tabs import ConversationTabs
from qtchat.protocol.server_frames import Joined, Message, Registered

log = logging.getLogger(__name__)

__all__ = ["ChatWindow", "Conversation"]  # Conversation: tests import it from here

LEAVE_REASONS = {
    "quit": "left",
    "left": "left the room",
    "disconnected": "lost their connection",
    "timeout": "timed out",
    "kicked": "was disconnected by the host",
}


class ChatWindow(QMainWindow):
    """The main window for one connection (``client``), optionally hosting (``host``).

    Signals:
        closedByUser(): the window was closed and the conversation ended.
    """

    closedByUser = Signal()
    notified = Signal(str, str)  # title, text: a notification was shown

    def __init__(self, client: ChatClient, host: Any = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.client = client
        self.host = host  # qtchat.gui.app.HostRuntime when hosting
        self.me = client.name
        self.commands: CommandRegistry = REGISTRY  # what "/…" typed here can run
        self._conversations: dict[tuple[ConversationKind, str], Conversation] = {}
        self._force_close = False
        self._started_over = False  # the host's history changed: reconnected says less
        self._whisper_from: dict[str, Conversation] = {}  # whisper id -> where it was typed
        self._fingerprint_shown = False
        self._welcomed = False
        # Private conversations whose tab was closed: their messages stay, to show again.
        self._closed_private: dict[tuple[ConversationKind, str], Conversation] = {}
        self._server_rooms: list[str] = []  # the host's rooms, as registered listed them
        self.resize(980, 640)
        self.setMinimumSize(640, 420)  # below this the messages get one word per line

        self.rooms = RoomModel(self)
        self.conversation_list = left = ConversationList(self.rooms)
        self.rooms_view = left.view
        left.conversationClicked.connect(self._conversation_clicked)
        left.joinRequested.connect(self._ask_join)

        self.tabs = ConversationTabs()
        self.tabs.currentChanged.connect(self._tab_changed)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        self.input = ChatInput()
        self.input.names_provider = self._known_names
        self.input.submitted.connect(self.submit)
        self.input.refused.connect(self._input_refused)
        self.reconnect_bar = ReconnectBar()
        self.reconnect_label = self.reconnect_bar.label
        self.reconnect_button = self.reconnect_bar.button
        self.reconnect_button.clicked.connect(self._reconnect_button_clicked)
        center = QWidget()
        center_layout = QVBoxLayout(center)
        center_layout.setContentsMargins(0, 0, 0, 0)
        center_layout.addWidget(self.tabs, 1)
        center_layout.addWidget(self.reconnect_bar)
        self.input_row = QWidget()  # the message box, and the files glue's attach button
        input_layout = QHBoxLayout(self.input_row)
        input_layout.setContentsMargins(0, 0, 0, 0)
        input_layout.setSpacing(2)
        input_layout.addWidget(self.input, 1)
        center_layout.addWidget(self.input_row)

        self.members_panel = right = MembersPanel()
        self.members_label = right.label
        self.members_view = right.view
        right.memberActivated.connect(self._member_activated)

        splitter = self.splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(center)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(1, False)
        splitter.setSizes([190, 600, 190])
        self.setCentralWidget(splitter)

        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.statusBar().addWidget(self.state_label, 1)
        self.host_status: HostStatus | None = None
        if host is not None:
            self.host_status = HostStatus(self.statusBar(), host)
            self.address_label = self.host_status.address_label
            self.invite_button = self.host_status.invite_button
            self.invite_button.clicked.connect(self.copy_invite)

        self._build_menus()

        self.tray: QSystemTrayIcon | None = None
        self.notifications = True  # the settings' "Show notifications" (living_glue sets it)
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(QApplication.windowIcon(), self)
            self.tray.setToolTip("qtchat")
            self.tray.show()

        c = client
        c.registered.connect(self._on_registered)
        c.roomJoined.connect(self._on_room_joined)
        c.roomLeft.connect(self._on_room_left)
        c.userJoined.connect(self._on_user_joined)
        c.userLeft.connect(self._on_user_left)
        c.messageReceived.connect(self._on_message)
        c.sendConfirmed.connect(self._on_send_confirmed)
        c.sendFailed.connect(self._on_send_failed)
        c.historyReceived.connect(self._on_history)
        c.errorReceived.connect(self._on_error)
        c.connectionLost.connect(self._on_connection_lost)
        c.protocolError.connect(self._on_protocol_error)
        c.reconnected.connect(self._on_reconnected)
        c.startedOver.connect(self._on_started_over)
        c.closed.connect(self._on_closed)
        c.stateChanged.connect(self._on_state)
        c.connectFailed.connect(self._on_connect_failed)
        c.reconnecting.connect(self._on_reconnecting)
        c.reconnectStopped.connect(self._on_reconnect_stopped)
        self.chess = ChessGames(self)  # /chess, offers, and a board tab per game

        # Moderation (issue 14): topic bar, member menu, notices, /kick /ban /mute…
        from qtchat.gui.moderation_glue import ModerationGlue

        self.moderation = ModerationGlue(self)
        # Search (Ctrl+F), typing, edit and delete (issue 17): their own module; after
        # the window's own slots, so it sees the models those have filled.
        self.living = LivingGlue(self, center_layout)
        self.search_bar = self.living.search_bar
        # Files and pictures (issue 15): attach, drop, paste, file rows, transfers panel.
        from qtchat.gui.files_glue import FilesGlue

        self.files = FilesGlue(self)
        input_layout.addWidget(self.files.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        self.setAcceptDrops(True)

        self._update_title()
        self._on_state(c.state)

    @Slot()
    def _reconnect_button_clicked(self) -> None:
        if self.client.stopped_reconnecting:
            self.client.reconnect_now()
        else:
            self.client.stop_reconnecting()

    @Slot(int, str)
    def _on_reconnecting(self, attempt: int, reason: str) -> None:
        self.reconnect_bar.show_attempt(attempt, reason)

    @Slot(str)
    def _on_reconnect_stopped(self, sentence: str) -> None:
        self.reconnect_bar.show_stopped(sentence)
        for conv in self._conversations.values():
            self._notice(conv, sentence, NoticeKind.LEAVE)

    def _build_menus(self) -> None:
        """The menu bar: every command the app has, with its shortcut, findable."""
        bar = self.menuBar()

        def action(menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
            made = QAction(text, self)
            if shortcut is not None:
                made.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            made.setStatusTip(tip)
            made.triggered.connect(slot)
            menu.addAction(made)
            return made

        chat = self.chat_menu = bar.addMenu("&Chat")  # the living glue adds Status
        action(chat, "&Join a room…", self._ask_join, QKeySequence("Ctrl+J"),
               "Enter a room, or make a new one")
        action(chat, "&Private message…", self._ask_whisper, QKeySequence("Ctrl+Shift+M"),
               "Start a private conversation with someone here")
        self.leave_action = action(chat, "&Leave this conversation", self._leave_current,
                                   QKeySequence("Ctrl+W"))
        if self.host is not None:
            chat.addSeparator()
            action(chat, "Copy &invite", self.copy_invite, QKeySequence("Ctrl+Shift+I"),
                   "Copy a qtchat:// link others can paste into Join")
        chat.addSeparator()

        def open_settings() -> None:  # issue 17: the settings dialog, saved in QSettings
            dialog = SettingsDialog(self)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.saved.connect(self.living.apply_preferences)
            dialog.open()
        self.settings_action = action(chat, "&Settings…", open_settings,
                                      QKeySequence("Ctrl+,"), "Name, away, privacy, theme")
        self.quit_action = action(chat, "&Quit", self.close, QKeySequence("Ctrl+Q"))

        view = self.view_menu = bar.addMenu("&View")  # the files glue adds Transfers
        action(view, "&Next conversation", lambda: self.tabs.step(1),
               [QKeySequence("Ctrl+Tab"), QKeySequence("Ctrl+PgDown")])
        action(view, "&Previous conversation", lambda: self.tabs.step(-1),
               [QKeySequence("Ctrl+Shift+Tab"), QKeySequence("Ctrl+PgUp")])
        for number in range(1, 10):
            go = QAction(f"Conversation {number}", self)
            go.setShortcut(QKeySequence(f"Alt+{number}"))
            go.triggered.connect(lambda _checked=False, n=number: self.tabs.go_to(n))
            self.addAction(go)  # shortcuts only: nine menu entries would be clutter

        help_menu = bar.addMenu("&Help")
        action(help_menu, "&Commands", lambda: self.submit("/help"), QKeySequence("F1"))
        action(help_menu, "&About qtchat", self._about)

    @Slot()
    def _ask_whisper(self) -> None:
        names = [name for name in self._known_names() if fold(name) != fold(self.me)]
        dialog = PickDialog(self, "Private message", "Name:", names,
                            "Nobody else is here yet.")
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.choice():
            self.submit(f"/w {dialog.choice()}")

    @Slot()
    def _leave_current(self) -> None:
        conv = self.current()
        if conv is not None:
            self.submit("/leave")

    @Slot()
    def _about(self) -> None:
        from qtchat import __version__

        box = QMessageBox(QMessageBox.Icon.Information, "About qtchat",
                          f"qtchat {__version__}\nChat with the people on your network.",
                          QMessageBox.StandardButton.Ok, self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.open()

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Side panels give way when the window is narrow: the messages keep most of it."""
        super().resizeEvent(event)
        width = self.splitter.width()
        sizes = self.splitter.sizes()
        if width <= 0 or len(sizes) != 3:
            return
        side = max(110, min(220, width // 5))
        left = min(sizes[0], side) if sizes[0] else 0
        right = min(sizes[2], side) if sizes[2] else 0
        if width - left - right < width // 2:
            left = right = max(0, min(side, width // 5))
        self.splitter.setSizes([left, width - left - right, right])

    # --- conversations ----------------------------------------------------------------

    def conversation(self, kind: ConversationKind, name: str,
                     create: bool = True) -> Conversation | None:
        key = (kind, fold(name))
        found = self._conversations.get(key)
        if found is not None or not create:
            return found
        reopened = self._closed_private.pop(key, None)
        if reopened is not None:  # its tab was closed: the same messages come back
            self._conversations[key] = reopened
            self.rooms.add(reopened.title, kind)
            self.tabs.add_conversation(reopened.view, kind, reopened.title)
            return reopened
        model = MessageModel(self, self_name=self.me, conversation=name)
        # A room's burst of live messages: one insertion per event-loop pass. Not in
        # private tabs: the read receipt looks for the newest row as soon as it arrives.
        model.coalesce_appends = kind == ConversationKind.ROOM
        view = MessageView(model)
        view.retryRequested.connect(self._retry)
        view.linkActivated.connect(self._open_link)
        view.topReached.connect(self._top_reached)
        members = MemberModel(self) if kind == ConversationKind.ROOM else None
        conv = Conversation(kind, name, model, view, members)
        self._conversations[key] = conv
        self.rooms.add(name, kind)
        self.tabs.add_conversation(view, kind, name)
        return conv

    def current(self) -> Conversation | None:
        widget = self.tabs.currentWidget()
        for conv in self._conversations.values():
            if conv.view is widget:
                return conv
        return None

    def show_conversation(self, conv: Conversation) -> None:
        self.tabs.setCurrentWidget(conv.view)

    def close_conversation(self, conv: Conversation) -> None:
        """Close a private conversation's tab (``/leave`` there); a room's tab closes when
        the host confirms the leave."""
        self._drop_conversation(conv.key)

    @Slot(int)
    def _tab_changed(self, _index: int) -> None:
        conv = self.current()
        if conv is None:
            return
        self.rooms.clear_unread(conv.title, conv.kind)
        if conv.members is not None:
            self.members_panel.show_room(conv.members)
            self._update_members_label()
        else:  # a private conversation has nobody to list: the messages get the room
            self.members_panel.show_private(conv.title)
        self.conversation_list.select(conv.title, conv.kind)
        self._update_title()
        self.input.setFocus()

    @Slot(int)
    def _close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        for key, conv in list(self._conversations.items()):
            if conv.view is widget:
                if conv.kind == ConversationKind.ROOM:
                    if fold(conv.title) == p.LOBBY:
                        self._notice(conv, "Everyone stays in the lobby; it cannot be closed.")
                        return
                    self.client.leave(conv.title)
                    return  # closed when the server confirms (roomLeft)
                self._drop_conversation(key, keep=True)
                return

    def _drop_conversation(self, key: tuple[ConversationKind, str], *,
                           keep: bool = False) -> None:
        """Close a conversation's tab; ``keep`` a private one to show again when reopened.

        Closing the tab in front brings the lobby to the front (not whichever tab Qt
        would pick)."""
        conv = self._conversations.get(key)
        if conv is None:
            return
        was_current = conv is self.current()
        del self._conversations[key]
        self.tabs.removeTab(self.tabs.indexOf(conv.view))
        self.rooms.remove(conv.title, conv.kind)
        if keep and conv.kind == ConversationKind.PRIVATE:
            self._closed_private[key] = conv
        else:
            conv.view.deleteLater()
        lobby = self._conversations.get((ConversationKind.ROOM, p.LOBBY))
        if was_current and lobby is not None:
            self.show_conversation(lobby)
        self._tab_changed(self.tabs.currentIndex())  # the side panel follows the new tab

    @Slot(str, int)
    def _conversation_clicked(self, name: str, kind: int) -> None:
        conv = self.conversation(ConversationKind(kind), name, create=False)
        if conv is not None:
            self.show_conversation(conv)

    @Slot(str)
    def _member_activated(self, name: str) -> None:
        if fold(name) != fold(self.me):
            conv = self.conversation(ConversationKind.PRIVATE, name)
            assert conv is not None
            self.show_conversation(conv)

    @Slot()
    def _ask_join(self) -> None:
        """Pick one of the host's rooms, or type a new name."""
        mine = {fold(conv.title) for conv in self._conversations.values()
                if conv.kind == ConversationKind.ROOM}
        rooms = [room for room in self._server_rooms if fold(room) not in mine]
        dialog = PickDialog(self, "Join a room", "Room name (made if new):", rooms,
                            "No other rooms yet: type a name to make one.")
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.choice():
            self.submit(f"/join {dialog.choice()}")

    def _known_names(self) -> list[str]:
        conv = self.current()
        names: set[str] = set()
        if conv is not None and conv.members is not None:
            names.update(conv.members.names())
        for other in self._conversations.values():
            if other.kind == ConversationKind.PRIVATE:
                names.add(other.title)
        return sorted(names)

    # --- sending ----------------------------------------------------------------------

    @Slot(str)
    def submit(self, text: str) -> None:
        """What the person typed: a command or a message to the current conversation."""
        conv = self.current()
        if text.startswith("/") and not text.startswith("//"):
            target = conv or self.conversation(ConversationKind.ROOM, p.LOBBY)
            assert target is not None
            self.commands.run(self, text, target)
            return
        if text.startswith("//"):
            text = text[1:]  # "//path" sends "/path"
        if conv is None:
            return
        if conv.kind == ConversationKind.PRIVATE:
            self.send_whisper(conv.title, text)
        else:
            self.send_broadcast(conv, text)

    @Slot(str)
    def _input_refused(self, why: str) -> None:
        conv = self.current() or self.conversation(ConversationKind.ROOM, p.LOBBY)
        if conv is not None:
            self._notice(conv, why, NoticeKind.ERROR)

    def _check(self, text: str, conv: Conversation | None) -> bool:
        try:
            p.check_text(text)
        except p.LocalProtocolError as exc:
            if conv is not None:
                self._notice(conv, exc.message, NoticeKind.ERROR)
            return False
        return True

    def send_broadcast(self, conv: Conversation, text: str) -> None:
        """Send ``text`` to the room ``conv``; it shows as pending until the host echoes it."""
        if not self._check(text, conv):
            return
        message_id = self.client.send_broadcast(text, conv.title)
        action = text.startswith(ACTION_PREFIX)
        conv.model.add_pending(message_id, text.removeprefix(ACTION_PREFIX) if action else text,
                               sender=self.me, peer=conv.title, action=action)

    def send_whisper(self, to: str, text: str, came_from: Conversation | None = None) -> None:
        """Whisper ``text`` to ``to``; it shows as pending in the private conversation.
        ``came_from``: the conversation it was typed in, where a refusal is told."""
        conv = self.conversation(ConversationKind.PRIVATE, to)
        assert conv is not None
        if not self._check(text, conv):
            return
        message_id = self.client.send_whisper(to, text)
        if came_from is not None and came_from is not conv:
            self._whisper_from[message_id] = came_from  # where a refusal is told
        action = text.startswith(ACTION_PREFIX)
        conv.model.add_pending(message_id, text.removeprefix(ACTION_PREFIX) if action else text,
                               sender=self.me, peer=to, whisper=True, action=action)

    # --- client signals ---------------------------------------------------------------

    @Slot(object)
    def _on_registered(self, frame: Registered) -> None:
        self.me = frame.name
        self._server_rooms = frame.rooms[:1000]
        for conv in self._conversations.values():
            conv.model.self_name = self.me
        lobby = self.conversation(ConversationKind.ROOM, p.LOBBY)
        assert lobby is not None and lobby.members is not None
        lobby.members.set_members(frame.users, self._hosts())
        self._update_members_label()
        first = not self._welcomed
        if first:
            self._welcomed = True
            server = str(self.client.server_info.get("name") or "the room")
            self._notice(lobby, f"You joined {server} as {self.me}. Type /help for commands.")
        for room in frame.in_rooms or ():
            if fold(room) != p.LOBBY:
                self.client.join(room)  # refreshes members and recent history
        if first or frame.resumed is False:
            # A new window (also one resuming a saved session) starts empty: fetch the
            # lobby's recent history. Other rooms come with theirs in ``joined``.
            self.client.request_history(p.LOBBY)
        if self.tabs.currentIndex() < 0:
            self.show_conversation(lobby)
        fingerprint = self.client.peer_fingerprint
        if fingerprint and not self._fingerprint_shown:
            self._fingerprint_shown = True
            if self.host is not None:
                text = (f"Hosting with TLS. This room's certificate fingerprint (SHA-256) is "
                        f"{fingerprint}; the invite carries it, and people can compare it.")
            else:
                how = ("seen for the first time and remembered: you will be warned if it "
                       "changes" if self.client.fingerprint_first_use else "the one expected")
                text = (f"Encrypted connection. The host's certificate fingerprint (SHA-256) "
                        f"is {fingerprint} — {how}.")
            self._notice(lobby, text)
        self.moderation.registered(frame)
        self._update_title()
        self.living.registered(frame)  # statuses, our presence

    @Slot(object)
    def _on_room_joined(self, frame: Joined) -> None:
        conv = self.conversation(ConversationKind.ROOM, frame.room)
        assert conv is not None and conv.members is not None
        conv.members.set_members(frame.users, self._hosts())
        conv.model.add_messages(frame.history)
        self._update_members_label()
        self.show_conversation(conv)

    @Slot(str)
    def _on_room_left(self, room: str) -> None:
        self._drop_conversation((ConversationKind.ROOM, fold(room)))

    @Slot(str, str)
    def _on_user_joined(self, name: str, room: str) -> None:
        conv = self.conversation(ConversationKind.ROOM, room, create=False)
        if conv is None or conv.members is None:
            return
        conv.members.add_member(name, host=name in self._hosts())
        conv.model.add_membership(name, "joined")  # collapsed with its neighbours
        self._update_members_label()

    @Slot(str, str, str)
    def _on_user_left(self, name: str, room: str, reason: str) -> None:
        conv = self.conversation(ConversationKind.ROOM, room, create=False)
        if conv is None or conv.members is None:
            return
        conv.members.remove_member(name)
        conv.model.add_membership(name, LEAVE_REASONS.get(reason, "left"),
                                  dropped=reason in ("disconnected", "timeout"))
        self._update_members_label()

    def _update_members_label(self) -> None:
        conv = self.current()
        if conv is not None and conv.members is not None:
            count = conv.members.rowCount()
            self.members_label.setText(f"In {conv.title} · {count} "
                                       f"{'person' if count == 1 else 'people'}")

    def _conversation_of(self, message: Message) -> Conversation:
        if message.to is not None:
            peer = message.to if fold(message.sender) == fold(self.me) else message.sender
            conv = self.conversation(ConversationKind.PRIVATE, peer)
        else:
            conv = self.conversation(ConversationKind.ROOM, message.room or p.LOBBY)
        assert conv is not None
        return conv

    @Slot(object)
    def _on_message(self, message: Message) -> None:
        conv = self._conversation_of(message)
        if not conv.model.add_message(message):
            return
        own = fold(message.sender) == fold(self.me)
        if own:
            return
        if conv is not self.current() or not self.isActiveWindow():
            if conv.model.unread_marker_row() < 0:
                conv.model.set_unread_marker(message.seq - 1)
            if conv is not self.current():
                self.rooms.increment_unread(conv.title, conv.kind)
                self._update_title()
        mention = re.search(rf"(?<!\w){re.escape(self.me)}(?!\w)", message.text, re.IGNORECASE)
        if message.is_whisper or mention:
            self._notify(message)

    @Slot(str, object)
    def _on_send_confirmed(self, _message_id: str, message: Message) -> None:
        self._conversation_of(message).model.add_message(message)

    @Slot(str, str, str)
    def _on_send_failed(self, message_id: str, code: str, message: str) -> None:
        for key, conv in list(self._conversations.items()):
            if not conv.model.mark_failed(message_id):
                continue
            came_from = self._whisper_from.pop(message_id, None)
            if (code == "no_such_user" and conv.kind == ConversationKind.PRIVATE
                    and conv.model.newest_seq() is None):
                # A whisper to nobody: no conversation to keep; say so where you were.
                self.client.discard(message_id)
                self._drop_conversation(key)
                if came_from is None or came_from not in self._conversations.values():
                    came_from = self.current()
                where = came_from or self.conversation(ConversationKind.ROOM, p.LOBBY)
                assert where is not None
                self.show_conversation(where)
                self._notice(where, f"Not sent: {message}", NoticeKind.ERROR)
                return
            self._notice(conv, f"Not sent: {message}", NoticeKind.ERROR)
            return

    @Slot(str, list)
    def _on_history(self, room: str, messages: list[Message]) -> None:
        conv = self.conversation(ConversationKind.ROOM, room, create=False)
        if conv is not None:
            conv.model.add_messages(messages)

    @Slot(str, str, str)
    def _on_error(self, code: str, message: str, ref: str) -> None:
        conv = self.current() or self.conversation(ConversationKind.ROOM, p.LOBBY)
        assert conv is not None
        self._notice(conv, message, NoticeKind.ERROR)

    @Slot(str)
    def _on_connection_lost(self, reason: str) -> None:
        self.members_view.setEnabled(False)  # greyed: nobody is known to be there now
        for conv in self._conversations.values():
            self._notice(conv, f"Connection lost ({reason}) — reconnecting…", NoticeKind.LEAVE)

    @Slot(object)
    def _on_protocol_error(self, error: ConnectError) -> None:
        # The host sent something that breaks the protocol: say what, where it is read
        # (connectionLost follows with "reconnecting"; connectFailed if the client stops).
        for conv in self._conversations.values():
            self._notice(conv, str(error), NoticeKind.ERROR)

    @Slot()
    def _on_started_over(self) -> None:
        self._started_over = True
        for conv in self._conversations.values():
            conv.model.start_over("The host started over with a new history: the messages "
                                  "above are no longer kept there.")

    @Slot(bool)
    def _on_reconnected(self, gap: bool) -> None:
        self.members_view.setEnabled(True)
        self.reconnect_bar.hide()
        if self._started_over:  # said already, in every conversation
            self._started_over = False
            for conv in self._conversations.values():
                self._notice(conv, "Reconnected.", NoticeKind.RECONNECTED)
            return
        for conv in self._conversations.values():
            if gap and conv.kind == ConversationKind.ROOM:
                conv.model.add_gap_marker()
            self._notice(conv, "Reconnected — nothing was lost." if not gap else
                         "Reconnected — some older messages were not kept by the host.",
                         NoticeKind.RECONNECTED)

    @Slot(str)
    def _on_closed(self, reason: str) -> None:
        if self._force_close:
            return
        self.members_view.setEnabled(False)
        text = {"shutdown": "The host closed the room.", "kicked": "The host disconnected you.",
                "banned": "The host banned you.", "replaced": "You joined again elsewhere "
                "with this name.", "quit": "You left."}.get(reason, f"Disconnected ({reason}).")
        if not (reason in ("kicked", "banned") and self.moderation.told_removed):
            for conv in self._conversations.values():  # (a kick or ban said who and why)
                self._notice(conv, text, NoticeKind.LEAVE)
        self.input.setEnabled(False)
        self.reconnect_bar.hide()

    @Slot(object)
    def _on_connect_failed(self, error: ConnectError) -> None:
        for conv in self._conversations.values():
            self._notice(conv, str(error), NoticeKind.ERROR)
        self.input.setEnabled(False)

    @Slot(str)
    def _on_state(self, state: str) -> None:
        endpoint = self.client.endpoint
        where = endpoint.address if endpoint else ""
        text = {
            "connected": f"Connected to {where} as {self.me}",
            "connecting": f"Connecting to {where}…",
            "reconnecting": f"Connection lost — reconnecting to {where}…",
            "disconnected": "Not connected",
        }.get(state, state)
        if self.client.server_info.get("tls") and state == "connected":
            text += " · encrypted"
        self.state_label.setText(text)
        self.input.setEnabled(state != "disconnected")

    # --- helpers ----------------------------------------------------------------------

    def _hosts(self) -> list[str]:
        """The hosting person's name as the server announced it (``server.host``)."""
        host = self.client.server_info.get("host")
        return [host] if isinstance(host, str) and host else []

    def _notice(self, conv: Conversation, text: str, kind: NoticeKind = NoticeKind.INFO) -> None:
        conv.model.add_notice(text, kind)

    def _update_title(self) -> None:
        """"(3) Dev — Team room — qtchat": unread messages elsewhere come first, so the
        task bar shows them."""
        conv = self.current()
        server = str(self.client.server_info.get("name") or "")
        parts = [conv.title if conv else "", server, "qtchat"]
        if self.host is not None:
            parts[1] = f"{server} (hosting)"
        title = " — ".join(part for part in parts if part)
        unread = self.rooms.total_unread()
        self.setWindowTitle(f"({unread}) {title}" if unread else title)

    def _notify(self, message: Message) -> None:
        kind = "Whisper" if message.is_whisper else f"Mention in {message.room}"
        self.notify(f"{kind} from {message.sender}", message.text[:200])

    def notify(self, title: str, text: str) -> None:
        """Tell the person, when this window is not the active one, unless they turned
        notifications off in the settings: the taskbar alert and a tray message."""
        if self.isActiveWindow() or not self.notifications:
            return
        QApplication.alert(self)
        if self.tray is not None and QSystemTrayIcon.supportsMessages():
            # Notification servers may render a subset of HTML: escape peer text.
            self.tray.showMessage(html.escape(title), html.escape(text),
                                  QSystemTrayIcon.MessageIcon.Information, 8000)
        self.notified.emit(title, text)

    @Slot()
    def _top_reached(self) -> None:
        """Scrolled to the top of everything shown: fetch an older page from the host."""
        conv = self.current()
        if conv is None or conv.kind != ConversationKind.ROOM:
            return
        oldest = conv.model.oldest_seq()
        if oldest is not None and oldest > 1 and oldest not in conv.history_requested:
            conv.history_requested.add(oldest)
            self.client.request_history(conv.title, before=oldest, limit=100)

    @Slot(str)
    def _retry(self, message_id: str) -> None:
        if self.files.owns(message_id):  # a file's upload: it goes on from where it was
            self.files.retry(message_id)
            return
        for conv in self._conversations.values():
            if conv.model.mark_sending(message_id):
                self.client.retry(message_id)
                return

    @Slot(str)
    def _open_link(self, url: str) -> None:
        link = QUrl(url)
        if link.scheme() in ("http", "https"):  # never file:, never anything local
            QDesktopServices.openUrl(link)

    @Slot()
    def copy_invite(self) -> None:
        if self.host is None:
            return
        QGuiApplication.clipboard().setText(self.host.invite())
        self.statusBar().showMessage("Invite copied — paste it to the people you want to join.",
                                     5000)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Files dragged over the window (anywhere but the message box, which takes
        them itself) are accepted: dropped, they are sent to the conversation in front."""
        data = event.mimeData()
        if local_files(data) or data.hasImage():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        data = event.mimeData()
        if local_files(data) or data.hasImage():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        data = event.mimeData()
        files = local_files(data)
        if files:
            event.acceptProposedAction()
            self.files.send_paths(files)
        elif data.hasImage():
            event.acceptProposedAction()
            self.files.send_picture(QImage(data.imageData()))
        else:
            super().dropEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.host is not None and not self._force_close:
            # Everyone is in the lobby: its member list is who the room would close on.
            lobby = self.conversation(ConversationKind.ROOM, p.LOBBY, create=False)
            others = max(0, len(lobby.members.names()) - 1) if lobby is not None else 0
            if others:
                answer = QMessageBox.question(
                    self, "Close the room?",
                    f"{others} other {'person is' if others == 1 else 'people are'} in this "
                    "room. Closing the window closes the room for everyone.",
                    QMessageBox.StandardButton.Close | QMessageBox.StandardButton.Cancel,
                    QMessageBox.StandardButton.Cancel)
                if answer != QMessageBox.StandardButton.Close:
                    event.ignore()
                    return
        self._force_close = True
        self.files.shut_down()
        self.client.close()
        if self.host is not None:
            self.host.shutdown()
        if self.tray is not None:
            self.tray.hide()
        event.accept()
        QTimer.singleShot(0, self.closedByUser.emit)
