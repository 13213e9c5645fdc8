"""A real full disk under ``qtchat serve``: a message is stored or refused, never both.

The data directory sits on a 2 MB tmpfs mounted for the test; a filler file takes
every byte left. What a person would notice is what is checked: the sender is told
(``storage_error`` with its ``id``), nobody sees a message the history does not
keep, pings and registrations go on, the server recovers by itself when space
returns, stops cleanly, and never gives a ``seq`` someone saw to another text.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from pathlib import Path

import pytest
from helpers import ServeProcess, SyncClient, frame_bytes

TIMEOUT = 10.0  # a server that stalls fails the test in seconds, not minutes


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs: a disk that really fills (root only; skipped where mount is refused)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                                 str(mount_point)], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        pytest.skip(f"cannot run mount ({exc}): a real full disk needs a small tmpfs")
    if result.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here ({result.stderr.strip()}); "
                    "a real full disk needs one")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Take every byte left on ``disk`` with one file; delete it to give the space back."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 16, 4096, 512, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    out.write(chunk)
    with pytest.raises(OSError) as full, (disk / "probe").open("wb", buffering=0) as probe:
        probe.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


def client(port: int, name: str) -> SyncClient:
    person = SyncClient(port, timeout=TIMEOUT)
    assert person.register(name)["type"] == "registered"
    return person


def post(sender: SyncClient, text: str, client_id: str, **where: str) -> dict:
    """Send a broadcast (or a whisper with ``to=``) and return the answer to it: the
    sender's copy (it carries the id) or the error naming that id."""
    kind = "whisper" if "to" in where else "broadcast"
    sender.send({"type": kind, "text": text, "id": client_id, **where})
    while True:
        frame = sender.recv()
        if frame.get("id") == client_id and frame["type"] in (kind, "error"):
            return frame


def post_until_refused(sender: SyncClient, prefix: str, most: int = 40) -> tuple[dict, dict]:
    """Post until the full disk refuses one; returns ({seq: text} stored, the error)."""
    stored: dict[int, str] = {}
    for number in range(most):
        answer = post(sender, f"{prefix} {number}", f"{prefix}-{number}")
        if answer["type"] == "error":
            return stored, answer
        stored[answer["seq"]] = answer["text"]
    raise AssertionError(f"{most} messages were posted to a full disk without an error")


def seen_broadcasts(person: SyncClient) -> dict[int, str]:
    return {f["seq"]: f["text"] for f in person.sync() if f["type"] == "broadcast"}


def lobby_history(port: int, name: str) -> dict[int, str]:
    reader = client(port, name)
    reader.send({"type": "history", "room": "lobby", "limit": 200})
    page, _ = reader.recv_until("history")
    reader.close()
    return {m["seq"]: m["text"] for m in page["messages"]}


