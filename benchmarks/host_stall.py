#!/usr/bin/env python3
"""How long the host's own window stalls while its room is busy.

Opens the real host window (offscreen) in this process through ``AppController.host``,
then a child process connects N raw-socket clients (plain protocol-1 frames over
127.0.0.1), has them join a room of their own, post P messages each all at once, then
drop and resume all at once (replaying what they missed). Meanwhile a 5 ms QTimer in
the GUI thread records the longest gap between its ticks: the window's longest stall.

Yardstick, same run: the same timer's longest gap with the window idle and no load.

The qtchat imported is whatever is first on sys.path, so the same script measures the
server in the GUI thread (an older tree), in a thread of its own (80c8bc6) and in a
``qtchat serve`` child process (now)::

    git archive 80c8bc6 | tar -x -C /tmp/before
    QT_QPA_PLATFORM=offscreen PYTHONPATH=/tmp/before python benchmarks/host_stall.py
    QT_QPA_PLATFORM=offscreen PYTHONPATH=. python benchmarks/host_stall.py

``--rounds N`` repeats the loaded part N times in one run (a new load each time; the
idle yardstick is measured before each), printing every round and the worst.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 100.0


# --- the load (child process) ------------------------------------------------------------


def _send(sock: socket.socket, frame: dict) -> None:
    sock.setblocking(True)
    sock.sendall(json.dumps(frame).encode() + b"\n")
    sock.setblocking(False)


def _connect_all(port: int, names: list[str], resume: dict[str, tuple[str, int]]
                 ) -> dict[int, tuple[socket.socket, str]]:
    conns = {}
    for name in names:
        sock = socket.create_connection(("127.0.0.1", port))
        frame: dict = {"type": "register", "name": name, "protocol": 1}
        if name in resume:
            frame["resume"], frame["since"] = resume[name]
        _send(sock, frame)
        conns[sock.fileno()] = (sock, name)
    return conns


def _pump(conns, until, limit_s: float, buffers: dict[int, bytes], on_frame) -> None:
    """Read every socket until ``until()`` holds (or the time limit)."""
    poller = select.epoll()
    for fd in conns:
        poller.register(fd, select.EPOLLIN)
    deadline = time.monotonic() + limit_s
    while not until() and time.monotonic() < deadline:
        for fd, _ in poller.poll(0.2):
            sock, name = conns[fd]
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                poller.unregister(fd)
                continue
            data = buffers.get(fd, b"") + data
            *lines, buffers[fd] = data.split(b"\n")
            if on_frame is not None:
                for line in lines:
                    if line.startswith(b'{"type":"registered"') or b'"registered"' in line[:40]:
                        on_frame(name, json.loads(line))
    poller.close()


def run_load(port: int, n: int, posts: int, prefix: str = "") -> None:
    names = [f"{prefix}load{i}" for i in range(n)]
    registered: dict[str, tuple[str, int]] = {}

    def on_frame(name: str, frame: dict) -> None:
        if frame.get("type") == "registered":
            registered[name] = (frame["session"], 0)

    conns = _connect_all(port, names, {})
    for sock, _ in conns.values():
        _send(sock, {"type": "join", "room": "load"})
    _pump(conns, lambda: len(registered) == n, 30, {}, on_frame)
    print("ready", len(registered), flush=True)
    sys.stdin.readline()  # go
    started = time.monotonic()
    for sock, name in conns.values():  # everyone posts at once
        for k in range(posts):
            _send(sock, {"type": "broadcast", "room": "load", "text": f"{name} says {k}"})
    quiet = [time.monotonic()]
    _pump(conns, lambda: time.monotonic() - quiet[0] > 1.0, 2, {}, None)
    for sock, _ in conns.values():  # all drop at once ...
        sock.close()
    resumed: dict[str, tuple[str, int]] = {}
    resume_at = time.monotonic() - started
    again = _connect_all(port, names, registered)  # ... and resume at once (replay from 0)
    _pump(again, lambda: len(resumed) == n, 30, {},
          lambda name, frame: resumed.__setitem__(name, frame))
    _pump(again, lambda: False, 1.5, {}, None)  # the replays arrive
    for sock, _ in again.values():
        sock.close()
    print("done", len(resumed), f"resume at {resume_at:.2f} s, end at "
          f"{time.monotonic() - started:.2f} s", flush=True)


# --- the window (this process) -----------------------------------------------------------


def run_window(args: argparse.Namespace) -> None:
    scratch = tempfile.TemporaryDirectory(prefix="qtchat-host-stall-")
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, scratch.name)
    os.environ["XDG_DATA_HOME"] = scratch.name
    app = QApplication.instance() or QApplication(sys.argv[:1])

    import qtchat
    from qtchat.gui.app import AppController
    from qtchat.gui.start_dialog import HostChoice

    def spin(until, limit_s: float) -> None:
        loop = QEventLoop()
        deadline = time.monotonic() + limit_s
        check = QTimer()
        check.timeout.connect(lambda: (until() or time.monotonic() > deadline) and loop.quit())
        check.start(10)
        loop.exec()
        check.stop()

    controller = AppController(argparse.Namespace(
        command=None, smoke=False, startup_probe=False, no_announce=True, interfaces=None,
        data_dir=Path(scratch.name) / "host"))
    controller.host(HostChoice(name="Host", room_name="Stall", port=0, password=None,
                               tls=False))
    spin(lambda: controller.window is not None, 10)
    if controller.window is None:
        sys.exit("the host window did not open")
    hosted = controller.host_runtime.server
    if hasattr(hosted, "pid"):
        where = f"in a child process (pid {hosted.pid})"
    elif hasattr(hosted, "server_object"):
        where = "in its own thread"
    else:
        where = "in the GUI thread"
    print(f"qtchat from {Path(qtchat.__file__).parent.parent}; server {where}", flush=True)
    # Each round's people have names of their own: the last round's are still held.
    results = [_measure(args, hosted.port, spin, f"r{k}") for k in range(args.rounds)]
    window = controller.window
    window.closedByUser.disconnect()
    window._force_close = True
    window.close()
    controller.release_session()
    runtime = controller.host_runtime
    runtime.shutdown()
    stop = getattr(runtime.server, "wait_stopped", None) or runtime.server.close_store
    stop()
    app.processEvents()
    if len(results) > 1:
        worst = max(loaded for _idle, loaded in results)
        print(f"worst of {len(results)} rounds: {worst:.1f} ms; target ≤ {TARGET_MS:.0f} ms: "
              f"{'met' if worst <= TARGET_MS else 'NOT met'}; longest gaps "
              + ", ".join(f"{loaded:.1f} ({idle:.1f} idle)" for idle, loaded in results))
    scratch.cleanup()


def _measure(args: argparse.Namespace, port: int, spin, prefix: str) -> tuple[float, float]:
    """One round: the idle yardstick, then the load; prints and returns both (ms)."""
    from PySide6.QtCore import QTimer

    gaps: list[float] = []
    busy: list[float] = []  # CPU time the GUI thread itself ran during each gap
    stamps: list[float] = []
    last = [time.perf_counter()]
    last_cpu = [time.thread_time()]

    def tick() -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        gaps.append((now - last[0]) * 1000)
        busy.append((cpu - last_cpu[0]) * 1000)
        stamps.append(now)
        last[0], last_cpu[0] = now, cpu

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    last[0] = time.perf_counter()
    timer.start()
    spin(lambda: False, args.idle)
    idle = max(gaps)
    gaps.clear()

    env = dict(os.environ)
    child = subprocess.Popen(
        [sys.executable, __file__, "--load", str(port), "-n", str(args.clients),
         "--posts", str(args.posts), "--prefix", prefix],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []

    def child_said(word: str) -> bool:
        while select.select([child.stdout], [], [], 0)[0]:
            line = child.stdout.readline()
            if not line:
                return True
            lines.append(line.strip())
        return any(line.startswith(word) for line in lines)

    spin(lambda: child_said("ready"), 60)
    gaps.clear()
    busy.clear()
    stamps.clear()
    last[0] = go = time.perf_counter()
    last_cpu[0] = time.thread_time()
    child.stdin.write("go\n")
    child.stdin.flush()
    spin(lambda: child_said("done"), 90)
    loaded = max(gaps) if gaps else float("nan")
    ticks = sorted(gaps)
    p99 = ticks[int(len(ticks) * 0.99)] if ticks else float("nan")
    child.wait(10)
    worst = sorted(range(len(gaps)), key=gaps.__getitem__)[-3:]
    when = ", ".join(f"{gaps[i]:.0f} ms ({busy[i]:.0f} ms of it running) ending at "
                     f"{stamps[i] - go:.2f} s" for i in worst)
    timer.stop()
    print(f"load: {args.clients} clients, {args.posts} posts each, then all resume; "
          f"child said {lines}")
    print(f"idle yardstick: longest 5 ms timer gap {idle:.1f} ms")
    print(f"under load:     longest gap {loaded:.1f} ms (p99 {p99:.1f} ms, {len(gaps)} ticks); "
          f"{loaded / idle:.1f}× idle; target ≤ {TARGET_MS:.0f} ms: "
          f"{'met' if loaded <= TARGET_MS else 'NOT met'}")
    print(f"longest gaps: {when}")
    # Wall time the thread did not run was spent waiting for a core (or the GIL): the
    # longest stretch it ran is the window's own work, whatever else the machine does.
    print(f"the GUI thread's longest run between two ticks: {max(busy, default=0):.1f} ms",
          flush=True)
    return idle, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("-n", "--clients", type=int, default=200)
    parser.add_argument("--posts", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle yardstick")
    parser.add_argument("--rounds", type=int, default=1, help="loaded rounds in this run")
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(args.load, args.clients, args.posts, args.prefix)
    else:
        run_window(args)


if __name__ == "__main__":
    main()
