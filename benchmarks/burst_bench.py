#!/usr/bin/env python3
"""A burst of 20,000 messages into a real window: does it keep painting, and keep up?

Starts ``qtchat serve --rate-limit 0`` (a subprocess running this checkout's qtchat),
opens the real ``ChatWindow`` in this process (offscreen, settings in a temp dir) through
``AppController.join``, and has a bot in a child process (raw socket, protocol 1) register
and send N lobby broadcasts as fast as its socket takes them, while it drains its own
echoes so the host never has reason to drop it. In the window's process:

* a 5 ms QTimer records the longest gap between its ticks (the longest stall);
* an event filter on the lobby view's viewport stamps every ``QEvent.Paint``: the longest
  gap between two repaints from the first burst message shown to the last;
* the time from the bot's first send (``CLOCK_MONOTONIC``, system-wide) until the last
  message is in the lobby's ``MessageModel`` *and* a paint has shown it;
* the CPU time of this process (``time.process_time``) over the same span: what the
  window itself spent, whatever else the machine was doing;
* afterwards, that the lobby holds all N texts exactly once and in order, and that the
  client's ``connectionLost`` never fired (the host never cut the window off as a slow
  reader).

Yardsticks from the same run: the same timer's longest gap with the window idle for 2 s,
and the time this process takes to ``json.loads`` N broadcast frames like the server's.

Targets (issue 13): longest repaint gap ≤ 50 ms, last message shown ≤ 5 s, nothing lost,
duplicated or reordered, no reconnect. Run from the checkout under test::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/burst_bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GAP_TARGET_MS = 50.0
SHOWN_TARGET_S = 5.0
SERVING = re.compile(r'^qtchat: serving "(?P<name>.*)" on (?P<host>[^\s]+):(?P<port>\d+)$')


def text_of(k: int) -> str:
    return f"burst {k:06d}"


# --- the bot (child process) -------------------------------------------------------------


def run_bot(port: int, count: int) -> None:
    """Register, say ``ready``, wait for ``go``, then send everything at once."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(json.dumps({"type": "register", "name": "Bot", "protocol": 1}).encode()
                 + b"\n")
    buffered = b""
    while b'"registered"' not in buffered:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("the server closed the bot's connection")
        buffered += chunk
    print("ready", flush=True)
    sys.stdin.readline()  # go
    payload = memoryview(b"".join(
        json.dumps({"type": "broadcast", "room": "lobby", "text": text_of(k)}).encode()
        + b"\n" for k in range(count)))
    sock.setblocking(False)
    marker = text_of(count - 1).encode()
    tail = [b"", 0.0]  # the end of what came in, and when our last message came back

    def drain() -> bool:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        if not tail[1]:
            if marker in tail[0] + chunk:
                tail[1] = time.monotonic()
            tail[0] = chunk[-64:]
        return True

    first = time.monotonic()
    sent = 0
    deadline = first + 120
    while sent < len(payload) and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock], [], 1.0)
        # Our own echoes: drain them so we are never the slow reader.
        if readable and not drain():
            sys.exit("the server closed the bot's connection mid-burst")
        if writable:
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(payload[sent:sent + (1 << 20)])
    print(f"sent {first:.6f} {time.monotonic():.6f} {sent == len(payload)}", flush=True)
    # Keep draining until told to stop, so the echoes never back up on the host.
    while True:
        readable, _, _ = select.select([sock, sys.stdin], [], [], 1.0)
        if sys.stdin in readable:
            break
        if sock in readable and not drain():
            break
    print(f"echo {tail[1] or float('nan'):.6f}", flush=True)
    sock.close()


# --- the window (this process) -----------------------------------------------------------


def json_yardstick(count: int) -> float:
    """Seconds to ``json.loads`` N broadcast frames shaped like the server's."""
    lines = [json.dumps({"type": "broadcast", "seq": k + 1, "ts": 1_764_000_000_000 + k,
                         "from": "Bot", "room": "lobby", "text": text_of(k)}).encode()
             for k in range(count)]
    started = time.perf_counter()
    for line in lines:
        json.loads(line)
    return time.perf_counter() - started


def run_window(args: argparse.Namespace) -> dict:
    scratch = tempfile.TemporaryDirectory(prefix="qtchat-burst-")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, (str(REPO),
                                                        os.environ.get("PYTHONPATH")))))
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from qtchat.cli import main; sys.exit(main())",
         "serve", "--rate-limit", "0", "--no-announce", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(Path(scratch.name) / "server")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = server.stdout.readline().rstrip("\n")
        match = SERVING.match(line)
        if match is None:
            sys.exit(f"no serving line from the server: {line!r}")
        port = int(match["port"])
        result = _measure(args, scratch.name, port, env)
    finally:
        server.kill()
        server.communicate(timeout=30)
        scratch.cleanup()
    return result