def refused_start(data: Path) -> str:
    """Run ``qtchat serve`` on ``data``, expect it to refuse to start (exit 2) in one
    ``qtchat: …`` line, and return that line."""
    result = subprocess.run(ServeProcess.command(data), capture_output=True, text=True,
                            timeout=60, env=ServeProcess.environment(),
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qtchat: "), result.stderr
    return lines[0]


def test_a_full_disk_refuses_posts_with_storage_error_and_serves_everything_else(small_disk):
    data = small_disk / "data"
    with ServeProcess(data) as server:
        alice, bob = client(server.port, "Alice"), client(server.port, "Bob")
        assert post(alice, "before the disk filled", "first")["type"] == "broadcast"
        filler = fill(small_disk)

        stored, refused = post_until_refused(alice, "while full")
        assert refused["code"] == "storage_error" and refused["ref"] == "broadcast"
        refused_text = f"while full {len(stored)}"
        whisper = post(alice, "a secret on a full disk", "whisper-1", to="Bob")
        assert whisper["type"] == "error" and whisper["code"] == "storage_error"
        assert whisper["ref"] == "whisper"

        # Bob saw what was stored and nothing that was refused; pings are answered.
        seen = seen_broadcasts(bob)
        assert refused_text not in seen.values()
        assert set(stored.items()) <= set(seen.items())
        assert not [f for f in bob.sync() if f["type"] == "whisper"]
        # A newcomer gets in, and the history is read as usual.
        carol = client(server.port, "Carol")
        history = lobby_history(server.port, "Dave")
        assert "before the disk filled" in history.values()
        assert refused_text not in history.values()

        # Space comes back: the next message is stored and sent, with no restart.
        filler.unlink()
        after = post(alice, "after the disk emptied", "after")
        assert after["type"] == "broadcast"
        assert after["seq"] > max(seen)
        # The refused message sent again with its id is a new message, not a repeat.
        retried = post(alice, refused_text, refused["id"])
        assert retried["type"] == "broadcast" and retried["seq"] > after["seq"]
        seen_by_carol = seen_broadcasts(carol)
        assert seen_by_carol.get(after["seq"]) == "after the disk emptied"
        seen.update(seen_broadcasts(bob))

        assert server.terminate() == 0
        _out, err = server.process.communicate(timeout=30)
    assert "Traceback" not in err, err
    full_lines = [line for line in err.splitlines() if "cannot store" in line]
    assert len(full_lines) == 1, err  # said once, not once per commit

    with ServeProcess(data) as again:  # nothing anyone saw is lost
        history = lobby_history(again.port, "Erin")
        assert set(seen.items()) <= set(history.items())
        # The refused text is there once: as the message its retry made.
        assert [seq for seq, text in history.items() if text == refused_text] == \
            [retried["seq"]]
        again.terminate()


def test_killed_while_full_and_restarted_with_space_no_seq_names_two_texts(small_disk):
    data = small_disk / "data"
    with ServeProcess(data) as server:
        alice, bob = client(server.port, "Alice"), client(server.port, "Bob")
        for number in range(3):
            assert post(alice, f"early {number}", f"early-{number}")["type"] == "broadcast"
        filler = fill(small_disk)
        post_until_refused(alice, "while full")
        for number in range(3):  # and go on trying, as a person would
            post(alice, f"again {number}", f"again-{number}")
        seen = seen_broadcasts(bob)
        server.kill()
    filler.unlink()

    with ServeProcess(data) as restarted:
        alice = client(restarted.port, "Alice2")
        fresh = post(alice, "first after the restart", "fresh")
        assert fresh["type"] == "broadcast"
        assert fresh["seq"] not in seen, (fresh, seen)
        history = lobby_history(restarted.port, "Reader")
        for seq, text in seen.items():
            assert history.get(seq) == text, (seq, text, history.get(seq))
        assert restarted.terminate() == 0


def test_a_history_missing_beside_its_write_ahead_log_refuses_to_start(tmp_path):
    """history.sqlite3 gone but its -wal still there: SQLite would quietly throw the log
    away and start an empty history; the server refuses instead, in one line."""
    data = tmp_path / "data"
    with ServeProcess(data) as server:
        alice = client(server.port, "Alice")
        post(alice, "kept in the log", "kept")
        server.kill()  # the log is not folded into the database on a kill
    wal = data / "history.sqlite3-wal"
    assert wal.stat().st_size > 0
    (data / "history.sqlite3").unlink()
    line = refused_start(data)
    assert "history.sqlite3" in line and "-wal" in line
    assert wal.stat().st_size > 0  # left for the person to put right


def test_an_empty_history_file_is_started_over_saying_so(tmp_path):
    """A zero-byte history.sqlite3 with no log beside it holds nothing to recover (a
    first start cut short by a full disk leaves one): a new history, said in one line."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(b"")
    with ServeProcess(data) as server:
        alice = client(server.port, "Alice")
        assert post(alice, "a new start", "new")["seq"] == 1
        assert server.terminate() == 0
        _out, err = server.process.communicate(timeout=30)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qtchat: "), err
    assert "empty" in lines[0] and "new history" in lines[0]


def test_a_full_disk_at_the_very_first_start_leaves_nothing_that_blocks_the_next(small_disk):
    data = small_disk / "data"
    data.mkdir()
    filler = fill(small_disk)
    refused_start(data)
    filler.unlink()
    with ServeProcess(data) as server:
        alice = client(server.port, "Alice")
        assert post(alice, "now there is room", "room")["type"] == "broadcast"
        assert server.terminate() == 0
        _out, err = server.process.communicate(timeout=30)
    assert err == "", err


def test_refusals_come_in_the_order_of_the_sends_they_answer(small_disk):
    """A client may match answers to its sends in order: each storage_error takes the
    place of the echo it replaces, also between other errors of the same pass."""
    with ServeProcess(small_disk / "data") as server:
        alice = client(server.port, "Alice")
        fill(small_disk)
        post_until_refused(alice, "while full")
        alice.send_raw(b"".join(frame_bytes(frame) for frame in (
            {"type": "broadcast", "text": "no id"},
            {"type": "broadcast", "text": " "},  # invalid_text, answered at once
            {"type": "whisper", "to": "Alice", "text": "to myself", "id": "self"},
            {"type": "broadcast", "text": "with an id", "id": "last"},
        )))
        answers = [(f["code"], f.get("ref"), f.get("id")) for f in alice.sync()]
        assert answers == [("storage_error", "broadcast", None),
                           ("invalid_text", "broadcast", None),
                           ("storage_error", "whisper", "self"),
                           ("storage_error", "broadcast", "last")]
        assert server.terminate() == 0  # stopped while the disk is still full
        _out, err = server.process.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_a_registration_on_a_full_disk_is_kept_and_stored_once_there_is_room(small_disk):
    """Sessions and rooms need a write too: while the disk is full they live in memory
    (the register and the join succeed), and are stored with the first commit that can
    be, so a resume after a later crash still finds them."""
    data = small_disk / "data"
    with ServeProcess(data) as server:
        alice = client(server.port, "Alice")
        filler = fill(small_disk)
        post_until_refused(alice, "while full")
        carol = client(server.port, "Carol")
        carol.send({"type": "join", "room": "Attic"})
        joined, _ = carol.recv_until("joined")
        assert joined["room"] == "Attic"
        filler.unlink()
        assert post(alice, "room again", "again")["type"] == "broadcast"
        server.kill()
    with ServeProcess(data) as restarted:
        back = SyncClient(restarted.port, timeout=TIMEOUT)
        registered = back.register("Carol", resume=carol.session)
        assert registered["type"] == "registered" and registered["resumed"] is True
        assert "Attic" in registered["in_rooms"]
        assert restarted.terminate() == 0


def serves_a_full_disk_then_takes_posts(small_disk: Path, data: Path) -> None:
    """A start with the disk full: the first run's history is served; posts are stored
    while the log the first run left has room (a checkpoint frees it for reuse), then
    refused with storage_error; once there is room they are taken again."""
    filler = fill(small_disk)
    with ServeProcess(data) as server:
        alice = client(server.port, "Alice")
        stored, refused = post_until_refused(alice, "on a full disk")
        assert refused["code"] == "storage_error"
        history = lobby_history(server.port, "Reader")
        assert "from the first run" in history.values()
        assert stored.items() <= history.items()
        filler.unlink()
        assert post(alice, "with room", "room")["type"] == "broadcast"
        assert server.terminate() == 0


def test_a_server_started_on_a_full_disk_serves_and_refuses_posts_until_there_is_room(
        small_disk):
    data = small_disk / "data"
    with ServeProcess(data) as first:
        bob = client(first.port, "Bob")  # a session to hold at the next start
        assert post(bob, "from the first run", "first")["type"] == "broadcast"
        first.kill()
    serves_a_full_disk_then_takes_posts(small_disk, data)


def test_a_failed_commit_leaves_the_store_as_it_was_and_the_next_one_catches_up(
        small_disk, monkeypatch):
    """The store on its own: what a failed commit would have done (new rows, a prune,
    a session) is not counted as done; the seq counter does not go back; and the
    session change waiting in memory is written by the first commit that can be."""
    from qtchat.server import store as store_module
    from qtchat.server.store import MessageStore, StorageError

    # No checkpoints: a copied log is reused from its start, and the commit on a full
    # disk would then find room in it (the server tests see that); here it must grow.
    monkeypatch.setattr(store_module._Checkpointer, "nudge", lambda _self: None)
    path = small_disk / "history.sqlite3"
    store = MessageStore(path, retention=100)

    def add(text: str) -> int:
        return store.add(ts="2026-12-03T10:00:00.000Z", bucket="lobby", room="lobby",
                         sender="Ann", sender_sid=1, text=text)

    for number in range(100):
        add(f"kept {number}")
    assert store.commit()
    filler = fill(small_disk)
    sid = store.new_session("s" * 32, "Ann", ["lobby"])
    refused = [add(f"refused {number}") for number in range(5)]  # past retention: a prune
    with pytest.raises(StorageError) as failure:
        store.commit()
    assert failure.value.seqs == refused
    assert store.count("lobby") == 100 and store.pruned_upto("lobby") == 0
    texts = [m.text for m in store.page("lobby", None, 200)]
    assert len(texts) == 100 and not [t for t in texts if t.startswith("refused")]

    filler.unlink()
    after = add("with room")
    assert after > max(refused)
    assert store.commit()
    page = store.page("lobby", None, 200)
    assert len(page) == store.count("lobby") and page[-1].seq == after
    assert [s.sid for s in store.sessions()] == [sid]
    store.close()

    again = MessageStore(path, retention=100)
    assert again.last_seq == after and [s.sid for s in again.sessions()] == [sid]
    again.close()


def test_a_history_deleted_beside_the_certificate_is_started_over_saying_so(tmp_path):
    """No history.sqlite3 but the host's certificate: it was deleted (to start over, or
    by mistake). A new history, and one line that says so, never a silent one."""
    data = tmp_path / "data"
    with ServeProcess(data, "--tls") as server:
        assert server.terminate() == 0
    assert (data / "qtchat-cert.pem").exists()
    for name in ("history.sqlite3", "history.sqlite3-wal"):
        (data / name).unlink(missing_ok=True)
    with ServeProcess(data, "--tls") as server:
        assert server.terminate() == 0
        _out, err = server.process.communicate(timeout=30)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qtchat: "), err
    assert "starting a new history" in lines[0]


def test_the_app_shows_a_refused_message_as_failed_and_its_retry_goes_once(
        qtbot, small_disk, make_server, make_client):  # the disk outlives the server
    """What the person sees: the message is marked failed (storage_error), nobody else
    got it, and once the host has room its retry is delivered, once."""
    from qtchat.client.chat_client import Endpoint

    server = make_server(data_dir=small_disk / "data")
    alice, bob = make_client(), make_client()
    for person, name in ((alice, "Alice"), (bob, "Bob")):
        with qtbot.waitSignal(person.registered, timeout=5000):
            person.open(Endpoint("127.0.0.1", server.port), name)
    received: list[str] = []
    bob.messageReceived.connect(lambda frame: received.append(frame.text))
    failed: list[tuple] = []
    answered: list[str] = []
    alice.sendFailed.connect(lambda *args: failed.append(args))
    alice.sendFailed.connect(lambda message_id, *_: answered.append(message_id))
    alice.sendConfirmed.connect(lambda message_id, *_: answered.append(message_id))
    filler = fill(small_disk)
    for number in range(40):  # until the full disk refuses one
        message_id = alice.send_broadcast(f"while full {number}")
        qtbot.waitUntil(lambda sent=message_id: sent in answered, timeout=5000)
        if failed:
            break
    [(failed_id, code, _why)] = failed
    assert (failed_id, code) == (message_id, "storage_error")
    assert alice.failed_ids == [message_id]
    with qtbot.waitSignal(bob.pongReceived, timeout=5000):
        bob.ping()
    assert f"while full {number}" not in received

    filler.unlink()
    with qtbot.waitSignals([alice.sendConfirmed, bob.messageReceived], timeout=5000):
        alice.retry(message_id)
    with qtbot.waitSignal(bob.pongReceived, timeout=5000):
        bob.ping()
    assert received.count(f"while full {number}") == 1
    assert alice.failed_ids == [] and alice.pending_ids == []


def test_a_history_read_in_the_same_pass_never_shows_a_refused_message(small_disk):
    """A read right behind a post (one write, one pass) would see the message in the
    open transaction; it is committed first, so a refused one is in no page."""
    with ServeProcess(small_disk / "data") as server:
        alice = client(server.port, "Alice")
        fill(small_disk)
        post_until_refused(alice, "while full")
        alice.send_raw(frame_bytes({"type": "broadcast", "text": "not kept", "id": "gone"})
                       + frame_bytes({"type": "history", "room": "lobby"}))
        answers = alice.sync()
        assert [(f["type"], f.get("code")) for f in answers] == [("error", "storage_error"),
                                                                  ("history", None)]
        assert "not kept" not in [m["text"] for m in answers[1]["messages"]]
        assert server.terminate() == 0


def test_a_history_stopped_cleanly_starts_on_a_full_disk(small_disk):
    """A clean stop removes the log and its index (-shm); the next start on a full disk
    cannot make a new -shm file, and must still serve the history and refuse posts
    (storage_error) rather than refuse to start with a disk I/O error."""
    data = small_disk / "data"
    with ServeProcess(data) as first:
        bob = client(first.port, "Bob")
        assert post(bob, "from the first run", "first")["type"] == "broadcast"
        assert first.terminate() == 0
    assert not (data / "history.sqlite3-shm").exists()
    serves_a_full_disk_then_takes_posts(small_disk, data)
    with ServeProcess(data) as again:
        assert "with room" in lobby_history(again.port, "Later").values()
        assert again.terminate() == 0
