"""The message model behind the chat window, and what the other list models share.

``QAbstractListModel`` subclasses hold plain-Python state driven by the window from
ChatClient signals (models never touch sockets, widgets never parse frames). The
member list's model lives with its panel in ``qtchat.gui.members``, the open
conversations' in ``qtchat.gui.conversation_list``.

``MessageModel``
    One conversation (a room, or the private whispers with one person). Rows are
    chat messages, the user's own not-yet-confirmed ("pending") messages, system
    notices, at most one "new messages" marker and "some history was lost" gap
    markers. Messages are kept in server ``seq`` order; duplicates (by ``seq``) are
    dropped, so resume replays and overlapping history pages are harmless.

    Live messages below every row may be coalesced (``coalesce_appends``, on in the
    window's rooms): stored at once, told to Qt once per event-loop pass in one
    ``beginInsertRows`` (``publish``), before any other change.

    Joins and leaves since the last message are one notice row, updated in place
    (``add_membership``): a burst of 300 people is one line, not 600.

    Rows are stored compactly (one slotted ``MessageEntry`` each, sender and room
    strings shared) so 100,000 messages cost a few tens of MB. Every stored row is
    a row of the model: ``qtchat.gui.message_view.MessageView`` lays out and
    paints only the rows on screen, so a long history costs nothing per insertion
    (a ``QListView`` laid out every row on every insertion, and this model used
    to hide all but its newest 3,000 rows for it).

Untrusted text (message text, names) is only ever returned as plain ``str``; no role
carries HTML, and tooltips never contain peer text (Qt would guess rich text).
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import logging
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from enum import IntEnum
from functools import lru_cache
from operator import attrgetter
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QDateTime,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtGui import QColor

from qtchat.protocol.server_frames import Message

log = logging.getLogger(__name__)

__all__ = [
    "ACTION_PREFIX",
    "ConversationKind",
    "MessageEntry",
    "MessageModel",
    "MessageRoles",
    "NoticeKind",
    "RowKind",
    "SendState",
    "format_time",
    "mentions",
    "parse_timestamp",
    "sender_color",
]

#: A message whose text starts with this is a ``/me`` action ("* name text").
ACTION_PREFIX = "/me "

_USER_ROLE = int(Qt.ItemDataRole.UserRole)
#: Flags of a member or conversation row: selectable, never a tree.
_LIST_ITEM_FLAGS = (
    Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
)
_ParentIndex = QModelIndex | QPersistentModelIndex


# --------------------------------------------------------------------------- enums


class RowKind(IntEnum):
    """What a ``MessageModel`` row is (``MessageRoles.Kind``)."""

    MESSAGE = 0  #: a chat message, delivered or pending (see ``SendState``)
    NOTICE = 1  #: a system notice: join/leave/connection lost/reconnected/…
    UNREAD_MARKER = 2  #: the "new messages" line; at most one per model
    GAP_MARKER = 3  #: "some history was lost" (a resume with ``gap: true``)


class SendState(IntEnum):
    """Delivery state of a message row (``MessageRoles.State``)."""

    SENT = 0  #: on the server: it has a ``seq`` (every received message, every echo)
    SENDING = 1  #: the user's own message, sent but not yet echoed by the server
    FAILED = 2  #: the send failed; the window may retry with the same local id


class NoticeKind(IntEnum):
    """Flavour of a notice row (``MessageRoles.NoticeKind``); the delegate may style it."""

    INFO = 0
    JOIN = 1
    LEAVE = 2
    CONNECTION_LOST = 3
    RECONNECTED = 4
    ERROR = 5


class ConversationKind(IntEnum):
    """A ``RoomModel`` row is a room or a private (whisper) conversation."""

    ROOM = 0
    PRIVATE = 1


class MessageRoles(IntEnum):
    """Item data roles of ``MessageModel``; ``Qt.DisplayRole`` is a plain-text summary."""

    Kind = _USER_ROLE + 1  #: int ``RowKind``
    Sender = _USER_ROLE + 2  #: str name as the server shows it ("" for notices/markers)
    Text = _USER_ROLE + 3  #: str, the raw untrusted text (plain text, never HTML)
    Timestamp = _USER_ROLE + 4  #: QDateTime in local time (server ``ts``; now for local rows)
    TimeText = _USER_ROLE + 5  #: str "hh:mm", local time
    Seq = _USER_ROLE + 6  #: int server seq, or None (pending, notices, markers)
    IsOwn = _USER_ROLE + 7  #: bool, sent by this user
    IsWhisper = _USER_ROLE + 8  #: bool, a private message
    IsAction = _USER_ROLE + 9  #: bool, a ``/me`` action ("* name text")
    State = _USER_ROLE + 10  #: int ``SendState``
    SenderColor = _USER_ROLE + 11  #: QColor stable per name, or None
    Peer = _USER_ROLE + 12  #: str room of a broadcast, recipient of a whisper
    LocalId = _USER_ROLE + 13  #: str local id of a pending message, else None
    NoticeKind = _USER_ROLE + 14  #: int ``NoticeKind`` for notices, else None
    RowKey = _USER_ROLE + 15  #: int identity of the row's *content*; changes when it does
    IsMention = _USER_ROLE + 16  #: bool, someone else's message naming this user
    File = _USER_ROLE + 40  #: dict: the file a message carries (features §2), or None


def _role_names(roles: type[IntEnum]) -> dict[int, QByteArray]:
    names = {int(Qt.ItemDataRole.DisplayRole): QByteArray(b"display")}
    for role in roles:
        snake = role.name[0].lower() + role.name[1:]
        names[int(role)] = QByteArray(snake.encode())
    return names


# ----------------------------------------------------------------- small helpers


def parse_timestamp(ts: object) -> int:
    """Milliseconds since the epoch for a protocol ``ts`` ("2024-05-01T12:00:00.123Z").

    Falls back to now (logged) when ``ts`` is missing or malformed: a bad timestamp
    from a peer must not lose the message.
    """
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            # Exact: ~1.7e12 ms is far inside a double's 2**53 integer range.
            return round(parsed.timestamp() * 1000)
    log.debug("bad or missing ts %r; using the local clock", ts)
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=4096)
def _minute_text(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60).strftime("%H:%M")


def format_time(ts_ms: int) -> str:
    """Local wall-clock "hh:mm" for epoch milliseconds (cached per minute)."""
    return _minute_text(ts_ms // 60_000)


def _relative_luminance(r: float, g: float, b: float) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


#: Relative luminance of name colours. 0.18 gives a contrast of ~4.6:1 against
#: *both* pure white and pure black (WCAG AA for normal text on either); the
#: "dark" variant is lighter for dark themes whose background is not pure black
#: (4.5:1 on a base as light as #353535).
_LUMINANCE_BALANCED = 0.18
_LUMINANCE_ON_DARK = 0.36


#: Hues of the name palette, in degrees: twelve, 30° apart. A continuous hue
#: from a CRC put names a few degrees apart ("Alice" and "Carol" in nearly the
#: same pink); twelve fixed hues at one luminance are told apart at a glance.
NAME_HUES = tuple(range(0, 360, 30))


def name_slot(name: str) -> int:
    """Which of the ``NAME_HUES`` ``name`` gets.

    BLAKE2b of the case-folded name: stable across runs and machines (unlike
    Python's salted ``hash``), and unlike a CRC (linear: "Alice" and "Carol" got
    the same slot) a one-letter difference moves a name to an unrelated slot.
    """
    digest = hashlib.blake2b(name.casefold().encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % len(NAME_HUES)


@lru_cache(maxsize=64)
def _hue_rgb(hue_deg: int, target: float) -> tuple[int, int, int]:
    hue = hue_deg / 360.0
    lo, hi = 0.0, 1.0
    for _ in range(20):  # bisect the HSL lightness that hits the target luminance
        mid = (lo + hi) / 2
        if _relative_luminance(*colorsys.hls_to_rgb(hue, mid, 0.75)) < target:
            lo = mid
        else:
            hi = mid
    r, g, b = colorsys.hls_to_rgb(hue, (lo + hi) / 2, 0.75)
    return round(r * 255), round(g * 255), round(b * 255)


def sender_color(name: str, dark: bool = False) -> QColor:
    """A stable colour for ``name``: one of twelve well-separated hues.

    Every hue is at the same luminance, so each is as readable as the others: the
    default at a contrast of ~4.6:1 against both white and black; ``dark=True``
    gives a lighter shade of the same hue for dark themes' grey backgrounds.
    """
    target = _LUMINANCE_ON_DARK if dark else _LUMINANCE_BALANCED
    return QColor(*_hue_rgb(NAME_HUES[name_slot(name)], target))


@lru_cache(maxsize=64)
def _mention_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])", re.IGNORECASE)


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` names ``name`` as a word, case-insensitively ("hi ALICE!"
    yes, "malice" no)."""
    return bool(name) and _mention_pattern(name).search(text) is not None


