#!/usr/bin/env python3
"""Fairness under hostile or heavy load: what a pinging bystander feels beside an attacker.

One bystander connection pings the server every 55 ms (one ping in flight at a time) and
records each round trip while an attacker works beside it. Loads (issue 11, points 4–5):

* ``idle``: nothing else; the yardstick, measured in the same run on the same server.
* ``flood``: one connection writes pings and blank lines as fast as the kernel takes them
  (server at its default rate limit of 20 frames/s); the server's CPU share is printed too.
* ``paging``: 5 clients page a room's history (``limit`` 200) at the default rate, 20
  requests per second each; the room holds 3,000 messages of 4,000 emoji (the largest
  texts there are: 16 KB each in UTF-8).
* ``resume``: 200 sessions drop, 3,000 messages are posted, and all 200 resume at once
  with ``since``; the time until the last replay ended is printed too.
* ``rooms``: the cost of a ``register`` (time to its ``registered``) on an empty server,
  then after 30,000 rooms were each given a message.

Each figure is printed as p50/p95/max in ms and as a ratio to the idle yardstick of the
same server. Raw asyncio streams, no Qt; the server is ``python -m qtchat serve`` from the
repository given (``--repo``, default this one), started and pinned to its own CPU with
loadgen's helpers. Typical use::

    .venv/bin/python benchmarks/fairness_bench.py
    .venv/bin/python benchmarks/fairness_bench.py --repo /tmp/qtchat-base --only flood paging
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import (  # a sibling script, not a package
    Server,
    percentile,
    pin_cpus,
    raise_fd_limit,
    start_server,
    stop_server,
)

REPO = Path(__file__).resolve().parent.parent
PING_EVERY = 0.055  # 18 a second: under the default rate limit of 20
LOADS = ("flood", "paging", "resume", "rooms")
TARGET_P95_MS = {"flood": 50.0, "paging": 100.0, "resume": 100.0}


def frame(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class Client:
    """One raw connection: write frames, read lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: Server) -> Client:
        reader, writer = await asyncio.open_connection(server.host, server.port,
                                                       limit=1 << 20)
        return cls(reader, writer)

    def send(self, obj: dict) -> None:
        self.writer.write(frame(obj))

    async def until(self, kind: str, **fields: object) -> dict:
        """Read lines until a frame of ``kind`` with these fields; return it."""
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError(f"closed while waiting for {kind}")
            if f'"type":"{kind}"'.encode() not in line:
                continue
            obj = json.loads(line)
            if all(obj.get(k) == v for k, v in fields.items()):
                return obj

    async def register(self, name: str, **extra: object) -> dict:
        self.send({"type": "register", "name": name, "protocol": 1, **extra})
        return await self.until("registered")

    async def drain(self) -> None:
        """Read and forget everything (an attacker that keeps its socket readable)."""
        with contextlib.suppress(ConnectionError, OSError):
            while await self.reader.read(1 << 18):
                pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


async def bystander(server: Server, name: str, seconds: float,
                    stop: asyncio.Event | None = None) -> list[float]:
    """Ping every PING_EVERY s for ``seconds`` (or until ``stop`` is set); the round trips
    in ms (a ping still unanswered at the end counts with the time it has waited)."""
    client = await Client.open(server)
    await client.register(name)
    rtts: list[float] = []
    end = time.monotonic() + seconds
    n = 0
    try:
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            n += 1
            token = f"b{n}"
            sent = time.monotonic()
            client.send({"type": "ping", "token": token})
            pong = asyncio.ensure_future(client.until("pong", token=token))
            while not pong.done():
                await asyncio.wait([pong], timeout=0.05)
                over = time.monotonic() > end or (stop is not None and stop.is_set())
                if over and not pong.done() and time.monotonic() - sent > 5.0:
                    pong.cancel()  # never answered within 5 s of the end
                    break
            rtts.append((time.monotonic() - sent) * 1000)
            await asyncio.sleep(max(0.0, PING_EVERY - (time.monotonic() - sent)))
    finally:
        client.close()
    return rtts


def summary(rtts: list[float]) -> dict[str, float]:
    return {"p50": percentile(rtts, 0.5), "p95": percentile(rtts, 0.95), "max": max(rtts),
            "n": len(rtts)}


def line(label: str, stats: dict[str, float], idle: dict[str, float] | None,
         extra: str = "") -> str:
    text = (f"{label:<34} p50 {stats['p50']:8.2f}  p95 {stats['p95']:8.2f}  "
            f"max {stats['max']:8.2f} ms  ({stats['n']:.0f} pings)")
    if idle is not None:
        text += (f"  ratio p50 {stats['p50'] / idle['p50']:6.1f}x  "
                 f"p95 {stats['p95'] / idle['p95']:6.1f}x")
    target = TARGET_P95_MS.get(label.split()[0])
    if target is not None:
        text += f"  [target p95 <= {target:g} ms: {'ok' if stats['p95'] <= target else 'MISSED'}]"
    return text + extra


