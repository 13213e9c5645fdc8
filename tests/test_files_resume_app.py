"""The app remembers unfinished transfers across a restart (issue 15): ``TransferJournal``
in the app's data dir, against an in-process ChatServer over real sockets. An upload or
download is cut mid-way and its client closed; a NEW client object with the same data
dir (and the same identity, for an upload) finds it in ``pending_transfers()``, resumes
it from what is held, and the file ends correct (SHA-256 checked)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets

from qtchat.client.chat_client import ChatClient, Endpoint
from qtchat.client.files import JOURNAL_NAME, TransferJournal

WAIT = 20_000
MiB = 1 << 20
SIZE = 16 * MiB
CUT_AT = 4 * MiB


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _joined(qtbot, make_client, server, name: str, identity: str | None = None) -> ChatClient:
    client = make_client(features=("files",))
    client.identity = identity
    with qtbot.waitSignal(client.registered, timeout=WAIT):
        client.open(Endpoint("127.0.0.1", server.port), name)
    return client


def _cut_at(client: ChatClient, transfer_id: list[str], at: int) -> None:
    """Cancel the transfer once ``at`` bytes have moved (the app quits mid-way)."""
    def check(which: str, done: int, _total: int) -> None:
        if transfer_id and which == transfer_id[0] and done >= at:
            client.cancel_transfer(which)

    client.transferProgress.connect(check)


def test_an_upload_cut_by_closing_the_app_is_resumed_by_a_new_client(
        qtbot, make_server, make_client, tmp_path):
    server = make_server()
    data_dir = tmp_path / "app"
    identity = secrets.token_urlsafe(24)
    data = os.urandom(SIZE)
    source = tmp_path / "film.bin"
    source.write_bytes(data)

    alice = _joined(qtbot, make_client, server, "Alice", identity)
    journal = TransferJournal(data_dir)
    journal.attach(alice)
    started: list[str] = []
    _cut_at(alice, started, CUT_AT)
    with qtbot.waitSignal(alice.transferFailed, timeout=WAIT) as failed:
        started.append(alice.send_file(source, text="the film"))
    assert failed.args[:2] == [started[0], "cancelled"]
    alice.close()
    journal.deleteLater()

    stored = json.loads((data_dir / JOURNAL_NAME).read_text())["transfers"]
    assert [(t["kind"], t["id"]) for t in stored] == [("upload", started[0])]
    assert CUT_AT <= stored[0]["offset"] < SIZE

    # The app starts again: new objects, the same data dir and identity.
    again = _joined(qtbot, make_client, server, "Alice", identity)
    bob = _joined(qtbot, make_client, server, "Bob")
    journal = TransferJournal(data_dir)
    journal.attach(again)
    [pending] = journal.pending_transfers()
    assert (pending.kind, pending.id, pending.path, pending.state) == (
        "upload", started[0], str(source.resolve()), "stopped")
    accepted, sent, seen = [], [], []
    again.fileAccepted.connect(accepted.append)
    again.fileSent.connect(lambda *args: sent.append(args))
    bob.messageReceived.connect(seen.append)
    with qtbot.waitSignals([again.fileSent, bob.messageReceived], timeout=WAIT):
        assert journal.resume_all() == [started[0]]
    [offer] = accepted
    assert 0 < offer.offset < SIZE  # went on from what the host held, not from zero
    [(_id, file_id, _seq)] = sent
    [message] = seen
    assert message.text == "the film" and message.file["sha256"] == _sha(data)
    assert journal.pending_transfers() == []
    assert json.loads((data_dir / JOURNAL_NAME).read_text())["transfers"] == []
    saved = tmp_path / "bob" / "film.bin"
    saved.parent.mkdir()
    with qtbot.waitSignal(bob.fileSaved, timeout=WAIT):
        bob.download(file_id, saved)
    assert _sha(saved.read_bytes()) == _sha(data)


def test_a_download_cut_by_closing_the_app_is_resumed_by_a_new_client(
        qtbot, make_server, make_client, tmp_path):
    server = make_server()
    data = os.urandom(SIZE)
    source = tmp_path / "film.bin"
    source.write_bytes(data)
    alice = _joined(qtbot, make_client, server, "Alice")
    bob = _joined(qtbot, make_client, server, "Bob")
    with qtbot.waitSignal(alice.fileSent, timeout=WAIT) as sent:
        alice.send_file(source)
    file_id = sent.args[1]

    data_dir = tmp_path / "bob-app"
    journal = TransferJournal(data_dir)
    journal.attach(bob)
    destination = tmp_path / "saved" / "film.bin"
    destination.parent.mkdir()
    started: list[str] = []
    _cut_at(bob, started, CUT_AT)
    with qtbot.waitSignal(bob.transferFailed, timeout=WAIT):
        started.append(bob.download(file_id, destination))
    bob.close()
    journal.deleteLater()
    held = destination.with_name("film.bin.part").stat().st_size
    assert CUT_AT <= held < SIZE and not destination.exists()

    later = _joined(qtbot, make_client, server, "Bob2")
    journal = TransferJournal(data_dir)
    journal.attach(later)
    [pending] = journal.pending_transfers()
    assert (pending.kind, pending.file, pending.path) == (
        "download", file_id, str(destination.resolve()))
    assert pending.offset >= CUT_AT and pending.size == SIZE
    progress: list[int] = []
    later.transferProgress.connect(lambda _id, done, _total: progress.append(done))
    with qtbot.waitSignal(later.fileSaved, timeout=WAIT):
        assert journal.resume_all() == [started[0]]
    assert progress[0] > held  # it went on from the part file
    assert _sha(destination.read_bytes()) == _sha(data)
    assert journal.pending_transfers() == []


def test_an_unreadable_record_counts_as_empty_and_is_replaced_whole(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text("{not json")
    journal = TransferJournal(tmp_path)
    assert journal.pending_transfers() == []
    journal.forget("nothing")  # nothing to forget: nothing written
    assert (tmp_path / JOURNAL_NAME).read_text() == "{not json"
