"""Qt objects are freed on the main thread, never by a worker thread.

CPython collects in whichever thread allocates when a threshold is crossed; a QTcpSocket
freed there leaves its notifier in the main loop, which then segfaults (the whole-suite
crash in test_server.py). ``qtchat.collector`` (installed for the suite by conftest, as
``qtchat serve`` and the app install it) keeps collection on the main thread. And a
worker thread that reports through a QObject must not hold its last reference.
"""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import threading
import weakref

from helpers import LineClient, connect_clients
from PySide6.QtCore import QObject

from qtchat import protocol as p
from qtchat.server.files import FileLimits, FileStore
from qtchat.server.transfers import _Receiver
from qtchat.worker import run_in_thread

# Enough cyclic allocations for CPython to run every generation several times over
# (thresholds 2000, 10, 10): a worker thread doing this would collect any young cycle.
CHURN = 300_000


def _churn() -> None:
    for _ in range(CHURN):
        cycle: list = []
        cycle.append(cycle)


def _churn_in_a_thread() -> None:
    thread = threading.Thread(target=_churn, name="churn")
    thread.start()
    thread.join()


def test_a_worker_threads_allocations_leave_qt_garbage_to_the_main_thread(qtbot):
    freed_in: list[str] = []
    holder = QObject()
    holder.me = holder  # a cycle: only the collector frees it
    weakref.finalize(holder, lambda: freed_in.append(threading.current_thread().name))
    del holder
    _churn_in_a_thread()
    assert freed_in == []  # the worker thread's collections left it alone
    qtbot.waitUntil(lambda: bool(freed_in))  # the main thread's next tick frees it
    assert freed_in == [threading.main_thread().name]


def test_a_connected_socket_in_a_cycle_survives_a_worker_threads_collections(qtbot, server):
    """What the suite hit: an earlier test's client socket, still connected, left in a
    cycle; a thread's collection freed it and the main loop segfaulted on its notifier
    the next time data came for it."""
    speaker, listener = connect_clients(qtbot, server.port, 2)
    gone = LineClient(qtbot, server.port)
    assert gone.register()["type"] == "registered"
    gone.me = gone
    del gone
    _churn_in_a_thread()
    speaker.send({"type": "broadcast", "text": "still here"})  # data for the lost socket too
    assert listener.wait_for("broadcast")["text"] == "still here"
    assert speaker.wait_for("broadcast")["text"] == "still here"
    listener.sync()  # a few more passes of the loop with the lost socket readable


def test_an_upload_thread_never_holds_the_last_reference_to_its_receiver(qtbot, tmp_path):
    """The Transfer can be closed and collected while its receiver's thread still runs;
    the thread's reference was then the last, and the receiver was deleted on that
    thread while the loop delivered its queued ``ended`` (a segfault now and then): the
    receiver lives until its ``ended`` is handled, on the loop's thread."""
    data = os.urandom(256 * 1024)
    store = FileStore(tmp_path / "files", FileLimits(min_free_bytes=0, min_free_ratio=0.0),
                      now=0.0)
    accepted = store.offer(owner="alice", offer_id="o1", name="a.bin", size=len(data),
                           sha256=hashlib.sha256(data).hexdigest(), now=0.0)
    stream = store.open_upload(accepted.token, now=0.0, hash_behind=True)
    host_end, sender = socket.socketpair()
    outcomes: list[object] = []
    freed_in: list[str] = []
    receiver = _Receiver(stream, host_end.fileno(), b"", lambda _now: None, outcomes.append,
                         store.folder / f"{accepted.file}.part")
    weakref.finalize(receiver, lambda: freed_in.append(threading.current_thread().name))
    receiver.start()
    del receiver  # as a closed Transfer lets go, while the thread waits for bytes
    sender.sendall(data)
    qtbot.waitUntil(lambda: bool(freed_in))
    assert freed_in == [threading.main_thread().name]
    assert outcomes == ["complete"]  # (deleted on the thread, its ``ended`` was lost too)
    stream.close(now=0.0)
    sender.close()
    host_end.close()


