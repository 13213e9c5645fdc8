#!/usr/bin/env python3
"""What a chess move costs the host, beside what a whisper costs, in the same run.

A move is checked by python-chess, stored (the game's record, committed before anyone
is told: ``Core.commit_now``, so a full disk refuses it) and sent to both players. A
whisper is the yardstick: also stored, committed and sent to two connections (the
recipient and the echo). Both are driven through ``ServerCore`` (no Qt, no sockets) on a
history file in a temporary directory (SQLite WAL, as ``qtchat serve`` keeps it), one
pass per round, ``--games`` games moving in each pass (the host's event loop hands it
every frame that arrived together), then the same number of whispers from the same
connections. Printed: microseconds per move and per whisper (median of ``--repeat``
runs), and their ratio (this VM's speed varies from run to run; the ratio less so).

    .venv/bin/python benchmarks/chess_bench.py                 # 1, 10 and 100 games
    .venv/bin/python benchmarks/chess_bench.py --games 50 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qtchat.server.config import ServerConfig
from qtchat.server.core import ServerCore
from qtchat.server.store import MessageStore

# A real opening (the Ruy Lopez, closed), 25 plies: no repetition, nothing ends it.
LINE = ("e2e4", "e7e5", "g1f3", "b8c6", "f1b5", "a7a6", "b5a4", "g8f6", "e1g1", "f8e7",
        "f1e1", "b7b5", "a4b3", "d7d6", "c2c3", "e8g8", "h2h3", "c6a5", "b3c2", "c7c5",
        "d2d4", "d8c7", "b1d2", "c5d4", "c3d4")


class Handle:
    def __init__(self, peer: str) -> None:
        self.peer = peer


def line(**frame: object) -> bytes:
    return json.dumps(frame).encode() + b"\n"


class Host:
    """A ServerCore on a history file, and its connections' output read as frames."""

    def __init__(self, data_dir: Path) -> None:
        config = ServerConfig(host="127.0.0.1", port=0, rate_limit=0.0, data_dir=data_dir)
        self.now = 1000.0
        self.store = MessageStore(data_dir / "history.db")
        self.core = ServerCore(config, self.store, now=self.now)

    def end_pass(self) -> None:
        done = self.core.end_pass()
        for conn in done.dirty:
            conn.out.clear()  # a socket write, as far as the core is concerned
        for conn in done.watch:
            self.core.drained(conn, self.now)

    def frames_of(self, conn, kind: str) -> list[dict]:
        found = [json.loads(data) for data in conn.out]
        return [f for f in found if f["type"] == kind]

    def connect(self, name: str):
        conn = self.core.open(Handle(f"10.0.0.1:{len(name)}"), self.now)
        self.core.feed(conn, line(type="register", name=name, protocol=1,
                                  features=["chess"]), self.now)
        self.end_pass()
        return conn


def run(games: int, data_dir: Path) -> tuple[float, float]:
    """Microseconds per move and per whisper for ``games`` games moving together."""
    host = Host(data_dir)
    core = host.core
    pairs = []
    for number in range(games):
        white, black = host.connect(f"W{number}"), host.connect(f"B{number}")
        core.feed(white, line(type="game_offer", to=f"B{number}", color="white"), host.now)
        (offered,) = host.frames_of(black, "game_offered")
        host.end_pass()
        core.feed(black, line(type="game_accept", game=offered["game"]), host.now)
        host.end_pass()
        pairs.append((white, black, offered["game"], f"W{number}", f"B{number}"))
    started = time.perf_counter()
    for ply, uci in enumerate(LINE):
        for white, black, game, _w, _b in pairs:
            core.feed(white if ply % 2 == 0 else black, line(type="game_move", game=game,
                                                             move=uci), host.now)
        host.end_pass()
    moves = time.perf_counter() - started
    started = time.perf_counter()
    for ply in range(len(LINE)):
        for white, black, _game, white_name, black_name in pairs:
            sender, to = (white, black_name) if ply % 2 == 0 else (black, white_name)
            core.feed(sender, line(type="whisper", to=to, text=f"thinking about ply {ply}"),
                      host.now)
        host.end_pass()
    whispers = time.perf_counter() - started
    stored = sum(len(r["moves"]) for _w, _b, r in host.store.open_games())
    host.store.close()
    assert stored == len(LINE) * games, "every move was stored"
    count = len(LINE) * games
    return moves / count * 1e6, whispers / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{len(LINE)} plies a game; one pass per round; median of {args.repeat} runs")
    for games in args.games:
        move_us, whisper_us = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="qtchat-chess-bench-") as tmp:
                move, whisper = run(games, Path(tmp))
            move_us.append(move)
            whisper_us.append(whisper)
        move, whisper = statistics.median(move_us), statistics.median(whisper_us)
        print(f"{games:4d} games moving together: a move {move:8.1f} µs, "
              f"a whisper (yardstick) {whisper:8.1f} µs: a move = {move / whisper:.2f}× "
              "a whisper")


if __name__ == "__main__":
    main()
