"""Who is in a room: ``MemberModel`` and the panel on the right that lists it.

Each open room has its own ``MemberModel`` (kept in its ``Conversation``); the one
``MembersPanel`` shows the model of the conversation in front, and hides itself for
a private conversation, which has nobody to list (the messages get the room).

Signals of ``MembersPanel``:
    memberActivated(str name): a member was double-clicked, or "Whisper" chosen in
        their context menu (the window opens a private conversation with them).
    challengeRequested(str name): "Challenge to chess…" in a member's context menu.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QObject,
    QPoint,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QListView, QMenu, QVBoxLayout, QWidget

from qtchat.gui.models import _LIST_ITEM_FLAGS, _USER_ROLE, _ParentIndex, _role_names, sender_color

__all__ = ["MemberModel", "MemberRoles", "MembersPanel"]


class MemberRoles(IntEnum):
    """Item data roles of ``MemberModel``; DisplayRole is "name" or "name (host)"."""

    Name = _USER_ROLE + 1  #: str
    IsHost = _USER_ROLE + 2  #: bool
    NameColor = _USER_ROLE + 3  #: QColor, the same colour the messages use
    Status = _USER_ROLE + 4  #: str presence state: "online", "away" or "busy"
    StatusText = _USER_ROLE + 5  #: str the person's status line (plain text), or ""


# Presence (features §5): a dot before the name, the state and line in its tooltip.
_STATUS_COLORS = {"away": QColor(230, 160, 20), "busy": QColor(210, 50, 50)}
_STATUS_WORDS = {"online": "Online", "away": "Away", "busy": "Busy"}
_status_icons: dict[str, QIcon] = {}


def status_icon(state: str) -> QIcon | None:
    """A filled dot in the state's colour (None for plainly online)."""
    color = _STATUS_COLORS.get(state)
    if color is None:
        return None
    icon = _status_icons.get(state)
    if icon is None:
        pixmap = QPixmap(12, 12)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawEllipse(1, 1, 10, 10)
        painter.end()
        icon = _status_icons[state] = QIcon(pixmap)
    return icon


def _name_key(name: str) -> tuple[str, str]:
    return (name.casefold(), name)


