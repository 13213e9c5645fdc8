"""What hostile peers cost a ``qtchat serve``: memory under TLS readers that never
read, and CPU at the descriptor limit, each beside a yardstick from the same run.

1. **TLS non-readers.** ``qtchat serve --tls`` with 50 TLS clients in ``lobby`` and a
   poster sending 2,000-character messages at a steady rate. The server's resident
   size (VmRSS) is sampled every second, first with 50 clients that read everything
   (the yardstick), then with 50 that registered and then stopped reading (small
   receive window). Bounded: each non-reader is cut off at the 1 MiB send-queue cap.
2. **Descriptor limit.** ``qtchat serve`` under ``RLIMIT_NOFILE`` = ``--fd-limit``
   (soft and hard), filled with registered clients until its descriptor table is
   full, then 20 more connecting (they wait in the backlog). Its CPU (utime+stime
   from /proc) over 3 s, beside the same server idle before it was filled; then one
   client closes and the test that a waiting one is let in is repeated here.

``--before`` also runs both against the qtchat installed in the environment (the
main checkout: an earlier commit's figures). Loopback only, bounded in time.

    .venv/bin/python benchmarks/limits_bench.py [--seconds 12] [--fd-limit 256] [--before]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVING = re.compile(r'^qtchat: serving ".*" on (?P<host>[^\s]+):(?P<port>\d+)$')
CLIENTS = 50
TEXT = "m" * 2000


def _frame(frame: dict) -> bytes:
    return json.dumps(frame, separators=(",", ":")).encode() + b"\n"


class Server:
    """``qtchat serve`` in a child process; ``this_tree`` picks this checkout's qtchat."""

    def __init__(self, data_dir: str, *args: str, fd_limit: int | None = None,
                 this_tree: bool = True) -> None:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
        if this_tree:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                               env.get("PYTHONPATH")]))

        def limit() -> None:
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        argv = [sys.executable, "-c", "import sys; from qtchat.cli import main; sys.exit(main())",
                "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", data_dir,
                "--no-announce", "--rate-limit", "0", "--register-timeout", "120",
                "--idle-timeout", "120", *args]
        # Not from this directory: "-c" puts the working directory first on sys.path.
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env, preexec_fn=limit, cwd=data_dir)
        line = self.process.stdout.readline().strip()
        match = SERVING.match(line)
        if match is None:
            self.process.kill()
            raise SystemExit(f"no serving line: {line!r} {self.process.stderr.read()}")
        self.port = int(match["port"])
        self.pid = self.process.pid

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_percent(self, seconds: float) -> float:
        before, start = self.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        return 100 * (self.cpu_seconds() - before) / (time.monotonic() - start)

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> str:
        self.process.terminate()
        try:
            _out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, err = self.process.communicate()
        return err


# --- 1. TLS non-readers ------------------------------------------------------------------

async def _tls_client(port: int, name: str, *, small_window: bool = False):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a local benchmark: no pinning needed
    sock = socket.socket()
    if small_window:  # before connect, so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname="qtchat", limit=4096 if small_window else 1 << 16)
    writer.write(_frame({"type": "register", "name": name, "protocol": 1}))
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError(f"{name}: closed before registered")
        if json.loads(line)["type"] == "registered":
            return reader, writer


async def _drain(reader: asyncio.StreamReader, counts: dict[str, int]) -> None:
    try:
        while line := await reader.readline():
            frame = json.loads(line)
            kind = frame["type"]
            if kind == "user_left" and frame.get("reason") == "timeout":
                counts["cut off"] = counts.get("cut off", 0) + 1
            counts[kind] = counts.get(kind, 0) + 1
    except (ConnectionError, ssl.SSLError, ValueError):
        pass


