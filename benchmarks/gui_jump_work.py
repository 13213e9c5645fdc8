"""The work of one page jump in ``gui_bench.py``, counted rather than timed.

Why: a jump's worst time was twice its median; this says whether the worst jumps take
another path (more layouts, a second paint, a garbage collection, a first layout at a
width) or the same one on a busier machine. Builds the bench's view and rows (same
``Bench``, ``fill`` and seed), then makes ``--steps`` random jumps each followed by a
page up, and prints per-jump counts (median, min, max): text layouts built, lines laid
out, characters shaped, viewport and scroll-bar paints, relayouts, and any collection
(``gc.callbacks``); and the CPU time (``time.process_time``) of the first jumps beside
the median and the worst::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_jump_work.py --rows 1000000
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gui_bench as gb
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication

from qtchat.gui import delegate as delegate_module
from qtchat.gui.message_view import MessageView


class _PaintCount(QObject):
    def __init__(self, work: dict[str, int], key: str) -> None:
        super().__init__()
        self.work, self.key = work, key

    def eventFilter(self, _watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.work[self.key] += 1
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    bench = gb.Bench(app)
    rng = random.Random(2)
    model = bench.new_model()
    gb.fill(model, args.rows, rng, first_seq=10_000_001)
    bench.settle()
    view = bench.view
    work = dict.fromkeys(("layouts", "lines", "chars", "viewport paints", "bar paints",
                          "relayouts", "collections"), 0)

    lay_out = delegate_module.MessageDelegate._lay_out

    def counted_lay_out(self, text, *rest, **kw):
        layout, height = lay_out(self, text, *rest, **kw)
        work["layouts"] += 1
        work["lines"] += layout.lineCount()
        work["chars"] += len(text)
        return layout, height

    delegate_module.MessageDelegate._lay_out = counted_lay_out
    relayout = MessageView._relayout

    def counted_relayout(self, **kw):
        work["relayouts"] += 1
        return relayout(self, **kw)

    MessageView._relayout = counted_relayout
    filters = [_PaintCount(work, "viewport paints"), _PaintCount(work, "bar paints")]
    view.viewport().installEventFilter(filters[0])
    view.verticalScrollBar().installEventFilter(filters[1])
    gc.callbacks.append(lambda phase, _info: phase == "start" and
                        work.__setitem__("collections", work["collections"] + 1))
    bar = view.verticalScrollBar()
    done: list[tuple[float, dict[str, int]]] = []
    for _ in range(args.steps):
        target = rng.randrange(bar.pageStep(), max(bar.maximum(), bar.pageStep() + 1))
        for key in work:
            work[key] = 0
        started = time.process_time()
        bar.setValue(target)
        bench.settle()
        done.append(((time.process_time() - started) * 1000, dict(work)))
        bar.setValue(bar.value() - bar.pageStep())  # the page up, as gui_bench does
        bench.settle()
    print(f"{args.steps} jumps in {args.rows:,} rows")
    for key in work:
        values = [counts[key] for _, counts in done]
        print(f"  {key:16} median {statistics.median(values):8.1f}  min {min(values):6}  "
              f"max {max(values):6}")
    cpu = [ms for ms, _ in done]
    print(f"  CPU ms, first five jumps {[round(ms, 1) for ms in cpu[:5]]}; median "
          f"{statistics.median(cpu):.1f}; worst {max(cpu):.1f} (jump {cpu.index(max(cpu))})")


if __name__ == "__main__":
    main()
