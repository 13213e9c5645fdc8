"""Files over real sockets (PROTOCOL-FEATURES §2), against a ``qtchat serve`` child.

Chat goes through ``SyncClient``; each upload and download is a raw TCP connection to
the same port, as a client would open it: first line, one answer line, raw bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import ssl
import termios
from pathlib import Path

import pytest
from helpers import ServeProcess, SyncClient, unique_name, wait_until
from test_full_disk import small_disk  # noqa: F401  (a fixture: a 2 MB tmpfs)

MiB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def serve(tmp_path):
    with ServeProcess(tmp_path / "data", "--rate-limit", "0") as process:
        yield process


def _member(port: int, *rooms: str, features=("files",), tls: bool = False) -> SyncClient:
    client = SyncClient(port, wrap=(lambda raw: _tls_context().wrap_socket(
        raw, server_hostname="qtchat")) if tls else None)
    registered = client.register(unique_name(), features=list(features))
    assert registered["type"] == "registered", registered
    for room in rooms:
        client.send({"type": "join", "room": room})
        client.recv_until("joined", room=room)
    return client


def _offer(client: SyncClient, data: bytes, offer_id: str, **fields) -> dict:
    fields.setdefault("sha256", _sha(data))
    client.send({"type": "file_offer", "id": offer_id, "name": "notes.bin",
                 "size": len(data), **fields})
    while True:
        frame = client.recv()
        if frame["type"] in ("file_accepted", "error") and frame.get("id") == offer_id:
            return frame


class _Line:
    """A transfer connection: a first line, one answer, then raw bytes."""

    def __init__(self, port: int, first: dict, *, rcvbuf: int | None = None,
                 tls: bool = False) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        if tls:
            self.sock = _tls_context().wrap_socket(self.sock, server_hostname="qtchat")
        self.sock.sendall(json.dumps(first).encode() + b"\n")
        self.buffer = b""

    def line(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a line; had {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def rest(self) -> bytes:
        data = [self.buffer]
        self.buffer = b""
        while chunk := self.sock.recv(1 << 20):
            data.append(chunk)
        return b"".join(data)

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed; these tests are not about the pin
    return context


def _upload(port: int, token: str, data: bytes, *, tls: bool = False) -> tuple[dict, dict]:
    """Upload what the host does not hold yet; (upload_ready, the closing line)."""
    conn = _Line(port, {"type": "upload", "token": token}, tls=tls)
    ready = conn.line()
    assert ready["type"] == "upload_ready", ready
    conn.sock.sendall(data[ready["offset"]:])
    last = conn.line()
    conn.close()
    return ready, last


def _download(port: int, token: str, offset: int = 0, *, tls: bool = False
              ) -> tuple[dict, bytes]:
    conn = _Line(port, {"type": "download", "token": token, "offset": offset}, tls=tls)
    ready = conn.line()
    body = conn.rest() if ready["type"] == "download_ready" else b""
    conn.close()
    return ready, body


def _ticket(client: SyncClient, file_id: str) -> dict:
    client.send({"type": "file_get", "id": "g1", "file": file_id})
    while True:
        frame = client.recv()
        if frame["type"] in ("file_ticket", "error"):
            return frame


def test_upload_then_download_gives_the_same_bytes_and_posts_the_file(serve):
    alice, bob = _member(serve.port), _member(serve.port)
    data = os.urandom(3 * MiB + 123)
    accepted = _offer(alice, data, "f1", mime="application/octet-stream", text="the notes")
    assert accepted["type"] == "file_accepted" and accepted["offset"] == 0
    ready, done = _upload(serve.port, accepted["token"], data)
    assert ready == {"type": "upload_ready", "offset": 0}
    assert done["type"] == "upload_done" and done["file"] == accepted["file"]
    echo, _ = alice.recv_until("broadcast", id="f1")
    seen, _ = bob.recv_until("broadcast", seq=done["seq"])
    for message in (echo, seen):
        assert message["text"] == "the notes"
        assert message["file"] == {"file": accepted["file"], "name": "notes.bin",
                                   "size": len(data), "sha256": _sha(data),
                                   "mime": "application/octet-stream"}
    ticket = _ticket(bob, accepted["file"])
    assert ticket["type"] == "file_ticket" and ticket["sha256"] == _sha(data)
    ready, body = _download(serve.port, ticket["token"])
    assert ready == {"type": "download_ready", "size": len(data), "offset": 0}
    assert _sha(body) == _sha(data)


def test_an_upload_cut_midway_resumes_where_the_host_stopped(serve):
    alice = _member(serve.port)
    data = os.urandom(4 * MiB)
    accepted = _offer(alice, data, "big")
    conn = _Line(serve.port, {"type": "upload", "token": accepted["token"]})
    assert conn.line()["offset"] == 0
    conn.sock.sendall(data[:MiB + 17])
    # Offering the same id again answers with what the host holds: all of it, once read.
    wait_until(lambda: _offer(alice, data, "big")["offset"] == MiB + 17)
    conn.reset()  # the network drops
    again = _offer(alice, data, "big")
    assert again["file"] == accepted["file"]
    ready, done = _upload(serve.port, again["token"], data)
    assert ready["offset"] == MiB + 17
    assert done["type"] == "upload_done"
    # A download cut midway resumes from its own offset with the same ticket.
    ticket = _ticket(alice, accepted["file"])
    conn = _Line(serve.port, {"type": "download", "token": ticket["token"], "offset": 0})
    assert conn.line()["type"] == "download_ready"
    first = conn.buffer  # bytes that came in one read with the line (the test lost them)
    while len(first) < MiB:
        first += conn.sock.recv(MiB - len(first))
    conn.reset()
    ready, rest = _download(serve.port, ticket["token"], len(first))
    assert ready["offset"] == len(first)
    assert _sha(first + rest) == _sha(data)


# 20 MiB: the host has had the kernel write some of it to disk before the check.
@pytest.mark.parametrize("size", [200_000, 20 * MiB], ids=["small", "written-behind"])
def test_a_wrong_hash_is_refused_and_nothing_is_posted(serve, size):
    alice, bob = _member(serve.port), _member(serve.port)
    data = os.urandom(size)
    accepted = _offer(alice, data, "bad", sha256=_sha(b"something else"))
    _ready, last = _upload(serve.port, accepted["token"], data)
    assert last["type"] == "error" and last["code"] == "checksum_mismatch"
    assert not [f for f in bob.sync() if f["type"] == "broadcast"]
    assert not [f for f in alice.sync() if f["type"] == "broadcast"]
    # The offer is gone: its token opens nothing.
    conn = _Line(serve.port, {"type": "upload", "token": accepted["token"]})
    refused = conn.line()
    assert refused["code"] == "no_such_file"
    conn.close()


def test_a_stranger_cannot_download_a_rooms_file_or_a_whisper(serve):
    alice = _member(serve.port, "secret")
    bob = _member(serve.port, "secret")
    carol = _member(serve.port)
    data = b"only for the room\n" * 100
    for target, offer_id in (({"room": "secret"}), "r"), (({"to": bob.name}), "w"):
        accepted = _offer(alice, data, offer_id, **target)
        _ready, done = _upload(serve.port, accepted["token"], data)
        assert done["type"] == "upload_done"
        assert _ticket(bob, accepted["file"])["type"] == "file_ticket"
        refused = _ticket(carol, accepted["file"])
        assert refused["type"] == "error" and refused["code"] == "no_such_file"
    # A made-up token is refused the same way, on the transfer connection.
    ready, body = _download(serve.port, "not-a-token")
    assert ready["type"] == "error" and ready["code"] == "no_such_file" and body == b""


def test_files_frames_need_the_feature(serve):
    plain = _member(serve.port, features=())
    data = b"x"
    answer = _offer(plain, data, "nf")
    assert answer["type"] == "error" and answer["code"] == "unknown_type"


def test_a_file_larger_than_the_host_allows_is_refused_with_a_sentence(tmp_path):
    with ServeProcess(tmp_path / "d", "--max-file-size", "1000") as process:
        alice = _member(process.port)
        refused = _offer(alice, b"y" * 1001, "huge")
        assert refused["code"] == "file_too_large"
        assert "larger than this room allows" in refused["message"]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_reader_that_stops_reading_does_not_grow_the_hosts_memory(serve):
    alice = _member(serve.port)
    data = os.urandom(64 * MiB)
    accepted = _offer(alice, data, "m")
    _ready, done = _upload(serve.port, accepted["token"], data)
    assert done["type"] == "upload_done"
    ticket = _ticket(alice, accepted["file"])
    alice.sync()
    before = _rss(serve.pid)
    stuck = _Line(serve.port, {"type": "download", "token": ticket["token"]},
                  rcvbuf=64 * 1024)
    assert stuck.line()["type"] == "download_ready"

    def queued() -> int:
        buf = fcntl.ioctl(stuck.sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little")

    wait_until(lambda: queued() >= 32 * 1024)  # the host has filled what the socket holds
    alice.sync()  # and is still answering chat
    assert _rss(serve.pid) - before < 8 * MiB
    stuck.reset()


def test_files_move_over_tls_on_the_same_port(tmp_path):
    """TLS downloads go in slices, a window at a time, through Qt's TLS socket."""
    with ServeProcess(tmp_path / "d", "--tls", "--rate-limit", "0") as process:
        alice, bob = _member(process.port, tls=True), _member(process.port, tls=True)
        data = os.urandom(5 * MiB + 1)
        accepted = _offer(alice, data, "t")
        _ready, done = _upload(process.port, accepted["token"], data, tls=True)
        assert done["type"] == "upload_done"
        bob.recv_until("broadcast", seq=done["seq"])
        ticket = _ticket(bob, accepted["file"])
        ready, body = _download(process.port, ticket["token"], 1000, tls=True)
        assert ready["offset"] == 1000 and body == data[1000:]


