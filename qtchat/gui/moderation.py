"""Moderation in the app (issue 14): the member menu, the kick/ban/mute dialog, the
topic bar, and the sentences people read when moderation touches them.

Widgets here never talk to the client: they emit signals, and the window turns them
into frames. What each role may do is not decided here: the menu asks the server's
permission table (``qtchat.server.moderation.check``, plain Python), so the app never
offers what the host would refuse. Every name, reason and topic comes from a peer and
is shown as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from qtchat.server.moderation import MAX_TOPIC_CHARS, MEMBER, OP, OWNER, RoomMode, check

MAX_REASON_CHARS = 300  # a reason is a sentence, not a message

# --- the member menu ------------------------------------------------------------------------

WHISPER = "whisper"
KICK = "kick"
BAN = "ban"
MUTE = "mute"
UNMUTE = "unmute"
MAKE_OP = "make_op"
REMOVE_OP = "remove_op"

_LABELS = {
    WHISPER: "Whisper",
    KICK: "Kick…",
    BAN: "Ban…",
    MUTE: "Mute…",
    UNMUTE: "Unmute",
    MAKE_OP: "Make op",
    REMOVE_OP: "Remove op",
}


def member_actions(my_role: str, member_role: str, *, is_me: bool = False,
                   muted: bool = False) -> list[str]:
    """What the menu offers for a member: always Whisper (not to yourself), then each
    moderation action the permission table lets ``my_role`` do to ``member_role``."""
    if is_me:
        return []  # nobody whispers, kicks or promotes themselves
    actions = [WHISPER]
    for action in (KICK, BAN):
        if check(my_role, action, member_role) is None:
            actions.append(action)
    mute = UNMUTE if muted else MUTE
    if check(my_role, mute, member_role) is None:
        actions.append(mute)
    if check(my_role, "set_role", member_role) is None:
        actions.append(REMOVE_OP if member_role == OP else MAKE_OP)
    return actions


class MemberMenu(QMenu):
    """The context menu of a member of the list.

    Signals:
        chosen(str action, str name): an entry was picked; ``action`` is one of this
            module's constants (WHISPER, KICK, BAN, MUTE, UNMUTE, MAKE_OP, REMOVE_OP).
            Those ending in "…" want the ModerationDialog first.
    """

    chosen = Signal(str, str)

    def __init__(self, name: str, my_role: str, member_role: str, *, is_me: bool = False,
                 muted: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        for action in member_actions(my_role, member_role, is_me=is_me, muted=muted):
            if action == KICK:
                self.addSeparator()
            entry = QAction(_LABELS[action], self)
            entry.setData(action)
            entry.triggered.connect(self._triggered)
            self.addAction(entry)

    def entries(self) -> list[str]:
        """The labels shown, in order (separators left out)."""
        return [a.text() for a in self.actions() if not a.isSeparator()]

    def entry(self, action: str) -> QAction | None:
        return next((a for a in self.actions() if a.data() == action), None)

    @Slot()
    def _triggered(self) -> None:
        entry = self.sender()
        if isinstance(entry, QAction):
            self.chosen.emit(entry.data(), self.name)


# --- kick, ban and mute: reason and duration ---------------------------------------------

# (label, minutes); 0 is "until lifted", as on the wire.
BAN_DURATIONS = (("10 minutes", 10), ("1 hour", 60), ("1 day", 1440), ("1 week", 10080),
                 ("Until lifted", 0))
MUTE_DURATIONS = (("5 minutes", 5), ("1 hour", 60), ("Until lifted", 0))


@dataclass(frozen=True, slots=True)
class ModerationRequest:
    """What the dialog asks for: the fields of a ``kick``/``ban``/``mute`` frame.
    ``room`` None: from (or on) the whole host. ``minutes`` None for a kick."""

    kind: str
    name: str
    room: str | None
    minutes: int | None
    reason: str


class ModerationDialog(QDialog):
    """Kick, ban or mute ``name``: a reason, a duration (ban, mute), and for a kick or
    a mute started from a room whether it is that room or the whole host.

    Signals:
        requested(ModerationRequest): OK was pressed (the dialog then closes).
    """

    requested = Signal(object)

    def __init__(self, kind: str, name: str, room: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if kind not in (KICK, BAN, MUTE):
            raise ValueError(f"no dialog for {kind!r}")
        self.kind, self.name, self.room = kind, name, room
        verb = {KICK: "Kick", BAN: "Ban", MUTE: "Mute"}[kind]
        self.setWindowTitle(f"{verb} {name}")  # window titles are plain text
        form = QFormLayout()
        self.reason_edit = QLineEdit()
        self.reason_edit.setMaxLength(MAX_REASON_CHARS)
        self.reason_edit.setPlaceholderText("Optional — they will see it")
        form.addRow("Reason:", self.reason_edit)
        self.duration_box: QComboBox | None = None
        durations = {BAN: BAN_DURATIONS, MUTE: MUTE_DURATIONS}.get(kind)
        if durations:
            self.duration_box = QComboBox()
            for label, minutes in durations:
                self.duration_box.addItem(label, minutes)
            form.addRow("For:", self.duration_box)
        # A ban is always host-wide (§4); a kick or a mute may be one room's.
        self.whole_host_box: QCheckBox | None = None
        if kind != BAN and room is not None:
            self.whole_host_box = QCheckBox(
                "From the whole host" if kind == KICK else "Everywhere, whispers too")
            form.addRow("", self.whole_host_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(verb)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        self.question = question = QLabel(self._question())
        question.setTextFormat(Qt.TextFormat.PlainText)
        question.setWordWrap(True)
        layout.addWidget(question)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(360)  # room for the question and a reason on one line

    def _question(self) -> str:
        where = f" from #{self.room}" if self.room is not None and self.kind == KICK else ""
        return {KICK: f"Remove {self.name}{where}?",
                BAN: f"Ban {self.name} from this host? Their name and their app's "
                     "identity will be refused. Their network address is refused only to "
                     "apps without an identity, so others who share it (the same Wi-Fi "
                     "router, the same computer) can still join with their own.",
                MUTE: f"Stop {self.name} from speaking?"}[self.kind]

    def set_duration(self, minutes: int) -> None:
        if self.duration_box is None:
            raise ValueError(f"a {self.kind} has no duration")
        index = self.duration_box.findData(minutes)
        if index < 0:
            raise ValueError(f"{minutes} minutes is not offered")
        self.duration_box.setCurrentIndex(index)

    def request(self) -> ModerationRequest:
        """What the dialog holds now."""
        minutes = None if self.duration_box is None else int(self.duration_box.currentData())
        whole = self.whole_host_box is not None and self.whole_host_box.isChecked()
        room = None if self.kind == BAN or whole else self.room
        return ModerationRequest(self.kind, self.name, room, minutes,
                                 self.reason_edit.text().strip())

    def accept(self) -> None:
        self.requested.emit(self.request())
        super().accept()


# --- the topic bar -----------------------------------------------------------------------------


def may_set_topic(my_role: str, mode: RoomMode) -> bool:
    """Whether the topic bar lets ``my_role`` edit in a room of ``mode``."""
    return check(my_role, "topic", mode=mode) is None


class _TopicLabel(QLabel):
    doubleClicked = Signal()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.doubleClicked.emit()
        super().mouseDoubleClickEvent(event)


class _TopicEdit(QLineEdit):
    cancelled = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
            return
        super().keyPressEvent(event)


class TopicBar(QWidget):
    """The room's topic above the messages: plain text, and for those allowed an edit
    in place (double-click or the pencil; Enter sets, Escape cancels) with the
    characters left out of 300 shown.

    Signals:
        topicEdited(str text): the person set a new topic ("" clears it).
    """

    topicEdited = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._topic = ""
        self._by = ""
        self._editable = False
        self.label = _TopicLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # topics come from peers
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.doubleClicked.connect(self.start_editing)
        self.edit = _TopicEdit()
        self.edit.setMaxLength(MAX_TOPIC_CHARS)
        self.edit.setPlaceholderText("Topic — Enter sets it, Escape cancels")
        self.edit.returnPressed.connect(self._commit)
        self.edit.cancelled.connect(self.stop_editing)
        self.edit.textChanged.connect(self._count)
        self.counter = QLabel()
        self.counter.setTextFormat(Qt.TextFormat.PlainText)
        editor = QWidget()
        editor_layout = QHBoxLayout(editor)
        editor_layout.setContentsMargins(0, 0, 0, 0)
        editor_layout.addWidget(self.edit, 1)
        editor_layout.addWidget(self.counter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.label)
        self.stack.addWidget(editor)
        self.stack.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.pencil = QToolButton()
        self.pencil.setText("Edit")
        self.pencil.setToolTip("Change the topic")
        self.pencil.clicked.connect(self.start_editing)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.pencil)
        self._show()

    def topic(self) -> str:
        return self._topic

    def set_topic(self, text: str, by: str = "") -> None:
        """Show the room's topic (from ``topic``/``joined``); plain text, whatever it holds."""
        self._topic, self._by = text, by
        self._show()

    def set_editable(self, editable: bool) -> None:
        """Whether this person may change the topic now (see ``may_set_topic``)."""
        self._editable = editable
        if not editable:
            self.stop_editing()
        self._show()

    def is_editing(self) -> bool:
        return self.stack.currentIndex() == 1

    @Slot()
    def start_editing(self) -> bool:
        """Open the editor; False (and nothing happens) when not allowed."""
        if not self._editable:
            return False
        self.edit.setText(self._topic)
        self.edit.selectAll()
        self.stack.setCurrentIndex(1)
        self.pencil.hide()  # Enter sets, Escape cancels: the button would only confuse
        self.edit.setFocus()
        self._count()
        return True

    @Slot()
    def stop_editing(self) -> None:
        self.stack.setCurrentIndex(0)
        self.pencil.setVisible(self._editable)

    @Slot()
    def _commit(self) -> None:
        text = self.edit.text().strip()
        self.stop_editing()
        if self._editable and text != self._topic:
            self.topicEdited.emit(text)

    @Slot()
    def _count(self) -> None:
        self.counter.setText(f"{len(self.edit.text())}/{MAX_TOPIC_CHARS}")

    def _show(self) -> None:
        # One line: a topic with line breaks would push the messages down.
        shown = " ".join(self._topic.split("\n")) if self._topic else ""
        if shown:
            self.label.setText(shown)
            self.label.setToolTip(f"Set by {self._by}" if self._by else "")
        else:
            self.label.setText("No topic" + (" — double-click to set one"
                                             if self._editable else ""))
            self.label.setToolTip("")
        self.pencil.setVisible(self._editable)


