"""ChatClient.send_file and download against an in-process ChatServer: real sockets,
the client's own transfer connections, plain and TLS."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import threading
from itertools import pairwise

import pytest

from qtchat.client.chat_client import ChatClient, Endpoint
from qtchat.client.files import AHEAD, Upload
from qtchat.server import transfers

WAIT = 20_000
MiB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _joined(qtbot, make_client, server, name: str, *, tls: bool = False) -> ChatClient:
    client = make_client(features=("files",))
    with qtbot.waitSignal(client.registered, timeout=WAIT):
        client.open(Endpoint("127.0.0.1", server.port, tls=tls), name)
    assert client.has_feature("files")
    return client


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_send_a_file_see_it_posted_and_save_it(qtbot, make_server, make_client, tmp_path,
                                               tls):
    server = make_server(tls=tls)
    alice = _joined(qtbot, make_client, server, "Alice", tls=tls)
    bob = _joined(qtbot, make_client, server, "Bob", tls=tls)
    data = os.urandom(3 * MiB + 5)
    source = tmp_path / "holiday photo.jpg"
    source.write_bytes(data)
    progress, sent, seen = [], [], []
    alice.transferProgress.connect(lambda _id, done, total: progress.append((done, total)))
    alice.fileSent.connect(lambda *args: sent.append(args))
    bob.messageReceived.connect(seen.append)
    with qtbot.waitSignals([alice.fileSent, bob.messageReceived], timeout=WAIT):
        offer_id = alice.send_file(source, text="from the beach", mime="image/jpeg")
    [(sent_id, file_id, seq)] = sent
    assert sent_id == offer_id
    [message] = seen
    assert message.seq == seq and message.text == "from the beach"
    assert message.file == {"file": file_id, "name": "holiday photo.jpg", "size": len(data),
                            "sha256": _sha(data), "mime": "image/jpeg"}
    assert progress[-1] == (len(data), len(data))
    saved = tmp_path / "saved" / "photo.jpg"
    saved.parent.mkdir()
    with qtbot.waitSignal(bob.fileSaved, timeout=WAIT) as done:
        transfer_id = bob.download(file_id, saved)
    assert done.args == [transfer_id, str(saved)]
    assert _sha(saved.read_bytes()) == _sha(data)
    assert not saved.with_name("photo.jpg.part").exists()


def test_a_download_goes_on_from_its_part_file(qtbot, make_server, make_client, tmp_path):
    server = make_server()
    alice = _joined(qtbot, make_client, server, "Alice")
    data = os.urandom(2 * MiB)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    with qtbot.waitSignal(alice.fileSent, timeout=WAIT) as sent:
        alice.send_file(source)
    file_id = sent.args[1]
    saved = tmp_path / "copy.bin"
    saved.with_name("copy.bin.part").write_bytes(data[:MiB + 3])  # what a cut left
    moved = []
    alice.transferProgress.connect(lambda _id, done, _total: moved.append(done))
    with qtbot.waitSignal(alice.fileSaved, timeout=WAIT):
        alice.download(file_id, saved)
    assert saved.read_bytes() == data
    assert min(moved) > MiB + 3  # only the rest came over the network


def test_a_part_file_that_does_not_match_is_not_kept(qtbot, make_server, make_client,
                                                     tmp_path):
    server = make_server()
    alice = _joined(qtbot, make_client, server, "Alice")
    data = os.urandom(100_000)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    with qtbot.waitSignal(alice.fileSent, timeout=WAIT) as sent:
        alice.send_file(source)
    saved = tmp_path / "copy.bin"
    saved.with_name("copy.bin.part").write_bytes(b"not the start of it")
    with qtbot.waitSignal(alice.transferFailed, timeout=WAIT) as failed:
        alice.download(sent.args[1], saved)
    assert failed.args[1] == "checksum_mismatch"
    assert not saved.exists() and not saved.with_name("copy.bin.part").exists()


def test_refusals_come_back_as_sentences(qtbot, make_server, make_client, tmp_path):
    server = make_server(max_file_size=1000)
    alice = _joined(qtbot, make_client, server, "Alice")
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * 1001)
    with qtbot.waitSignal(alice.transferFailed, timeout=WAIT) as refused:
        offer_id = alice.send_file(big)
    assert refused.args[:2] == [offer_id, "file_too_large"]
    assert "larger than this room allows" in refused.args[2]
    with qtbot.waitSignal(alice.transferFailed, timeout=WAIT) as gone:
        alice.download("NoSuchFile123", tmp_path / "x")
    assert gone.args[1] == "no_such_file"


def test_an_upload_cancelled_midway_resumes_under_the_same_id(qtbot, make_server,
                                                              make_client, tmp_path):
    server = make_server()
    alice = _joined(qtbot, make_client, server, "Alice")
    # Larger than the first progress report plus what a plain upload's thread may send
    # past it (files.AHEAD), so the cancel comes before the end.
    data = os.urandom(4 * AHEAD)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    offer_id = "resume-me"

    def cancel_once(transfer_id: str, _done: int, _total: int) -> None:
        alice.transferProgress.disconnect(cancel_once)
        alice.cancel_transfer(transfer_id)

    alice.transferProgress.connect(cancel_once)
    with qtbot.waitSignal(alice.transferFailed, timeout=WAIT) as cancelled:
        alice.send_file(source, offer_id=offer_id)
    assert cancelled.args[:2] == [offer_id, "cancelled"]
    with qtbot.waitSignal(alice.fileSent, timeout=WAIT) as sent:
        alice.send_file(source, offer_id=offer_id)
    saved = tmp_path / "copy.bin"
    with qtbot.waitSignal(alice.fileSaved, timeout=WAIT):
        alice.download(sent.args[1], saved)
    assert saved.read_bytes() == data


def _stored(server, file_id: str) -> bytes:
    return (server.config.data_dir / "files" / file_id).read_bytes()


@pytest.mark.skipif(transfers.start_writeback is None, reason="sync_file_range is Linux's")
def test_a_plain_upload_has_the_disk_write_behind_it(qtbot, make_server, make_client,
                                                     tmp_path, monkeypatch):
    """The host asks the kernel to start writing each 8 MiB of the part file as it comes
    (so its final fsync has little left), and the file still arrives whole and checked."""
    asked: list[tuple[int, int]] = []
    real = transfers.start_writeback

    def recorded(descriptor: int, offset: int, count: int) -> None:
        asked.append((offset, count))
        real(descriptor, offset, count)

    monkeypatch.setattr(transfers, "start_writeback", recorded)
    server = make_server()
    alice = _joined(qtbot, make_client, server, "Alice")
    data = os.urandom(3 * transfers.WRITE_BEHIND + 5)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    with qtbot.waitSignal(alice.fileSent, timeout=WAIT) as sent:
        alice.send_file(source)
    assert _stored(server, sent.args[1]) == data
    # One range after another from the first byte, none shorter than the step, and every
    # byte but the last step's remainder asked for before the end.
    assert asked[0][0] == 0
    assert all(start == before + count for (before, count), (start, _) in pairwise(asked))
    assert all(count >= transfers.WRITE_BEHIND for _, count in asked)
    assert sum(count for _, count in asked) > len(data) - transfers.WRITE_BEHIND


@pytest.mark.parametrize("writeback", ["refused", "absent"])
def test_a_plain_upload_arrives_whole_without_write_behind(qtbot, make_server, make_client,
                                                           tmp_path, monkeypatch, writeback):
    """Where the file system refuses sync_file_range (EINVAL) or there is none (not
    Linux), the upload goes on as before: the final fsync writes it all."""

    def refuse(_descriptor: int, _offset: int, _count: int) -> None:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(transfers, "start_writeback", refuse if writeback == "refused" else None)
    server = make_server()
    alice = _joined(qtbot, make_client, server, "Alice")
    bob = _joined(qtbot, make_client, server, "Bob")
    data = os.urandom(2 * transfers.WRITE_BEHIND + 7)
    source = tmp_path / "a.bin"
    source.write_bytes(data)
    seen = []
    bob.messageReceived.connect(seen.append)
    with qtbot.waitSignals([alice.fileSent, bob.messageReceived], timeout=WAIT):
        alice.send_file(source)
    [message] = seen
    assert message.file["sha256"] == _sha(data)
    assert _stored(server, message.file["file"]) == data


class _StillHost(threading.Thread):
    """A host that answers ``upload_ready`` and then reads nothing until told to (its
    socket buffers fill and the client's sender waits), then reads to the end."""

    def __init__(self, answer_late: bytes = b"") -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.go_on = threading.Event()
        self.answer_late = answer_late  # a line written (not read after) once told to go on
        self.received = 0
        self.closed = threading.Event()

    def run(self) -> None:
        conn, _ = self.listener.accept()
        self.listener.close()
        conn.settimeout(30)
        line = b""
        while not line.endswith(b"\n"):
            line += conn.recv(1)
        assert json.loads(line)["type"] == "upload"
        conn.sendall(b'{"type": "upload_ready", "offset": 0}\n')
        self.go_on.wait(30)
        if self.answer_late:
            conn.sendall(self.answer_late)
        with contextlib.suppress(OSError):
            while chunk := conn.recv(1 << 20):
                self.received += len(chunk)
        conn.close()
        self.closed.set()


def test_a_file_that_shrinks_while_it_is_sent_fails_in_a_sentence(qtbot, tmp_path):
    """The plain upload's sender thread meets the end of a file cut short under it."""
    host = _StillHost()
    host.start()
    source = tmp_path / "growing.log"
    with open(source, "wb") as out:
        out.truncate(64 * MiB)  # sparse: more than the socket buffers hold
    upload = Upload(Endpoint("127.0.0.1", host.port), "token", source, 64 * MiB)
    with qtbot.waitSignal(upload.progress, timeout=WAIT):  # some is out, the rest waits
        upload.start()
    # On a plain socket the bytes go from a thread of their own, not the GUI's.
    assert "qtchat-send" in [thread.name for thread in threading.enumerate()]
    with open(source, "r+b") as out:
        out.truncate(MiB)
    with qtbot.waitSignal(upload.failed, timeout=WAIT) as failed:
        host.go_on.set()
    assert failed.args == ["file", "growing.log became shorter while sending."]
    assert host.closed.wait(30)
    assert host.received < 64 * MiB


def test_the_hosts_refusal_midway_stops_the_senders_thread(qtbot, tmp_path):
    """An error line while the sender waits on a full socket: the person reads the
    host's sentence, and the connection closes (the thread does not go on sending)."""
    host = _StillHost(b'{"type": "error", "code": "disk_full", '
                      b'"message": "The host is short of disk space."}\n')
    host.start()
    source = tmp_path / "big.bin"
    with open(source, "wb") as out:
        out.truncate(64 * MiB)
    upload = Upload(Endpoint("127.0.0.1", host.port), "token", source, 64 * MiB)
    with qtbot.waitSignal(upload.progress, timeout=WAIT):
        upload.start()
    with qtbot.waitSignal(upload.failed, timeout=WAIT) as failed:
        host.go_on.set()
    assert failed.args == ["disk_full", "The host is short of disk space."]
    assert host.closed.wait(30)
    assert host.received < 64 * MiB
