"""Transfer connections: one upload or download of a file on its own connection to the
chat port (PROTOCOL-FEATURES §2), run by the Qt adapter.

``ChatServer`` looks at a new connection's first line; an ``upload`` or ``download``
line takes it out of the chat core (``ServerCore.hand_over``: no register deadline, no
frame or rate limits, no send-queue cap) and gives its transport to a ``Transfer``:

- an upload answers ``upload_ready`` with the offset the host holds, then takes raw
  bytes into the file store's ``UploadStream``. On a plain socket a thread of its own
  (``_Receiver``) reads, hashes and writes them a MiB at a time, has the kernel start
  writing them to disk every 8 MiB (``_WriteBehind``) and fsyncs at the end, so the
  event loop's thread does nothing per chunk and the disk works while bytes come in;
  on TLS (Qt's socket, which only the loop's thread may read) the transport's reads
  (at most 256 KiB, one per pass) are written on the loop and a second thread hashes
  the part file behind them. When the last byte is in and the hash matches, the files
  module posts the message, the adapter commits it, and only then is ``upload_done``
  written and the connection closed;
- a download answers ``download_ready``, then on a plain socket hands the file to the
  kernel with ``os.sendfile`` (no copy through Python) until the kernel refuses more,
  and waits for the socket to be writable again; on TLS it writes slices only while
  less than a window (1 MiB) is waiting in Qt's buffers. Either way a reader that stops
  reading costs the host a socket buffer and at most a window, never the file.

A transfer that moves no byte for 30 s is closed by the files module's sweep. Nothing
here decides who may do what: that is ``FilesFeature`` and ``FileStore``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

from qtchat import protocol as p
from qtchat import worker
from qtchat.protocol.files import (
    TRANSFER_FRAME_TYPES,
    Download,
    DownloadReady,
    UploadDone,
    UploadReady,
)
from qtchat.protocol.server_frames import ErrorFrame
from qtchat.server.features.files import FilesFeature
from qtchat.server.files import (
    NO_SUCH_FILE,
    DownloadStream,
    FileError,
    UploadFailed,
    UploadStream,
)
from qtchat.server.files import (
    UploadDone as StreamDone,
)
from qtchat.server.transport import RawTransport, Transport

log = logging.getLogger(__name__)

# The longest first line looked at before a connection is taken for a chat one.
FIRST_LINE_MAX = 1024
# A download's window on TLS: plain bytes waiting in Qt's buffers before it reads more.
WINDOW = 1 << 20
# Uploads larger than this flush their part file in a thread before the last bytes go in.
FLUSH_AHEAD = 8 << 20
# Bytes handed to the kernel per event-loop pass for one download (then it yields).
# 4 MiB took ~10 ms of loopback per turn: a bystander's chat p99 was 4.96x idle during
# downloads; 1 MiB: 1.34x, and the download no slower (files_bench.py --serve).
SENDFILE_TURN = 1 << 20
# Bytes an upload's thread reads (and hashes and writes) at a time, on a plain socket.
RECEIVE_SLICE = 1 << 20
# An upload's thread asks the kernel to start writing its part file to disk every this
# many bytes (``sync_file_range``), so the disk works while the bytes come in and the
# final fsync has little left: on this VM that fsync was ~0.7 s of a 1.2 s plain copy
# of 512 MiB, since a GiB stays dirty in the page cache (dirty_background_ratio 10 %).
WRITE_BEHIND = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback, do not wait for it


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """``start_writeback(fd, offset, count)`` through Linux's sync_file_range(2) (which
    ``os`` does not offer), raising OSError as ``os`` would; None where there is none.
    ctypes releases the GIL for the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start_writeback(descriptor: int, offset: int, count: int) -> None:
        if function(descriptor, offset, count, _SYNC_FILE_RANGE_WRITE) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))

    return start_writeback


start_writeback = _sync_file_range()


class _Hasher:
    """An upload's SHA-256, computed in a thread of its own from the part file just
    written (still in the page cache), so the event loop's thread only moves bytes;
    woken after each write, idle otherwise."""

    def __init__(self, stream: UploadStream) -> None:
        self._stream = stream
        self._wanted = threading.Event()
        self._stopped = False
        threading.Thread(target=self._run, name="qtchat-hash", daemon=True).start()

    def wake(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        self._stopped = True
        self._wanted.set()

    def _run(self) -> None:
        stream = self._stream
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopped or stream.finished:
                return
            try:
                while not self._stopped and not stream.rehash():
                    pass
            except OSError as exc:  # the last receive catches up, and says so
                log.info("hashing upload %s: %s", stream.file.file, exc)
                return


# The QObjects a worker thread reports through with a queued signal are held (``worker.
# hold``) until the report is handled on the loop's thread. Otherwise the thread can hold
# the last reference (its Transfer was closed and collected meanwhile): the object is
# then deleted on the worker thread while the loop delivers the queued event to it, and
# the loop calls into freed memory (a segfault within ~2,000 uploads in a stress loop).


class _Flushed(QObject):
    """Tells the event loop's thread that a flush in a worker thread is over: ``done``
    is emitted there, queued, and ``callback`` runs in this object's thread."""

    done = Signal()

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback
        self._thread: threading.Thread | None = None
        self.done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)

    def start(self, thread: threading.Thread) -> None:
        """Start ``thread``, which emits ``done`` last."""
        self._thread = thread
        worker.hold(self)
        thread.start()

    @Slot()
    def _on_done(self) -> None:
        assert self._thread is not None
        worker.release(self, self._thread)
        self._callback()


