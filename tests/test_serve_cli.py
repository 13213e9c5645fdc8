"""``qtchat serve`` as a person runs it: a subprocess, its output and its exit codes."""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

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


def test_a_history_of_a_newer_qtchat_is_one_line_and_exit_code_2(tmp_path):
    """Reading it with code that does not know its tables could lose what it stores."""
    from qtchat.server.store import SCHEMA_VERSION

    db = sqlite3.connect(tmp_path / "history.sqlite3")
    db.execute("CREATE TABLE messages (seq INTEGER PRIMARY KEY, text TEXT)")
    db.execute("INSERT INTO messages VALUES (1, 'kept')")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    result = run_qtchat("serve", "--host", "127.0.0.1", "--port", "0",
                        "--data-dir", str(tmp_path), "--no-announce")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qtchat: "), result.stderr
    assert "written by a newer qtchat" in lines[0]
    assert result.stdout == ""
    db = sqlite3.connect(tmp_path / "history.sqlite3")
    assert db.execute("SELECT text FROM messages").fetchall() == [("kept",)]
    db.close()


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


# --- one way to the server's settings, and back ------------------------------------------

def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_every_limit_flag_of_host_reaches_the_settings_as_it_does_for_serve():
    """``qtchat host --max-clients 2`` (and every other limit) used to be parsed and then
    dropped: the app built its settings from the dialog's five fields."""
    limits = ["--max-clients", "2", "--max-rooms", "7", "--max-rooms-per-user", "3",
              "--max-kept-rooms", "9", "--resume-grace", "5.5", "--rate-limit", "3",
              "--rate-burst", "4", "--register-timeout", "6", "--idle-timeout", "8",
              "--send-queue-bytes", "4096", "--history-retention", "11",
              "--name-reservation-days", "0.5",
              "--max-file-size", "1000", "--files-quota", "2000", "--files-max-bytes", "3000",
              "--edit-window", "2.5"]
    served = ServerConfig.from_args(parse("serve", *limits), environ={})
    hosted = ServerConfig.from_args(parse("host", "--nick", "Alice", *limits), environ={})
    expected = dict(max_clients=2, max_rooms=7, max_rooms_per_user=3, max_kept_rooms=9,
                    resume_grace=5.5, rate_limit=3.0, rate_burst=4, register_timeout=6.0,
                    idle_timeout=8.0, send_queue_bytes=4096, history_retention=11,
                    name_reservation_days=0.5,
                    max_file_size=1000, files_quota=2000, files_max_bytes=3000,
                    edit_window=2.5)
    for config in (served, hosted):
        assert {name: getattr(config, name) for name in expected} == expected
    # Every limit flag the parser has is one of them: a new flag must be read too.
    host_parser = build_parser()._subparsers._group_actions[0].choices["host"]
    group = next(g for g in host_parser._action_groups if g.title == "limits")
    assert {action.dest for action in group._group_actions} == set(expected)


def test_the_defaults_of_the_flags_are_the_servers_defaults():
    """Two places state the defaults (the flags, for --help, and ServerConfig): they agree."""
    config = ServerConfig.from_args(parse("serve", "--data-dir", "/d"), environ={})
    defaults = ServerConfig()
    for field in dataclasses.fields(ServerConfig):
        if field.name not in ("server_name", "data_dir"):  # the machine's name; a folder
            assert getattr(config, field.name) == getattr(defaults, field.name), field.name


