"""The desktop app: start dialog → (host a room and join it | join one) → chat window.

``run_gui`` owns the QApplication and the one qasync loop (discovery and
announcing are asyncio code on Qt's loop). ``AppController`` turns the start
dialog's choices into a ``qtchat serve`` child (when hosting) and a ``ChatClient``,
reports failures back into the dialog in words a person understands, and opens
the ``ChatWindow`` once registered. ``--smoke`` drives the same path
unattended: it proves a build really works.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import secrets
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDir, QLockFile, QObject, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtNetwork import QHostAddress, QTcpServer
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QPushButton, QWidget

from qtchat import DEFAULT_PORT
from qtchat.address import format_hostport, format_invite, local_addresses, parse_join_target
from qtchat.client.chat_client import CLIENT_FEATURES, ChatClient, ConnectError, Endpoint
from qtchat.gui.hosted import HostedServer
from qtchat.gui.start_dialog import HostChoice, JoinChoice, StartDialog, settings
from qtchat.gui.theme import apply_theme
from qtchat.names import parse_name
from qtchat.paths import default_data_dir, default_host_dir
from qtchat.protocol.server_frames import Message, Registered
from qtchat.server.config import ServerConfig
from qtchat.wakeup import install_signal_wakeup

log = logging.getLogger(__name__)
_STARTED = time.perf_counter()
# Saving the session rewrites the settings file (2 ms typically, 16 ms seen, on this
# VM): while a room is busy the app saves every second, so that save is made here, off
# the GUI thread. One worker: saves land in the order they were made.
_SETTINGS_WRITER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qtchat-settings")


def _write_setting(key: str, value: object) -> None:
    settings().setValue(key, value)  # written when this QSettings goes, at once


# The features the app implements and asks hosts for (PROTOCOL-FEATURES §0).
APP_FEATURES: tuple[str, ...] = ("chess", "files", *CLIENT_FEATURES)


class HostRuntime:
    """The room a person hosts: its server (a ``qtchat serve`` child) and its LAN
    announcement.

    ``server`` is the ``HostedServer``: port, fingerprint and IP versions as the child
    reported them once listening."""

    def __init__(self, server: HostedServer, announcer: Any = None) -> None:
        self.server = server
        self.announcer = announcer

    def addresses(self) -> list[str]:
        return [format_hostport(a, self.server.port)
                for a in local_addresses(self.server.ip_versions)]

    def addresses_text(self) -> str:
        found = self.addresses()
        if not found:
            return f"Hosting on port {self.server.port} (no network found: only this computer)"
        return "Others can join at " + " · ".join(found)

    def invite(self) -> str:
        hosts = local_addresses(self.server.ip_versions) or ["127.0.0.1"]
        return format_invite(hosts[0], self.server.port, self.server.fingerprint,
                             tls=self.server.config.tls)

    def stop_announcing(self) -> None:
        if self.announcer is not None:
            announcer, self.announcer = self.announcer, None
            _spawn(announcer.stop())

    def shutdown(self) -> None:
        self.stop_announcing()
        self.server.stop()


class HostDownBar(QWidget):
    """A bar in the host's window: the room's server stopped on its own, and a button to
    host it again (same port and history: everyone's app reconnects and resumes).

    Signals:
        hostAgainRequested(): the person pressed *Host again*.
    """

    hostAgainRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # the child's words
        self.label.setWordWrap(True)
        self.button = QPushButton("Host again")
        self.button.clicked.connect(self.hostAgainRequested)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)

    def say(self, sentence: str, *, busy: bool = False) -> None:
        self.label.setText(sentence)
        self.button.setEnabled(not busy)
        self.show()


def _spawn(coro) -> asyncio.Task | None:
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        coro.close()
        return None
    return loop.create_task(coro)


def free_port_after(port: int, tries: int = 50) -> int | None:
    """The first port after ``port`` that we can listen on, or None."""
    probe = QTcpServer()
    for candidate in range(port + 1, min(65536, port + 1 + tries)):
        if probe.listen(QHostAddress.SpecialAddress.Any, candidate):
            probe.close()
            return candidate
    return None


def session_key(scope: str, name: str) -> str:
    """The QSettings key of a saved session: where (an address, or a hosted room's data
    folder) and who. Hashed: paths and IPv6 addresses make poor settings keys."""
    digest = hashlib.sha256(f"{scope}\n{parse_name(name).folded}".encode()).hexdigest()[:24]
    return f"sessions/{digest}"


def identity_key(endpoint: Endpoint, scope: str) -> str:
    """The QSettings key of the identity secret this app sends to one host
    (PROTOCOL-FEATURES §1): by the host's TLS certificate when it has one we know (the
    certificate is what tells hosts apart), else by where it is (an address, or a hosted
    room's data folder). Never the same secret for two hosts."""
    where = f"tls:{endpoint.fingerprint}" if endpoint.tls and endpoint.fingerprint \
        else f"at:{scope}"
    return "identities/" + hashlib.sha256(where.encode("utf-8")).hexdigest()[:24]


def host_identity(endpoint: Endpoint, scope: str) -> str:
    """This app's identity secret for that host, made (192 random bits) and kept the first
    time; a damaged value is replaced."""
    from qtchat.protocol import LocalProtocolError
    from qtchat.server.identity import check_identity, new_identity

    key = identity_key(endpoint, scope)
    stored = settings().value(key)
    try:
        return check_identity(stored)
    except LocalProtocolError:
        secret = new_identity()
        settings().setValue(key, secret)
        return secret


# Which start-dialog field a failed join sends the person back to.
_FIELD_TO_FIX = {
    "wrong_password": "join_password",
    "invalid_name": "name_edit",
    "username_taken": "name_edit",
    "not_resolved": "address_edit",
    "refused": "address_edit",
    "timeout": "address_edit",
}


class AppController(QObject):
    """From the start dialog's choice to a connected chat window."""

    def __init__(self, args: argparse.Namespace, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.args = args
        self.exit_code = 0
        self.browser = None
        self.dialog: StartDialog | None = None
        self.window = None
        self.client: ChatClient | None = None
        self.host_runtime: HostRuntime | None = None
        self._announce = not getattr(args, "no_announce", False) and not args.smoke
        self._smoke_text = ""
        self._session_lock: QLockFile | None = None
        self._journal_lock: QLockFile | None = None
        self._session_scope = ""
        self._last_join: JoinChoice | None = None
        self._host_choice: HostChoice | None = None
        self._down_bar: HostDownBar | None = None
        # Where the conversation stands is saved at most once a second while messages
        # arrive: a QSettings write costs about a millisecond, a burst brings thousands.
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(1000)
        self._save_timer.timeout.connect(self._save_session_aside)

    # --- start -----------------------------------------------------------------------

    def start(self) -> None:
        args = self.args
        if args.command == "host":
            choice = HostChoice(name=args.nick, room_name=args.server_name or
                                f"{args.nick}'s room", port=args.port,
                                password=args.password or os.environ.get("QTCHAT_PASSWORD")
                                or None, tls=args.tls)
            self.host(choice)
        elif args.command == "join":
            try:
                target = parse_join_target(args.address)
            except ValueError as exc:
                print(f"qtchat: {exc}", file=sys.stderr)
                self.quit(2)
                return
            self.join(JoinChoice(name=args.nick, target=target, password=args.password))
        else:
            self.show_dialog()

    def show_dialog(self) -> None:
        model = None
        if self._announce:
            model = self._start_browser()
        self.dialog = StartDialog(model)
        self.dialog.hostRequested.connect(self.host)
        self.dialog.joinRequested.connect(self.join)
        self.dialog.trustRequested.connect(self._trust_certificate)
        self.dialog.rejected.connect(self._dialog_closed)
        self.dialog.show()
        if self.args.startup_probe:
            QTimer.singleShot(0, self._probe_done)
        elif self.args.smoke:
            QTimer.singleShot(0, self._smoke_host)

    def _start_browser(self):
        try:
            from qtchat.discovery import RoomBrowser
        except ImportError:  # pragma: no cover - discovery is a dependency
            return None
        interfaces = self.args.interfaces.split(",") if getattr(self.args, "interfaces",
                                                                 None) else None
        self.browser = RoomBrowser(self, interfaces=interfaces)
        browser = self.browser
        # Opening mDNS sockets on every interface takes a moment: after the dialog is up.
        QTimer.singleShot(50, lambda: _spawn(self._browse(browser)))
        return self.browser.model

    async def _browse(self, browser) -> None:
        if browser is not self.browser:
            return  # the app is already quitting
        try:
            await browser.start()
        except Exception as exc:  # discovery is a convenience: typing an address still works
            log.warning("LAN discovery unavailable: %s", exc)
            if self.dialog is not None:
                self.dialog.rooms_empty.setText(
                    f"Can't look for rooms on this network ({exc}); type an address below.")

    @Slot()
    def _dialog_closed(self) -> None:
        if self.window is None:
            self.quit(0)

    # --- host ------------------------------------------------------------------------

    @Slot(object)
    def host(self, choice: HostChoice) -> None:
        """Start the room's server (a child process); once it listens, join it."""
        self._abandon_client()  # one attempt at a time
        self._host_choice = choice
        self._start_hosted(self._host_config(choice))

    def _host_config(self, choice: HostChoice) -> ServerConfig:
        """The room's settings: the dialog's (or ``qtchat host``'s) choices, and the
        limit flags ``qtchat host`` was given (--max-clients, --rate-limit, …)."""
        base = ServerConfig()
        if getattr(self.args, "command", None) == "host":
            base = ServerConfig.from_args(self.args)
        data_dir = getattr(self.args, "data_dir", None)
        if self.args.smoke:
            data_dir = Path(os.environ["XDG_DATA_HOME"]) / "host"  # run_gui's scratch dir
        return replace(
            base, host="0.0.0.0", port=choice.port, server_name=choice.room_name,
            password=choice.password, tls=choice.tls,
            edit_window=base.edit_window if choice.edit_window is None else choice.edit_window,
            # The app's host mode makes itself the owner with a secret of its own (§4).
            admin_password=base.admin_password or secrets.token_urlsafe(24),
            data_dir=data_dir or _default_host_dir(), host_user=parse_name(choice.name).display,
        )

    def _start_hosted(self, config: ServerConfig) -> None:
        # A process of its own: a busy room or a resume storm never stalls this window.
        server = HostedServer(config, self)
        server.ready.connect(self._host_ready)
        server.failed.connect(self._host_failed)
        server.died.connect(self._host_died)
        if self.host_runtime is None:
            self.host_runtime = HostRuntime(server)
        else:  # hosting again: the window keeps its runtime
            old, self.host_runtime.server = self.host_runtime.server, server
            old.deleteLater()
        server.start()

    def _is_current(self, server: QObject | None) -> bool:
        return self.host_runtime is not None and server is self.host_runtime.server

    @Slot()
    def _host_ready(self) -> None:
        runtime = self.host_runtime
        if not self._is_current(self.sender()) or runtime is None:
            return
        server, choice = runtime.server, self._host_choice
        if self._announce:
            runtime.announcer = self._announce_room(server, choice)
        if self.window is not None:  # hosted again after its server stopped
            if self.client is not None:  # its new admin secret (a fresh register needs it)
                self.client.admin = server.config.admin_password
            if self._down_bar is not None:
                self._down_bar.hide()
            self._lobby_notice(f"The room is back on port {server.port}; everyone's app "
                               "reconnects by itself.", error=False)
            if self.client is not None and self.client.stopped_reconnecting:
                self.client.reconnect_now()
            return
        endpoint = Endpoint("127.0.0.1", server.port, choice.tls, server.fingerprint)
        # The host's own session belongs to its room's data, whatever port it got today.
        self._connect(endpoint, choice.name, choice.password,
                      scope=f"host:{Path(server.config.data_dir).resolve()}",
                      admin=server.config.admin_password)

    @Slot(str)
    def _host_failed(self, message: str) -> None:
        """The room's server could not start: its one-line reason, where the person is."""
        if not self._is_current(self.sender()):
            return
        port = self.host_runtime.server.config.port if self.host_runtime else 0
        if self.window is not None:  # hosting again did not work
            self._show_host_down(f"The room could not start again: {message}")
            return
        self.host_runtime.server.deleteLater()  # its process has ended
        self.host_runtime = None
        free = free_port_after(port) if port else None
        if "already in use" in message and free is not None:
            message = f"Port {port} is already in use (is another qtchat hosting?). "
            message += f"Port {free} is free — press Host again to use it."
            if not self.args.smoke:
                self._ensure_dialog()
            if self.dialog is not None:
                self.dialog.port_spin.setValue(free)
        self._fail(message[:1].upper() + message[1:])

    @Slot(str)
    def _host_died(self, sentence: str) -> None:
        """The room's server ended on its own (a crash, a kill): say so in the window,
        and offer to host it again."""
        runtime = self.host_runtime
        if not self._is_current(self.sender()) or runtime is None:
            return
        log.warning("%s", sentence)
        runtime.stop_announcing()
        if self.window is None:  # still joining it
            self._abandon_client()
            self._fail(sentence)
            return
        self._lobby_notice(sentence, error=True)
        self._show_host_down(sentence)

    def _show_host_down(self, sentence: str) -> None:
        window = self.window
        assert window is not None
        if self._down_bar is None:
            self._down_bar = HostDownBar()
            self._down_bar.hostAgainRequested.connect(self._host_again)
            # Above the reconnect bar, over the message box: where the person looks.
            column = window.reconnect_bar.parentWidget().layout()
            column.insertWidget(column.indexOf(window.reconnect_bar), self._down_bar)
        self._down_bar.say(sentence)

    @Slot()
    def _host_again(self) -> None:
        """Start the room's server again on the port it had, with its history: guests'
        apps (and the host's own) reconnect there and resume their sessions."""
        runtime = self.host_runtime
        if runtime is None or runtime.server.is_listening:
            return
        if self._down_bar is not None:
            self._down_bar.say("Starting the room again…", busy=True)
        old = runtime.server
        self._start_hosted(replace(old.config, port=old.port or old.config.port))

    def _lobby_notice(self, text: str, *, error: bool) -> None:
        from qtchat import protocol as p
        from qtchat.gui.models import ConversationKind, NoticeKind

        if self.window is None:
            return
        lobby = self.window.conversation(ConversationKind.ROOM, p.LOBBY, create=False)
        if lobby is not None:
            lobby.model.add_notice(text, NoticeKind.ERROR if error else NoticeKind.INFO)

    def _announce_room(self, server: HostedServer, choice: HostChoice):
        from qtchat.discovery import RoomAnnouncer

        announcer = RoomAnnouncer()
        interfaces = self.args.interfaces.split(",") if getattr(self.args, "interfaces",
                                                                 None) else None

        async def announce() -> None:
            try:
                await announcer.start(choice.room_name, server.port, choice.tls,
                                      server.fingerprint, interfaces,
                                      ip_versions=server.ip_versions,
                                      password=choice.password is not None)
            except Exception as exc:
                log.warning("room not announced on the LAN: %s", exc)
                if self.window is not None:
                    self.window.statusBar().showMessage(
                        f"Not announced on the LAN ({exc}); share the invite instead.", 15000)

        _spawn(announce())
        return announcer

    # --- join ------------------------------------------------------------------------

    @Slot(object)
    def join(self, choice: JoinChoice) -> None:
        self._abandon_client()  # one attempt at a time (a host started by an earlier one too)
        self._last_join = choice
        target = choice.target
        endpoint = Endpoint(target.host, target.port, target.tls, target.fingerprint)
        self._connect(endpoint, choice.name, choice.password)

    def _connect(self, endpoint: Endpoint, name: str, password: str | None,
                 scope: str | None = None, admin: str | None = None) -> None:
        """Connect and register; ``scope`` names where the saved session is kept
        (default: the address); ``admin``: the hosted room's admin secret (the owner)."""
        self._session_scope = scope or endpoint.address
        pin_store = None
        if endpoint.tls:
            from qtchat.tlsutil import PinStore

            pin_store = PinStore(_app_data_dir())
        client = ChatClient(self, pin_store=pin_store, features=APP_FEATURES)
        self.client = client
        self._attach_journal(client)
        client.registered.connect(self._registered)
        client.connectFailed.connect(self._connect_failed)
        client.usernameTaken.connect(self._username_taken)
        key = session_key(self._session_scope, name)
        stored = settings().value(key)
        resume = None
        owned = self._lock_session(key)
        if owned and isinstance(stored, list | tuple) and len(stored) == 2:
            with contextlib.suppress(TypeError, ValueError):  # a damaged settings file
                resume = (str(stored[0]), int(stored[1]))  # the client checks the range
        if owned:  # a second copy of the app would take the first one's name from it
            client.identity = host_identity(endpoint, self._session_scope)
        client.admin = admin
        client.open(endpoint, name, password, resume=resume)

    def _attach_journal(self, client: ChatClient) -> None:
        """Remember unfinished uploads and downloads in the app's data dir (issue 15): the
        next window lists this host's and resumes them. One copy of the app at a time (a
        lock beside the record): a second would resume the first one's transfers."""
        from qtchat.client.files import TransferJournal

        folder = _app_data_dir()
        if self._journal_lock is None:
            with contextlib.suppress(OSError):
                folder.mkdir(parents=True, exist_ok=True)
            lock = QLockFile(str(folder / "transfers.lock"))
            lock.setStaleLockTime(0)  # only a dead process's lock is stale (checked by PID)
            if not lock.tryLock(0):
                return
            self._journal_lock = lock
        TransferJournal(folder, client).attach(client)

    def _lock_session(self, key: str) -> bool:
        """Claim a saved session for this process.

        Two copies of the app with the same name on one machine share QSettings;
        without this lock the second would resume the first one's session and the
        two would take it from each other forever. The second registers afresh
        instead (and is told the name is taken).
        """
        if self._session_lock is not None:
            self._session_lock.unlock()
            self._session_lock = None
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
        lock = QLockFile(str(Path(QDir.tempPath()) / f"qtchat-session-{digest}.lock"))
        lock.setStaleLockTime(0)  # only a dead process's lock is stale (checked by PID)
        if not lock.tryLock(0):
            return False
        self._session_lock = lock
        return True

    @Slot(object)
    def _registered(self, frame: Registered) -> None:
        client = self.client
        assert client is not None
        client.registered.disconnect(self._registered)
        client.connectFailed.disconnect(self._connect_failed)
        client.usernameTaken.disconnect(self._username_taken)
        client.registered.connect(self._save_session)
        client.messageReceived.connect(self._save_soon)
        self._save_session()
        from qtchat.gui.main_window import ChatWindow
        from qtchat.gui.private_tabs import PrivateTabs

        self.window = ChatWindow(client, self.host_runtime)
        self.window._on_registered(frame)
        self.window.private_tabs = PrivateTabs(self.window, client)  # back after a restart
        self.window.closedByUser.connect(self._window_closed)
        if self.host_runtime is not None:  # what the room's server said as it started
            for text in self.host_runtime.server.notices:
                self._lobby_notice(text[:1].upper() + text[1:], error=False)
        self.window.show()
        if self.dialog is not None:
            self.dialog.hide()
        if self.args.smoke:
            self._smoke_send()

    @Slot()
    def _save_soon(self, *_args: object) -> None:
        if not self._save_timer.isActive():
            self._save_timer.start()

    def _session_setting(self) -> tuple[str, list[object]] | None:
        client = self.client
        if client is None or client.endpoint is None or not client.session:
            return None
        if self._session_lock is None:
            return None  # another copy of the app owns the saved session for this name
        return (session_key(self._session_scope, client.name),
                [client.session, client.last_seq])

    @Slot()
    def _save_session(self, *_args: object) -> None:
        """Save where the conversation stands, now (after any save still being made)."""
        setting = self._session_setting()
        if setting is not None:
            _SETTINGS_WRITER.submit(_write_setting, *setting).result()

    @Slot()
    def _save_session_aside(self) -> None:
        """The same, in the settings thread: the GUI thread goes on at once."""
        setting = self._session_setting()
        if setting is not None:
            _SETTINGS_WRITER.submit(_write_setting, *setting)

    @Slot(object)
    def _connect_failed(self, error: ConnectError) -> None:
        client = self.client
        address = client.endpoint.address if client is not None and client.endpoint else ""
        self._abandon_client()
        if error.kind == "tls_mismatch" and error.expected and error.presented and \
                not self.args.smoke:
            self._ensure_dialog()
            assert self.dialog is not None
            self.dialog.show_certificate_warning(address, error.expected, error.presented)
            return
        self._fail(str(error), focus=_FIELD_TO_FIX.get(error.kind))

    @Slot(str, str)
    def _trust_certificate(self, address: str, fingerprint: str) -> None:
        """The person compared the new fingerprint with the host: pin it and join again."""
        from qtchat.tlsutil import PinStore

        PinStore(_app_data_dir()).remember(address, fingerprint)
        choice = self._last_join
        if choice is None or self.dialog is None:
            return
        target = replace(choice.target, fingerprint=fingerprint, tls=True)
        self.dialog.set_busy(True, f"Connecting to {target.hostport}…")
        self.join(replace(choice, target=target))

    @Slot(str)
    def _username_taken(self, name: str) -> None:
        reserved = self.client is not None and self.client.taken_reason == "reserved"
        self._abandon_client()
        if reserved:
            self._fail(f"The name {name} is taken: this host keeps it for someone else "
                       "(their app registered it) — try another.", focus="name_edit")
            return
        self._fail(f"The name {name} is taken — try another.", focus="name_edit")

    def _abandon_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client.deleteLater()
            self.client = None
        if self.host_runtime is not None:
            self.host_runtime.shutdown()
            self.host_runtime.server.wait_stopped()
            self.host_runtime = None

    def _fail(self, message: str, focus: str | None = None) -> None:
        """Say why an attempt failed: in the dialog, with its field to fix focused.

        ``qtchat join``/``qtchat host`` start without a dialog; when their attempt fails
        the dialog opens, filled in with what the command line said, so the person can
        fix it and try again rather than read a terminal that may not even be open."""
        if self.args.smoke and self.dialog is None:
            print(f"qtchat: {message}", file=sys.stderr)
            self.quit(1)
            return
        self._ensure_dialog()
        assert self.dialog is not None
        self.dialog.show_error(message, focus=getattr(self.dialog, focus or "", None))
        if self.args.smoke:
            print(f"qtchat: smoke test FAILED: {message}", file=sys.stderr)
            self.quit(1)

    def _ensure_dialog(self) -> None:
        """Open the start dialog (filled in from the command line) if it is not open."""
        if self.dialog is not None:
            self.dialog.show()
            return
        self.show_dialog()
        dialog, args = self.dialog, self.args
        assert dialog is not None
        if getattr(args, "nick", None):
            dialog.name_edit.setText(args.nick)
        if args.command == "join":
            dialog.tabs.setCurrentIndex(1)
            dialog.address_edit.setText(args.address)
            dialog.join_password.setText(args.password or "")
        elif args.command == "host":
            dialog.tabs.setCurrentIndex(0)
            dialog.room_edit.setText(args.server_name or "")
            dialog.port_spin.setValue(args.port)
            dialog.host_password.setText(args.password or "")
            dialog.tls_check.setChecked(bool(args.tls))

    @Slot()
    def _window_closed(self) -> None:
        self.release_session()
        QTimer.singleShot(300, lambda: self.quit(self.exit_code))  # let bye frames leave

    def release_session(self) -> None:
        """Save where the conversation stands and let another copy of the app resume it."""
        self._save_session()
        if self._session_lock is not None:
            self._session_lock.unlock()
            self._session_lock = None
        if self._journal_lock is not None:
            self._journal_lock.unlock()
            self._journal_lock = None

    def shut_down(self) -> None:
        """Leave at once, without questions (a signal): bye to the room, then quit."""
        if self.window is not None:
            self.window._force_close = True
            self.window.close()  # sends bye, stops a hosted server; quits via closedByUser
        else:
            self._abandon_client()
            self.quit(self.exit_code)

    def quit(self, code: int) -> None:
        self.exit_code = code
        if self.host_runtime is not None:
            self.host_runtime.shutdown()
        if self.browser is not None:
            browser, self.browser = self.browser, None
            _spawn(browser.stop())
        QTimer.singleShot(100, QApplication.quit)

    # --- self tests ------------------------------------------------------------------

    @Slot()
    def _probe_done(self) -> None:
        elapsed = _process_age_ms()
        print(f"qtchat: start dialog shown after {elapsed:.0f} ms", flush=True)
        self.quit(0)

    @Slot()
    def _smoke_host(self) -> None:
        dialog = self.dialog
        assert dialog is not None
        QTimer.singleShot(20_000, self._smoke_timeout)
        dialog.name_edit.setText("smoke")
        dialog.room_edit.setText("smoke test")
        dialog.tls_check.setChecked(False)
        dialog.port_spin.setValue(free_port_after(DEFAULT_PORT + 100) or DEFAULT_PORT + 100)
        dialog.tabs.setCurrentIndex(0)
        dialog.host_button.click()

    def _smoke_send(self) -> None:
        client = self.client
        assert client is not None
        self._smoke_text = f"smoke test {os.getpid()}"
        client.sendConfirmed.connect(self._smoke_confirmed)
        client.send_broadcast(self._smoke_text)

    @Slot(str, object)
    def _smoke_confirmed(self, _message_id: str, message: Message) -> None:
        if message.text == self._smoke_text:
            print(f"qtchat: smoke test passed: hosted on port {self.host_runtime.server.port}, "
                  f"joined, posted message seq {message.seq}", flush=True)
            if self.window is not None:
                self.window._force_close = True
                self.window.close()
            self.exit_code = 0
            self.quit(0)

    @Slot()
    def _smoke_timeout(self) -> None:
        print("qtchat: smoke test FAILED: no echo within 20 s", file=sys.stderr)
        self.quit(1)


def _default_host_dir() -> Path:
    return default_host_dir()


def _app_data_dir() -> Path:
    return default_data_dir()


def _process_age_ms() -> float:
    """Milliseconds since this process started (Linux: from /proc), else since import."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        return (up - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000
    except (OSError, ValueError, IndexError):
        return (time.perf_counter() - _STARTED) * 1000


def run_gui(args: argparse.Namespace) -> int:
    """Run the desktop app until its last window closes; return the exit code."""
    import qasync

    from qtchat.collector import collect_on_main_thread
    from qtchat.resources import install_app_icon

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scratch = None
    if args.smoke:  # a self-test leaves nothing behind: no settings, pins or history
        scratch = tempfile.TemporaryDirectory(prefix="qtchat-smoke-")
        for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
            QSettings.setPath(fmt, QSettings.Scope.UserScope, scratch.name)
        os.environ["XDG_DATA_HOME"] = scratch.name
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("qtchat")
    app.setOrganizationName("qtchat")
    app.setQuitOnLastWindowClosed(False)  # the controller quits after saying bye
    collect_on_main_thread(app)  # before any preview or hashing thread starts
    install_app_icon(app)
    apply_theme(str(settings().value("theme", "system")), app)  # the settings dialog's
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    controller = AppController(args)
    # Ctrl-C / SIGTERM: say bye (and close a hosted room) like the window's Quit does.
    notifier = install_signal_wakeup(lambda _signum: controller.shut_down())
    with loop:
        loop.call_soon(controller.start)
        loop.run_forever()
    del notifier
    if controller.host_runtime is not None:  # the room's server ends before the app
        controller.host_runtime.server.wait_stopped()
    if scratch is not None:
        scratch.cleanup()
    return controller.exit_code
