"""The history's schema versions: each step is tested from a real file of the version before.

A version 0 file is what qtchat wrote before versions were numbered; its CREATE
statements are copied here as they were (not imported: the store's own may change).
The files are checked with plain ``sqlite3`` after the store has closed them, so what
is asserted is what is on disk.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from qtchat.server import store as store_module
from qtchat.server.store import (
    SCHEMA_VERSION,
    MessageStore,
    StoreTooNew,
    StoreUnusable,
    hash_secret,
)

# qtchat's schema from the tree move (2738c63) back to the "since-less resume" fix
# (b708d2d): user_version 0, sessions with sent_upto and start_seq.
V0_SCHEMA = """
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
# Also user_version 0: before b708d2d, sessions had no sent_upto or start_seq.
V0_BEFORE_RESUME_POINTS_SCHEMA = V0_SCHEMA.replace(
    """    rooms TEXT NOT NULL,           -- JSON list of room names as shown
    sent_upto INTEGER NOT NULL DEFAULT 0,  -- see Session.sent_upto in server.py
    start_seq INTEGER NOT NULL DEFAULT 0   -- last_seq when the session began
""", """    rooms TEXT NOT NULL            -- JSON list of room names as shown
""")

HISTORY_ID = 0x1234_5678_9ABC_DEF0
LAST_SEQ = 57  # above the newest message: the newest ones went with a retired room
LAST_SID = 9


def _messages() -> list[tuple]:
    rows = []
    for seq in range(1, 51):
        if seq % 10 == 0:  # a whisper between sessions 1 and 2
            rows.append((seq, f"2026-01-01T00:00:{seq:02d}Z", "", None, "Alice", 1, "Bob", 2,
                         f"psst {seq}", None))
        else:
            room = ("lobby", "lobby") if seq % 2 else ("café", "Café")
            rows.append((seq, f"2026-01-01T00:00:{seq:02d}Z", room[0], room[1],
                         "Bob" if seq % 3 else "Alice", 2 if seq % 3 else 1, None, None,
                         f"message {seq} ✓", f"id-{seq}" if seq % 3 else None))
    return rows


ROOMS = [("lobby", "lobby", 0), ("café", "Café", 3), ("quiet", "Quiet", 0)]
SESSIONS = [(1, hash_secret("secret-alice"), "Alice", ["lobby", "Café"], 40, 0),
            (2, hash_secret("secret-bob"), "Bob", ["lobby"], 50, 12)]


