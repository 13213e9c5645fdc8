"""Hosting from the app: the room's server is a ``qtchat serve`` child process.

Everything here is real: the app's controller in this process (or the whole app in a
subprocess, offscreen) starts a real child, people join over 127.0.0.1, and faults
are real signals (``kill -9`` of the child, ``kill -9`` of the app). What is checked
is what a person would notice: the room works, its limits hold, a room that cannot
start or that stops says why in a sentence and can be hosted again, and nothing is
left running once the app has gone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gui_harness import WAIT_MS, Apps, gui_args
from helpers import ServeProcess, SyncClient, wait_until
from PySide6.QtCore import QProcess, Qt
from test_full_disk import fill, small_disk  # noqa: F401 (a fixture, used by name)
from test_gui import lobby, notices, type_line, wait_for_text

from qtchat.cli import build_parser
from qtchat.gui.app import AppController
from qtchat.gui.models import NoticeKind
from qtchat.gui.start_dialog import HostChoice
from qtchat.server.chat_server import ServerConfig

pytestmark = [pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints"),
              pytest.mark.usefixtures("isolated_settings")]


def _command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _gone(pid: int) -> bool:
    """Ended (or a zombie nobody has reaped yet: it serves nothing either)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


# --- in this process: the app's controller, a real child ----------------------------------


def test_the_room_runs_in_a_qtchat_serve_child_and_works(qtbot, apps: Apps):
    alice = apps.host("Alice")
    hosted = alice.host_runtime.server
    assert hosted.pid and hosted.pid != os.getpid()
    command = _command_line(hosted.pid)
    assert command[:4] == [sys.executable, "-m", "qtchat", "serve"]
    assert "--stop-when-stdin-closes" in command

    bob = apps.join(hosted.port, "Bob")
    type_line(qtbot, bob.window, "hello host")
    wait_for_text(qtbot, lobby(alice.window).model, "hello host")
    type_line(qtbot, alice.window, "hello guest")
    wait_for_text(qtbot, lobby(bob.window).model, "hello guest")
    # The child knows who hosts: Bob's member list marks Alice as the room's host.
    assert lobby(bob.window).members.is_host("Alice")


def test_closing_the_host_window_says_bye_and_the_child_ends(qtbot, apps: Apps):
    alice = apps.host("Alice")
    hosted = alice.host_runtime.server
    bob = apps.join(hosted.port, "Bob")
    qtbot.waitUntil(lambda: "Bob" in lobby(alice.window).members.names(), timeout=WAIT_MS)

    window = alice.window
    window.closedByUser.disconnect()
    window._force_close = True  # no question: Bob is in the room
    with qtbot.waitSignals([hosted.process.finished, bob.client.connectionLost],
                           timeout=WAIT_MS, check_params_cbs=[
                               lambda code, status: (code, status) ==
                               (0, QProcess.ExitStatus.NormalExit),
                               lambda reason: reason == "the host closed the room"]):
        window.close()  # Bob heard the bye: not a connection that merely broke
    assert _gone(hosted.pid) or hosted.pid == 0
    assert hosted.wait_stopped()  # at once: it has ended
    alice.release_session()
    alice.window = alice.host_runtime = None

    again = apps.host("Alice")  # the history was closed: the same folder hosts again
    assert again.host_runtime.server.port


