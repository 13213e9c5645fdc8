"""Why a join failed, told so a person can act on it: each diagnostic comes from a real
failure (a name that does not resolve, a closed port, a silent listener, a refusal
by a real ChatServer, a TLS mix-up), never from a faked error code.

Every ConnectError message is checked to be a sentence that names the address it
was about and says what to try.
"""

from __future__ import annotations

import itertools
import json
import re
import select
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _scripted_host import ScriptedHost
from PySide6.QtNetwork import QHostAddress, QTcpSocket

from qtchat.client.chat_client import FAILURE_KINDS, ChatClient, ConnectError, Endpoint
from qtchat.server.chat_server import ChatServer, ServerConfig
from qtchat.tlsutil import PinStore, normalize_fingerprint

pytest_plugins = ("_qasync_loop",)

WAIT = 5000  # ms
ADVICE = re.compile(r"\b(check|try|ask|use|join|install|choose)\b", re.IGNORECASE)


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def start_server(make_server, tmp_path: Path) -> Callable[..., ChatServer]:
    """Independent hosts (each its own data folder) with the protocol's default limits."""
    count = itertools.count()

    def start(**overrides: Any) -> ChatServer:
        settings = {"data_dir": tmp_path / f"host{next(count)}",
                    "rate_limit": ServerConfig().rate_limit, **overrides}
        return make_server(**settings)

    return start


def local(port: int, **options: Any) -> Endpoint:
    return Endpoint("127.0.0.1", port, **options)


def fail_to_join(qtbot, client: ChatClient, where: Endpoint, name: str = "alice",
                 password: str | None = None) -> ConnectError:
    """Join, expect connectFailed (never registered), check the message, return the error."""
    with qtbot.assertNotEmitted(client.registered), \
            qtbot.waitSignal(client.connectFailed, timeout=WAIT) as failed:
        client.open(where, name, password)
    error = failed.args[0]
    assert isinstance(error, ConnectError) and error.kind in FAILURE_KINDS
    assert_actionable(error, where)
    assert client.state == "disconnected" and not client.connected
    return error


def assert_actionable(error: ConnectError, where: Endpoint) -> None:
    """A sentence that names the address and says what to try."""
    message = str(error)
    assert message == error.message
    assert where.address in message, message
    first_line = message.splitlines()[0]
    assert first_line[0].isupper() or first_line[0] in "\"'", message
    assert first_line.endswith("."), message
    assert ADVICE.search(first_line), message


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raw_exchange(qtbot, port: int, frame: dict[str, Any]) -> dict[str, Any]:
    """Send one frame on a fresh connection; the first frame the server answers."""
    peer = QTcpSocket()
    with qtbot.waitSignal(peer.connected, timeout=WAIT):
        peer.connectToHost(QHostAddress(QHostAddress.SpecialAddress.LocalHost), port)
    with qtbot.waitSignal(peer.readyRead, timeout=WAIT):
        peer.write(json.dumps(frame).encode() + b"\n")
    line = peer.readLine().data()
    peer.abort()
    return json.loads(line)


# --- the address ----------------------------------------------------------------------------


def test_a_name_that_does_not_resolve(qtbot, make_client):
    where = Endpoint("nonexistent.invalid", 8800)  # .invalid never resolves (RFC 6761)
    error = fail_to_join(qtbot, make_client(), where)
    assert error.kind == "not_resolved"
    assert "spelling" in error.message and "IP address" in error.message


def test_connection_refused(qtbot, make_client):
    error = fail_to_join(qtbot, make_client(), local(free_port()))
    assert error.kind == "refused"
    assert "Nothing is listening" in error.message


