"""The ``qtchat`` command's GUI entry points, run as real subprocesses.

Without a display ``qtchat`` must explain itself in one line and exit 2 instead
of letting Qt abort; ``qtchat --smoke`` must host, join and post on its own.
Both run with HOME, XDG dirs and TMPDIR in the test's temp dir, so they never
touch the user's settings or data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

QTCHAT = [sys.executable, "-c", "import sys; from qtchat.cli import main; sys.exit(main())"]


def isolated_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    for key, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "config"),
                     ("XDG_DATA_HOME", "data"), ("XDG_RUNTIME_DIR", "runtime"),
                     ("TMPDIR", "tmp")):
        path = tmp_path / sub
        path.mkdir(mode=0o700, exist_ok=True)
        env[key] = str(path)
    return env


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="always has a display")
@pytest.mark.parametrize("argv", [[], ["host", "--nick", "Alice"], ["join", "h:1", "--nick", "A"]])
def test_no_display_suggests_serve_and_exits_2(tmp_path, argv):
    done = subprocess.run([*QTCHAT, *argv], env=isolated_env(tmp_path), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2, done
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "qtchat serve" in lines[0]
    assert "display" in lines[0]


def test_smoke_hosts_joins_posts_and_exits_0(tmp_path):
    env = isolated_env(tmp_path)
    done = subprocess.run([*QTCHAT, "--smoke"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done
    assert "qtchat: smoke test passed: hosted on port" in done.stdout, done
    assert "joined, posted message seq" in done.stdout
    # The self-test keeps its name, room and session out of the person's settings.
    assert not list((tmp_path / "config").rglob("*.conf"))


@pytest.mark.parametrize(("argv", "says"), [
    (["join", "127.0.0.1:8800", "--nick", "x<y"], "--nick 'x<y'"),
    (["host", "--nick", "a b"], "cannot contain spaces"),
    (["host", "--nick", ""], "cannot be empty"),
    (["join", "nonsense:99999", "--nick", "Bob"], "Port must be a number"),
])
def test_bad_arguments_are_one_line_and_exit_2_before_any_window(tmp_path, argv, says):
    env = isolated_env(tmp_path)
    env["QT_QPA_PLATFORM"] = "offscreen"  # a display is there: the arguments are the problem
    done = subprocess.run([*QTCHAT, *argv], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2, done
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("qtchat: ") and says in lines[0]