def test_an_upload_sender_let_go_while_its_thread_runs_is_freed_on_the_main_thread(
        qtbot, tmp_path):
    """The window's plain upload: its Upload goes with its client while the sender's
    thread still sends; the sender lives until its end is handled on the main thread."""
    from qtchat.client.files import _Sender

    source = tmp_path / "film.bin"
    source.write_bytes(os.urandom(512 * 1024))
    app_end, host_end = socket.socketpair()
    app_end.setblocking(False)
    freed_in: list[str] = []
    ends: list[object] = []
    sender = _Sender(app_end.fileno(), source, 0, source.stat().st_size)
    sender.finished.connect(ends.append)
    sender.seen(source.stat().st_size)  # nothing holds it back
    weakref.finalize(sender, lambda: freed_in.append(threading.current_thread().name))
    sender.start()
    del sender
    received = 0
    while received < source.stat().st_size:
        received += len(host_end.recv(1 << 20))
    qtbot.waitUntil(lambda: bool(freed_in))
    assert freed_in == [threading.main_thread().name]
    assert ends == [None]  # every byte went out, and that was said
    app_end.close()
    host_end.close()


def test_a_worker_threads_result_reaches_the_main_thread_and_its_relay_dies_there(qtbot):
    """``run_in_thread`` (picture previews, the client's file hashing): the caller keeps
    nothing, the result still arrives, on the main thread, and the relay the worker
    emitted on is freed there, after the result (never by the worker)."""
    got: list[tuple[str, str]] = []
    freed_in: list[str] = []
    gate = threading.Event()

    def work() -> str:
        gate.wait(10)
        return "sha"

    relay = run_in_thread(work, lambda r: got.append((r, threading.current_thread().name)))
    weakref.finalize(relay, lambda: freed_in.append(threading.current_thread().name))
    del relay
    gate.set()  # only now: the caller let go first, as send_file does
    qtbot.waitUntil(lambda: bool(freed_in))
    assert got == [("sha", threading.main_thread().name)]
    assert freed_in == [threading.main_thread().name]


def test_a_result_for_an_owner_deleted_meanwhile_is_dropped(qtbot):
    """The window closed (its FilesGlue deleted) while its picture's preview was being
    made: nothing is delivered to the deleted object, and nothing fails."""
    owner = QObject()
    got: list[object] = []
    gate = threading.Event()
    relay = run_in_thread(lambda: gate.wait(10), got.append, owner=owner)
    with qtbot.waitSignal(owner.destroyed):
        owner.deleteLater()
    with qtbot.waitSignal(relay.done):
        gate.set()
    assert got == []


class _Local:
    """Something a caller of the decoder holds (a socket, in the server's slot)."""


def test_a_refused_line_does_not_keep_the_callers_frames_alive():
    """The decoder hands refused lines on as exceptions; with their tracebacks those
    held the decoder's frame, which holds them: a cycle through every caller's frame
    (in test_server.py, the test's own frame with its still-connected sockets), freed
    only by the cycle collector, whichever thread ran it."""
    decoder = p.FrameDecoder(parse=p.parse_client_frame)

    def caller() -> tuple[weakref.ref, list]:
        held = _Local()
        items = decoder.feed(b'{"type":"register","name":"p\\u0430ypal","protocol":1}\n'
                             b'{"type":"broadcast","text":5}\n')
        return weakref.ref(held), items

    was_enabled = gc.isenabled()
    gc.disable()  # only reference counting: what a cycle keeps stays
    try:
        held, items = caller()
        assert held() is None
    finally:
        if was_enabled:
            gc.enable()
    assert [(type(item), item.code) for item in items] == [
        (p.RemoteProtocolError, "invalid_name"), (p.RemoteProtocolError, "bad_frame")]