def test_a_fifth_transfer_at_once_is_refused(serve):
    alice = _member(serve.port)
    big = os.urandom(32 * MiB)  # more than four stalled sockets can swallow
    accepted = _offer(alice, big, "big5")
    _ready, done = _upload(serve.port, accepted["token"], big)
    assert done["type"] == "upload_done"
    ticket = _ticket(alice, accepted["file"])
    opening = {"type": "download", "token": ticket["token"], "offset": 0}
    held = []
    for _ in range(4):  # four downloads that read nothing: each stays open
        conn = _Line(serve.port, opening, rcvbuf=4096)
        assert conn.line()["type"] == "download_ready"
        held.append(conn)
    fifth = _Line(serve.port, opening)
    refused = fifth.line()
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert fifth.rest() == b""  # and closed
    held.pop().reset()  # one ends: there is room for another

    def another() -> bool:
        conn = _Line(serve.port, opening, rcvbuf=4096)
        held.append(conn)
        return conn.line()["type"] == "download_ready"

    wait_until(another)
    for conn in held:
        conn.reset()


def test_an_upload_survives_a_host_kill_and_its_message_stays_in_history(tmp_path):
    data = os.urandom(3 * MiB)
    with ServeProcess(tmp_path / "d", "--rate-limit", "0") as first:
        alice = _member(first.port)
        accepted = _offer(alice, data, "k9", text="before the crash")
        conn = _Line(first.port, {"type": "upload", "token": accepted["token"]})
        assert conn.line()["offset"] == 0
        conn.sock.sendall(data[:MiB])
        wait_until(lambda: _offer(alice, data, "k9")["offset"] == MiB)
        token = _offer(alice, data, "k9")["token"]
        first.kill()  # kill -9: no chance to tidy up
        conn.close()
    with ServeProcess(tmp_path / "d", "--rate-limit", "0") as second:
        ready, done = _upload(second.port, token, data)
        assert ready["offset"] == MiB  # the part file is what counts
        assert done["type"] == "upload_done"
        bob = _member(second.port)
        bob.send({"type": "history", "room": "lobby"})
        page, _ = bob.recv_until("history")
        [posted] = [m for m in page["messages"] if m["seq"] == done["seq"]]
        assert posted["text"] == "before the crash"
        assert posted["file"]["file"] == accepted["file"]
        ticket = _ticket(bob, accepted["file"])
        _ready, body = _download(second.port, ticket["token"])
        assert _sha(body) == _sha(data)
    with ServeProcess(tmp_path / "d", "--rate-limit", "0") as third:  # and after a restart
        carol = _member(third.port)
        carol.send({"type": "history", "room": "lobby"})
        page, _ = carol.recv_until("history")
        assert [m["file"]["file"] for m in page["messages"] if "file" in m] \
            == [accepted["file"]]