def _measure(args: argparse.Namespace, scratch: str, port: int, env: dict) -> dict:
    sys.path.insert(0, str(REPO))
    from PySide6.QtCore import QEvent, QEventLoop, QObject, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(Path(scratch) / "config"))
    os.environ["XDG_DATA_HOME"] = str(Path(scratch) / "xdg-data")
    app = QApplication.instance() or QApplication(sys.argv[:1])

    import qtchat
    from qtchat.address import parse_join_target
    from qtchat.gui.app import AppController
    from qtchat.gui.models import ConversationKind, MessageRoles, RowKind
    from qtchat.gui.start_dialog import JoinChoice

    def spin(until, limit_s: float) -> bool:
        loop = QEventLoop()
        deadline = time.monotonic() + limit_s
        check = QTimer()
        check.timeout.connect(lambda: (until() or time.monotonic() > deadline) and loop.quit())
        check.start(10)
        if not until():
            loop.exec()
        check.stop()
        return bool(until())

    controller = AppController(argparse.Namespace(
        command=None, smoke=False, startup_probe=False, no_announce=True, interfaces=None,
        data_dir=Path(scratch) / "client"))
    controller.join(JoinChoice(name="Reader", target=parse_join_target(f"127.0.0.1:{port}"),
                               password=None))
    if not spin(lambda: controller.window is not None, 20):
        sys.exit("the window did not open")
    window = controller.window
    window.show()
    lobby = None

    def find_lobby():
        nonlocal lobby
        lobby = window.conversation(ConversationKind.ROOM, "lobby", create=False)
        return lobby is not None

    if not spin(find_lobby, 20):
        sys.exit("no lobby tab")
    lost: list[tuple[float, str]] = []
    controller.client.connectionLost.connect(lambda why: lost.append((time.monotonic(), why)))
    model, view = lobby.model, lobby.view
    window.tabs.setCurrentWidget(view)

    # The 5 ms timer: longest gap between ticks.
    gaps: list[float] = []
    last_tick = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now - last_tick[0]) * 1000)
        last_tick[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    last_tick[0] = time.perf_counter()
    timer.start()
    spin(lambda: False, args.idle)
    idle_gap = max(gaps)

    # Paint stamps (monotonic, comparable with the bot's clock) and burst progress.
    last_text = text_of(args.count - 1)
    state = {"first_shown": None, "model_done": None, "painted_done": None,
             "cpu_go": None, "cpu_done": None}
    paints: list[float] = []

    def last_row_is(text: str) -> bool:
        rows = model.rowCount()
        return rows > 0 and model.index(rows - 1).data(MessageRoles.Text) == text

    def on_rows(_parent, first: int, last: int) -> None:
        if state["model_done"] is None and last_row_is(last_text):
            state["model_done"] = time.monotonic()

    model.rowsInserted.connect(on_rows)

    class PaintStamp(QObject):
        def eventFilter(self, watched, event):
            if event.type() == QEvent.Type.Paint:
                now = time.monotonic()
                paints.append(now)
                rows = model.rowCount()
                if rows and state["first_shown"] is None:
                    state["first_shown"] = now if _shows_bot() else None
                if state["model_done"] is not None and state["painted_done"] is None:
                    # Laying out here is what the paint is about to do anyway.
                    rect = view.row_rect(rows - 1)
                    if rect.intersects(view.viewport().rect()):
                        state["painted_done"] = now
                        state["cpu_done"] = time.process_time()
            return False

    def _shows_bot() -> bool:
        rows = model.rowCount()
        return rows > 0 and model.index(rows - 1).data(MessageRoles.Sender) == "Bot"

    stamp = PaintStamp()
    view.viewport().installEventFilter(stamp)

    bot = subprocess.Popen([sys.executable, __file__, "--bot", str(port), "-n",
                            str(args.count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True, env=env)
    said: list[str] = []

    def bot_said(word: str) -> bool:
        while select.select([bot.stdout], [], [], 0)[0]:
            line = bot.stdout.readline()
            if not line:
                return True
            said.append(line.strip())
        return any(line.startswith(word) for line in said)

    try:
        if not spin(lambda: bot_said("ready"), 30):
            sys.exit(f"the bot did not register: {said}")
        gaps.clear()
        last_tick[0] = time.perf_counter()
        state["cpu_go"] = time.process_time()
        bot.stdin.write("go\n")
        bot.stdin.flush()
        finished = spin(lambda: state["painted_done"] is not None and bot_said("sent"),
                        args.limit)
        busy_gap = max(gaps) if gaps else float("nan")
        timer.stop()
        with contextlib.suppress(BrokenPipeError):
            bot.stdin.write("stop\n")
            bot.stdin.flush()
        bot.wait(30)
        bot_said("echo")
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(30)
    sent = next((line for line in said if line.startswith("sent")), "sent nan nan False")
    _, first_send, last_send, complete = sent.split()
    first_send_t, last_send_t = float(first_send), float(last_send)
    echo = next((line for line in said if line.startswith("echo")), "echo nan")
    echo_s = float(echo.split()[1]) - first_send_t

    # What the lobby holds, after the fact (untimed).
    texts = []
    for row in range(model.rowCount()):
        index = model.index(row)
        if (index.data(MessageRoles.Kind) == int(RowKind.MESSAGE)
                and index.data(MessageRoles.Sender) == "Bot"):
            texts.append(index.data(MessageRoles.Text))
    expected = [text_of(k) for k in range(args.count)]
    shown_from = state["first_shown"] or first_send_t
    end = state["painted_done"] or time.monotonic()
    during = [t for t in paints if shown_from <= t <= end]
    paint_gap, gap_end = max(((b - a, b) for a, b in itertools.pairwise(during)),
                             default=(float("nan"), float("nan")))
    paint_gap *= 1000
    # The same before the first connectionLost, if any: the steady burst, no reconnect.
    before = [t for t in during if not lost or t <= lost[0][0]]
    steady_gap = max((b - a for a, b in itertools.pairwise(before)),
                     default=float("nan")) * 1000

    window.closedByUser.disconnect()
    window._force_close = True
    window.close()
    controller.release_session()
    app.processEvents()
    return {
        "qtchat": str(Path(qtchat.__file__).parent.parent),
        "finished": finished,
        "bot_complete": complete == "True",
        "send_s": last_send_t - first_send_t,
        "echo_s": echo_s,
        "idle_gap_ms": idle_gap,
        "busy_gap_ms": busy_gap,
        "paint_gap_ms": paint_gap,
        "paints": len(during),
        "steady_gap_ms": steady_gap,
        "paint_gap_at_s": gap_end - first_send_t,
        "model_s": (state["model_done"] or float("nan")) - first_send_t,
        "shown_s": (state["painted_done"] or float("nan")) - first_send_t,
        "json_s": json_yardstick(args.count),
        "cpu_s": (state["cpu_done"] or float("nan")) - state["cpu_go"],
        "received": len(texts),
        "in_order_once": texts == expected,
        "lost": [f"{why!r} at {t - first_send_t:.1f} s" for t, why in lost],
    }


def report(r: dict, count: int) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"qtchat from {r['qtchat']}; {count:,} broadcasts, bot sent all: "
          f"{r['bot_complete']} in {r['send_s']:.2f} s")
    rows = [
        ("idle 5 ms timer, longest gap (yardstick)", f"{r['idle_gap_ms']:.1f} ms", "1.0×", ""),
        ("json.loads of all frames (yardstick)", f"{r['json_s'] * 1000:.0f} ms", "1.0×", ""),
        ("5 ms timer during the burst, longest gap", f"{r['busy_gap_ms']:.1f} ms",
         f"{r['busy_gap_ms'] / r['idle_gap_ms']:.1f}× idle", ""),
        (f"longest gap between repaints (ends {r['paint_gap_at_s']:.1f} s in)",
         f"{r['paint_gap_ms']:.1f} ms",
         f"{r['paint_gap_ms'] / r['idle_gap_ms']:.1f}× idle",
         f"≤ {GAP_TARGET_MS:.0f} ms {verdict(r['paint_gap_ms'] <= GAP_TARGET_MS)}"),
        ("  the same, before any connectionLost", f"{r['steady_gap_ms']:.1f} ms",
         f"{r['steady_gap_ms'] / r['idle_gap_ms']:.1f}× idle", ""),
        ("first send → bot's own last echo (server pace)", f"{r['echo_s']:.2f} s",
         f"{r['echo_s'] / r['json_s']:.0f}× json", ""),
        ("first send → last message in the model", f"{r['model_s']:.2f} s",
         f"{r['model_s'] / r['json_s']:.0f}× json", ""),
        ("first send → last message painted", f"{r['shown_s']:.2f} s",
         f"{r['shown_s'] / r['json_s']:.0f}× json",
         f"≤ {SHOWN_TARGET_S:.0f} s {verdict(r['shown_s'] <= SHOWN_TARGET_S)}"),
        ("window process CPU, go → last painted", f"{r['cpu_s']:.2f} s",
         f"{r['cpu_s'] / r['json_s']:.0f}× json", ""),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, ratio, target in rows:
        print(f"  {name:<{width}}  {value:>9}  {ratio:>10}  {target}")
    print(f"  {r['paints']} repaints while the burst was shown")
    print(f"  received {r['received']:,} of {count:,}; all in order exactly once: "
          f"{verdict(r['in_order_once'])}; connectionLost fired: "
          f"{len(r['lost'])} times {r['lost'] or ''} "
          f"({verdict(not r['lost'])}); finished within the limit: {r['finished']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bot", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("-n", "--count", type=int, default=20_000)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle yardstick")
    parser.add_argument("--limit", type=float, default=90.0,
                        help="give up on the burst after this many seconds")
    args = parser.parse_args()
    if args.bot:
        run_bot(args.bot, args.count)
    else:
        report(run_window(args), args.count)


if __name__ == "__main__":
    main()
