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

A data directory belongs to one server at a time: the database is opened in
SQLite's EXCLUSIVE locking mode, so a second server on the same folder fails at
once with ``StoreLocked`` instead of fighting over every commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WHISPER_BUCKET = ""  # the retention bucket of whispers (room keys are never empty)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
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
);
CREATE INDEX IF NOT EXISTS messages_bucket ON messages (bucket, seq);
CREATE INDEX IF NOT EXISTS messages_client_id ON messages (sender_sid, client_id)
    WHERE client_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS rooms (
    key TEXT PRIMARY KEY, display TEXT NOT NULL, pruned_upto INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    sid INTEGER PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    rooms TEXT NOT NULL,           -- JSON list of room names as shown
    sent_upto INTEGER NOT NULL DEFAULT 0,  -- see Session.sent_upto in server.py
    start_seq INTEGER NOT NULL DEFAULT 0   -- last_seq when the session began
);
"""


class StoreLocked(Exception):
    """Another process (another qtchat server) has this database open."""


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
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", isolation_level=None, timeout=0.5
        )
        try:
            # EXCLUSIVE before WAL: the WAL index then lives in this process's memory
            # (no -shm file) and the lock is held until close.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")  # take the lock now, not at the first message
            self._db.executescript(_SCHEMA)  # executescript commits first
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise StoreLocked(f"{path} is in use by another qtchat server") from None
            raise
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
        for column in ("sent_upto", "start_seq"):  # databases from before these columns
            if column not in columns:
                self._db.execute(
                    f"ALTER TABLE sessions ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
                )
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
        self._pending: list[tuple[Any, ...]] = []
        self._session_ops: list[tuple[str, tuple[Any, ...]]] = []
        self._counts: dict[str, int] = dict(
            self._db.execute("SELECT bucket, COUNT(*) FROM messages GROUP BY bucket").fetchall()
        )
        self._pruned: dict[str, int] = dict(
            self._db.execute("SELECT key, pruned_upto FROM rooms").fetchall()
        )
        self._over: set[str] = set()
        self._closed = False
        self._db.execute("BEGIN")

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
    ) -> int:
        """Queue one message for the next commit and return its ``seq``."""
        self.last_seq += 1
        seq = self.last_seq
        self._pending.append(
            (seq, ts, bucket, room, sender, sender_sid, recipient, recipient_sid, text, client_id)
        )
        count = self._counts.get(bucket, 0) + 1
        self._counts[bucket] = count
        if count > self.retention:
            self._over.add(bucket)
        return seq

    def _write_pending(self) -> None:
        if self._pending:
            self._db.executemany(
                "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", self._pending
            )
            self._pending.clear()
        for sql, params in self._session_ops:
            self._db.execute(sql, params)
        self._session_ops.clear()

    def commit(self, *, messages_only: bool = False) -> None:
        """Write everything added since the last commit in one transaction.

        ``messages_only``: do nothing unless messages are waiting. Session and
        room changes then ride along with the next message commit or the
        server's periodic full commit (at most a second later): a connect storm
        need not pay one transaction per pass for them.
        """
        if messages_only and not self._pending:
            return
        if not (self._pending or self._session_ops or self._over):
            return
        self._write_pending()
        for bucket in self._over:
            self._prune(bucket)
        self._over.clear()
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?), ('last_sid', ?)",
            (self.last_seq, self._last_sid),
        )
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def _prune(self, bucket: str) -> None:
        # Keep at least `retention` messages; prune in steps of 1% to amortise the delete.
        slack = max(1, self.retention // 100)
        if self._counts.get(bucket, 0) < self.retention + slack:
            return
        row = self._db.execute(
            "SELECT seq FROM messages WHERE bucket=? ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (bucket, self.retention),
        ).fetchone()
        if row is None:
            return
        cutoff = row[0]
        deleted = self._db.execute(
            "DELETE FROM messages WHERE bucket=? AND seq<=?", (bucket, cutoff)
        ).rowcount
        self._counts[bucket] -= deleted
        self._pruned[bucket] = max(self._pruned.get(bucket, 0), cutoff)
        self._db.execute(
            "INSERT INTO rooms (key, display, pruned_upto) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET pruned_upto=excluded.pruned_upto",
            (bucket, bucket, cutoff),
        )
        log.info("history of %r pruned up to seq %d (%d messages)", bucket, cutoff, deleted)

    def close(self) -> None:
        """Commit what is pending and close; calling it twice is harmless."""
        if self._closed:
            return
        self.commit()
        self._db.execute("COMMIT")
        self._db.close()
        self._closed = True

    # --- reading -----------------------------------------------------------------------

    def pruned_upto(self, bucket: str) -> int:
        """The highest seq that retention removed from this bucket (0 if none)."""
        return self._pruned.get(bucket, 0)

    def count(self, bucket: str) -> int:
        return self._counts.get(bucket, 0)

    def page(self, bucket: str, before: int | None, limit: int,
             max_chars: int | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` broadcasts of a room older than ``before``, oldest first.

        ``max_chars``: stop reading older rows once the texts read hold this many
        characters (a frame's bytes: older messages could not fit in the answer anyway),
        so a page of 200 texts of 4,000 emoji reads 64 KB, not 3 MB.
        """
        self._write_pending()
        cursor = self._db.execute(
            "SELECT seq, ts, room, sender, text FROM messages WHERE bucket=? AND seq<? "
            "ORDER BY seq DESC LIMIT ?",
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
        return [
            {"type": "broadcast", "seq": s, "ts": ts, "from": f, "room": r, "text": t}
            for s, ts, r, f, t in rows
        ]

    def replay(
        self, buckets: Iterable[str], sid: int, since: int, batch: int = 500
    ) -> Iterator[dict[str, Any]]:
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
            sql = (
                "SELECT seq, ts, bucket, room, sender, sender_sid, recipient, text, client_id "
                f"FROM messages WHERE seq>? AND (bucket IN ({marks}) OR (bucket='' AND "
                "(sender_sid=? OR recipient_sid=?))) ORDER BY seq LIMIT ?"
            )
            self._write_pending()
            rows = self._db.execute(sql, (cursor, *keys, sid, sid, batch)).fetchall()
            if not rows:
                return
            for seq, ts, bucket, room, sender, sender_sid, recipient, text, cid in rows:
                cursor = seq
                if bucket:
                    frame = {"type": "broadcast", "seq": seq, "ts": ts, "from": sender,
                             "room": room, "text": text}
                else:
                    frame = {"type": "whisper", "seq": seq, "ts": ts, "from": sender,
                             "to": recipient, "text": text}
                if cid is not None and sender_sid == sid:
                    frame["id"] = cid
                yield frame

    def message_by_seq(self, seq: int) -> dict[str, Any] | None:
        """One stored message as its frame (with its ``id``), or None if pruned."""
        self._write_pending()
        row = self._db.execute(
            "SELECT ts, bucket, room, sender, recipient, text, client_id FROM messages "
            "WHERE seq=?",
            (seq,),
        ).fetchone()
        if row is None:
            return None
        ts, bucket, room, sender, recipient, text, cid = row
        frame: dict[str, Any] = {"type": "broadcast" if bucket else "whisper", "seq": seq,
                                 "ts": ts, "from": sender, "text": text}
        if bucket:
            frame["room"] = room
        else:
            frame["to"] = recipient
        if cid is not None:
            frame["id"] = cid
        return frame

    def client_ids(self, sid: int, limit: int = 10_000) -> dict[str, int]:
        """The latest client-chosen ids a session used, mapped to their seq."""
        self._write_pending()
        rows = self._db.execute(
            "SELECT client_id, seq FROM messages WHERE sender_sid=? AND client_id IS NOT NULL "
            "ORDER BY seq DESC LIMIT ?",
            (sid, limit),
        ).fetchall()
        return {cid: seq for cid, seq in reversed(rows)}

    # --- rooms and sessions ------------------------------------------------------------

    def rooms(self) -> list[tuple[str, str]]:
        """Every known room as (key, display), the one spoken in longest ago first."""
        self._write_pending()
        return self._db.execute(
            "SELECT key, display FROM rooms WHERE key<>'' ORDER BY "
            "(SELECT MAX(seq) FROM messages WHERE bucket=rooms.key)").fetchall()

    def save_room(self, key: str, display: str) -> None:
        self._session_ops.append(
            ("INSERT OR IGNORE INTO rooms (key, display) VALUES (?, ?)", (key, display))
        )

    def forget_room(self, key: str) -> None:
        """A room with no messages and nobody in it: gone (see ChatServer._leave_room)."""
        self._session_ops.append(("DELETE FROM rooms WHERE key=? AND NOT EXISTS "
                                  "(SELECT 1 FROM messages WHERE bucket=?)", (key, key)))
        self._counts.pop(key, None)
        self._pruned.pop(key, None)

    def retire_room(self, key: str) -> None:
        """A room the server no longer keeps (too many rooms): it goes with its history."""
        self._session_ops.append(("DELETE FROM messages WHERE bucket=?", (key,)))
        self._session_ops.append(("DELETE FROM rooms WHERE key=?", (key,)))
        self._counts.pop(key, None)
        self._pruned.pop(key, None)
        self._over.discard(key)

    def new_session(self, secret: str, name: str, rooms: list[str]) -> int:
        """A new session, begun at the current ``last_seq``; returns its id."""
        self._last_sid += 1
        self._session_ops.append(
            (
                "INSERT INTO sessions (sid, secret_hash, name, rooms, sent_upto, start_seq) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (self._last_sid, hash_secret(secret), name, json.dumps(rooms),
                 self.last_seq, self.last_seq),
            )
        )
        return self._last_sid

    def update_session_sent_upto(self, sid: int, sent_upto: int) -> None:
        self._session_ops.append(
            ("UPDATE sessions SET sent_upto=? WHERE sid=?", (sent_upto, sid))
        )

    def update_session_rooms(self, sid: int, rooms: list[str]) -> None:
        self._session_ops.append(
            ("UPDATE sessions SET rooms=? WHERE sid=?", (json.dumps(rooms), sid))
        )

    def end_session(self, sid: int) -> None:
        self._session_ops.append(("DELETE FROM sessions WHERE sid=?", (sid,)))

    def sessions(self) -> list[StoredSession]:
        self._write_pending()
        return [
            StoredSession(sid, secret_hash, name, json.loads(rooms), sent_upto, start_seq)
            for sid, secret_hash, name, rooms, sent_upto, start_seq in self._db.execute(
                "SELECT sid, secret_hash, name, rooms, sent_upto, start_seq FROM sessions"
            )
        ]
