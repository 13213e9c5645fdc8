"""The host's file store (qtchat.server.files): limits, resume, hashes, names, expiry.

No Qt and no sockets: the store and its upload/download streams are sans-IO, so
these tests drive them directly with a hand-advanced clock. The faults are real:
a child process killed with SIGKILL mid-upload, a 2 MB tmpfs that really fills.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_full_disk import fill, small_disk  # noqa: F401  (small_disk is a fixture)

from qtchat.server.files import (
    DownloadStream,
    FileError,
    FileLimits,
    FileStore,
    GiB,
    KiB,
    MiB,
    UploadDone,
    UploadFailed,
    check_name,
)

WORKTREE = Path(__file__).resolve().parents[1]
T0 = 1_000_000.0  # the hand-advanced clock starts here

# Disk checks off: the test machine's disk is not what these tests are about.
NO_DISK_FLOOR = {"min_free_bytes": 0, "min_free_ratio": 0.0}


def limits(**overrides) -> FileLimits:
    return FileLimits(**{**NO_DISK_FLOOR, **overrides})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def offer(store: FileStore, data: bytes, *, owner: str = "alice", offer_id: str = "o1",
          name: str = "report.pdf", now: float = T0, **extra):
    return store.offer(owner=owner, offer_id=offer_id, name=name, size=len(data),
                       sha256=sha(data), now=now, **extra)


def upload_all(store: FileStore, token: str, data: bytes, *, now: float = T0,
               chunk: int = 64 * KiB) -> list:
    stream = store.open_upload(token, now=now)
    actions: list = []
    for start in range(stream.offset, len(data), chunk):
        actions = stream.receive(data[start:start + chunk], now=now)
        if actions:
            break
    stream.close(now=now)
    return actions


def download_all(store: FileStore, token: str, offset: int = 0, now: float = T0) -> bytes:
    stream = store.open_download(token, offset, now=now)
    try:
        return b"".join(stream.slices())
    finally:
        stream.close()


@pytest.fixture
def store(tmp_path) -> FileStore:
    return FileStore(tmp_path / "files", limits(), now=T0)


def test_an_upload_is_stored_under_a_server_id_and_downloads_with_the_same_bytes(store):
    data = os.urandom(300 * KiB + 7)
    accepted = offer(store, data, mime="application/pdf", room="lobby")
    assert accepted.offset == 0
    assert re.fullmatch(r"[A-Za-z0-9_-]+", accepted.file.file)
    [done] = upload_all(store, accepted.token, data)
    assert isinstance(done, UploadDone) and done.file.state == "done"
    assert sorted(p.name for p in store.folder.iterdir()) == sorted(
        [accepted.file.file, accepted.file.file + ".json"])
    ticket = store.ticket(accepted.file.file, "bob", now=T0)
    assert download_all(store, ticket.token) == data
    assert download_all(store, ticket.token, offset=1000) == data[1000:]


def test_limits_per_file_and_per_owner_are_refused_with_their_codes(tmp_path):
    store = FileStore(tmp_path / "f", limits(max_file_size=1000, quota_per_owner=1500), now=T0)
    with pytest.raises(FileError) as too_large:
        offer(store, b"x" * 1001)
    assert too_large.value.code == "file_too_large"
    offer(store, b"x" * 1000, offer_id="a")  # pending offers reserve their full size
    with pytest.raises(FileError) as quota:
        offer(store, b"y" * 600, offer_id="b")
    assert quota.value.code == "quota_exceeded"
    offer(store, b"y" * 600, offer_id="b", owner="bob")  # quotas are per owner


def test_the_defaults_are_those_of_the_contract():
    defaults = FileLimits()
    assert (defaults.max_file_size, defaults.quota_per_owner) == (2 * GiB, 5 * GiB)
    assert (defaults.min_free_bytes, defaults.min_free_ratio) == (1 * GiB, 0.05)
    assert (defaults.partial_ttl, defaults.download_ttl) == (24 * 3600, 600)


def test_resume_after_a_cut_continues_from_the_offset_held(store):
    data = os.urandom(1 * MiB)
    accepted = offer(store, data)
    stream = store.open_upload(accepted.token, now=T0)
    assert stream.receive(data[:400_000], now=T0) == []
    stream.close(now=T0 + 5)  # the connection dropped
    again = offer(store, data, now=T0 + 10)  # the same id offered again after the drop
    assert again.file.file == accepted.file.file and again.offset == 400_000
    with pytest.raises(FileError):  # the old token stopped working
        store.open_upload(accepted.token, now=T0 + 10)
    [done] = upload_all(store, again.token, data, now=T0 + 10)
    assert isinstance(done, UploadDone)
    assert store.path(done.file.file).read_bytes() == data


def test_a_second_connection_takes_over_from_the_first(store):
    data = os.urandom(200 * KiB)
    accepted = offer(store, data)
    first = store.open_upload(accepted.token, now=T0)
    first.receive(data[:50_000], now=T0)
    second = store.open_upload(accepted.token, now=T0)
    assert second.offset == 50_000
    assert first.receive(data[50_000:60_000], now=T0) == [UploadFailed("no_such_file")]
    assert isinstance(second.receive(data[50_000:], now=T0)[0], UploadDone)


_WRITER = textwrap.dedent("""
    import os, sys
    from qtchat.server.files import FileStore, FileLimits
    folder, token = sys.argv[1], sys.argv[2]
    store = FileStore(folder, FileLimits(min_free_bytes=0, min_free_ratio=0.0), now=1_000_000.0)
    stream = store.open_upload(token, now=1_000_000.0)
    data = open(sys.argv[3], "rb").read()
    stream.receive(data[:700_000], now=1_000_000.0)
    print(stream.offset, flush=True)
    sys.stdin.read()  # wait to be killed