class _WriteBehind:
    """Has the kernel start writing a part file to disk every ``WRITE_BEHIND`` bytes
    appended (``start_writeback``), from a descriptor of its own, opened read-only (so
    it never writes and a close of the stream's never pulls it away). A refusal (a
    file system without it) ends the write-behind and nothing else: the final fsync
    then writes what is left, as it would have anyway."""

    def __init__(self, part: Path, offset: int) -> None:
        self._started = offset  # below it, the disk has been asked for the bytes already
        try:
            self._descriptor: int | None = os.open(part, os.O_RDONLY)
        except OSError as exc:
            log.info("no write-behind for %s: %s", part.name, exc)
            self._descriptor = None

    def written(self, offset: int) -> None:
        if self._descriptor is None or offset - self._started < WRITE_BEHIND:
            return
        writeback = start_writeback
        try:
            if writeback is None:
                raise OSError(errno.ENOSYS, "no sync_file_range")
            writeback(self._descriptor, self._started, offset - self._started)
        except OSError as exc:
            log.info("write-behind stopped: %s", exc)
            self.close()
            return
        self._started = offset

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


class _Receiver(QObject):
    """An upload on a plain socket, read by a thread of its own: ``recv_into`` one
    buffer, SHA-256 of it in memory and ``os.write`` to the part file, a MiB at a time,
    then one fsync; each of those releases the GIL, so the event loop's thread does
    nothing per chunk and chat keeps its turns however fast the bytes come. Every
    ``WRITE_BEHIND`` bytes it has the kernel start writing them to disk (where it can:
    Linux), so the disk is busy during the upload rather than all at its end. The thread
    has its own descriptor (a ``dup``), so a close on the loop's side never pulls one
    out from under it; it polls with a short timeout and looks at ``stop`` between
    reads. ``ended(outcome)`` is queued to the loop's thread: ``"complete"`` (every
    byte is in and fsynced: check and store), ``"eof"`` (the peer stopped early),
    ``"error"``, ``"stopped"`` or an ``UploadFailed``."""

    ended = Signal(object)

    def __init__(self, stream: UploadStream, descriptor: int, first: bytes,
                 on_progress: Callable[[float], None],
                 on_end: Callable[[object], None], part: Path) -> None:
        super().__init__()
        self._stream = stream
        self._part = part  # the part file, for the write-behind's own descriptor
        self._sock = socket.socket(fileno=os.dup(descriptor))
        self._first = first
        self._on_progress = on_progress
        self._on_end = on_end
        self._stop = False
        self.ended.connect(self._on_ended, Qt.ConnectionType.QueuedConnection)
        self._thread = threading.Thread(target=self._run, name="qtchat-upload", daemon=True)

    def start(self) -> None:
        worker.hold(self)
        self._thread.start()

    def stop(self) -> None:
        """From the loop's thread: end the reads (within a poll's timeout at most)."""
        self._stop = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RD)  # wakes a poll at once

    def _run(self) -> None:
        try:
            outcome = self._receive()
        except OSError as exc:
            log.info("upload %s ended: %s", self._stream.file.file, exc)
            outcome = "error"
        finally:
            with contextlib.suppress(OSError):
                self._sock.close()
        self.ended.emit(outcome)

    def _receive(self) -> object:
        stream = self._stream
        while not stream.rehash(RECEIVE_SLICE):  # after a host restart: catch up first
            if self._stop:
                return "stopped"
        if self._first:
            failed = stream.append(self._first)
            if failed is not None:
                return failed
        size = stream.file.size
        buffer = memoryview(bytearray(RECEIVE_SLICE))
        sock = self._sock
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        behind = _WriteBehind(self._part, stream.offset) if start_writeback else None
        try:
            return self._receive_rest(stream, size, buffer, sock, poller, behind)
        finally:
            if behind is not None:
                behind.close()

    def _receive_rest(self, stream: UploadStream, size: int, buffer: memoryview,
                      sock: socket.socket, poller: select.poll,
                      behind: _WriteBehind | None) -> object:
        while stream.offset < size:
            if self._stop:
                return "stopped"
            try:
                count = sock.recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                poller.poll(250)
                continue
            except OSError as exc:
                log.info("upload %s cut: %s", stream.file.file, exc)
                return "error"
            if count == 0:
                return "stopped" if self._stop else "eof"
            failed = stream.append(buffer[:count])
            if failed is not None:
                return failed
            if behind is not None:
                behind.written(stream.offset)
            self._on_progress(time.monotonic())
        stream.flush()
        return "complete"

    @Slot(object)
    def _on_ended(self, outcome: object) -> None:
        worker.release(self, self._thread)
        self._on_end(outcome)


