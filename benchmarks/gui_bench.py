"""GUI benchmark: MessageModel + MessageDelegate in a QListView, offscreen.

Measures (medians of ``--runs`` runs, worst case shown where it matters):

- backlog: append a 10,000-message backlog with ``add_messages`` into a model
  shown in a configured QListView, until the view is laid out and painted
  (target < 150 ms), with the default tail window (the view lays out the
  newest ``DEFAULT_WINDOW`` rows) and with the window off (all 10,000);
- a live message appended to a model of N rows (the relayout a QListView does
  on every insertion);
- memory per stored message at 100,000 messages (tracemalloc: every Python
  object the model keeps, message text included; plus the process RSS delta);
- scrolling: 200 steps of one page each through a 100,000-row model (ms per
  step, worst step);
- prepending a 200-message history page to a 100,000-row model.

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_bench.py``
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication, QListView

from qtchat.gui.delegate import configure_view
from qtchat.gui.models import DEFAULT_WINDOW, MessageModel

log = logging.getLogger(__name__)

_WORDS = [
    "the",
    "a",
    "to",
    "and",
    "of",
    "is",
    "in",
    "it",
    "you",
    "that",
    "for",
    "on",
    "was",
    "with",
    "are",
    "this",
    "be",
    "have",
    "not",
    "at",
    "lunch",
    "meeting",
    "build",
    "test",
    "server",
    "deploy",
    "tomorrow",
    "coffee",
    "ok",
    "thanks",
    "sure",
    "maybe",
    "review",
    "bug",
    "fix",
    "ship",
    "later",
    "lol",
    "nice",
    "great",
    "hmm",
    "why",
    "how",
    "what",
    "when",
    "where",
]
_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


def make_frames(first_seq: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Realistic-ish chat: mostly short lines, some long ones, a few non-ASCII."""
    frames = []
    for seq in range(first_seq, first_seq + count):
        roll = rng.random()
        if roll < 0.75:
            n_words = rng.randint(2, 10)
        elif roll < 0.95:
            n_words = rng.randint(10, 40)
        else:
            n_words = rng.randint(40, 120)
        text = " ".join(rng.choice(_WORDS) for _ in range(n_words))
        if rng.random() < 0.05:
            text += " — ça va? 🙂"
        frames.append(
            {
                "type": "broadcast",
                "seq": seq,
                "ts": f"2024-05-01T12:{(seq // 60) % 60:02d}:{seq % 60:02d}.123Z",
                "from": rng.choice(_NAMES),
                "room": "lobby",
                "text": text,
            }
        )
    return frames


class Bench:
    """One QListView with the delegate, re-used across measurements."""

    def __init__(self, app: QApplication) -> None:
        self.app = app
        self.root = QObject()
        self.view = QListView()
        self.view.resize(700, 800)
        configure_view(self.view)
        self.view.show()
        self.settle()

    def settle(self) -> None:
        """Process events until the view has laid out and painted."""
        for _ in range(3):
            self.app.processEvents()
        model = self.view.model()
        if model is not None and model.rowCount():
            # Forces any posted layout and proves the last row has a place.
            self.view.visualRect(model.index(model.rowCount() - 1))
        self.view.viewport().repaint()

    def new_model(self, window: int | None) -> MessageModel:
        old = self.view.model()
        model = MessageModel(self.root, window=window)
        self.view.setModel(model)
        if old is not None:
            old.deleteLater()
        self.settle()
        return model


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def bench_backlog(bench: Bench, window: int | None, runs: int) -> list[float]:
    rng = random.Random(1)
    times = []
    for _ in range(runs):
        frames = make_frames(1, 10_000, rng)
        model = bench.new_model(window)
        gc.collect()

        def run(model: MessageModel = model, frames: list[dict[str, Any]] = frames) -> None:
            model.add_messages(frames)
            bench.settle()

        times.append(timed(run))
    return times


def fill(model: MessageModel, count: int, rng: random.Random, first_seq: int = 1) -> None:
    for start in range(first_seq, first_seq + count, 10_000):
        model.add_messages(make_frames(start, min(10_000, first_seq + count - start), rng))


def bench_live(bench: Bench, rows: int, window: int | None, runs: int) -> list[float]:
    rng = random.Random(2)
    model = bench.new_model(window)
    fill(model, rows, rng)
    bench.settle()
    times = []
    seq = rows + 1
    for _ in range(runs):
        frame = make_frames(seq, 1, rng)[0]
        seq += 1

        def run(frame: dict[str, Any] = frame) -> None:
            model.add_message(frame)
            bench.settle()

        times.append(timed(run))
    return times


