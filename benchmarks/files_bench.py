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

A yardstick run goes before and after every other run; each run's ratio is
taken against the mean of the two around it, and the median ratio over
``--repeat`` rounds is reported (the machine is shared and its speed wanders
by 3x within a minute; neighbouring runs see the same weather).
SHA-256 of the file in memory is printed too, as the ceiling an upload cannot
pass.

    .venv/bin/python benchmarks/files_bench.py [--size-mib 1024] [--dir /tmp] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qtchat.server.files import FileLimits, FileStore, UploadDone

MiB = 1024 * 1024
RECV_BUFFER = 1 * MiB


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


def read_to_disk(sock: socket.socket, path: Path) -> int:
    """The yardstick's reader: everything received goes to ``path``, fsynced."""
    buffer = bytearray(RECV_BUFFER)
    view = memoryview(buffer)
    total = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while n := sock.recv_into(buffer):
            written = 0
            while written < n:
                written += os.write(fd, view[written:n])
            total += n
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slice-kib", type=int, default=256,
                        help="DownloadStream slice size (default 256 KiB, the store's default)")
    args = parser.parse_args()
    size = args.size_mib * MiB

    free = shutil.disk_usage(args.dir).free
    needed = 4 * size + 1024 * MiB
    if free < needed:
        sys.exit(f"{args.dir} has {free / MiB:.0f} MiB free; this run needs {needed / MiB:.0f}")

    work = Path(tempfile.mkdtemp(prefix="files-bench-", dir=args.dir))
    try:
        source = work / "source"
        sha256 = make_source(source, size)
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
              f"slices of {args.slice_kib} KiB")
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
