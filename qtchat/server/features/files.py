"""Files and pictures (PROTOCOL-FEATURES §2): offers, tickets, and the message a finished
upload posts.

The host's files are kept by ``FileStore`` (``qtchat/server/files.py``: limits, resumable
part files, hashes, tokens); this module is the chat side of it. ``file_offer`` is
checked like a message would be (the room or the person, moderation's veto), then
accepted by the store with the host's limits (``--max-file-size``, ``--files-quota``,
``--files-max-bytes``); ``file_get`` gets a ticket if the asker may see the file (a
room's file: its members now; a whisper's: its two parties, by session or identity).

Files belong to identities: an offer counts against (and may be resumed by) the
identity its session registered with, else the session, so an app that restarted
goes on with an unfinished upload under the same offer id. A file leaves with its
message: the edit module's ``delete`` calls ``on_message_deleted``, and the sweep
finds messages that retention (or a retired room) dropped; either way the file's
bytes and entry go (``FileStore.remove``).

The bytes move on transfer connections, which the adapter owns (``ChatServer`` hands a
connection whose first line is ``upload``/``download`` to a ``Transfer``): it asks this
module to open the stream (``open_upload``/``open_download``: at most four at once per
person) and, when an upload's last byte is in and its hash matches, to post the message
(``post_upload``). That message is stored like any other (``MessageStore.add``), through
the same veto, and queued for the room or the two parties; the adapter commits before it
answers ``upload_done``, so the message is stored before anyone hears of it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from qtchat import protocol as p
from qtchat.names import InvalidName, parse_name, parse_room
from qtchat.protocol.files import FileAccepted, FileGet, FileOffer, FileTicket
from qtchat.protocol.server_frames import Message
from qtchat.server.domain import Connection, ConnState, Room, Session
from qtchat.server.features.base import Core, Feature, handles
from qtchat.server.files import (
    NO_SUCH_FILE,
    DownloadStream,
    FileError,
    FileLimits,
    FileStore,
    StoredFile,
    UploadStream,
    _hash_token,
)
from qtchat.server.store import WHISPER_BUCKET

log = logging.getLogger(__name__)

# Transfers one person may have open at once; the fifth is refused (rate_limited).
MAX_TRANSFERS = 4
# A transfer that moves no byte for this long is closed.
NO_PROGRESS = 30.0
# How often expired part files and files whose message is gone are looked for (seconds).
RETENTION_SWEEP = 10.0

# Sentences for the refusals, said in the app as they are.
_SENTENCES = {
    "file_too_large": "That file is larger than this room allows ({limit}).",
    "quota_exceeded": "You already keep as much in files on this host as it allows.",
    "disk_full": "The host is short of disk space.",
    "invalid_name": "That file name cannot be used: {why}.",
    "storage_error": "The host could not store the file.",
}


def human_size(count: int) -> str:
    """``2 GiB``, ``1.5 MiB``, ``300 bytes``: what a person reads in a refusal or a line."""
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            if unit == "bytes":
                return f"{count} bytes"
            return f"{size:.1f}".rstrip("0").rstrip(".") + f" {unit}"
        size /= 1024
    return f"{count} bytes"  # pragma: no cover


class TransferHandle(Protocol):
    """What the module asks of a transfer connection the adapter owns."""

    last_progress: float

    def stalled(self) -> None:
        """No byte moved for ``NO_PROGRESS`` seconds: close it."""


class FilesFeature(Feature):
    name = "files"

    def __init__(self, core: Core, folder: Path | str | None = None) -> None:
        super().__init__(core)
        config = core.config
        limits = FileLimits(max_file_size=config.max_file_size,
                            quota_per_owner=config.files_quota,
                            max_total=config.files_max_bytes or None)
        self._scratch: str | None = None
        if folder is None:
            if config.data_dir is not None:
                folder = Path(config.data_dir) / "files"
            else:  # history in memory: files last as long as the server
                folder = self._scratch = tempfile.mkdtemp(prefix="qtchat-files-")
        self.store = FileStore(folder, limits, may_download=self._may_download, now=core.now)
        self.open_transfers: dict[str, int] = {}  # who -> transfers open now
        self.transfers: dict[TransferHandle, None] = {}
        self._swept_at = -RETENTION_SWEEP
        # History, replays and lookups read the ``file`` of a message from here.
        attachments = core.store.attachments
        for entry in self.store.files():
            if entry.message_seq is not None:
                attachments[entry.message_seq] = self._info(entry)

    # --- chat frames ---------------------------------------------------------------------

    @handles(FileOffer)
    def _offer(self, conn: Connection, frame: FileOffer) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        room: Room | None = None
        target: Session | None = None
        if frame.to is not None:
            try:
                target = self._sessions.named(parse_name(frame.to))
            except InvalidName:
                target = None
            if target is None:
                core.send_error(conn, "no_such_user", f"Nobody called {frame.to} is here.",
                                frame.type)
                return
        else:
            try:
                room = self._rooms.room_of(conn, session, frame.room or p.LOBBY, frame.type)
            except InvalidName:
                core.send_error(conn, "no_such_room", f"There is no room called {frame.room!r}.",
                                frame.type)
                return
            if room is None:
                return
        text = frame.text or f"{frame.name} ({human_size(frame.size)})"
        refusal = core.veto_post(conn, session, room or target, text)  # type: ignore[arg-type]
        if refusal is not None:
            core.send_error(conn, refusal[0], refusal[1], frame.type)
            return
        extra: dict[str, Any] = {"text": text, "from": session.name.display,
                                 "from_sid": session.sid,
                                 "from_identity": self._identity(session)}
        if frame.preview is not None:
            extra["preview"] = frame.preview
        if room is not None:
            extra["room_key"] = room.key
        else:
            assert target is not None
            extra["to_sid"] = target.sid
            extra["to_identity"] = self._identity(target)
        try:
            accepted = self.store.offer(
                owner=self._owner(session), offer_id=frame.id or "", name=frame.name,
                size=frame.size, sha256=frame.sha256, mime=frame.mime,
                room=room.display if room is not None else None,
                to=target.name.display if target is not None else None,
                now=core.now, extra=extra)
        except FileError as exc:
            core.send_error(conn, exc.code, self._sentence(exc), frame.type)
            return
        if accepted.file.extra.get("from_sid") != session.sid:
            # The same identity offers it again from a new session (the app restarted):
            # the upload goes on, and its message comes from, and is echoed to, this one.
            self.store.update_extra(accepted.file.file, from_sid=session.sid,
                                    **{"from": session.name.display})
        for old in accepted.evicted:
            log.info("file %s evicted to make room", old.file)
            if old.message_seq is not None:
                core.store.attachments[old.message_seq] = self._info(old)
        core.queue(conn, FileAccepted(id=frame.id or "", file=accepted.file.file,
                                      token=accepted.token, offset=accepted.offset).encode())

    @handles(FileGet)
    def _get(self, conn: Connection, frame: FileGet) -> None:
        session = conn.session
        assert session is not None
        try:
            ticket = self.store.ticket(frame.file, str(session.sid), now=self.core.now)
        except FileError:
            self.core.send_error(conn, NO_SUCH_FILE, "There is no such file, or it is gone.",
                                 frame.type)
            return
        entry = ticket.file
        self.core.queue(conn, FileTicket(id=frame.id, file=entry.file, token=ticket.token,
                                         size=entry.size, sha256=entry.sha256).encode())

    # --- transfer connections (called by the adapter) ------------------------------------

    def open_upload(self, token: str, now: float, *, hash_behind: bool = False
                    ) -> tuple[UploadStream, str]:
        """The stream of an ``upload`` connection and who it counts against; raises
        ``FileError`` (``no_such_file``, ``rate_limited`` for a fifth at once).
        ``hash_behind``: the caller hashes in a thread (``UploadStream.rehash``)."""
        file_id = self.store._by_token.get(_hash_token(token))
        entry = self.store.get(file_id) if file_id else None
        if entry is None or entry.state != "pending":
            raise FileError(NO_SUCH_FILE, "no upload with that token")
        self._begin(entry.owner)
        try:
            return self.store.open_upload(token, now=now, hash_behind=hash_behind), entry.owner
        except FileError:
            self.transfer_ended(entry.owner)
            raise

    def open_download(self, token: str, offset: int, now: float, *,
                      window: int) -> tuple[DownloadStream, str]:
        """The stream of a ``download`` connection and who it counts against."""
        held = self.store._downloads.get(_hash_token(token))
        if held is None:
            raise FileError(NO_SUCH_FILE, "no download with that token")
        who = f"s{held[1]}"
        self._begin(who)
        try:
            return self.store.open_download(token, offset, now=now, window=window), who
        except FileError:
            self.transfer_ended(who)
            raise

    def _begin(self, who: str) -> None:
        count = self.open_transfers.get(who, 0)
        if count >= MAX_TRANSFERS:
            raise FileError("rate_limited", f"at most {MAX_TRANSFERS} transfers at once")
        self.open_transfers[who] = count + 1

    def transfer_ended(self, who: str) -> None:
        count = self.open_transfers.get(who, 0) - 1
        if count > 0:
            self.open_transfers[who] = count
        else:
            self.open_transfers.pop(who, None)

    def post_upload(self, entry: StoredFile) -> int | None:
        """The upload of ``entry`` is in and checked: store its message and queue it for
        the room or the two parties; returns its seq (None: refused, and the file is
        gone). The caller commits (ends the pass) before it says ``upload_done``."""
        core = self.core
        extra = entry.extra
        text = extra.get("text") or entry.name
        sender_sid = int(extra.get("from_sid", 0))
        sender_name = str(extra.get("from", "?"))
        session = self._session_by_sid(sender_sid)
        conn = session.conn if session is not None else None
        info = self._info(entry)
        ts = core.timestamp()
        if entry.to is None:
            room = self._rooms.room(parse_room(entry.room or p.LOBBY))
            target: Room | Session = room
        else:
            recipient = self._session_by_sid(int(extra.get("to_sid", 0))) \
                or self._session_by_identity(extra.get("to_identity"))
            target = recipient if recipient is not None else None  # type: ignore[assignment]
        if session is not None and conn is not None and target is not None:
            refusal = core.veto_post(conn, session, target, text)
            if refusal is not None:
                core.send_error(conn, refusal[0], refusal[1], "file_offer")
                self.store.delete(entry.file)
                return None
        if entry.to is None:
            seq = core.store.add(ts=ts, bucket=room.key, room=room.display, sender=sender_name,
                                 sender_sid=sender_sid, text=text)
            message = Message(seq=seq, ts=ts, sender=sender_name, room=room.display,
                              text=text, file=info)
            data = message.encode()
            own = message.with_id(entry.offer_id).encode()
            live = conn is not None and conn.state is ConnState.LIVE and conn in room.conns
            core.fan_out(room, data, conn if live else None, own)
            copies: tuple[bytes | None, bytes | None] = (data, own if live else None)
        else:
            recipient = target if isinstance(target, Session) else None
            seq = core.store.add(ts=ts, bucket=WHISPER_BUCKET, room=None, sender=sender_name,
                                 sender_sid=sender_sid, recipient=entry.to,
                                 recipient_sid=recipient.sid if recipient is not None
                                 else int(extra.get("to_sid", 0)), text=text)
            message = Message(seq=seq, ts=ts, sender=sender_name, to=entry.to, text=text,
                              file=info)
            theirs = own_copy = None
            other = recipient.conn if recipient is not None else None
            if recipient is not session and other is not None \
                    and other.state is ConnState.LIVE:
                theirs = message.encode()
                core.queue(other, theirs)
            if conn is not None and conn.state is ConnState.LIVE:
                own_copy = message.with_id(entry.offer_id).encode()
                core.queue(conn, own_copy)
            copies = (theirs, own_copy)
        if session is not None and conn is not None:
            core.posted(conn, session, message, entry.offer_id, copies)
        with contextlib.suppress(FileError):
            self.store.attach_message(entry.file, seq)
        core.store.attachments[seq] = info
        return seq

    # --- hooks -----------------------------------------------------------------------------

    def on_tick(self, now: float) -> None:
        for transfer in list(self.transfers):
            if now - transfer.last_progress > NO_PROGRESS:
                transfer.stalled()
        if now - self._swept_at >= RETENTION_SWEEP:
            self._swept_at = now
            self.store.expire(now)
            self._leave_with_messages()

    def _leave_with_messages(self) -> None:
        """Files go with their message: one that retention removed (or a room's history
        retired, or a delete by any path) takes its bytes and its entry along."""
        history = self.core.store
        for entry in self.store.files():
            seq = entry.message_seq
            if seq is None or entry.state == "pending":
                continue
            bucket = entry.extra.get("room_key") if entry.to is None else WHISPER_BUCKET
            if isinstance(bucket, str) and history.pruned_upto(bucket) >= seq:
                gone = True
            else:
                found = history.message_meta(seq)
                gone = found is None or found[3].deleted is not None
            if gone:
                log.info("file %s leaves with message %d", entry.file, seq)
                self.message_gone(seq)

    def on_message_deleted(self, seq: int) -> None:
        """The edit module's hook: message ``seq`` was deleted (and that is stored)."""
        self.message_gone(seq)

    def message_gone(self, seq: int) -> None:
        """No message refers to the files of message ``seq`` any more (each file is
        posted by one message): their bytes and entries go now, so a download of them
        is refused (``no_such_file``) and their bytes stop counting against quotas."""
        for entry in self.store.files():
            if entry.message_seq == seq:
                self.store.remove(entry.file)
        self.core.store.attachments.pop(seq, None)

    def close(self) -> None:
        """The server stops: a scratch folder (history in memory) goes with it."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # --- helpers ----------------------------------------------------------------------------

    @property
    def _rooms(self) -> Any:
        return self.core.rooms  # type: ignore[attr-defined]

    @property
    def _sessions(self) -> Any:
        return self.core.sessions  # type: ignore[attr-defined]

    @staticmethod
    def _info(entry: StoredFile) -> dict[str, Any]:
        """The ``file`` object of the message that posted ``entry``."""
        info: dict[str, Any] = {"file": entry.file, "name": entry.name, "size": entry.size,
                                "sha256": entry.sha256}
        if entry.mime:
            info["mime"] = entry.mime
        if entry.extra.get("preview"):
            info["preview"] = entry.extra["preview"]
        if entry.state == "gone":
            info["gone"] = True
        return info

    def _owner(self, session: Session) -> str:
        """Who a file belongs to (its quota, and who may resume its upload): the
        identity where the session registered with one, else the session."""
        identity = self._identity(session)
        return f"i{identity}" if identity is not None else f"s{session.sid}"

    def _identity(self, session: Session) -> str | None:
        """The (hashed) identity ``session`` registered with, if any (moderation's)."""
        moderation = getattr(self.core, "moderation", None)
        return moderation.identity_of(session) if moderation is not None else None

    def _session_by_identity(self, identity: object) -> Session | None:
        if not isinstance(identity, str):
            return None
        for session in self._sessions.by_secret.values():
            if self._identity(session) == identity:
                return session
        return None

    def _session_by_sid(self, sid: int) -> Session | None:
        for session in self._sessions.by_secret.values():
            if session.sid == sid:
                return session
        return None

    def _may_download(self, entry: StoredFile, requester: str) -> bool:
        """A room's file: its members now; a whisper's: its two parties, by session or
        by identity (a party's app that restarted is a new session with the same
        identity), never by name (a name may pass to someone else)."""
        sid = int(requester)
        extra = entry.extra
        session = self._session_by_sid(sid)
        if entry.to is not None:
            if sid in (extra.get("from_sid"), extra.get("to_sid")):
                return True
            identity = self._identity(session) if session is not None else None
            return identity is not None and identity in (extra.get("from_identity"),
                                                         extra.get("to_identity"))
        return session is not None and extra.get("room_key") in session.rooms

    def _sentence(self, exc: FileError) -> str:
        template = _SENTENCES.get(exc.code)
        if template is None:
            return str(exc)
        return template.format(limit=human_size(self.store.limits.max_file_size), why=exc)
