"""Private conversations that last (PROTOCOL-FEATURES §1): what the identity queries cost.

Fills a history (a temporary file, retention high enough to keep everything) with N
messages (default 200,000): 30 % whispers among 2,000 identities (each with a dozen
usual partners, some whispers to people without identity), the rest in 40 rooms. Then,
for 300 identities picked at random, times:

- ``conversations(identity)``: what every ``registered`` of an identity client costs;
- ``conversation_page(me, them)``: the newest page (50) of ``history {with}``, by
  identity, and an older page (``before`` = the middle of the conversation);

and prints the query plans (the identity indexes must be used, not a scan of the
whisper bucket). Yardstick, measured in the same run: a room's newest page of 50
(``page``), the read every ``joined`` and room ``history`` does. Figures are
milliseconds and ratios to the yardstick (this VM's speed varies from run to run).

    .venv/bin/python benchmarks/conversations_bench.py            # 200,000 messages
    .venv/bin/python benchmarks/conversations_bench.py -n 50000   # quicker
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qtchat.server.identity import hash_identity, new_identity
from qtchat.server.store import MessageStore, Party

IDENTITIES = 2_000
ROOMS = 40


def fill(store: MessageStore, n: int, rng: random.Random) -> list[str]:
    ids = [hash_identity(new_identity()) for _ in range(IDENTITIES)]
    partners = {i: rng.sample(range(IDENTITIES), 12) for i in range(IDENTITIES)}
    for seq in range(1, n + 1):
        if rng.random() < 0.3:
            a = rng.randrange(IDENTITIES)
            b = rng.choice(partners[a])
            anonymous = rng.random() < 0.05
            store.add(ts="2026-12-03T12:00:00.000Z", bucket="", room=None, sender=f"u{a}",
                      sender_sid=a + 1, recipient=f"u{b}", recipient_sid=b + 1,
                      text=f"whisper {seq}", sender_identity=ids[a],
                      recipient_identity=None if anonymous else ids[b])
        else:
            room = f"room{rng.randrange(ROOMS)}"
            store.add(ts="2026-12-03T12:00:00.000Z", bucket=room, room=room, sender="u1",
                      sender_sid=1, text=f"message {seq}")
        if seq % 20_000 == 0:
            store.commit()
    store.commit()
    return ids


def timed(call, *args):
    """(milliseconds, result) of one call."""
    start = time.perf_counter()
    result = call(*args)
    return (time.perf_counter() - start) * 1000, result


def report(label: str, times: list[float], yardstick: float) -> None:
    times = sorted(times)
    p50 = statistics.median(times)
    p95 = times[int(len(times) * 0.95) - 1]
    print(f"{label:42s} p50 {p50:7.3f} ms ({p50 / yardstick:5.2f}x)   "
          f"p95 {p95:7.3f} ms ({p95 / yardstick:5.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="messages in the history")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = MessageStore(Path(tmp) / "history.sqlite3", retention=args.n + 1)
        started = time.perf_counter()
        ids = fill(store, args.n, rng)
        print(f"{args.n:,} messages written in {time.perf_counter() - started:.1f} s")
        db = store._db
        # The plans, as SQLite runs them (every statement of the run is traced).
        statements: list[str] = []
        db.set_trace_callback(statements.append)
        store.conversation_page(Party(identity=ids[0]), Party(identity=ids[1]), None, 50)
        store.conversations(ids[0])
        db.set_trace_callback(None)
        for sql in statements:
            if sql.lstrip().upper().startswith("SELECT"):
                plan = [row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")]
                print(f"plan: {'; '.join(plan)}")
        picks = rng.sample(range(IDENTITIES), 300)
        room_pages = [timed(store.page, f"room{rng.randrange(ROOMS)}", None, 50)[0]
                      for _ in range(300)]
        yardstick = statistics.median(room_pages)
        print(f"yardstick: a room's newest page of 50, p50 {yardstick:.3f} ms")
        listing, newest, older, sizes = [], [], [], []
        for index in picks:
            mine = Party(identity=ids[index])
            took, found = timed(store.conversations, ids[index])
            listing.append(took)
            sizes.append(len(found))
            partner = next((pid for pid, _name, _seq in found if pid is not None), None)
            if partner is None:
                continue
            other = Party(identity=partner)
            took, page = timed(store.conversation_page, mine, other, None, 50)
            newest.append(took)
            if page:
                middle = page[len(page) // 2].seq
                older.append(timed(store.conversation_page, mine, other, middle, 50)[0])
        print(f"conversations per identity: median {statistics.median(sizes):.0f}")
        report("registered.conversations (50 newest)", listing, yardstick)
        report("history {with}: newest page of 50", newest, yardstick)
        report("history {with}: an older page", older, yardstick)
        report("yardstick itself", room_pages, yardstick)
        store.close()


if __name__ == "__main__":
    main()