def test_a_killed_room_server_is_said_in_the_window_and_can_be_hosted_again(qtbot, apps: Apps):
    alice = apps.host("Alice")
    hosted = alice.host_runtime.server
    port = hosted.port
    bob = apps.join(port, "Bob")
    type_line(qtbot, bob.window, "before the crash")
    wait_for_text(qtbot, lobby(alice.window).model, "before the crash")

    with qtbot.waitSignal(hosted.died, timeout=WAIT_MS):
        os.kill(hosted.pid, signal.SIGKILL)
    sentence = ("The room's server stopped unexpectedly (killed by SIGKILL); guests are "
                "waiting to reconnect.")
    assert (NoticeKind.ERROR, sentence) in notices(lobby(alice.window).model)
    bar = alice._down_bar
    assert bar is not None and bar.isVisible() and bar.label.text() == sentence

    qtbot.mouseClick(bar.button, Qt.MouseButton.LeftButton)
    again = alice.host_runtime.server
    assert again is not hosted
    qtbot.waitUntil(lambda: again.is_listening, timeout=WAIT_MS)
    assert again.port == port  # where everyone's app is trying to reconnect
    assert not bar.isVisible()
    qtbot.waitUntil(lambda: alice.client.state == "connected"
                    and bob.client.state == "connected", timeout=30_000)
    type_line(qtbot, bob.window, "after the crash")
    wait_for_text(qtbot, lobby(alice.window).model, "after the crash")


def test_a_port_in_use_is_said_in_the_dialog_in_one_line(qtbot, apps: Apps):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        alice = apps.controller()
        alice.host(HostChoice(name="Alice", room_name="Room", port=port, password=None,
                              tls=False))
        qtbot.waitUntil(lambda: alice.dialog is not None
                        and not alice.dialog.error_label.isHidden(), timeout=WAIT_MS)
    text = alice.dialog.error_label.text()
    assert text.startswith(f"Port {port} is already in use")
    assert "\n" not in text and "Traceback" not in text
    assert alice.host_runtime is None and alice.window is None


def test_a_history_in_use_by_another_server_is_said_in_the_dialog(qtbot, apps: Apps, tmp_path):
    # Another qtchat already serves the app's host folder (gui_args: tmp_path / "host").
    with ServeProcess(tmp_path / "host"):
        alice = apps.controller()
        alice.host(HostChoice(name="Alice", room_name="Room", port=0, password=None,
                              tls=False))
        qtbot.waitUntil(lambda: alice.dialog is not None
                        and not alice.dialog.error_label.isHidden(), timeout=WAIT_MS)
    text = alice.dialog.error_label.text()
    assert "in use by another qtchat server" in text
    assert "\n" not in text and "Traceback" not in text


def test_a_full_disk_is_said_in_the_dialog_in_one_line(qtbot, apps: Apps,
                                                       small_disk: Path):  # noqa: F811
    fill(small_disk)
    alice = AppController(gui_args(small_disk / "host"))
    apps.controllers.append(alice)
    alice.host(HostChoice(name="Alice", room_name="Room", port=0, password=None, tls=False))
    qtbot.waitUntil(lambda: alice.dialog is not None
                    and not alice.dialog.error_label.isHidden(), timeout=WAIT_MS)
    text = alice.dialog.error_label.text()
    assert "full" in text or "No space left" in text, text
    assert "\n" not in text and "Traceback" not in text
    assert alice.host_runtime is None and alice.window is None


def test_qtchat_host_options_reach_the_child(monkeypatch, tmp_path):
    """Every setting of ``qtchat host`` arrives in the child as ``qtchat serve`` would
    parse it, the password through the environment, not the command line."""
    monkeypatch.delenv("QTCHAT_PASSWORD", raising=False)
    args = build_parser().parse_args([
        "host", "--nick", "Alice", "--port", "0", "--password=-sesame",
        "--server-name=--odd name", "--data-dir", str(tmp_path / "d"), "--tls",
        "--max-clients", "2", "--max-rooms", "3", "--max-rooms-per-user", "4",
        "--max-kept-rooms", "5", "--resume-grace", "6.5", "--rate-limit", "0",
        "--rate-burst", "7", "--register-timeout", "8", "--idle-timeout", "9",
        "--send-queue-bytes", "10000", "--history-retention", "11"])
    controller = AppController(args)
    config = controller._host_config(HostChoice(
        name="Alice", room_name=args.server_name, port=args.port, password=args.password,
        tls=args.tls))
    argv = config.to_serve_args()
    assert not any("sesame" in arg for arg in argv)
    served = ServerConfig.from_args(build_parser().parse_args(["serve", *argv]),
                                    environ=config.serve_environment())
    assert served == config
    assert served.max_clients == 2 and served.password == "-sesame"
    assert served.host_user == "Alice"