def test_hostile_names_never_become_paths_on_the_host(tmp_path):
    data_dir = tmp_path / "d"
    with ServeProcess(data_dir, "--rate-limit", "0") as process:
        alice = _member(process.port)
        bob = _member(process.port)
        refused = {"../../x": "invalid_name", "C:\\x": "invalid_name", "a\0b": "invalid_name",
                   "x" * 256: "invalid_name", "..": "invalid_name",
                   "evil\u202etxt.exe": "invalid_name"}
        for index, (name, code) in enumerate(refused.items()):
            answer = _offer(alice, b"data", f"h{index}", name=name)
            assert answer["type"] == "error" and answer["code"] == code, name
        kept = ["con", "x" * 255, "..x", "名前.txt"]
        for index, name in enumerate(kept):
            data = name.encode() * 3
            accepted = _offer(alice, data, f"k{index}", name=name)
            _ready, done = _upload(process.port, accepted["token"], data)
            assert done["type"] == "upload_done"
            message, _ = bob.recv_until("broadcast", seq=done["seq"])
            assert message["file"]["name"] == name  # shown as sent, as plain text
        stored = sorted(path.name for path in (data_dir / "files").iterdir())
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{8,64}(\.json)?", name) for name in stored)
        assert len(stored) == 2 * len(kept)  # a file and its record each, nothing else
        assert not (tmp_path / "x").exists() and not (data_dir / "x").exists()


def test_quota_and_a_full_disk_are_refused_with_sentences(tmp_path, small_disk):  # noqa: F811
    with ServeProcess(tmp_path / "d", "--files-quota", "1000") as process:
        alice = _member(process.port)
        first = _offer(alice, b"a" * 600, "q1")
        assert first["type"] == "file_accepted"
        again = _offer(alice, b"b" * 600, "q2")  # the first still counts while pending
        assert again["code"] == "quota_exceeded" and "as much" in again["message"]
    with ServeProcess(small_disk / "d") as process:  # a real 2 MB disk
        alice = _member(process.port)
        refused = _offer(alice, b"c" * 10_000, "full")
        assert refused["code"] == "disk_full"
        assert refused["message"] == "The host is short of disk space."
