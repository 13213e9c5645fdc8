"""Throughput of the host's file streams against a plain copy of the same file over loopback.

Four timed copies of one file (1 GiB by default), each over a fresh TCP
connection on 127.0.0.1, the sender and the reader in two threads of this
process (``os.sendfile``, ``recv_into``, ``os.write`` and SHA-256 all release
the GIL):

- **yardstick**: ``os.sendfile`` of the whole file to a reader that writes what
  it receives to disk and fsyncs it — the plain copy the issue names;
- **upload**: the same sender, and a reader that feeds every chunk to
  ``UploadStream.receive`` (part file, incremental SHA-256, fsync, hash check,
  rename) — the host's side of an upload;
- **upload (hash behind)**: the same with ``hash_behind=True`` and a worker
  thread reading the part file back into SHA-256 behind the writer;
- **download (sendfile)**: ``DownloadStream.sendfile_args`` / ``sent`` driving
  ``os.sendfile`` slice by slice, to the yardstick's reader — a plain-socket
  download;
- **download (slices)**: ``DownloadStream.read_slice`` + ``sendall``, the path a
  TLS socket takes (bytes through user space; no TLS cost in it).

With ``--serve`` the same yardstick is set against a ``qtchat serve`` child instead:

- **serve upload**: ``file_offer`` on a chat connection, then an ``upload``
  connection to the same port fed with ``os.sendfile``, timed until ``upload_done``
  (the host has hashed, fsynced, renamed and posted the message);
- **serve download**: ``file_get``, then a ``download`` connection read to disk by
  the yardstick's reader;
- a **bystander** on its own chat connection pings the host all the while; its
  round trips during the transfers are set against its round trips while idle
  (p50 and p99).

A yardstick run goes before and after every other run; each run's ratio is
taken against the mean of the two around it, and the median ratio over
``--repeat`` rounds is reported (the machine is shared and its speed wanders
by 3x within a minute; neighbouring runs see the same weather).
SHA-256 of the file in memory is printed too, as the ceiling an upload cannot
pass.

    .venv/bin/python benchmarks/files_bench.py [--size-mib 1024] [--dir /tmp] [--repeat 3]
    .venv/bin/python benchmarks/files_bench.py --serve [--size-mib 1024] [--repeat 3]

``--yardstick-write-behind``: the reader (the yardstick's, and the download's) has the
kernel start writing every 8 MiB as it comes, as the host's upload thread does
(``sync_file_range``), instead of leaving it all to the final fsync: a plain copy as
clever about the disk as the host, for comparison (not the issue's yardstick).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qtchat.server.files import FileLimits, FileStore, UploadDone
from qtchat.server.transfers import WRITE_BEHIND, start_writeback

MiB = 1024 * 1024
GiB_ = 1024 * MiB
RECV_BUFFER = 1 * MiB
WRITE_BEHIND_READER = False  # --yardstick-write-behind


def make_source(path: Path, size: int) -> str:
    """A file of ``size`` bytes (64 MiB of random data repeated); returns its SHA-256."""
    block = os.urandom(64 * MiB)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def connected_pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server


def send_whole(sock: socket.socket, path: Path) -> None:
    """The yardstick's sender: sendfile until the file is out, then close."""
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        offset = 0
        while offset < size:
            offset += os.sendfile(sock.fileno(), source.fileno(), offset, size - offset)
    sock.close()


def read_to_disk(sock: socket.socket, path: Path, prefix: bytes = b"") -> int:
    """The yardstick's reader: everything received goes to ``path``, fsynced
    (``prefix``: bytes already received with an answer line)."""
    buffer = bytearray(RECV_BUFFER)
    view = memoryview(buffer)
    total = len(prefix)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if prefix:
            os.write(fd, prefix)
        started = 0
        while n := sock.recv_into(buffer):
            written = 0
            while written < n:
                written += os.write(fd, view[written:n])
            total += n
            if WRITE_BEHIND_READER and total - started >= WRITE_BEHIND:
                start_writeback(fd, started, total - started)
                started = total
        os.fsync(fd)
    finally:
        os.close(fd)
        sock.close()
    return total


def timed(sender: Callable[[socket.socket], None], reader: Callable[[socket.socket], object]
          ) -> tuple[float, object]:
    """Run one copy: sender in a thread, reader here; seconds until the reader is done."""
    client, server = connected_pair()
    start = time.perf_counter()
    thread = threading.Thread(target=sender, args=(client,))
    thread.start()
    result = reader(server)
    elapsed = time.perf_counter() - start
    thread.join()
    return elapsed, result


