"""GUI benchmark: MessageModel in a MessageView, offscreen, beside yardsticks.

Measures (medians of ``--runs`` runs, worst case beside them):

- a live message appended to a model of 1,000, 100,000 and 1,000,000 stored rows,
  until the view is laid out and its viewport repainted (target ≤ 1 ms, flat);
- a 10,000-message backlog given to an empty model on screen, until laid out and
  painted (target ≤ 50 ms);
- scrolling one page anywhere in 1,000,000 rows: a jump to a random place (rows
  never shown before: measured, laid out, painted), a page up from there at once, and
  another page up after the reader has paused (the view lays out the pages around it
  once still: ``MessageView.warm_ms``, not timed) (target ≤ 8 ms);
- a 200-message history page prepended to 1,000,000 rows while the reader is in
  the middle (the view stays still);
- memory per stored message at ``--memory-rows`` (tracemalloc: every Python object
  the model and the view keep, message text included; target ≤ 400 bytes).

The machine's speed varies from run to run (2 cores shared), so two yardsticks are
measured in the same run and every time is also given as a ratio to the first:

- ``repaint``: a bare QWidget of the view's size repainting its background;
- ``row text``: laying out one typical row's text (QTextLayout, as the delegate does);
- ``scroll bar``: the view's own QScrollBar repainting (Fusion, offscreen: part of every
  scroll, and the reason the bar lags rows streaming in at the bottom by up to 50 ms).

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_bench.py``
(``--rows 1000 100000 1000000``, ``--runs 5``, ``--memory-rows 1000000``).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication, QWidget

from qtchat.gui.message_view import MessageView
from qtchat.gui.models import MessageModel
from qtchat.protocol.server_frames import Message

_WORDS = [
    "the", "a", "to", "and", "of", "is", "in", "it", "you", "that", "for", "on", "was",
    "with", "are", "this", "be", "have", "not", "at", "lunch", "meeting", "build", "test",
    "server", "deploy", "tomorrow", "coffee", "ok", "thanks", "sure", "maybe", "review",
    "bug", "fix", "ship", "later", "lol", "nice", "great", "hmm", "why", "how", "what",
    "when", "where",
]
_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


def make_frames(first_seq: int, count: int, rng: random.Random) -> list[Message]:
    """Realistic-ish chat: mostly short lines, some long ones, a few non-ASCII."""
    frames = []
    choice, rand, randint = rng.choice, rng.random, rng.randint
    for seq in range(first_seq, first_seq + count):
        roll = rand()
        if roll < 0.75:
            n_words = randint(2, 10)
        elif roll < 0.95:
            n_words = randint(10, 40)
        else:
            n_words = randint(40, 120)
        text = " ".join(choice(_WORDS) for _ in range(n_words))
        if rand() < 0.05:
            text += " — ça va? 🙂"
        frames.append(
            Message(
                seq=seq,
                ts=f"2024-05-01T12:{(seq // 60) % 60:02d}:{seq % 60:02d}.123Z",
                sender=choice(_NAMES),
                room="lobby",
                text=text,
            )
        )
    return frames


def fill(model: MessageModel, count: int, rng: random.Random, first_seq: int = 1) -> None:
    for start in range(first_seq, first_seq + count, 10_000):
        model.add_messages(make_frames(start, min(10_000, first_seq + count - start), rng))


class Bench:
    """One shown MessageView, re-used across measurements."""

    def __init__(self, app: QApplication) -> None:
        self.app = app
        self.root = QObject()
        self.view = MessageView()
        self.view.resize(700, 800)
        self.view.show()
        self.settle()

    def settle(self) -> None:
        """Process events until the view has laid out and painted what changed."""
        self.app.processEvents()  # runs the paint the view asked for (update())
        if self.view._dirty:  # nothing asked yet: paint now, so the figure includes it
            self.view.viewport().repaint()

    def new_model(self) -> MessageModel:
        old = self.view.model()
        model = MessageModel(self.root)
        self.view.setModel(model)
        if old is not None:
            old.deleteLater()
        self.settle()
        return model


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


# ------------------------------------------------------------------ yardsticks


def yardstick_repaint(app: QApplication, runs: int) -> list[float]:
    widget = QWidget()
    widget.resize(700, 800)
    widget.setAutoFillBackground(True)
    widget.show()
    app.processEvents()
    times = [timed(widget.repaint) for _ in range(runs * 20)]
    widget.close()
    return times


def yardstick_row_text(bench: Bench, runs: int) -> list[float]:
    model = bench.new_model()
    model.add_messages(make_frames(1, 1, random.Random(9)))
    entry = model.entry(0)
    delegate = bench.view.delegate()
    return [timed(lambda: delegate._build(entry)) for _ in range(runs * 20)]


# ---------------------------------------------------------------- measurements


def bench_live(bench: Bench, model: MessageModel, runs: int, rng: random.Random) -> list[float]:
    bench.view.scroll_to_bottom()
    bench.settle()
    seq = (model.newest_seq() or 0) + 1
    times = []
    for _ in range(runs * 4):
        frame = make_frames(seq, 1, rng)[0]
        seq += 1

        def run(frame: Message = frame) -> None:
            model.add_message(frame)
            bench.settle()

        times.append(timed(run))
    return times


def bench_backlog(bench: Bench, runs: int) -> list[float]:
    rng = random.Random(1)
    times = []
    for _ in range(runs):
        frames = make_frames(1, 10_000, rng)
        model = bench.new_model()
        gc.collect()

        def run(model: MessageModel = model, frames: list[Message] = frames) -> None:
            model.add_messages(frames)
            bench.settle()

        times.append(timed(run))
    return times


def bench_scroll(bench: Bench, steps: int, rng: random.Random
                 ) -> tuple[list[float], list[float], list[float]]:
    """(random jumps, a page up at once after each jump, then one more page up after a
    pause): the first two lay out a page never shown; the pause lets the view lay out
    the pages around the screen, as a person reading it would give it time to."""
    bar = bench.view.verticalScrollBar()
    view = bench.view
    jumps, pages, paused = [], [], []
    for _ in range(steps):
        target = rng.randrange(bar.pageStep(), max(bar.maximum(), bar.pageStep() + 1))

        def jump(target: int = target) -> None:
            bar.setValue(target)
            bench.settle()

        jumps.append(timed(jump))

        def page_up() -> None:
            bar.setValue(bar.value() - bar.pageStep())
            bench.settle()

        pages.append(timed(page_up))
        deadline = time.perf_counter() + 2.0
        while view._warm_todo != [] and time.perf_counter() < deadline:  # a reader's pause
            bench.app.processEvents()
            time.sleep(0.001)
        paused.append(timed(page_up))
    return jumps, pages, paused


def bench_prepend(bench: Bench, model: MessageModel, runs: int, rng: random.Random) -> list[float]:
    bar = bench.view.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)
    bench.settle()
    times = []
    oldest = model.oldest_seq() or 0
    for _ in range(runs):
        page = make_frames(oldest - 200, 200, rng)
        oldest -= 200
        top = bench.view.visible_rows()[0]
        top_uid = model.entry(top[0]).uid

        def run(page: list[Message] = page) -> None:
            model.add_messages(page)
            bench.settle()

        times.append(timed(run))
        row, rect = bench.view.visible_rows()[0]
        assert model.entry(row).uid == top_uid and rect == top[1], "the view moved"
    return times


def bench_memory(count: int) -> tuple[float, float, float]:
    """(bytes/message for model + view, of which the view, mean text length)."""
    rng = random.Random(3)
    root = QObject()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = MessageModel(root)
    text_chars = 0
    for start in range(1, count + 1, 10_000):
        frames = make_frames(start, min(10_000, count + 1 - start), rng)
        text_chars += sum(len(f.text) for f in frames)
        model.add_messages(frames)
        del frames
    gc.collect()
    model_only = tracemalloc.get_traced_memory()[0] - base
    view = MessageView(model)
    view.resize(700, 800)
    view.ensure_laid_out()
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert model.message_count() == count
    result = traced / count, (traced - model_only) / count, text_chars / count
    view.deleteLater()
    del model, root, view
    gc.collect()
    return result


# ---------------------------------------------------------------------- report


def rows_table(table: list[tuple[str, ...]]) -> Iterator[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        yield "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        if n == 0:
            yield "  ".join("-" * w for w in widths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (≥ 3)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000, 1_000_000],
                        help="stored rows for the live-message and scroll measurements")
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--scroll-steps", type=int, default=100)
    args = parser.parse_args(argv)
    runs = max(args.runs, 3)

    load_before = os.getloadavg()[0]
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    bench = Bench(app)
    rng = random.Random(2)

    repaint = yardstick_repaint(app, runs)
    yard = statistics.median(repaint)
    table: list[tuple[str, ...]] = [("measurement", "median", "worst", "unit", "× repaint")]

    def add(name: str, values: list[float], target: str = "") -> None:
        med = statistics.median(values)
        table.append((name, f"{med:.3f}", f"{max(values):.3f}", "ms",
                      f"{med / yard:.1f}" + (f"  (target {target})" if target else "")))

    add("yardstick: bare QWidget repaint, 700x800", repaint)
    add("yardstick: one row's text laid out", yardstick_row_text(bench, runs))
    bar = bench.view.verticalScrollBar()
    bar_times = [timed(bar.repaint) for _ in range(runs * 20)]
    add("yardstick: the view's scroll bar repainted", bar_times)
    add("10k backlog shown", bench_backlog(bench, runs), "≤ 50 ms")

    model = bench.new_model()
    stored = 0
    base = 10_000_000  # room below for the prepended pages
    for rows in sorted(args.rows):
        fill(model, rows - stored, rng, first_seq=base + stored + 1)
        stored = rows
        bench.settle()
        add(f"live message at {rows:,} rows", bench_live(bench, model, runs, rng), "≤ 1 ms")
    big = stored
    jumps, pages, paused = bench_scroll(bench, args.scroll_steps, rng)
    add(f"jump to a random page of {big:,} rows", jumps, "≤ 8 ms")
    add(f"page up anywhere in {big:,} rows, at once", pages, "≤ 8 ms")
    add(f"page up anywhere in {big:,} rows, after a pause", paused, "≤ 8 ms")
    add(f"prepend 200 older to {big:,} rows (view still)",
        bench_prepend(bench, model, runs, rng))
    bench.view.setModel(None)
    del model
    gc.collect()

    total, view_part, text = bench_memory(args.memory_rows)
    table.append((f"memory per message at {args.memory_rows:,} (tracemalloc)", f"{total:.0f}",
                  "", f"bytes (view {view_part:.1f}; text avg {text:.0f} chars)",
                  "(target ≤ 400 B)"))
    load = os.getloadavg()[0]
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
