"""Files leave with their message and belong to identities (PROTOCOL-FEATURES §2, issue 15),
over real sockets against a ``qtchat serve`` child: a deleted message takes its file's
bytes along; an upload begun by an identity goes on from a new session of it (the app
restarted); a whisper's file is for the two identities, never for a later holder of a
name."""

from __future__ import annotations

import os
import secrets

import pytest
from helpers import ServeProcess, SyncClient, unique_name, wait_until
from test_files_socket import MiB, _download, _Line, _offer, _sha, _ticket, _upload


@pytest.fixture
def serve(tmp_path):
    with ServeProcess(tmp_path / "data", "--rate-limit", "0") as process:
        yield process


def _person(port: int, name: str | None = None, identity: str | None = None) -> SyncClient:
    client = SyncClient(port)
    extra = {"identity": identity} if identity is not None else {}
    registered = client.register(name or unique_name(), features=["files", "edit"], **extra)
    assert registered["type"] == "registered", registered
    return client


def _held(folder, file_id: str) -> list[str]:
    """What the host keeps on disk for ``file_id`` (its bytes, part file, entry)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(file_id))


def test_deleting_a_message_removes_its_file_bytes_and_entry(serve, tmp_path):
    folder = tmp_path / "data" / "files"
    alice, bob = _person(serve.port), _person(serve.port)
    data = os.urandom(MiB + 3)
    accepted = _offer(alice, data, "d1", text="a file to take back")
    _ready, done = _upload(serve.port, accepted["token"], data)
    assert done["type"] == "upload_done"
    file_id = accepted["file"]
    assert _held(folder, file_id) == [file_id, f"{file_id}.json"]
    ticket = _ticket(bob, file_id)  # issued while the file was there
    assert ticket["type"] == "file_ticket"

    alice.send({"type": "delete", "seq": done["seq"]})
    alice.recv_until("deleted", seq=done["seq"])
    bob.recv_until("deleted", seq=done["seq"])

    refused = _ticket(bob, file_id)
    assert refused["type"] == "error" and refused["code"] == "no_such_file"
    ready, body = _download(serve.port, ticket["token"])  # the old ticket opens nothing
    assert ready["type"] == "error" and ready["code"] == "no_such_file" and body == b""
    assert _held(folder, file_id) == []
    # History shows the tombstone without the file.
    bob.send({"type": "history", "room": "lobby", "limit": 10})
    history, _ = bob.recv_until("history")
    [tomb] = [m for m in history["messages"] if m["seq"] == done["seq"]]
    assert tomb["text"] == "" and "file" not in tomb


def test_an_identitys_upload_goes_on_from_a_new_session(serve):
    identity = secrets.token_urlsafe(24)
    name = unique_name()
    alice = _person(serve.port, name, identity)
    bob = _person(serve.port)
    data = os.urandom(3 * MiB)
    accepted = _offer(alice, data, "resume-me")
    conn = _Line(serve.port, {"type": "upload", "token": accepted["token"]})
    assert conn.line()["offset"] == 0
    conn.sock.sendall(data[:MiB + 5])
    wait_until(lambda: _offer(alice, data, "resume-me")["offset"] == MiB + 5)
    conn.reset()
    alice.reset()  # the app is closed mid-way

    again = _person(serve.port, name, identity)  # the app starts again: a new session
    assert again.session != alice.session
    offered = _offer(again, data, "resume-me")
    assert offered["type"] == "file_accepted", offered
    assert offered["file"] == accepted["file"] and offered["offset"] == MiB + 5
    ready, done = _upload(serve.port, offered["token"], data)
    assert ready["offset"] == MiB + 5 and done["type"] == "upload_done"
    echo, _ = again.recv_until("broadcast", id="resume-me")  # to the session that finished
    seen, _ = bob.recv_until("broadcast", seq=done["seq"])
    assert echo["file"]["sha256"] == seen["file"]["sha256"] == _sha(data)
    ticket = _ticket(bob, accepted["file"])
    _ready, body = _download(serve.port, ticket["token"])
    assert _sha(body) == _sha(data)

    # Another session without that identity cannot take the same offer id over.
    stranger = _person(serve.port)
    other = _offer(stranger, data, "resume-me")
    assert other["type"] == "file_accepted" and other["file"] != accepted["file"]
    assert other["offset"] == 0


def test_a_whispered_file_is_for_the_two_identities_not_a_later_holder_of_the_name(serve):
    alice_id, bob_id = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    alice_name, bob_name, dave_name = unique_name(), unique_name(), unique_name()
    alice = _person(serve.port, alice_name, alice_id)
    bob = _person(serve.port, bob_name, bob_id)
    dave = _person(serve.port, dave_name)  # no identity
    data = b"for your eyes only\n" * 1000
    files = {}
    for to, offer_id in ((bob_name, "to-bob"), (dave_name, "to-dave")):
        accepted = _offer(alice, data, offer_id, to=to)
        _ready, done = _upload(serve.port, accepted["token"], data)
        assert done["type"] == "upload_done"
        files[to] = accepted["file"]

    # Both apps restart: new sessions of the same identities may still fetch it.
    alice.send({"type": "bye"})
    bob.send({"type": "bye"})
    alice_again = _person(serve.port, alice_name, alice_id)
    bob_again = _person(serve.port, bob_name, bob_id)
    for person in (alice_again, bob_again):
        ticket = _ticket(person, files[bob_name])
        assert ticket["type"] == "file_ticket", ticket
        _ready, body = _download(serve.port, ticket["token"])
        assert body == data
    # Dave (no identity) leaves; whoever takes the name next gets nothing of his.
    dave.send({"type": "bye"})
    holders: list[SyncClient] = []

    def take_the_name() -> bool:
        client = SyncClient(serve.port)
        if client.register(dave_name, features=["files"])["type"] == "registered":
            holders.append(client)
            return True
        client.close()
        return False

    wait_until(take_the_name)
    [later] = holders
    refused = _ticket(later, files[dave_name])
    assert refused["type"] == "error" and refused["code"] == "no_such_file"
    # Nor does a third identity get Bob's.
    carol = _person(serve.port, None, secrets.token_urlsafe(24))
    refused = _ticket(carol, files[bob_name])
    assert refused["type"] == "error" and refused["code"] == "no_such_file"
