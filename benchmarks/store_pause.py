"""How long the history store's commits hold the server's loop at a burst's pace.

20 messages a pass, a pass every 2.5 ms (about the 8,000 messages a second of
``burst_bench.py``'s host), a page read between passes as the server does, for
``--seconds``. Printed: commit p50/p99/worst and how many took over 30 ms, and the
largest the write-ahead log file grew. The yardstick, same run, same disk: a plain
SQLite connection in WAL mode with its automatic checkpoint (what the store did
before checkpoints moved to a thread of their own), inserting the same rows.

Run: ``.venv/bin/python benchmarks/store_pause.py`` (``--seconds 8``, ``--dir``).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from qtchat.server.store import MessageStore

TEXT = "x" * 300


def drive(commit_pass: Callable[[], None], read: Callable[[], None], wal: Path,
          seconds: float) -> tuple[list[float], int]:
    times, largest = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        commit_pass()
        times.append((time.perf_counter() - start) * 1000)
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        read()
        time.sleep(0.0025)
    return sorted(times), largest


def plain(folder: Path, seconds: float) -> tuple[list[float], int]:
    path = folder / "plain.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE m (seq INTEGER PRIMARY KEY, bucket TEXT, sender TEXT, text TEXT)")
    db.execute("CREATE INDEX m_bucket ON m (bucket, seq)")

    def commit_pass() -> None:
        db.execute("BEGIN")
        db.executemany("INSERT INTO m (bucket, sender, text) VALUES ('lobby', 'A', ?)",
                       [(TEXT,)] * 20)
        db.execute("COMMIT")

    def read() -> None:
        db.execute("SELECT * FROM m WHERE bucket='lobby' ORDER BY seq DESC LIMIT 50").fetchall()

    try:
        return drive(commit_pass, read, path.with_name(path.name + "-wal"), seconds)
    finally:
        db.close()


def store(folder: Path, seconds: float) -> tuple[list[float], int]:
    path = folder / "history.sqlite3"
    history = MessageStore(path)

    def commit_pass() -> None:
        for _ in range(20):
            history.add(ts="2026-12-03T00:00:00.000Z", bucket="lobby", room="lobby",
                        sender="A", sender_sid=1, text=TEXT)
        history.commit()

    try:
        return drive(commit_pass, lambda: history.page("lobby", None, 50),
                     path.with_name(path.name + "-wal"), seconds)
    finally:
        history.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        print(f"store_pause: {args.seconds:g} s each, load average "
              f"{os.getloadavg()[0]:.2f}, in {folder}")
        for name, run in (("plain SQLite WAL, auto-checkpoint (yardstick)", plain),
                          ("MessageStore, checkpoints in its thread", store)):
            times, largest = run(Path(folder), args.seconds)
            print(f"  {name:47} {len(times):6,} passes  commit p50 "
                  f"{times[len(times) // 2]:.2f} ms  p99 {times[int(len(times) * .99)]:.1f} ms"
                  f"  worst {times[-1]:.0f} ms  over 30 ms: {sum(t > 30 for t in times)}"
                  f"  log at most {largest / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