# --- through qtchat serve ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
SERVING = re.compile(r'^qtchat: serving ".*" on (?P<host>[^\s]+):(?P<port>\d+)$')


class Lines:
    """A blocking chat (or transfer) connection that reads JSON lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, frame: dict) -> None:
        self.sock.sendall(json.dumps(frame).encode() + b"\n")

    def line(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def until(self, kind: str, **fields: object) -> dict:
        while True:
            frame = self.line()
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame
            if frame["type"] == "error" and frame.get("id") == fields.get("id"):
                raise RuntimeError(f"refused: {frame}")


def chat(port: int, name: str) -> Lines:
    conn = Lines(port)
    conn.send({"type": "register", "name": name, "protocol": 1, "features": ["files"]})
    conn.until("registered")
    return conn


class Bystander(threading.Thread):
    """Pings the host on its own chat connection and keeps each round trip (seconds)
    with the phase it was measured in."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.conn = chat(port, "bystander")
        self.phase = "idle"
        self.samples: dict[str, list[float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stop.is_set():
            count += 1
            token = f"b{count}"
            start = time.perf_counter()
            self.conn.send({"type": "ping", "token": token})
            self.conn.until("pong", token=token)
            self.samples.setdefault(self.phase, []).append(time.perf_counter() - start)
            self.stop.wait(0.005)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time (user + system) of process ``pid``, or of one of its threads, so far."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_main(args: argparse.Namespace, work: Path, source: Path, sha256: str,
               size: int) -> None:
    copy_path = work / "copy"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT),
                                                        os.environ.get("PYTHONPATH")))))
    command = [sys.executable, "-m", "qtchat", "serve", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(work / "serve"), "--no-announce", "--rate-limit", "0",
               "--max-file-size", str(size), "--files-quota", str(size * (args.repeat + 1))]
    log = open(work / "serve.log", "w")  # noqa: SIM115 (the child's, while it runs)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                               env=env)
    try:
        match = SERVING.match(process.stdout.readline().rstrip("\n"))
        if match is None:
            sys.exit("qtchat serve did not start")
        port = int(match["port"])
        owner = chat(port, "sender")
        bystander = Bystander(port)
        bystander.start()
        time.sleep(2.0)  # the bystander's idle round trips
        results: dict[str, list[float]] = {"yardstick": [], "serve upload": [],
                                           "serve download": []}
        ratios: dict[str, list[float]] = {"serve upload": [], "serve download": []}
        # The host's CPU seconds during each transfer: its event loop's thread, and all.
        cpu: dict[str, list[tuple[float, float]]] = {"serve upload": [], "serve download": []}

        def host_cpu() -> tuple[float, float]:
            return cpu_seconds(process.pid, process.pid), cpu_seconds(process.pid)

        def yardstick() -> None:
            bystander.phase = "yardstick"
            seconds, got = timed(lambda s: send_whole(s, source),
                                 lambda s: read_to_disk(s, copy_path))
            assert got == size
            copy_path.unlink()
            results["yardstick"].append(seconds)

        def upload(offer_id: str) -> str:
            owner.send({"type": "file_offer", "id": offer_id, "name": "bench.bin",
                        "size": size, "sha256": sha256})
            accepted = owner.until("file_accepted", id=offer_id)
            bystander.phase = "upload"
            before = host_cpu()
            start = time.perf_counter()
            conn = Lines(port)
            conn.send({"type": "upload", "token": accepted["token"]})
            offset = conn.line()["offset"]
            with open(source, "rb") as data:
                while offset < size:
                    offset += os.sendfile(conn.sock.fileno(), data.fileno(), offset,
                                          size - offset)
            done = conn.line()
            results["serve upload"].append(time.perf_counter() - start)
            after = host_cpu()
            cpu["serve upload"].append((after[0] - before[0], after[1] - before[1]))
            bystander.phase = "between"
            conn.sock.close()
            assert done["type"] == "upload_done", done
            return accepted["file"]

        def download(file_id: str) -> None:
            owner.send({"type": "file_get", "id": "g", "file": file_id})
            ticket = owner.until("file_ticket", id="g")
            bystander.phase = "download"
            before = host_cpu()
            start = time.perf_counter()
            conn = Lines(port)
            conn.send({"type": "download", "token": ticket["token"], "offset": 0})
            ready = conn.line()
            assert ready["type"] == "download_ready", ready
            got = read_to_disk(conn.sock, copy_path, conn.buffer)
            results["serve download"].append(time.perf_counter() - start)
            after = host_cpu()
            cpu["serve download"].append((after[0] - before[0], after[1] - before[1]))
            bystander.phase = "between"
            assert got == size
            copy_path.unlink()

        def measured(name: str, run: Callable[[], None]) -> None:
            run()
            yardstick()
            around = (results["yardstick"][-2] + results["yardstick"][-1]) / 2
            ratios[name].append(around / results[name][-1])

        yardstick()
        for round_ in range(args.repeat):
            held: list[str] = []
            measured("serve upload", lambda r=round_, h=held: h.append(upload(f"u{r}")))
            measured("serve download", lambda h=held: download(h[0]))
        bystander.stop.set()
        bystander.join(10)
        print(f"file {args.size_mib} MiB through qtchat serve on 127.0.0.1, "
              f"{args.repeat} rounds (data in {args.dir})"
              + (", the reader writing behind" if WRITE_BEHIND_READER else ""))
        for name, times in results.items():
            runs = ", ".join(f"{size / t / MiB:.0f}" for t in times)
            ratio = ""
            if name != "yardstick":
                ratio = (f"  {statistics.median(ratios[name]):.2f}x the yardstick (median; "
                         + ", ".join(f"{r:.2f}" for r in ratios[name]) + ")")
            print(f"  {name:16s} best {size / min(times) / MiB:6.0f} MiB/s  (runs: {runs})"
                  f"{ratio}")
        for name, spent in cpu.items():
            loop = statistics.median(c[0] for c in spent)
            whole = statistics.median(c[1] for c in spent)
            wall = statistics.median(results[name])
            print(f"  {name}: host CPU per GiB (median), event-loop thread "
                  f"{loop * GiB_ / size:.2f} s, all threads {whole * GiB_ / size:.2f} s; "
                  f"loop thread busy {loop / wall:.0%} of the transfer's wall time")
        idle = bystander.samples.get("idle", [])
        print(f"  bystander ping round trip, idle: p50 {percentile(idle, 0.5) * 1e3:.2f} ms "
              f"p99 {percentile(idle, 0.99) * 1e3:.2f} ms ({len(idle)} pings)")
        for phase in ("upload", "download"):
            busy = bystander.samples.get(phase, [])
            if idle and busy:
                print(f"    during the {phase}s: p50 {percentile(busy, 0.5) * 1e3:.2f} ms, "
                      f"p99 {percentile(busy, 0.99) * 1e3:.2f} ms, max {max(busy) * 1e3:.1f} ms"
                      f" ({len(busy)} pings): p99 "
                      f"{percentile(busy, 0.99) / percentile(idle, 0.99):.2f}x idle")
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        if args.keep_log:
            shutil.copy(work / "serve.log", args.keep_log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slice-kib", type=int, default=256,
                        help="DownloadStream slice size (default 256 KiB, the store's default)")
    parser.add_argument("--keep-log", default=None, help="copy the serve child's log here")
    parser.add_argument("--serve", action="store_true",
                        help="through a qtchat serve child instead of the bare streams")
    parser.add_argument("--yardstick-write-behind", action="store_true",
                        help="the reader starts the disk writing every 8 MiB (Linux)")
    args = parser.parse_args()
    if args.yardstick_write_behind:
        if start_writeback is None:
            sys.exit("--yardstick-write-behind needs sync_file_range (Linux)")
        global WRITE_BEHIND_READER
        WRITE_BEHIND_READER = True
    size = args.size_mib * MiB

    free = shutil.disk_usage(args.dir).free
    needed = 4 * size + 1024 * MiB
    if free < needed:
        sys.exit(f"{args.dir} has {free / MiB:.0f} MiB free; this run needs {needed / MiB:.0f}")

    work = Path(tempfile.mkdtemp(prefix="files-bench-", dir=args.dir))
    try:
        source = work / "source"
        sha256 = make_source(source, size)
        if args.serve:
            serve_main(args, work, source, sha256, size)
            return
        with open(source, "rb") as f:
            data = f.read()
        start = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        hash_rate = size / (time.perf_counter() - start)
        del data

        copy_path = work / "copy"
        limits = FileLimits(max_file_size=size, quota_per_owner=size * 4,
                            min_free_bytes=0, min_free_ratio=0.0)
        store = FileStore(work / "store", limits, now=0.0)
        results: dict[str, list[float]] = {"yardstick": [], "upload": [],
                                           "upload (hash behind)": [],
                                           "download (sendfile)": [],
                                           "download (slices)": []}

        def yardstick() -> None:
            seconds, got = timed(lambda s: send_whole(s, source),
                                 lambda s: read_to_disk(s, copy_path))
            assert got == size
            copy_path.unlink()
            results["yardstick"].append(seconds)

        def upload(offer_id: str, hash_behind: bool) -> str:
            accepted = store.offer(owner="bench", offer_id=offer_id, name="bench.bin",
                                   size=size, sha256=sha256, now=0.0)

            def receive(sock: socket.socket) -> str:
                stream = store.open_upload(accepted.token, now=0.0, hash_behind=hash_behind)
                stop = threading.Event()

                def hash_worker() -> None:
                    while not stop.is_set():
                        if stream.rehash(8 * MiB):
                            stop.wait(0.002)

                worker = threading.Thread(target=hash_worker)
                if hash_behind:
                    worker.start()
                buffer = bytearray(RECV_BUFFER)
                view = memoryview(buffer)
                actions: list = []
                while not actions and (n := sock.recv_into(buffer)):
                    actions = stream.receive(view[:n], now=0.0)
                stop.set()
                if hash_behind:
                    worker.join()
                stream.close(now=0.0)
                sock.close()
                assert isinstance(actions[0], UploadDone), actions
                return actions[0].file.file

            seconds, file_id = timed(lambda s: send_whole(s, source), receive)
            results["upload (hash behind)" if hash_behind else "upload"].append(seconds)
            return file_id

        def download(file_id: str, mode: str) -> None:
            ticket = store.ticket(file_id, "bench", now=0.0)

            def send(sock: socket.socket) -> None:
                stream = store.open_download(ticket.token, 0, now=0.0,
                                             slice_size=args.slice_kib * 1024)
                if mode == "sendfile":
                    while (call := stream.sendfile_args()) is not None:
                        fd, offset, count = call
                        stream.sent(os.sendfile(sock.fileno(), fd, offset, count))
                else:
                    for piece in stream.slices():
                        sock.sendall(piece)
                stream.close()
                sock.close()

            seconds, got = timed(send, lambda s: read_to_disk(s, copy_path))
            assert got == size
            copy_path.unlink()
            results[f"download ({mode})"].append(seconds)

        # Yardstick runs between all others (Y M Y M Y …): each run's ratio is taken
        # against the mean of the yardsticks on either side of it, since the
        # machine's speed wanders within a minute and what ran just before (a
        # 1 GiB file freed on tmpfs, say) slows the next copy.
        ratios: dict[str, list[float]] = {name: [] for name in results if name != "yardstick"}

        def measured(name: str, run: Callable[[], None]) -> None:
            run()
            yardstick()
            around = (results["yardstick"][-2] + results["yardstick"][-1]) / 2
            ratios[name].append(around / results[name][-1])

        yardstick()
        for round_ in range(args.repeat):
            held: list[str] = []  # the file the downloads of this round fetch
            measured("upload", lambda r=round_: store.delete(upload(f"o{r}", hash_behind=False)))
            measured("upload (hash behind)",
                     lambda r=round_, h=held: h.append(upload(f"b{r}", hash_behind=True)))
            measured("download (sendfile)", lambda h=held: download(h[0], "sendfile"))
            measured("download (slices)", lambda h=held: download(h[0], "slices"))
            store.delete(held[0])

        print(f"file {args.size_mib} MiB in {args.dir}, {args.repeat} rounds, "
              f"slices of {args.slice_kib} KiB"
              + (", the reader writing behind" if WRITE_BEHIND_READER else ""))
        print(f"  sha256 in memory (ceiling for uploads): {hash_rate / MiB:8.0f} MiB/s")
        for name, times in results.items():
            rate = size / min(times)
            runs = ", ".join(f"{size / t / MiB:.0f}" for t in times)
            ratio = ""
            if name != "yardstick":
                ratio = (f"  {statistics.median(ratios[name]):.2f}x the yardstick (median; "
                         + ", ".join(f"{r:.2f}" for r in ratios[name]) + ")")
            print(f"  {name:22s} best {rate / MiB:6.0f} MiB/s  (runs: {runs}){ratio}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
