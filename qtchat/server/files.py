"""The host's file store: offers, limits, resumable uploads and downloads, with no I/O loop.

Files and pictures (protocol features §2) go to the host, which keeps them like
history. This module is everything of that which does not depend on how bytes
reach the server: the ``files`` feature module answers ``file_offer`` and
``file_get`` with ``FileStore.offer`` / ``FileStore.ticket``, and the transport's
first-line routing hands an ``upload`` or ``download`` connection to
``FileStore.open_upload`` / ``FileStore.open_download`` and then feeds the
returned stream. Nothing here imports Qt or touches a socket, and the clock is
always passed in (``now``, seconds), so every rule with time in it is tested with
a hand-advanced clock.

Layout of the folder (one per host; every name is a server-made id, never a name
a peer sent, so a hostile name cannot leave the folder):

- ``<id>.json``: what was offered and where the offer stands, written to a
  temporary file, fsynced and renamed, so it is either the old or the new one;
- ``<id>.part``: the bytes of an unfinished upload; its length is the offset a
  resumed upload continues from (also after a ``kill -9`` of the host);
- ``<id>``: a finished file, renamed from its part file after an fsync and the
  SHA-256 check.

A meta file that says ``pending`` beside a finished ``<id>`` (the host died
between the rename and the meta update) is taken back to a part file on start:
the next upload connection finds it complete, checks the hash and finishes.

The SHA-256 is computed as bytes arrive; a store that was restarted does not
have that state and reads the part file once to catch up (``UploadStream.rehash``,
in slices so the caller can spread it over passes of its loop).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MAX_NAME = 255

# Errors with a protocol code of their own (PROTOCOL-FEATURES §0 and §2).
FILE_TOO_LARGE = "file_too_large"
QUOTA_EXCEEDED = "quota_exceeded"
DISK_FULL = "disk_full"
INVALID_NAME = "invalid_name"
NO_SUCH_FILE = "no_such_file"
CHECKSUM_MISMATCH = "checksum_mismatch"
STORAGE_ERROR = "storage_error"
BAD_FRAME = "bad_frame"


class FileError(Exception):
    """A refusal the peer hears about: ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class FileLimits:
    """The host settings of §2, with the defaults of the contract.

    ``max_total`` (``--files-max-bytes``) is the most the host keeps at all;
    an offer that would pass it evicts the oldest finished files. None: no cap
    beyond the disk. ``min_free_bytes`` / ``min_free_ratio``: an offer that would
    leave the disk under either is refused with ``disk_full``.
    """

    max_file_size: int = 2 * GiB
    quota_per_owner: int = 5 * GiB
    max_total: int | None = None
    min_free_bytes: int = 1 * GiB
    min_free_ratio: float = 0.05
    partial_ttl: float = 24 * 3600.0
    download_ttl: float = 600.0


def check_name(name: object) -> str:
    """``name`` if §2 allows it as a file name, else ``FileError(invalid_name)``.

    1–255 characters, no ``/`` or ``\\``, no character of category Cc or Cf (NUL,
    controls, bidirectional overrides), not ``.`` or ``..``. The host never uses
    it as a path; this keeps what others are shown sane.
    """
    if not isinstance(name, str) or not 1 <= len(name) <= _MAX_NAME:
        raise FileError(INVALID_NAME, "a file name has 1 to 255 characters")
    if name in (".", ".."):
        raise FileError(INVALID_NAME, "a file name cannot be . or ..")
    for char in name:
        if char in "/\\" or unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise FileError(INVALID_NAME, f"a file name cannot contain U+{ord(char):04X}")
    return name