def test_a_setting_serve_cannot_carry_is_refused_not_dropped(tmp_path):
    with pytest.raises(ValueError, match="password_attempts"):
        ServerConfig(data_dir=tmp_path, password_attempts=3).to_serve_args()


# --- the whole app in a subprocess ----------------------------------------------------------


class HostApp:
    """``qtchat host`` run as a person would (offscreen), with its own settings and data."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = _free_port()
        self.profile = tmp_path / "profile"
        env = ServeProcess.environment()
        env["XDG_CONFIG_HOME"] = str(self.profile / "config")
        env["XDG_DATA_HOME"] = str(self.profile / "data")
        env.pop("QTCHAT_PASSWORD", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qtchat", "host", "--nick", "Host", "--port",
             str(self.port), "--no-announce", "--data-dir", str(tmp_path / "room"), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Registered: the app saves its session in its settings once the room took it.
        settings = self.profile / "config" / "qtchat" / "qtchat.conf"
        wait_until(lambda: (settings.exists() and "sessions" in settings.read_text())
                   or self.process.poll() is not None, timeout=60)
        assert self.process.poll() is None, self.process.communicate()
        # Its room's server (not a helper that happens to run, such as ldconfig).
        servers = [pid for pid in _children(self.process.pid)
                   if "serve" in _command_line(pid)]
        assert len(servers) == 1, servers
        self.child = servers[0]

    def __enter__(self) -> HostApp:
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in (self.process.pid, self.child):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.communicate(timeout=30)


def test_qtchat_host_max_clients_refuses_the_third_person(tmp_path):
    with HostApp(tmp_path, "--max-clients", "2", "--password", "sesame") as app:
        assert not any("sesame" in arg for arg in _command_line(app.child))
        guest = SyncClient(app.port)
        refused = guest.register("Guest1")  # the host's password reached the room
        assert refused["type"] == "error" and refused["code"] == "wrong_password"
        guest.close()
        guest = SyncClient(app.port)
        second = guest.register("Guest1", password="sesame")
        assert second["type"] == "registered" and "Host" in second["users"]
        third = SyncClient(app.port)
        answer = third.register("Guest2", password="sesame")
        assert answer["type"] == "error" and answer["code"] == "server_full"
        guest.close()
        third.close()


def test_killing_the_app_takes_its_room_down(tmp_path):
    with HostApp(tmp_path) as app:
        SyncClient(app.port).close()  # the room listens
        os.kill(app.process.pid, signal.SIGKILL)
        app.process.wait(30)
        wait_until(lambda: _gone(app.child), timeout=5)
        assert _refuses_connections(app.port)


# --- the host's window during a storm ---------------------------------------------------------


def test_one_more_person_in_a_long_member_list_reads_only_the_rows_on_screen(qtbot, pair):
    """A join or leave must cost the member list what is on screen, not every row: with
    a whole row-by-row relayout, 200 people resuming at once stalled the host's window
    (40,000 model reads, the biggest share of its work in ``host_stall.py``)."""
    from PySide6.QtWidgets import QApplication

    alice, _bob = pair
    members = lobby(alice).members
    assert alice.members_view.model() is members
    members.set_members([f"Guest{i:03}" for i in range(400)], ["Alice"])
    alice.show()
    QApplication.processEvents()
    alice.members_view.viewport().repaint()
    reads = []
    real_data = type(members).data

    def counting_data(index, role=Qt.ItemDataRole.DisplayRole):
        reads.append(index.row())
        return real_data(members, index, role)

    members.data = counting_data  # this instance only: what the view asks of it
    try:
        members.add_member("Newcomer")
        QApplication.processEvents()  # the view's delayed layout runs here
        alice.members_view.viewport().repaint()
    finally:
        del members.data
    assert "Newcomer" in members.names()
    assert reads, "the view did not look at the list at all"
    assert len(set(reads)) < 100, f"{len(set(reads))} of {members.rowCount()} rows read"