def serve_cmd(*extra: str) -> list[str]:
    # -P: the current directory does not go first on sys.path, PYTHONPATH (--repo) does.
    return [sys.executable, "-P", "-m", "qtchat", "serve", "--host", "127.0.0.1", "--port", "0",
            "--data-dir", "{data_dir}", "--no-announce", "--max-clients", "5000", *extra]


async def seed(server: Server, name: str, count: int, text_chars: int, room: str = "lobby",
               letter: str = "s") -> None:
    """Post ``count`` messages (pipelined, on a server without a rate limit)."""
    client = await Client.open(server)
    await client.register(name)
    pad = letter * text_chars
    batch = 500
    for start in range(0, count, batch):
        for i in range(start, min(count, start + batch)):
            client.send({"type": "broadcast", "room": room, "text": f"{i} {pad}"})
        client.send({"type": "ping", "token": f"seed{start}"})
        await client.until("pong", token=f"seed{start}")
    client.close()


async def idle_yardstick(server: Server, seconds: float, tag: str) -> dict[str, float]:
    stats = summary(await bystander(server, "idler", seconds))
    print(line(f"idle ({tag})", stats, None), flush=True)
    return stats


async def load_flood(server: Server, seconds: float, idle: dict[str, float]) -> None:
    attacker = await Client.open(server)
    await attacker.register("flooder")
    reader = asyncio.create_task(attacker.drain())
    chunk = (b'{"type":"ping","token":"f"}\n' + b"\n" * 8) * 2048
    stop = asyncio.Event()

    async def flood() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while not stop.is_set():
                attacker.writer.write(chunk)
                await attacker.writer.drain()

    writer = asyncio.create_task(flood())
    await asyncio.sleep(0.3)  # the flood is under way
    cpu0, wall0 = server.cpu_seconds() or 0.0, time.monotonic()
    rtts = await bystander(server, "byflood", seconds)
    cpu = ((server.cpu_seconds() or 0.0) - cpu0) / (time.monotonic() - wall0)
    stop.set()
    attacker.close()
    for task in (writer, reader):
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    print(line("flood (pings + blank lines)", summary(rtts), idle,
               f"  server CPU {cpu * 100:.0f} %"), flush=True)