@dataclass(slots=True, kw_only=True)
class StoredFile:
    """One offer or file: what the server knows of it (the meta file's content).

    ``owner`` is the identity (or session) it counts against; ``offer_id`` the
    client's ``id`` of the ``file_offer``; ``state`` is ``pending`` (bytes
    arriving), ``done`` (stored, downloadable) or ``gone`` (evicted or deleted:
    its message stays, downloads get ``no_such_file``). ``message_seq`` is set by
    the feature module once the message naming it is stored.
    """

    file: str
    owner: str
    offer_id: str
    name: str
    size: int
    sha256: str
    mime: str | None = None
    room: str | None = None
    to: str | None = None
    state: str = "pending"
    created: float = 0.0
    updated: float = 0.0
    completed: float | None = None
    message_seq: int | None = None
    token_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def held(self) -> int:
        """Bytes this entry counts for against quotas (reserved in full while pending)."""
        return 0 if self.state == "gone" else self.size


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    """The answer to an offer: ``file_accepted`` {file, token, offset}; ``evicted``
    lists files that were evicted to make room (their messages get ``gone``)."""

    file: StoredFile
    token: str
    offset: int
    evicted: tuple[StoredFile, ...] = ()


@dataclass(frozen=True, slots=True)
class DownloadTicket:
    """The answer to ``file_get``: ``file_ticket`` {file, token, size, sha256}."""

    file: StoredFile
    token: str
    expires: float


# What an UploadStream asks its caller to do.
@dataclass(frozen=True, slots=True)
class UploadDone:
    """All bytes in and the hash matches: post the message, answer ``upload_done``, close."""

    file: StoredFile


