#!/usr/bin/env python3
"""Load generator for a qtchat server: fan-out throughput, latency, connect storms, memory.

It speaks the qtchat wire protocol (PROTOCOL.md, `docs/protocol.md`) from one process over
raw non-blocking TCP sockets to 127.0.0.1 only, driven by asyncio, and is built to outrun
the server it measures on a 2-core machine:

* All client sockets sit in one private ``epoll`` whose descriptor is a single reader in
  the asyncio loop. One wake-up drains every ready socket in a tight loop
  (``recv_into`` a preallocated buffer), which costs a fraction of asyncio's per-transport
  callback chain; that matters when 1,000 sockets are readable at once.
* Receivers count ``\\n`` in the received bytes and never parse JSON on the hot path.
  Latency comes from a monotonic timestamp (``~T<ns>~``) the sender puts in the text;
  only two "probe" receivers search for it (``CLOCK_MONOTONIC`` is system-wide, so the
  figures compare across processes too).
* Senders keep a bounded window of messages in flight (sent minus delivered/N), so the
  server runs at saturation without unbounded queues on either side.

Workloads:

A ``fanout``   N registered clients, S of them send M broadcasts; deliveries/s, p50/p99.
B ``latency``  one message at a time to N clients; time until the last copy arrived.
C ``storm``    N clients connect and register at once; first connect to last
               ``registered``.
D ``memory``   server RSS with 0, 200 and 1,000 idle registered clients.

The server's CPU seconds and RSS come from ``/proc/PID``; the load generator's own CPU
share is reported beside them and a run where it used about a whole core is flagged
``loadgen-bound`` (then the figure is a lower bound on the server).

Every loop is bounded in count and in time: each run has a hard timeout and the whole
invocation a time limit. Typical use (see benchmarks/README.md)::

    .venv/bin/python benchmarks/loadgen.py --all --write-readme
    .venv/bin/python benchmarks/loadgen.py --workload fanout -n 200 --repeat 3
    .venv/bin/python benchmarks/loadgen.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import errno
import ipaddress
import json
import logging
import math
import os
import platform
import random
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger("qtchat.loadgen")

REPO = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
README_BEGIN = "<!-- loadgen-results:begin -->"
README_END = "<!-- loadgen-results:end -->"

CLK_TCK = os.sysconf("SC_CLK_TCK")
RECV_SIZE = 256 * 1024
SETUP_LINE_CAP = 1 << 20  # a first frame longer than this is a server bug, not a frame
TS_RE = re.compile(rb"~T(\d+)~")
SERVING_RE = re.compile(r'^qtchat: serving "(?P<name>.*)" on (?P<host>\S+):(?P<port>\d+)\s*$')
# Letters that are not confusable with each other or with digits (no i l o m n r u v w),
# so names from two runs against one server never collide under UTS #39 skeletons.
TAG_ALPHABET = "abcdefghkpqstxyz"
EXTRA_ROUNDS = 8  # immediate re-polls after a pass that read something
LOADGEN_BOUND = 0.90  # share of one core above which the load generator was the limit
BACKLOG_READS = 4.0  # ... when its passes also found this many sockets ready on average
OTHERS_BUSY = 0.15  # cores used by other processes above which a run is marked "busy"

# Targets from the performance issue; `None` where a workload has no target for that N.
TARGET_FANOUT = {200: 2_000_000, 1000: 1_500_000}
TARGET_LATENCY_MS = {200: (0.8, 2.0)}
TARGET_STORM_S = {200: 0.05, 1000: 0.3}
TARGET_PEAK_MB_AT_200 = 60
TARGET_KB_PER_IDLE = 16
# The same targets as ratios to the plain asyncio server the issue measured (212k
# deliveries/s, 0.74 ms, 0.15 s), which hold across machines: with --reference that
# server (benchmarks/reference_server.py) runs beside qtchat, run for run.
REFERENCE_WORKLOADS = ("fanout", "latency", "storm")
TARGET_FANOUT_RATIO = {200: round(2_000_000 / 212_000, 2)}  # qtchat ÷ reference, at least
TARGET_LATENCY_RATIO = {200: round(0.8 / 0.74, 2)}  # qtchat ÷ reference p50, at most
TARGET_STORM_RATIO = {200: round(0.05 / 0.15, 2)}  # qtchat ÷ reference seconds, at most
REFERENCE_SERVER = Path(__file__).resolve().parent / "reference_server.py"

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLL_BAD = select.EPOLLERR | select.EPOLLHUP


class LoadgenError(Exception):
    """The benchmark could not run as asked (server did not start, timeout, ...)."""


# --------------------------------------------------------------------------- /proc


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, all its live threads, from /proc/PID.

    /proc/PID/task/*/schedstat counts nanoseconds; /proc/PID/stat's utime + stime only
    clock ticks (10 ms), too coarse for a 50 ms connect storm. The ticks are the fallback
    on kernels without schedstat.
    """
    try:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_bytes().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        data = Path(f"/proc/{pid}/stat").read_bytes()
        fields = data[data.rindex(b")") + 2 :].split()  # fields[0] is field 3, the state
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process in KiB, from /proc/PID/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all CPUs), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / CLK_TCK


async def wait_for_quiet(limit: float, max_wait: float) -> float:
    """Wait (at most max_wait s) until other processes use < limit cores; return the load.

    Other engineers' test suites on a shared 2-core machine halve a server's throughput;
    a run started into that measures the neighbours, not the server.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy0, wall0 = machine_busy_seconds(), time.monotonic()
        await asyncio.sleep(0.3)
        load = (machine_busy_seconds() - busy0) / (time.monotonic() - wall0)
        if load < limit or time.monotonic() >= deadline:
            if load >= limit:
                log.warning("machine still busy (%.0f %% of a core used by others); "
                            "running anyway", load * 100)
            return load
        log.info("waiting for a quiet machine: others use %.0f %% of a core", load * 100)


def other_process_ticks(exclude: set[int]) -> dict[int, int]:
    """utime + stime ticks of every user-space process but `exclude`, by pid.

    Kernel threads are left out: ksoftirqd doing loopback TCP for the benchmark is
    the benchmark's own cost, not a neighbour's.
    """
    ticks = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            data = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[1] in (b"0", b"2") or entry.name == "2":  # ppid 2: a kernel thread
            continue
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM of a process to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        log.debug("cannot reset peak RSS of %d: %s", pid, exc)
        return False
    return True


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; fail early if still below needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < needed:
        raise LoadgenError(f"need {needed} file descriptors, RLIMIT_NOFILE allows {soft}")
    return soft


def pin_cpus(enabled: bool) -> tuple[set[int], set[int]] | None:
    """Put this process on the last CPU and return (loadgen CPUs, server CPUs).

    Loopback TCP wake-ups pull the woken process onto the waker's CPU, so unpinned the
    server and the load generator often share one core of two (each then shows 50-60 %
    CPU and latency doubles). Pinned, each has its own core, and runs are repeatable.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return None
    mine, theirs = {cpus[-1]}, set(cpus[:-1])
    os.sched_setaffinity(0, mine)
    return mine, theirs


