"""``qtchat serve`` as a person runs it: a subprocess, its output and its exit codes."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from helpers import SERVING, ServeProcess, SyncClient, qtchat_command

from qtchat.cli import build_parser
from qtchat.server.config import ServerConfig


def run_qtchat(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = ServeProcess.environment()  # the qtchat under test, not the installed one
    return subprocess.run([*qtchat_command(), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_serve_prints_where_it_serves_serves_and_says_bye_on_sigterm(tmp_path):
    with ServeProcess(tmp_path / "data") as server:
        match = SERVING.match(server.line)
        assert match["name"] == "proc" and match["host"] == "127.0.0.1"
        assert server.port > 0
        alice, bob = SyncClient(server.port), SyncClient(server.port)
        assert alice.register("Alice")["type"] == "registered"
        assert bob.register("Bob")["type"] == "registered"
        alice.send({"type": "broadcast", "text": "served"})
        assert bob.recv_until("broadcast")[0]["text"] == "served"
        assert server.terminate() == 0
        for client in (alice, bob):
            bye, _ = client.recv_until("bye")
            assert bye == {"type": "bye", "reason": "shutdown"}


def test_a_reader_of_its_output_going_away_does_not_stop_it_or_its_shutdown(tmp_path):
    """``qtchat serve | head -1``: the pipe closes after the serving line. The server goes
    on serving, and SIGTERM still says bye and exits 0 (its "stopped" line has nowhere to
    go, which is no error)."""
    with ServeProcess(tmp_path / "data") as server:
        server.process.stdout.close()  # the reader is gone
        alice, bob = SyncClient(server.port), SyncClient(server.port)
        assert alice.register("Alice")["type"] == "registered"
        assert bob.register("Bob")["type"] == "registered"
        alice.send({"type": "broadcast", "text": "still here"})
        assert bob.recv_until("broadcast")[0]["text"] == "still here"
        assert server.terminate(timeout=15) == 0
        assert bob.recv_until("bye")[0] == {"type": "bye", "reason": "shutdown"}
        assert "Traceback" not in server.process.stderr.read()


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--max-clients", "0", "must be 1 or more"),
    ("--history-retention", "-5", "must be 1 or more"),
    ("--send-queue-bytes", "lots", "'lots' is not a whole number"),
])
def test_a_limit_that_makes_no_sense_is_refused_with_exit_code_2(tmp_path, flag, value, says):
    result = run_qtchat("serve", "--port", "0", "--data-dir", str(tmp_path), "--no-announce",
                        flag, value)
    assert result.returncode == 2
    assert f"argument {flag}: {says}" in result.stderr.strip().splitlines()[-1]
    assert result.stdout == ""


@pytest.mark.parametrize(("host", "versions"), [("0.0.0.0", {4}), ("*", {4, 6})])
def test_it_tells_only_addresses_it_listens_on(tmp_path, host, versions):
    """0.0.0.0 is IPv4 only: an IPv6 address in "others can join at" would fail them."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [*qtchat_command(), "serve", "--host", host, "--port", "0", "--no-announce",
         "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)
    try:
        serving = process.stdout.readline()
        assert serving.startswith('qtchat: serving "') and f" on {host}:" in serving, serving
        port = int(serving.rsplit(":", 1)[1])
        join_line = process.stdout.readline()
        assert join_line.startswith("qtchat: others can join at "), join_line
        told = join_line.removeprefix("qtchat: others can join at ").strip()
        if "(this computer)" not in told:
            for where in told.split(" · "):
                assert (6 if where.startswith("[") else 4) in versions, told
        client = SyncClient(port)  # and it does serve there
        assert client.register("Reached")["type"] == "registered"
        client.close()
    finally:
        process.terminate()
        assert process.wait(30) == 0
        process.communicate(timeout=30)


def test_a_port_in_use_is_one_line_and_exit_code_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_qtchat("serve", "--host", "127.0.0.1", "--port", str(port),
                            "--data-dir", str(tmp_path), "--no-announce")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qtchat: ") and f"port {port} is already in use" in lines[0]
    assert result.stdout == ""


def test_a_data_dir_in_use_by_another_server_is_one_line_and_exit_code_2(tmp_path):
    with ServeProcess(tmp_path / "data"):
        result = run_qtchat("serve", "--host", "127.0.0.1", "--port", "0",
                            "--data-dir", str(tmp_path / "data"), "--no-announce")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another qtchat server" in lines[0], result.stderr


def test_a_history_file_that_is_not_a_database_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    result = run_qtchat("serve", "--host", "127.0.0.1", "--port", "0",
                        "--data-dir", str(tmp_path), "--no-announce")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qtchat: "), result.stderr


def test_help_lists_every_flag():
    result = run_qtchat("serve", "--help")
    assert result.returncode == 0
    serve_parser = build_parser()._subparsers._group_actions[0].choices["serve"]
    flags = [option for action in serve_parser._actions for option in action.option_strings]
    assert "--port" in flags and "--history-retention" in flags
    for flag in flags:
        assert flag in result.stdout, flag


def test_room_limits_reach_the_server_config():
    args = build_parser().parse_args(["serve", "--max-rooms", "7", "--max-kept-rooms", "9",
                                      "--max-rooms-per-user", "3"])
    config = ServerConfig.from_args(args)
    assert (config.max_rooms, config.max_kept_rooms, config.max_rooms_per_user) == (7, 9, 3)
