"""Search over a big history: p95 query time and what the index costs on disk.

Writes a version 1 history of N messages (default 1,000,000) of generated chat text
(Zipf-distributed words, some accents, 3% Japanese/Chinese lines, 40 rooms and
whispers), opens it with ``MessageStore`` so that migration step 2 builds the index
(timed), then runs queries the way a user would (one to three words, the last one a
prefix being typed; CJK parts; a few that find nothing) in the scope of one person: 3
rooms and their own whispers, 20 results a page. Edits and deletes are then made and
checked to be found by their new words only.

Yardsticks, measured in the same run: a LIKE scan of 10,000 rows (what a search
without an index costs per 10,000 messages) and a plain lookup of one message by seq.
Figures are printed as milliseconds and as ratios to the yardsticks (this VM's speed
varies from run to run).

    .venv/bin/python benchmarks/search_bench.py            # 1,000,000 messages, ~3 min
    .venv/bin/python benchmarks/search_bench.py -n 100000  # quicker
"""

from __future__ import annotations

import argparse
import itertools
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qtchat.server.store import _V1_TABLES, MessageStore

_SYLLABLES = ("ka", "ri", "to", "me", "sa", "lo", "ne", "vi", "da", "po", "ru", "che", "ta", "mi",
              "ko", "se", "ban", "dor", "fel", "gin", "hal", "jor", "kel", "mun", "nor", "pel",
              "quin", "ros", "sul", "tav", "ber",)
_COMMON = ("the", "a", "to", "is", "it", "and", "of", "you", "i", "that", "in", "for", "on", "we",
           "be", "this", "have", "with", "not", "are", "at", "was", "do", "can", "but", "so",
           "just", "what", "if", "now", "ok", "yes", "no",)
_ACCENTED = ("café", "naïve", "Straße", "résumé", "über", "déjà", "crème", "façade", "jalapeño",
             "São", "Zürich",)
_CJK = "明日東京大阪会議資料確認予定時間場所今日我们的是不了人在有这中大来上个国到说"
_KANA = ("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほ"
         "まみむめもやゆよらりるれろわをん")


def vocabulary(rng: random.Random, size: int = 20_000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    ranked = sorted(words)
    rng.shuffle(ranked)  # a word's frequency has nothing to do with its spelling
    return ranked


def write_v1_history(path: Path, n: int, rng: random.Random) -> tuple[list[str], int]:
    """A version 1 history (the schema before search) of n messages; returns the
    vocabulary and the bytes of text."""
    vocab = vocabulary(rng)
    cum = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocab))))  # Zipf
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _V1_TABLES:
        db.execute(statement)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN")
    text_bytes, batch = 0, []
    for seq in range(1, n + 1):
        text = _text(rng, vocab, cum)
        text_bytes += len(text.encode())
        if rng.random() < 0.1:  # whispers among 200 sessions
            a, b = rng.sample(range(1, 201), 2)
            batch.append((seq, "2026-01-01T00:00:00Z", "", None, f"u{a}", a, f"u{b}", b,
                          text, None))
        else:
            room = f"room{rng.randint(0, 39)}"
            batch.append((seq, "2026-01-01T00:00:00Z", room, room, "u1", 1, None, None,
                          text, None))
        if len(batch) == 10_000:
            db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
            batch.clear()
    db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", batch)
    db.execute("INSERT INTO meta VALUES ('last_seq', ?)", (n,))
    db.execute("COMMIT")
    db.execute("PRAGMA user_version=1")
    db.close()
    return vocab, text_bytes


def _text(rng: random.Random, vocab: list[str], cum: list[float]) -> str:
    """One chat line: mostly short, common words, a long tail of rare ones."""
    if rng.random() < 0.03:
        pool = _CJK + _KANA
        return "".join(rng.choice(pool) for _ in range(rng.randint(6, 30)))
    count = max(1, int(rng.lognormvariate(2.0, 0.6)))
    parts = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.35:
            parts.append(rng.choice(_COMMON))
        elif roll < 0.37:
            parts.append(rng.choice(_ACCENTED))
        elif roll < 0.39:
            parts.append(str(rng.randint(0, 9999)))
        else:
            parts.append(rng.choices(vocab, cum_weights=cum)[0])
    if rng.random() < 0.2:
        parts[0] = parts[0].capitalize()
    return " ".join(parts) + rng.choice(("", "", ".", "!", "?", " :)"))