def require_loopback(host: str) -> None:
    """Refuse any target that is not on this machine's loopback (127.0.0.0/8 or ::1)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise LoadgenError(f"cannot resolve {host!r}: {exc}") from exc
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            raise LoadgenError(f"{host} ({address}) is not a loopback address; refusing")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    """A server under test: one we started (`process` set) or one already running."""

    host: str
    port: int
    pid: int | None
    process: asyncio.subprocess.Process | None = None
    data_dir: Path | None = None
    stderr_path: Path | None = None
    stdout_tail: bytearray = field(default_factory=bytearray)
    drain_task: asyncio.Task[None] | None = None
    banner: str = ""
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            return proc_cpu_seconds(self.pid)
        except OSError:
            return None

    def memory_kb(self) -> dict[str, int]:
        if self.pid is None:
            return {}
        try:
            return proc_memory_kb(self.pid)
        except OSError:
            return {}

    def alive(self) -> bool:
        return self.process is None or self.process.returncode is None

    def stderr_text(self, limit: int = 4000) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        text = self.stderr_path.read_text(errors="replace")
        return text[-limit:]


def default_server_cmd() -> list[str]:
    """`qtchat serve` from the same virtualenv as this interpreter, on a fresh data dir."""
    script = Path(sys.executable).parent / "qtchat"
    base = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from qtchat.cli import main; sys.exit(main())"]
    return [*base, "serve", "--host", "127.0.0.1", "--port", "0", "--rate-limit", "0",
            "--data-dir", "{data_dir}", "--no-announce", "--max-clients", "5000"]


async def start_server(cmd: Sequence[str], timeout: float,
                       cpus: set[int] | None = None) -> Server:
    """Start a server command and wait for its `qtchat: serving "..." on HOST:PORT` line.

    With `cpus`, the server (and every thread it makes) runs only on those CPUs.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="qtchat-bench-"))
    argv = [part.replace("{data_dir}", str(data_dir / "data")) for part in cmd]
    stderr_path = data_dir / "server.stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=stderr, start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    server = Server(host="", port=0, pid=process.pid, process=process, data_dir=data_dir,
                    stderr_path=stderr_path)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await process.stdout.readline()
                if not raw:
                    await process.wait()
                    raise LoadgenError(
                        f"server exited ({process.returncode}) before it was serving: "
                        f"{shlex.join(argv)}\n{server.stderr_text()}")
                line = raw.decode(errors="replace").rstrip("\n")
                match = SERVING_RE.match(line)
                if match:
                    break
                log.info("server stdout: %s", line)
                server.problems.append(f"stdout before the serving line: {line!r}")
    except TimeoutError:
        await stop_server(server)
        raise LoadgenError(f"server printed no serving line within {timeout:.0f} s: "
                           f"{shlex.join(argv)}\n{server.stderr_text()}") from None
    except BaseException:
        await stop_server(server)
        raise
    server.banner = line
    server.host, server.port = match["host"].strip("[]"), int(match["port"])
    require_loopback(server.host)
    server.drain_task = asyncio.create_task(_drain_stdout(server))
    log.info("started server pid %d: %s", process.pid, line)
    return server


async def _drain_stdout(server: Server) -> None:
    """Keep reading the server's stdout so it can never block on a full pipe."""
    assert server.process is not None and server.process.stdout is not None
    while chunk := await server.process.stdout.read(65536):
        server.stdout_tail += chunk
        del server.stdout_tail[:-65536]


async def stop_server(server: Server, timeout: float = 10.0) -> None:
    """SIGTERM a server we started, expect exit 0; note anything else as a problem."""
    process = server.process
    if process is None:
        return
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            server.problems.append(f"did not exit within {timeout:.0f} s of SIGTERM; killed")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    else:
        server.problems.append(f"server had already exited with {process.returncode}")
    server.exit_code = process.returncode
    if process.returncode not in (0, None) and not server.problems:
        server.problems.append(f"exit status {process.returncode} after SIGTERM")
    if server.drain_task is not None:
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(server.drain_task, 2)
    stderr = server.stderr_text()
    if stderr.strip():
        log.info("server stderr (tail):\n%s", stderr)
        if re.search(r"Traceback|ERROR|CRITICAL", stderr):
            # The line that names the exception or error says the most.
            lines = [x for x in stderr.splitlines()
                     if re.match(r"\w+(Error|Exception)\b|.*\b(ERROR|CRITICAL)\b", x)]
            server.problems.append("stderr: " + (lines or stderr.strip().splitlines())[-1])
    if server.data_dir is not None:
        shutil.rmtree(server.data_dir, ignore_errors=True)


@dataclass
class ServerSource:
    """Where servers come from: a command started afresh per run, or one running server."""

    cmd: list[str] | None
    address: tuple[str, int] | None = None
    pid: int | None = None
    reuse: bool = False
    start_timeout: float = 30.0
    cpus: set[int] | None = None
    _shared: Server | None = None
    problems: list[str] = field(default_factory=list)
    pinning: str = "not pinned"

    @contextlib.asynccontextmanager
    async def server(self) -> AsyncIterator[Server]:
        if self.address is not None:
            yield Server(host=self.address[0], port=self.address[1], pid=self.pid)
            return
        assert self.cmd is not None
        if self.reuse:
            if self._shared is None or not self._shared.alive():
                self._shared = await start_server(self.cmd, self.start_timeout, self.cpus)
            yield self._shared
            return
        server = await start_server(self.cmd, self.start_timeout, self.cpus)
        try:
            yield server
        finally:
            await stop_server(server)
            self.problems.extend(server.problems)

    async def close(self) -> None:
        if self._shared is not None:
            await stop_server(self._shared)
            self.problems.extend(self._shared.problems)
            self._shared = None


# --------------------------------------------------------------------------- clients

CONNECTING, REGISTERING, REGISTERED, FAILED, CLOSED = range(5)


class Conn:
    """One client connection. Plain slots: the hot loop touches these per read."""

    __slots__ = ("counting", "fd", "first", "index", "lines", "name", "out", "pong",
                 "pong_partial", "probe", "registered_at", "sender", "sock", "state",
                 "tail", "why")

    def __init__(self, sock: socket.socket, index: int, name: str) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.name = name
        self.state = CONNECTING
        self.counting = False  # hot mode: count newlines only
        self.probe = False  # hot mode: also read latency stamps
        self.sender = False  # hot mode: also look for errors answering our sends
        self.lines = 0
        self.out = bytearray()
        self.first = bytearray()  # the partial first frame (`registered`)
        self.tail = b""  # last bytes of the previous chunk, to find markers split by reads
        self.pong = False
        self.pong_partial = False
        self.registered_at = 0
        self.why = ""


@dataclass
class StormResult:
    """Outcome of connecting and registering a batch of clients."""

    requested: int
    registered: int
    seconds: float
    failures: dict[str, int]
    per_client_ms: list[float]


