"""The open conversations: ``RoomModel`` and the list on the left that shows it.

Rooms come first (the lobby at the top), then private conversations, each with its
unread count. ``ConversationList`` is the panel: a "Conversations" caption, the
list, and a "Join a room…" button.

Signals of ``ConversationList``:
    conversationClicked(str name, int kind): a row was clicked (``ConversationKind``).
    joinRequested(): "Join a room…" was clicked.
"""

from __future__ import annotations

from bisect import bisect_left
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractListModel, QByteArray, QModelIndex, QObject, Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QListView, QPushButton, QVBoxLayout, QWidget

from qtchat.gui.models import (
    _LIST_ITEM_FLAGS,
    _USER_ROLE,
    ConversationKind,
    _ParentIndex,
    _role_names,
)

__all__ = ["ConversationList", "RoomModel", "RoomRoles"]


class RoomRoles(IntEnum):
    """Item data roles of ``RoomModel``; DisplayRole is "name" or "name (3)"."""

    Name = _USER_ROLE + 1  #: str
    Kind = _USER_ROLE + 2  #: int ``ConversationKind``
    Unread = _USER_ROLE + 3  #: int


class _Conversation:
    __slots__ = ("kind", "name", "unread")

    def __init__(self, kind: ConversationKind, name: str) -> None:
        self.kind = kind
        self.name = name
        self.unread = 0


def _conversation_key(kind: ConversationKind, name: str) -> tuple[int, int, str, str]:
    # Rooms before private conversations, the lobby first, then case-insensitively.
    return (int(kind), int(name != "lobby"), name.casefold(), name)


class RoomModel(QAbstractListModel):
    """Open rooms and private conversations with unread counts.

    A row is identified by (name, kind): a room "bob" and the whispers with bob
    are separate rows. DisplayRole is "name" or "name (unread)"; FontRole is bold
    while something is unread.
    """

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._rows: list[_Conversation] = []
        self._keys: list[tuple[int, int, str, str]] = []

    def rowCount(self, parent: _ParentIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _ParentIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        conv = self._rows[index.row()]
        role = int(role)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return f"{conv.name} ({conv.unread})" if conv.unread else conv.name
        if role == RoomRoles.Name:
            return conv.name
        if role == RoomRoles.Kind:
            return int(conv.kind)
        if role == RoomRoles.Unread:
            return conv.unread
        if role == Qt.ItemDataRole.FontRole and conv.unread:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            return "Room" if conv.kind == ConversationKind.ROOM else "Private conversation"
        return None

    def flags(self, index: _ParentIndex) -> Qt.ItemFlag:
        return _LIST_ITEM_FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    def roleNames(self) -> dict[int, QByteArray]:
        return _role_names(RoomRoles)

    # ------------------------------------------------------------------ API

    def add(self, name: str, kind: ConversationKind = ConversationKind.ROOM) -> int:
        """Open a conversation (idempotent); returns its row."""
        key = _conversation_key(kind, name)
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return i
        self.beginInsertRows(QModelIndex(), i, i)
        self._keys.insert(i, key)
        self._rows.insert(i, _Conversation(ConversationKind(kind), name))
        self.endInsertRows()
        return i

    def remove(self, name: str, kind: ConversationKind = ConversationKind.ROOM) -> bool:
        """Close a conversation; False if it was not open."""
        i = self.row_of(name, kind)
        if i < 0:
            return False
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._keys[i]
        del self._rows[i]
        self.endRemoveRows()
        return True

    def row_of(self, name: str, kind: ConversationKind = ConversationKind.ROOM) -> int:
        """Row of the conversation, -1 if not open."""
        key = _conversation_key(kind, name)
        i = bisect_left(self._keys, key)
        return i if i < len(self._keys) and self._keys[i] == key else -1

    def increment_unread(
        self, name: str, kind: ConversationKind = ConversationKind.ROOM, by: int = 1
    ) -> int:
        """Count ``by`` more unread messages (opening the conversation if needed,
        e.g. the first whisper from someone); returns the new count."""
        i = self.add(name, kind)
        conv = self._rows[i]
        conv.unread += by
        index = self.index(i)
        self.dataChanged.emit(index, index)
        return conv.unread

    def clear_unread(self, name: str, kind: ConversationKind = ConversationKind.ROOM) -> None:
        """Zero the unread count (the user looked at the conversation)."""
        i = self.row_of(name, kind)
        if i >= 0 and self._rows[i].unread:
            self._rows[i].unread = 0
            index = self.index(i)
            self.dataChanged.emit(index, index)

    def unread(self, name: str, kind: ConversationKind = ConversationKind.ROOM) -> int:
        i = self.row_of(name, kind)
        return self._rows[i].unread if i >= 0 else 0

    def total_unread(self) -> int:
        return sum(conv.unread for conv in self._rows)

    def conversations(self) -> list[tuple[str, ConversationKind]]:
        """(name, kind) of every open conversation, in display order."""
        return [(conv.name, conv.kind) for conv in self._rows]


# ------------------------------------------------------------------ the panel


class ConversationList(QWidget):
    """The left-hand panel: the open conversations, and a button to join a room.

    Signals:
        conversationClicked(str name, int kind): a conversation's row was clicked.
        joinRequested(): "Join a room…" was clicked.
    """

    conversationClicked = Signal(str, int)
    joinRequested = Signal()

    def __init__(self, model: RoomModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = QListView()
        self.view.setModel(model)
        self.view.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        self.view.clicked.connect(self._clicked)
        self.join_button = QPushButton("Join a room…")
        self.join_button.clicked.connect(self.joinRequested)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Conversations"))
        layout.addWidget(self.view)
        layout.addWidget(self.join_button)

    def select(self, name: str, kind: ConversationKind) -> None:
        """Mark the conversation in front."""
        model = self.view.model()
        assert isinstance(model, RoomModel)
        self.view.setCurrentIndex(model.index(model.row_of(name, kind)))

    @Slot(QModelIndex)
    def _clicked(self, index: QModelIndex) -> None:
        self.conversationClicked.emit(index.data(RoomRoles.Name), index.data(RoomRoles.Kind))