async def load_paging(server: Server, seconds: float, idle: dict[str, float],
                      text_chars: int) -> None:
    await seed(server, "pageseed", 3000, text_chars - 5, letter="\N{GRINNING FACE}")
    pagers = []
    for i in range(5):
        client = await Client.open(server)
        await client.register(f"pager{i}")
        pagers.append(client)
    stop = asyncio.Event()
    answered = [0]

    async def page(client: Client) -> None:
        reads = asyncio.create_task(count_pages(client))
        before = None
        try:
            while not stop.is_set():
                request = {"type": "history", "room": "lobby", "limit": 200}
                if before is not None:
                    request["before"] = before
                client.send(request)
                before = None if before is not None and before < 400 else (before or 3000) - 200
                await asyncio.sleep(0.05)  # the default rate: 20 frames per second
        finally:
            reads.cancel()

    async def count_pages(client: Client) -> None:
        while True:
            got = await client.reader.read(1 << 18)
            if not got:
                return
            answered[0] += got.count(b'"type":"history"')

    tasks = [asyncio.create_task(page(c)) for c in pagers]
    await asyncio.sleep(0.3)
    rtts = await bystander(server, "bypage", seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in pagers:
        client.close()
    print(line("paging (5 x 20 pages/s)", summary(rtts), idle,
               f"  pages answered {answered[0]}"), flush=True)


async def load_resume(server: Server, sessions: int, missed: int,
                      idle: dict[str, float]) -> None:
    held = []
    for i in range(sessions):
        client = await Client.open(server)
        registered = await client.register(f"resumer{i}")
        held.append((f"resumer{i}", registered["session"]))
        client.close()
    await asyncio.sleep(0.5)  # every drop noticed
    watcher = await Client.open(server)
    await watcher.register("resumeseed")
    watcher.send({"type": "broadcast", "text": "mark"})
    since = (await watcher.until("broadcast"))["seq"]
    watcher.close()
    await seed(server, "resumeseed2", missed, 60)

    async def resume(name: str, secret: str) -> float:
        client = await Client.open(server)
        started = time.monotonic()
        client.writer.write(frame({"type": "register", "name": name, "protocol": 1,
                                   "resume": secret, "since": since})
                            + frame({"type": "ping", "token": "caught-up"}))
        tail = b""
        while True:  # the pong comes after the whole replay
            got = await client.reader.read(1 << 18)
            if not got:
                raise ConnectionError(f"{name} closed during its replay")
            if b'"token":"caught-up"' in tail + got:
                break
            tail = got[-32:]
        client.close()
        return time.monotonic() - started

    done = asyncio.Event()
    by = asyncio.create_task(bystander(server, "byresume", 600.0, done))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await asyncio.gather(*(resume(n, s) for n, s in held))
    took = time.monotonic() - started
    done.set()
    rtts = await by
    print(line(f"resume ({sessions} x {missed} at once)", summary(rtts), idle,
               f"  all replays done in {took:.1f} s"), flush=True)


async def load_rooms(server: Server, rooms: int) -> None:
    async def register_cost(tag: str, count: int = 40) -> dict[str, float]:
        costs = []
        for i in range(count):
            client = await Client.open(server)
            started = time.monotonic()
            registered = await client.register(f"reg{tag}{i}")
            costs.append((time.monotonic() - started) * 1000)
            client.close()
        costs_stats = summary(costs)
        costs_stats["listed"] = len(registered["rooms"])
        return costs_stats

    empty = await register_cost("a")
    creator = await Client.open(server)
    await creator.register("roommaker")
    batch = 1000
    for start in range(0, rooms, batch):
        for i in range(start, min(rooms, start + batch)):
            room = f"room{i:06d}"
            creator.send({"type": "join", "room": room})
            creator.send({"type": "broadcast", "room": room, "text": "here"})
            creator.send({"type": "leave", "room": room})
        creator.send({"type": "ping", "token": f"rooms{start}"})
        await creator.until("pong", token=f"rooms{start}")
    creator.close()
    full = await register_cost("b")
    print(f"{'register, empty server':<34} p50 {empty['p50']:8.2f}  p95 {empty['p95']:8.2f}  "
          f"max {empty['max']:8.2f} ms  (rooms listed {empty['listed']})", flush=True)
    print(f"{f'register, {rooms:,} rooms made':<34} p50 {full['p50']:8.2f}  "
          f"p95 {full['p95']:8.2f}  max {full['max']:8.2f} ms  "
          f"(rooms listed {full['listed']})  ratio p50 {full['p50'] / empty['p50']:6.1f}x",
          flush=True)


async def main_async(args: argparse.Namespace) -> int:
    raise_fd_limit(2 * args.sessions + 100)
    cpus = pin_cpus(not args.no_pin)
    server_cpus = cpus[1] if cpus else None
    os.environ["PYTHONPATH"] = str(Path(args.repo).resolve())
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    print(f"repo {args.repo}; {'pinned' if cpus else 'not pinned'}; "
          f"bystander pings every {PING_EVERY * 1000:.0f} ms", flush=True)
    if "flood" in args.only:
        server = await start_server(serve_cmd(), 30.0, server_cpus)  # default rate limit
        try:
            idle = await idle_yardstick(server, args.seconds, "rate-limited server")
            await load_flood(server, args.seconds, idle)
        finally:
            await stop_server(server)
            _problems(server)
    if any(load in args.only for load in ("paging", "resume")):
        server = await start_server(serve_cmd("--rate-limit", "0"), 30.0, server_cpus)
        try:
            idle = await idle_yardstick(server, args.seconds, "server without a rate limit")
            if "paging" in args.only:
                await load_paging(server, args.seconds, idle, args.page_text)
            if "resume" in args.only:
                await load_resume(server, args.sessions, args.missed, idle)
        finally:
            await stop_server(server)
            _problems(server)
    if "rooms" in args.only:
        server = await start_server(serve_cmd("--rate-limit", "0"), 30.0, server_cpus)
        try:
            await load_rooms(server, args.rooms)
        finally:
            await stop_server(server)
            _problems(server)
    return 0


def _problems(server: Server) -> None:
    for problem in server.problems:
        print(f"  server problem: {problem}", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(REPO), help="the qtchat checkout to serve from")
    parser.add_argument("--only", nargs="+", choices=LOADS, default=list(LOADS))
    parser.add_argument("--seconds", type=float, default=5.0, help="bystander time per load")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--missed", type=int, default=3000)
    parser.add_argument("--rooms", type=int, default=30_000)
    parser.add_argument("--page-text", type=int, default=4000,
                        help="emoji per message in the paged history (4 bytes each)")
    parser.add_argument("--no-pin", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
