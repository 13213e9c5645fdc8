"""The files feature's rules, driven through ``ServerCore`` with a hand-advanced clock.

The bytes of an upload go straight into the feature's streams here (what a transfer
connection does with what it reads); the socket tests (test_files_socket.py) hold the
same paths over real connections.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import pytest
from test_core_rules import Net

from qtchat.server.features.base import Feature
from qtchat.server.features.files import MAX_TRANSFERS, NO_PROGRESS, FilesFeature
from qtchat.server.files import FileError, UploadDone


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Muting(Feature):
    """A veto like moderation's mute: whoever is in ``muted`` may not post."""

    muted: ClassVar[set[str]] = set()

    def may_post(self, conn, session, target, text):
        if session.name.display in self.muted:
            return "muted", "You are muted."
        return None


@pytest.fixture
def net(tmp_path):
    Muting.muted = set()
    made = Net(features=(lambda core: FilesFeature(core, tmp_path / "files"), Muting))
    yield made
    made.store.close()


def _files(net: Net) -> FilesFeature:
    feature = net.core.feature("files")
    assert isinstance(feature, FilesFeature)
    return feature


def _offer(client, data: bytes, offer_id: str, **fields):
    client.send(type="file_offer", id=offer_id, name=fields.pop("name", "a.txt"),
                size=len(data), sha256=fields.pop("sha256", _sha(data)), **fields)
    return client.new()[-1]


def _upload(net: Net, token: str, data: bytes):
    stream, who = _files(net).open_upload(token, net.now)
    actions = stream.receive(data, now=net.now)
    stream.close(now=net.now)
    _files(net).transfer_ended(who)
    return actions


def test_offers_are_checked_like_messages_and_answered_with_their_id(net):
    alice = net.registered("Alice", features=["files"])
    assert _offer(alice, b"x", "a", room="nowhere")["code"] == "no_such_room"
    net.registered("Bob", features=["files"]).send(type="join", room="den")
    assert _offer(alice, b"x", "b", room="den")["code"] == "not_in_room"
    assert _offer(alice, b"x", "c", to="Nobody")["code"] == "no_such_user"
    refused = _offer(alice, b"x", "d", name="../../etc/passwd")
    assert refused["code"] == "invalid_name" and refused["id"] == "d"
    assert _offer(alice, b"x", "e", name="con\u202e.exe")["code"] == "invalid_name"
    assert _offer(alice, b"x", "f", room="lobby", to="Bob")["code"] == "bad_frame"
    accepted = _offer(alice, b"x", "g", to="Bob")
    assert accepted["type"] == "file_accepted" and accepted["id"] == "g"


def test_a_finished_upload_posts_once_to_the_room_and_echoes_the_offer_id(net):
    alice = net.registered("Alice", features=["files"])
    bob = net.registered("Bob", features=["files"])
    old = net.registered("Old")  # no files feature: still sees the message and its text
    data = b"hello file\n" * 1000
    accepted = _offer(alice, data, "up1", text="see this")
    [done] = _upload(net, accepted["token"], data)
    assert isinstance(done, UploadDone)
    seq = _files(net).post_upload(done.file)
    net.settle()
    info = {"file": accepted["file"], "name": "a.txt", "size": len(data),
            "sha256": _sha(data)}
    assert alice.new()[-1] == {"type": "broadcast", "seq": seq, "ts": "2026-12-03T12:00:00.000Z",
                               "from": "Alice", "room": "lobby", "text": "see this",
                               "id": "up1", "file": info}
    for other in (bob, old):
        [message] = [f for f in other.new() if f["type"] == "broadcast"]
        assert message["file"] == info and "id" not in message
    assert net.store.message_by_seq(seq).file == info  # stored with it