# ---------------------------------------------------------------- MessageModel


_OWN = 1
_WHISPER = 2
_ACTION = 4
_EDITED = 8  # its author changed it (features §7): "(edited)" follows the text
_DELETED = 16  # taken back: the text is the tombstone's sentence
_DELIVERED = 32  # our whisper reached their app (a receipt, features §6)
_READ = 64  # … and they looked at it

EDITED_SUFFIX = " (edited)"


def deleted_text(sender: str, by: str | None) -> str:
    """What a tombstone row says: who took it back when it was not its author."""
    return "message deleted" if not by or by == sender else f"message deleted by {by}"

#: Sort key of pending rows: after every message, notice and marker.
_PENDING_KEY = float("inf")
#: Sort key of a notice given while no message is known yet ("You joined…" before the
#: room's history arrives): after every message until a live one comes (see
#: ``MessageModel._settle_floating``), so history pages go in above it.
_FLOATING_KEY = 1e18
_sort_key = attrgetter("key")
# Row identities for rows without a seq: negative, process-wide unique, so they
# never collide with a seq and a delegate may cache by them across models.
_serial = itertools.count(1)


_new_entry = object.__new__
_from_iso = datetime.fromisoformat


_UID_OFFSET_STEP = 1 << 40  # above any seq a server reaches (see MessageModel.start_over)


def _new_uid() -> int:
    return -next(_serial)


class MessageEntry:
    """One ``MessageModel`` row. Read-only for everyone but the model.

    ``MessageModel.entry(row)`` hands these out so the delegate can paint without
    a ``data()`` call per role. Fields:

    - ``key``: sort key: the ``seq`` of a message; for notices and markers the
      ``seq`` they follow; ``inf`` for pending messages (they stay at the bottom).
    - ``uid``: identity of the row's *content*: the ``seq`` for delivered
      messages (plus an offset that grows each time the model's server starts its
      history over, so a seq that comes back names new content), otherwise a negative serial
      that is renewed when the row changes (so a cache keyed by ``uid`` never serves
      stale sizes or text).
    - ``seq`` (int or None), ``kind`` (RowKind), ``state`` (SendState),
      ``notice`` (NoticeKind or None), ``ts`` (epoch ms), ``sender``, ``text``,
      ``peer`` (room, or whisper recipient), ``local_id`` (pending only),
      ``is_own``/``is_whisper``/``is_action``; ``file``: the ``file`` dict a message
      carries (features §2: file, name, size, sha256, mime, preview?, gone?), or for
      an upload not posted yet {name, size, mime}; None for everything else (read it
      with ``file_of``: a row made some other way may not have set it).
    """

    __slots__ = (
        "file",
        "flags",
        "key",
        "kind",
        "local_id",
        "notice",
        "peer",
        "sender",
        "seq",
        "state",
        "text",
        "ts",
        "uid",
    )

    def __init__(
        self,
        *,
        key: float,
        uid: int,
        seq: int | None,
        kind: RowKind,
        ts: int,
        sender: str = "",
        text: str = "",
        peer: str = "",
        flags: int = 0,
        state: SendState = SendState.SENT,
        notice: NoticeKind | None = None,
        local_id: str | None = None,
        file: dict[str, Any] | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.uid = uid
        self.seq = seq
        self.kind = kind
        self.ts = ts
        self.sender = sender
        self.text = text
        self.peer = peer
        self.flags = flags
        self.state = state
        self.notice = notice
        self.local_id = local_id

    @property
    def is_own(self) -> bool:
        return bool(self.flags & _OWN)

    @property
    def is_whisper(self) -> bool:
        return bool(self.flags & _WHISPER)

    @property
    def is_action(self) -> bool:
        return bool(self.flags & _ACTION)

    @property
    def is_edited(self) -> bool:
        return bool(self.flags & _EDITED)

    @property
    def is_deleted(self) -> bool:
        return bool(self.flags & _DELETED)

    @property
    def receipt(self) -> str:
        """An own whisper's state as its recipient's receipts say: "read",
        "delivered", or "sent" (stored by the host, nothing heard yet); "" otherwise."""
        if not (self.flags & _OWN and self.flags & _WHISPER) or self.seq is None:
            return ""
        if self.flags & _READ:
            return "read"
        return "delivered" if self.flags & _DELIVERED else "sent"

    def __repr__(self) -> str:
        return (
            f"MessageEntry(kind={self.kind.name}, seq={self.seq}, uid={self.uid}, "
            f"sender={self.sender!r}, state={self.state.name}, text={self.text[:30]!r})"
        )


#: The phrase of a rejoin that cancels a recent "lost their connection".
RECONNECTED = "reconnected"
JOINED = "joined"


def _name_list(names: list[str]) -> str:
    """"Alice", "Alice and Bob", "Alice, Bob and Carol", "Alice, Bob and 298 others"."""
    if len(names) == 1:
        return names[0]
    if len(names) <= 3:
        return f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} others"