def transfer_line(line: bytes) -> dict[str, Any] | None:
    """The JSON object of a first line if it opens a transfer, else None (a chat line)."""
    if b"upload" not in line and b"download" not in line:
        return None
    try:
        obj = p.decode_object(line)
    except p.RemoteProtocolError:
        return None
    return obj if obj.get("type") in TRANSFER_FRAME_TYPES else None


class Transfer:
    """One transfer connection (see the module docstring)."""

    def __init__(self, transport: Transport, files: FilesFeature,
                 commit: Callable[[], None], now: float,
                 on_gone: Callable[[], None] = lambda: None) -> None:
        self.transport = transport
        self._on_gone = on_gone  # the descriptor is free again
        self.files = files
        self._commit = commit  # ends the core's pass: stored before upload_done
        self.last_progress = now
        self.upload: UploadStream | None = None
        self.download: DownloadStream | None = None
        self._who: str | None = None
        self._finished = False
        self._flushing: _Flushed | None = None  # a flush ahead of the last bytes runs
        self._held = bytearray()
        self._flushed_ahead = False
        self._hasher: _Hasher | None = None
        self._receiver: _Receiver | None = None
        transport.on_readable = self._readable
        transport.on_drained = self._pump
        transport.on_peer_finished = self._peer_finished
        transport.on_closed = self._closed

    def start(self, obj: dict[str, Any], rest: bytes) -> None:
        """Answer the first line, then take ``rest`` (bytes that came with it)."""
        now = time.monotonic()
        try:
            frame = TRANSFER_FRAME_TYPES[obj["type"]].from_wire(obj)
        except (p.LocalProtocolError, TypeError):
            self._fail("bad_frame", "That transfer line is not one this host reads.")
            return
        try:
            if isinstance(frame, Download):
                self.download, self._who = self.files.open_download(
                    frame.token, frame.offset, now, window=WINDOW)
            else:
                threaded = isinstance(self.transport, RawTransport)
                self.upload, self._who = self.files.open_upload(frame.token, now,
                                                                hash_behind=not threaded)
                if not threaded:
                    self._hasher = _Hasher(self.upload)
        except FileError as exc:
            self._who = None
            sentence = ("Too many transfers at once; wait for one to end."
                        if exc.code == "rate_limited" else
                        "There is no such file, or that token has expired."
                        if exc.code == NO_SUCH_FILE else str(exc))
            self._fail(exc.code, sentence)
            return
        self.files.transfers[self] = None
        if self.download is not None:
            stream = self.download
            self.transport.write(DownloadReady(size=stream.size, offset=stream.offset).encode())
            self._pump()
            return
        assert self.upload is not None
        self.transport.write(UploadReady(offset=self.upload.offset).encode())
        if isinstance(self.transport, RawTransport):
            self.transport.pause_reading()  # the receiver's thread reads from now on
            self._receiver = _Receiver(
                self.upload, self.transport.fileno(), rest, self._progressed, self._received,
                self.files.store.folder / f"{self.upload.file.file}.part")
            self._receiver.start()
            return
        if rest or self.upload.offset >= self.upload.file.size:
            self._take(rest)
        if not self._finished:
            self._readable()  # what arrived meanwhile

    # --- uploads ------------------------------------------------------------------------

    def _readable(self) -> None:
        if self.upload is None or self._finished:
            if self.download is not None:  # a downloader has nothing to say: drop it
                self.transport.read_all()
            return
        data = self.transport.read_all()
        if data:
            self._take(data)

    def _take(self, data: bytes) -> None:
        upload = self.upload
        assert upload is not None
        if self._flushing is not None:  # the part file is being flushed: these wait
            self._held += data
            return
        left = upload.file.size - upload.offset
        if left > 0 and len(data) >= left and upload.offset >= FLUSH_AHEAD \
                and not self._flushed_ahead:
            # The last bytes are here. Flush what is on disk so far in a thread first
            # (fsync of a large file can take seconds, and the event loop serves
            # everyone's chat): the stream's own fsync then has only this chunk left.
            self._held = bytearray(data)
            self._flushed_ahead = True
            self._flush_ahead(upload)
            return
        now = time.monotonic()
        before = upload.offset
        actions = upload.receive(data, now=now)
        if self._hasher is not None:
            self._hasher.wake()
        if upload.offset != before:
            self.last_progress = now
        self._act(actions)

    def _progressed(self, now: float) -> None:
        self.last_progress = now  # from the receiver's thread: one attribute, no more

    def _received(self, outcome: object) -> None:
        """The receiver's thread is over (see ``_Receiver``)."""
        self._receiver = None
        if self._finished or self.upload is None:
            return
        if outcome == "complete":
            self._act(self.upload.receive(b"", now=time.monotonic()))
        elif isinstance(outcome, UploadFailed):
            self._act([outcome])
        elif outcome == "eof":
            self._peer_finished()
        elif outcome == "error":
            self._finished = True
            self.transport.abort()

    def _act(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, StreamDone):
                seq = self.files.post_upload(action.file)
                self._commit()  # the message is stored (and sent) before upload_done
                if seq is None or self.files.core.store.message_by_seq(seq) is None:
                    self._fail("storage_error", "The host could not post the file.")
                    return
                self._end(UploadDone(file=action.file.file, seq=seq).encode())
            elif isinstance(action, UploadFailed):
                sentence = ("The file that arrived does not match its SHA-256; nothing was "
                            "posted. Offer it again." if action.code == "checksum_mismatch"
                            else "The host could not store the file.")
                self._fail(action.code, sentence)

    def _flush_ahead(self, upload: UploadStream) -> None:
        path = self.files.store.folder / f"{upload.file.file}.part"
        self._flushing = flushing = _Flushed(self._flushed)
        transport = self.transport
        transport.pause_reading()

        def run() -> None:
            try:
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
                while not upload.rehash():  # the hash catches up here, not in the loop
                    pass
            except OSError as exc:  # the stream's own fsync (or hash) will say so
                log.info("flushing %s ahead: %s", path.name, exc)
            flushing.done.emit()  # queued to the event loop's thread

        flushing.start(threading.Thread(target=run, name="qtchat-fsync", daemon=True))

    def _flushed(self) -> None:
        self._flushing = None
        held, self._held = bytes(self._held), bytearray()
        if self._finished:
            return
        self.last_progress = time.monotonic()
        self.transport.resume_reading()
        self._take(held)

    # --- downloads ----------------------------------------------------------------------

    def _pump(self) -> None:
        stream = self.download
        if stream is None or self._finished:
            return
        transport = self.transport
        if isinstance(transport, RawTransport):
            if transport.pending():
                return  # the header first; on_drained calls again
            descriptor = transport.fileno()
            moved = 0
            while descriptor >= 0 and (args := stream.sendfile_args()) is not None:
                try:
                    sent = os.sendfile(descriptor, *args)
                except (BlockingIOError, InterruptedError):
                    transport.wait_writable()
                    break
                except OSError as exc:
                    log.info("download of %s ended: %s", stream.file.file, exc)
                    transport.abort()
                    return
                if sent == 0:
                    break
                stream.sent(sent)
                moved += sent
                if moved >= SENDFILE_TURN and not stream.done:
                    transport.wait_writable()  # yield: the loop comes back at once
                    break
            if moved:
                self.last_progress = time.monotonic()
        else:
            moved = 0
            while (data := stream.read_slice(transport.pending())) is not None:
                transport.write(data)
                moved += len(data)
            if moved:
                self.last_progress = time.monotonic()
        if stream.done:
            self._end(b"")

    # --- ending ---------------------------------------------------------------------------

    def _fail(self, code: str, sentence: str) -> None:
        self._end(ErrorFrame(code=code, message=sentence, ref=None).encode())

    def _end(self, last: bytes) -> None:
        """Write ``last`` (if any) after everything else, then close."""
        if self._finished:
            return
        self._finished = True
        if last:
            self.transport.write(last)
        self.transport.close()

    def stalled(self) -> None:
        log.info("transfer stalled for %gs; closing it", time.monotonic() - self.last_progress)
        self._finished = True
        self.transport.abort()

    def _peer_finished(self) -> None:
        if self._flushing is not None:
            return  # all bytes are in: the flush's end finishes the upload and closes
        if not self._finished:  # an upload cut short: keep what came, close
            self._finished = True
            self.transport.close()

    def _closed(self, _reason: str) -> None:
        now = time.monotonic()
        if self._hasher is not None:
            self._hasher.stop()
        self._finished = True
        if self._receiver is not None:
            self._receiver.stop()
        self.files.transfers.pop(self, None)
        if self.upload is not None:
            self.upload.close(now=now)
        if self.download is not None:
            self.download.close()
        if self._who is not None:
            self.files.transfer_ended(self._who)
            self._who = None
        self.transport.deleteLater()
        self._on_gone()