def test_a_mute_refuses_the_offer_and_a_later_mute_the_post(net):
    alice = net.registered("Alice", features=["files"])
    bob = net.registered("Bob", features=["files"])
    Muting.muted.add("Alice")
    assert _offer(alice, b"x", "m1")["code"] == "muted"
    Muting.muted.clear()
    data = b"y" * 100
    accepted = _offer(alice, data, "m2")
    Muting.muted.add("Alice")  # muted while uploading
    [done] = _upload(net, accepted["token"], data)
    assert _files(net).post_upload(done.file) is None
    net.settle()
    assert alice.new()[-1]["code"] == "muted"
    assert not [f for f in bob.new() if f["type"] == "broadcast"]
    bob.send(type="file_get", file=accepted["file"])
    assert bob.new()[-1]["code"] == "no_such_file"  # its bytes went too


def test_who_may_download_a_whisper_and_a_room_file(net):
    alice = net.registered("Alice", features=["files"])
    bob = net.registered("Bob", features=["files"])
    carol = net.registered("Carol", features=["files"])
    for client in (alice, bob):
        client.send(type="join", room="den")
    data = b"z" * 10
    got = {}
    for key, target in (("room", {"room": "den"}), ("whisper", {"to": "Bob"})):
        accepted = _offer(alice, data, key, **target)
        [done] = _upload(net, accepted["token"], data)
        _files(net).post_upload(done.file)
        net.settle()
        got[key] = accepted["file"]
    for client, allowed in ((alice, True), (bob, True), (carol, False)):
        for file_id in got.values():
            client.send(type="file_get", id="t", file=file_id)
            answer = client.new()[-1]
            assert (answer["type"] == "file_ticket") is allowed, (client.name, answer)
    bob.send(type="leave", room="den")  # a room's file: its members *now*
    bob.send(type="file_get", file=got["room"])
    assert bob.new()[-1]["code"] == "no_such_file"


def test_a_transfer_that_moves_nothing_for_30_seconds_is_closed(net):
    files = _files(net)

    class Stuck:
        def __init__(self) -> None:
            self.last_progress = net.now
            self.closed = False

        def stalled(self) -> None:
            self.closed = True
            files.transfers.pop(self, None)

    stuck, moving = Stuck(), Stuck()
    files.transfers[stuck] = files.transfers[moving] = None
    net.now += NO_PROGRESS - 1
    moving.last_progress = net.now
    net.core.tick(net.now)
    assert not stuck.closed
    net.now += 2
    net.core.tick(net.now)
    assert stuck.closed and not moving.closed


def test_at_most_four_transfers_at_once_per_person(net):
    alice = net.registered("Alice", features=["files"])
    data = b"q" * 10
    tokens = [_offer(alice, data, f"o{i}")["token"] for i in range(MAX_TRANSFERS + 1)]
    files = _files(net)
    opened = [files.open_upload(token, net.now) for token in tokens[:MAX_TRANSFERS]]
    with pytest.raises(FileError) as refused:
        files.open_upload(tokens[-1], net.now)
    assert refused.value.code == "rate_limited"
    stream, who = opened[0]
    stream.close(now=net.now)
    files.transfer_ended(who)
    files.open_upload(tokens[-1], net.now)  # one ended: room for it


def test_a_file_leaves_with_its_message_when_retention_removes_it(tmp_path):
    net = Net(history_retention=3,
              features=(lambda core: FilesFeature(core, tmp_path / "files"),))
    try:
        alice = net.registered("Alice", features=["files"])
        data = b"kept while its message is"
        accepted = _offer(alice, data, "r1")
        [done] = _upload(net, accepted["token"], data)
        _files(net).post_upload(done.file)
        net.settle()
        net.now += 11
        net.core.tick(net.now)
        alice.send(type="file_get", file=accepted["file"])
        assert alice.new()[-1]["type"] == "file_ticket"  # its message is still there
        for index in range(5):  # retention (3) pushes the file's message out
            alice.send(type="broadcast", text=f"later {index}")
        net.now += 11
        net.core.tick(net.now)
        alice.send(type="file_get", file=accepted["file"])
        assert alice.new()[-1]["code"] == "no_such_file"
        assert not (tmp_path / "files" / accepted["file"]).exists()
        # Its entry goes too: nothing of it is left in the folder or in quotas.
        assert not list((tmp_path / "files").glob(accepted["file"] + "*"))
        assert _files(net).store.get(accepted["file"]) is None
    finally:
        net.store.close()