class Swarm:
    """Many client sockets in one private epoll, serviced from the asyncio loop.

    Setup (connect, register, ping barrier) parses what it must; afterwards connections
    switch to counting mode, where a read costs one `recv_into` and one `count`.
    """

    def __init__(self, host: str, port: int, tag: str) -> None:
        self.host = host
        self.port = port
        self.tag = tag
        self.loop = asyncio.get_running_loop()
        self.epoll = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.buf = bytearray(RECV_SIZE)
        self.total_lines = 0  # newlines seen by counting connections since start_counting
        self.wakes = 0  # passes that read something, and their reads (backlog indicator)
        self.reads = 0
        self.after_pass: Callable[[], None] | None = None
        self.samples: list[int] = []  # latency samples in ns from probes
        self.anomalies: dict[str, int] = {}
        self.server_info: dict[str, Any] = {}
        self._next_index = 0
        self.closing = False
        self.connect_loop_s = 0.0  # how long the last connect() loop itself took
        self._waiter: asyncio.Future[None] | None = None
        self._wait_check: Callable[[], bool] | None = None
        self.loop.add_reader(self.epoll.fileno(), self._on_ready)

    # ----- hot path

    def _on_ready(self) -> None:
        # Drain, then look again at once while reads keep coming: a round trip through
        # asyncio's own selector costs more than a second epoll_wait(0).
        for _ in range(EXTRA_ROUNDS + 1):
            reads = self._drain()
            if reads:
                self.wakes += 1
                self.reads += reads
            if self.after_pass is not None:
                self.after_pass()
            self._check_waiter()
            if not reads:
                break

    def _drain(self) -> int:
        buf = self.buf
        conns = self.conns
        lines = reads = 0
        for fd, events in self.epoll.poll(0, len(conns) + 1):
            conn = conns.get(fd)
            if conn is None:
                continue
            if events & EPOLLOUT:
                self._writable(conn)
                if conn.state >= FAILED:
                    continue
            if not events & (EPOLLIN | EPOLL_BAD):
                continue
            try:
                n = conn.sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self._lost(conn, exc)
                continue
            reads += 1
            if n == 0:
                self._lost(conn, None)
                continue
            if conn.counting:
                k = buf.count(b"\n", 0, n)
                conn.lines += k
                lines += k
                if conn.probe or conn.sender:
                    self._watch(conn, n)
            else:
                self._setup_data(conn, bytes(buf[:n]))
        self.total_lines += lines
        return reads

    def _watch(self, conn: Conn, n: int) -> None:
        buf = self.buf
        if conn.probe:
            now = time.monotonic_ns()
            self.samples.extend(now - int(stamp) for stamp in TS_RE.findall(buf, 0, n))
        if conn.sender and buf.find(b'"error"', 0, n) >= 0:
            self._note_frames(bytes(buf[:n]))

    # ----- setup path

    def _note(self, what: str, count: int = 1) -> None:
        self.anomalies[what] = self.anomalies.get(what, 0) + count

    def _note_frames(self, data: bytes) -> None:
        """Record unexpected frames (errors, byes, server pings) found in a chunk."""
        for line in data.split(b"\n"):
            if b'"error"' in line or b'"bye"' in line or b'"ping"' in line:
                try:
                    frame = json.loads(line)
                except ValueError:
                    continue  # cut by the read boundary; the count check will tell
                kind = frame.get("type")
                detail = frame.get("code") or frame.get("reason") or ""
                self._note(f"{kind} {detail}".strip())

    def _writable(self, conn: Conn) -> None:
        if conn.state == CONNECTING:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(conn, errno.errorcode.get(err, str(err)))
                return
            conn.state = REGISTERING
            frame = {"type": "register", "name": conn.name, "protocol": 1}
            self.epoll.modify(conn.fd, EPOLLIN)
            self.send(conn, json.dumps(frame).encode() + b"\n")
            return
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(conn, exc)
                return
            del conn.out[:sent]
            if not conn.out:
                self.epoll.modify(conn.fd, EPOLLIN)

    def send(self, conn: Conn, data: bytes) -> None:
        """Write now if possible; queue the rest and wait for EPOLLOUT."""
        if conn.state >= FAILED:
            return
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(conn, exc)
            return
        if sent < len(data):
            conn.out += data[sent:]
            self.epoll.modify(conn.fd, EPOLLIN | EPOLLOUT)

    def _setup_data(self, conn: Conn, data: bytes) -> None:
        if conn.state == REGISTERING:
            conn.first += data
            end = conn.first.find(b"\n")
            if end < 0:
                if len(conn.first) > SETUP_LINE_CAP:
                    self._fail(conn, "first frame longer than 1 MiB")
                return
            self._first_frame(conn, bytes(conn.first[:end]))
            data = bytes(conn.first[end + 1 :])
            conn.first = bytearray()
            if conn.state != REGISTERED or not data:
                return
        scan = conn.tail + data
        conn.tail = data[-32:]
        if conn.pong_partial and b"\n" in data:
            conn.pong, conn.pong_partial = True, False
        at = scan.rfind(b'"pong"')
        if at >= 0 and not conn.pong:
            if scan.find(b"\n", at) >= 0:
                conn.pong = True
            else:
                conn.pong_partial = True
        if b'"error"' in scan or b'"bye"' in scan or b'"ping"' in scan:
            self._note_frames(scan)

    def _first_frame(self, conn: Conn, line: bytes) -> None:
        try:
            frame = json.loads(line)
            kind = frame["type"]
        except (ValueError, KeyError, TypeError):
            self._fail(conn, f"unreadable first frame {line[:80]!r}")
            return
        if kind == "registered":
            conn.state = REGISTERED
            conn.registered_at = time.monotonic_ns()
            if not self.server_info:
                self.server_info = dict(frame.get("server") or {})
        elif kind == "error":
            self._fail(conn, f"error {frame.get('code')}")
        else:
            self._fail(conn, str(kind))

    def _fail(self, conn: Conn, why: str) -> None:
        if conn.state < FAILED:
            conn.state = FAILED
            conn.why = why
        self._close(conn)

    def _lost(self, conn: Conn, exc: OSError | None) -> None:
        if conn.state == CLOSED:
            return
        why = "closed by server" if exc is None else type(exc).__name__
        if conn.state == CONNECTING and isinstance(exc, ConnectionRefusedError):
            why = "refused"
        if conn.state in (CONNECTING, REGISTERING) or self.closing:
            self._fail(conn, why)
        else:
            self._note(f"connection lost: {why}")
            self._fail(conn, why)

    def _close(self, conn: Conn) -> None:
        with contextlib.suppress(KeyError, OSError, ValueError):
            self.epoll.unregister(conn.fd)
        self.conns.pop(conn.fd, None)
        conn.sock.close()
        if conn.state != FAILED:
            conn.state = CLOSED

    # ----- waiting

    async def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Let the loop service sockets until check() is true, for at most timeout s."""
        if check():
            return
        self._waiter = self.loop.create_future()
        self._wait_check = check
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), timeout)
        except TimeoutError:
            raise LoadgenError(f"timed out after {timeout:.1f} s waiting for {what}") from None
        finally:
            self._waiter = None
            self._wait_check = None

    def _check_waiter(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            assert self._wait_check is not None
            if self._wait_check():
                self._waiter.set_result(None)

    def poke(self) -> None:
        """Re-evaluate the waiter (after something other than a read changed state)."""
        self._check_waiter()

    # ----- phases

    async def connect(self, count: int, timeout: float) -> tuple[list[Conn], StormResult]:
        """Connect and register `count` clients all at once; time to the last `registered`."""
        batch: list[Conn] = []
        failures: dict[str, int] = {}
        start = time.monotonic_ns()
        for _ in range(count):
            index = self._next_index
            self._next_index += 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex((self.host, self.port))
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                reason = errno.errorcode.get(err, str(err))
                failures[reason] = failures.get(reason, 0) + 1
                continue
            conn = Conn(sock, index, f"u{self.tag}{index:04d}")
            self.conns[conn.fd] = conn
            self.epoll.register(conn.fd, EPOLLIN | EPOLLOUT)
            batch.append(conn)
        self.connect_loop_s = (time.monotonic_ns() - start) / 1e9

        def settled() -> bool:
            return all(c.state >= REGISTERED for c in batch)

        try:
            await self.wait_for(settled, timeout, f"{count} clients to register")
        except LoadgenError:
            for conn in batch:
                if conn.state < REGISTERED:
                    self._fail(conn, "no answer to register in time")
        registered = [c for c in batch if c.state in (REGISTERED, CLOSED) and c.registered_at]
        for conn in batch:
            if conn.state == FAILED:
                failures[conn.why] = failures.get(conn.why, 0) + 1
        last = max((c.registered_at for c in registered), default=start)
        result = StormResult(
            requested=count, registered=len(registered), seconds=(last - start) / 1e9,
            failures=failures,
            per_client_ms=[(c.registered_at - start) / 1e6 for c in registered])
        return [c for c in batch if c.state == REGISTERED], result

    async def barrier(self, conns: Iterable[Conn], timeout: float) -> None:
        """Ping every client and wait for every pong: all earlier output has arrived."""
        targets = [c for c in conns if c.state == REGISTERED]
        ping = b'{"type":"ping","token":"loadgen-barrier"}\n'
        for conn in targets:
            conn.pong = conn.pong_partial = False
            conn.counting = False
            self.send(conn, ping)
        await self.wait_for(lambda: all(c.pong or c.state != REGISTERED for c in targets),
                            timeout, "pong from every client")

    def start_counting(self, conns: Iterable[Conn]) -> None:
        for conn in conns:
            conn.counting = True
            conn.lines = 0
        self.total_lines = 0
        self.samples = []
        self.wakes = self.reads = 0

    async def close(self, timeout: float = 2.0) -> None:
        """Send `bye` to every client (so the server frees the names), then close."""
        self.closing = True
        live = [c for c in self.conns.values() if c.state == REGISTERED]
        for conn in live:
            conn.counting = True  # discard whatever still arrives
            conn.probe = conn.sender = False
            self.send(conn, b'{"type":"bye"}\n')
        with contextlib.suppress(LoadgenError):
            await self.wait_for(lambda: not self.conns, timeout, "the server to close")
        for conn in list(self.conns.values()):
            self._close(conn)
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()


def new_tag() -> str:
    return "".join(random.choice(TAG_ALPHABET) for _ in range(3))


# --------------------------------------------------------------------------- workloads


@dataclass
class RunContext:
    """What every workload run needs: the server, the limits, and CPU/RSS bookkeeping."""

    server: Server
    timeout: float


class Meter:
    """Wall time, the load generator's CPU and the server's CPU over one measured phase."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall0 = time.monotonic()
        self.self0 = time.process_time()
        self.server0 = server.cpu_seconds()
        self.exclude = {os.getpid()} | ({server.pid} if server.pid else set())
        self.others0 = other_process_ticks(self.exclude)

    def finish(self, wall: float | None = None, swarm: Swarm | None = None) -> dict[str, Any]:
        """CPU shares over the phase, and whether the load generator was the limit.

        Busy is not enough: a load generator that keeps pace with a server writing one
        socket at a time also wakes once per write. It was the limit when it was busy and
        data had piled up, i.e. a pass found several sockets ready at once.
        """
        elapsed = time.monotonic() - self.wall0
        own = time.process_time() - self.self0
        server1 = self.server.cpu_seconds()
        out: dict[str, Any] = {"wall_s": elapsed, "loadgen_cpu": own / elapsed}
        if self.server0 is not None and server1 is not None:
            out["server_cpu"] = (server1 - self.server0) / elapsed
        busy = out["loadgen_cpu"] >= LOADGEN_BOUND
        if swarm is not None and swarm.wakes:
            out["reads_per_pass"] = swarm.reads / swarm.wakes
            busy = busy and out["reads_per_pass"] >= BACKLOG_READS
        out["loadgen_bound"] = busy
        if elapsed >= 0.5:  # /proc/PID/stat counts 10 ms ticks
            others = other_process_ticks(self.exclude)
            used = sum(t - self.others0.get(pid, 0) for pid, t in others.items())
            out["other_cpu"] = used / CLK_TCK / elapsed
        if wall is not None:
            out["measured_s"] = wall
        return out