def rss_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_memory(count: int) -> tuple[float, float, float]:
    """(tracemalloc bytes/message, RSS bytes/message, mean text length)."""
    rng = random.Random(3)
    root = QObject()
    gc.collect()
    rss_before = rss_kib()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = MessageModel(root, window=None)
    text_chars = 0
    for start in range(1, count + 1, 10_000):
        frames = make_frames(start, 10_000, rng)
        text_chars += sum(len(f["text"]) for f in frames)
        model.add_messages(frames)
        del frames
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    rss_after = rss_kib()
    assert model.message_count() == count
    result = traced / count, (rss_after - rss_before) * 1024 / count, text_chars / count
    del model, root
    gc.collect()
    return result


def bench_scroll(bench: Bench, rows: int, steps: int) -> tuple[list[float], int]:
    rng = random.Random(4)
    model = bench.new_model(None)
    fill(model, rows, rng)
    bench.settle()
    bar = bench.view.verticalScrollBar()
    page = bar.pageStep()
    bar.setValue(bar.maximum())
    bench.settle()
    times = []
    for _ in range(steps):
        target = max(bar.value() - page, 0)

        def run(target: int = target) -> None:
            bar.setValue(target)
            bench.app.processEvents()
            bench.view.viewport().repaint()

        times.append(timed(run))
    return times, model.rowCount()


def bench_prepend(bench: Bench, rows: int, window: int | None, runs: int) -> list[float]:
    rng = random.Random(5)
    times = []
    for _ in range(runs):
        model = bench.new_model(window)
        fill(model, rows, rng, first_seq=1_000_000)
        bench.settle()
        page = make_frames(1_000_000 - 200, 200, rng)

        def run(model: MessageModel = model, page: list[dict[str, Any]] = page) -> None:
            model.add_messages(page)
            bench.settle()

        times.append(timed(run))
    return times


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}"


def rows_table(table: list[tuple[str, str, str, str]]) -> Iterator[str]:
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for n, row in enumerate(table):
        yield "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        if n == 0:
            yield "  ".join("-" * w for w in widths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (≥ 3)")
    parser.add_argument("--big", type=int, default=100_000, help="rows of the large model")
    args = parser.parse_args(argv)
    runs = max(args.runs, 3)
    big = args.big

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    bench = Bench(app)
    table: list[tuple[str, str, str, str]] = [("measurement", "median", "worst", "unit")]

    def add(name: str, values: list[float], unit: str = "ms") -> None:
        table.append((name, _fmt(values).strip(), f"{max(values):.1f}", unit))

    win = DEFAULT_WINDOW
    k = big // 1000
    add(f"10k backlog shown (default window {win})", bench_backlog(bench, win, runs))
    add("10k backlog shown (window off: 10k rows)", bench_backlog(bench, None, runs))
    add(f"live message, {win} rows shown", bench_live(bench, win, win, runs))
    add("live message, 10k rows shown", bench_live(bench, 10_000, None, runs))
    add(f"live message, {k}k stored, window {win}", bench_live(bench, big, win, runs))
    add(f"live message, {k}k rows shown", bench_live(bench, big, None, runs))
    add(f"prepend 200 to {k}k, window {win} (hidden)", bench_prepend(bench, big, win, runs))
    add(f"prepend 200 to {k}k rows shown", bench_prepend(bench, big, None, runs))
    steps, scrolled_rows = bench_scroll(bench, big, 200)
    add(f"scroll 1 page, {scrolled_rows // 1000}k rows (200 steps)", steps)

    # RSS only means something the first time: later runs reuse the freed arenas.
    mems = [bench_memory(big) for _ in range(runs)]
    traced = [m[0] for m in mems]
    rss = [mems[0][1]]
    table.append(
        (
            f"memory per message at {big // 1000}k (tracemalloc)",
            f"{statistics.median(traced):.0f}",
            f"{max(traced):.0f}",
            f"bytes (text avg {mems[0][2]:.0f} chars)",
        )
    )
    table.append(
        (
            f"memory per message at {big // 1000}k (RSS delta, 1st run)",
            f"{rss[0]:.0f}",
            "",
            "bytes",
        )
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"qtchat gui_bench: {runs} runs each, Qt platform {app.platformName()}, "
        f"{os.cpu_count()} CPUs, load average {load_before:.2f} before / {load:.2f} after"
        " (other work on the machine inflates every figure)"
    )
    for line in rows_table(table):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
