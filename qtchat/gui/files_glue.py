"""The chat window's files and pictures (PROTOCOL-FEATURES §2, the ``files`` feature).

The bytes move in ``qtchat.client.files`` (``ChatClient.send_file`` / ``download`` /
``cancel_transfer``); the pictures are decoded in ``picture.py``; the transfers panel is
``transfers.py``; the file box of a row is painted by the delegate. This connects them
to the window, so ``main_window.py`` only makes a ``FilesGlue``:

- **Sending**: the attach button beside the message box and Chat ▸ Send a file…, files
  dropped on the window or the box, a picture pasted from the clipboard (saved as a PNG
  in a folder of this window's, then sent like a file). The file shows at once in the
  conversation as the person's own pending message with a progress bar, Cancel, and
  Retry once stopped; a private tab sends it as a whisper. A picture's offer carries a
  small preview (``make_preview``), made off the GUI thread.
- **Receiving**: a message with a ``file`` is a row with its name, size and type;
  a picture is shown inline: the preview the offer carried, or — when it has none and
  is small (``AUTO_FETCH``) — the picture itself, fetched into this window's folder;
  both decoded off the GUI thread under the caps (``PictureLoader``), never SVG; a
  picture declaring too many pixels shows "picture too large to show". Clicking it
  opens a viewer with the full picture. *Save as…* (a link in the row and the context
  menu) asks where (``ask_save_path``; the settings' download folder, the name sanitised
  again with ``safe_save_name``), then downloads with progress, speed and time left;
  nothing is ever opened by itself; *Open* comes once it is saved, with a warning
  first for anything that could run (``confirm_open``).
- **Transfers panel** (View ▸ Transfers): every upload and download the person asked
  for, with its state, Cancel and Retry. A refusal from the host is said as the
  sentence the host sent (``file_too_large``: "That file is larger than this room
  allows (2 GiB)"), or ours when it sent none.
- **After a restart** (issue 15): the app attaches one ``TransferJournal`` to the client
  (``client.journal``); what it remembers as unfinished on this host is listed at once
  as *Stopped* (an upload also as a pending row of its conversation) and goes on by
  itself once the window is up and connected: an upload under its old id from what
  the host holds, a download into its ``.part``. Cancel forgets it (a download's
  ``.part`` goes too).

``ask_save_path`` and ``confirm_open`` are attributes so a test (or another front end)
can answer without a modal dialog.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mimetypes
import re
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMessageBox,
    QScrollArea,
    QStyle,
    QToolButton,
    QVBoxLayout,
)

from qtchat.gui.conversation import Conversation
from qtchat.gui.delegate import FileRow
from qtchat.gui.models import ConversationKind, MessageEntry, NoticeKind, RowKind, file_of
from qtchat.gui.picture import (
    PREVIEW_SIDE,
    TOO_LARGE,
    Picture,
    PictureLoader,
    is_executable,
    make_preview,
    safe_save_name,
)
from qtchat.gui.settings_dialog import Preferences
from qtchat.gui.transfers import (
    DOWNLOAD,
    UPLOAD,
    State,
    TransferModel,
    TransfersPanel,
    format_duration,
    format_size,
)
from qtchat.protocol import LOBBY
from qtchat.worker import run_in_thread

if TYPE_CHECKING:
    from qtchat.gui.main_window import ChatWindow

log = logging.getLogger(__name__)

AUTO_FETCH = 8 << 20  # a picture without a preview up to this size is fetched to show
SHOW_FETCHES = 2  # pictures fetched to be shown at once (the host allows 4 transfers)
# Progress is painted at most this often: a repaint per slice moved held a loopback
# upload to the window's paint rate (25 MB/s on Xvfb, one repaint per 1 MiB sent).
PAINT_EVERY_MS = 100
LOADING = "loading the picture…"
# What a refusal or a failure says when the host sent no sentence of its own.
SENTENCES = {
    "file_too_large": "That file is larger than this room allows.",
    "quota_exceeded": "You already keep as much in files on this host as it allows.",
    "disk_full": "The host is short of disk space.",
    "invalid_name": "That file name cannot be used.",
    "storage_error": "The host could not store the file.",
    "checksum_mismatch": "The file changed on the way; it was not kept.",
    "no_such_file": "That file is no longer on the host.",
    "rate_limited": "Too many transfers at once: wait for one to finish, then retry.",
    "offline": "Not connected to the host; try again once connected.",
    "unknown_type": "This host does not take files.",
}
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Failures of the connection, not refusals: retried by themselves once the chat is back.
RESUMABLE = frozenset({"network", "offline", "timeout", "closed", "refused", "not_resolved"})
# What a transfer remembered from the app's last run says until it moves again.
STOPPED_SENTENCE = "unfinished when qtchat closed; it goes on once connected"


def _is_picture(info: dict[str, Any]) -> bool:
    """A file shown as a picture: a raster image type (never SVG), by its type or name."""
    mime = info.get("mime")
    if not isinstance(mime, str) or not mime:
        mime = mimetypes.guess_type(str(info.get("name", "")))[0] or ""
    return mime.startswith("image/") and "svg" not in mime


def _kind(info: dict[str, Any]) -> str:
    mime = info.get("mime")
    if isinstance(mime, str) and mime and mime != "application/octet-stream":
        return mime
    suffix = Path(str(info.get("name", ""))).suffix.lstrip(".")
    return f"{suffix.upper()} file" if suffix and len(suffix) <= 8 else "file"


@dataclass
class _Transfer:
    """One upload or download this window asked for, by the id the client gave it."""

    key: str
    direction: str
    name: str
    size: int
    purpose: str = "save"  # downloads: "save" (the person's), "show"/"view" (pictures)
    path: Path | None = None  # upload: the source; download: the destination
    file_id: str = ""
    room: str | None = None
    to: str | None = None
    mime: str | None = None
    preview: dict[str, Any] | None = None
    conv_key: tuple[ConversationKind, str] | None = None
    state: State = State.UPLOADING
    error: str = ""
    cancelled: bool = False
    listed: bool = True  # in the transfers panel
    done: int = 0
    code: str = ""  # why it stopped, the last time it did
    restored: bool = False  # remembered by the journal from the app's last run


@dataclass
class _Shown:
    """A picture shown inline: its decoded image, or what to say instead."""

    image: QImage | None = None
    note: str = LOADING
    asked: bool = False


class FilesGlue(QObject):
    """See the module docstring. ``window.files`` is this."""

    def __init__(self, window: ChatWindow, *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__(window)
        self.window = window
        self.client = client = window.client
        self._clock = clock
        self.model = TransferModel(self)
        self.panel = TransfersPanel(self.model)
        self.panel.cancel_requested.connect(self.cancel)
        self.panel.retry_requested.connect(self.retry)
        self.dock = QDockWidget("Transfers", window)
        self.dock.setObjectName("transfers")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        self._transfers: dict[str, _Transfer] = {}
        self._shown: dict[str, _Shown] = {}  # file id or offer id -> the inline picture
        self._posted: dict[str, str] = {}  # offer id -> the host's file id
        self._saved: dict[str, str] = {}  # file id -> the latest save download's key
        self._cache = Path(tempfile.mkdtemp(prefix="qtchat-files-"))
        self.loader = PictureLoader(self)
        self.loader.loaded.connect(self._loaded)
        self._viewers: list[QDialog] = []
        self._waiting: deque[tuple[str, str, int]] = deque()  # pictures to fetch, in turn
        self._moved: dict[str, int] = {}  # progress not painted yet: key -> bytes done
        self._paint_timer = QTimer(self)
        self._paint_timer.setSingleShot(True)
        self._paint_timer.setInterval(PAINT_EVERY_MS)
        self._paint_timer.timeout.connect(self._paint_progress)
        # Answered by dialogs; a test or another front end may replace them.
        self.ask_save_path: Callable[[str], str | None] = self._ask_save_path
        self.ask_open_files: Callable[[], list[str]] = self._ask_open_files
        self.confirm_open: Callable[[Path], bool] = self._confirm_open  # before a program
        self.opened: list[Path] = []  # what the person opened (after the warning)

        self.attach_button = QToolButton()
        self.attach_button.setText("File…")
        self.attach_button.setIcon(window.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon))
        self.attach_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.attach_button.setToolTip("Send a file (or drop one on the window)")
        self.attach_button.setAccessibleName("Send a file")
        self.attach_button.clicked.connect(self.choose_files)
        self.send_action = QAction("Send a &file…", window)
        self.send_action.setShortcut(QKeySequence("Ctrl+Shift+U"))
        self.send_action.setStatusTip("Send a file to this conversation")
        self.send_action.triggered.connect(self.choose_files)
        chat_menu = getattr(window, "chat_menu", None)
        if chat_menu is not None:
            chat_menu.insertAction(getattr(window, "settings_action", None), self.send_action)
        self.transfers_action = self.dock.toggleViewAction()
        self.transfers_action.setText("&Transfers")
        self.transfers_action.setShortcut(QKeySequence("Ctrl+Shift+T"))
        view_menu = getattr(window, "view_menu", None)
        if view_menu is not None:
            view_menu.addSeparator()
            view_menu.addAction(self.transfers_action)

        window.input.filesOffered.connect(self.send_paths)
        window.input.pictureOffered.connect(self.send_picture)
        window.tabs.currentChanged.connect(self._tab_changed)
        client.transferProgress.connect(self._progress)
        client.fileSent.connect(self._sent)
        client.fileSaved.connect(self._saved_to)
        client.transferFailed.connect(self._failed)
        client.reconnected.connect(self._reconnected)
        client.registered.connect(self._registered)
        self.journal = getattr(client, "journal", None)  # the app's TransferJournal, if any
        self._restore()

    # --- sending --------------------------------------------------------------------------

    def _ask_open_files(self) -> list[str]:
        paths, _filter = QFileDialog.getOpenFileNames(self.window, "Send a file")
        return paths

    @Slot()
    def choose_files(self) -> None:
        """The attach button, Chat ▸ Send a file…: pick files, send them here."""
        paths = self.ask_open_files()
        if paths:
            self.send_paths(paths)

    def _say(self, conv: Conversation | None, text: str, kind=NoticeKind.ERROR) -> None:
        if conv is not None:
            conv.model.add_notice(text, kind)

    @Slot(list)
    def send_paths(self, paths: list[str], conv: Conversation | None = None) -> list[str]:
        """Send each file to ``conv`` (default: the conversation in front); returns the
        offers' ids (a file that cannot be sent is said in the conversation)."""
        conv = conv or self.window.current()
        if conv is None:
            return []
        if not self.client.has_feature("files"):
            self._say(conv, "This host does not take files.")
            return []
        sent = []
        for name in paths:
            path = Path(name)
            if not path.is_file():
                self._say(conv, f"Not sent: {path.name or name} is not a file.")
                continue
            sent.append(self._send(path, conv))
        return sent

    @Slot(QImage)
    def send_picture(self, image: QImage, conv: Conversation | None = None) -> str | None:
        """A pasted picture: saved as a PNG in this window's folder, then sent."""
        stamp = time.strftime("%Y-%m-%d %H.%M.%S")
        path = self._cache / f"pasted-{uuid.uuid4().hex[:6]}" / f"Pasted picture {stamp}.png"
        path.parent.mkdir()
        if not image.save(str(path), "PNG"):
            self._say(conv or self.window.current(), "The pasted picture could not be saved.")
            return None
        sent = self.send_paths([str(path)], conv)
        return sent[0] if sent else None

    def _send(self, path: Path, conv: Conversation) -> str:
        key = uuid.uuid4().hex[:16]
        size = path.stat().st_size
        mime = mimetypes.guess_type(path.name)[0]
        private = conv.kind == ConversationKind.PRIVATE
        transfer = _Transfer(key, UPLOAD, path.name, size, path=path, mime=mime,
                             room=None if private else conv.title,
                             to=conv.title if private else None, conv_key=conv.key)
        self._transfers[key] = transfer
        info = {"name": path.name, "size": size, "mime": mime or ""}
        conv.model.add_pending(key, f"{path.name} ({format_size(size)})",
                               sender=self.window.me, peer=conv.title, whisper=private,
                               file=info)
        self.model.add(key, path.name, UPLOAD, size, now=self._clock())
        if _is_picture(info):
            shown = self._shown[key] = _Shown()
            self._decode_file(key, path, shown)
            run_in_thread(functools.partial(_preview_of, path),
                          functools.partial(self._preview_made, key), owner=self,
                          name="qtchat-preview")  # the window may close meanwhile
        else:
            self._offer(transfer)
        return key

    def _preview_made(self, key: str, preview: dict[str, Any] | None) -> None:
        transfer = self._transfers.get(key)
        if transfer is None:
            return
        transfer.preview = preview
        if transfer.cancelled:
            return
        self._offer(transfer)

    def _offer(self, transfer: _Transfer) -> None:
        assert transfer.path is not None
        self.client.send_file(transfer.path, room=transfer.room, to=transfer.to,
                              mime=transfer.mime, preview=transfer.preview,
                              offer_id=transfer.key)

    # --- what the client says -------------------------------------------------------------

    @Slot(str, int, int)
    def _progress(self, key: str, done: int, _total: int) -> None:
        transfer = self._transfers.get(key)
        if transfer is None:
            return
        if transfer.cancelled:  # cancelled before its connection was up
            self.client.cancel_transfer(key)
            return
        transfer.done = done
        self._moved[key] = done
        if not self._paint_timer.isActive():
            self._paint_timer.start()

    @Slot()
    def _paint_progress(self) -> None:
        """What moved since the last paint: into the panel's model, and the rows in front
        painted again (progress changes no row's height)."""
        moved, self._moved = self._moved, {}
        now = self._clock()
        for key, done in moved.items():
            transfer = self._transfers.get(key)
            if transfer is not None and transfer.listed and \
                    transfer.state in (State.UPLOADING, State.DOWNLOADING):
                self.model.progress(key, done, now=now)
        self._repaint()

    @Slot(str, str, int)
    def _sent(self, key: str, file_id: str, _seq: int) -> None:
        self._paint_progress()  # what moved before it ended
        transfer = self._transfers.get(key)
        if transfer is None:
            return
        transfer.state, transfer.file_id = State.DONE, file_id
        self._posted[key] = file_id
        shown = self._shown.get(key)
        if shown is not None:
            self._shown.setdefault(file_id, shown)
        self.model.set_state(key, State.DONE, now=self._clock())
        self._refresh(key)

    @Slot(str, str)
    def _saved_to(self, key: str, path: str) -> None:
        self._paint_progress()  # what moved before it ended
        transfer = self._transfers.get(key)
        if transfer is None:
            return
        transfer.state = State.DONE
        if transfer.listed:
            self.model.set_state(key, State.DONE, now=self._clock())
        if transfer.purpose == "show":
            shown = self._shown.get(transfer.file_id)
            if shown is not None:
                self._decode_file(transfer.file_id, Path(path), shown)
            self._fetch_next()
        elif transfer.purpose == "view":
            self.loader.load(("view", transfer.file_id, transfer.name), path)
        self._refresh(transfer.file_id)

    @Slot(str, str, str)
    def _failed(self, key: str, code: str, sentence: str) -> None:
        self._paint_progress()  # what moved before it ended
        transfer = self._transfers.get(key)
        if transfer is None:
            return
        sentence = sentence if sentence and sentence != code else SENTENCES.get(code, code)
        cancelled = code == "cancelled" or transfer.cancelled
        transfer.code = code
        transfer.state = State.CANCELLED if cancelled else State.FAILED
        transfer.error = "" if cancelled else sentence
        if transfer.listed:
            self.model.set_state(key, transfer.state, now=self._clock(), error=transfer.error)
        conv = self._conversation(transfer)
        if transfer.direction == UPLOAD:
            if conv is not None:
                conv.model.mark_failed(key)
                if not cancelled and code not in RESUMABLE:  # (those go on by themselves)
                    self._say(conv, f"{transfer.name} was not sent: {sentence}")
        elif transfer.purpose == "save":
            self._say(conv or self.window.current(),
                      f"{transfer.name} was not saved: {sentence}" if not cancelled
                      else f"Saving {transfer.name} was cancelled.", NoticeKind.ERROR)
        else:  # a picture fetched to be shown
            shown = self._shown.get(transfer.file_id)
            if shown is not None:
                shown.note = f"the picture could not be fetched: {sentence}"
            if transfer.purpose == "show":
                self._fetch_next()
        self._refresh(transfer.file_id or key)

    def _conversation(self, transfer: _Transfer) -> Conversation | None:
        if transfer.conv_key is None:
            return None
        return self.window.conversation(*transfer.conv_key, create=False)

    @Slot(bool)
    def _reconnected(self, _gap: bool) -> None:
        """The chat is back (a dropped network, a restarted host): what stopped because
        the connection went goes on by itself from where it was; refusals and what the
        person cancelled wait for Retry."""
        for key, transfer in list(self._transfers.items()):
            if transfer.state is State.FAILED and transfer.code in RESUMABLE:
                self.retry(key)

    @Slot(object)
    def _registered(self, _frame: object) -> None:
        """Registered (again): what was remembered from the app's last run goes on."""
        for key, transfer in list(self._transfers.items()):
            if transfer.state is State.STOPPED:
                self.retry(key)

    # --- after an app restart ---------------------------------------------------------------

    def _restore(self) -> None:
        """List what the journal remembers as unfinished on this host (keyed as the
        journal keys it, ``address:port``) as Stopped; it goes on on the next pass of
        the event loop (the window is set up by then) if connected, else once
        registered."""
        journal = self.journal
        if journal is None:
            return
        now = self._clock()
        keys = []
        for entry in journal.pending_transfers(journal.host()):
            key = entry.id
            if key in self._transfers or entry.kind not in (UPLOAD, DOWNLOAD):
                continue
            path = Path(entry.path)
            if entry.kind == UPLOAD:
                offer = entry.offer
                room, to = offer.get("room"), offer.get("to")
                size = entry.size
                if not size:
                    with contextlib.suppress(OSError):
                        size = path.stat().st_size
                conv_key = (ConversationKind.PRIVATE, to) if to else \
                    (ConversationKind.ROOM, room or LOBBY)
                transfer = _Transfer(key, UPLOAD, path.name, size, path=path,
                                     room=room, to=to, mime=offer.get("mime"),
                                     preview=offer.get("preview"), conv_key=conv_key)
            else:
                if not entry.file:
                    continue  # never got as far as the host: nothing to ask for again
                transfer = _Transfer(key, DOWNLOAD, path.name, entry.size, path=path,
                                     file_id=entry.file)
                self._saved[entry.file] = key
            transfer.state, transfer.code, transfer.done = State.STOPPED, "network", entry.offset
            transfer.error, transfer.restored = STOPPED_SENTENCE, True
            self._transfers[key] = transfer
            self.model.add(key, transfer.name, transfer.direction, transfer.size, now=now,
                           done=entry.offset)
            self.model.set_state(key, State.STOPPED, now=now, error=STOPPED_SENTENCE)
            keys.append(key)
        if keys:
            QTimer.singleShot(0, self, lambda: self._resume_restored(keys))

    def _resume_restored(self, keys: list[str]) -> None:
        """The window is set up: a restored upload shows in its conversation as the
        person's own pending file; all go on if the chat is connected."""
        for key in keys:
            transfer = self._transfers.get(key)
            if transfer is None or transfer.direction != UPLOAD:
                continue
            conv = self._conversation(transfer)
            if conv is None:
                continue
            transfer.conv_key = conv.key
            private = conv.kind == ConversationKind.PRIVATE
            info = {"name": transfer.name, "size": transfer.size, "mime": transfer.mime or ""}
            conv.model.add_pending(key, f"{transfer.name} ({format_size(transfer.size)})",
                                   sender=self.window.me, peer=conv.title, whisper=private,
                                   file=info)
            conv.model.mark_failed(key)
        if self.client.connected:
            for key in keys:
                self.retry(key)

    def _forget(self, key: str) -> None:
        """The person gave up on ``key``, or it is this window's own (a picture fetched
        to show): not to be offered again after a restart."""
        if self.journal is not None:
            self.journal.forget(key)

    # --- cancel, retry, save, open ----------------------------------------------------------

    def owns(self, key: str) -> bool:
        """Whether ``key`` (a pending row's id) is an upload of this glue's."""
        return key in self._transfers

    @Slot(str)
    def cancel(self, key: str) -> None:
        """The person gives up: stopped, forgotten by the journal (not offered again after
        a restart); a download the journal kept from the last run loses its ``.part``."""
        transfer = self._transfers.get(key)
        if transfer is None or transfer.state not in (State.UPLOADING, State.DOWNLOADING,
                                                      State.STOPPED):
            return
        transfer.cancelled = True
        self.client.cancel_transfer(key)  # a running one says transferFailed(cancelled)
        if transfer.state in (State.UPLOADING, State.DOWNLOADING, State.STOPPED):
            self._failed(key, "cancelled", "")  # it was not running (yet)
        self._forget(key)
        if transfer.restored and transfer.direction == DOWNLOAD and transfer.path is not None:
            with contextlib.suppress(OSError):  # the Download closed it as it stopped
                transfer.path.with_name(transfer.path.name + ".part").unlink()

    @Slot(str)
    def retry(self, key: str) -> None:
        """Go on from what the host holds (an upload) or the ``.part`` file (a download)."""
        transfer = self._transfers.get(key)
        if transfer is None or transfer.state not in (State.FAILED, State.CANCELLED,
                                                      State.PAUSED, State.STOPPED):
            return
        transfer.cancelled = False
        transfer.error = ""
        if transfer.direction == UPLOAD:
            transfer.state = State.UPLOADING
            conv = self._conversation(transfer)
            if conv is not None:
                conv.model.mark_sending(key)
            self.model.add(key, transfer.name, UPLOAD, transfer.size, now=self._clock(),
                           done=transfer.done)
            self._offer(transfer)
        else:
            transfer.state = State.DOWNLOADING
            if transfer.listed:
                self.model.add(key, transfer.name, DOWNLOAD, transfer.size, now=self._clock(),
                               done=transfer.done)
            assert transfer.path is not None
            self.client.download(transfer.file_id, transfer.path, transfer_id=key)
            if transfer.purpose != "save":
                self._forget(key)  # into this window's folder, gone when it closes
        self._refresh(transfer.file_id or key)

    def _ask_save_path(self, suggested: str) -> str | None:
        chosen, _filter = QFileDialog.getSaveFileName(self.window, "Save the file as",
                                                      suggested)
        return chosen or None

    def save(self, info: dict[str, Any], conv: Conversation | None = None) -> str | None:
        """*Save as…*: ask where (the download folder and the sanitised name first),
        then download there; returns the download's id (None: not asked, or refused)."""
        file_id = info.get("file")
        if not isinstance(file_id, str) or info.get("gone"):
            return None
        name = safe_save_name(str(info.get("name", "")))
        folder = Path(Preferences.load().download_dir)
        chosen = self.ask_save_path(str(folder / name))
        if not chosen:
            return None
        destination = Path(chosen)
        destination = destination.with_name(safe_save_name(destination.name, name))
        size = int(info.get("size") or 0)
        key = self.client.download(file_id, destination)
        conv = conv or self.window.current()
        self._transfers[key] = _Transfer(key, DOWNLOAD, name, size, path=destination,
                                         file_id=file_id, state=State.DOWNLOADING,
                                         conv_key=conv.key if conv is not None else None)
        self._saved[file_id] = key
        self.model.add(key, name, DOWNLOAD, size, now=self._clock())
        self._refresh(file_id)
        return key

    def _confirm_open(self, path: Path) -> bool:
        box = QMessageBox(QMessageBox.Icon.Warning, "Open a program?",
                          f"{path.name} is a program or a script: opening it runs it, with "
                          "everything you may do on this computer. Open it only if you know "
                          "what it is and trust who sent it.",
                          QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Cancel,
                          self.window)
        box.setTextFormat(Qt.TextFormat.PlainText)  # the name is a peer's
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Open

    def open_saved(self, key: str) -> bool:
        """Open a saved file with the system's program, after the warning for programs."""
        transfer = self._transfers.get(key)
        if transfer is None or transfer.state is not State.DONE or transfer.path is None:
            return False
        if is_executable(transfer.path) and not self.confirm_open(transfer.path):
            return False
        self.opened.append(transfer.path)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(transfer.path)))
        return True

    # --- pictures ---------------------------------------------------------------------------

    def _decode_file(self, key: str, path: Path, shown: _Shown) -> None:
        shown.asked = True
        self.loader.load(("show", key), str(path), max_side=PREVIEW_SIDE)

    def _fetch(self, file_id: str, name: str, size: int, purpose: str) -> None:
        """Download a picture into this window's folder, to show (never to open)."""
        if not _FILE_ID.fullmatch(file_id):
            return
        destination = self._cache / f"{purpose}-{file_id}"
        if destination.exists():
            self._saved_to_cache(file_id, name, destination, purpose)
            return
        if purpose == "show" and self._fetching() >= SHOW_FETCHES:
            self._waiting.append((file_id, name, size))  # in turn: after one ends
            return
        key = self.client.download(file_id, destination)
        self._forget(key)  # into this window's folder, gone when it closes
        self._transfers[key] = _Transfer(key, DOWNLOAD, name, size, purpose=purpose,
                                         path=destination, file_id=file_id,
                                         state=State.DOWNLOADING, listed=purpose == "view")
        if purpose == "view":
            self.model.add(key, name, DOWNLOAD, size, now=self._clock())

    def _fetching(self) -> int:
        return sum(1 for t in self._transfers.values()
                   if t.purpose == "show" and t.state is State.DOWNLOADING)

    def _fetch_next(self) -> None:
        while self._waiting and self._fetching() < SHOW_FETCHES:
            self._fetch(*self._waiting.popleft(), "show")

    def _saved_to_cache(self, file_id: str, name: str, path: Path, purpose: str) -> None:
        if purpose == "view":
            self.loader.load(("view", file_id, name), str(path))
        else:
            shown = self._shown.get(file_id)
            if shown is not None:
                self._decode_file(file_id, path, shown)

    def _picture_for(self, entry: MessageEntry, info: dict[str, Any]) -> _Shown | None:
        """The inline picture of a row, started the first time the row is laid out."""
        if not _is_picture(info):
            return None
        file_id = info.get("file")
        key = file_id if isinstance(file_id, str) else entry.local_id
        if key is None:
            return None
        shown = self._shown.get(key)
        if shown is not None:
            return shown
        shown = self._shown[key] = _Shown()
        if info.get("gone"):
            shown.note = ""
            return shown
        preview = info.get("preview")
        if preview is not None:
            shown.asked = True
            self.loader.load_preview(("show", key), preview)
        elif isinstance(file_id, str) and int(info.get("size") or 0) <= AUTO_FETCH:
            self._fetch(file_id, str(info.get("name", "")), int(info.get("size") or 0), "show")
        else:
            shown.note = "click to see the picture"
        return shown

    @Slot(object, object)
    def _loaded(self, key: object, picture: Picture) -> None:
        if not isinstance(key, tuple):
            return
        if key[0] == "view":
            self._show_viewer(key[2], picture)
            return
        shown = self._shown.get(key[1])
        if shown is None:
            return
        shown.image = picture.image
        shown.note = "" if picture.image is not None else (picture.error or TOO_LARGE)
        for other_key, posted in self._posted.items():  # the same picture, posted
            if other_key == key[1]:
                self._shown[posted] = shown
        self._refresh(key[1])

    def view_picture(self, info: dict[str, Any], entry: MessageEntry | None = None) -> None:
        """Show the full picture in a viewer (fetched first, into this window's folder)."""
        name = str(info.get("name", "picture"))
        if entry is not None and entry.local_id in self._transfers:  # our own, not posted
            path = self._transfers[entry.local_id].path
            if path is not None:
                self.loader.load(("view", entry.local_id, name), str(path))
            return
        for transfer in self._transfers.values():  # ours: the file is here
            if transfer.direction == UPLOAD and transfer.file_id == info.get("file") \
                    and transfer.path is not None:
                self.loader.load(("view", transfer.file_id, name), str(transfer.path))
                return
        file_id = info.get("file")
        if isinstance(file_id, str) and not info.get("gone"):
            self._fetch(file_id, name, int(info.get("size") or 0), "view")

    def _show_viewer(self, name: str, picture: Picture) -> None:
        dialog = QDialog(self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowTitle(name)  # a window title is plain text
        layout = QVBoxLayout(dialog)
        label = QLabel()
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if picture.image is not None:
            label.setPixmap(QPixmap.fromImage(picture.image))
        else:
            label.setText(picture.error or TOO_LARGE)
        area = QScrollArea()
        area.setWidget(label)
        area.setWidgetResizable(True)
        layout.addWidget(area)
        screen = self.window.screen().availableGeometry() if self.window.screen() else None
        width = min(picture.width + 40, screen.width() * 9 // 10) if screen else 800
        height = min(picture.height + 40, screen.height() * 9 // 10) if screen else 600
        dialog.resize(max(width, 240), max(height, 160))
        self._viewers = [v for v in self._viewers if v.isVisible()] + [dialog]
        dialog.show()

    # --- what a row shows -------------------------------------------------------------------

    def file_row(self, entry: MessageEntry) -> FileRow | None:
        """For the delegate: the file box of ``entry`` (a row with a ``file``)."""
        info = file_of(entry)
        if info is None:
            return None
        name = str(info.get("name", "file"))
        size = int(info.get("size") or 0)
        detail = f"{format_size(size)} · {_kind(info)}"
        shown = self._picture_for(entry, info)
        row = FileRow(title=name, detail=detail)
        if shown is not None:
            row.picture, row.picture_note = shown.image, shown.note
        if info.get("gone"):
            row.state = "no longer kept by the host"
            return row
        if entry.seq is None:  # our upload, not posted yet
            transfer = self._transfers.get(entry.local_id or "")
            if transfer is not None:
                self._describe(transfer, row, "Uploading")
            return row
        file_id = info.get("file")
        key = self._saved.get(file_id) if isinstance(file_id, str) else None
        transfer = self._transfers.get(key or "")
        actions: list[tuple[str, str]] = [("save", "Save as…")]
        if transfer is not None:
            self._describe(transfer, row, "Downloading")
            if transfer.state is State.DONE:
                row.state = f"Saved as {transfer.path}"
                actions = [("open", "Open"), ("save", "Save again…")]
            elif transfer.state in (State.UPLOADING, State.DOWNLOADING):
                actions = list(row.actions)
            else:
                actions = [*row.actions, *actions]
        if shown is not None:
            actions.append(("view", "View"))
        row.actions = tuple(actions)
        return row

    def _describe(self, transfer: _Transfer, row: FileRow, verb: str) -> None:
        state = transfer.state
        if state in (State.UPLOADING, State.DOWNLOADING):
            moved = self.model.transfer(transfer.key) if transfer.listed else None
            done = moved.done if moved is not None else transfer.done
            row.fraction = done / transfer.size if transfer.size else 0.0
            parts = [f"{verb} {row.fraction * 100:.0f} %"]
            speed = moved.speed() if moved is not None else None
            if speed:
                parts.append(f"{format_size(speed)}/s")
                parts.append(f"{format_duration(moved.seconds_left())} left")
            row.state = " · ".join(parts)
            row.actions = (("cancel", "Cancel"),)
        elif state is State.FAILED:
            row.state, row.failed = f"⚠ {transfer.error}", True
            row.actions = (("retry", "Retry"),)
        elif state is State.CANCELLED:
            row.state = "Cancelled"
            row.actions = (("retry", "Retry"),)
        elif state is State.STOPPED:
            row.state = f"Stopped: {transfer.error}" if transfer.error else "Stopped"
            row.actions = (("retry", "Retry"), ("cancel", "Cancel"))
        elif state is State.DONE and transfer.direction == UPLOAD:
            row.state = "Sent"

    # --- clicks and the context menu --------------------------------------------------------

    @Slot(int)
    def _tab_changed(self, _index: int) -> None:
        conv = self.window.current()
        if conv is not None:
            self.attach(conv)

    def attach(self, conv: Conversation) -> None:
        """Give a conversation's view file clicks and menu entries (once per view)."""
        view = conv.view
        if view.property("filesAttached"):
            return
        view.setProperty("filesAttached", True)
        view.delegate().files = self
        view.viewport().installEventFilter(self)
        save = QAction("Save file &as…", view)
        save.triggered.connect(lambda: self._act_on_current(conv, "save"))
        show = QAction("&View picture", view)
        show.triggered.connect(lambda: self._act_on_current(conv, "picture"))
        view.addAction(save)
        view.addAction(show)

    def _act_on_current(self, conv: Conversation, what: str) -> None:
        row = conv.view.current_row()
        if 0 <= row < conv.model.rowCount():
            self.act(conv, conv.model.entry(row), what)

    def act(self, conv: Conversation, entry: MessageEntry, what: str) -> None:
        """What a click on a file row's link (or its menu entry) asks for."""
        info = file_of(entry)
        if info is None or entry.kind != RowKind.MESSAGE:
            return
        file_id = info.get("file")
        if what == "save" and entry.seq is not None:
            self.save(info, conv)
        elif what in ("picture", "view") and _is_picture(info):
            self.view_picture(info, entry)
        elif what in ("cancel", "retry"):
            key = entry.local_id if entry.seq is None else self._saved.get(str(file_id))
            if key is not None:
                (self.cancel if what == "cancel" else self.retry)(key)
        elif what == "open":
            key = self._saved.get(str(file_id))
            if key is not None:
                self.open_saved(key)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.MouseButtonRelease and \
                event.button() == Qt.MouseButton.LeftButton:
            for conv in self._conversations():
                if conv.view.viewport() is watched:
                    pos = event.position().toPoint()
                    row = conv.view.row_at(pos)
                    if row < 0:
                        return False
                    entry = conv.model.entry(row)
                    local = pos - conv.view.row_rect(row).topLeft()
                    what = conv.view.delegate().file_action_at(entry, local)
                    if what is None:
                        return False
                    self.act(conv, entry, what)
                    return True
        return False

    def _conversations(self) -> list[Conversation]:
        return list(self.window._conversations.values())

    # --- repainting -------------------------------------------------------------------------

    def _repaint(self) -> None:
        """Progress moved: the views in front paint again (no height changes)."""
        conv = self.window.current()
        if conv is not None:
            conv.view.viewport().update()

    def _refresh(self, key: str) -> None:
        """Rows showing ``key`` (a file id or an offer id) are measured and painted again."""
        keys = {key, *(k for k, v in self._posted.items() if v == key)}
        if key in self._posted:
            keys.add(self._posted[key])
        for conv in self._conversations():
            attached = conv.view.property("filesAttached")
            model = conv.model
            for row, entry in model.file_rows():
                info = file_of(entry)
                if info is None:
                    continue
                if info.get("file") in keys or entry.local_id in keys:
                    if attached:
                        conv.view.delegate().forget(entry.uid)
                    model.refresh_row(row)

    def shut_down(self) -> None:
        """The window closes: cancel what moves, drop this window's picture folder."""
        for key, transfer in list(self._transfers.items()):
            if transfer.state in (State.UPLOADING, State.DOWNLOADING):
                transfer.cancelled = True
                self.client.cancel_transfer(key)  # the journal keeps it, to go on next time
            if transfer.direction == UPLOAD and transfer.path is not None \
                    and transfer.path.is_relative_to(self._cache):
                self._forget(key)  # a pasted picture: its file goes with the folder
        self.loader.wait(2000)
        shutil.rmtree(self._cache, ignore_errors=True)


def _preview_of(path: Path) -> dict[str, Any] | None:
    """``make_preview``, on a worker thread; None (send without one) if it fails."""
    try:
        return make_preview(path)
    except Exception:  # a decoder bug: send without a preview
        log.exception("making a preview failed")
        return None