# --- what people read ---------------------------------------------------------------------------


def _reason(reason: str | None) -> str:
    return f": {reason}" if reason else "."


def clock_time(when: datetime, now: datetime, tz: tzinfo | None = None) -> str:
    """``14:05`` today, ``5 Dec 14:05`` another day, in the person's time zone."""
    local, today = when.astimezone(tz), now.astimezone(tz)
    if local.date() == today.date():
        return local.strftime("%H:%M")
    return f"{local.day} {local.strftime('%b %H:%M')}"


def _until(until: datetime | None, now: datetime, tz: tzinfo | None) -> str:
    return "until it is lifted" if until is None else f"until {clock_time(until, now, tz)}"


def kicked_sentence(by: str, room: str | None, reason: str | None) -> str:
    """What a kicked person reads (``left`` with reason kicked, or ``bye``)."""
    where = f"#{room}" if room else "this host"
    return f"{by} removed you from {where}{_reason(reason)}"


def banned_sentence(until: datetime | None, now: datetime, *, by: str | None = None,
                    reason: str | None = None, tz: tzinfo | None = None) -> str:
    """What a banned person reads (``error banned``, or the ``bye`` of the ban)."""
    who = f" (by {by})" if by else ""
    return f"You are banned from this host {_until(until, now, tz)}{who}{_reason(reason)}"


