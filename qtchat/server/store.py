"""Persistent history and sessions in SQLite (WAL), written in one transaction per pass.

The server hands every message to ``MessageStore.add`` (which gives it its
``seq``) and calls ``commit`` once per event-loop pass, *before* it writes any
copy to a socket: what anyone has seen is on disk and survives a crash of the
server process (WAL with synchronous=NORMAL is durable against process crashes;
only a power cut can lose the last transactions).

``seq`` is server-wide, strictly increasing and never reused, also across
restarts: the highest one handed out is kept in the ``meta`` table.

Sessions (for resume) are kept here too, so a host restart does not end them.
Session secrets are stored only as SHA-256 hashes.

A data directory belongs to one server at a time: the server holds an exclusive
lock on ``<history>.lock`` beside the database (``flock``; the kernel lets go when the
process dies, however it dies), so a second server on the same folder fails at once
with ``StoreLocked`` instead of fighting over every commit.

Checkpoints (copying the write-ahead log into the database, with two fsyncs) run in a
thread of their own on a second connection (``_Checkpointer``), never inside a commit:
SQLite's automatic checkpoint ran on the event loop's thread every ~1,000 pages and held
it for 60-170 ms, which a room in full flow saw as a pause (issue 13's burst benchmark).

A commit can fail (the disk is full, an I/O error): ``commit`` then rolls the
whole transaction back, begins a new one and raises ``StorageError`` naming the
messages that were not stored; the caller must not send them. The counter
``last_seq`` never goes back, so a refused message's ``seq`` is simply never
used (nothing with it was sent). Session and room changes are kept and tried
again with every later commit, so the store catches up by itself once the disk
has room: while it is full they live in memory only.

The schema is numbered (``PRAGMA user_version``) and brought up to date at open by
the steps of ``MIGRATIONS``, one transaction each; a history written by a newer qtchat
is refused (``StoreTooNew``) rather than read by code that does not know its tables.

A history file that is missing or empty while its write-ahead log is there is
refused (``StoreUnusable``): SQLite would silently discard the log and start
an empty history. See ``_check_files``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtchat.protocol.server_frames import Message
from qtchat.server import search as fts

log = logging.getLogger(__name__)

WHISPER_BUCKET = ""  # the retention bucket of whispers (room keys are never empty)

# --- schema versions ---------------------------------------------------------------------
# The schema is versioned like Quassel's core/SQL/SQLite/version/N: ``PRAGMA user_version``
# says which version a history file is at, and step N of ``MIGRATIONS`` takes a version
# N-1 file to N, in one transaction together with the new version number (a step that
# fails leaves the file as it was). A new file is made by running every step. A feature
# that needs a table or a column adds a step at the end; a step is never edited once
# released, and each is tested from a file of the version before it.

# Version 1: the tables of qtchat before versions were numbered.
_V1_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        bucket TEXT NOT NULL,          -- folded room name, or '' for whispers
        room TEXT,                     -- room as shown (broadcasts)
        sender TEXT NOT NULL,          -- sender's name as shown
        sender_sid INTEGER NOT NULL,
        recipient TEXT,                -- whispers: recipient's name as shown
        recipient_sid INTEGER,
        text TEXT NOT NULL,
        client_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS messages_bucket ON messages (bucket, seq)",
    """CREATE INDEX IF NOT EXISTS messages_client_id ON messages (sender_sid, client_id)
        WHERE client_id IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS rooms (
        key TEXT PRIMARY KEY, display TEXT NOT NULL, pruned_upto INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        sid INTEGER PRIMARY KEY,
        secret_hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        rooms TEXT NOT NULL,           -- JSON list of room names as shown
        sent_upto INTEGER NOT NULL DEFAULT 0,  -- see Session.sent_upto in chat_server.py
        start_seq INTEGER NOT NULL DEFAULT 0   -- last_seq when the session began
    )""",
)


def _to_v1(db: sqlite3.Connection) -> None:
    """Version 0 → 1: number the schema qtchat had before versions.

    A version 0 file is new (empty) or a history from before numbering: its tables
    are kept as they are (``IF NOT EXISTS``), and one from before resume remembered
    where a session stood gets the two session columns that came then.
    """
    for statement in _V1_TABLES:
        db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    for column in ("sent_upto", "start_seq"):
        if column not in columns:
            db.execute(f"ALTER TABLE sessions ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


# Version 2: the search index (FTS5, fed by triggers) and the table of edits and deletes;
# see qtchat/server/search.py.


def _to_v3(db: sqlite3.Connection) -> None:
    """Version 2 → 3: the chess games (``ChessGame.to_record`` as JSON), running,
    adjourned and finished; ``ended`` orders the finished ones (see features/chess.py)."""
    db.execute("""CREATE TABLE IF NOT EXISTS games (
        game TEXT PRIMARY KEY,
        white TEXT NOT NULL, black TEXT NOT NULL,   -- names as shown
        white_sid INTEGER, black_sid INTEGER,       -- the players' sessions
        state TEXT NOT NULL,                        -- running, adjourned, finished
        ended INTEGER NOT NULL DEFAULT 0,           -- order of finishing (0: not yet)
        record TEXT NOT NULL
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS games_state ON games (state)")


# Identity and moderation (PROTOCOL-FEATURES §1, §4; qtchat/server/features/moderation.py):
# the records of the domain tables (identity.NameBindings, moderation.Roles, BanList,
# Mutes, RoomModes) and which identity each stored session has: step 4.
_MODERATION_TABLES = (
    "CREATE TABLE IF NOT EXISTS name_bindings (identity TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "last_seen REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS roles (identity TEXT PRIMARY KEY, role TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bans (name TEXT NOT NULL, identity TEXT, address TEXT, "
    "until REAL, by TEXT NOT NULL, reason TEXT, ts REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mutes (name TEXT NOT NULL, identity TEXT, room TEXT, "
    "until REAL, by TEXT NOT NULL, ts REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS room_modes (room TEXT PRIMARY KEY, moderated INTEGER NOT NULL, "
    "topic_locked INTEGER NOT NULL, topic TEXT, topic_by TEXT, topic_ts REAL)",
    "CREATE TABLE IF NOT EXISTS session_identities (sid INTEGER PRIMARY KEY, identity TEXT, "
    "owner INTEGER NOT NULL DEFAULT 0)",
)


def _moderation_tables(db: sqlite3.Connection) -> None:
    for statement in _MODERATION_TABLES:
        db.execute(statement)


def _to_v5(db: sqlite3.Connection) -> None:
    """Version 4 → 5: receipts for private messages (features §6), the highest ``seq``
    each reader has acknowledged from each writer, per state (sessions by their id)."""
    db.execute("""CREATE TABLE receipts (
        reader_sid INTEGER NOT NULL,
        writer_sid INTEGER NOT NULL,
        state TEXT NOT NULL,           -- 'delivered' or 'read'
        seq INTEGER NOT NULL,
        PRIMARY KEY (reader_sid, writer_sid, state)
    ) WITHOUT ROWID""")


def _whisper_identities(db: sqlite3.Connection) -> None:
    """Whispers belong to the identities that exchanged them (PROTOCOL-FEATURES §1): the
    identity hash of sender and recipient (NULL: a session without one, and every whisper
    stored before this step), so ``history {with}`` and ``registered.conversations``
    find them after both sessions ended, and never for a later holder of the name. The
    indexes cover only whispers with an identity: rooms' messages never pay for them."""
    for column in ("sender_identity", "recipient_identity"):
        db.execute(f"ALTER TABLE messages ADD COLUMN {column} TEXT")
        db.execute(f"CREATE INDEX IF NOT EXISTS messages_{column} ON messages ({column}, seq) "
                   f"WHERE {column} IS NOT NULL")


def _game_notices(db: sqlite3.Connection) -> None:
    """The chess results said in rooms (features §3): the ``game`` {game, result,
    reason} of a stored broadcast, by its seq, so history shows it as a notice too."""
    db.execute("CREATE TABLE IF NOT EXISTS game_notices (seq INTEGER PRIMARY KEY, "
               "game TEXT NOT NULL)")


def _author_identities(db: sqlite3.Connection) -> None:
    """What an identity keeps past its sessions (PROTOCOL-FEATURES §1, §6, §7): the
    identity (hash) that wrote each message (``author_identity``: a room message's too,
    whose ``sender_identity`` stays NULL so the whisper indexes never hold rooms' rows;
    read by seq only, so unindexed), so its author may edit or delete it from a later
    session; and receipts between two identities (``identity_receipts``), so
    ``read_up_to`` holds across restarts. Receipts stored by session between sessions
    that still have a stored identity move over (the higher seq wins)."""
    db.execute("ALTER TABLE messages ADD COLUMN author_identity TEXT")
    db.execute("""CREATE TABLE identity_receipts (
        reader_identity TEXT NOT NULL,
        writer_identity TEXT NOT NULL,
        state TEXT NOT NULL,           -- 'delivered' or 'read'
        seq INTEGER NOT NULL,
        PRIMARY KEY (reader_identity, writer_identity, state)
    ) WITHOUT ROWID""")
    db.execute("INSERT INTO identity_receipts SELECT ri.identity, wi.identity, r.state, "
               "MAX(r.seq) FROM receipts r JOIN session_identities ri ON ri.sid=r.reader_sid "
               "JOIN session_identities wi ON wi.sid=r.writer_sid WHERE ri.identity IS NOT "
               "NULL AND wi.identity IS NOT NULL AND ri.identity<>wi.identity "
               "GROUP BY ri.identity, wi.identity, r.state")


# Step N (at index N-1) takes a version N-1 history to version N.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _to_v1, fts.create_index, _to_v3, _moderation_tables, _to_v5, _whisper_identities,
    _game_notices, _author_identities)
SCHEMA_VERSION = len(MIGRATIONS)  # what a history this qtchat writes is at


def _migrate(db: sqlite3.Connection, path: Path | None) -> None:
    """Bring the history to the newest version, one step per transaction.

    Called in a ``BEGIN IMMEDIATE`` transaction; returns with none open. Raises
    ``StoreTooNew`` (and changes nothing) for a history of a newer qtchat.
    """
    steps = MIGRATIONS  # looked up now: a test may add a step
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(steps):
        db.execute("ROLLBACK")
        where = f"{path.name} in {path.parent}" if path else "the history"
        raise StoreTooNew(
            f"{where} was written by a newer qtchat (history version {version}; this "
            f"qtchat reads up to version {len(steps)}): run the newer qtchat, or move "
            f"{path.name if path else 'it'} out of the folder to start a new history.")
    for number in range(version + 1, len(steps) + 1):
        steps[number - 1](db)
        db.execute(f"PRAGMA user_version={number}")  # in the step's transaction
        db.execute("COMMIT")
        if number < len(steps):
            db.execute("BEGIN IMMEDIATE")
        if version:  # a new file is not news
            log.info("history upgraded to version %d", number)
    if db.in_transaction:  # already at the newest version
        db.execute("COMMIT")


# What reads add for edits and deletes (schema version 2's message_changes).
_CHANGES = "LEFT JOIN message_changes c ON c.seq=m.seq"
_CHANGED = "c.edited_ts, c.deleted_by, c.deleted_ts"
_NOT_DELETED = "AND text<>''"  # a tombstone's text is '' (a message's never is)
_INSERT_MESSAGE = ("INSERT INTO messages (seq, ts, bucket, room, sender, sender_sid, recipient, "
                   "recipient_sid, text, client_id, sender_identity, recipient_identity, "
                   "author_identity) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
_V1_COLUMNS = 10  # the columns of version 1 (before whisper identities), in order
_WHISPER_ID_COLUMNS = 12  # ... and up to the step before author identities
_INSERT_WHISPER_IDS = (_INSERT_MESSAGE.replace(", author_identity", "")
                       .replace(",?)", ")"))  # a history kept at that step (tests)


def _changed(edited_ts: str | None, deleted_by: str | None,
             deleted_ts: str | None) -> dict[str, Any]:
    """The ``Message`` fields of a row's ``_CHANGED`` columns."""
    if deleted_ts is not None:
        return {"deleted": {"by": deleted_by or "", "ts": deleted_ts}}
    if edited_ts is not None:
        return {"edited": edited_ts}
    return {}


@dataclass(frozen=True, slots=True)
class Party:
    """One side of a private conversation, as the whispers' rows are matched: by its
    identity (hash) when it has one, else by its session, else by the name it had (for
    a name nobody holds now: the other side is then always an identity, which sees
    only its own whispers with whoever had that name).
    """

    identity: str | None = None
    sid: int | None = None
    name: str | None = None

    def where(self, side: str) -> tuple[str, list[Any]]:
        """SQL matching this party as the ``side`` (``sender``/``recipient``) of row m."""
        if self.identity is not None:
            return f"m.{side}_identity=?", [self.identity]
        if self.sid is not None:
            return f"m.{side}_sid=?", [self.sid]
        return f"m.{side}=? COLLATE NOCASE", [self.name]


def _between(mine: Party, other: Party | None) -> tuple[str, list[Any]]:
    """SQL (for row m) of the whispers of ``mine``: with ``other`` only, if given."""
    me_s, me_s_args = mine.where("sender")
    me_r, me_r_args = mine.where("recipient")
    if other is None:
        return f"(m.bucket='' AND ({me_s} OR {me_r}))", [*me_s_args, *me_r_args]
    them_s, them_s_args = other.where("sender")
    them_r, them_r_args = other.where("recipient")
    return (f"(m.bucket='' AND (({me_s} AND {them_r}) OR ({them_s} AND {me_r})))",
            [*me_s_args, *them_r_args, *them_s_args, *me_r_args])


class StoreLocked(Exception):
    """Another process (another qtchat server) has this database open."""


# Past this much log, the checkpointer runs back to back and the writer rewinds the log
# (see _Checkpointer).
WAL_SIZE_LIMIT = 32 << 20
# A checkpoint runs at most this often (seconds); a commit wakes the checkpointer.
CHECKPOINT_EVERY = 1.0


class _FolderLock:
    """An exclusive lock on ``<history>.lock``, held while the store is open.

    ``flock`` (``msvcrt.locking`` on Windows) rather than a PID in a file: the kernel
    drops it when the process ends, also by ``kill -9``, so a crashed host never leaves
    a lock behind that the next start must judge stale.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path.with_name(path.name + ".lock"), "a+b")  # noqa: SIM115
        try:
            if sys.platform == "win32":
                import msvcrt

                self._file.seek(0)
                msvcrt.locking(self._file.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise StoreLocked(f"{path} is in use by another qtchat server") from None

    def release(self) -> None:
        if sys.platform == "win32":
            # Windows lets go of a lock left on a closed file only "when resources
            # allow" (LockFileEx): a store closed and opened again at once in the same
            # process could be told its own folder is in use. Unlock the byte first.
            import msvcrt

            with contextlib.suppress(OSError):
                self._file.seek(0)
                msvcrt.locking(self._file.fileno(), msvcrt.LK_UNLCK, 1)
        self._file.close()  # closing lets go of the lock (flock)


class _Checkpointer:
    """Copies the write-ahead log into the database from a thread of its own.

    A second connection on the same file runs ``PRAGMA wal_checkpoint(PASSIVE)``: it
    copies what no reader still needs and never blocks the writer, who goes on
    appending to the log meanwhile; sqlite3 lets go of the GIL for it. Woken by
    commits, at most once per ``CHECKPOINT_EVERY``; idle otherwise. A checkpoint that
    fails (a full disk) is tried again after the next commit; the log keeps the data.

    Copying is not enough to make the log start over: SQLite rewinds it only for a
    writer whose snapshot began after everything was copied, and the store's writer
    always holds one (a transaction is open between passes). So once a checkpoint here
    finds the log past ``WAL_SIZE_LIMIT`` (``oversized``), the writer copies the rest
    (what was written during that checkpoint: a few ms of copying) itself between its
    COMMIT and its next BEGIN (``MessageStore._catch_up``): its next write then rewinds
    the log. The log stays within the limit and a second of writes. The file is reused
    from its start, not cut back (cutting 30 MiB off it took ~80 ms of the writer's
    commit): ``journal_size_limit`` only trims a log that once grew past twice that.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=0.5,
                                   check_same_thread=False)
        self._page_size: int = self._db.execute("PRAGMA page_size").fetchone()[0]
        self.oversized = False  # the log is past WAL_SIZE_LIMIT: see the docstring
        self.busy = False  # a checkpoint is running in the thread
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qtchat-checkpoint",
                                        daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        """Let the thread end and close its connection; safe from any thread (a
        finalizer of a store nobody closed, which may run in this thread itself)."""
        self._stopped.set()
        self._wanted.set()

    def close(self) -> None:
        self.stop()
        self._thread.join()
        self._db.close()  # (closed by the thread already: harmless)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            # A store dropped without close (stop() from its finalizer): nobody joins
            # this thread, so it lets go of its connection and descriptors itself.
            with contextlib.suppress(sqlite3.Error):
                self._db.close()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopped.is_set():
                return
            self._wanted.clear()
            self.busy = True
            try:
                _busy, frames, _copied = self._db.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.oversized = frames * self._page_size > WAL_SIZE_LIMIT
            except sqlite3.Error as exc:
                log.info("checkpoint of the history postponed: %s", exc)
            finally:
                self.busy = False
            if self._stopped.wait(CHECKPOINT_EVERY):
                return


class StoreUnusable(Exception):
    """The files in the data directory must not be opened as they are; the message is
    one sentence saying why and what the person can do."""


class StoreTooNew(StoreUnusable):
    """The history was written by a newer qtchat, at a schema version this one does not
    know: opening it could lose what the newer version stored."""


class StorageError(Exception):
    """A commit failed and was rolled back: the messages ``seqs`` are not stored."""

    def __init__(self, message: str, seqs: list[int]) -> None:
        super().__init__(message)
        self.seqs = seqs


# The history's neighbours that say a history existed here (see _check_files).
_CERTIFICATE_FILES = ("qtchat-cert.pem", "qtchat-key.pem")  # tlsutil.CERT/KEY_FILENAME


def _check_files(path: Path) -> str | None:
    """Refuse a history whose data is only in a log SQLite would throw away; return a
    notice when an empty or missing history file is started over beside older data.

    - Missing, or zero bytes, with a non-empty ``-wal`` beside it: refused. The log
      is all there is of that history (a file moved or cut short); opening would
      delete it.
    - Zero bytes and no log: nothing can be recovered (a first start cut short by a
      full disk, a copy that failed): a new history, said once.
    - Missing beside the host's TLS certificate: it was deleted (to start over, or
      by mistake): a new history, said once.
    """
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size if path.exists() else None
    wal_size = wal.stat().st_size if wal.exists() else 0
    where = path.parent
    if not size and wal_size:
        state = "missing" if size is None else "empty (0 bytes)"
        raise StoreUnusable(
            f"{path.name} in {where} is {state}, but its write-ahead log {wal.name} "
            f"({wal_size:,} bytes) is there: opening it would throw that history away. "
            f"Put {path.name} back, or move {wal.name} out of the folder to start a new "
            "history.")
    if size == 0:
        return (f"{path.name} in {where} was empty (0 bytes, nothing to recover): "
                "starting a new history")
    if size is None and any((where / name).exists() for name in _CERTIFICATE_FILES):
        return (f"no {path.name} in {where} beside the host's certificate: starting a new "
                "history (clients will see the host started over)")
    return None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class StoredSession:
    sid: int
    secret_hash: str
    name: str
    rooms: list[str]
    sent_upto: int
    start_seq: int


class MessageStore:
    """Messages, rooms and sessions of one server; ``path=None`` keeps them in memory."""

    def __init__(self, path: Path | None, retention: int = 10_000) -> None:
        self.retention = retention
        # One line for whoever starts the server, when it starts a history over.
        self.notice: str | None = _check_files(path) if path else None
        new_file = path is not None and not (path.exists() and path.stat().st_size)
        self._lock = _FolderLock(path) if path else None  # raises StoreLocked
        self._checkpointer: _Checkpointer | None = None
        try:
            self._db = sqlite3.connect(
                str(path) if path else ":memory:", isolation_level=None, timeout=0.5
            )
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        # The log's index lives in this process's memory, not a -shm file: see _open_wal.
        self._exclusive = False
        try:
            self._open_wal(path)
            self._db.execute("PRAGMA synchronous=NORMAL")
            if not self._exclusive:
                # The checkpointer's thread does it (see the module's docstring and
                # _Checkpointer's); a log that once grew past twice its limit is trimmed.
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.execute(f"PRAGMA journal_size_limit={2 * WAL_SIZE_LIMIT}")
            fts.register_functions(self._db)  # the search index's triggers call them
            self._db.execute("BEGIN IMMEDIATE")  # take the lock now, not at the first message
            _migrate(self._db, path)
        except sqlite3.OperationalError:
            self._db.close()  # rolls back a step that failed: the file stays as it was
            if self._lock is not None:
                self._lock.release()
            if new_file and path is not None:
                # A history that was never made (a full disk, say) leaves no empty file
                # behind to be mistaken for a lost one at the next start.
                for made in (path, path.with_name(path.name + "-wal")):
                    with contextlib.suppress(OSError):
                        made.unlink()
            raise
        except BaseException:
            self._db.close()
            if self._lock is not None:
                self._lock.release()
            raise
        # Whisper identities are stored from the step that added their columns on; a
        # history kept at an older version (a test that stops the steps early) stores
        # messages without them.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        self._identity_columns = "sender_identity" in columns
        self._author_column = "author_identity" in columns
        row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        stored_max = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]
        self.last_seq: int = max(row[0] if row else 0, stored_max)
        row = self._db.execute("SELECT value FROM meta WHERE key='last_sid'").fetchone()
        self._last_sid: int = row[0] if row else 0
        # Names this history: a new database (or one in memory) is a new one, whose seq
        # starts again from 1. Clients use it to tell "the host started over" apart from
        # "the host came back".
        row = self._db.execute("SELECT value FROM meta WHERE key='history_id'").fetchone()
        if row is None:
            row = (secrets.randbits(62),)
            self._db.execute("INSERT INTO meta VALUES ('history_id', ?)", row)
        self.history_id = f"{row[0]:016x}"
        # Messages up to this seq are in the search index; later ones are indexed in
        # bulk (``_index_new``: by a commit once INDEX_BATCH wait, and before a search).
        self._search_upto = fts.indexed_upto(self._db)
        self._index_dirty = False  # index_some wrote to the open transaction
        # Messages added and not yet in the transaction, and those in it, uncommitted.
        self._pending: list[tuple[Any, ...]] = []
        self._inserted: list[tuple[Any, ...]] = []
        self._insert_failed: sqlite3.Error | None = None  # the open transaction is lost
        # Session and room changes not yet committed, by what they change: a later
        # change of the same thing replaces the earlier one (moved to the end, so the
        # order of the last changes is kept). Kept until a commit succeeds, so the
        # number waiting stays bounded by the sessions and rooms while the disk is full.
        self._session_ops: dict[tuple[str, Any], tuple[str, tuple[Any, ...]]] = {}
        self._urgent = False  # keep() was called: the next commit is not messages_only
        self._unstored_sessions: set[int] = set()  # begun, never committed
        # A change that must be stored before anyone is told of it (a chess move): the
        # end of the pass commits it like a message (PROTOCOL-FEATURES §0).
        self._urgent = False
        # Called before a read that would otherwise see uncommitted messages: the
        # server commits them first (handling a failure), so nothing read from here
        # is ever a message that could still be rolled back. None: read them as they
        # are in the open transaction.
        self.before_read: Callable[[], None] | None = None
        self._counts: dict[str, int] = dict(
            self._db.execute("SELECT bucket, COUNT(*) FROM messages GROUP BY bucket").fetchall()
        )
        self._pruned: dict[str, int] = dict(
            self._db.execute("SELECT key, pruned_upto FROM rooms").fetchall()
        )
        self._over: set[str] = set()
        # seq -> the ``file`` a message carries (files feature: kept by its file store,
        # which fills this in; every message read from here gets its own).
        self.attachments: dict[int, dict[str, Any]] = {}
        # seq -> the ``game`` a message carries (a chess result; see add_game_notice).
        # (No table: a history made by the steps before it, in a test of the steps.)
        self.game_notices: dict[int, dict[str, str]] = {}
        with contextlib.suppress(sqlite3.OperationalError):
            self.game_notices = {seq: json.loads(game) for seq, game in self._db.execute(
                "SELECT seq, game FROM game_notices")}
        self._changed = False  # an edit or delete is in the open transaction
        self._closed = False
        self._db.execute("BEGIN")
        if path is not None and not self._exclusive:
            try:
                self._checkpointer = _Checkpointer(path)
            except BaseException:  # no descriptor or thread left: the folder is free again
                self._db.close()
                if self._lock is not None:
                    self._lock.release()
                raise
            # A store dropped without close() stops its thread all the same.
            weakref.finalize(self, self._checkpointer.stop)

    def _open_wal(self, path: Path | None) -> None:
        """Put the connection in WAL mode, in SQLite's normal locking mode when it can.

        Normal locking keeps the log's index in a ``-shm`` file beside the history, which
        a clean stop deletes and the next start makes again (32 KiB). On a full disk it
        cannot (``SQLITE_IOERR_SHMSIZE``): the history is then opened in EXCLUSIVE mode,
        which keeps the index in memory, so the server starts, serves its history and
        refuses posts until there is room, as before checkpoints had a thread. Until it
        is restarted SQLite checkpoints inside commits again (no second connection can
        open the file) and the log is cut back as it was.
        """
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if path is None or getattr(exc, "sqlite_errorname", "") != "SQLITE_IOERR_SHMSIZE":
                raise
            reason = exc
        self._db.close()  # the failed open leaves the connection unusable
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=0.5)
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no -shm file
        self._db.execute("PRAGMA journal_mode=WAL")
        self._exclusive = True
        log.warning("no room for %s-shm in %s (%s): the history is opened in exclusive "
                    "mode, checkpoints run inside commits until the server is restarted",
                    path.name, path.parent, reason)

    # --- writing -----------------------------------------------------------------------

    def add(
        self,
        *,
        ts: str,
        bucket: str,
        room: str | None,
        sender: str,
        sender_sid: int,
        text: str,
        recipient: str | None = None,
        recipient_sid: int | None = None,
        client_id: str | None = None,
        sender_identity: str | None = None,
        recipient_identity: str | None = None,
    ) -> int:
        """Queue one message for the next commit and return its ``seq``. A whisper
        carries the identity hashes of its two sides (None: a side without one); a room
        message's ``sender_identity`` is kept as its author only (see _author_identities)."""
        self.last_seq += 1
        seq = self.last_seq
        whisper_sender = sender_identity if bucket == WHISPER_BUCKET else None
        self._pending.append(
            (seq, ts, bucket, room, sender, sender_sid, recipient, recipient_sid, text, client_id,
             whisper_sender, recipient_identity, sender_identity)
        )
        count = self._counts.get(bucket, 0) + 1
        self._counts[bucket] = count
        if count > self.retention:
            self._over.add(bucket)
        return seq

    def _write_pending(self) -> None:
        """Put the added messages into the open transaction (not yet committed)."""
        if self._pending and self._insert_failed is None:
            rows, self._pending = self._pending, []
            self._inserted += rows
            try:
                if self._author_column:
                    self._db.executemany(_INSERT_MESSAGE, rows)
                elif self._identity_columns:
                    self._db.executemany(_INSERT_WHISPER_IDS,
                                         [row[:_WHISPER_ID_COLUMNS] for row in rows])
                else:
                    marks = ",".join("?" * _V1_COLUMNS)
                    self._db.executemany(f"INSERT INTO messages VALUES ({marks})",
                                         [row[:_V1_COLUMNS] for row in rows])
            except sqlite3.Error as exc:  # the commit rolls back and reports it
                self._insert_failed = exc

    def _before_read(self) -> None:
        if self._pending or self._inserted:
            if self.before_read is not None:
                self.before_read()
            else:
                self._write_pending()

    @property
    def has_uncommitted_messages(self) -> bool:
        return bool(self._pending or self._inserted)

    def commit(self, *, messages_only: bool = False) -> bool:
        """Write everything added since the last commit in one transaction; returns
        whether a transaction was committed.

        ``messages_only``: do nothing unless messages are waiting. Session and
        room changes then ride along with the next message commit or the
        server's periodic full commit (at most a second later): a connect storm
        need not pay one transaction per pass for them.

        On failure everything is rolled back and ``StorageError`` raised with the
        ``seq`` of every message added since the last commit (none is stored);
        session and room changes wait for the next commit. The store is ready
        for the next one at once (a new transaction is begun).
        """
        if messages_only and not (self._pending or self._inserted or self._urgent
                                  or self._changed):
            return False
        if not (self._pending or self._inserted or self._session_ops or self._over
                or self._index_dirty or self._changed):
            return False
        try:
            self._write_pending()
            if self._insert_failed is not None:
                raise self._insert_failed
            for sql, params in self._session_ops.values():
                self._db.execute(sql, params)
            pruned = [cut for cut in map(self._prune, self._over) if cut is not None]
            backlog = self.last_seq - self._search_upto
            if backlog >= fts.INDEX_BACKLOG_MAX:
                # Down to a slice under the bound, not the whole backlog: catching up on
                # 50,000 rows in one commit held the server's loop 1.4 s (10 s seen
                # under load). What a pass adds is indexed by the same commit, so the
                # backlog (and a search's catch-up) stays within the bound.
                upto = self._search_upto + backlog - fts.INDEX_BACKLOG_MAX + fts.INDEX_SLICE
                fts.index_upto(self._db, self._search_upto, upto)
                self._search_upto = upto
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?), ('last_sid', ?)",
                (self.last_seq, self._last_sid),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            lost = self._roll_back()
            if isinstance(exc, sqlite3.IntegrityError):
                # Not the disk: a change that can never be stored. Trying it again
                # with every commit would refuse every message from now on.
                log.error("dropping %d session and room changes that cannot be stored: %s",
                          len(self._session_ops), exc)
                self._session_ops.clear()
            raise StorageError(str(exc), lost) from exc
        self._inserted.clear()
        self._changed = False
        self._session_ops.clear()
        self._urgent = False
        self._unstored_sessions.clear()
        self._over.clear()
        self._index_dirty = False
        for bucket, cutoff, deleted in pruned:
            self._counts[bucket] -= deleted
            self._pruned[bucket] = max(self._pruned.get(bucket, 0), cutoff)
            log.info("history of %r pruned up to seq %d (%d messages)", bucket, cutoff,
                     deleted)
        checkpointer = self._checkpointer
        if checkpointer is not None:
            if checkpointer.oversized and not checkpointer.busy:
                self._catch_up(checkpointer)  # (while it runs, it holds the lock)
            checkpointer.nudge()
        self._db.execute("BEGIN")
        return True

    def _catch_up(self, checkpointer: _Checkpointer) -> None:
        """Copy the rest of a long log here, with no snapshot held, so that the next
        write rewinds it (see ``_Checkpointer``). The thread copied the bulk; what is
        left is what was written during its last run."""
        try:
            busy, frames, copied = self._db.execute(
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.info("checkpoint of the history postponed: %s", exc)
            return
        if not busy and frames == copied:
            checkpointer.oversized = False  # rewound by the next write

    def index_some(self, limit: int = fts.INDEX_SLICE) -> int:
        """Index up to ``limit`` more of the messages stored since the index's mark (the
        server's sweep calls it); the next commit stores it. Returns how many seqs."""
        if self._pending or self._insert_failed is not None:
            return 0  # only what is in the transaction: the next sweep takes the rest
        upto = min(self.last_seq, self._search_upto + limit)
        if upto <= self._search_upto:
            return 0
        fts.index_upto(self._db, self._search_upto, upto)
        done, self._search_upto = upto - self._search_upto, upto
        self._index_dirty = True
        return done

    def _index_new(self) -> None:
        """Put the messages written since the index's mark into it (same transaction)."""
        if self.last_seq > self._search_upto:
            fts.index_upto(self._db, self._search_upto, self.last_seq)
            self._search_upto = self.last_seq

    def _roll_back(self) -> list[int]:
        """End the failed transaction, begin a new one; return the seqs it lost."""
        self._insert_failed = None
        self._changed = False  # the edits and deletes in it are lost with it
        if self._db.in_transaction:  # SQLite may have rolled it back already
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
        if not self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # BEGIN (deferred) writes nothing
                self._db.execute("BEGIN")
        self._search_upto = fts.indexed_upto(self._db)  # the mark went back with it
        self._index_dirty = False
        lost = self._inserted + self._pending
        self._inserted, self._pending = [], []
        counts = self._counts
        for row in lost:
            counts[row[2]] = counts.get(row[2], 1) - 1
        return [row[0] for row in lost]

    def _prune(self, bucket: str) -> tuple[str, int, int] | None:
        """Delete a bucket's oldest messages past retention, in the open transaction;
        returns (bucket, cutoff, deleted) for the caller to apply once committed."""
        # Keep at least `retention` messages; prune in steps of 1% to amortise the delete.
        slack = max(1, self.retention // 100)
        if self._counts.get(bucket, 0) < self.retention + slack:
            return None
        row = self._db.execute(
            "SELECT seq FROM messages WHERE bucket=? ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (bucket, self.retention),
        ).fetchone()
        if row is None:
            return None
        cutoff = row[0]
        deleted = self._db.execute(
            "DELETE FROM messages WHERE bucket=? AND seq<=?", (bucket, cutoff)
        ).rowcount
        self._db.execute(
            "INSERT INTO rooms (key, display, pruned_upto) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET pruned_upto=excluded.pruned_upto",
            (bucket, bucket, cutoff),
        )
        return bucket, cutoff, deleted

    def close(self) -> None:
        """Commit what is pending and close; calling it twice is harmless, and so is a
        disk that is still full (what cannot be written then is logged, not raised)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.commit()
        except StorageError as exc:
            log.error("closing the history without %d messages and %d session changes "
                      "that could not be written: %s", len(exc.seqs), len(self._session_ops),
                      exc)
        try:
            if self._db.in_transaction:
                self._db.execute("COMMIT")  # the empty transaction commit() began
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._db.close()  # the last connection: SQLite checkpoints and removes the log
        if self._lock is not None:
            self._lock.release()

    # --- reading -----------------------------------------------------------------------

    def pruned_upto(self, bucket: str) -> int:
        """The highest seq that retention removed from this bucket (0 if none)."""
        return self._pruned.get(bucket, 0)

    def count(self, bucket: str) -> int:
        return self._counts.get(bucket, 0)

    def page(self, bucket: str, before: int | None, limit: int,
             max_chars: int | None = None, *, tombstones: bool = True) -> list[Message]:
        """Up to ``limit`` broadcasts of a room older than ``before``, oldest first, with
        their edits and deletes (``tombstones=False``: without the deleted ones, for a
        client that does not know them).

        ``max_chars``: stop reading older rows once the texts read hold this many
        characters (a frame's bytes: older messages could not fit in the answer anyway),
        so a page of 200 texts of 4,000 emoji reads 64 KB, not 3 MB.
        """
        self._before_read()
        cursor = self._db.execute(
            f"SELECT m.seq, ts, room, sender, text, {_CHANGED} FROM messages m {_CHANGES} "
            f"WHERE bucket=? AND m.seq<? {'' if tombstones else _NOT_DELETED} "
            "ORDER BY m.seq DESC LIMIT ?",
            (bucket, before if before is not None else self.last_seq + 1, limit),
        )
        if max_chars is None:
            rows = cursor.fetchall()
        else:
            rows, chars = [], 0
            for row in cursor:
                rows.append(row)
                chars += len(row[4])
                if chars >= max_chars:
                    break
            cursor.close()
        rows.reverse()
        files = self.attachments
        games = self.game_notices
        return [Message(seq=s, ts=ts, sender=f, room=r, text=t, file=files.get(s),
                        game=games.get(s), **_changed(*c))
                for s, ts, r, f, t, *c in rows]

    def whisper_page(self, sid: int, other_sid: int, before: int | None, limit: int,
                     max_chars: int | None = None, *, tombstones: bool = True
                     ) -> list[Message]:
        """Up to ``limit`` whispers between sessions ``sid`` and ``other_sid`` older than
        ``before``, oldest first; as ``conversation_page`` otherwise."""
        return self.conversation_page(Party(sid=sid), Party(sid=other_sid), before, limit,
                                      max_chars, tombstones=tombstones)

    def conversation_page(self, mine: Party, other: Party, before: int | None, limit: int,
                          max_chars: int | None = None, *, tombstones: bool = True
                          ) -> list[Message]:
        """Up to ``limit`` whispers between ``mine`` and ``other`` older than ``before``,
        oldest first (``history {with}``); as ``page`` otherwise.

        Each direction is its own query so that an identity's index drives it (a page
        then reads about a page of that identity's whispers), not the bucket of every
        whisper on the host: ``+m.bucket`` keeps the planner off ``messages_bucket``
        where an identity is there to use instead."""
        self._before_read()
        hidden = "" if tombstones else _NOT_DELETED
        upto = before if before is not None else self.last_seq + 1
        parts, params = [], []
        for sender, recipient in ((mine, other), (other, mine)):
            sent, sent_args = sender.where("sender")
            got, got_args = recipient.where("recipient")
            bucket = "+m.bucket" if sender.identity or recipient.identity else "m.bucket"
            parts.append(f"SELECT seq FROM (SELECT m.seq FROM messages m WHERE {bucket}='' "
                         f"AND m.seq<? AND {sent} AND {got} {hidden} ORDER BY m.seq DESC "
                         "LIMIT ?)")
            params += [upto, *sent_args, *got_args, limit]
        cursor = self._db.execute(
            f"SELECT m.seq, ts, sender, recipient, text, {_CHANGED} FROM messages m "
            f"{_CHANGES} WHERE m.seq IN ({' UNION '.join(parts)}) ORDER BY m.seq DESC LIMIT ?",
            (*params, limit))
        rows, chars = [], 0
        for row in cursor:
            rows.append(row)
            chars += len(row[4])
            if max_chars is not None and chars >= max_chars:
                break
        cursor.close()
        rows.reverse()
        files = self.attachments
        return [Message(seq=s, ts=ts, sender=f, to=to, text=t, file=files.get(s),
                        **_changed(*c))
                for s, ts, f, to, t, *c in rows]

    def conversations(self, identity: str, limit: int = 50
                      ) -> list[tuple[str | None, str, int]]:
        """The private conversations of ``identity``, newest first: (the other side's
        identity or None, the name it last had in them, the newest seq). A partner
        without identity is told apart by name only (its sessions are gone anyway)."""
        self._before_read()
        return self._db.execute(
            "SELECT pid, pname, MAX(seq) AS last FROM ("
            " SELECT seq, recipient_identity AS pid, recipient AS pname FROM messages"
            "  WHERE sender_identity=? AND bucket='' AND recipient IS NOT NULL"
            " UNION ALL"
            " SELECT seq, sender_identity AS pid, sender AS pname FROM messages"
            "  WHERE recipient_identity=? AND bucket=''"
            ") GROUP BY COALESCE(pid, '=' || pname) ORDER BY last DESC LIMIT ?",
            (identity, identity, limit)).fetchall()

    def replay(
        self, buckets: Iterable[str], sid: int, since: int, batch: int = 500, *,
        tombstones: bool = True
    ) -> Iterator[Message]:
        """Messages after ``since`` of the given rooms, and whispers to or from session
        ``sid``, in seq order; the session's own sends carry their ``id``.

        Reads in batches up to the newest seq at each step, so a caller that
        consumes it slowly also gets what was stored meanwhile; ``buckets`` is
        iterated afresh for every batch, so a live view (``dict.keys()``) follows
        rooms joined or left meanwhile.
        """
        cursor = since
        while True:
            keys = list(buckets)
            marks = ",".join("?" * len(keys)) or "NULL"
            # ``+m.bucket`` keeps the bucket index out: with it SQLite gathered every later
            # message of those rooms and sorted them for each batch (a replay of 20,000
            # took 1.4 s of CPU, 14x that of 5,000); walking seq from the cursor reads
            # each later message once over the whole replay and stops at the batch.
            sql = (
                "SELECT m.seq, ts, bucket, room, sender, sender_sid, recipient, text, "
                f"client_id, {_CHANGED} FROM messages m {_CHANGES} WHERE m.seq>? AND "
                f"(+m.bucket IN ({marks}) OR (+m.bucket='' AND (sender_sid=? OR recipient_sid=?))) "
                f"{'' if tombstones else _NOT_DELETED} ORDER BY m.seq LIMIT ?"
            )
            self._before_read()
            rows = self._db.execute(sql, (cursor, *keys, sid, sid, batch)).fetchall()
            if not rows:
                return
            for seq, ts, bucket, room, sender, sender_sid, recipient, text, cid, *c in rows:
                cursor = seq
                yield Message(seq=seq, ts=ts, sender=sender, text=text,
                              room=room if bucket else None,
                              to=None if bucket else recipient,
                              id=cid if sender_sid == sid else None,
                              file=self.attachments.get(seq),
                              game=self.game_notices.get(seq), **_changed(*c))

    def message_by_seq(self, seq: int) -> Message | None:
        """One stored message (with its sender's ``id``), or None if pruned."""
        found = self.message_meta(seq)
        return found[3] if found is not None else None

    def message_meta(self, seq: int) -> tuple[str, int, int | None, Message] | None:
        """(bucket, sender's session, recipient's session, the message) of one stored
        message, or None if pruned or never stored: who may see, edit or delete it."""
        self._before_read()
        row = self._db.execute(
            "SELECT ts, bucket, room, sender, recipient, text, client_id, sender_sid, "
            f"recipient_sid, {_CHANGED} FROM messages m {_CHANGES} WHERE m.seq=?",
            (seq,),
        ).fetchone()
        if row is None:
            return None
        ts, bucket, room, sender, recipient, text, cid, sender_sid, recipient_sid, *c = row
        return bucket, sender_sid, recipient_sid, Message(
            seq=seq, ts=ts, sender=sender, text=text, room=room if bucket else None,
            to=None if bucket else recipient, id=cid, file=self.attachments.get(seq),
            game=self.game_notices.get(seq), **_changed(*c))

    def message_identities(self, seq: int) -> tuple[str | None, str | None]:
        """(its author's identity, a whisper's recipient's identity) of one stored message
        (None: a side without one, or a message stored before the store kept it): who
        may see and change it from a later session of the same identity (§1, §7)."""
        self._before_read()
        author = "author_identity" if self._author_column else "NULL"
        if not self._identity_columns:
            return None, None
        row = self._db.execute(f"SELECT COALESCE({author}, sender_identity), "
                               "recipient_identity FROM messages WHERE seq=?",
                               (seq,)).fetchone()
        return (row[0], row[1]) if row is not None else (None, None)

    def client_ids(self, sid: int, limit: int = 10_000) -> dict[str, int]:
        """The latest client-chosen ids a session used, mapped to their seq."""
        self._before_read()
        rows = self._db.execute(
            "SELECT client_id, seq FROM messages WHERE sender_sid=? AND client_id IS NOT NULL "
            "ORDER BY seq DESC LIMIT ?",
            (sid, limit),
        ).fetchall()
        return {cid: seq for cid, seq in reversed(rows)}

    # --- edits, deletes and search (issue 17; the index is kept by triggers) -------------

    def edit_message(self, seq: int, text: str, edited_ts: str) -> bool:
        """Give a stored message new text, in the open transaction; False if there is no
        such message (pruned, never stored) or it is deleted. The caller checks who may,
        then commits before telling anyone: a failed commit rolls the edit back too."""
        self._write_pending()
        if not self._db.execute("UPDATE messages SET text=? WHERE seq=? AND text<>'' AND "
                                "seq NOT IN (SELECT seq FROM message_changes WHERE "
                                "deleted_ts IS NOT NULL)", (text, seq)).rowcount:
            return False
        self._db.execute("INSERT INTO message_changes (seq, edited_ts) VALUES (?, ?) "
                         "ON CONFLICT(seq) DO UPDATE SET edited_ts=excluded.edited_ts",
                         (seq, edited_ts))
        self._changed = True
        return True

    def delete_message(self, seq: int, by: str, ts: str) -> bool:
        """Leave a tombstone (text "", who and when) in the open transaction; False if
        there is no such message or it is already deleted. Commit as for an edit."""
        self._write_pending()
        if self._db.execute("SELECT 1 FROM message_changes WHERE seq=? AND deleted_ts IS "
                            "NOT NULL", (seq,)).fetchone():
            return False
        if not self._db.execute("UPDATE messages SET text='' WHERE seq=?", (seq,)).rowcount:
            return False
        self._db.execute("INSERT INTO message_changes (seq, deleted_by, deleted_ts) "
                         "VALUES (?, ?, ?) ON CONFLICT(seq) DO UPDATE SET "
                         "deleted_by=excluded.deleted_by, deleted_ts=excluded.deleted_ts",
                         (seq, by, ts))
        self._changed = True
        return True

    def changes(self, seqs: Iterable[int]) -> dict[int, tuple[str | None, str | None,
                                                              str | None]]:
        """(edited_ts, deleted_by, deleted_ts) of those of ``seqs`` that were edited or
        deleted: what history, replays and search add to a message's frame."""
        wanted = list(seqs)
        found: dict[int, tuple[str | None, str | None, str | None]] = {}
        for start in range(0, len(wanted), 500):  # SQLite's limit on parameters
            part = wanted[start:start + 500]
            found.update((seq, tuple(rest)) for seq, *rest in self._db.execute(
                "SELECT seq, edited_ts, deleted_by, deleted_ts FROM message_changes WHERE "
                f"seq IN ({','.join('?' * len(part))})", part))
        return found

    def search(self, query: str, buckets: Iterable[str], whisper_sid: int | None = None,
               with_sid: int | None = None, before: int | None = None,
               limit: int = 20, *, mine: Party | None = None,
               other: Party | None = None) -> tuple[list[Message], bool]:
        """Messages matching ``query`` (plain words, see search.Query), newest first,
        and whether older ones match too (page on with ``before`` = the oldest seq).

        Only broadcasts of ``buckets`` and whispers of session ``whisper_sid`` (sent or
        received; with ``with_sid`` only those between the two) are looked at: the
        caller decides which, the store just filters. Deleted messages are never found.
        ``mine`` instead of ``whisper_sid``: the whispers of that party (by identity),
        with ``other`` only those with that one.
        """
        q = fts.Query(query)
        if q.empty:
            return [], False
        self._before_read()
        self._index_new()  # every message stored so far is found
        keys = list(buckets)
        scope = [f"m.bucket IN ({','.join('?' * len(keys))})"] if keys else []
        params: list[Any] = list(keys)
        if mine is not None:
            between, between_params = _between(mine, other)
            scope.append(between)
            params += between_params
        elif whisper_sid is not None:
            if with_sid is None:
                scope.append("(m.bucket='' AND (m.sender_sid=? OR m.recipient_sid=?))")
                params += [whisper_sid, whisper_sid]
            else:
                scope.append("(m.bucket='' AND ((m.sender_sid=? AND m.recipient_sid=?) OR "
                             "(m.sender_sid=? AND m.recipient_sid=?)))")
                params += [whisper_sid, with_sid, with_sid, whisper_sid]
        if not scope:
            return [], False
        where = [f"({' OR '.join(scope)})", "m.text<>''"]
        # The word index drives when there are words (it has every message with text);
        # either way in rowid order, newest first, so a page reads about a page.
        if q.words is not None:
            terms = (fts.expand_prefix(self._db, q.prefix)
                     if q.prefix is not None and len(q.prefix) >= fts.EXPAND_FROM else None)
            match = q.words if terms is None else q.words_with(terms)
            table = "messages_words"
            if q.runs is not None:
                where.append("m.seq IN (SELECT rowid FROM messages_cjk WHERE messages_cjk "
                             "MATCH ?)")
                params.append(q.runs)
        else:  # only parts of 3+ characters in spaceless scripts
            table, match = "messages_cjk", q.runs
        if before is not None:
            where.append("f.rowid<?")
            params.append(before)
        columns = f"m.seq, m.ts, m.bucket, m.room, m.sender, m.recipient, m.text, {_CHANGED}"
        sql = (f"SELECT {columns} FROM {table} f JOIN messages m ON m.seq=f.rowid {_CHANGES} "
               f"WHERE {table} MATCH ? AND {' AND '.join(where)} "
               "ORDER BY f.rowid DESC LIMIT ?")
        args = [match, *params, limit + 1]
        rows = self._db.execute(sql, args).fetchall()
        found = [Message(seq=seq, ts=ts, sender=sender, text=text,
                         room=room if bucket else None, to=None if bucket else recipient,
                         **_changed(*c))
                 for seq, ts, bucket, room, sender, recipient, text, *c in rows[:limit]]
        return found, len(rows) > limit

    # --- rooms and sessions ------------------------------------------------------------

    def rooms(self) -> list[tuple[str, str]]:
        """Every known room as (key, display), the one spoken in longest ago first
        (as committed)."""
        return self._db.execute(
            "SELECT key, display FROM rooms WHERE key<>'' ORDER BY "
            "(SELECT MAX(seq) FROM messages WHERE bucket=rooms.key)").fetchall()

    def keep(self, what: tuple[str, Any], sql: str, params: tuple[Any, ...]) -> None:
        """A feature's stored effect (a ban, a binding): written by the commit at the end
        of this pass, before anyone is told of it (PROTOCOL-FEATURES §0). ``what`` names
        the thing: a later change of it in the same pass replaces this one."""
        self._change(what, sql, params)
        self._urgent = True

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A feature's stored records (as committed, when it loads)."""
        return self._db.execute(sql, params).fetchall()

    def _change(self, what: tuple[str, Any], sql: str, params: tuple[Any, ...]) -> None:
        ops = self._session_ops
        ops.pop(what, None)  # the latest change of a thing goes last, the earlier one goes
        ops[what] = (sql, params)

    def save_room(self, key: str, display: str) -> None:
        self._change(("room", key), "INSERT OR IGNORE INTO rooms (key, display) VALUES (?, ?)",
                     (key, display))

    def save_receipt(self, reader_sid: int, writer_sid: int, state: str, seq: int) -> None:
        """A receipt moved forward: committed with this pass, before it is forwarded."""
        self._change(("receipt", reader_sid, writer_sid, state),
                     "INSERT INTO receipts VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                     "seq=MAX(seq, excluded.seq)", (reader_sid, writer_sid, state, seq))
        self._changed = True  # the pass's commit carries it (see commit)

    def receipts(self) -> list[tuple[int, int, str, int]]:
        """Every stored receipt: (reader session, writer session, state, seq)."""
        return self._db.execute(
            "SELECT reader_sid, writer_sid, state, seq FROM receipts").fetchall()

    def save_identity_receipt(self, reader: str, writer: str, state: str, seq: int) -> None:
        """A receipt between two identities moved forward (kept past their sessions, §1);
        committed as ``save_receipt``."""
        self._change(("identity_receipt", reader, writer, state),
                     "INSERT INTO identity_receipts VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE "
                     "SET seq=MAX(seq, excluded.seq)", (reader, writer, state, seq))
        self._changed = True

    def identity_receipts(self) -> list[tuple[str, str, str, int]]:
        """Every stored receipt between identities: (reader, writer, state, seq)."""
        if not self._author_column:  # a history kept before the step (tests)
            return []
        return self._db.execute("SELECT reader_identity, writer_identity, state, seq "
                                "FROM identity_receipts").fetchall()

    def forget_room(self, key: str) -> None:
        """A room with no messages and nobody in it: gone (see ChatServer._leave_room)."""
        self._change(("room", key), "DELETE FROM rooms WHERE key=? AND NOT EXISTS "
                     "(SELECT 1 FROM messages WHERE bucket=?)", (key, key))
        self._counts.pop(key, None)
        self._pruned.pop(key, None)

    def retire_room(self, key: str) -> None:
        """A room the server no longer keeps (too many rooms): it goes with its history."""
        # Only what it held until now: a room of that name made again before the next
        # commit keeps its new messages.
        history = ("DELETE FROM messages WHERE bucket=? AND seq<=?", (key, self.last_seq))
        self._change(("room-history", key), *history)
        self._change(("room", key), "DELETE FROM rooms WHERE key=?", (key,))
        # Also at once, in the open transaction, so that a page read before the commit
        # does not show it (the commit runs it again; a rollback leaves it to the next).
        with contextlib.suppress(sqlite3.Error):
            self._db.execute(*history)
        self._counts.pop(key, None)
        self._pruned.pop(key, None)
        self._over.discard(key)

    def new_session(self, secret: str, name: str, rooms: list[str]) -> int:
        """A new session, begun at the current ``last_seq``; returns its id."""
        self._last_sid += 1
        sid = self._last_sid
        self._change(
            ("session", sid),
            "INSERT INTO sessions (sid, secret_hash, name, rooms, sent_upto, start_seq) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sid, hash_secret(secret), name, json.dumps(rooms), self.last_seq, self.last_seq),
        )
        self._unstored_sessions.add(sid)
        return sid

    def update_session_sent_upto(self, sid: int, sent_upto: int) -> None:
        self._change(("sent_upto", sid), "UPDATE sessions SET sent_upto=? WHERE sid=?",
                     (sent_upto, sid))

    def update_session_rooms(self, sid: int, rooms: list[str]) -> None:
        self._change(("rooms", sid), "UPDATE sessions SET rooms=? WHERE sid=?",
                     (json.dumps(rooms), sid))

    def end_session(self, sid: int) -> None:
        ops = self._session_ops
        for kind in ("session", "sent_upto", "rooms"):
            ops.pop((kind, sid), None)
        if sid in self._unstored_sessions:  # never written: nothing to delete
            self._unstored_sessions.discard(sid)
            return
        self._change(("end", sid), "DELETE FROM sessions WHERE sid=?", (sid,))

    def save_game(self, game: str, white: str, black: str, white_sid: int | None,
                  black_sid: int | None, state: str, record: dict[str, Any]) -> None:
        """Store a chess game as it is now, committed at the end of this pass."""
        self._change(("game", game),
                     "INSERT INTO games (game, white, black, white_sid, black_sid, state, ended,"
                     " record) VALUES (?, ?, ?, ?, ?, ?, CASE WHEN ?='finished' THEN "
                     "(SELECT COALESCE(MAX(ended), 0) + 1 FROM games) ELSE 0 END, ?) "
                     "ON CONFLICT(game) DO UPDATE SET state=excluded.state, "
                     "ended=excluded.ended, record=excluded.record",
                     (game, white, black, white_sid, black_sid, state, state,
                      json.dumps(record)))
        self._urgent = True

    def add_game_notice(self, seq: int, game: dict[str, str]) -> None:
        """Message ``seq`` (added this pass) says how a chess game ended: stored with it
        (the same commit), and read back with it by pages, replays and lookups."""
        self.game_notices[seq] = game
        self.keep(("game_notice", seq), "INSERT OR REPLACE INTO game_notices VALUES (?, ?)",
                  (seq, json.dumps(game)))

    def open_games(self) -> list[tuple[int | None, int | None, dict[str, Any]]]:
        """Running and adjourned games as committed: (white_sid, black_sid, record)."""
        return [(w, b, json.loads(record)) for w, b, record in self._db.execute(
            "SELECT white_sid, black_sid, record FROM games WHERE state<>'finished'")]

    def finished_games(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The last ``limit`` finished games ``name`` played, newest first."""
        return [json.loads(record) for (record,) in self._db.execute(
            "SELECT record FROM games WHERE state='finished' AND (white=? OR black=?) "
            "ORDER BY ended DESC LIMIT ?", (name, name, limit))]

    def sessions(self) -> list[StoredSession]:
        """Every stored session (as committed)."""
        return [
            StoredSession(sid, secret_hash, name, json.loads(rooms), sent_upto, start_seq)
            for sid, secret_hash, name, rooms, sent_upto, start_seq in self._db.execute(
                "SELECT sid, secret_hash, name, rooms, sent_upto, start_seq FROM sessions"
            )
        ]