def queries(rng: random.Random, vocab: list[str], count: int) -> list[str]:
    """What people type: one to three words, the last often cut short (still typing)."""
    made = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.08:  # Japanese/Chinese: 2 to 4 characters
            pool = _CJK + _KANA
            made.append("".join(rng.choice(pool) for _ in range(rng.randint(2, 4))))
            continue
        if roll < 0.12:
            made.append(rng.choice(_ACCENTED).upper().replace("É", "E"))
            continue
        # Mostly the words people remember: the frequent end of the vocabulary.
        words = [vocab[min(int(rng.paretovariate(0.6)) - 1, len(vocab) - 1)]
                 for _ in range(rng.choice((1, 1, 2, 2, 3)))]
        if rng.random() < 0.5:
            words[-1] = words[-1][:max(2, len(words[-1]) - rng.randint(1, 3))]
        if rng.random() < 0.1:
            words.insert(0, rng.choice(_COMMON))
        made.append(" ".join(words))
    return made


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="messages stored")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="qtchat-search-") as tmp:
        path = Path(tmp) / "history.sqlite3"
        started = time.perf_counter()
        vocab, text_bytes = write_v1_history(path, args.n, rng)
        print(f"history: {args.n:,} messages, {text_bytes / 1e6:.1f} MB of text "
              f"(written in {time.perf_counter() - started:.0f} s)")

        started = time.perf_counter()
        store = MessageStore(path)  # migration step 2 builds the index
        built = time.perf_counter() - started
        db = store._db
        sizes = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
        words = sum(v for k, v in sizes.items() if k.startswith("messages_words"))
        cjk = sum(v for k, v in sizes.items() if k.startswith("messages_cjk"))
        table = sizes.get("messages", 0)
        print(f"index built by the migration in {built:.1f} s "
              f"({built / args.n * 1e6:.1f} µs a message)")
        print(f"index size: words {words / 1e6:.1f} MB + trigram {cjk / 1e6:.1f} MB = "
              f"{(words + cjk) / 1e6:.1f} MB = {(words + cjk) / text_bytes:.2f}× the text "
              f"(target ≤ 1.5×); the messages table itself: {table / 1e6:.1f} MB")

        # Yardsticks.
        last = store.last_seq
        like = []
        for word in rng.sample(vocab[:200], 30):
            t = time.perf_counter()
            db.execute("SELECT COUNT(*) FROM messages WHERE seq>? AND text LIKE ?",
                       (last - 10_000, f"%{word}%")).fetchone()
            like.append(time.perf_counter() - t)
        like_ms = statistics.median(like) * 1000
        lookups = []
        for _ in range(2000):
            seq = rng.randint(1, last)
            t = time.perf_counter()
            store.message_by_seq(seq)
            lookups.append(time.perf_counter() - t)
        lookup_ms = statistics.median(lookups) * 1000
        print(f"yardsticks: LIKE scan of 10,000 rows {like_ms:.2f} ms (median); "
              f"message_by_seq {lookup_ms * 1000:.1f} µs (median)")

        rooms = ["room3", "room17", "room29"]
        times, hits = [], 0
        for query in queries(rng, vocab, args.queries):
            t = time.perf_counter()
            found, _more = store.search(query, rooms, whisper_sid=42, limit=20)
            times.append(time.perf_counter() - t)
            hits += bool(found)
        p50, p95, worst = (percentile(times, p) * 1000 for p in (50, 95, 100))
        print(f"search ({args.queries} queries, 3 rooms + own whispers, 20 a page, "
              f"{hits} found something): p50 {p50:.2f} ms, p95 {p95:.2f} ms "
              f"(target ≤ 50 ms), max {worst:.1f} ms")
        print(f"  p95 = {p95 / like_ms:.2f}× a LIKE scan of 10,000 rows "
              f"= {p95 / lookup_ms:.0f}× a lookup by seq")
        # Paging: the next page of a common word.
        page, _ = store.search("the", rooms, whisper_sid=42, limit=20)
        t = time.perf_counter()
        store.search("the", rooms, whisper_sid=42, before=page[-1].seq, limit=20)
        print(f"  next page of 'the': {(time.perf_counter() - t) * 1000:.2f} ms")

        # Edits and deletes keep the index in step.
        targets = [m.seq for m in store.search("the", rooms, limit=50)[0]]
        t = time.perf_counter()
        for n, seq in enumerate(targets):
            if n % 2:
                store.edit_message(seq, f"zzedited{n} is new text", "2026-01-02T00:00:00Z")
            else:
                store.delete_message(seq, "u1", "2026-01-02T00:00:00Z")
        store.commit()
        per_change = (time.perf_counter() - t) / len(targets) * 1000
        edited = {m.seq for m in store.search("zzedited", rooms, limit=50)[0]}
        assert edited == set(targets[1::2]), "an edit is not found by its new words"
        assert not set(targets) & {m.seq for m in store.search("the", rooms, limit=50)[0]}
        print(f"edits and deletes: {len(targets)} in one commit, {per_change:.2f} ms each; "
              "edited ones found by their new words only, deleted ones never")
        store.close()


if __name__ == "__main__":
    main()