def make_v0_file(path: Path, *, resume_points: bool = True) -> None:
    """A history as the old code left it: tables, messages, rooms, sessions, counters."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(V0_SCHEMA if resume_points else V0_BEFORE_RESUME_POINTS_SCHEMA)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN")
    db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", _messages())
    db.executemany("INSERT INTO rooms VALUES (?,?,?)", ROOMS)
    for sid, secret_hash, name, rooms, sent_upto, start_seq in SESSIONS:
        if resume_points:
            db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?)",
                       (sid, secret_hash, name, json.dumps(rooms), sent_upto, start_seq))
        else:
            db.execute("INSERT INTO sessions VALUES (?,?,?,?)",
                       (sid, secret_hash, name, json.dumps(rooms)))
    db.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("last_seq", LAST_SEQ), ("last_sid", LAST_SID), ("history_id", HISTORY_ID)])
    db.execute("COMMIT")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()


def read_file(path: Path) -> dict:
    """What the history file holds, read with plain sqlite3."""
    db = sqlite3.connect(path)
    try:
        return {
            "version": db.execute("PRAGMA user_version").fetchone()[0],
            # The columns of version 1 (later steps add some: whisper identities).
            "messages": db.execute("SELECT seq, ts, bucket, room, sender, sender_sid, "
                                   "recipient, recipient_sid, text, client_id FROM messages "
                                   "ORDER BY seq").fetchall(),
            "rooms": db.execute("SELECT key, display, pruned_upto FROM rooms ORDER BY key")
            .fetchall(),
            "sessions": db.execute("SELECT sid, secret_hash, name, rooms, sent_upto, "
                                   "start_seq FROM sessions ORDER BY sid").fetchall(),
            "meta": dict(db.execute("SELECT key, value FROM meta").fetchall()),
            "tables": {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")},
        }
    finally:
        db.close()


@pytest.mark.parametrize("resume_points", [True, False],
                         ids=["v0", "v0-before-resume-points"])
def test_step_1_keeps_everything_of_a_version_0_file_and_seq_continues(tmp_path,
                                                                        resume_points):
    path = tmp_path / "history.sqlite3"
    make_v0_file(path, resume_points=resume_points)

    store = MessageStore(path)
    assert store.notice is None  # nothing started over
    assert store.history_id == f"{HISTORY_ID:016x}"  # clients see the same history
    assert store.last_seq == LAST_SEQ
    assert {s.sid: (s.secret_hash, s.name, s.rooms) for s in store.sessions()} == {
        sid: (secret_hash, name, rooms) for sid, secret_hash, name, rooms, *_ in SESSIONS}
    assert sorted(store.rooms()) == sorted((key, display) for key, display, _ in ROOMS)
    assert store.count("café") == 20 and store.count("lobby") == 25 and store.count("") == 5
    assert store.client_ids(2)["id-49"] == 49
    seq = store.add(ts="2026-01-02T00:00:00Z", bucket="lobby", room="lobby", sender="Carol",
                    sender_sid=store.new_session("secret-carol", "Carol", ["lobby"]),
                    text="after the upgrade")
    store.commit()
    store.close()

    assert seq == LAST_SEQ + 1
    after = read_file(path)
    assert after["version"] == SCHEMA_VERSION
    assert after["messages"][:-1] == _messages()
    assert after["messages"][-1][0] == LAST_SEQ + 1
    assert after["messages"][-1][-2] == "after the upgrade"
    assert after["rooms"] == sorted(ROOMS)
    kept = [(sid, secret_hash, name, json.dumps(rooms), *(points if resume_points else (0, 0)))
            for sid, secret_hash, name, rooms, *points in SESSIONS]
    assert after["sessions"][:2] == kept
    assert after["sessions"][2][:3] == (LAST_SID + 1, hash_secret("secret-carol"), "Carol")
    assert after["meta"]["history_id"] == HISTORY_ID
    assert after["meta"]["last_seq"] == LAST_SEQ + 1


def test_a_new_file_is_made_at_the_newest_version(tmp_path):
    path = tmp_path / "history.sqlite3"
    MessageStore(path).close()
    made = read_file(path)
    assert made["version"] == SCHEMA_VERSION
    assert {"meta", "messages", "rooms", "sessions", "messages_bucket",
            "messages_client_id"} <= made["tables"]
    # ...with the same tables and indexes as a version 0 file brought up to it.
    old = tmp_path / "old.sqlite3"
    make_v0_file(old)
    MessageStore(old).close()
    assert read_file(old)["tables"] == made["tables"]


def test_a_file_at_the_newest_version_is_opened_as_it_is(tmp_path):
    path = tmp_path / "history.sqlite3"
    store = MessageStore(path)
    store.add(ts="t", bucket="lobby", room="lobby", sender="A", sender_sid=1, text="one")
    store.close()
    before = read_file(path)
    store = MessageStore(path)
    assert store.last_seq == 1
    store.close()
    assert read_file(path) == before


def test_a_file_of_a_newer_qtchat_is_refused_in_one_sentence_and_left_alone(tmp_path):
    path = tmp_path / "history.sqlite3"
    make_v0_file(path)
    MessageStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.execute("CREATE TABLE reactions (seq INTEGER, emoji TEXT)")  # what it added
    db.commit()
    db.close()
    before = read_file(path)

    with pytest.raises(StoreTooNew) as refused:
        MessageStore(path)
    assert isinstance(refused.value, StoreUnusable)  # the server says it and exits 2
    message = str(refused.value)
    assert "newer qtchat" in message and f"version {SCHEMA_VERSION + 1}" in message
    assert "history.sqlite3" in message and "\n" not in message
    assert read_file(path) == before
    # ...and refused without holding on to it: a second try says the same, not "locked".
    with pytest.raises(StoreTooNew):
        MessageStore(path)


def _add_reactions(db: sqlite3.Connection) -> None:
    """A made-up next step, as a feature would add one."""
    db.execute("CREATE TABLE reactions (seq INTEGER NOT NULL, emoji TEXT NOT NULL)")
    db.execute("INSERT INTO reactions SELECT seq, '👍' FROM messages WHERE bucket='lobby'")


def test_a_later_step_runs_from_the_file_of_the_version_before(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite3"
    make_v0_file(path)
    MessageStore(path).close()
    assert read_file(path)["version"] == SCHEMA_VERSION
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, _add_reactions))

    MessageStore(path).close()
    after = read_file(path)
    assert after["version"] == SCHEMA_VERSION + 1
    assert after["messages"] == _messages()
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM reactions").fetchone()[0] == 25
    db.close()


def test_steps_run_in_order_from_version_0_each_in_its_own_transaction(tmp_path,
                                                                      monkeypatch):
    """A step that fails leaves the file at the version before it, with none of the step's
    changes; the steps before it stay done."""
    path = tmp_path / "history.sqlite3"
    make_v0_file(path)

    def broken_last_step(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        db.execute("INSERT INTO meta VALUES ('broken', NULL)")  # NOT NULL: SQLite refuses

    monkeypatch.setattr(store_module, "MIGRATIONS",
                        (*store_module.MIGRATIONS, _add_reactions, broken_last_step))
    with pytest.raises(sqlite3.IntegrityError):
        MessageStore(path)
    after = read_file(path)
    assert after["version"] == SCHEMA_VERSION + 1
    assert "reactions" in after["tables"] and "half_done" not in after["tables"]
    assert "broken" not in after["meta"]
    assert after["messages"] == _messages()

    monkeypatch.setattr(store_module, "MIGRATIONS",
                        (*store_module.MIGRATIONS[:SCHEMA_VERSION + 1],))
    store = MessageStore(path)  # not locked by the failed attempt; at that version already
    assert store.last_seq == LAST_SEQ
    store.close()


def test_step_5_adds_the_receipts_table_to_a_version_4_file(tmp_path):
    """Receipts (features §6) need a table: version 4 → 5 makes it, and keeps the rest."""
    from qtchat.server.store import MIGRATIONS

    path = tmp_path / "history.sqlite3"
    db = sqlite3.connect(path)
    store_module.fts.register_functions(db)
    for step in MIGRATIONS[:4]:
        step(db)
    db.execute("INSERT INTO messages VALUES (1, 't', 'lobby', 'lobby', 'Ann', 1, NULL, NULL, "
               "'kept', NULL)")
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    store = MessageStore(path)
    assert store.message_by_seq(1).text == "kept"
    store.save_receipt(2, 1, "read", 1)
    store.commit()
    store.close()
    store = MessageStore(path)
    assert store.receipts() == [(2, 1, "read", 1)]
    store.close()