def test_a_listener_that_never_answers_times_out(qtbot, make_client):
    """The kernel completes the handshake (backlog) but nobody ever reads or answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = make_client(connect_timeout=0.3)
        error = fail_to_join(qtbot, client, local(silent.getsockname()[1]))
    assert error.kind == "timeout"
    assert "accepted the connection but did not answer" in error.message
    assert "port number" in error.message


def test_no_answer_at_all_times_out(qtbot, make_client):
    """Connection requests are dropped (a full backlog here; a firewall in real life)."""
    with socket.socket() as swamped:
        swamped.bind(("127.0.0.1", 0))
        swamped.listen(0)
        port = swamped.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            select.select([], fillers[:1], [], 2.0)  # the first one is in: the queue is full
            client = make_client(connect_timeout=0.3)
            error = fail_to_join(qtbot, client, local(port))
        finally:
            for filler in fillers:
                filler.close()
    assert error.kind == "timeout"
    assert error.message.startswith(f"No answer from 127.0.0.1:{port} within 0.3 s")
    assert "firewall" in error.message


# --- refusals by a real server ----------------------------------------------------------------


@pytest.mark.parametrize("password", [None, "open sesame?"])
def test_wrong_password(qtbot, make_client, start_server, password):
    server = start_server(password="open sesame")
    error = fail_to_join(qtbot, make_client(), local(server.port), password=password)
    assert error.kind == "wrong_password"
    assert "password" in error.message
    # No password typed: say the room needs one, rather than that it was wrong.
    assert ("needs a password" in error.message) == (password is None)
    assert server.users() == []


def test_after_too_many_wrong_passwords_even_the_right_one_is_told_to_wait(
        qtbot, make_client, start_server):
    server = start_server(password="open sesame", password_attempts=2)
    for _ in range(2):
        fail_to_join(qtbot, make_client(), local(server.port), password="guess")
    error = fail_to_join(qtbot, make_client(), local(server.port), password="open sesame")
    assert error.kind == "wrong_password"
    wait = int(re.search(r"for (\d+) s after too many wrong ones", error.message)[1])
    assert 0 < wait <= 60
    assert "check it" not in error.message


def test_right_password_joins(qtbot, make_client, start_server):
    server = start_server(password="open sesame")
    client = make_client()
    with qtbot.waitSignal(client.registered, timeout=WAIT):
        client.open(local(server.port), "alice", "open sesame")


def test_server_full(qtbot, make_client, start_server):
    server = start_server(max_clients=1)
    first = make_client()
    with qtbot.waitSignal(first.registered, timeout=WAIT):
        first.open(local(server.port), "alice")
    error = fail_to_join(qtbot, make_client(), local(server.port), "bob")
    assert error.kind == "server_full"
    assert "full" in error.message
    assert server.users() == ["alice"]


def test_protocol_mismatch_is_refused_by_the_server(qtbot, start_server):
    """Our client always speaks protocol 1, so a raw frame stands in for a newer one."""
    server = start_server()
    answer = raw_exchange(qtbot, server.port,
                          {"type": "register", "name": "future", "protocol": 2})
    assert answer["type"] == "error" and answer["code"] == "protocol_mismatch"
    assert answer["ref"] == "register"
    assert server.users() == []


def test_protocol_mismatch_reported_by_the_client(qtbot, make_client):
    """A host of another version refuses us: the client says so and does not retry."""
    def answer(frame: dict) -> list:
        return [{"type": "error", "code": "protocol_mismatch", "ref": "register",
                 "message": "This server speaks protocol 2, not 1."}]

    host = ScriptedHost(answer)
    client = make_client()
    error = fail_to_join(qtbot, client, local(host.port))
    assert error.kind == "protocol_mismatch"
    assert "version" in error.message
    assert host.connections == 1
    host.close()


def test_host_hangs_up_before_answering(qtbot, make_client):
    host = ScriptedHost(None)  # accepts, then closes without a word
    error = fail_to_join(qtbot, make_client(), local(host.port))
    assert error.kind == "closed"
    assert "closed the connection before answering" in error.message
    host.close()


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(start_server) -> ChatServer:
    server = start_server(tls=True)
    assert server.fingerprint
    return server


def test_tls_with_the_right_fingerprint_joins(qtbot, make_client, tls_server):
    client = make_client()
    seen: list[str] = []
    client.certificateSeen.connect(seen.append)
    with qtbot.waitSignal(client.registered, timeout=WAIT) as joined:
        client.open(local(tls_server.port, tls=True, fingerprint=tls_server.fingerprint),
                    "alice")
    assert joined.args[0].server.get("tls") is True
    assert seen == [tls_server.fingerprint]


def test_tls_with_a_wrong_fingerprint_refuses(qtbot, make_client, tls_server):
    wrong = ":".join(["AB"] * 32)
    where = local(tls_server.port, tls=True, fingerprint=wrong)
    error = fail_to_join(qtbot, make_client(), where)
    assert error.kind == "tls_mismatch"
    assert wrong in error.message and tls_server.fingerprint in error.message
    assert "impersonating" in error.message
    assert tls_server.users() == []


def test_tls_pins_on_first_use_and_refuses_a_changed_certificate(
        qtbot, make_client, tls_server, tmp_path):
    pins = PinStore(tmp_path / "pins")
    where = local(tls_server.port, tls=True)
    first = make_client(pin_store=pins)
    with qtbot.waitSignal(first.registered, timeout=WAIT):
        first.open(where, "alice")
    assert pins.get(where.address) == normalize_fingerprint(tls_server.fingerprint)

    pins.remember(where.address, ":".join(["CD"] * 32))  # as if the host had changed
    error = fail_to_join(qtbot, make_client(pin_store=pins), where, "bob")
    assert error.kind == "tls_mismatch"
    assert pins.get(where.address) == ":".join(["CD"] * 32)  # a refusal re-pins nothing


def test_plain_client_against_a_tls_server(qtbot, make_client, tls_server):
    error = fail_to_join(qtbot, make_client(), local(tls_server.port))
    assert error.kind == "tls_failed"
    assert "TLS" in error.message


def test_tls_client_against_a_plain_server(qtbot, make_client, start_server):
    server = start_server()
    error = fail_to_join(qtbot, make_client(), local(server.port, tls=True))
    assert error.kind == "tls_failed"
    assert "without TLS" in error.message


# --- awaiting a join ------------------------------------------------------------------------


def test_connect_async_raises_the_diagnostic(make_client, arun):
    where = local(free_port())
    with pytest.raises(ConnectError) as failed:
        arun(make_client().connect_async(where, "alice"))
    assert failed.value.kind == "refused"
    assert_actionable(failed.value, where)
