"""A file sent from the chat window (issue 15): how fast it goes up, against a plain copy.

A ``qtchat serve`` child on 127.0.0.1; in this process a ``ChatWindow`` (offscreen,
shown, its lobby in front, the transfers panel open) whose ``FilesGlue`` sends one
file as a person's drop does (``send_paths``): the row, the SHA-256 in a thread, the
offer, the upload connection, the progress bar and the panel painted as it goes,
until ``fileSent``. Timed twice per round: from the drop (hashing included) and
from the first byte up (the upload alone). The paint rate is the glue's
(``PAINT_EVERY_MS``) and, for comparison, ``--paint-every 0`` (a repaint per
progress signal, as the glue first did).

The yardstick is ``files_bench.py``'s plain copy of the same file: ``os.sendfile``
over loopback to a reader that writes it to disk and fsyncs, run before and after
each upload; each ratio is against the mean of its two neighbours, and the median
over ``--repeat`` rounds is reported (the shared VM's speed wanders).

    .venv/bin/python benchmarks/files_window_bench.py [--size-mib 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from files_bench import make_source, read_to_disk, send_whole, timed  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

SERVING = re.compile(r'^qtchat: serving ".*" on (?P<host>[^\s]+):(?P<port>\d+)$')
MiB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paint-every", type=int, default=None,
                        help="ms between progress paints (default: the glue's)")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    work = Path(tempfile.mkdtemp(prefix="files-window-bench-"))
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(work / "settings"))
    from qtchat.client.chat_client import ChatClient, Endpoint
    from qtchat.gui import files_glue
    from qtchat.gui.app import APP_FEATURES
    from qtchat.gui.main_window import ChatWindow

    if args.paint_every is not None:
        files_glue.PAINT_EVERY_MS = args.paint_every
    size = args.size_mib * MiB
    source = work / "bench.bin"
    make_source(source, size)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    serve = subprocess.Popen(
        [sys.executable, "-m", "qtchat", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(work / "serve"), "--no-announce", "--rate-limit", "0",
         "--max-file-size", str(size), "--files-quota", str(size * (args.repeat + 2))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        match = SERVING.match(serve.stdout.readline().rstrip("\n"))
        if match is None:
            sys.exit("qtchat serve did not start")
        client = ChatClient(features=APP_FEATURES)
        got = []
        client.registered.connect(got.append)
        client.open(Endpoint("127.0.0.1", int(match["port"])), "sender")
        wait(app, lambda: got)
        window = ChatWindow(client)
        window._on_registered(got[0])
        window.resize(980, 640)
        window.show()
        window.files.transfers_action.trigger()
        copy_path = work / "copy"

        def yardstick() -> float:
            seconds, moved = timed(lambda s: send_whole(s, source),
                                   lambda s: read_to_disk(s, copy_path))
            assert moved == size
            copy_path.unlink()
            return seconds

        def upload() -> tuple[float, float]:
            first: list[float] = []
            sent: list[float] = []
            on_progress = lambda *_a: first or first.append(time.perf_counter())  # noqa: E731
            on_sent = lambda *_a: sent.append(time.perf_counter())  # noqa: E731
            client.transferProgress.connect(on_progress)
            client.fileSent.connect(on_sent)
            start = time.perf_counter()
            window.files.send_paths([str(source)])
            wait(app, lambda: sent, 600_000)
            client.transferProgress.disconnect(on_progress)
            client.fileSent.disconnect(on_sent)
            return sent[0] - start, sent[0] - first[0]

        ticks = [yardstick()]
        whole, alone = [], []
        for _ in range(args.repeat):
            w, a = upload()
            ticks.append(yardstick())
            mean = (ticks[-2] + ticks[-1]) / 2
            whole.append((w, mean))
            alone.append((a, mean))
        rate = size / MiB
        paint = files_glue.PAINT_EVERY_MS
        print(f"file {args.size_mib} MiB, {args.repeat} rounds, progress painted every "
              f"{paint} ms")
        print(f"yardstick (sendfile -> disk + fsync): "
              f"{statistics.median(rate / t for t in ticks):.0f} MiB/s median "
              f"({min(rate / t for t in ticks):.0f}-{max(rate / t for t in ticks):.0f})")
        for label, runs in (("window upload, drop to posted (hash included)", whole),
                            ("window upload, first byte to posted", alone)):
            ratios = [mean / seconds for seconds, mean in runs]
            print(f"{label}: {statistics.median(rate / s for s, _m in runs):.0f} MiB/s, "
                  f"{statistics.median(ratios):.2f}x the yardstick "
                  f"({min(ratios):.2f}-{max(ratios):.2f})")
        window.files.shut_down()
        client.close()
    finally:
        serve.stdin and serve.stdin.close()
        serve.terminate()
        serve.wait(10)
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def wait(app: QApplication, condition, ms: int = 10_000) -> None:
    clock = QElapsedTimer()
    clock.start()
    waker = QTimer()  # wakes the wait for more events, to look at the clock
    waker.start(100)
    while not condition():
        if clock.elapsed() > ms:
            raise TimeoutError("no answer in time")
        app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)


if __name__ == "__main__":
    main()