class MembershipSummary:
    """The joins and leaves of one room since its last message, as one row.

    ``groups`` maps a phrase ("joined", "left", "lost their connection", …) to the
    people it applies to (case-folded name → name as shown), in order of arrival.
    """

    __slots__ = ("dropped", "groups")

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, str]] = {}
        self.dropped: set[str] = set()  # phrases that mean "lost their connection"

    def add(self, name: str, phrase: str) -> None:
        """``name`` did ``phrase``. Saying again what they did earlier in this row
        (joined, left, joined) takes back what they did since: the row ends on where
        they are now ("bob joined"), never on "bob left" for someone who is here."""
        folded = name.casefold()
        group = self.groups.setdefault(phrase, {})
        if folded in group:
            for other in [p for p, g in self.groups.items() if p != phrase and folded in g]:
                del self.groups[other][folded]
                if not self.groups[other]:
                    del self.groups[other]
        group[folded] = name

    def cancel_drop(self, name: str) -> bool:
        """Take back a "lost their connection" of ``name`` said in this summary."""
        folded = name.casefold()
        for phrase in self.dropped:
            group = self.groups.get(phrase)
            if group is not None and folded in group:
                del group[folded]
                if not group:
                    del self.groups[phrase]
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.groups)

    def short_text(self) -> str:
        """The painted line: "Alice, Bob and 298 others joined · Carol left"."""
        return " · ".join(
            f"{_name_list(list(group.values()))} {phrase}"
            for phrase, group in self.groups.items()
        )

    def full_text(self) -> str:
        """Every name (tooltip, screen readers, copy): "joined: Alice, Bob, …; left: …"."""
        return "; ".join(
            f"{phrase}: {', '.join(group.values())}" for phrase, group in self.groups.items()
        )


class SummaryEntry(MessageEntry):
    """A notice row that stands for a ``MembershipSummary`` (updated in place)."""

    __slots__ = ("summary",)


def file_of(entry: MessageEntry) -> dict[str, Any] | None:
    """The file a row carries (``MessageEntry.file``), None for most rows."""
    return getattr(entry, "file", None)


def display_text(entry: MessageEntry) -> str:
    """Plain-text one-line rendering of a row (DisplayRole, copy, accessibility)."""
    if entry.kind == RowKind.MESSAGE:
        if entry.is_action:
            line = f"* {entry.sender} {entry.text}"
        elif entry.is_whisper:
            arrow = f"→ {entry.peer}" if entry.is_own else f"← {entry.sender}"
            line = f"{arrow}: {entry.text}"
        else:
            line = f"{entry.sender}: {entry.text}"
        if entry.state == SendState.SENDING:
            line += " (sending…)"
        elif entry.state == SendState.FAILED:
            line += " (failed)"
        return line
    if type(entry) is SummaryEntry:
        return entry.summary.full_text()
    return entry.text