def muted_sentence(by: str, room: str | None, until: datetime | None, now: datetime,
                   tz: tzinfo | None = None) -> str:
    """What a muted person reads when the ``user_muted`` about them arrives."""
    where = f"in #{room}" if room else "on this host"
    return f"{by} muted you {where} {_until(until, now, tz)}."


def not_sent_muted_sentence(room: str | None) -> str:
    """The answer to a message refused with ``error muted``."""
    where = f"in #{room}" if room else "on this host"
    return f"Not sent: you are muted {where}."


def not_sent_moderated_sentence(room: str) -> str:
    """The answer to a broadcast refused because the room is moderated."""
    return f"Not sent: only ops speak in #{room} now."


def kick_notice(name: str, by: str, room: str | None, reason: str | None) -> str:
    """The room's notice when someone else is kicked (``user_left`` reason kicked)."""
    where = f"#{room}" if room else "the host"
    return f"{by} removed {name} from {where}{_reason(reason)}"


def mute_notice(name: str, by: str, room: str | None, until: datetime | None,
                now: datetime, tz: tzinfo | None = None) -> str:
    where = f"in #{room}" if room else "on this host"
    return f"{by} muted {name} {where} {_until(until, now, tz)}."


def unmute_notice(name: str, by: str, room: str | None, *, me: bool = False) -> str:
    """What the room reads when someone may speak again (``me``: the one muted reads
    it). ``by`` "": the mute ran out by itself (nobody lifted it)."""
    where = f" in #{room}" if room else ""
    who = "You" if me else name
    if not by:
        return f"{who} may speak again{where}: the mute has run out."
    return f"{by} let {'you' if me else name} speak again{where}."


def role_notice(name: str, role: str, by: str) -> str:
    if role == OP:
        return f"{by} made {name} an op."
    if role == OWNER:
        return f"{name} is the host's owner."
    return f"{by} removed {name}'s op role."


def topic_notice(text: str, by: str) -> str:
    return f"{by} changed the topic to “{text}”." if text else f"{by} cleared the topic."


def mode_notice(mode: RoomMode, by: str, room: str) -> str:
    speak = "only ops speak" if mode.moderated else "everyone may speak"
    topic = "only ops set the topic" if mode.topic_locked else "everyone may set the topic"
    return f"{by} changed #{room}: {speak}, {topic}."


__all__ = [
    "BAN", "BAN_DURATIONS", "KICK", "MAKE_OP", "MEMBER", "MUTE", "MUTE_DURATIONS", "OP",
    "OWNER", "REMOVE_OP", "UNMUTE", "WHISPER", "MemberMenu", "ModerationDialog",
    "ModerationRequest", "TopicBar", "banned_sentence", "clock_time", "kick_notice",
    "kicked_sentence", "may_set_topic", "member_actions", "mode_notice", "mute_notice",
    "muted_sentence", "not_sent_moderated_sentence", "not_sent_muted_sentence",
    "role_notice", "topic_notice", "unmute_notice",
]