@dataclass(frozen=True, slots=True)
class UploadFailed:
    """Answer ``error`` with ``code`` and close the connection."""

    code: str


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """Files kept by the host in one folder, under server-made ids.

    ``may_download(file, requester)`` decides who may fetch a file (room
    membership, whisper parties); the server passes it because only the server
    knows rooms. Single-threaded: call it from the server's loop only.
    """

    def __init__(self, folder: Path | str, limits: FileLimits | None = None, *,
                 may_download: Callable[[StoredFile, str], bool] | None = None,
                 now: float = 0.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limits = limits or FileLimits()
        self.may_download = may_download or (lambda _file, _who: True)
        self._files: dict[str, StoredFile] = {}
        self._by_offer: dict[tuple[str, str], str] = {}
        self._by_token: dict[str, str] = {}
        self._downloads: dict[str, tuple[str, str, float]] = {}  # token -> file, who, expiry
        self._uploads: dict[str, UploadStream] = {}  # file -> its live upload stream
        self._hashers: dict[str, tuple[Any, int]] = {}  # file -> (sha256 state, offset)
        self._load(now)

    # ----------------------------------------------------------------- queries

    def get(self, file_id: str) -> StoredFile | None:
        """The entry for ``file_id`` (any state), or None."""
        return self._files.get(file_id)

    def files(self) -> list[StoredFile]:
        """Every entry, oldest first."""
        return sorted(self._files.values(), key=lambda f: (f.created, f.file))

    def held_by(self, owner: str) -> int:
        """Bytes held (stored or reserved by pending offers) for ``owner``."""
        return sum(f.held for f in self._files.values() if f.owner == owner)

    def held_total(self) -> int:
        """Bytes held on the host for everyone."""
        return sum(f.held for f in self._files.values())

    def offset(self, file_id: str) -> int:
        """Bytes of ``file_id`` already on disk (its part file, or all when done)."""
        entry = self._files.get(file_id)
        if entry is None or entry.state == "gone":
            return 0
        if entry.state == "done":
            return entry.size
        try:
            return self._part(file_id).stat().st_size
        except FileNotFoundError:
            return 0

    def path(self, file_id: str) -> Path:
        """Where a finished file's bytes are (only server-made ids reach a path)."""
        if not _ID_RE.fullmatch(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.folder / file_id

    # ------------------------------------------------------------------ offers

    def offer(self, *, owner: str, offer_id: str, name: str, size: int, sha256: str,
              mime: str | None = None, room: str | None = None, to: str | None = None,
              now: float, extra: dict[str, Any] | None = None) -> OfferAccepted:
        """Accept an offer (or the same offer again after a drop) or raise ``FileError``.

        Checks, in this order: the name, the size against the per-file limit,
        the owner's quota, the host's total (evicting the oldest finished files
        when that makes room) and the disk's free space. The same ``offer_id``
        from the same owner answers with the bytes already held and a new token
        (the old one stops working). ``extra`` (caption, preview…) is kept with it.
        """
        check_name(name)
        if room is not None and to is not None:
            raise FileError(BAD_FRAME, "a file goes to a room or to a person, not both")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FileError(BAD_FRAME, "size must be a whole number of bytes")
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256.lower()):
            raise FileError(BAD_FRAME, "sha256 must be 64 hex digits")
        sha256 = sha256.lower()
        self.expire(now)

        known = self._by_offer.get((owner, offer_id))
        if known is not None and self._files[known].state == "gone":
            known = None  # evicted or deleted: the same id offered again is a new file
        if known is not None:
            entry = self._files[known]
            if (entry.name, entry.size, entry.sha256) != (name, size, sha256):
                raise FileError(BAD_FRAME, "that id was offered with another file")
            token = self._new_token(entry)
            entry.updated = now
            self._write_meta(entry)
            return OfferAccepted(entry, token, self.offset(entry.file))

        limits = self.limits
        if size > limits.max_file_size:
            raise FileError(FILE_TOO_LARGE,
                            f"the host takes files up to {limits.max_file_size} bytes")
        if self.held_by(owner) + size > limits.quota_per_owner:
            raise FileError(QUOTA_EXCEEDED, "you hold as much as the host keeps for one person")
        evict: list[StoredFile] = []
        if limits.max_total is not None:
            if size > limits.max_total:
                raise FileError(FILE_TOO_LARGE, "larger than everything the host keeps")
            over = self.held_total() + size - limits.max_total
            for old in sorted((f for f in self._files.values() if f.state == "done"),
                              key=lambda f: (f.completed or f.created, f.file)):
                if over <= 0:
                    break
                evict.append(old)
                over -= old.size
            if over > 0:  # what is left are pending offers: they are not taken away
                raise FileError(QUOTA_EXCEEDED, "the host holds as much as it keeps")
        self._check_disk(size - sum(f.size for f in evict))

        for old in evict:
            self._mark_gone(old)
        file_id = secrets.token_urlsafe(12)
        entry = StoredFile(file=file_id, owner=owner, offer_id=offer_id, name=name, size=size,
                           sha256=sha256, mime=mime, room=room, to=to, created=now,
                           updated=now, extra=dict(extra or {}))
        token = self._new_token(entry)
        try:
            self._write_meta(entry)
        except FileError:
            self._by_token.pop(entry.token_hash, None)
            raise
        self._files[file_id] = entry
        self._by_offer[(owner, offer_id)] = file_id
        if size == 0:  # nothing to upload: the part file exists and is complete
            self._part(file_id).touch()
        return OfferAccepted(entry, token, 0, tuple(evict))

    def _check_disk(self, size: int) -> None:
        stats = os.statvfs(self.folder)
        total = stats.f_blocks * stats.f_frsize
        free = stats.f_bavail * stats.f_frsize
        promised = sum(f.size - self.offset(f.file)
                       for f in self._files.values() if f.state == "pending")
        floor = max(self.limits.min_free_bytes, int(total * self.limits.min_free_ratio))
        if free - promised - size < floor:
            raise FileError(DISK_FULL, "the host is short of disk space")

    def _new_token(self, entry: StoredFile) -> str:
        if entry.token_hash:
            self._by_token.pop(entry.token_hash, None)
        token = secrets.token_urlsafe(24)
        entry.token_hash = _hash_token(token)
        self._by_token[entry.token_hash] = entry.file
        return token

    # ----------------------------------------------------------------- uploads

    def open_upload(self, token: str, *, now: float, hash_behind: bool = False) -> UploadStream:
        """The stream for an ``upload`` connection; its ``offset`` goes in ``upload_ready``.

        An unknown or expired token, or a file already stored: ``no_such_file``.
        A second connection for the same offer takes over from the first, whose
        stream refuses further bytes. ``hash_behind``: see ``UploadStream``.
        """
        self.expire(now)
        file_id = self._by_token.get(_hash_token(token)) if isinstance(token, str) else None
        entry = self._files.get(file_id) if file_id else None
        if entry is None or entry.state != "pending":
            raise FileError(NO_SUCH_FILE, "no upload with that token")
        previous = self._uploads.pop(file_id, None)
        if previous is not None:
            previous._supersede()
        entry.updated = now
        self._write_meta(entry)
        stream = UploadStream(self, entry, hash_behind=hash_behind)
        self._uploads[file_id] = stream
        return stream

    def _upload_closed(self, stream: UploadStream, now: float | None) -> None:
        if self._uploads.get(stream.file.file) is stream:
            del self._uploads[stream.file.file]
        known = self._files.get(stream.file.file) is stream.file
        if now is not None and known and stream.file.state == "pending":
            stream.file.updated = now
            try:
                self._write_meta(stream.file)
            except FileError as exc:  # only the expiry clock's start is lost; keep going
                log.warning("upload %s: %s", stream.file.file, exc)

    def _complete(self, entry: StoredFile, now: float) -> None:
        os.replace(self._part(entry.file), self.path(entry.file))
        entry.state = "done"
        entry.completed = now
        entry.updated = now
        self._by_token.pop(entry.token_hash, None)
        self._hashers.pop(entry.file, None)
        self._write_meta(entry)

    def _discard(self, entry: StoredFile) -> None:
        """Forget an offer and its bytes entirely (a checksum mismatch, an expiry)."""
        self._hashers.pop(entry.file, None)
        self._by_token.pop(entry.token_hash, None)
        self._by_offer.pop((entry.owner, entry.offer_id), None)
        self._files.pop(entry.file, None)
        for path in (self._part(entry.file), self._meta(entry.file)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def expire(self, now: float) -> list[StoredFile]:
        """Drop unfinished uploads untouched for ``partial_ttl``; returns them."""
        ttl = self.limits.partial_ttl
        gone = [f for f in self._files.values()
                if f.state == "pending" and f.file not in self._uploads and now - f.updated > ttl]
        for entry in gone:
            log.info("unfinished upload %s (%s) expired", entry.file, entry.name)
            self._discard(entry)
        for token, (_file, _who, expires) in list(self._downloads.items()):
            if now >= expires:
                del self._downloads[token]
        return gone

    # --------------------------------------------------------------- downloads

    def ticket(self, file_id: str, requester: str, *, now: float) -> DownloadTicket:
        """A download token for ``requester`` (``file_get``), or ``no_such_file``.

        Whether ``requester`` may is asked now, once: the ticket grants what was
        allowed when it was issued, for ``download_ttl`` seconds, and may be used
        again within that time to resume.
        """
        entry = self._files.get(file_id) if isinstance(file_id, str) else None
        if entry is None or entry.state != "done" or not self.may_download(entry, requester):
            raise FileError(NO_SUCH_FILE, "no such file")
        token = secrets.token_urlsafe(24)
        expires = now + self.limits.download_ttl
        self._downloads[_hash_token(token)] = (file_id, requester, expires)
        return DownloadTicket(entry, token, expires)

    def open_download(self, token: str, offset: int, *, now: float,
                      slice_size: int = 256 * KiB, window: int = 1 * MiB) -> DownloadStream:
        """The stream for a ``download`` connection, from ``offset``; ``no_such_file``
        for an unknown or expired token or a file gone meanwhile, ``bad_frame`` for
        an offset outside the file."""
        held = self._downloads.get(_hash_token(token)) if isinstance(token, str) else None
        if held is None or now >= held[2]:
            raise FileError(NO_SUCH_FILE, "no download with that token")
        entry = self._files.get(held[0])
        if entry is None or entry.state != "done":
            raise FileError(NO_SUCH_FILE, "that file is gone")
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= entry.size:
            raise FileError(BAD_FRAME, "offset outside the file")
        try:
            fd = os.open(self.path(entry.file), os.O_RDONLY)
        except FileNotFoundError as exc:
            raise FileError(NO_SUCH_FILE, "that file is gone") from exc
        return DownloadStream(fd, entry, offset, slice_size=slice_size, window=window)

    # --------------------------------------------------------------- removal

    def delete(self, file_id: str) -> StoredFile | None:
        """The file's message was deleted or expired: its bytes go, it is ``gone``."""
        entry = self._files.get(file_id)
        if entry is None:
            return None
        if entry.state == "pending":
            self._discard(entry)
        else:
            self._mark_gone(entry)
        return entry

    def update_extra(self, file_id: str, **changes: Any) -> None:
        """Change what is kept with an offer (who offers it now) and write it down."""
        entry = self._files[file_id]
        entry.extra.update(changes)
        try:
            self._write_meta(entry)
        except FileError as exc:  # kept in memory; written with the next change
            log.warning("file %s: %s", file_id, exc)

    def remove(self, file_id: str) -> StoredFile | None:
        """The file's message is gone for good (deleted, or dropped by retention): its
        bytes, its part file and its entry all go, as if it had never been offered.
        (``delete`` keeps the entry as ``gone`` for a message that stays.)"""
        entry = self._files.get(file_id)
        if entry is None:
            return None
        upload = self._uploads.pop(file_id, None)
        if upload is not None:
            upload._supersede()
        self._discard(entry)
        with contextlib.suppress(FileNotFoundError):
            self.path(file_id).unlink()
        log.info("file %s (%s) removed with its message", entry.file, entry.name)
        return entry

    def attach_message(self, file_id: str, seq: int) -> None:
        """Remember the message that posted ``file_id`` (for retention and ``gone``)."""
        entry = self._files[file_id]
        entry.message_seq = seq
        self._write_meta(entry)

    def _mark_gone(self, entry: StoredFile) -> None:
        entry.state = "gone"
        self._write_meta(entry)
        with contextlib.suppress(FileNotFoundError):
            self.path(entry.file).unlink()
        log.info("file %s (%s) is gone", entry.file, entry.name)

    # ----------------------------------------------------------------- on disk

    def _part(self, file_id: str) -> Path:
        return self.path(file_id).with_name(file_id + ".part")

    def _meta(self, file_id: str) -> Path:
        return self.path(file_id).with_name(file_id + ".json")

    def _write_meta(self, entry: StoredFile) -> None:
        """Replace the meta file atomically (write, fsync, rename, fsync the folder)."""
        final = self._meta(entry.file)
        temporary = final.with_name(final.name + ".tmp")
        data = json.dumps(asdict(entry), ensure_ascii=False).encode()
        try:
            with open(temporary, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, final)
            _fsync_dir(self.folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            code = DISK_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT) else STORAGE_ERROR
            raise FileError(code, f"cannot write {final.name}: {exc}") from exc

    def _load(self, now: float) -> None:
        """Find every offer and file again after a restart (or a kill -9)."""
        for meta in sorted(self.folder.glob("*.json")):
            file_id = meta.stem
            if not _ID_RE.fullmatch(file_id):
                continue
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
                entry = StoredFile(**data)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable file entry %s: %s", meta.name, exc)
                continue
            if entry.file != file_id:
                continue
            final, part = self.path(file_id), self._part(file_id)
            if entry.state == "pending" and final.exists() and not part.exists():
                os.replace(final, part)  # died between the rename and the meta update
            elif entry.state == "done" and not final.exists():
                entry.state = "gone"
            self._files[file_id] = entry
            self._by_offer[(entry.owner, entry.offer_id)] = file_id
            if entry.state == "pending" and entry.token_hash:
                self._by_token[entry.token_hash] = file_id
        for temporary in self.folder.glob("*.json.tmp"):
            with contextlib.suppress(OSError):
                temporary.unlink()
        self.expire(now)


class UploadStream:
    """One ``upload`` connection's bytes, as a state machine with no I/O of its own.

    ``offset`` is what goes in ``upload_ready``; then ``receive(data, now)`` for
    every chunk read from the socket returns the actions for the caller: ``[]``
    (keep reading), ``[UploadDone]`` or ``[UploadFailed]`` (answer, close). Call
    ``close(now)`` when the connection ends for any reason: what arrived is kept.
    Bytes past the offered size are ignored (the client has nothing more to send).

    ``hash_behind=True`` leaves the SHA-256 out of ``receive``: the caller runs
    ``rehash`` in a worker thread of its own (hashlib and file reads release the
    GIL), which reads the part file back from the page cache behind the writer;
    the last ``receive`` catches up with what is left before it checks. This
    moves the hash, the dearest part of an upload, off the thread that reads the
    sockets. ``rehash`` is the only method that may be called from another thread.
    """

    def __init__(self, store: FileStore, entry: StoredFile, *, hash_behind: bool = False) -> None:
        self._store = store
        self.file = entry
        self.hash_behind = hash_behind
        self._lock = threading.Lock()  # the hash state, shared with a hash_behind worker
        self._fd_lock = threading.Lock()  # the part file's descriptor, shared with a writer
        self._fd: int | None = os.open(store._part(entry.file),
                                       os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.offset = os.fstat(self._fd).st_size
        if self.offset > entry.size:  # cannot happen through this class; refuse, don't trust
            os.ftruncate(self._fd, entry.size)
            self.offset = entry.size
        self.finished = False
        held = store._hashers.get(entry.file)
        if held is not None and held[1] <= self.offset:  # rehash goes on from held[1]
            self._hasher, self._hashed = held[0].copy(), held[1]
        else:
            self._hasher, self._hashed = hashlib.sha256(), 0

    @property
    def rehash_pending(self) -> int:
        """Bytes of the part file still to be read into the hash (after a restart)."""
        return self.offset - self._hashed

    def rehash(self, budget: int = 8 * MiB) -> bool:
        """Read up to ``budget`` bytes of the part file into the hash; True when caught up.

        ``receive`` catches up by itself first; a caller that wants to keep its
        loop responsive calls this in slices before it starts reading the socket.
        """
        with self._lock:
            written = self.offset  # bytes below it are in the part file already
            if self.finished or self._hashed >= written:
                return True
            with open(self._store._part(self.file.file), "rb") as part:
                part.seek(self._hashed)
                while budget > 0 and self._hashed < written:
                    chunk = part.read(min(budget, 1 * MiB, written - self._hashed))
                    if not chunk:
                        break
                    self._hasher.update(chunk)
                    self._hashed += len(chunk)
                    budget -= len(chunk)
            return self._hashed >= written

    def receive(self, data: bytes | bytearray | memoryview, *, now: float) -> list:
        """Take the next bytes from the connection; see the class docstring."""
        if self.finished or self._fd is None:
            return [UploadFailed(NO_SUCH_FILE)]
        if not self.hash_behind:
            while not self.rehash(64 * MiB):
                pass
        failed = self.append(data)
        if failed is not None:
            return [failed]
        if self.offset < self.file.size:
            return []
        while not self.rehash(64 * MiB):  # hash_behind: catch up with the worker's lag
            pass
        return [self._finish(now)]

    def append(self, data: bytes | bytearray | memoryview) -> UploadFailed | None:
        """Write ``data`` to the part file (up to the offered size) and, unless
        ``hash_behind``, into the hash; None, or why it stopped. Unlike ``receive`` it
        never finishes the upload, and a worker thread may call it (one at a time) while
        the event loop's thread does other things: the store's state is not touched,
        and a stream superseded meanwhile answers ``no_such_file`` instead of writing
        to a descriptor that was closed under it. Call ``receive(b"")`` on the loop's
        thread once ``offset`` reaches the size to check and store the file."""
        view = memoryview(data)[: self.file.size - self.offset]
        with self._fd_lock:
            if self.finished or self._fd is None:
                return UploadFailed(NO_SUCH_FILE)
            while len(view):
                try:
                    written = os.write(self._fd, view)
                except OSError as exc:
                    code = (DISK_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                            else STORAGE_ERROR)
                    log.warning("upload %s stopped at %d: %s", self.file.file, self.offset, exc)
                    self._remember_hash()
                    return UploadFailed(code)
                if not self.hash_behind:
                    with self._lock:
                        self._hasher.update(view[:written])
                        self._hashed += written
                self.offset += written
                view = view[written:]
        if not self.hash_behind:  # (behind: the hashing thread's state lags; see close)
            self._remember_hash()
        return None

    def flush(self) -> None:
        """fsync what was written so far (off the event loop's thread: it can take
        seconds for a large file); the final check's own fsync then has little left."""
        with self._fd_lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def _remember_hash(self) -> None:
        with self._lock:
            # A copy: a superseded stream's worker may still be updating its own. One
            # dict assignment: safe from a worker thread.
            self._store._hashers[self.file.file] = (self._hasher.copy(), self._hashed)

    def _finish(self, now: float) -> UploadDone | UploadFailed:
        """The last byte is in: fsync, check the hash, then store or forget the offer."""
        self.finished = True
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._close_fd()
            return UploadFailed(STORAGE_ERROR if exc.errno != errno.ENOSPC else DISK_FULL)
        self._close_fd()
        if self._hasher.hexdigest() != self.file.sha256:
            log.info("upload %s (%s): checksum mismatch", self.file.file, self.file.name)
            self._store._discard(self.file)
            self._store._upload_closed(self, None)
            return UploadFailed(CHECKSUM_MISMATCH)
        try:
            self._store._complete(self.file, now)
        except (OSError, FileError) as exc:
            code = exc.code if isinstance(exc, FileError) else STORAGE_ERROR
            return UploadFailed(code)
        finally:
            self._store._upload_closed(self, None)
        return UploadDone(self.file)

    def _supersede(self) -> None:
        with self._fd_lock:  # waits for a worker's write in progress, then stops it
            self.finished = True
            self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self, *, now: float) -> None:
        """The connection ended: keep what arrived (fsynced) for a later resume."""
        with self._fd_lock:  # a worker thread's write in progress ends first
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                self._close_fd()
        if not self.finished:
            self._remember_hash()  # a resume goes on hashing from here
        self._store._upload_closed(self, now)


class DownloadStream:
    """One ``download`` connection's bytes, as a state machine with no I/O of its own.

    ``offset``/``size`` go in ``download_ready``. Then either, on a plain socket,
    ``sendfile_args()`` → ``(fd, offset, count)`` for ``os.sendfile(sock, *args)``
    followed by ``sent(n)`` with what it returned (zero copies; the kernel's
    socket buffer is the window), or, on TLS, ``read_slice(queued)`` → the next
    bytes to write, where ``queued`` is what the socket still has unsent
    (``bytesToWrite()``): nothing is read while ``queued`` is at the window, so a
    reader that stops reading costs at most ``window`` + one slice of memory.
    ``done`` when the last byte is handed over; ``close()`` in any case. The file
    descriptor stays valid if the file is deleted meanwhile: the download ends.
    """

    def __init__(self, fd: int, entry: StoredFile, offset: int, *,
                 slice_size: int, window: int) -> None:
        self.file = entry
        self.fd: int | None = fd
        self.size = entry.size
        self.offset = offset
        self.slice_size = slice_size
        self.window = window

    @property
    def done(self) -> bool:
        return self.offset >= self.size

    def sendfile_args(self) -> tuple[int, int, int] | None:
        """``(fd, offset, count)`` for the next ``os.sendfile``; None when done."""
        if self.done or self.fd is None:
            return None
        return self.fd, self.offset, min(self.slice_size, self.size - self.offset)

    def sent(self, count: int) -> None:
        """``count`` bytes from ``offset`` went out (what ``os.sendfile`` returned)."""
        if count < 0 or self.offset + count > self.size:
            raise ValueError("sent more than the file holds")
        self.offset += count

    def read_slice(self, queued: int = 0) -> bytes | None:
        """The next bytes to write, or None while ``queued`` fills the window (or done)."""
        if self.done or self.fd is None:
            return None
        room = self.window - queued
        if room <= 0:
            return None
        data = os.pread(self.fd, min(self.slice_size, room, self.size - self.offset),
                        self.offset)
        if not data:  # the file shrank under us: nothing more to give
            raise FileError(NO_SUCH_FILE, "the file changed while being sent")
        self.offset += len(data)
        return data

    def slices(self) -> Iterator[bytes]:
        """Every remaining slice, for callers with nothing queued (tests, a blocking copy)."""
        while (data := self.read_slice(0)) is not None:
            yield data

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