""")


def test_resume_after_the_writing_process_is_killed_and_the_store_reopened(tmp_path):
    folder = tmp_path / "files"
    data = os.urandom(1 * MiB + 3)
    source = tmp_path / "source"
    source.write_bytes(data)
    store = FileStore(folder, limits(), now=T0)
    accepted = offer(store, data)
    del store
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(folder), accepted.token, str(source)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(WORKTREE)})
    try:
        assert child.stdout.readline().strip() == "700000"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    reopened = FileStore(folder, limits(), now=T0 + 60)
    again = offer(reopened, data, now=T0 + 60)
    assert again.file.file == accepted.file.file and again.offset == 700_000
    stream = reopened.open_upload(again.token, now=T0 + 60)
    assert stream.rehash_pending == 700_000  # the hash state died with the process
    actions = stream.receive(data[700_000:], now=T0 + 60)
    assert isinstance(actions[0], UploadDone)
    assert reopened.path(accepted.file.file).read_bytes() == data


def test_a_kill_between_the_rename_and_the_meta_update_finishes_on_the_next_upload(tmp_path):
    folder = tmp_path / "files"
    store = FileStore(folder, limits(), now=T0)
    data = os.urandom(5000)
    accepted = offer(store, data)
    file_id = accepted.file.file
    (folder / f"{file_id}").write_bytes(data)  # as if renamed, meta still says pending
    reopened = FileStore(folder, limits(), now=T0)
    again = offer(reopened, data)
    assert again.offset == len(data)
    stream = reopened.open_upload(again.token, now=T0)
    [done] = stream.receive(b"", now=T0)
    assert isinstance(done, UploadDone)


def test_a_checksum_mismatch_forgets_the_offer_and_its_bytes(store):
    data = os.urandom(100 * KiB)
    accepted = store.offer(owner="alice", offer_id="o1", name="a.bin", size=len(data),
                           sha256=sha(b"something else"), now=T0)
    [failed] = upload_all(store, accepted.token, data)
    assert failed == UploadFailed("checksum_mismatch")
    assert list(store.folder.iterdir()) == []
    assert store.get(accepted.file.file) is None and store.held_by("alice") == 0
    with pytest.raises(FileError) as gone:
        store.open_upload(accepted.token, now=T0)
    assert gone.value.code == "no_such_file"


def test_unfinished_uploads_expire_after_24_hours_of_nothing(tmp_path):
    store = FileStore(tmp_path / "f", limits(), now=T0)
    data = os.urandom(10_000)
    accepted = offer(store, data)
    stream = store.open_upload(accepted.token, now=T0)
    stream.receive(data[:5000], now=T0)
    stream.close(now=T0 + 100)
    store.expire(T0 + 100 + 24 * 3600 - 1)
    assert store.offset(accepted.file.file) == 5000
    store.expire(T0 + 100 + 24 * 3600 + 1)
    assert store.get(accepted.file.file) is None
    assert list(store.folder.iterdir()) == []
    with pytest.raises(FileError) as gone:
        store.open_upload(accepted.token, now=T0 + 100 + 24 * 3600 + 1)
    assert gone.value.code == "no_such_file"
    # A restarted host expires what expired while it was down.
    accepted = offer(store, data, offer_id="o2", now=T0)
    FileStore(tmp_path / "f", limits(), now=T0 + 25 * 3600)
    assert not (tmp_path / "f" / (accepted.file.file + ".json")).exists()


def test_download_tokens_last_ten_minutes_and_resume_within_them(store):
    data = os.urandom(50_000)
    accepted = offer(store, data)
    upload_all(store, accepted.token, data)
    ticket = store.ticket(accepted.file.file, "bob", now=T0)
    stream = store.open_download(ticket.token, 0, now=T0)
    first = stream.read_slice(0)[:20_000]
    stream.close()
    assert download_all(store, ticket.token, 20_000, now=T0 + 599) == data[20_000:]
    assert first == data[:20_000]
    with pytest.raises(FileError) as expired:
        store.open_download(ticket.token, 0, now=T0 + 600)
    assert expired.value.code == "no_such_file"
    with pytest.raises(FileError) as bad_offset:
        store.open_download(store.ticket(accepted.file.file, "bob", now=T0).token, 50_001, now=T0)
    assert bad_offset.value.code == "bad_frame"


def test_who_may_download_is_the_servers_callback(tmp_path):
    members = {"bob"}
    store = FileStore(tmp_path / "f", limits(), now=T0,
                      may_download=lambda file, who: who in members or who == file.owner)
    data = b"secret plans"
    accepted = offer(store, data, room="staff")
    upload_all(store, accepted.token, data)
    store.ticket(accepted.file.file, "bob", now=T0)
    store.ticket(accepted.file.file, "alice", now=T0)
    with pytest.raises(FileError) as stranger:
        store.ticket(accepted.file.file, "mallory", now=T0)
    assert stranger.value.code == "no_such_file"  # as for a file that does not exist
    with pytest.raises(FileError) as unknown:
        store.ticket("no-such-file-id", "bob", now=T0)
    assert unknown.value.code == "no_such_file"


def test_a_download_of_a_pending_file_is_refused(store):
    accepted = offer(store, b"half")
    with pytest.raises(FileError) as pending:
        store.ticket(accepted.file.file, "bob", now=T0)
    assert pending.value.code == "no_such_file"


HOSTILE_NAMES = [
    ("parent traversal", "../../x"),
    ("windows drive", "C:\\x"),
    ("NUL byte", "a\0b.txt"),
    ("right-to-left override", "invoice\u202etxt.exe"),
    ("256 characters", "a" * 256),
    ("empty", ""),
    ("dot", "."),
    ("dot dot", ".."),
    ("newline", "a\nb"),
    ("slash", "a/b"),
    ("lone surrogate", "a\ud800b"),
    ("zero width joiner", "a\u200db"),
]


@pytest.mark.parametrize(("name",), [(n,) for _, n in HOSTILE_NAMES],
                         ids=[label for label, _ in HOSTILE_NAMES])
def test_hostile_names_are_refused_with_invalid_name(store, name):
    with pytest.raises(FileError) as refused:
        offer(store, b"x", name=name)
    assert refused.value.code == "invalid_name"


@pytest.mark.parametrize("name", ["con", "CON.txt", "a" * 255, "ünïcødé ✓.png", "..x", "x..",
                                  "nul", ":colon:", "ファイル.txt"])
def test_allowed_names_never_become_paths(tmp_path, name):
    folder = tmp_path / "files"
    store = FileStore(folder, limits(), now=T0)
    data = b"content of " + name.encode()
    accepted = offer(store, data, name=name)
    upload_all(store, accepted.token, data)
    check_name(name)
    everything = {p.resolve() for p in tmp_path.rglob("*")}
    assert everything == {folder.resolve(), (folder / accepted.file.file).resolve(),
                          (folder / (accepted.file.file + ".json")).resolve()}
    assert store.get(accepted.file.file).name == name


def test_bad_sizes_and_hashes_are_bad_frames(store):
    for size, digest in ((-1, "0" * 64), (True, "0" * 64), (1.5, "0" * 64), (10, "xyz"),
                         (10, "0" * 63)):
        with pytest.raises(FileError) as bad:
            store.offer(owner="a", offer_id="o", name="n", size=size, sha256=digest, now=T0)
        assert bad.value.code == "bad_frame"


def test_a_file_for_a_room_and_a_person_at_once_is_a_bad_frame(store):
    with pytest.raises(FileError) as bad:
        offer(store, b"x", room="lobby", to="bob")
    assert bad.value.code == "bad_frame"


def test_the_same_id_with_another_file_is_a_bad_frame(store):
    offer(store, b"one")
    with pytest.raises(FileError) as bad:
        offer(store, b"two")
    assert bad.value.code == "bad_frame"


def test_the_host_total_evicts_the_oldest_files_and_marks_them_gone(tmp_path):
    store = FileStore(tmp_path / "f", limits(max_total=3000), now=T0)
    ids = []
    for n in range(3):
        data = bytes([n]) * 1000
        accepted = offer(store, data, offer_id=f"o{n}", now=T0 + n)
        upload_all(store, accepted.token, data, now=T0 + n)
        ids.append(accepted.file.file)
        ticket = store.ticket(ids[0], "bob", now=T0 + n)
    newest = offer(store, b"z" * 1500, offer_id="big", now=T0 + 10)
    assert [f.file for f in newest.evicted] == ids[:2]
    assert [store.get(i).state for i in ids] == ["gone", "gone", "done"]
    assert not store.path(ids[0]).exists()
    with pytest.raises(FileError) as gone:
        store.ticket(ids[0], "bob", now=T0 + 10)
    assert gone.value.code == "no_such_file"
    with pytest.raises(FileError) as gone_download:  # a ticket issued before: gone too
        store.open_download(ticket.token, 0, now=T0 + 10)
    assert gone_download.value.code == "no_such_file"
    # Gone survives a restart, and a file larger than the whole cap is too large.
    reopened = FileStore(tmp_path / "f", limits(max_total=3000), now=T0 + 20)
    assert reopened.get(ids[0]).state == "gone"
    with pytest.raises(FileError) as too_large:
        offer(reopened, b"q" * 3001, offer_id="huge", now=T0 + 20)
    assert too_large.value.code == "file_too_large"


def test_a_deleted_file_is_gone_and_its_bytes_leave(store):
    data = b"bytes to delete"
    accepted = offer(store, data)
    upload_all(store, accepted.token, data)
    store.delete(accepted.file.file)
    assert store.get(accepted.file.file).state == "gone"
    assert not store.path(accepted.file.file).exists()
    assert store.held_by("alice") == 0


def test_a_download_under_way_survives_its_file_being_evicted(store):
    data = os.urandom(600 * KiB)
    accepted = offer(store, data)
    upload_all(store, accepted.token, data)
    stream = store.open_download(store.ticket(accepted.file.file, "b", now=T0).token, 0, now=T0)
    head = stream.read_slice(0)
    store.delete(accepted.file.file)
    assert head + b"".join(stream.slices()) == data
    stream.close()


def test_a_reader_that_stops_reading_gets_nothing_past_the_window(store):
    data = os.urandom(4 * MiB)
    accepted = offer(store, data)
    upload_all(store, accepted.token, data)
    ticket = store.ticket(accepted.file.file, "bob", now=T0)
    stream: DownloadStream = store.open_download(ticket.token, 0, now=T0, window=1 * MiB,
                                                 slice_size=256 * KiB)
    queued = 0
    while (chunk := stream.read_slice(queued)) is not None:  # nobody drains the socket
        queued += len(chunk)
    assert queued == 1 * MiB and not stream.done
    assert stream.read_slice(queued - 100) is not None  # 100 bytes drained: 100 more
    stream.close()


def test_sendfile_arguments_walk_the_file_in_slices(store):
    data = os.urandom(700 * KiB)
    accepted = offer(store, data)
    upload_all(store, accepted.token, data)
    stream = store.open_download(store.ticket(accepted.file.file, "b", now=T0).token, 100,
                                 now=T0, slice_size=256 * KiB)
    got = bytearray()
    while (args := stream.sendfile_args()) is not None:
        fd, offset, count = args
        assert count <= 256 * KiB
        piece = os.pread(fd, count // 2 or 1, offset)  # a short send, as sockets do
        got += piece
        stream.sent(len(piece))
    assert bytes(got) == data[100:] and stream.done
    stream.close()


def test_an_offer_that_would_leave_the_disk_short_is_disk_full(small_disk):  # noqa: F811
    # The 2 MB tmpfs with a floor of 5 % (~100 KB) and 512 KB absolute.
    store = FileStore(small_disk / "files", FileLimits(min_free_bytes=512 * KiB), now=T0)
    with pytest.raises(FileError) as full:
        offer(store, b"x" * (1600 * KiB))
    assert full.value.code == "disk_full"
    accepted = offer(store, b"y" * (1000 * KiB), offer_id="fits")
    with pytest.raises(FileError) as promised:  # the first offer's bytes are promised
        offer(store, b"z" * (600 * KiB), offer_id="second")
    assert promised.value.code == "disk_full"
    assert accepted.offset == 0


def test_a_disk_that_fills_during_the_upload_stops_it_with_disk_full_and_resumes(
        small_disk):  # noqa: F811
    folder = small_disk / "files"
    store = FileStore(folder, limits(), now=T0)
    data = os.urandom(1 * MiB)
    accepted = offer(store, data)
    stream = store.open_upload(accepted.token, now=T0)
    stream.receive(data[:300_000], now=T0)
    filler = fill(small_disk)  # someone else takes every byte left
    actions = stream.receive(data[300_000:], now=T0)
    assert actions == [UploadFailed("disk_full")]
    stream.close(now=T0)
    held = store.offset(accepted.file.file)
    assert 300_000 <= held < len(data)
    filler.unlink()
    again = offer(store, data)
    assert again.offset == held
    [done] = upload_all(store, again.token, data)
    assert isinstance(done, UploadDone)
    assert store.path(accepted.file.file).read_bytes() == data


def test_quota_on_a_small_disk_refuses_before_filling_it(small_disk):  # noqa: F811
    store = FileStore(small_disk / "files", limits(quota_per_owner=1 * MiB), now=T0)
    data = os.urandom(700 * KiB)
    accepted = offer(store, data)
    upload_all(store, accepted.token, data)
    with pytest.raises(FileError) as quota:
        offer(store, data, offer_id="again")
    assert quota.value.code == "quota_exceeded"
    assert store.path(accepted.file.file).read_bytes() == data


def test_hash_behind_a_worker_thread_gives_the_same_outcomes(store):
    """The hash read back by a worker thread, as the glue may run it: same file,
    same refusal of a wrong hash, same resume."""
    import threading

    def upload_with_worker(token: str, data: bytes, cut: int | None = None) -> list:
        stream = store.open_upload(token, now=T0, hash_behind=True)
        stop = threading.Event()

        def hash_worker() -> None:
            while not stop.is_set():
                if stream.rehash(256 * KiB):
                    stop.wait(0.001)

        worker = threading.Thread(target=hash_worker)
        worker.start()
        actions: list = []
        try:
            end = len(data) if cut is None else cut
            for start in range(stream.offset, end, 64 * KiB):
                actions = stream.receive(data[start:min(start + 64 * KiB, end)], now=T0)
                if actions:
                    break
        finally:
            stop.set()
            worker.join()
            stream.close(now=T0)
        return actions

    data = os.urandom(3 * MiB + 5)
    accepted = offer(store, data)
    assert upload_with_worker(accepted.token, data, cut=1 * MiB + 3) == []
    again = offer(store, data)
    assert again.offset == 1 * MiB + 3
    [done] = upload_with_worker(again.token, data)
    assert isinstance(done, UploadDone)
    assert store.path(done.file.file).read_bytes() == data

    wrong = store.offer(owner="alice", offer_id="wrong", name="w.bin", size=len(data),
                        sha256=sha(data[::-1]), now=T0)
    assert upload_with_worker(wrong.token, data) == [UploadFailed("checksum_mismatch")]
    assert store.get(wrong.file.file) is None
