"""The server with ``--tls``: a pinned TLS client works; non-TLS and silent peers are closed."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading

import pytest
from helpers import LineClient, ServeProcess, SyncClient, run_threads, unique_name, wait_until
from PySide6.QtNetwork import QSslSocket

from qtchat import tlsutil


def _tls_available() -> bool:
    from PySide6.QtNetwork import QSslSocket

    return QSslSocket.supportsSsl()


pytestmark = pytest.mark.skipif(not _tls_available(), reason="Qt has no TLS backend here")


class TlsClient(SyncClient):
    """A SyncClient over Python's ssl: no CA check, the certificate pinned instead."""

    def __init__(self, port: int, pinned: str, *, rcvbuf: int | None = None) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # self-signed: trust comes from the pin
        super().__init__(port, rcvbuf=rcvbuf,
                         wrap=lambda raw: context.wrap_socket(raw, server_hostname="qtchat"))
        seen = tlsutil.fingerprint_of_der(self.sock.getpeercert(binary_form=True))
        if seen != pinned:
            self.sock.close()
            raise ssl.SSLError(f"certificate changed: {seen} is not the pinned {pinned}")


class TlsLineClient(LineClient):
    """A LineClient over QSslSocket: it reads everything as it arrives, in the Qt loop."""

    def __init__(self, qtbot, port: int) -> None:
        super().__init__(qtbot, port, connect=False)
        self.socket.readyRead.disconnect(self._on_ready_read)
        self.socket.disconnected.disconnect(self._on_disconnected)
        self.socket = QSslSocket(self)
        self.socket.setPeerVerifyMode(QSslSocket.PeerVerifyMode.VerifyNone)  # a test host
        self.socket.readyRead.connect(self._on_ready_read)
        self.socket.disconnected.connect(self._on_disconnected)
        self.socket.connectToHostEncrypted(self.host, self.port)
        self.qtbot.waitUntil(self.socket.isEncrypted, timeout=10_000)


def test_a_pinned_tls_client_registers_and_chats(qtbot, make_server, tmp_path):
    server = make_server(tls=True)
    assert server.fingerprint == tlsutil.fingerprint_of_pem(
        (tmp_path / "data" / tlsutil.CERT_FILENAME).read_bytes())

    def chat():
        alice = TlsClient(server.port, server.fingerprint)
        bob = TlsClient(server.port, server.fingerprint)
        registered = alice.register("Alice")
        assert bob.register("Bob")["type"] == "registered"
        alice.send({"type": "broadcast", "text": "encrypted hello"})
        heard, _ = bob.recv_until("broadcast")
        alice.send({"type": "bye"})
        bob.send({"type": "bye"})
        return registered, heard

    registered, heard = run_threads(qtbot, [chat])[0]
    assert registered["server"]["tls"] is True
    assert heard["text"] == "encrypted hello" and heard["from"] == "Alice"


def test_the_certificate_and_fingerprint_survive_a_restart(qtbot, make_server):
    first = make_server(tls=True)
    fingerprint = first.fingerprint
    first.stop()
    first.close_store()
    assert make_server(tls=True).fingerprint == fingerprint


def test_a_changed_certificate_is_refused_by_a_pinning_client(qtbot, make_server):
    server = make_server(tls=True)
    wrong = "AB:" * 31 + "CD"

    def connect():
        with pytest.raises(ssl.SSLError, match="certificate changed"):
            TlsClient(server.port, wrong)

    run_threads(qtbot, [connect])


def test_a_client_that_never_handshakes_is_closed(qtbot, make_server):
    server = make_server(tls=True, register_timeout=0.5)  # handshake timeout follows it

    def silent():
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            try:
                return sock.recv(100)
            except ConnectionResetError:
                return b""

    assert run_threads(qtbot, [silent])[0] == b""


def test_a_plain_client_on_the_tls_port_is_closed(qtbot, make_server):
    server = make_server(tls=True)

    def plain():
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b'{"type":"register","name":"Plain","protocol":1}\n')
            received = b""
            try:
                while chunk := sock.recv(4096):
                    received += chunk
            except ConnectionResetError:
                pass
            return received

    received = run_threads(qtbot, [plain])[0]
    assert b"registered" not in received  # whatever came back, it was not the chat
    assert server.users() == []