class MemberModel(QAbstractListModel):
    """The members of one room, sorted case-insensitively; delta updates.

    Names are compared exactly as the server shows them (the server already made
    them unique on their folded form); sorting uses ``str.casefold`` with the
    name itself as tie-break. Lookups are O(log n) bisects over the sort keys.
    """

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._keys: list[tuple[str, str]] = []  # sorted (casefold, name)
        self._hosts: set[str] = set()
        self._roles: dict[str, str] = {}  # name -> "owner"/"op" (moderation)
        self._status: dict[str, tuple[str, str]] = {}  # name -> (state, line), not online

    def rowCount(self, parent: _ParentIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._keys)

    def data(self, index: _ParentIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._keys):
            return None
        name = self._keys[index.row()][1]
        role = int(role)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            host = name in self._hosts
            role = self._roles.get(name, "")
            # The person hosting from the app is its owner: "(host)" says enough.
            marks = [m for m in ("host" if host else "",
                                 "" if host and role == "owner" else role) if m]
            return f"{name} ({', '.join(marks)})" if marks else name
        if role == MemberRoles.Name or role == Qt.ItemDataRole.EditRole:
            return name
        if role == MemberRoles.IsHost:
            return name in self._hosts
        if role in (MemberRoles.NameColor, Qt.ItemDataRole.ForegroundRole):
            return sender_color(name)
        state, line = self._status.get(name, ("online", ""))
        if role == Qt.ItemDataRole.ToolTipRole:
            parts = ["Hosting this server"] if name in self._hosts else []
            if state != "online" or line:
                # The line is peer text: never the first line, which Qt reads to decide
                # whether a tooltip is HTML (ours never looks like it).
                parts.append(_STATUS_WORDS.get(state, state))
                if line:
                    parts.append(line)
            return "\n".join(parts) or None
        if role == Qt.ItemDataRole.DecorationRole:
            return status_icon(state)
        if role == MemberRoles.Status:
            return state
        if role == MemberRoles.StatusText:
            return line
        return None

    def flags(self, index: _ParentIndex) -> Qt.ItemFlag:
        return _LIST_ITEM_FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    def roleNames(self) -> dict[int, QByteArray]:
        return _role_names(MemberRoles)

    # ------------------------------------------------------------------ API

    def set_members(self, names: Iterable[str], hosts: Iterable[str] = ()) -> None:
        """Replace everyone (``registered.users``, ``joined.users``): one reset."""
        self.beginResetModel()
        self._keys = sorted({_name_key(n) for n in names})
        self._hosts = set(hosts) & {name for _, name in self._keys}
        self._roles = {}
        self.endResetModel()

    def add_member(self, name: str, host: bool = False) -> bool:
        """Insert ``name`` in sorted position; False if present (host flag updated)."""
        key = _name_key(name)
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            if host:
                self.set_host(name)
            return False
        self.beginInsertRows(QModelIndex(), i, i)
        self._keys.insert(i, key)
        if host:
            self._hosts.add(name)
        self.endInsertRows()
        return True

    def remove_member(self, name: str) -> bool:
        """Remove ``name``; False if absent."""
        i = self.row_of(name)
        if i < 0:
            return False
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._keys[i]
        self._hosts.discard(name)
        self._roles.pop(name, None)
        self.endRemoveRows()
        return True

    def set_host(self, name: str, host: bool = True) -> bool:
        """Set or clear the host flag of a present member; False if absent."""
        i = self.row_of(name)
        if i < 0:
            return False
        if (name in self._hosts) != host:
            if host:
                self._hosts.add(name)
            else:
                self._hosts.discard(name)
            index = self.index(i)
            self.dataChanged.emit(index, index)
        return True

    def set_role(self, name: str, role: str) -> None:
        """Show ``name``'s moderation role ("owner", "op"; "member" shows none)."""
        i = self.row_of(name)
        if i < 0 or self._roles.get(name, "member") == role:
            return
        if role == "member":
            del self._roles[name]
        else:
            self._roles[name] = role
        index = self.index(i)
        self.dataChanged.emit(index, index)

    def set_roles(self, roles: dict[str, str]) -> None:
        """The roles of ``joined``/``registered`` ({name: role} of those not members)."""
        for name in list(self._roles):
            if name not in roles:
                self.set_role(name, "member")
        for name, role in roles.items():
            self.set_role(name, role)

    def role_of(self, name: str) -> str:
        return self._roles.get(name, "member")

    def row_of(self, name: str) -> int:
        """Row of ``name``, -1 if absent (O(log n))."""
        key = _name_key(name)
        i = bisect_left(self._keys, key)
        return i if i < len(self._keys) and self._keys[i] == key else -1

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.row_of(name) >= 0

    def names(self) -> list[str]:
        """Members in display order."""
        return [name for _, name in self._keys]

    def is_host(self, name: str) -> bool:
        return name in self._hosts

    def set_status(self, name: str, state: str, line: str = "") -> None:
        """Someone's presence (kept for names not listed yet: they may join)."""
        if state == "online" and not line:
            changed = self._status.pop(name, None) is not None
        else:
            changed = self._status.get(name) != (state, line)
            self._status[name] = (state, line)
        row = self.row_of(name)
        if changed and row >= 0:
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def status(self, name: str) -> tuple[str, str]:
        return self._status.get(name, ("online", ""))



# ------------------------------------------------------------------ the panel


class MembersPanel(QWidget):
    """The right-hand panel: "In lobby · 2 people" over the list of names.

    Signals:
        memberActivated(str name): a member's name was double-clicked.
    """

    memberActivated = Signal(str)
    challengeRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("Members")
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # room names come from peers
        self.view = QListView()
        self.view.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        # One line each: without this every join or leave asks the model for every
        # row's size (200 people arriving at once: 40,000 calls, the window stalled).
        self.view.setUniformItemSizes(True)
        self.view.doubleClicked.connect(self._double_clicked)
        # Whether "Challenge to chess…" applies to a name (the chess module sets it: not
        # yourself, and only on a host that plays chess).
        self.can_challenge: Callable[[str], bool] = lambda _name: False
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.view)

    def show_room(self, members: MemberModel) -> None:
        """List a room's ``members`` and show the panel (the window sets the caption)."""
        self.view.setModel(members)
        self.show()

    def show_private(self, title: str) -> None:
        """A private conversation with ``title``: nobody to list; the panel hides."""
        self.view.setModel(None)
        self.label.setText(f"Private with {title}")
        self.hide()

    @Slot(QModelIndex)
    def _double_clicked(self, index: QModelIndex) -> None:
        name = index.data(MemberRoles.Name)
        if isinstance(name, str):
            self.memberActivated.emit(name)

    def menu_for(self, name: str) -> QMenu:
        """A member's context menu: Whisper, Challenge to chess…."""
        menu = QMenu(self)
        menu.addAction("Whisper", lambda: self.memberActivated.emit(name))
        challenge = menu.addAction("Challenge to chess…",
                                   lambda: self.challengeRequested.emit(name))
        challenge.setEnabled(self.can_challenge(name))
        return menu

    @Slot(QPoint)
    def _context_menu(self, pos: QPoint) -> None:
        name = self.view.indexAt(pos).data(MemberRoles.Name)
        if isinstance(name, str):
            menu = self.menu_for(name)
            menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            menu.popup(self.view.viewport().mapToGlobal(pos))
