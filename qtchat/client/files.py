"""The client's side of a file transfer: one upload or download on its own connection.

``ChatClient`` asks the host first (``file_offer`` → ``file_accepted``, ``file_get`` →
``file_ticket``), then runs one of these with the token: a ``Connector`` of its own
(the same host, port, TLS and pinned certificate as the chat), the first line, one
answer line, then raw bytes (PROTOCOL-FEATURES §2).

- ``Upload`` sends the file from the offset the host gives (resume). On a plain socket a
  thread of its own (``_Sender``) hands the file to the kernel with ``os.sendfile``
  (no copy through Python, and nothing per chunk on the GUI thread); on TLS (Qt's
  socket, which only its own thread may use) a slice at a time while less than
  ``WINDOW`` waits in the socket, so a large file never sits in memory and the window
  keeps repainting. It ends with the host's ``upload_done`` (the message is posted)
  or its ``error``.
- ``Download`` writes into ``<destination>.part`` and asks from that file's length, so a
  download cut short continues where it stopped (the same ticket for 10 minutes, or a
  new one); the bytes are hashed as they come and the part file becomes the destination
  only if the SHA-256 matches the ticket's. A name a peer sent never reaches a path here:
  the caller chooses the destination.

Signals: ``progress(done, total)``, ``succeeded(object)`` (an upload: ``(file, seq)``; a
download: the destination ``Path``), ``failed(code, sentence)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtNetwork import QSslSocket

from qtchat import worker
from qtchat.client.connector import Connector, Ending
from qtchat.client.errors import ConnectError, Endpoint

log = logging.getLogger(__name__)

SLICE = 256 << 10  # bytes read from the file per write
WINDOW = 1 << 20  # bytes waiting in the socket before the upload waits
MAX_LINE = 8 << 10  # the host's answer line; longer is not a qtchat host
# Bytes a plain upload's thread hands the kernel per sendfile, at most.
SENDFILE_STEP = 1 << 20
# A plain upload's thread says how far it got every this many bytes (and at the end): a
# nearly full socket takes little per sendfile, and each report is a GUI-thread event.
PROGRESS_STEP = 1 << 20
# ... and sends no further than this many bytes past the last report the GUI thread has
# taken: what the person sees stays close to what went, and a cancel (or the app closing)
# stops the upload within this of where the progress bar stood.
AHEAD = 8 << 20
# The errors of a connection the host has closed: its answer (or Qt's) says why.
_CONNECTION_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF)


class _Sender(QObject):
    """A plain upload's bytes, sent by a thread of its own: ``os.sendfile`` from the
    file to a ``dup`` of the socket's descriptor (Qt's socket has nothing queued by
    then: the host answered the first line), waiting with ``poll`` while the socket
    buffer is full. Qt never learns of these bytes and needs not: it only reads the
    host's answer. ``sent(offset)`` and ``ended(outcome)`` are queued to the thread
    that made this object: ``outcome`` is None (every byte is out), ``"short"`` (the
    file became shorter), ``"stopped"``, or the ``OSError`` that ended it. That thread
    calls ``seen(offset)`` once it has taken a ``sent``: the sender keeps within
    ``AHEAD`` of it. ``finished(outcome)`` follows ``ended`` on that thread, once the
    sender's thread is over; the sender has no parent and is held until then
    (``worker.hold``): otherwise its thread could hold the last reference once its
    Upload went with its client (the race ``qtchat.worker`` explains)."""

    sent = Signal(object)
    ended = Signal(object)
    finished = Signal(object)

    def __init__(self, descriptor: int, path: Path, offset: int, size: int) -> None:
        super().__init__()
        # A descriptor of its own: a close on the GUI's side never pulls it away.
        self._socket = socket.socket(fileno=os.dup(descriptor))
        self._path = path
        self._offset = offset
        self._size = size
        self._stop = False
        self._seen = offset  # the last report the GUI thread has taken
        self._seen_changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="qtchat-send", daemon=True)
        self.ended.connect(self._on_ended, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        worker.hold(self)
        self._thread.start()

    @Slot(object)
    def _on_ended(self, outcome: object) -> None:
        worker.release(self, self._thread)
        self.finished.emit(outcome)

    def stop(self) -> None:
        """End the sending now (a cancel, or the host's answer came first); the host
        keeps what it received, for a resume."""
        self._stop = True
        with contextlib.suppress(OSError):  # (closed already: the thread is over)
            self._socket.shutdown(socket.SHUT_WR)  # wakes a poll at once
        self.seen(self._seen)  # wakes a wait for the GUI thread

    def seen(self, offset: int) -> None:
        with self._seen_changed:
            self._seen = offset
            self._seen_changed.notify()

    def _run(self) -> None:
        try:
            outcome = self._send()
        except OSError as exc:
            outcome = exc
        finally:
            self._socket.close()
        self.ended.emit(outcome)

    def _send(self) -> object:
        out = self._socket.fileno()
        reported = self._offset
        poller = select.poll()
        poller.register(out, select.POLLOUT)
        with open(self._path, "rb") as source:
            descriptor = source.fileno()
            while self._offset < self._size:
                with self._seen_changed:
                    while not self._stop and self._offset - self._seen >= AHEAD:
                        self._seen_changed.wait(1.0)
                if self._stop:
                    return "stopped"
                try:
                    count = os.sendfile(out, descriptor, self._offset,
                                        min(SENDFILE_STEP, self._size - self._offset))
                except (BlockingIOError, InterruptedError):
                    poller.poll(250)
                    continue
                if count == 0:
                    return "short"
                self._offset += count
                if self._offset - reported >= PROGRESS_STEP or self._offset >= self._size:
                    reported = self._offset
                    self.sent.emit(self._offset)
        return None


class _Transfer(QObject):
    progress = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str, str)

    def __init__(self, endpoint: Endpoint, token: str, *, pin_store: Any = None,
                 connect_timeout: float = 10.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.endpoint = endpoint
        self.token = token
        self.done = False
        self._line = bytearray()
        self._answered = False
        self._connector = Connector(self, connect_timeout=connect_timeout, pin_store=pin_store)
        self._connector.ready.connect(self._on_ready)
        self._connector.readable.connect(self._on_readable)
        self._connector.ended.connect(self._on_ended)
        self._connector.failed.connect(self._on_failed)

    def start(self) -> None:
        self._connector.start(self.endpoint)

    def cancel(self) -> None:
        """Stop now; what moved is kept for a resume."""
        if not self.done:
            self._finish_failed("cancelled", "Cancelled.")

    # --- the connection ------------------------------------------------------------------

    def first_line(self) -> dict[str, Any]:
        raise NotImplementedError

    @Slot()
    def _on_ready(self) -> None:
        self._connector.write(json.dumps(self.first_line()).encode() + b"\n")

    @Slot()
    def _on_readable(self) -> None:
        connector = self._connector
        while not self.done and connector.socket is not None:
            if not connector.read():
                return
            if not connector.inbox:
                break
            data = bytes(connector.inbox)
            connector.inbox.clear()
            self._take(data)

    def _take(self, data: bytes) -> None:
        """Bytes from the host: an answer line, then (downloads) raw bytes."""
        while data and not self.done:
            if self._answered:
                self.raw(data)
                return
            cut = data.find(b"\n")
            if cut < 0:
                self._line += data
                if len(self._line) > MAX_LINE:
                    self._finish_failed("protocol", "The host's answer is not a qtchat one.")
                return
            self._line += data[:cut]
            data = data[cut + 1:]
            try:
                answer = json.loads(bytes(self._line))
            except ValueError:
                answer = None
            self._line.clear()
            if not isinstance(answer, dict):
                self._finish_failed("protocol", "The host's answer is not a qtchat one.")
                return
            self._connector.settle()
            if answer.get("type") == "error":
                code = str(answer.get("code", "error"))[:64]
                self._finish_failed(code, str(answer.get("message", ""))[:4096] or code)
                return
            self._answered = self.answer(answer)

    def answer(self, frame: dict[str, Any]) -> bool:
        """The host's line; True if raw bytes follow it."""
        raise NotImplementedError

    def raw(self, data: bytes) -> None:
        self._finish_failed("protocol", "The host sent bytes it should not have.")

    @Slot(object)
    def _on_ended(self, ending: Ending) -> None:
        if self.done:
            return
        self._connector.read_rest()
        if self._connector.inbox:
            data = bytes(self._connector.inbox)
            self._connector.inbox.clear()
            self._take(data)
        if not self.done:
            self.ended()

    def ended(self) -> None:
        self._finish_failed("network", "The connection to the host was lost; the transfer "
                                       "can go on from where it stopped.")

    @Slot(object, bool)
    def _on_failed(self, error: ConnectError, _retry: bool) -> None:
        if not self.done:
            self._finish_failed(error.kind, str(error))

    def _finish_failed(self, code: str, sentence: str) -> None:
        self.done = True
        self.close_file()
        self._connector.drop()
        self.failed.emit(code, sentence)

    def _finish_ok(self, result: object) -> None:
        self.done = True
        self.close_file()
        self._connector.close(None)
        self.succeeded.emit(result)

    def close_file(self) -> None:
        pass


class Upload(_Transfer):
    """Send ``path`` for the token of a ``file_accepted``."""

    def __init__(self, endpoint: Endpoint, token: str, path: Path | str, size: int,
                 **options: Any) -> None:
        super().__init__(endpoint, token, **options)
        self.path = Path(path)
        self.size = size
        self.offset = 0
        self._file: Any = None
        self._sender: _Sender | None = None
        self._waiting_done = False

    def first_line(self) -> dict[str, Any]:
        return {"type": "upload", "token": self.token}

    def answer(self, frame: dict[str, Any]) -> bool:
        kind = frame.get("type")
        if kind == "upload_ready" and not self._waiting_done and self._file is None:
            offset = frame.get("offset")
            if not isinstance(offset, int) or isinstance(offset, bool) \
                    or not 0 <= offset <= self.size:
                self._finish_failed("protocol", "The host asked for bytes the file lacks.")
                return False
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 (open while it sends)
                self._file.seek(offset)
            except OSError as exc:
                self._finish_failed("file", f"Cannot read {self.path.name}: {exc.strerror}")
                return False
            self.offset = offset
            socket = self._connector.socket
            assert socket is not None
            if not isinstance(socket, QSslSocket) and hasattr(os, "sendfile") \
                    and socket.bytesToWrite() == 0:
                self._sender = sender = _Sender(int(socket.socketDescriptor()), self.path,
                                                offset, self.size)
                sender.sent.connect(self._sent, Qt.ConnectionType.QueuedConnection)
                sender.finished.connect(self._sent_all)
                # Deleted with its client (no cancel): the thread must not wait on.
                self.destroyed.connect(sender.stop)
                sender.start()
                return False
            socket.bytesWritten.connect(self._send_more)
            if isinstance(socket, QSslSocket):
                socket.encryptedBytesWritten.connect(self._send_more)
            self._send_more()
            return False
        if kind == "upload_done":
            file_id, seq = frame.get("file"), frame.get("seq")
            if isinstance(file_id, str) and isinstance(seq, int):
                self._finish_ok((file_id, seq))
                return False
        self._finish_failed("protocol", "The host's answer is not a qtchat one.")
        return False

    @Slot()
    def _send_more(self) -> None:
        socket = self._connector.socket
        if self.done or self._file is None or socket is None:
            return
        while self.offset < self.size:
            queued = socket.bytesToWrite()
            if isinstance(socket, QSslSocket):
                queued += socket.encryptedBytesToWrite()
            if queued >= WINDOW:
                return  # bytesWritten brings us back
            try:
                data = self._file.read(min(SLICE, self.size - self.offset))
            except OSError as exc:
                self._finish_failed("file", f"Cannot read {self.path.name}: {exc.strerror}")
                return
            if not data:
                self._finish_failed("file", f"{self.path.name} became shorter while sending.")
                return
            socket.write(data)
            self.offset += len(data)
            self.progress.emit(self.offset, self.size)
            if self.done:  # cancelled from a slot of progress
                return
        self._waiting_done = True
        self.close_file()

    @Slot(object)
    def _sent(self, offset: int) -> None:
        if self.done:
            return
        self.offset = offset
        self.progress.emit(self.offset, self.size)
        if self._sender is not None:
            self._sender.seen(offset)

    @Slot(object)
    def _sent_all(self, outcome: object) -> None:
        """The sender's thread is over (see ``_Sender``)."""
        if self._sender is not None:
            with contextlib.suppress(RuntimeError, TypeError):
                self.destroyed.disconnect(self._sender.stop)
        self._sender = None
        if self.done:
            return
        if outcome is None:
            self._waiting_done = True  # the host's upload_done (or error) comes next
        elif outcome == "short":
            self._finish_failed("file", f"{self.path.name} became shorter while sending.")
        elif isinstance(outcome, OSError) and outcome.errno not in _CONNECTION_GONE:
            self._finish_failed("file", f"Cannot send {self.path.name}: {outcome.strerror}")
        # else the connection is gone: Qt says so (or the host's error line does)

    def close_file(self) -> None:
        if self._sender is not None:
            self._sender.stop()  # (kept until its thread says it is over)
        if self._file is not None:
            self._file.close()
            self._file = None


class Download(_Transfer):
    """Fetch a ticket's file into ``destination`` (via ``destination.part``)."""

    def __init__(self, endpoint: Endpoint, token: str, destination: Path | str, size: int,
                 sha256: str, **options: Any) -> None:
        super().__init__(endpoint, token, **options)
        self.destination = Path(destination)
        self.part = self.destination.with_name(self.destination.name + ".part")
        self.size = size
        self.sha256 = sha256.lower()
        self.offset = 0
        self._file: Any = None
        self._hash = hashlib.sha256()

    def start(self) -> None:
        try:
            self._file = open(self.part, "ab")  # noqa: SIM115 (open while it receives)
            held = self._file.tell()
            if held > self.size:
                self._file.truncate(0)
                held = 0
            with open(self.part, "rb") as done:  # what is held counts toward the hash
                while chunk := done.read(1 << 20):
                    self._hash.update(chunk)
        except OSError as exc:
            self.close_file()
            self.done = True
            self.failed.emit("file", f"Cannot write {self.part}: {exc.strerror}")
            return
        self.offset = held
        super().start()

    def first_line(self) -> dict[str, Any]:
        return {"type": "download", "token": self.token, "offset": self.offset}

    def answer(self, frame: dict[str, Any]) -> bool:
        if frame.get("type") == "download_ready" and frame.get("size") == self.size \
                and frame.get("offset") == self.offset:
            if self.offset == self.size:
                self._check()
            return True
        self._finish_failed("protocol", "The host's answer is not a qtchat one.")
        return False

    def raw(self, data: bytes) -> None:
        room = self.size - self.offset
        if len(data) > room:
            self._finish_failed("protocol", "The host sent more than the file holds.")
            return
        try:
            self._file.write(data)
        except OSError as exc:
            self._finish_failed("disk_full" if exc.errno == 28 else "file",
                                f"Cannot write {self.part.name}: {exc.strerror}")
            return
        self._hash.update(data)
        self.offset += len(data)
        self.progress.emit(self.offset, self.size)
        if self.offset == self.size and not self.done:
            self._check()

    def _check(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self._finish_failed("file", f"Cannot write {self.part.name}: {exc.strerror}")
            return
        self.close_file()
        if self._hash.hexdigest() != self.sha256:
            with contextlib.suppress(OSError):
                self.part.unlink()
            self._finish_failed("checksum_mismatch", "The file that arrived does not match "
                                                     "its SHA-256; it was not kept.")
            return
        try:
            os.replace(self.part, self.destination)
        except OSError as exc:
            self._finish_failed("file", f"Cannot save {self.destination.name}: {exc.strerror}")
            return
        self._finish_ok(self.destination)

    def close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


# --- remembering unfinished transfers across an app restart --------------------------------

JOURNAL_NAME = "transfers.json"
# Failures after which there is nothing to resume: the host refused it, or it is gone.
FINAL_CODES = frozenset({
    "checksum_mismatch", "file_too_large", "quota_exceeded", "invalid_name", "bad_frame",
    "no_such_room", "not_in_room", "no_such_user", "not_permitted", "muted", "file",
    "protocol",
})
# How often progress is written down at most (seconds): the host's offset (uploads) and
# the part file's length (downloads) are what a resume goes on from; this is for show.
SAVE_EVERY = 1.0


@dataclasses.dataclass(slots=True, kw_only=True)
class PendingTransfer:
    """One unfinished transfer, as remembered: ``kind`` ``upload`` or ``download``; its
    ``id`` (the offer's or the ``file_get``'s, reused to resume); ``host``
    (``address:port`` of the chat); ``path`` (the file sent, or the destination chosen);
    ``file`` (the host's id, once known); ``size``; ``offset`` (bytes moved when last
    written down); ``offer`` (an upload's ``room``/``to``/``text``/``mime``/``preview``);
    ``state`` (``running``, or ``stopped`` with the ``reason`` sentence)."""

    kind: str
    id: str
    host: str
    path: str
    file: str | None = None
    size: int = 0
    offset: int = 0
    offer: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: str = "running"
    reason: str = ""
    updated: float = 0.0


class TransferJournal(QObject):
    """Unfinished uploads and downloads, kept in ``<data_dir>/transfers.json`` so the app
    can offer to resume them after a restart (issue 15).

    ``attach(client)`` makes a ``ChatClient`` report every ``send_file`` and
    ``download`` here (``client.journal``) and follows its signals: progress is written
    down at most once a second, a transfer that ended (``fileSent``, ``fileSaved``) or
    was refused for good leaves the record, one cut short stays ``stopped``. At start
    the window asks ``pending_transfers()`` and calls ``resume(id)`` or
    ``resume_all()`` once connected (or ``forget(id)``): an upload is offered again
    under its id (the host, which keeps it by identity, answers with the bytes it
    holds), a download asks again for a ticket and goes on from its ``.part`` file.

    The file is replaced atomically (written beside, fsynced, renamed), so a crash
    leaves the old record or the new one; an unreadable one counts as empty.
    ``changed`` is emitted after each change, for a transfers panel.
    """

    changed = Signal()

    def __init__(self, data_dir: Path | str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.folder = Path(data_dir)
        self.path = self.folder / JOURNAL_NAME
        self._entries: dict[str, PendingTransfer] = self._load()
        self._client: Any = None
        self._saved_at = 0.0

    # --- what the window calls --------------------------------------------------------------

    def attach(self, client: Any) -> None:
        """Follow ``client`` (a ``ChatClient``): its transfers are remembered here."""
        self._client = client
        client.journal = self
        client.transferProgress.connect(self._progress)
        client.fileSent.connect(lambda transfer_id, *_: self._ended(transfer_id))
        client.fileSaved.connect(lambda transfer_id, *_: self._ended(transfer_id))
        client.transferFailed.connect(self._failed)
        client.fileAccepted.connect(self._accepted)
        client.fileTicket.connect(self._ticketed)

    def pending_transfers(self, host: str | None = None) -> list[PendingTransfer]:
        """Every unfinished transfer (of ``host`` only, if given), oldest first."""
        return sorted((e for e in self._entries.values() if host is None or e.host == host),
                      key=lambda e: (e.updated, e.id))

    def host(self) -> str:
        """The key (``address:port``) of the attached client's host, as entries keep it."""
        return _host(self._client)

    def resume(self, transfer_id: str) -> bool:
        """Start ``transfer_id`` again on the attached client (connected to its host);
        False if it is unknown, the client is elsewhere, or its file is missing."""
        entry = self._entries.get(transfer_id)
        client = self._client
        if entry is None or client is None or _host(client) != entry.host:
            return False
        if entry.kind == "upload":
            if not Path(entry.path).is_file():
                self._stopped(entry, f"{Path(entry.path).name} is no longer there.")
                return False
            offer = {k: v for k, v in entry.offer.items()
                     if k in ("room", "to", "text", "mime", "preview")}
            client.send_file(entry.path, offer_id=entry.id, **offer)
        else:
            if entry.file is None:
                return False
            client.download(entry.file, entry.path, transfer_id=entry.id)
        return True

    def resume_all(self) -> list[str]:
        """``resume`` every transfer of the attached client's host; the ids started."""
        client = self._client
        if client is None:
            return []
        return [e.id for e in self.pending_transfers(_host(client)) if self.resume(e.id)]

    def forget(self, transfer_id: str) -> None:
        """Drop a transfer from the record (the person gave up on it)."""
        if self._entries.pop(transfer_id, None) is not None:
            self._save()

    # --- what ChatClient reports -------------------------------------------------------------

    def upload_begun(self, transfer_id: str, path: Path, offer: dict[str, Any]) -> None:
        known = self._entries.get(transfer_id)
        self._entries[transfer_id] = PendingTransfer(
            kind="upload", id=transfer_id, host=_host(self._client), path=str(Path(path).resolve()),
            file=known.file if known else None, offset=known.offset if known else 0,
            size=known.size if known else 0,
            offer={k: v for k, v in offer.items() if v is not None}, updated=time.time())
        self._save()

    def download_begun(self, transfer_id: str, file_id: str, destination: Path) -> None:
        known = self._entries.get(transfer_id)
        self._entries[transfer_id] = PendingTransfer(
            kind="download", id=transfer_id, host=_host(self._client),
            path=str(Path(destination).resolve()), file=file_id,
            size=known.size if known else 0, offset=known.offset if known else 0,
            updated=time.time())
        self._save()

    @Slot(object)
    def _accepted(self, frame: Any) -> None:
        entry = self._entries.get(frame.id)
        if entry is not None:
            entry.file, entry.offset, entry.state, entry.reason = frame.file, frame.offset, \
                "running", ""
            self._save()

    @Slot(object)
    def _ticketed(self, frame: Any) -> None:
        entry = self._entries.get(frame.id or "")
        if entry is not None:
            entry.size, entry.state, entry.reason = frame.size, "running", ""
            self._save()

    @Slot(str, int, int)
    def _progress(self, transfer_id: str, done: int, total: int) -> None:
        entry = self._entries.get(transfer_id)
        if entry is None:
            return
        entry.offset, entry.size = done, total
        if time.monotonic() - self._saved_at >= SAVE_EVERY:
            self._save()

    def _ended(self, transfer_id: str) -> None:
        self.forget(transfer_id)

    @Slot(str, str, str)
    def _failed(self, transfer_id: str, code: str, sentence: str) -> None:
        entry = self._entries.get(transfer_id)
        if entry is None:
            return
        if code in FINAL_CODES or (code == "no_such_file" and entry.kind == "download"):
            self.forget(transfer_id)
            return
        self._stopped(entry, sentence)

    def _stopped(self, entry: PendingTransfer, reason: str) -> None:
        entry.state, entry.reason, entry.updated = "stopped", reason, time.time()
        self._save()

    # --- on disk ---------------------------------------------------------------------------

    def _load(self) -> dict[str, PendingTransfer]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = {}
            for item in data.get("transfers", []):
                entry = PendingTransfer(**item)
                entry.state = "stopped"  # nothing runs before the app says so
                entries[entry.id] = entry
            return entries
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring an unreadable %s: %s", self.path, exc)
            return {}

    def _save(self) -> None:
        """Replace the record atomically; a failure to write is logged, never raised."""
        self._saved_at = time.monotonic()
        data = json.dumps({"version": 1, "transfers": [dataclasses.asdict(e) for e in
                                                       self._entries.values()]},
                          ensure_ascii=False).encode()
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                temporary.unlink()
        self.changed.emit()


def _host(client: Any) -> str:
    """``address:port`` of the host ``client`` is connected to (or was asked to)."""
    endpoint = getattr(client, "endpoint", None)
    return f"{endpoint.host}:{endpoint.port}" if endpoint is not None else ""