async def _tls_phase(server: Server, readers_read: bool, seconds: float,
                     prefix: str) -> tuple[list[float], dict[str, int]]:
    counts: dict[str, int] = {}
    poster_reader, poster = await _tls_client(server.port, f"{prefix}poster")
    tasks = [asyncio.create_task(_drain(poster_reader, counts))]
    clients = [await _tls_client(server.port, f"{prefix}{i:03d}", small_window=not readers_read)
               for i in range(CLIENTS)]
    if readers_read:
        tasks += [asyncio.create_task(_drain(r, {})) for r, _w in clients]
    samples = []
    start = time.monotonic()
    next_sample = start
    sent = 0
    while time.monotonic() - start < seconds:
        poster.write(_frame({"type": "broadcast", "text": TEXT}))
        sent += 1
        if sent % 10 == 0:
            await poster.drain()
        now = time.monotonic()
        if now >= next_sample:
            samples.append(server.rss_mb())
            next_sample += 1.0
        await asyncio.sleep(0.005)  # ~150 messages/s: 300 KB/s to every recipient
    samples.append(server.rss_mb())
    counts["sent"] = sent
    for _reader, writer in [*clients, (poster_reader, poster)]:
        writer.transport.abort()
    await asyncio.sleep(0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples, counts


def tls_non_readers(seconds: float, this_tree: bool) -> None:
    label = "this tree" if this_tree else "installed qtchat (before)"
    with tempfile.TemporaryDirectory() as data:
        server = Server(data, "--tls", this_tree=this_tree)
        server.process.stdout.readline()  # the fingerprint line
        idle = server.rss_mb()
        reading, _ = asyncio.run(_tls_phase(server, True, seconds, "r"))
        stuck, counts = asyncio.run(_tls_phase(server, False, seconds, "s"))
        err = server.stop()
    print(f"1. [{label}] server RSS with {CLIENTS} TLS clients and a poster "
          f"({len(TEXT):,}-character messages), MB, one sample a second:")
    print(f"   idle before: {idle:.1f}")
    print("   yardstick, reading clients: " + " ".join(f"{v:.0f}" for v in reading))
    print("   clients that never read:    " + " ".join(f"{v:.0f}" for v in stuck))
    print(f"   peak {max(stuck):.0f} MB with non-readers vs {max(reading):.0f} MB with readers "
          f"(ratio {max(stuck) / max(reading):.2f}); last {stuck[-1]:.0f} vs "
          f"{reading[-1]:.0f}; non-readers cut off: {counts.get('cut off', 0)}/{CLIENTS}; "
          f"posted {counts['sent']}")
    if "Traceback" in err:
        print("   server stderr:", err[-2000:])


# --- 2. the descriptor limit -------------------------------------------------------------

def _register(port: int, name: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(_frame({"type": "register", "name": name, "protocol": 1}))
    buffer = b""
    while b'"registered"' not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"{name}: closed before registered")
        buffer += chunk
    return sock


def descriptor_limit(fd_limit: int, this_tree: bool) -> None:
    label = "this tree" if this_tree else "installed qtchat (before)"
    with tempfile.TemporaryDirectory() as data:
        server = Server(data, fd_limit=fd_limit, this_tree=this_tree)
        first = _register(server.port, "first")
        time.sleep(0.5)
        idle = server.cpu_percent(3.0)
        inside = [first]
        while server.open_fds() < fd_limit:
            inside.append(_register(server.port, f"in{len(inside)}"))
        waiting = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        for index, sock in enumerate(waiting):
            sock.sendall(_frame({"type": "register", "name": f"wait{index}", "protocol": 1}))
        time.sleep(0.5)
        at_limit = server.cpu_percent(3.0)
        inside.pop().close()
        waiting[0].settimeout(10.0)
        try:
            let_in = b'"registered"' in waiting[0].recv(65536)
        except OSError:
            let_in = False
        clients = len(inside) + 1
        for sock in [*inside, *waiting]:
            sock.close()
        err = server.stop()
    logged = err.count("out of file descriptors")
    print(f"2. [{label}] CPU at the descriptor limit ({fd_limit}, {clients} clients, "
          f"20 waiting), 3 s: {at_limit:.1f} %; yardstick, the same server idle: {idle:.1f} % "
          f"(difference {at_limit - idle:+.1f} points); a waiting client let in after one "
          f"closed: {'yes' if let_in else 'no'}; logged {logged}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="seconds of posting per TLS phase (default 12)")
    parser.add_argument("--fd-limit", type=int, default=256,
                        help="RLIMIT_NOFILE of the server in part 2 (default 256)")
    parser.add_argument("--before", action="store_true",
                        help="also run both against the qtchat installed in the environment")
    parser.add_argument("--only", choices=("tls", "fd"), default=None)
    args = parser.parse_args()
    if args.only in (None, "tls"):
        tls_non_readers(args.seconds, this_tree=True)
        if args.before:
            tls_non_readers(args.seconds, this_tree=False)
    if args.only in (None, "fd"):
        descriptor_limit(args.fd_limit, this_tree=True)
        if args.before:
            descriptor_limit(args.fd_limit, this_tree=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
