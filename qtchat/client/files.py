"""The client's side of a file transfer: one upload or download on its own connection.

``ChatClient`` asks the host first (``file_offer`` → ``file_accepted``, ``file_get`` →
``file_ticket``), then runs one of these with the token: a ``Connector`` of its own
(the same host, port, TLS and pinned certificate as the chat), the first line, one
answer line, then raw bytes (PROTOCOL-FEATURES §2).

- ``Upload`` sends the file from the offset the host gives (resume), a slice at a time
  while less than ``WINDOW`` waits in the socket, so a large file never sits in memory
  and the window keeps repainting; it ends with the host's ``upload_done`` (the message
  is posted) or its ``error``.
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
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QSslSocket

from qtchat.client.connector import Connector, Ending
from qtchat.client.errors import ConnectError, Endpoint

log = logging.getLogger(__name__)

SLICE = 256 << 10  # bytes read from the file per write
WINDOW = 1 << 20  # bytes waiting in the socket before the upload waits
MAX_LINE = 8 << 10  # the host's answer line; longer is not a qtchat host


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

    def close_file(self) -> None:
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
