"""The chat window's living-room wiring: search (Ctrl+F), typing, edit and delete.

The widgets are their own modules (``search_bar.py``, ``typing_label.py``, the model's
``change_message``); this connects them to the ``ChatClient`` and the window, so
``main_window.py`` only makes a ``LivingGlue`` and gives it the column to put them in:

- the search bar above the tabs: what it asks becomes a ``search`` (this conversation,
  or everything), the answer with the same ``id`` fills it; choosing a result shows its
  conversation and scrolls to it, loading the part of the room's history around it
  first when it is not shown yet;
- a typing line under the tabs, one ``TypingLabel`` per conversation (only the current
  one's shows); what the person types sends ``typing active`` at most every 3 s to the
  conversation, ``paused`` once after 5 s without a change while text is left in the
  box (``active`` again on the next change), and ``done`` when the box is emptied;
- Up in an empty box edits the person's last message here (``ChatInput.start_edit``),
  and a message's context menu has Edit and Delete (the host says who may: an op may
  delete others' room messages, anyone else hears ``not_permitted``);
  ``edited`` and ``deleted`` from the host change the row wherever it is shown;
- presence: the members lists show who is away or busy (``MemberModel.set_status``),
  and the app goes away by itself after the person's away time without input
  (``qtchat.living.IdleTimer``, fed by an application-wide event filter), back on input;
  Chat ▸ Status (``status_menu.py``) lets the person choose online / away / busy and a
  status line, which the away timer keeps (a chosen away or busy is not undone by
  input, the line stays through going away and back); our own member rows show what
  the host was told, as nobody echoes it back to us;
- receipts: a whisper that arrives is acknowledged ``delivered``, and ``read`` once its
  conversation is in front in the active window; receipts from the peer mark our
  whispers' rows sent / delivered / read (``MessageModel.mark_receipt``);
- the person's settings (``Preferences``): the typing and receipts switches stop the
  sending itself (``ChatClient.typing_enabled`` / ``receipts_enabled``).

Every feature is used only when the host accepted it (``ChatClient.has_feature``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QTimer, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QBoxLayout, QStackedWidget

from qtchat import protocol as p
from qtchat.gui.conversation import Conversation, fold
from qtchat.gui.models import ConversationKind, RowKind
from qtchat.gui.search_bar import SearchBar
from qtchat.gui.settings_dialog import Preferences
from qtchat.gui.status_menu import StatusMenu, clean_line
from qtchat.gui.typing_label import TypingLabel
from qtchat.living import TYPING_SEND_EVERY, IdleTimer
from qtchat.protocol.living import (
    Deleted,
    Edited,
    ReceiptNotice,
    SearchResults,
    TypingNotice,
    UserStatus,
)
from qtchat.protocol.server_frames import HistoryPage, Joined, Message, Registered

if TYPE_CHECKING:
    from qtchat.gui.main_window import ChatWindow

TYPING_PAUSED_AFTER = 5.0  # s without a change, text left in the box: `paused`
HISTORY_AROUND = 25  # messages loaded on each side of a chosen search result
# What counts as the person being at the computer (for going away and coming back).
_INPUT_EVENTS = frozenset({QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress,
                           QEvent.Type.MouseMove, QEvent.Type.Wheel})


class LivingGlue(QObject):
    def __init__(self, window: ChatWindow, column: QBoxLayout, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(window)
        self.window = window
        self.client = client = window.client
        self._clock = clock
        self.search_bar = SearchBar()
        self.search_bar.attach_shortcut(window)
        self.search_bar.searchRequested.connect(self._search)
        self.search_bar.resultChosen.connect(self._chosen)
        self.typing_stack = QStackedWidget()
        self.typing_stack.addWidget(TypingLabel())  # nobody, before any conversation
        tabs_at = column.indexOf(window.tabs)
        column.insertWidget(tabs_at, self.search_bar)
        column.insertWidget(tabs_at + 2, self.typing_stack)
        self._labels: dict[tuple[ConversationKind, str], TypingLabel] = {}
        self._asked: dict[str, bool] = {}  # search id -> whether it is a next page
        self._found: dict[int, Message] = {}  # seq -> a result shown in the bar
        self._jump: tuple[Conversation, int] | None = None  # a result being loaded
        # What the conversation was last told: (target, when, state), None: nothing/done.
        self._typing_sent: tuple[tuple[str, str], float, str] | None = None
        self._last_change = 0.0  # when the box's text last changed
        self._pause_timer = QTimer(self)
        self._pause_timer.setSingleShot(True)
        self._pause_timer.timeout.connect(self._check_paused)

        client.searchResults.connect(self._results)
        client.messageEdited.connect(self._edited)
        client.messageDeleted.connect(self._deleted)
        client.typingReceived.connect(self._typing)
        client.messageReceived.connect(self._message)
        client.historyReceived.connect(self._history)
        client.privateHistoryReceived.connect(self._private_history)
        client.userLeft.connect(self._user_left)
        client.connectionLost.connect(self._connection_lost)
        window.tabs.currentChanged.connect(self._tab_changed)
        window.input.edit_last = self.edit_last
        window.input.editSubmitted.connect(self._edit_submitted)
        window.input.textChanged.connect(self._input_changed)

        client.roomJoined.connect(self._room_joined)
        client.statusReceived.connect(self._status)
        client.receiptReceived.connect(self._receipt)
        window.tabs.currentChanged.connect(lambda _index: self._read_current())
        self._read_sent: dict[str, int] = {}  # peer (folded) -> the highest seq said read
        self.idle = IdleTimer(clock())
        self._announced = ("online", "")  # the presence (state, line) the host was told
        self._line = ""  # the status line the person chose
        self.status_menu = StatusMenu(window)
        self.status_menu.stateChosen.connect(self.choose)
        self.status_menu.lineChosen.connect(self.set_line)
        chat_menu = getattr(window, "chat_menu", None)
        if chat_menu is not None:
            chat_menu.insertMenu(getattr(window, "settings_action", None), self.status_menu)
        self._idle_timer = QTimer(self)
        self._idle_timer.setSingleShot(True)
        self._idle_timer.timeout.connect(self._check_idle)
        self.apply_preferences(Preferences.load())
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    # --- search ---------------------------------------------------------------------------

    @Slot(str, bool, object)
    def _search(self, query: str, everywhere: bool, before: int | None) -> None:
        conv = self.window.current()
        room = with_ = None
        if not everywhere and conv is not None:
            if conv.kind == ConversationKind.ROOM:
                room = conv.title
            else:
                with_ = conv.title
        search_id = self.client.search(query, room=room, with_=with_, before=before)
        if search_id is None:
            self.search_bar.status.setText("This host cannot search (or you are not "
                                           "connected).")
            return
        self._asked[search_id] = before is not None

    @Slot(object)
    def _results(self, frame: SearchResults) -> None:
        append = self._asked.pop(frame.id or "", None)
        if append is None:  # an answer to an earlier search, or not ours: not shown
            return
        if not append:
            self._found.clear()
        self._found.update((m.seq, m) for m in frame.messages)
        self.search_bar.show_results(frame.query, frame.messages, frame.more, append=append)

    @Slot(int)
    def _chosen(self, seq: int) -> None:
        message = self._found.get(seq)
        if message is None:
            return
        conv = self.window._conversation_of(message)
        self.window.show_conversation(conv)
        if conv.model.has_seq(seq):
            self._scroll_to(conv, seq)
        else:
            self._jump = (conv, seq)
            before, limit = seq + HISTORY_AROUND + 1, 2 * HISTORY_AROUND + 1
            if conv.kind == ConversationKind.ROOM:
                self.client.request_history(conv.title, before=before, limit=limit)
            else:
                self.client.request_private_history(conv.title, before=before, limit=limit)

    @Slot(str, list)
    def _history(self, _room: str, _messages: list) -> None:
        if self._jump is None:
            return
        conv, seq = self._jump
        if conv.model.has_seq(seq):
            self._jump = None
            self._scroll_to(conv, seq)

    @Slot(object)
    def _private_history(self, frame: HistoryPage) -> None:
        """A page of a private conversation: its whispers, and how far they read ours."""
        assert frame.with_ is not None
        conv = self.window.conversation(ConversationKind.PRIVATE, frame.with_)
        assert conv is not None
        conv.model.add_messages(frame.messages)
        if frame.read_up_to is not None:
            conv.model.mark_receipt(frame.read_up_to.get("them", 0), "read")
        self._history(frame.with_, frame.messages)

    @staticmethod
    def _scroll_to(conv: Conversation, seq: int) -> None:
        row = conv.model.row_of_seq(seq)
        conv.view.scroll_to_row(row)
        conv.view.select_rows(row, row)  # marked, so the eye finds it

    # --- typing ---------------------------------------------------------------------------

    def label(self, conv: Conversation) -> TypingLabel:
        found = self._labels.get(conv.key)
        if found is None:
            found = self._labels[conv.key] = TypingLabel(clock=self._clock)
            self.typing_stack.addWidget(found)
        return found

    @Slot(int)
    def _tab_changed(self, _index: int) -> None:
        conv = self.window.current()
        if conv is not None:
            self.typing_stack.setCurrentWidget(self.label(conv))
            self._add_actions(conv)

    def _add_actions(self, conv: Conversation) -> None:
        """Edit and Delete in the view's context menu (once per view)."""
        view = conv.view
        if view.property("livingActions"):
            return
        view.setProperty("livingActions", True)
        edit = QAction("&Edit", view)
        edit.triggered.connect(lambda: self._edit_row(conv))
        delete = QAction("&Delete", view)
        delete.triggered.connect(lambda: self._delete_row(conv))
        view.addAction(edit)
        view.addAction(delete)

    def _row_message(self, conv: Conversation) -> int | None:
        """The seq of the message the context menu is about (None: not a message)."""
        row = conv.view.current_row()
        if not 0 <= row < conv.model.rowCount():
            return None
        entry = conv.model.entry(row)
        if entry.kind != RowKind.MESSAGE or entry.seq is None or entry.is_deleted:
            return None
        return entry.seq

    def _edit_row(self, conv: Conversation) -> None:
        seq = self._row_message(conv)
        text = conv.model.written_text(seq) if seq is not None else None
        if seq is None or text is None or not self.client.has_feature("edit"):
            return
        if not conv.model.entry(conv.model.row_of_seq(seq)).is_own:
            self.window._input_refused("Only its author can edit a message.")
            return
        self.window.input.start_edit(seq, text)
        self.window.input.setFocus()

    def _delete_row(self, conv: Conversation) -> None:
        seq = self._row_message(conv)
        if seq is not None:
            self.client.delete_message(seq)  # the host decides who may

    @Slot(object)
    def _typing(self, frame: TypingNotice) -> None:
        window = self.window
        if frame.room is not None:
            conv = window.conversation(ConversationKind.ROOM, frame.room, create=False)
        else:
            conv = window.conversation(ConversationKind.PRIVATE, frame.sender, create=False)
        if conv is not None and fold(frame.sender) != fold(window.me):
            self.label(conv).typing(frame.sender, frame.state)

    @Slot(str, str, str)
    def _user_left(self, name: str, room: str, _reason: str) -> None:
        """Someone who left (or dropped) is not typing there any more."""
        conv = self.window.conversation(ConversationKind.ROOM, room, create=False)
        label = self._labels.get(conv.key) if conv is not None else None
        if label is not None:
            label.typing(name, "done")

    @Slot(str)
    def _connection_lost(self, _reason: str) -> None:
        """Nothing we were told about typing holds once we are cut off."""
        for label in self._labels.values():
            label.clear()
        self._typing_sent = None
        self._pause_timer.stop()

    @Slot(object)
    def _message(self, message: Message) -> None:
        conv = self.window._conversation_of(message)
        label = self._labels.get(conv.key)
        if label is not None:
            label.message_from(message.sender)
        theirs = message.is_whisper and fold(message.sender) != fold(self.window.me)
        in_front = conv is self.window.current() and self.window.isActiveWindow()
        if theirs and not (in_front and self._read_current()):
            self.client.send_receipt(message.sender, message.seq, "delivered")

    # --- receipts -------------------------------------------------------------------------

    def _read_current(self) -> bool:
        """The conversation in front, in the active window, is read: say so (once per
        newest whisper). Whether a ``read`` was sent."""
        window = self.window
        conv = window.current()
        if conv is None or conv.kind != ConversationKind.PRIVATE \
                or not window.isActiveWindow():
            return False
        newest = None
        model = conv.model
        for row in range(model.rowCount() - 1, -1, -1):
            entry = model.entry(row)
            if entry.kind == RowKind.MESSAGE and entry.seq is not None and not entry.is_own:
                newest = entry.seq
                break
        peer = fold(conv.title)
        if newest is None or self._read_sent.get(peer, 0) >= newest:
            return False
        if not self.client.send_receipt(conv.title, newest, "read"):
            return False
        self._read_sent[peer] = newest
        return True

    @Slot(object)
    def _receipt(self, frame: ReceiptNotice) -> None:
        conv = self.window.conversation(ConversationKind.PRIVATE, frame.sender, create=False)
        if conv is not None:
            conv.model.mark_receipt(frame.seq, frame.state)

    @Slot()
    def _input_changed(self) -> None:
        """What the person types tells the conversation, at most every 3 s."""
        conv = self.window.current()
        if conv is None or self.window.input.editing is not None \
                or not self.client.has_feature("typing"):
            return
        text = self.window.input.toPlainText()
        target = ("room", conv.title) if conv.kind == ConversationKind.ROOM \
            else ("to", conv.title)
        sent = self._typing_sent
        now = self._clock()
        if not text.strip() or text.startswith("/"):
            if sent is not None and sent[0] == target:
                self._send_typing(target, "done")
            self._typing_sent = None
            self._pause_timer.stop()
            return
        self._last_change = now
        self._pause_timer.start(round(TYPING_PAUSED_AFTER * 1000))
        if sent is not None and sent[0] == target and sent[2] == "active" \
                and now - sent[1] < TYPING_SEND_EVERY:
            return  # a change from paused to active goes at once
        if self._send_typing(target, "active"):
            self._typing_sent = (target, now, "active")

    @Slot()
    def _check_paused(self) -> None:
        """5 s without a change and text still in the box: ``paused``, once (what the
        timer does; tests call it with their clock advanced)."""
        sent = self._typing_sent
        if sent is None or sent[2] != "active":
            return
        now = self._clock()
        wait = self._last_change + TYPING_PAUSED_AFTER - now
        if wait > 0:  # changed since the timer started (or a hand clock not there yet)
            self._pause_timer.start(max(1, round(wait * 1000)))
            return
        if self.window.input.toPlainText().strip() and self._send_typing(sent[0], "paused"):
            self._typing_sent = (sent[0], now, "paused")

    def _send_typing(self, target: tuple[str, str], state: str) -> bool:
        kind, name = target
        if kind == "room":
            return self.client.send_typing(state, room=name)
        return self.client.send_typing(state, to=name)

    # --- presence and settings ------------------------------------------------------------

    @Slot(object)
    def apply_preferences(self, prefs: Preferences) -> None:
        """The person's settings, at start and each time the dialog saves them."""
        self.client.typing_enabled = prefs.typing
        self.client.receipts_enabled = prefs.receipts
        self.window.notifications = prefs.notifications
        self.idle.away_after = prefs.away_minutes * 60.0
        self._check_idle()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.WindowActivate and watched is self.window:
            self._read_current()
        elif event.type() in _INPUT_EVENTS:
            self.idle.input(self._clock())
            if self._announced[0] != self.idle.chosen:
                self._check_idle()  # back from away: say so at once
        return False

    @Slot()
    def _check_idle(self) -> None:
        now = self._clock()
        wanted = (self.idle.state(now), self._line)
        if wanted != self._announced and self.client.set_status(*wanted):
            self._announced = wanted
        self._show_own()
        wait = self.idle.next_change(now)
        if wait is None:
            self._idle_timer.stop()
        else:
            self._idle_timer.start(max(1000, round(wait * 1000)))

    @Slot(str)
    def choose(self, state: str) -> None:
        """The person chose online, away or busy (Chat ▸ Status)."""
        self.idle.choose(state, self._clock())
        self.status_menu.show_chosen(state)
        self._check_idle()

    @Slot(str)
    def set_line(self, text: str) -> None:
        """The person's status line ('' clears it), sent with the state."""
        self._line = self.status_menu.line = clean_line(text)
        self._check_idle()

    def _show_own(self) -> None:
        """Our own rows show what the host was told (it tells only the others)."""
        me = self.window.me
        for conv in self._conversations():
            if conv.members is not None and me:
                conv.members.set_status(me, *self._announced)

    def registered(self, frame: Registered) -> None:
        """Called by the window's own ``registered`` slot (the first one reaches the
        window by hand, before it could connect anything)."""
        self._announced = ("online", "")  # a new session starts online; a resume kept ours
        if frame.resumed:
            own = (frame.statuses or {}).get(frame.name)
            if own:
                self._announced = (own["state"], own.get("text", ""))
        self.status_menu.menuAction().setEnabled(self.client.has_feature("presence"))
        lobby = self.window.conversation(ConversationKind.ROOM, p.LOBBY, create=False)
        if lobby is not None and lobby.members is not None:
            for name, status in (frame.statuses or {}).items():
                lobby.members.set_status(name, status["state"], status.get("text", ""))
        self._check_idle()

    @Slot(object)
    def _room_joined(self, frame: Joined) -> None:
        conv = self.window.conversation(ConversationKind.ROOM, frame.room, create=False)
        if conv is not None and conv.members is not None:
            for name, status in (frame.statuses or {}).items():
                conv.members.set_status(name, status["state"], status.get("text", ""))
            self._show_own()

    @Slot(object)
    def _status(self, frame: UserStatus) -> None:
        for conv in self._conversations():
            if conv.members is not None:
                conv.members.set_status(frame.name, frame.state, frame.text)

    # --- edit and delete ------------------------------------------------------------------

    def edit_last(self) -> bool:
        """Up in an empty box: edit our last message here, if the host lets us."""
        conv = self.window.current()
        if conv is None or not self.client.has_feature("edit"):
            return False
        seq = conv.model.last_own_seq()
        text = conv.model.written_text(seq) if seq is not None else None
        if seq is None or text is None:
            return False
        self.window.input.start_edit(seq, text)
        return True

    @Slot(int, str)
    def _edit_submitted(self, seq: int, text: str) -> None:
        conv = self.window.current()
        if conv is not None and conv.model.written_text(seq) == text:
            return  # nothing changed: nothing to tell anyone
        try:
            p.check_text(text)
        except p.LocalProtocolError as exc:
            self.window._input_refused(exc.message)
            return
        self.client.edit_message(seq, text)

    def _conversations(self) -> list[Conversation]:
        return list(self.window._conversations.values())

    @Slot(object)
    def _edited(self, frame: Edited) -> None:
        for conv in self._conversations():
            if conv.model.change_message(frame.seq, text=frame.text, edited_ts=frame.edited_ts):
                return

    @Slot(object)
    def _deleted(self, frame: Deleted) -> None:
        for conv in self._conversations():
            if conv.model.change_message(frame.seq, deleted_by=frame.by):
                return