def test_serve_with_tls_prints_the_fingerprint(tmp_path):
    with ServeProcess(tmp_path / "data", "--tls") as server:
        line = server.process.stdout.readline().strip()
        assert line.startswith("qtchat: TLS certificate fingerprint (SHA-256) ")
        fingerprint = line.rsplit(" ", 1)[1]
        assert fingerprint == tlsutil.fingerprint_of_pem(
            (tmp_path / "data" / tlsutil.CERT_FILENAME).read_bytes())
        client = TlsClient(server.port, fingerprint)
        assert client.register("Remote")["server"]["tls"] is True
        der = client.sock.getpeercert(binary_form=True)
        assert tlsutil.fingerprint_of_der(der) == fingerprint
        assert hashlib.sha256(der).hexdigest().upper() == fingerprint.replace(":", "")
        assert server.terminate() == 0


def test_failed_handshakes_leave_no_open_files(tmp_path):
    with ServeProcess(tmp_path / "data", "--tls", "--register-timeout", "0.5") as server:
        server.process.stdout.readline()  # the fingerprint line
        fingerprint = tlsutil.fingerprint_of_pem(
            (tmp_path / "data" / tlsutil.CERT_FILENAME).read_bytes())
        probe = TlsClient(server.port, fingerprint)
        assert probe.register("Probe")["type"] == "registered"
        baseline = server.open_fds()
        silent = []
        for index in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            if index % 4 == 0:
                silent.append(sock)  # never handshakes: the handshake timeout ends it
                continue
            if index % 4 == 1:
                sock.sendall(b'{"type":"register","name":"Plain","protocol":1}\n')
            elif index % 4 == 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()
        for sock in silent:
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        wait_until(lambda: server.open_fds() <= baseline)
        assert server.open_fds() == baseline
        assert probe.sync() == []


@pytest.mark.parametrize("readers", [1, 5])
def test_tls_clients_that_stop_reading_are_cut_off_at_the_send_queue_cap(qtbot, make_server,
                                                                          readers):
    """What Qt holds for a TLS socket (encrypted, not yet with the kernel) counts
    toward the 1 MiB cap, as a plain socket's backlog does; the others are not slowed."""
    server = make_server(tls=True, idle_timeout=60.0)
    sender, watcher = TlsLineClient(qtbot, server.port), TlsLineClient(qtbot, server.port)
    for client in (sender, watcher):
        assert client.register(unique_name("tls"))["type"] == "registered"
    names = [unique_name("stuck") for _ in range(readers)]

    def stuck_reader(name: str) -> TlsClient:  # registers, then never reads again
        client = TlsClient(server.port, server.fingerprint, rcvbuf=4096)
        assert client.register(name)["type"] == "registered"
        return client

    stuck = run_threads(qtbot, [lambda n=n: stuck_reader(n) for n in names])
    qtbot.waitUntil(lambda: {f.get("name") for f in watcher.frames
                             if f["type"] == "user_joined"} >= set(names))
    count = 600  # about 2.5 MB: far more than the 1 MiB a reader may have waiting
    sender.send_raw(b"".join(json.dumps({"type": "broadcast", "text": "x" * 4000}).encode()
                             + b"\n" for _ in range(count)))

    def left() -> dict[str, str]:
        return {f["name"]: f["reason"] for f in watcher.frames if f["type"] == "user_left"}

    qtbot.waitUntil(lambda: set(left()) >= set(names), timeout=30_000)
    assert set(left().values()) == {"timeout"}
    qtbot.waitUntil(lambda: sum(f["type"] == "broadcast" for f in watcher.frames) >= count,
                    timeout=30_000)
    watcher.pos = len(watcher.frames)
    assert watcher.sync() == []
    assert not set(names) & set(server.users())
    for client in stuck:
        client.close()


def test_out_of_descriptors_a_tls_server_waits_then_accepts_when_one_closes(tmp_path):
    limit = 48
    with ServeProcess(tmp_path / "data", "--tls", "--register-timeout", "60",
                      "--idle-timeout", "60", open_files=(limit, limit)) as server:
        fingerprint = server.process.stdout.readline().strip().rsplit(" ", 1)[1]
        inside: list[TlsClient] = []
        while server.open_fds() < limit:
            client = TlsClient(server.port, fingerprint)
            assert client.register(f"in{len(inside)}")["type"] == "registered"
            inside.append(client)
        answers: list[dict] = []
        late = threading.Thread(target=lambda: answers.append(
            TlsClient(server.port, fingerprint).register("late")), daemon=True)
        late.start()  # its handshake waits in the backlog
        assert "out of file descriptors" in server.log_line()
        for client in (inside[0], inside[-1]):  # the connected are served as before
            client.sync()
        inside.pop().close()
        late.join(30)
        assert [answer["type"] for answer in answers] == ["registered"]
        assert server.terminate() == 0