def _memory_fields(server: Server) -> dict[str, Any]:
    memory = server.memory_kb()
    return {"server_rss_kb": memory.get("VmRSS"), "server_peak_kb": memory.get("VmHWM")}


async def _setup(server: Server, n: int, timeout: float) -> tuple[Swarm, list[Conn], float]:
    swarm = Swarm(server.host, server.port, new_tag())
    conns, storm = await swarm.connect(n, timeout)
    if storm.registered < n:
        await swarm.close()
        raise LoadgenError(f"only {storm.registered} of {n} clients registered: "
                           f"{storm.failures}")
    await swarm.barrier(conns, timeout)
    return swarm, conns, storm.seconds


class FanOutDriver:
    """Keeps `window` messages in flight from S senders until M are sent or time is up."""

    def __init__(self, swarm: Swarm, senders: list[Conn], receivers: int, window: int,
                 messages: int, duration: float, text_bytes: int) -> None:
        self.swarm = swarm
        self.senders = senders
        self.receivers = receivers
        self.window = window
        self.min_batch = max(1, window // 4)
        self.limit = messages
        self.duration_ns = int(duration * 1e9)
        pad = "x" * max(0, text_bytes - 40)
        self.template = ('{"type":"broadcast","text":"~T%d~ s%d m%d ' + pad + '"}\n').encode()
        self.sent = 0
        self.sending = True
        self.started = 0
        self.finished = 0

    def start(self) -> None:
        self.started = time.monotonic_ns()
        self.swarm.after_pass = self.pump
        self.pump()

    def done(self) -> bool:
        return self.finished != 0

    def pump(self) -> None:
        delivered = self.swarm.total_lines
        if not self.sending:
            if delivered >= self.sent * self.receivers and not self.finished:
                self.finished = time.monotonic_ns()
            return
        room = self.window - (self.sent - delivered // self.receivers)
        if room < self.min_batch:
            return
        now = time.monotonic_ns()
        count = min(room, self.limit - self.sent)
        if now - self.started >= self.duration_ns:
            count = 0
        if count <= 0:
            self.sending = False
            self.pump()
            return
        senders = self.senders
        per_sender: list[list[bytes]] = [[] for _ in senders]
        template = self.template
        first = self.sent
        for seq in range(first, first + count):
            slot = seq % len(senders)
            per_sender[slot].append(template % (now, slot, seq))
        self.sent += count
        for conn, frames in zip(senders, per_sender, strict=True):
            if frames:
                self.swarm.send(conn, b"".join(frames))


async def run_fanout(ctx: RunContext, n: int, senders: int, window: int, messages: int,
                     duration: float, text_bytes: int) -> dict[str, Any]:
    """Workload A: S of N clients send; everyone gets every message; deliveries/s."""
    server = ctx.server
    if server.pid is not None and server.process is None:
        reset_peak_rss(server.pid)
    swarm, conns, setup_s = await _setup(server, n, ctx.timeout)
    try:
        senders = max(1, min(senders, n))
        for conn in conns[:senders]:
            conn.sender = True
        for conn in (conns[-1], conns[n // 2]):  # probes: read latency stamps
            conn.probe = True
        # Warm-up: a few windows' worth, drained completely, not measured.
        swarm.start_counting(conns)
        warm = FanOutDriver(swarm, conns[:senders], n, window, min(messages, window * 4),
                            duration, text_bytes)
        warm.start()
        await swarm.wait_for(warm.done, ctx.timeout, "warm-up deliveries")
        swarm.start_counting(conns)
        driver = FanOutDriver(swarm, conns[:senders], n, window, messages, duration,
                              text_bytes)
        meter = Meter(server)
        driver.start()
        timed_out = ""
        try:
            await swarm.wait_for(driver.done, duration + ctx.timeout, "all deliveries")
        except LoadgenError as exc:
            timed_out = str(exc)
            driver.finished = time.monotonic_ns()
        swarm.after_pass = None
        seconds = (driver.finished - driver.started) / 1e9
        result = meter.finish(seconds, swarm)
        expected = driver.sent * n
        delivered = swarm.total_lines
        short = sum(1 for c in conns if c.lines != driver.sent)
        samples = swarm.samples
        result.update(
            workload="fanout", n=n, senders=senders, window=window, messages=driver.sent,
            expected=expected, deliveries=delivered, rate=delivered / seconds,
            p50_ms=percentile(samples, 0.50) / 1e6 if samples else None,
            p99_ms=percentile(samples, 0.99) / 1e6 if samples else None,
            samples=len(samples), setup_s=setup_s, clients_with_wrong_count=short,
            anomalies=dict(swarm.anomalies), server_info=swarm.server_info,
            ok=delivered == expected and not timed_out and not swarm.anomalies)
        if timed_out:
            result["error"] = timed_out
        result.update(_memory_fields(server))
        return result
    finally:
        swarm.after_pass = None
        await swarm.close()


class LatencyDriver:
    """Sends one message, waits until all N copies arrived, records the time, repeats."""

    def __init__(self, swarm: Swarm, sender: Conn, receivers: int, messages: int,
                 text_bytes: int) -> None:
        self.swarm = swarm
        self.sender = sender
        self.receivers = receivers
        self.limit = messages
        pad = "x" * max(0, text_bytes - 40)
        self.template = ('{"type":"broadcast","text":"~T%d~ s0 m%d ' + pad + '"}\n').encode()
        self.sent = 0
        self.sent_at = 0
        self.latencies_ns: list[int] = []
        self.finished = False

    def start(self) -> None:
        self.swarm.after_pass = self.pump
        self._send()

    def _send(self) -> None:
        self.sent_at = time.monotonic_ns()
        self.swarm.send(self.sender, self.template % (self.sent_at, self.sent))
        self.sent += 1

    def pump(self) -> None:
        if self.finished or self.swarm.total_lines < self.sent * self.receivers:
            return
        self.latencies_ns.append(time.monotonic_ns() - self.sent_at)
        if self.sent >= self.limit:
            self.finished = True
        else:
            self._send()


async def run_latency(ctx: RunContext, n: int, messages: int, text_bytes: int
                      ) -> dict[str, Any]:
    """Workload B: one message at a time to N clients; time until its last copy arrived."""
    server = ctx.server
    swarm, conns, setup_s = await _setup(server, n, ctx.timeout)
    try:
        conns[0].sender = True
        swarm.start_counting(conns)
        warm = LatencyDriver(swarm, conns[0], n, min(20, messages), text_bytes)
        warm.start()
        await swarm.wait_for(lambda: warm.finished, ctx.timeout, "warm-up messages")
        swarm.start_counting(conns)
        driver = LatencyDriver(swarm, conns[0], n, messages, text_bytes)
        meter = Meter(server)
        driver.start()
        error = ""
        try:
            await swarm.wait_for(lambda: driver.finished, ctx.timeout, "one-at-a-time run")
        except LoadgenError as exc:
            error = str(exc)
        swarm.after_pass = None
        lat = driver.latencies_ns
        result = meter.finish(sum(lat) / 1e9, swarm)
        expected = driver.sent * n
        result.update(
            workload="latency", n=n, messages=len(lat), expected=expected,
            deliveries=swarm.total_lines,
            p50_ms=percentile(lat, 0.50) / 1e6 if lat else None,
            p99_ms=percentile(lat, 0.99) / 1e6 if lat else None,
            max_ms=max(lat) / 1e6 if lat else None, setup_s=setup_s,
            anomalies=dict(swarm.anomalies), server_info=swarm.server_info,
            ok=swarm.total_lines == expected and not error and not swarm.anomalies)
        if error:
            result["error"] = error
        result.update(_memory_fields(server))
        return result
    finally:
        swarm.after_pass = None
        await swarm.close()


async def run_storm(ctx: RunContext, n: int) -> dict[str, Any]:
    """Workload C: N clients connect and register at once."""
    server = ctx.server
    swarm = Swarm(server.host, server.port, new_tag())
    try:
        meter = Meter(server)
        _, storm = await swarm.connect(n, ctx.timeout)
        result = meter.finish(storm.seconds)
        per = storm.per_client_ms
        result.update(
            workload="storm", n=n, registered=storm.registered, seconds=storm.seconds,
            connect_loop_s=swarm.connect_loop_s,
            failures=storm.failures,
            p50_ms=percentile(per, 0.5) if per else None,
            p99_ms=percentile(per, 0.99) if per else None,
            anomalies=dict(swarm.anomalies), server_info=swarm.server_info,
            ok=storm.registered == n and not storm.failures)
        result.update(_memory_fields(server))
        return result
    finally:
        await swarm.close()


async def run_memory(ctx: RunContext, steps: Sequence[int], settle: float) -> dict[str, Any]:
    """Workload D: server RSS with 0 clients, then with each count of idle clients."""
    server = ctx.server
    if server.pid is None:
        raise LoadgenError("the memory workload needs the server's pid (--server-pid)")
    await asyncio.sleep(settle)
    baseline = server.memory_kb().get("VmRSS", 0)
    swarm = Swarm(server.host, server.port, new_tag())
    rss: dict[int, int] = {}
    failures: dict[str, int] = {}
    try:
        held: list[Conn] = []
        for total in steps:
            conns, storm = await swarm.connect(total - len(held), ctx.timeout)
            held.extend(conns)
            for why, count in storm.failures.items():
                failures[why] = failures.get(why, 0) + count
            await swarm.barrier(held, ctx.timeout)
            await asyncio.sleep(settle)
            rss[total] = server.memory_kb().get("VmRSS", 0)
        low, high = steps[0], steps[-1]
        result: dict[str, Any] = {
            "workload": "memory", "n": high, "steps": list(steps), "baseline_kb": baseline,
            "rss_kb": {str(k): v for k, v in rss.items()},
            "kb_per_client": (rss[high] - rss[low]) / (high - low) if high > low else None,
            "failures": failures, "anomalies": dict(swarm.anomalies),
            "server_info": swarm.server_info, "ok": not failures and not swarm.anomalies}
        result.update(_memory_fields(server))
        return result
    finally:
        await swarm.close()


# --------------------------------------------------------------------------- plans


@dataclass
class Job:
    """One workload at one size, repeated."""

    workload: str
    n: int
    repeat: int
    options: dict[str, Any] = field(default_factory=dict)


def default_window(n: int) -> int:
    """Messages in flight: at least 64, and at least 12,800 deliveries so a small N
    saturates the server too (64 messages at N=10 would measure round trips instead)."""
    return max(64, math.ceil(12_800 / n))


def plan_all(args: argparse.Namespace) -> list[Job]:
    r = args.repeat
    jobs = [Job("fanout", n, r) for n in (10, 50, 200, 1000)]
    jobs += [Job("latency", 200, r), Job("storm", 200, r), Job("storm", 1000, r),
             Job("memory", 1000, r)]
    return jobs


def plan_quick() -> list[Job]:
    return [Job("fanout", 10, 1, {"messages": 300, "duration": 30.0}),
            Job("fanout", 50, 1, {"messages": 200, "duration": 30.0, "senders": 5}),
            Job("latency", 10, 1, {"messages": 50}),
            Job("storm", 50, 1),
            Job("memory", 100, 1, {"steps": (20, 100), "settle": 0.1})]


async def run_job(job: Job, ctx: RunContext, args: argparse.Namespace) -> dict[str, Any]:
    opt = job.options
    if job.workload == "fanout":
        return await run_fanout(
            ctx, job.n, senders=opt.get("senders", args.senders or min(job.n, 10)),
            window=opt.get("window", args.window or default_window(job.n)),
            messages=opt.get("messages", args.messages),
            duration=opt.get("duration", args.duration), text_bytes=args.text_bytes)
    if job.workload == "latency":
        return await run_latency(ctx, job.n, opt.get("messages", args.latency_messages),
                                 args.text_bytes)
    if job.workload == "storm":
        return await run_storm(ctx, job.n)
    if job.workload == "memory":
        steps = opt.get("steps") or tuple(sorted({min(200, job.n), job.n}))
        return await run_memory(ctx, steps, opt.get("settle", args.settle))
    raise LoadgenError(f"unknown workload {job.workload}")


async def run_plan(jobs: list[Job], source: ServerSource, args: argparse.Namespace,
                   reference: ServerSource | None = None) -> list[dict[str, Any]]:
    """Every run of every job; with ``reference``, each run of a workload it has a
    target ratio for is followed at once by the same run against the reference server,
    so both see the same machine (a VM's speed drifts by 20 % from minute to minute)."""
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.time_limit
    try:
        for job in jobs:
            for rep in range(job.repeat):
                if time.monotonic() > deadline:
                    log.warning("time limit of %.0f s reached; skipping the rest",
                                args.time_limit)
                    return results
                results.append(await _run_once(job, rep, source, args, ""))
                if reference is not None and job.workload in REFERENCE_WORKLOADS:
                    results.append(await _run_once(job, rep, reference, args, "reference"))
    finally:
        await source.close()
        if reference is not None:
            await reference.close()
    return results


async def _run_once(job: Job, rep: int, source: ServerSource, args: argparse.Namespace,
                    label: str) -> dict[str, Any]:
    log.info("%s N=%d run %d/%d%s", job.workload, job.n, rep + 1, job.repeat,
             f" ({label})" if label else "")
    background = None
    if args.quiet_wait > 0:
        background = await wait_for_quiet(OTHERS_BUSY, args.quiet_wait)
    try:
        async with source.server() as server:
            ctx = RunContext(server=server, timeout=args.timeout)
            result = await run_job(job, ctx, args)
            if not server.alive():
                result["ok"] = False
                result["error"] = "server died during the run"
    except LoadgenError as exc:
        log.error("%s N=%d: %s", job.workload, job.n, exc)
        result = {"workload": job.workload, "n": job.n, "ok": False, "error": str(exc)}
    result["rep"] = rep
    if label:
        result["server_label"] = label
    if background is not None:
        result["background_cpu"] = background
    log.info("  %s", _one_line(result))
    return result


def _one_line(r: dict[str, Any]) -> str:
    keys = ("rate", "p50_ms", "p99_ms", "seconds", "kb_per_client", "server_cpu",
            "loadgen_cpu", "server_peak_kb", "ok", "error", "anomalies", "failures")
    return " ".join(f"{k}={_fmt(r[k])}" for k in keys if r.get(k) not in (None, {}, ""))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- report


def _spread(values: list[float]) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def _cell(values: list[float], scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    spread = _spread(values)
    if spread is None:
        return "—"
    med, low, high = (v * scale for v in spread)
    if len(values) == 1 or f"{low:,.{digits}f}" == f"{high:,.{digits}f}":
        return f"{med:,.{digits}f}{unit}"
    return f"{med:,.{digits}f}{unit} ({low:,.{digits}f}–{high:,.{digits}f})"


def _verdict(value: float | None, limit: float | None, higher_is_better: bool) -> str:
    if value is None or limit is None:
        return ""
    good = value >= limit if higher_is_better else value <= limit
    return "met" if good else "missed"


def _group(results: list[dict[str, Any]], workload: str, label: str = ""
           ) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        if r["workload"] == workload and r.get("server_label", "") == label:
            groups.setdefault(r["n"], []).append(r)
    return dict(sorted(groups.items()))


def _ratios(runs: list[dict[str, Any]], refs: list[dict[str, Any]], key: str) -> list[float]:
    """qtchat ÷ reference for each pair of runs made back to back (same rep)."""
    by_rep = {r.get("rep"): r.get(key) for r in refs if r.get("ok")}
    out = []
    for r in runs:
        mine, theirs = r.get(key), by_rep.get(r.get("rep"))
        if r.get("ok") and mine and theirs:
            out.append(mine / theirs)
    return out


def render_reference(results: list[dict[str, Any]]) -> str:
    """The reference comparison: the plain asyncio server measured run for run."""
    rows = []
    specs = (("fanout", "A fan-out deliveries/s", "rate", 0, TARGET_FANOUT_RATIO, True),
             ("latency", "B one at a time p50 ms", "p50_ms", 3, TARGET_LATENCY_RATIO, False),
             ("storm", "C connect storm s", "seconds", 3, TARGET_STORM_RATIO, False))
    for workload, title, key, digits, targets, higher in specs:
        refs = _group(results, workload, "reference")
        for n, runs in _group(results, workload).items():
            ref_runs = refs.get(n)
            if not ref_runs:
                continue
            ratios = _ratios(runs, ref_runs, key)
            spread = _spread(ratios)
            target = targets.get(n)
            target_text = ""
            if target is not None and spread is not None:
                sign = "≥" if higher else "≤"
                target_text = f"{sign} {target:g}× {_verdict(spread[0], target, higher)}"
            rows.append(
                f"| {title} | {n} | {_cell([r.get(key) for r in runs], digits=digits)} "
                f"| {_cell([r.get(key) for r in ref_runs], digits=digits)} "
                f"| {_cell(ratios, digits=2, unit='×')} | {target_text} |")
    if not rows:
        return ""
    return "\n".join([
        "**Against the plain asyncio server, run for run** (`benchmarks/reference_server.py`, "
        "started and pinned the same way; ratio = qtchat ÷ reference per pair of runs; "
        "targets are the issue's, divided by what it measured for that server: 212k/s, "
        "0.74 ms, 0.15 s)", "",
        "| workload | N | qtchat | plain asyncio | ratio | target |",
        "|---|---:|---:|---:|---:|---|", *rows, ""])


def _cpu_cells(runs: list[dict[str, Any]]) -> tuple[str, str, str]:
    server = _cell([r.get("server_cpu") for r in runs], 100, 0, " %")
    own = _cell([r.get("loadgen_cpu") for r in runs], 100, 0, " %")
    notes = []
    bound = sum(1 for r in runs if r.get("loadgen_bound"))
    if bound:
        notes.append(f"loadgen-bound in {bound}/{len(runs)}")
    busy = [max(r.get("other_cpu") or 0, r.get("background_cpu") or 0) for r in runs]
    if any(b >= OTHERS_BUSY for b in busy):
        notes.append(f"machine busy in {sum(b >= OTHERS_BUSY for b in busy)}/{len(runs)} "
                     f"(other processes up to {max(busy) * 100:.0f} % of a core)")
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        notes.append(f"FAILED {len(failed)}/{len(runs)}: " + "; ".join(
            sorted({_failure_text(r) for r in failed})))
    return server, own, "; ".join(notes)


def _failure_text(r: dict[str, Any]) -> str:
    if r.get("error"):
        return str(r["error"]).splitlines()[0][:160]
    parts = []
    if r.get("anomalies"):
        parts.append(f"unexpected frames {r['anomalies']}")
    if r.get("failures"):
        parts.append(f"failures {r['failures']}")
    if r.get("expected") is not None and r.get("deliveries") != r.get("expected"):
        parts.append(f"{r.get('deliveries')} of {r.get('expected')} deliveries")
    return ", ".join(parts) or "not ok"


def render_tables(results: list[dict[str, Any]]) -> str:
    """Markdown tables: medians with min–max over the repetitions of each row."""
    out: list[str] = []
    fan = _group(results, "fanout")
    if fan:
        out += ["**A. Fan-out** (deliveries/s = N × messages ÷ time from first send to last "
                "delivery; latency = send → arrival at a probe client, under load)", "",
                "| N | senders | window | deliveries/s | p50 ms | p99 ms | server CPU "
                "| loadgen CPU | server peak RSS MB | target | notes |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for n, runs in fan.items():
            server, own, notes = _cpu_cells(runs)
            rates = [r.get("rate") for r in runs]
            spread = _spread(rates)
            target = TARGET_FANOUT.get(n)
            verdict = _verdict(spread[0] if spread else None, target, True)
            target_text = f"≥ {target:,} {verdict}" if target else ""
            peak = _cell([_mb(r.get("server_peak_kb")) for r in runs], digits=0)
            if n == 200 and runs:
                peak_med = _spread([_mb(r.get("server_peak_kb")) for r in runs])
                if peak_med:
                    v = _verdict(peak_med[0], TARGET_PEAK_MB_AT_200, False)
                    target_text += f"; ≤ {TARGET_PEAK_MB_AT_200} MB {v}"
            out.append(
                f"| {n} | {runs[0].get('senders', '—')} | {runs[0].get('window', '—')} "
                f"| {_cell(rates, digits=0)} | {_cell([r.get('p50_ms') for r in runs])} "
                f"| {_cell([r.get('p99_ms') for r in runs])} | {server} | {own} | {peak} "
                f"| {target_text} | {notes} |")
        out.append("")
    lat = _group(results, "latency")
    if lat:
        out += ["**B. One message at a time** (send → last of N copies received)", "",
                "| N | messages | p50 ms | p99 ms | max ms | server CPU | loadgen CPU "
                "| target | notes |",
                "|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for n, runs in lat.items():
            server, own, notes = _cpu_cells(runs)
            p50 = [r.get("p50_ms") for r in runs]
            p99 = [r.get("p99_ms") for r in runs]
            target = TARGET_LATENCY_MS.get(n)
            target_text = ""
            if target:
                s50, s99 = _spread(p50), _spread(p99)
                v = ("met" if s50 and s99 and s50[0] <= target[0] and s99[0] <= target[1]
                     else "missed")
                target_text = f"p50 ≤ {target[0]}, p99 ≤ {target[1]} {v}"
            out.append(
                f"| {n} | {runs[0].get('messages', '—')} | {_cell(p50, digits=3)} "
                f"| {_cell(p99, digits=3)} | {_cell([r.get('max_ms') for r in runs])} "
                f"| {server} | {own} | {target_text} | {notes} |")
        out.append("")
    storm = _group(results, "storm")
    if storm:
        out += ["**C. Connect storm** (first connect → last `registered`)", "",
                "| N | seconds | registered | per-client p50 ms | per-client p99 ms "
                "| loadgen's connect() loop s | server CPU | loadgen CPU | target | notes |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for n, runs in storm.items():
            server, own, notes = _cpu_cells(runs)
            secs = [r.get("seconds") for r in runs]
            spread = _spread(secs)
            target = TARGET_STORM_S.get(n)
            v = _verdict(spread[0] if spread else None, target, False)
            refused = all(r.get("registered") == n for r in runs)
            target_text = (f"≤ {target} s {v}, none refused {'met' if refused else 'missed'}"
                           if target else "")
            regs = "/".join(str(r.get("registered", "—")) for r in runs)
            out.append(
                f"| {n} | {_cell(secs, digits=3)} | {regs} "
                f"| {_cell([r.get('p50_ms') for r in runs], digits=1)} "
                f"| {_cell([r.get('p99_ms') for r in runs], digits=1)} "
                f"| {_cell([r.get('connect_loop_s') for r in runs], digits=3)} "
                f"| {server} | {own} | {target_text} | {notes} |")
        out.append("")
    mem = _group(results, "memory")
    if mem:
        out += ["**D. Idle memory** (server VmRSS after connecting, registering and a "
                "short settle)", "",
                "| clients | RSS MB at 0 | RSS MB per step | KB per extra idle client "
                "| peak RSS MB | target | notes |",
                "|---:|---:|---|---:|---:|---|---|"]
        for n, runs in mem.items():
            _, _, notes = _cpu_cells(runs)
            steps = runs[0].get("steps") or []
            per_step = ", ".join(
                f"{k}: {_cell([_mb((r.get('rss_kb') or {}).get(str(k))) for r in runs], digits=1)}"
                for k in steps)
            kb = [r.get("kb_per_client") for r in runs]
            spread = _spread(kb)
            v = _verdict(spread[0] if spread else None, TARGET_KB_PER_IDLE, False)
            target_text = f"≤ {TARGET_KB_PER_IDLE} KB/client {v}" if n >= 1000 else ""
            out.append(
                f"| {n} | {_cell([_mb(r.get('baseline_kb')) for r in runs], digits=1)} "
                f"| {per_step} | {_cell(kb, digits=1)} "
                f"| {_cell([_mb(r.get('server_peak_kb')) for r in runs], digits=1)} "
                f"| {target_text} | {notes} |")
        out.append("")
    reference = render_reference(results)
    if reference:
        out.append(reference)
    return "\n".join(out)


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _mb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024


def machine_summary(results: list[dict[str, Any]], argv: Sequence[str],
                    source: ServerSource) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        pyside = metadata.version("PySide6-Essentials")
    except metadata.PackageNotFoundError:
        try:
            pyside = metadata.version("PySide6")
        except metadata.PackageNotFoundError:
            pyside = "not installed"
    info = next((r["server_info"] for r in results
                 if r.get("server_info") and not r.get("server_label")), {})
    server = f"{info.get('name', '?')} {info.get('version', '?')}" if info else "?"
    if source.address is not None:
        how = f"running server at {source.address[0]}:{source.address[1]}"
    else:
        how = "fresh server per run" if not source.reuse else "one server for all runs"
        how += f": `{shlex.join(source.cmd or [])}`"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = _git("rev-parse", "--short", "HEAD") or "?"
    if _git("status", "--porcelain", "--", "qtchat"):
        commit += " with uncommitted changes in qtchat/"
    return "\n".join([
        f"- Date: {when}",
        f"- Machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}",
        f"- Python {platform.python_version()}, PySide6 {pyside}, server reports "
        f"`{server}`",
        f"- Server: {how}; repository at {commit}",
        f"- CPUs: {source.pinning}",
        f"- Command: `{shlex.join(['python', 'benchmarks/loadgen.py', *argv])}`",
        f"- Runs per row: {max((r.get('rep', 0) + 1 for r in results), default=0)}; "
        "cells show the median and (min–max).",
    ])


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def write_readme(block: str, path: Path = README) -> None:
    text = path.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise LoadgenError(f"{path} has no {README_BEGIN} … {README_END} markers")
    text = text[: begin + len(README_BEGIN)] + "\n" + block.rstrip() + "\n" + text[end:]
    path.write_text(text)
    log.info("results written to %s", path)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true",
                      help="the standard set: fan-out N=10,50,200,1000; latency N=200; "
                           "storm N=200,1000; memory 0/200/1000 (with --repeat each)")
    what.add_argument("--quick", action="store_true",
                      help="a few-second smoke run that checks every delivery arrived")
    what.add_argument("--workload", "-w", choices=["fanout", "latency", "storm", "memory",
                                                   "A", "B", "C", "D"],
                      help="one workload (A=fanout, B=latency, C=storm, D=memory)")
    p.add_argument("-n", "--clients", type=int, nargs="+", default=[200],
                   help="client counts for --workload (default 200)")
    p.add_argument("--senders", type=int, default=0,
                   help="fan-out senders (default min(N, 10))")
    p.add_argument("--window", type=int, default=0,
                   help="fan-out messages in flight (default max(64, 12800/N): at least "
                        "64 messages and 12,800 deliveries)")
    p.add_argument("--messages", type=int, default=200_000,
                   help="fan-out message cap per run (default 200000)")
    p.add_argument("--duration", type=float, default=3.0,
                   help="fan-out sending time cap per run in s (default 3)")
    p.add_argument("--latency-messages", type=int, default=2000,
                   help="messages for the one-at-a-time workload (default 2000)")
    p.add_argument("--text-bytes", type=int, default=48,
                   help="approximate message text length (default 48)")
    p.add_argument("--settle", type=float, default=1.5,
                   help="seconds to let the server settle before an RSS reading (default "
                        "1.5: the server gives freed heap back to the OS at its once-a-second "
                        "sweep after a connect storm)")
    p.add_argument("--repeat", type=int, default=3, help="runs per row (default 3)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="hard timeout of each phase of a run in s (default 60)")
    p.add_argument("--time-limit", type=float, default=900.0,
                   help="stop starting runs after this many s (default 900)")
    server = p.add_mutually_exclusive_group()
    server.add_argument("--server-cmd",
                        help="command that starts a server on 127.0.0.1 port 0 and prints "
                             "the qtchat serving line; {data_dir} is replaced by a fresh "
                             "directory (default: qtchat serve from this venv)")
    server.add_argument("--connect", metavar="HOST:PORT",
                        help="use an already running server (loopback only)")
    p.add_argument("--server-pid", type=int,
                   help="pid of the --connect server, for its CPU and RSS")
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="before each run wait up to this many s for other processes to "
                        "use < 15 %% of a core (default 30; 0 with --quick)")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the load generator to the last CPU and a server it "
                        "starts to the others")
    p.add_argument("--reference", action="store_true",
                   help="after each fan-out, latency and storm run, make the same run against "
                        "benchmarks/reference_server.py (a plain asyncio server) and report "
                        "qtchat's figures as ratios to it")
    p.add_argument("--reuse-server", action="store_true",
                   help="start one server for all runs instead of one per run")
    p.add_argument("--write-readme", action="store_true",
                   help=f"replace the results in {README.relative_to(REPO)}")
    p.add_argument("--json", metavar="PATH",
                   help="also write every run's raw figures as JSON ('-' for stdout)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)
    if args.server_pid and not args.connect:
        p.error("--server-pid goes with --connect")
    if args.reference and args.connect:
        p.error("--reference starts its own servers; it does not go with --connect")
    if not (args.all or args.quick or args.workload):
        p.error("choose --all, --quick or --workload")
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 30.0
    args.workload = {"A": "fanout", "B": "latency", "C": "storm", "D": "memory"}.get(
        args.workload, args.workload)
    return args


def build_source(args: argparse.Namespace) -> ServerSource:
    if args.connect:
        host, _, port = args.connect.rpartition(":")
        host = host.strip("[]")
        require_loopback(host)
        return ServerSource(cmd=None, address=(host, int(port)), pid=args.server_pid)
    cmd = shlex.split(args.server_cmd) if args.server_cmd else default_server_cmd()
    return ServerSource(cmd=cmd, reuse=args.reuse_server or args.quick)


async def main_async(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.quick:
        jobs = plan_quick()
    elif args.all:
        jobs = plan_all(args)
    else:
        jobs = [Job(args.workload, n, args.repeat) for n in args.clients]
    raise_fd_limit(max(j.n for j in jobs) + 256)
    source = build_source(args)
    pinned = pin_cpus(not args.no_pin)
    if pinned is not None:
        source.cpus = pinned[1] if source.cmd is not None else None
        source.pinning = (f"load generator on CPU {_cpu_list(pinned[0])}"
                          + (f", server on CPU {_cpu_list(pinned[1])}" if source.cpus
                             else " (the running server is not pinned)"))
    reference = None
    if args.reference:
        reference = ServerSource(cmd=[sys.executable, str(REFERENCE_SERVER)],
                                 reuse=source.reuse, cpus=source.cpus)
    results = await run_plan(jobs, source, args, reference)
    block = machine_summary(results, argv, source) + "\n\n" + render_tables(results)
    if source.problems:
        block += "\n**Server problems seen:**\n\n" + "\n".join(
            f"- {p.splitlines()[0][:300]}" for p in sorted(set(source.problems))) + "\n"
    reference_problems = reference.problems if reference is not None else []
    failed_refs = [r for r in results if r.get("server_label") and not r.get("ok")]
    if reference_problems or failed_refs:
        # The yardstick, not qtchat: its ratios are void, qtchat's own figures stand.
        block += "\n**Reference server problems seen** (its ratios do not count):\n\n" + \
            "\n".join(f"- {p.splitlines()[0][:300]}" for p in sorted(
                {*reference_problems, *(_failure_text(r) for r in failed_refs)})) + "\n"
    print(block)
    if args.json:
        payload = json.dumps({"results": results, "server_problems": source.problems,
                              "reference_problems": reference_problems},
                             indent=1, default=str)
        if args.json == "-":
            print(payload)
        else:
            Path(args.json).write_text(payload)
    if args.write_readme:
        write_readme(block)
    own = [r for r in results if not r.get("server_label")]  # the yardstick's are reported
    ok = all(r.get("ok") for r in own) and len(own) == sum(j.repeat for j in jobs)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        return asyncio.run(main_async(args, argv))
    except LoadgenError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