def test_host_names_its_room_after_the_person_and_keeps_it_apart_from_serve(
        tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    hosted = ServerConfig.from_args(parse("host", "--nick", "Ｂob"), environ={})
    assert (hosted.host, hosted.host_user, hosted.server_name) == ("0.0.0.0", "Bob",
                                                                   "Ｂob's room")
    assert hosted.data_dir == tmp_path / "qtchat" / "host"
    served = ServerConfig.from_args(parse("serve"), environ={})
    assert served.host_user is None and served.data_dir == tmp_path / "qtchat"
    named = ServerConfig.from_args(parse("host", "--nick", "Bob", "--server-name", "Team"),
                                   environ={})
    assert named.server_name == "Team"


def test_the_password_may_come_from_the_environment_and_the_flag_wins():
    env = {"QTCHAT_PASSWORD": "from-env"}
    assert ServerConfig.from_args(parse("serve"), environ=env).password == "from-env"
    assert ServerConfig.from_args(parse("serve", "--password", "flag"),
                                  environ=env).password == "flag"
    assert ServerConfig.from_args(parse("serve"), environ={"QTCHAT_PASSWORD": ""}).password \
        is None


def _changed(config: ServerConfig) -> ServerConfig:
    """``config`` with every field a serve flag can carry set to something not its default."""
    return dataclasses.replace(
        config, host="::1", port=0, server_name="-Team room", password="s3cret -x",
        data_dir=Path("/srv/qtchat rooms/-a"), tls=True, host_user="Ålice",
        max_clients=2, max_rooms=7, max_rooms_per_user=3, max_kept_rooms=9,
        resume_grace=0.1 + 0.2, rate_limit=0.0, rate_burst=4, register_timeout=6.25,
        idle_timeout=8.0, send_queue_bytes=4096, history_retention=11,
        admin_password="-adm in", name_reservation_days=0.5,
        max_file_size=1000, files_quota=2000, files_max_bytes=3000, edit_window=0.1 + 0.7)


@pytest.mark.parametrize("config", [ServerConfig(data_dir=Path("d")),
                                    _changed(ServerConfig())])
def test_settings_survive_the_trip_to_serve_arguments_and_back(config):
    """What a hosted room's ``qtchat serve`` child is told is what the host was set to:
    from_args(parse(to_serve_args(c))) == c, field by field."""
    argv = config.to_serve_args()
    assert config.password is None or config.password not in " ".join(argv)  # ps shows argv
    assert config.admin_password is None or config.admin_password not in " ".join(argv)
    back = ServerConfig.from_args(parse("serve", *argv), environ=config.serve_environment())
    for field in dataclasses.fields(ServerConfig):
        assert getattr(back, field.name) == getattr(config, field.name), field.name
    assert back == config


def test_fields_serve_has_no_flag_for_are_refused_not_dropped():
    """A setting that cannot reach the child is an error, never silently the default."""
    from qtchat.server.config import FIXED_FIELDS

    for field in dataclasses.fields(ServerConfig):  # every field is either carried or fixed
        if field.name in FIXED_FIELDS:
            value = getattr(ServerConfig(), field.name)
            config = ServerConfig(data_dir=Path("d"), **{field.name: value * 2})
            with pytest.raises(ValueError, match=field.name):
                config.to_serve_args()
    with pytest.raises(ValueError, match="data_dir"):
        ServerConfig().to_serve_args()  # history in memory: serve has no such thing


def test_a_password_set_nowhere_is_none_even_if_the_app_was_started_with_one():
    """The hosted room's child inherits the app's environment: a QTCHAT_PASSWORD there must
    not lock a room the person hosted without a password."""
    config = ServerConfig(data_dir=Path("d"))
    env = {"QTCHAT_PASSWORD": "inherited", **config.serve_environment()}
    assert ServerConfig.from_args(parse("serve", *config.to_serve_args()),
                                  environ=env).password is None


def test_host_limits_are_enforced_by_the_serve_child_they_are_passed_to(tmp_path):
    """The path of ``qtchat host --max-clients 2 --password …``: its options → settings →
    a real ``qtchat serve`` process, which refuses the third person and wants the password."""
    args = parse("host", "--nick", "Alice", "--max-clients", "2", "--password", "pw",
                 "--data-dir", str(tmp_path / "room"))
    config = dataclasses.replace(ServerConfig.from_args(args, environ={}),
                                 host="127.0.0.1", port=0)
    env = {**ServeProcess.environment(), **config.serve_environment()}
    process = subprocess.Popen([*qtchat_command(), "serve", *config.to_serve_args(),
                                "--no-announce"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        match = SERVING.match(line.rstrip("\n"))
        assert match and match["name"] == "Alice's room", line
        port = int(match["port"])
        wrong = SyncClient(port)
        assert wrong.register("Mallory", password="nope")["code"] == "wrong_password"
        first, second, third = SyncClient(port), SyncClient(port), SyncClient(port)
        registered = first.register("Alice", password="pw")
        assert registered["type"] == "registered"
        assert registered["server"]["host"] == "Alice"
        assert second.register("Bob", password="pw")["type"] == "registered"
        refused = third.register("Carol", password="pw")
        assert (refused["type"], refused["code"]) == ("error", "server_full")
    finally:
        process.terminate()
        assert process.wait(30) == 0
        process.communicate(timeout=30)
