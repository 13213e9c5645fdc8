"""The kernel's floor under one-message-at-a-time latency: N plain send() calls.

Workload B of loadgen.py (one message to N = 200 clients, time until the last
copy arrived) cannot beat the time it takes to call ``send()`` once per
recipient. This measures just that, with nothing else in the loop: N TCP
connections on 127.0.0.1, the readers in a child process on the other CPU (as
loadgen does), and the sender timing a loop of N ``send()`` calls of a
100-byte frame. Loopback only, bounded in rounds and time.

    .venv/bin/python benchmarks/send_floor.py [-n 200] [--rounds 300]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import time

FRAME = (b'{"type":"broadcast","seq":123,"ts":"2026-11-24T22:00:00.000Z","from":"u0001",'
         b'"room":"lobby","text":"' + b"y" * 24 + b'"}\n')


def _readers(port: int, n: int, seconds: float) -> None:
    """Child: N connections that read everything, pinned to the other CPU."""
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    selector = selectors.DefaultSelector()
    for conn in conns:
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in selector.select(0.1):
            try:
                if not key.fileobj.recv(65536):  # type: ignore[union-attr]
                    selector.unregister(key.fileobj)
            except BlockingIOError:
                pass
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="recipients (default 200)")
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds (default 300)")
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:
        _readers(port, args.n, seconds=5 + args.rounds * 0.005)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    conns = [listener.accept()[0] for _ in range(args.n)]
    for conn in conns:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sends = [conn.send for conn in conns]
    time.sleep(0.5)
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for send in sends:
            send(FRAME)
        rounds.append(time.perf_counter() - start)
        time.sleep(0.002)  # let the readers drain: one message at a time
    os.waitpid(child, 0)
    p50 = statistics.median(rounds)
    print(f"{args.n} send() calls of {len(FRAME)} bytes on loopback: p50 {p50 * 1e3:.3f} ms "
          f"({p50 / args.n * 1e6:.2f} µs each), min {min(rounds) * 1e3:.3f} ms, "
          f"{args.rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