class MessageModel(QAbstractListModel):
    """The rows of one conversation, in server ``seq`` order. See the module docstring.

    Feed it from ChatClient signals::

        model.self_name = registered.name
        model.add_messages(joined.history)             # backlog, one insert per block
        model.add_message(message)                     # live broadcast / whisper
        model.add_pending(local_id, text)              # before sending {"id": local_id}
        model.add_message(echo)                        # echo with that id: same row, SENT
        model.mark_failed(local_id)                    # send failed / connection lost
        model.add_notice("bob joined", NoticeKind.JOIN)
        model.add_messages(messages)                   # older page: prepended in place

    Messages are ``qtchat.protocol.server_frames.Message`` values, as the client hands
    them over (checked there); the model reads their attributes, never a dict.
    ``own`` (sent by this user) defaults to ``message.sender == self_name``. A
    ``/me`` action travels as text starting with ``ACTION_PREFIX`` ("/me "): such
    rows get ``IsAction`` and the text without the prefix. A caller that decides
    otherwise passes ``action=``.
    Malformed messages raise ``ValueError`` from ``add_message``; ``add_messages``
    skips and logs them (one bad frame must not lose a history page).
    """

    def __init__(
        self,
        parent: QObject,
        *,
        self_name: str = "",
        conversation: str = "",
    ) -> None:
        """``parent`` is required (every Qt object has one). ``conversation`` is
        the room name or the whisper peer, for the window's bookkeeping only."""
        super().__init__(parent)
        self.self_name = self_name
        self.conversation = conversation
        self._rows: list[MessageEntry] = []
        self._seqs: set[int] = set()
        self._pending: dict[str, MessageEntry] = {}
        # uid -> the rows that carry a file, for whoever must find them again (a
        # transfer that moved); rows that went are dropped as they are met.
        self._file_entries: dict[int, MessageEntry] = {}
        self._unread_marker: MessageEntry | None = None
        self._oldest: int | None = None
        self._newest: int | None = None
        self._strings: dict[str, str] = {}  # one shared copy of each sender/room name
        self._uid_offset = 0  # added to a message's seq for its uid (see start_over)
        self._floating: list[MessageEntry] = []  # notices keyed _FLOATING_KEY
        #: How long after someone's connection dropped their return is a quiet
        #: "reconnected" (the host's resume grace period, 120 s by default).
        self.reconnect_grace_ms = 120_000
        self._dropped_at: dict[str, int] = {}  # case-folded name -> when it dropped
        # Edited messages: seq -> the edit's ts (tooltip) and the text as written
        # (without the "(edited)" the row shows: what Up-arrow editing starts from).
        self._edited_at: dict[int, str] = {}
        self._written: dict[int, str] = {}
        #: Live messages appended at the bottom are stored at once but announced to Qt
        #: (``beginInsertRows``) once per event-loop pass, all together (``publish``):
        #: a burst read in one slice of the client is one insertion, not one per
        #: message with the view's bookkeeping for each. Off by default (a model
        #: without an event loop, e.g. in a script, shows each row as it is added);
        #: the window turns it on.
        self.coalesce_appends = False
        self._unpublished = 0  # rows at the end of _rows that Qt has not been told of
        self._publish_posted = False
        self._publish_timer: QTimer | None = None
        #: True while ``publish`` inserts: the rows are live messages (a view may
        #: announce them), not a history page.
        self.inserting_live = False

    # ------------------------------------------------------------ Qt interface

    def rowCount(self, parent: _ParentIndex = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid():
            return 0
        return len(self._rows) - self._unpublished

    def data(self, index: _ParentIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.column() != 0:
            return None
        row = index.row()
        if not 0 <= row < len(self._rows):
            return None
        entry = self._rows[row]
        role = int(role)
        if role == Qt.ItemDataRole.DisplayRole:
            return display_text(entry)
        if role == Qt.ItemDataRole.ToolTipRole:
            # Qt renders a tooltip as HTML if its first line looks like it: that line
            # is always our timestamp; a summary's names (peer text) come below it.
            stamp = QDateTime.fromMSecsSinceEpoch(entry.ts).toString("yyyy-MM-dd hh:mm:ss")
            if type(entry) is SummaryEntry:
                return f"{stamp}\n{entry.summary.full_text()}"
            edited = self._edited_at.get(entry.seq) if entry.flags & _EDITED else None
            if edited is not None:
                when = QDateTime.fromMSecsSinceEpoch(parse_timestamp(edited))
                return f"{stamp}\nedited {when.toString('yyyy-MM-dd hh:mm:ss')}"
            return stamp
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return display_text(entry)
        if role < _USER_ROLE:
            return None
        return self._custom_data(entry, role)

    def _custom_data(self, entry: MessageEntry, role: int) -> Any:
        if role == MessageRoles.Kind:
            return int(entry.kind)
        if role == MessageRoles.Sender:
            return entry.sender
        if role == MessageRoles.Text:
            return entry.text
        if role == MessageRoles.Timestamp:
            return QDateTime.fromMSecsSinceEpoch(entry.ts)
        if role == MessageRoles.TimeText:
            return format_time(entry.ts)
        if role == MessageRoles.Seq:
            return entry.seq
        if role == MessageRoles.IsOwn:
            return entry.is_own
        if role == MessageRoles.IsWhisper:
            return entry.is_whisper
        if role == MessageRoles.IsAction:
            return entry.is_action
        if role == MessageRoles.State:
            return int(entry.state)
        if role == MessageRoles.SenderColor:
            return sender_color(entry.sender) if entry.sender else None
        if role == MessageRoles.Peer:
            return entry.peer
        if role == MessageRoles.LocalId:
            return entry.local_id
        if role == MessageRoles.NoticeKind:
            return None if entry.notice is None else int(entry.notice)
        if role == MessageRoles.RowKey:
            return entry.uid
        if role == MessageRoles.IsMention:
            return self.mentions_me(entry)
        if role == MessageRoles.File:
            return file_of(entry)
        return None

    def flags(self, index: _ParentIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemNeverHasChildren
        if self.entry(index.row()).kind == RowKind.MESSAGE:
            flags |= Qt.ItemFlag.ItemIsSelectable
        return flags

    def roleNames(self) -> dict[int, QByteArray]:
        return _role_names(MessageRoles)

    # ----------------------------------------------------------------- reading

    def entry(self, row: int) -> MessageEntry:
        """The entry at ``row`` (fast path for the view; do not modify)."""
        return self._rows[row]

    def entries(self) -> Iterator[MessageEntry]:
        """Every entry Qt has been told of (``rowCount()``), oldest first."""
        if self._unpublished:
            return iter(self._rows[: len(self._rows) - self._unpublished])
        return iter(self._rows)

    def entries_between(self, first: int, last: int) -> list[MessageEntry]:
        """The entries of rows ``first`` to ``last`` inclusive (one slice, no copies
        of the entries: for a view that measures a block of inserted rows)."""
        return self._rows[first : last + 1]

    def stored_count(self) -> int:
        """Rows stored (the same as ``rowCount()``)."""
        return self.rowCount()

    def publish(self) -> None:
        """Tell Qt of the messages appended since the last time, in one insertion.

        Runs by itself on the next event-loop pass after a live message is added
        (``coalesce_appends``), and first thing in every other change, so rows are
        always inserted, moved and changed in the order they happened.
        """
        self._publish_posted = False
        count = self._unpublished
        if not count:
            return
        end = len(self._rows)
        self.beginInsertRows(QModelIndex(), end - count, end - 1)
        self._unpublished = 0  # after rowsAboutToBeInserted: it still saw the old count
        self.inserting_live = True
        try:
            self.endInsertRows()
        finally:
            self.inserting_live = False

    def _post_publish(self) -> None:
        self._publish_posted = True
        timer = self._publish_timer
        if timer is None:
            timer = self._publish_timer = QTimer(self)
            timer.setSingleShot(True)
            timer.setInterval(0)
            timer.timeout.connect(self.publish)
        timer.start()

    def message_count(self) -> int:
        """Messages with a seq that are stored."""
        return len(self._seqs)

    def oldest_seq(self) -> int | None:
        """Smallest stored seq (for ``history {before: …}``), None if no message."""
        return self._oldest

    def newest_seq(self) -> int | None:
        """Largest stored seq (for ``register {since: …}`` on resume), None if none."""
        return self._newest

    def has_seq(self, seq: int) -> bool:
        return seq in self._seqs

    def row_of_seq(self, seq: int) -> int:
        """Row of the message ``seq``; -1 if absent."""
        if seq not in self._seqs:
            return -1
        row = bisect_left(self._rows, seq, 0, self._message_end(), key=_sort_key)
        if self._unpublished and row >= len(self._rows) - self._unpublished:
            self.publish()  # a row number is only good to Qt once Qt knows the row
        return row

    def _changed(self, seq: int, sender: str, text: str, flags: int, edited: str | None,
                 deleted: dict[str, str] | None) -> tuple[int, str]:
        """The flags and shown text of an edited or deleted message."""
        if deleted is not None:
            self._edited_at.pop(seq, None)
            self._written.pop(seq, None)
            return (flags | _DELETED) & ~(_EDITED | _ACTION), deleted_text(
                sender, deleted.get("by"))
        self._edited_at[seq] = edited or ""
        self._written[seq] = text
        return flags | _EDITED, text + EDITED_SUFFIX

    def written_text(self, seq: int) -> str | None:
        """The text of message ``seq`` as its author wrote it (None: absent, deleted)."""
        row = self.row_of_seq(seq)
        if row < 0:
            return None
        entry = self._rows[row]
        if entry.flags & _DELETED:
            return None
        text = self._written.get(seq, entry.text)
        return ACTION_PREFIX + text if entry.flags & _ACTION else text

    def last_own_seq(self) -> int | None:
        """The newest message this user sent here that is not deleted (Up-arrow edit)."""
        for row in range(self._message_end() - 1, -1, -1):
            entry = self._rows[row]
            if entry.kind == RowKind.MESSAGE and entry.seq is not None and entry.is_own \
                    and not entry.flags & _DELETED:
                return entry.seq
        return None

    def mark_receipt(self, upto: int, state: str) -> int:
        """A receipt from the peer: our whispers up to ``upto`` were ``delivered`` or
        ``read`` (read counts as delivered). Returns how many rows changed."""
        flag = _READ | _DELIVERED if state == "read" else _DELIVERED
        self.publish()  # the rows it changes may be among those Qt is not told of yet
        first = last = -1
        for row in range(self._message_end() - 1, -1, -1):
            entry = self._rows[row]
            if entry.seq is None or entry.seq > upto or entry.kind != RowKind.MESSAGE \
                    or not (entry.flags & _OWN and entry.flags & _WHISPER):
                continue
            if entry.flags & flag == flag:
                break  # receipts only move forward: the older ones have it already
            entry.flags |= flag
            entry.uid = _new_uid()
            first = row
            last = row if last < 0 else last
        if first >= 0:
            self.dataChanged.emit(self.index(first), self.index(last))
            return last - first + 1
        return 0

    def change_message(self, seq: int, *, text: str | None = None, edited_ts: str = "",
                       deleted_by: str | None = None) -> bool:
        """An ``edited`` (``text``) or ``deleted`` (``deleted_by``) for message ``seq``;
        False if it is not here."""
        row = self.row_of_seq(seq)
        if row < 0:
            return False
        entry = self._rows[row]
        if deleted_by is not None:
            deleted: dict[str, str] | None = {"by": deleted_by}
            new_text, edited = entry.text, None
        else:
            if text is None:
                return False
            deleted, edited = None, edited_ts
            new_text = text
            flags = entry.flags & ~_ACTION
            if new_text.startswith(ACTION_PREFIX):
                flags |= _ACTION
                new_text = new_text.removeprefix(ACTION_PREFIX)
            entry.flags = flags
        entry.flags, entry.text = self._changed(seq, entry.sender, new_text, entry.flags,
                                                edited, deleted)
        entry.uid = _new_uid()  # new content: caches keyed by uid measure it again
        index = self.index(row)
        self.dataChanged.emit(index, index)
        return True

    def pending(self, local_id: str) -> MessageEntry | None:
        """The pending (sending or failed) entry with this local id, if any."""
        return self._pending.get(local_id)

    def pending_entries(self) -> list[MessageEntry]:
        """Pending entries, oldest first (e.g. to resend them all after a resume)."""
        return self._rows[len(self._rows) - len(self._pending) :]

    def unread_marker_row(self) -> int:
        """Row of the "new messages" marker; -1 if none."""
        marker = self._unread_marker
        if marker is None:
            return -1
        return self._index_of(marker)

    def mentions_me(self, entry: MessageEntry) -> bool:
        """Whether ``entry`` is someone else's message naming this user."""
        return (
            entry.kind == RowKind.MESSAGE
            and not entry.flags & _OWN
            and mentions(entry.text, self.self_name)
        )

    # ---------------------------------------------------------------- messages

    def add_message(
        self, frame: Message, own: bool | None = None, *, action: bool | None = None
    ) -> bool:
        """Add one ``Message`` (a broadcast or whisper); False if its seq is already here.

        ``action``: show it as a ``/me`` action ("* name text"), without a leading
        ``ACTION_PREFIX``. None (the default) decides from the text: whether it starts
        with "/me ".

        An echo whose ``id`` names a pending row turns that row into this message
        (moved to its seq position if others arrived meanwhile): never two rows.
        The common case, a seq newer than all, is an append; an older seq is
        inserted in place (bisect). Raises ``ValueError`` on a malformed message.
        """
        entry = self._entry_from_frame(frame, own, action)
        pend = self._pending_for(frame)
        seq = entry.seq
        assert seq is not None
        if seq in self._seqs:
            if pend is not None:  # already shown (e.g. replayed before the echo)
                self._drop_pending(pend)
            return False
        if self._floating:
            self._settle_floating(seq - 0.5 if self._newest is None else self._newest)
        self._seqs.add(seq)
        self._note_seq(seq, seq)
        if self.coalesce_appends and pend is None and not self._pending:
            rows = self._rows
            if not rows or rows[-1].key < seq:  # the live case: below everything
                rows.append(entry)
                self._unpublished += 1
                if not self._publish_posted:
                    self._post_publish()
                return True
        if self._unpublished:
            self.publish()
        if pend is not None:
            entry.flags |= _OWN
            self._replace_pending(pend, entry)
        else:
            self._insert_one(entry, bisect_left)
        return True

    def add_messages(self, frames: Iterable[Message], own: bool | None = None) -> int:
        """Add a batch (a ``joined``/``history`` page, a resume replay); returns rows added.

        Duplicates are dropped, the batch is sorted by seq, and each run of new
        messages landing between the same two existing rows goes in with one
        ``beginInsertRows``: a backlog appended at the bottom or an older page
        prepended at the top is a single insertion.
        """
        fresh: list[MessageEntry] = []
        seen = self._seqs
        batch_seqs: set[int] = set()
        echoes: list[Message] = []
        pending = self._pending
        for frame in frames:
            try:
                entry = self._entry_from_frame(frame, own, None)
            except ValueError as exc:
                log.warning("skipping a malformed message in a batch: %s", exc)
                continue
            seq = entry.seq
            if seq in seen or seq in batch_seqs:
                pend = self._pending_for(frame)
                if pend is not None:
                    self._drop_pending(pend)
                continue
            if pending and self._pending_for(frame) is not None:
                echoes.append(frame)
                continue
            batch_seqs.add(seq)  # type: ignore[arg-type]
            fresh.append(entry)
        added = len(fresh)
        if fresh:
            fresh.sort(key=_sort_key)
            self._note_seq(fresh[0].key, fresh[-1].key)  # type: ignore[arg-type]
            seen.update(batch_seqs)
            self._insert_sorted(fresh)
        for frame in echoes:  # rare: our own echo inside a replay
            if self.add_message(frame, own=True):
                added += 1
        return added

    # ------------------------------------------------------------ own messages

    def add_pending(
        self,
        local_id: str,
        text: str,
        *,
        sender: str | None = None,
        peer: str = "",
        whisper: bool = False,
        action: bool = False,
        file: dict[str, Any] | None = None,
    ) -> None:
        """Show the user's message at the bottom as "sending…" until its echo arrives.

        Send it with ``"id": local_id``; ``add_message`` of the echo resolves it.
        ``sender`` defaults to ``self_name``; ``peer`` is the room or recipient.
        """
        if not local_id:
            raise ValueError("local_id must be a non-empty string")
        if local_id in self._pending:
            raise ValueError(f"local id {local_id!r} is already pending")
        flags = _OWN | (_WHISPER if whisper else 0) | (_ACTION if action else 0)
        entry = MessageEntry(
            key=_PENDING_KEY,
            uid=_new_uid(),
            seq=None,
            kind=RowKind.MESSAGE,
            ts=time.time_ns() // 1_000_000,
            sender=self._shared(self.self_name if sender is None else sender),
            text=text,
            peer=self._shared(peer),
            flags=flags,
            state=SendState.SENDING,
            local_id=local_id,
            file=file,
        )
        if file is not None:
            self._file_entries[entry.uid] = entry
        self.publish()
        row = len(self._rows)
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.append(entry)
        self._pending[local_id] = entry
        self.endInsertRows()

    def mark_failed(self, local_id: str) -> bool:
        """Show a pending message as failed ("click to retry"); False if unknown."""
        return self._set_pending_state(local_id, SendState.FAILED)

    def mark_sending(self, local_id: str) -> bool:
        """Back to "sending…" (the window is retrying with the same id)."""
        return self._set_pending_state(local_id, SendState.SENDING)

    def remove_pending(self, local_id: str) -> bool:
        """Drop a pending message (the user gave up on it); False if unknown."""
        entry = self._pending.get(local_id)
        if entry is None:
            return False
        self._drop_pending(entry)
        return True

    # --------------------------------------------------------- notices, markers

    def add_notice(
        self, text: str, kind: NoticeKind = NoticeKind.INFO, ts: str | int | None = None
    ) -> None:
        """Add a system notice after the newest message (before pending ones).

        ``ts``: a protocol ISO timestamp, epoch milliseconds, or None for now.
        Before any message is known the notice stays below every history page
        that arrives, up to the first live message (``_settle_floating``): "You
        joined" is not pinned above the room's older messages.
        """
        if isinstance(ts, int):
            ts_ms = ts
        elif ts is None:
            ts_ms = time.time_ns() // 1_000_000
        else:
            ts_ms = parse_timestamp(ts)
        floating = self._newest is None
        entry = MessageEntry(
            key=_FLOATING_KEY if floating else self._newest,
            uid=_new_uid(),
            seq=None,
            kind=RowKind.NOTICE,
            ts=ts_ms,
            text=text,
            notice=NoticeKind(kind),
        )
        if floating:
            self._floating.append(entry)
        self._insert_one(entry, bisect_right)

    def add_membership(
        self,
        name: str,
        phrase: str,
        *,
        dropped: bool = False,
        ts: int | None = None,
    ) -> None:
        """Someone joined (``phrase`` "joined") or left ("left", "lost their
        connection", …; ``dropped`` for a lost connection) this room.

        Membership news since the last message is one row, updated in place
        ("Alice, Bob and 298 others joined · Carol left"): 300 people coming and
        going are not 600 lines. A join of someone whose connection dropped cancels
        the drop when said in the same row; later, within ``reconnect_grace_ms``
        of the drop, it is a quiet "reconnected" (a host frozen for a few seconds
        no longer fills the room with drop/join pairs for everyone).
        """
        now = time.time_ns() // 1_000_000 if ts is None else ts
        folded = name.casefold()
        entry = self._current_summary()
        summary = entry.summary if entry is not None else MembershipSummary()
        if phrase == JOINED:
            lost_at = self._dropped_at.pop(folded, None)
            if summary.cancel_drop(name):
                phrase = ""
            elif lost_at is not None and now - lost_at <= self.reconnect_grace_ms:
                phrase = RECONNECTED
        elif dropped:
            dropped_at = self._dropped_at
            if len(dropped_at) >= 4096:  # a long-lived room: forget drops past the grace
                limit = now - self.reconnect_grace_ms
                self._dropped_at = dropped_at = {
                    k: t for k, t in dropped_at.items() if t >= limit
                }
            dropped_at[folded] = now
            summary.dropped.add(phrase)
        if phrase:
            summary.add(name, phrase)
        if entry is None:
            if summary:
                self._add_summary(summary, now)
            return
        row = self._index_of(entry)
        if not summary:  # everything in it cancelled out
            if entry in self._floating:
                self._floating.remove(entry)
            self._remove_at(row)
            return
        entry.text = summary.short_text()
        entry.uid = _new_uid()  # new content: caches keyed by uid measure it again
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def _current_summary(self) -> SummaryEntry | None:
        """The summary row still open to news: the newest row but pending ones."""
        end = self._message_end()
        if end:
            last = self._rows[end - 1]
            if type(last) is SummaryEntry:
                return last
        return None

    def _add_summary(self, summary: MembershipSummary, ts_ms: int) -> None:
        floating = self._newest is None
        entry = _new_entry(SummaryEntry)
        MessageEntry.__init__(
            entry,
            key=_FLOATING_KEY if floating else self._newest,  # type: ignore[arg-type]
            uid=_new_uid(),
            seq=None,
            kind=RowKind.NOTICE,
            ts=ts_ms,
            text=summary.short_text(),
            notice=NoticeKind.JOIN,
        )
        entry.summary = summary
        if floating:
            self._floating.append(entry)
        self._insert_one(entry, bisect_right)

    def _settle_floating(self, key: float) -> None:
        """A live message came: the notices said before any message was known take
        their place before it (``key``: the newest seq, or just below the live
        one's), so later messages go below them and older ones above."""
        first = self._index_of(self._floating[0])
        if first:  # never below the row above them (a marker may sit there)
            key = max(key, self._rows[first - 1].key)
        for entry in self._floating:  # they sit after every message: still in order
            entry.key = key
        self._floating.clear()

    def start_over(self, text: str) -> None:
        """The server's history was replaced (its ``seq`` numbers begin again): keep
        every row as it is shown, below them ``text``, and below that whatever comes
        from the new history (the old rows no longer take part in ``seq`` order)."""
        if not self._rows:
            self.add_notice(text)
            return
        self.publish()
        if self._floating:
            self._settle_floating(self._newest or 0)
        self._uid_offset += _UID_OFFSET_STEP  # its seq 1, 2, 3 are new rows to any cache
        shift = max(0, self._newest or 0) + 1
        for entry in self._rows:
            if entry.key != _PENDING_KEY:  # pending rows stay last: they are sent again
                entry.key -= shift
                if entry.seq is not None:
                    entry.seq = None
                    entry.uid = _new_uid()  # a new message may bring this seq back
        self._seqs.clear()
        self._oldest = self._newest = None
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1))
        self.add_notice(text)

    def add_gap_marker(self, after_seq: int | None = None) -> None:
        """Mark "some history was lost" after ``after_seq`` (default: the newest).

        Call it when ``registered`` says ``gap: true``, before the replay arrives.
        """
        anchor = (self._newest or 0) if after_seq is None else after_seq
        entry = MessageEntry(
            key=anchor,
            uid=_new_uid(),
            seq=None,
            kind=RowKind.GAP_MARKER,
            ts=time.time_ns() // 1_000_000,
            text="Some history was lost",
        )
        self._insert_one(entry, bisect_right)

    def set_unread_marker(self, after_seq: int | None = None) -> None:
        """Put the single "new messages" line after ``after_seq`` (default: the newest).

        Typical use: when the conversation loses focus, mark the current end;
        messages arriving later appear below the line. Moves an existing marker.
        """
        anchor = (self._newest or 0) if after_seq is None else after_seq
        old = self._unread_marker
        if old is not None:
            if old.key == anchor:
                return
            self._remove_at(self._index_of(old))
        entry = MessageEntry(
            key=anchor,
            uid=_new_uid(),
            seq=None,
            kind=RowKind.UNREAD_MARKER,
            ts=time.time_ns() // 1_000_000,
            text="New messages",
        )
        self._unread_marker = entry
        self._insert_one(entry, bisect_right)

    def clear_unread_marker(self) -> None:
        """Remove the "new messages" line, if any."""
        old = self._unread_marker
        if old is not None:
            self._unread_marker = None
            self._remove_at(self._index_of(old))

    def clear(self) -> None:
        """Forget every row (e.g. the user left the room)."""
        self.beginResetModel()
        self._unpublished = 0
        self._rows.clear()
        self._seqs.clear()
        self._pending.clear()
        self._unread_marker = None
        self._oldest = self._newest = None
        self._strings.clear()
        self._floating.clear()
        self._dropped_at.clear()
        self.endResetModel()

    # ---------------------------------------------------------------- internals

    def _shared(self, name: str) -> str:
        return self._strings.setdefault(name, name)

    def _entry_from_frame(
        self, frame: Message, own: bool | None, action: bool | None
    ) -> MessageEntry:
        # The client checked what the host sent (``read_server_frame``); a caller that
        # builds a Message by hand gets a ValueError for what cannot be shown.
        if not isinstance(frame, Message):
            raise ValueError(f"not a message: {type(frame).__name__}")
        seq, sender, text, to = frame.seq, frame.sender, frame.text, frame.to
        if type(seq) is not int or seq < 0:
            raise ValueError(f"bad seq {seq!r}")
        if not isinstance(sender, str) or not isinstance(text, str):
            raise ValueError("from/text must be strings")
        whisper = to is not None
        peer = to if whisper else frame.room
        if not isinstance(peer, str):
            peer = ""
        if own is None:
            own = bool(self.self_name) and sender == self.self_name
        flags = (_OWN if own else 0) | (_WHISPER if whisper else 0)
        if action is None:
            action = text.startswith(ACTION_PREFIX)
        if action:
            flags |= _ACTION
            text = text.removeprefix(ACTION_PREFIX)
        if frame.deleted is not None or frame.edited is not None:
            flags, text = self._changed(seq, sender, text, flags, frame.edited, frame.deleted)
        strings = self._strings
        # The hot path of a backlog: skip __init__'s keyword handling (~4x faster).
        entry = _new_entry(MessageEntry)
        entry.key = entry.seq = seq
        entry.uid = seq + self._uid_offset if self._uid_offset else seq  # one int, not two
        entry.kind = RowKind.MESSAGE
        ts = frame.ts
        try:  # parse_timestamp's common case, inline (a backlog is all this): -10 %
            entry.ts = round(_from_iso(ts).timestamp() * 1000) if ts[-1] == "Z" else None
        except (TypeError, ValueError, IndexError, KeyError):
            entry.ts = None
        if entry.ts is None:
            entry.ts = parse_timestamp(ts)
        entry.sender = strings.setdefault(sender, sender)
        entry.text = text
        entry.peer = strings.setdefault(peer, peer)
        entry.flags = flags
        entry.state = SendState.SENT
        entry.notice = None
        entry.local_id = None
        entry.file = frame.file if type(frame.file) is dict else None
        if entry.file is not None:
            self._file_entries[entry.uid] = entry
        if frame.game is not None:  # how a chess game ended (features §3): a notice
            entry.kind = RowKind.NOTICE
            entry.notice = NoticeKind.INFO
        return entry

    def _pending_for(self, frame: Message) -> MessageEntry | None:
        local_id = frame.id
        if local_id is not None and self._pending:
            return self._pending.get(local_id)
        return None

    def _note_seq(self, low: int, high: int) -> None:
        if self._oldest is None or low < self._oldest:
            self._oldest = low
        if self._newest is None or high > self._newest:
            self._newest = high

    def _message_end(self) -> int:
        """Index after the last non-pending row (pending rows are always last)."""
        return len(self._rows) - len(self._pending)

    def _position(self, key: float, side: Any) -> int:
        """Where a row with ``key`` goes among non-pending rows (``side``: bisect fn)."""
        rows = self._rows
        end = self._message_end()
        if end == 0 or rows[end - 1].key < key:
            return end  # the common case: newest so far
        return side(rows, key, 0, end, key=_sort_key)

    def _index_of(self, entry: MessageEntry) -> int:
        rows = self._rows
        i = bisect_left(rows, entry.key, key=_sort_key)
        while rows[i] is not entry:  # rows sharing a key: a handful at most
            i += 1
        return i

    def _insert_block(self, pos: int, block: list[MessageEntry]) -> None:
        if self._unpublished:
            self.publish()  # positions count every stored row; Qt must know them first
        self.beginInsertRows(QModelIndex(), pos, pos + len(block) - 1)
        if pos == len(self._rows):
            self._rows.extend(block)
        else:
            self._rows[pos:pos] = block
        self.endInsertRows()

    def _insert_one(self, entry: MessageEntry, side: Any) -> None:
        self._insert_block(self._position(entry.key, side), [entry])

    def _insert_sorted(self, fresh: list[MessageEntry]) -> None:
        rows = self._rows
        end = self._message_end()
        first = fresh[0].key
        if end == 0 or rows[end - 1].key < first:
            self._insert_block(end, fresh)  # backlog / replay at the bottom
            return
        last = fresh[-1].key
        lo = bisect_left(rows, first, 0, end, key=_sort_key)
        if lo == bisect_left(rows, last, lo, end, key=_sort_key):
            self._insert_block(lo, fresh)  # a history page at the top, or one gap
            return
        # Interleaved with existing rows: one block per gap, inserted back to front
        # so the positions computed up front stay valid.
        blocks: list[tuple[int, list[MessageEntry]]] = []
        for entry in fresh:
            pos = bisect_left(rows, entry.key, lo, end, key=_sort_key)
            if blocks and blocks[-1][0] == pos:
                blocks[-1][1].append(entry)
            else:
                blocks.append((pos, [entry]))
            lo = pos
        for pos, block in reversed(blocks):
            self._insert_block(pos, block)

    def _remove_at(self, i: int) -> None:
        if self._unpublished:
            self.publish()
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._rows[i]
        self.endRemoveRows()

    def _drop_pending(self, entry: MessageEntry) -> None:
        i = self._index_of(entry)
        self._remove_at(i)
        del self._pending[entry.local_id]  # type: ignore[arg-type]

    def _replace_pending(self, pend: MessageEntry, entry: MessageEntry) -> None:
        rows = self._rows
        done = self._message_end()  # rows[done:] are pending, `pend` among them
        old = self._index_of(pend)
        if done == 0 or rows[done - 1].key < entry.key:
            target = done
        else:
            target = bisect_left(rows, entry.key, 0, done, key=_sort_key)
        del self._pending[pend.local_id]  # type: ignore[arg-type]
        if target == old:  # already in place: the usual case
            rows[old] = entry
            index = self.index(old)
            self.dataChanged.emit(index, index)
        else:  # others arrived meanwhile: move up to its seq
            self.beginMoveRows(QModelIndex(), old, old, QModelIndex(), target)
            del rows[old]
            rows.insert(target, entry)
            self.endMoveRows()
            index = self.index(target)
            self.dataChanged.emit(index, index)

    def refresh_row(self, row: int) -> None:
        """Say that what ``row`` shows changed outside the model (a file's picture was
        decoded, its transfer started or ended): the view measures it again."""
        if 0 <= row < len(self._rows):
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def file_rows(self) -> list[tuple[int, MessageEntry]]:
        """(row, entry) of every row that carries a file, in no particular order: a
        walk over those rows only, not over every message."""
        found = []
        for uid, entry in list(self._file_entries.items()):
            row = self.row_of_entry(entry)
            if row < 0:
                del self._file_entries[uid]
            else:
                found.append((row, entry))
        return found

    def row_of_entry(self, entry: MessageEntry) -> int:
        """Where ``entry`` is now; -1 if it is no longer a row."""
        rows = self._rows
        i = bisect_left(rows, entry.key, key=_sort_key)
        while i < len(rows) and rows[i].key == entry.key:
            if rows[i] is entry:
                return i
            i += 1
        return -1

    def _set_pending_state(self, local_id: str, state: SendState) -> bool:
        entry = self._pending.get(local_id)
        if entry is None:
            return False
        if entry.state != state:
            entry.state = state
            entry.uid = _new_uid()  # its size changes: new identity for caches
            index = self.index(self._index_of(entry))
            self.dataChanged.emit(index, index)
        return True
