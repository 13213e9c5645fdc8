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
