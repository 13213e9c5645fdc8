"""The start dialog: your name, then Host a room or Join one.

The dialog only collects a choice and shows errors; the app controller does the
connecting and calls ``show_error`` when it fails, so the person can fix the
name, address or password and try again without starting over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QModelIndex, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from qtchat import DEFAULT_PORT
from qtchat.address import JoinTarget, parse_join_target
from qtchat.names import InvalidName, parse_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostChoice:
    name: str
    room_name: str
    port: int
    password: str | None
    tls: bool
    # The host's settings from the dialog's Advanced part (None: the server's default).
    edit_window: float | None = None  # minutes authors may edit or delete (0: never)


# The edit window the Advanced part offers (minutes; ServerConfig.edit_window's default).
DEFAULT_EDIT_WINDOW = 15
MAX_EDIT_WINDOW = 7 * 24 * 60


@dataclass(frozen=True, slots=True)
class JoinChoice:
    name: str
    target: JoinTarget
    password: str | None


def settings() -> QSettings:
    return QSettings("qtchat", "qtchat")


def _plain_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # peer-supplied text is never HTML
    label.setWordWrap(True)
    return label


def fingerprint_lines(fingerprint: str) -> str:
    """A SHA-256 fingerprint as two lines of 16 byte pairs, to compare by eye.

    As one line it has no break point and is wider than the dialog; the halves line
    up under each other so two fingerprints can be compared column by column.
    """
    pairs = fingerprint.split(":")
    return "\n".join(":".join(pairs[i:i + 16]) for i in range(0, len(pairs), 16))


class StartDialog(QDialog):
    """Choose a name and Host or Join.

    Signals:
        hostRequested(HostChoice): the person pressed Host with valid input.
        joinRequested(JoinChoice): the person pressed Join with valid input.
        trustRequested(str address, str fingerprint): after a changed certificate, the
            person checked the new fingerprint with the host and chose to trust it.
    """

    hostRequested = Signal(object)
    joinRequested = Signal(object)
    trustRequested = Signal(str, str)

    def __init__(self, discovered_model=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("qtchat")
        self.setMinimumWidth(460)
        stored = settings()

        title = QLabel("Chat with people on your network")
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        title.setFont(font)

        self.name_edit = QLineEdit(str(stored.value("name", "") or ""))
        self.name_edit.setPlaceholderText("Your name, e.g. Alice")
        self.name_edit.setMaxLength(64)
        self.name_hint = _plain_label()
        self.name_edit.textChanged.connect(self._check_name)

        # Host tab
        self.room_edit = QLineEdit(str(stored.value("room_name", "") or ""))
        self.room_edit.setPlaceholderText("e.g. Team room")
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(int(stored.value("port", DEFAULT_PORT) or DEFAULT_PORT))
        self.host_password = QLineEdit()
        self.host_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.host_password.setPlaceholderText("optional")
        self.tls_check = QCheckBox("Encrypt with TLS")
        self.tls_check.setChecked(stored.value("tls", "false") in (True, "true"))
        self.host_button = QPushButton("Host a room")
        self.host_button.setDefault(True)
        self.host_button.clicked.connect(self._host)
        host_tab = QWidget()
        host_form = QFormLayout(host_tab)
        host_form.addRow("Room name", self.room_edit)
        host_form.addRow("Port", self.port_spin)
        host_form.addRow("Password", self.host_password)
        host_form.addRow("", self.tls_check)
        host_form.addRow(self._build_advanced(stored))
        host_form.addRow("", self.host_button)
        host_hint = _plain_label(
            "People on your network see the room in their Join tab. Once you are hosting, "
            "the window's Copy invite button gives a link for anyone else who can reach "
            "this computer.")
        host_hint.setStyleSheet("color: palette(mid);")
        host_form.addRow(host_hint)

        # Join tab
        self.rooms_view = QListView()
        self.rooms_view.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        self.rooms_view.setMinimumHeight(110)
        self.rooms_empty = _plain_label("Looking for rooms on your network…")
        if discovered_model is not None:
            self.rooms_view.setModel(discovered_model)
            self.rooms_view.clicked.connect(self._pick_discovered)
            self.rooms_view.doubleClicked.connect(self._join_discovered)
            discovered_model.rowsInserted.connect(self._update_rooms_hint)
            discovered_model.rowsRemoved.connect(self._update_rooms_hint)
            discovered_model.modelReset.connect(self._update_rooms_hint)
            QTimer.singleShot(4000, self, self._discovery_settled)
        else:
            self.rooms_empty.setText("Discovery is off; type the host's address below.")
        self.address_edit = QLineEdit(str(stored.value("address", "") or ""))
        self.address_edit.setPlaceholderText("host:port or a qtchat:// invite link")
        self.join_password = QLineEdit()
        self.join_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.join_password.setPlaceholderText("if the room has one")
        self.join_button = QPushButton("Join")
        self.join_button.clicked.connect(self._join)
        join_tab = QWidget()
        join_layout = QVBoxLayout(join_tab)
        join_layout.addWidget(QLabel("Rooms on your network"))
        join_layout.addWidget(self.rooms_view)
        join_layout.addWidget(self.rooms_empty)
        join_form = QFormLayout()
        join_form.addRow("Address", self.address_edit)
        join_form.addRow("Password", self.join_password)
        join_layout.addLayout(join_form)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.join_button)
        join_layout.addLayout(buttons)

        self.tabs = QTabWidget()
        self.tabs.addTab(host_tab, "Host a room")
        self.tabs.addTab(join_tab, "Join")
        self.tabs.setCurrentIndex(int(stored.value("tab", 0) or 0))
        self.tabs.currentChanged.connect(self._tab_changed)

        self.busy = False
        self.error_label = _plain_label()
        self.error_label.setStyleSheet("color: #b3261e;")
        # Room for two lines kept from the start: a message appearing must not move the
        # fields under the pointer.
        self.error_label.setMinimumHeight(2 * self.error_label.fontMetrics().lineSpacing() + 4)
        self.error_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._build_certificate_box()

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        name_row = QFormLayout()
        name_row.addRow("Your name", self.name_edit)
        layout.addLayout(name_row)
        layout.addWidget(self.name_hint)
        layout.addWidget(self.tabs)
        layout.addWidget(self.error_label)
        layout.addWidget(self.cert_box)
        self._check_name(self.name_edit.text())
        self._update_rooms_hint()
        self._tab_changed(self.tabs.currentIndex())

    def _build_advanced(self, stored: QSettings) -> QWidget:
        """The host's less common settings, folded away under "Advanced settings": what
        most people never change should not stand between them and the Host button."""
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced settings")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.edit_window_spin = QSpinBox()
        self.edit_window_spin.setRange(0, MAX_EDIT_WINDOW)
        self.edit_window_spin.setSuffix(" minutes")
        # 0 is a choice of its own, said in words: nobody may change what they sent.
        self.edit_window_spin.setSpecialValueText("Never")
        try:
            minutes = int(float(stored.value("edit_window", DEFAULT_EDIT_WINDOW)))
        except (TypeError, ValueError):
            minutes = DEFAULT_EDIT_WINDOW
        self.edit_window_spin.setValue(min(max(minutes, 0), MAX_EDIT_WINDOW))
        self.edit_window_spin.setToolTip(
            "How long after sending a message its author may still edit or delete it. "
            "Never: messages stay as sent (ops may still delete room messages).")
        self.advanced_box = QWidget()
        form = QFormLayout(self.advanced_box)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Edit or delete for", self.edit_window_spin)
        self.advanced_box.setVisible(False)
        self.advanced_toggle.toggled.connect(self._show_advanced)
        part = QWidget()
        column = QVBoxLayout(part)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.advanced_toggle)
        column.addWidget(self.advanced_box)
        return part

    @Slot(bool)
    def _show_advanced(self, shown: bool) -> None:
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown
                                          else Qt.ArrowType.RightArrow)
        self.advanced_box.setVisible(shown)
        self._fit()

    def _build_certificate_box(self) -> None:
        """The changed-certificate warning: both fingerprints whole, and a way on."""
        self.cert_box = QFrame()
        self.cert_box.setFrameShape(QFrame.Shape.StyledPanel)
        self.cert_box.setStyleSheet("QFrame { background: #fdecea; } QLabel { color: #5f1410; }")
        self.cert_text = _plain_label()
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.cert_fingerprints = _plain_label()
        self.cert_fingerprints.setWordWrap(False)
        self.cert_fingerprints.setFont(mono)
        self.cert_fingerprints.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        self.trust_button = QPushButton("I compared it with the host: trust the new certificate")
        self.trust_button.clicked.connect(self._trust_presented)
        box = QVBoxLayout(self.cert_box)
        box.addWidget(self.cert_text)
        box.addWidget(self.cert_fingerprints)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.trust_button)
        box.addLayout(row)
        self.cert_box.hide()
        self._cert_address = ""
        self._cert_presented = ""

    # --- input checks -----------------------------------------------------------------

    def _name_error(self, text: str) -> str | None:
        if not text.strip():
            return "Type the name others will see."
        try:
            parse_name(text.strip())
        except InvalidName as exc:
            return str(exc)
        return None

    @Slot(str)
    def _check_name(self, text: str) -> None:
        problem = self._name_error(text)
        if problem is None:
            self.name_hint.setText("✓ Others will see you as " + parse_name(text.strip()).display)
            self.name_hint.setStyleSheet("color: #1b6e3a;")
        else:
            self.name_hint.setText(problem)
            self.name_hint.setStyleSheet("color: #8a5300;")
        self._update_buttons()

    def _update_buttons(self) -> None:
        ok = not self.busy and self._name_error(self.name_edit.text()) is None
        self.host_button.setEnabled(ok)
        self.join_button.setEnabled(ok)

    @Slot()
    def _update_rooms_hint(self) -> None:
        model = self.rooms_view.model()
        if model is None:
            return
        self.rooms_empty.setVisible(model.rowCount() == 0)

    @Slot()
    def _discovery_settled(self) -> None:
        self.rooms_empty.setText("No rooms found on your network yet. They appear here as "
                                 "soon as someone hosts one; or type the host's address below.")

    @Slot(int)
    def _tab_changed(self, index: int) -> None:
        (self.host_button if index == 0 else self.join_button).setDefault(True)

    # --- actions ----------------------------------------------------------------------

    def show_error(self, message: str, *, focus: QWidget | None = None) -> None:
        """Show why the last attempt failed (plain text) and re-enable the buttons.

        It replaces whatever was said before, the certificate warning included."""
        self.set_busy(False)
        self.cert_box.hide()
        self.error_label.setText(message)
        if focus is not None:
            focus.setFocus()
            if isinstance(focus, QLineEdit):
                focus.selectAll()
        self._fit()

    def show_certificate_warning(self, address: str, expected: str, presented: str) -> None:
        """The host presented another certificate than the one pinned: say so in full.

        Both fingerprints are shown whole (two lines each, selectable) so the person can
        read them to the host; trusting the new one is a deliberate button press."""
        self.show_error("Warning: the host's certificate has changed, so qtchat did not "
                        "connect.")
        self.cert_text.setText(
            f"The host at {address} presented a different certificate than the one this "
            f"computer saw before. Someone may be impersonating the host — or the host "
            f"reinstalled qtchat. Ask the host (in person or by phone) which fingerprint "
            f"their window shows, and compare.")
        self.cert_fingerprints.setText(
            f"Expected:\n{fingerprint_lines(expected)}\n\n"
            f"Presented:\n{fingerprint_lines(presented)}")
        self._cert_address = address
        self._cert_presented = presented
        self.cert_box.show()
        self._fit()

    def _fit(self) -> None:
        """Grow the dialog to show the whole message (a wrapped label does not ask)."""
        self.layout().activate()
        hint = self.sizeHint()
        if hint.height() > self.height() or hint.width() > self.width():
            self.resize(max(hint.width(), self.width()), max(hint.height(), self.height()))

    @Slot()
    def _trust_presented(self) -> None:
        if self.busy or not self._cert_presented:
            return
        self.cert_box.hide()
        self.trustRequested.emit(self._cert_address, self._cert_presented)

    def set_busy(self, busy: bool, message: str = "") -> None:
        """While an attempt runs, Host and Join stay disabled (one attempt at a time)."""
        self.busy = busy
        if busy:
            self.cert_box.hide()
            self.error_label.setStyleSheet("color: palette(text);")
            self.error_label.setText(message)
        else:
            self.error_label.setStyleSheet("color: #b3261e;")
        self._update_buttons()

    def _remember(self) -> None:
        stored = settings()
        stored.setValue("name", self.name_edit.text().strip())
        stored.setValue("room_name", self.room_edit.text().strip())
        stored.setValue("port", self.port_spin.value())
        stored.setValue("tls", self.tls_check.isChecked())
        stored.setValue("edit_window", self.edit_window_spin.value())
        stored.setValue("address", self.address_edit.text().strip())
        stored.setValue("tab", self.tabs.currentIndex())

    def _checked_name(self) -> str | None:
        """The name, if Host or Join may go ahead now; else None (having said why)."""
        if self.busy:
            return None
        name = self.name_edit.text().strip()
        problem = self._name_error(name)
        if problem:
            self.show_error(problem, focus=self.name_edit)
            return None
        return name

    @Slot()
    def _host(self) -> None:
        name = self._checked_name()
        if name is None:
            return
        room = self.room_edit.text().strip() or f"{parse_name(name).display}'s room"
        self._remember()
        self.set_busy(True, f"Starting {room}…")
        self.hostRequested.emit(HostChoice(
            name=name, room_name=room, port=self.port_spin.value(),
            password=self.host_password.text() or None, tls=self.tls_check.isChecked(),
            edit_window=float(self.edit_window_spin.value()),
        ))

    @Slot()
    def _join(self) -> None:
        name = self._checked_name()
        if name is None:
            return
        try:
            target = parse_join_target(self.address_edit.text())
        except ValueError as exc:
            self.show_error(str(exc), focus=self.address_edit)
            return
        self._remember()
        self.set_busy(True, f"Connecting to {target.hostport}…")
        self.joinRequested.emit(JoinChoice(name=name, target=target,
                                           password=self.join_password.text() or None))

    def _discovered_room(self, index: QModelIndex):
        from qtchat.discovery import RoomRole

        return index.data(RoomRole.Room)

    @Slot(QModelIndex)
    def _pick_discovered(self, index: QModelIndex) -> None:
        room = self._discovered_room(index)
        if room is None:
            return
        target = room.join_target()
        self.address_edit.setText(target.invite if target.tls else target.hostport)
        if room.password:
            self.join_password.setPlaceholderText("this room needs a password")
            self.join_password.setFocus()
        else:
            self.join_password.setPlaceholderText("if the room has one")

    @Slot(QModelIndex)
    def _join_discovered(self, index: QModelIndex) -> None:
        if self.busy:
            return
        self._pick_discovered(index)
        room = self._discovered_room(index)
        if room is not None and room.password and not self.join_password.text():
            self.show_error(f"{room.name} needs a password: type it, then press Join.",
                            focus=self.join_password)
            return
        self._join()
