"""What watching a resume's replay costs (``ServerCore.watch_replay``: an edit or delete
made while it runs reaches the resumer): the replay of N stored messages read and encoded
as ``SessionFeature._replay_turn`` does, bare (the yardstick, same run) and watched, with
no change pending (every replay) and with changes pending for 1 % of it.

    /work/main/.venv/bin/python benchmarks/replay_watch_bench.py [N]
"""

from __future__ import annotations

import sys
import time

from qtchat.server.core import Replay
from qtchat.server.store import MessageStore


def main(count: int = 20_000) -> None:
    store = MessageStore(None, retention=count + 1)
    for i in range(count):
        store.add(ts="2026-12-03T12:00:00.000Z", bucket="lobby", room="lobby", sender="Ann",
                  sender_sid=1, text=f"{i} " + "x" * 80)
    store.commit()

    def bare() -> int:
        return sum(len(m.encode()) for m in store.replay(["lobby"], 2, 0, batch=100))

    def watched(changed: int) -> int:
        replay = Replay(store.replay(["lobby"], 2, 0, batch=100), 0)
        for seq in range(1, count + 1, max(1, count // changed) if changed else count + 1):
            replay.changes.setdefault(seq, []).append(
                lambda m: m._replace(text="fixed", edited="2026-12-03T12:01:00.000Z"))
        return sum(len(m.encode()) for m in replay)

    runs: dict[str, list[float]] = {"bare": [], "watched": [], "watched, 1% changed": []}
    for _ in range(7):  # interleaved, so a slower moment of the VM hits all alike
        for name, run in (("bare", bare), ("watched", lambda: watched(0)),
                          ("watched, 1% changed", lambda: watched(count // 100))):
            start = time.perf_counter()
            run()
            runs[name].append(time.perf_counter() - start)
    yard = min(runs["bare"])
    print(f"replay of {count:,} messages (read from SQLite + encoded), best of 7:")
    for name, times in runs.items():
        best = min(times)
        print(f"  {name:22s} {best * 1000:8.1f} ms  {count / best:10,.0f} msg/s  "
              f"x{best / yard:.3f} of bare")
    store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
