"""The history store's folder lock and checkpointer under real faults.

A store that fails to open (no descriptor left for its checkpointer's connection) must
let go of the data folder: the next try in the same process is told the real reason
or opens, never "in use by another qtchat server" for a folder nobody holds.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import ServeProcess

# Runs in a child: it lowers its own limit on open files step by step until the store
# opens, keeping every error (as a window showing it would), and after each failure
# tries again with the limit restored. One line per step.
_OPEN_WITH_FEW_FILES = r"""
import os, resource, sys, traceback
from pathlib import Path
from qtchat.server.store import MessageStore

path = Path(sys.argv[1])
MessageStore(path).close()  # the history exists
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
kept = []
for extra in range(12):
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + extra, hard))
    try:
        store = MessageStore(path)
    except Exception as exc:
        kept.append(exc)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        lines = [frame.line or "" for frame in traceback.extract_tb(exc.__traceback__)]
        where = "checkpointer" if any("_Checkpointer(" in line for line in lines) else "other"
        try:
            MessageStore(path).close()
            print("failed", where, "reopened")
        except Exception as again:
            print("failed", where, "reopen refused:", again)
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        store.close()
        print("opened")
        break
"""


def test_a_store_whose_checkpointer_cannot_open_lets_go_of_the_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _OPEN_WITH_FEW_FILES, str(tmp_path / "history.sqlite3")],
        capture_output=True, text=True, timeout=120, env=ServeProcess.environment())
    assert result.returncode == 0, result.stderr
    steps = result.stdout.splitlines()
    assert "failed checkpointer reopened" in steps, steps  # the path under test was hit
    assert steps[-1] == "opened", steps
    assert not [step for step in steps if "refused" in step], steps


def test_stores_dropped_without_close_leave_no_threads_or_open_files(tmp_path):
    """A store nobody closes (a test, a server whose start failed after it opened) took
    its checkpointer's thread and connection with it for as long as the process ran:
    two descriptors and a thread every time, and the log never removed."""
    import gc
    import os
    import threading
    import time

    from qtchat.server.store import MessageStore

    path = tmp_path / "history.sqlite3"

    def checkpointers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "qtchat-checkpoint"]

    already = set(checkpointers())
    before = len(os.listdir("/proc/self/fd"))
    for number in range(20):
        store = MessageStore(path)
        store.add(ts="2026-12-03T00:00:00.000Z", bucket="lobby", room="lobby",
                  sender="Alice", sender_sid=1, text=f"message {number}")
        store.commit()
        del store
        gc.collect()
    deadline = time.monotonic() + 15  # for all of them: a thread that never ends fails
    for thread in set(checkpointers()) - already:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert set(checkpointers()) <= already
    assert len(os.listdir("/proc/self/fd")) <= before + 1
    reopened = MessageStore(path)
    try:
        assert [m.text for m in reopened.page("lobby", None, 20)][-1] == "message 19"
        assert reopened.last_seq == 20
    finally:
        reopened.close()
