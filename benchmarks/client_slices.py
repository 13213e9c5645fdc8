"""How long a ChatClient freezes its event loop while 20,000 messages arrive at full speed.

A real server (``qtchat serve`` in a child process, rate limit off) holds 20,000
messages a session missed; the ChatClient resumes that session with ``since`` = 0
and the server replays them all as fast as the socket drains. A 1 ms repeating
QTimer in the client's process records the gaps between its turns: the longest
gap is the longest the window could not repaint.

Yardsticks from the same run, on the same machine at the same moment:
- the longest gap of the same timer over an idle second (what the loop does anyway);
- ``json.loads`` of the same 20,000 lines, all at once (the plainest decode there is:
  a client that handles a whole burst in one pass stalls at least this long).

``--compare REV`` runs the same measurement in a child process against the qtchat
package of git revision REV (e.g. the commit before the change) and prints both.

``--busy S`` blocks the client's loop for S seconds once it is registered, so the
replay piles up in the socket (a laptop waking up, an app that was busy) and is
there all at once: a client that handles all it reads in one pass freezes then.

Run (from the repository root):
``.venv/bin/python benchmarks/client_slices.py --compare 13a3a12 [--busy 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(python: str, tree: Path, data_dir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [python, "-m", "qtchat", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir), "--rate-limit", "0", "--no-announce",
         "--server-name", "bench", "--history-retention", "100000"],
        cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the server did not start")


class Raw:
    """A blocking socket speaking frames: enough to register and to post fast."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def send(self, frame: dict) -> None:
        self.sock.sendall(json.dumps(frame).encode() + b"\n")

    def lines(self) -> list[dict]:
        data = self.sock.recv(1 << 20)
        if not data:
            raise SystemExit("the server closed the connection")
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def until(self, kind: str) -> dict:
        while True:
            for frame in self.lines():
                if frame["type"] == kind:
                    return frame


def missed_messages(port: int, count: int) -> str:
    """Register "reader", drop it without a word (its session is held), post ``count``
    messages as "writer"; the reader's session secret."""
    reader = Raw(port)
    reader.send({"type": "register", "name": "reader", "protocol": 1})
    session = reader.until("registered")["session"]
    reader.sock.close()  # no bye: the session is held for the resume grace
    writer = Raw(port)
    writer.send({"type": "register", "name": "writer", "protocol": 1})
    writer.until("registered")
    batch, echoed, sent = 500, 0, 0
    while sent < count:
        for _ in range(min(batch, count - sent)):
            sent += 1
            writer.send({"type": "broadcast", "text": f"message {sent} " + "x" * 60})
        while echoed < sent:  # read the echoes, or the server resets a slow reader
            echoed += sum(1 for frame in writer.lines() if frame["type"] == "broadcast")
    writer.send({"type": "bye"})
    writer.sock.close()
    return session


def measure(count: int, busy: float = 0.0) -> dict[str, float]:
    """In this process: the qtchat on sys.path is the one measured."""
    from PySide6.QtCore import QCoreApplication, QElapsedTimer, QTimer

    from qtchat.client.chat_client import ChatClient, Endpoint

    app = QCoreApplication.instance() or QCoreApplication([])
    with tempfile.TemporaryDirectory() as data:
        server, port = start_server(sys.executable, Path.cwd(), Path(data))
        try:
            session = missed_messages(port, count)
            clock = QElapsedTimer()
            clock.start()
            gaps: list[float] = []
            last = [clock.nsecsElapsed()]

            def tick() -> None:
                now = clock.nsecsElapsed()
                gaps.append((now - last[0]) / 1e6)
                last[0] = now

            timer = QTimer()
            timer.setInterval(1)
            timer.timeout.connect(tick)

            # Yardstick 1: the same timer over an idle second.
            timer.start()
            idle_end = time.perf_counter() + 1.0
            while time.perf_counter() < idle_end:
                app.processEvents()
                time.sleep(0.0005)
            idle_gap = max(gaps)
            gaps.clear()

            client = ChatClient(reconnect=False, keepalive=0)
            received: list[object] = []  # a Message (a dict before typed frames, --compare)
            client.messageReceived.connect(received.append)
            last[0] = clock.nsecsElapsed()
            started = time.perf_counter()
            client.open(Endpoint("127.0.0.1", port), "reader", resume=(session, 0))
            if busy:
                # The app was busy (or the laptop asleep) while the replay came in: what
                # the socket holds is waiting all at once when it wakes up.
                while not client.connected and time.perf_counter() < started + 10:
                    app.processEvents()
                time.sleep(busy)
                gaps.clear()
                last[0] = clock.nsecsElapsed()
                started = time.perf_counter()
            deadline = started + 120
            while len(received) < count and time.perf_counter() < deadline:
                app.processEvents()
            elapsed = time.perf_counter() - started
            timer.stop()
            if len(received) < count:
                raise SystemExit(f"only {len(received)} of {count} messages arrived")
            stall = max(gaps)
            client.close()
            app.processEvents()
        finally:
            server.terminate()
            server.wait(10)

    # Yardstick 2: the plainest decode of the same bytes, all at once.
    lines = [json.dumps({"type": "broadcast", "seq": seq, "ts": "2026-12-03T10:00:00.000Z",
                         "from": "writer", "room": "lobby",
                         "text": f"message {seq} " + "x" * 60}).encode()
             for seq in range(1, count + 1)]
    decodes = []
    for _ in range(5):
        t0 = time.perf_counter()
        for line in lines:
            json.loads(line)
        decodes.append((time.perf_counter() - t0) * 1000)
    return {"stall_ms": stall, "idle_gap_ms": idle_gap, "decode_ms": statistics.median(decodes),
            "receive_s": elapsed, "p99_gap_ms": sorted(gaps)[int(len(gaps) * 0.99)]}


def tree_of(rev: str, into: Path) -> Path:
    """The qtchat package of git revision ``rev``, unpacked under ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "qtchat"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return into


def report(label: str, figures: dict[str, float]) -> None:
    print(f"{label:>10}: longest stall {figures['stall_ms']:7.1f} ms "
          f"({figures['stall_ms'] / figures['decode_ms']:.2f}x plain decode, "
          f"{figures['stall_ms'] / figures['idle_gap_ms']:.1f}x idle gap); "
          f"p99 gap {figures['p99_gap_ms']:.1f} ms; all received in {figures['receive_s']:.2f} s"
          f" | yardsticks: plain json.loads of the same lines {figures['decode_ms']:.1f} ms, "
          f"idle loop's longest gap {figures['idle_gap_ms']:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--compare", metavar="REV", help="also measure qtchat at git REV")
    parser.add_argument("--busy", type=float, default=0.0, metavar="S",
                        help="the client's loop is blocked S seconds after registering, "
                             "so the replay waits in the socket (default 0: read as it comes)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.messages, args.busy)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("now", ROOT)]
        if args.compare:
            runs.insert(0, (args.compare, tree_of(args.compare, Path(tmp))))
        for label, tree in runs:
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--json",
                 "--messages", str(args.messages), "--busy", str(args.busy)],
                cwd=tree, capture_output=True, text=True,
                env={**os.environ, "PYTHONPATH": str(tree)})
            if out.returncode:
                raise SystemExit(f"{label}: {out.stderr.strip()}")
            results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    how = f", the client busy for {args.busy:g} s as it starts" if args.busy else ""
    print(f"ChatClient receiving {args.messages:,} messages (a resume replay at full speed "
          f"from qtchat serve{how}):")
    for label, figures in results.items():
        report(label, figures)


if __name__ == "__main__":
    main()
