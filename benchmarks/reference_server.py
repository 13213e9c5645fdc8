#!/usr/bin/env python3
"""The yardstick: a plain single-threaded asyncio JSON-lines chat server.

The performance issue quotes its targets against ancestors measured on another
machine, one of them "a plain single-threaded asyncio JSON-lines server" (0.74 ms
one-message-at-a-time p50, 212k deliveries/s at N = 200), and says the ratios hold
across machines. This is that server, rebuilt so the ratio can be measured here, on
the same load generator, in the same run::

    .venv/bin/python benchmarks/loadgen.py --reference -w B -n 200

It is deliberately plain: an ``asyncio.Protocol`` per connection, ``json.loads`` per
line, one ``json.dumps`` per message and one ``transport.write`` per recipient (which
asyncio turns into one ``send()`` at once). No history, no seq persistence, no
validation beyond what the load generator needs. It speaks just enough of protocol v1
for ``loadgen.py``: ``register`` (answered with ``registered``; others get
``user_joined``), ``broadcast`` to the lobby, ``ping``/``pong`` and ``bye``. It is not
part of qtchat and nothing else uses it.

    .venv/bin/python benchmarks/reference_server.py [--port 0]

It prints ``qtchat: serving "reference" on 127.0.0.1:PORT`` (the line loadgen waits
for) and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import signal


class Room:
    def __init__(self) -> None:
        self.members: dict[str, Client] = {}
        self.seq = 0


class Client(asyncio.Protocol):
    def __init__(self, room: Room) -> None:
        self.room = room
        self.name: str | None = None
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                frame = json.loads(line)
            except ValueError:
                self.send({"type": "error", "code": "bad_frame", "message": "not JSON"})
                continue
            self.handle(frame)

    def send(self, frame: dict) -> None:
        assert self.transport is not None
        self.transport.write(json.dumps(frame, separators=(",", ":")).encode() + b"\n")

    def handle(self, frame: dict) -> None:
        kind = frame.get("type")
        members = self.room.members
        if kind == "register" and self.name is None:
            name = str(frame.get("name", ""))
            if not name or name in members:
                self.send({"type": "error", "code": "name_taken", "message": name})
                return
            line = (json.dumps({"type": "user_joined", "name": name, "room": "lobby"},
                               separators=(",", ":")) + "\n").encode()
            for other in members.values():
                assert other.transport is not None
                other.transport.write(line)
            self.name = name
            members[name] = self
            self.send({"type": "registered", "name": name, "session": "-", "protocol": 1,
                       "users": list(members), "rooms": ["lobby"], "resumed": False,
                       "server": {"name": "reference", "version": "asyncio"}})
        elif kind == "broadcast" and self.name is not None:
            self.room.seq += 1
            now = datetime.datetime.now(datetime.UTC)
            line = (json.dumps({"type": "broadcast", "seq": self.room.seq,
                                "ts": now.isoformat(timespec="milliseconds")[:-6] + "Z",
                                "from": self.name, "room": "lobby",
                                "text": str(frame.get("text", ""))},
                               separators=(",", ":")) + "\n").encode()
            for member in members.values():
                assert member.transport is not None
                member.transport.write(line)
        elif kind == "ping":
            self.send({"type": "pong", "token": frame.get("token")})
        elif kind == "bye":
            assert self.transport is not None
            self.transport.close()
        else:
            self.send({"type": "error", "code": "unknown_type", "message": str(kind)})

    def connection_lost(self, exc: Exception | None) -> None:
        if self.name is not None and self.room.members.get(self.name) is self:
            del self.room.members[self.name]
            line = (json.dumps({"type": "user_left", "name": self.name, "room": "lobby",
                                "reason": "disconnected"}, separators=(",", ":"))
                    + "\n").encode()
            for member in self.room.members.values():
                assert member.transport is not None
                member.transport.write(line)


async def serve(host: str, port: int) -> None:
    room = Room()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(room), host, port, backlog=4096)
    bound = server.sockets[0].getsockname()
    print(f'qtchat: serving "reference" on {bound[0]}:{bound[1]}', flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
