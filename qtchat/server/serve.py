"""``qtchat serve``: the chat server without a window (QCoreApplication only)."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import sqlite3
import sys
import threading

from qtchat.server.config import ServerConfig
from qtchat.wakeup import install_signal_wakeup

log = logging.getLogger(__name__)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the exit code (2: could not start, in one line)."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from PySide6.QtCore import QCoreApplication, QTimer

    from qtchat.collector import collect_on_main_thread
    from qtchat.server.chat_server import ChatServer, ServerError

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    collect_on_main_thread(app)  # before the upload, hash and announcer threads start
    config = ServerConfig.from_args(args)
    try:
        server = ChatServer(config)
        server.start()
    except ServerError as exc:
        print(f"qtchat: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"qtchat: cannot use {config.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # e.g. a history file that is not a database
        print(f"qtchat: cannot use the history in {config.data_dir}: {exc}", file=sys.stderr)
        return 2
    if server.store_notice:  # a history started over: said, never silent
        _say(f"qtchat: {server.store_notice}", sys.stderr)
    # zeroconf's announcer is asyncio code; it gets a loop on a thread of its own,
    # which keeps QtGui/QtWidgets (what qasync would load, ~20 MB) out of the server.
    announcer = None if args.no_announce else _make_announcer()
    background = _BackgroundLoop() if announcer is not None else None

    stopping = []

    def stop(signum: int) -> None:
        if stopping:  # a signal and a closed stdin, say: bye once
            return
        stopping.append(signum)
        log.info("signal %d: saying bye to everyone", signum)
        QTimer.singleShot(200, app.quit)  # let the bye frames leave, whatever happens here
        count = server.client_count
        server.stop("shutdown")
        _say(f"qtchat: stopped; said bye to {count} {'person' if count == 1 else 'people'}")
        if background is not None:
            background.run(announcer.stop(), timeout=2.0)  # withdraw: best effort

    # Handlers before the "serving" line: whoever reads it may signal at once.
    notifier = install_signal_wakeup(stop)
    if getattr(args, "stop_when_stdin_closes", False):
        _watch_stdin()
    # Everything loaded so far lives as long as the process: keep it out of the
    # collector's generations so full collections stay short under load.
    gc.freeze()
    host = config.host
    shown = f"[{host}]" if ":" in host else host  # as format_hostport writes it
    _say(f'qtchat: serving "{config.server_name}" on {shown}:{server.port}')
    if host in ("0.0.0.0", "::", "", "*"):
        # Only here: qtchat.address (ifaddr) costs 2 MB that a server bound to one
        # address never needs.
        from qtchat.address import format_hostport, local_addresses

        reachable = [format_hostport(a, server.port)
                     for a in local_addresses(server.ip_versions)]
        where = " · ".join(reachable) if reachable else f"127.0.0.1:{server.port} (this computer)"
        _say(f"qtchat: others can join at {where}")
    if server.fingerprint:
        _say(f"qtchat: TLS certificate fingerprint (SHA-256) {server.fingerprint}")
    if config.password:
        _say("qtchat: a password is required to join")
    if background is not None:
        background.submit(_announce(announcer, args, config, server))
    app.exec()
    del notifier
    if background is not None:
        background.close()
    server.close_store()
    return 0


def _say(line: str, stream=None) -> None:
    """Print one line now. Whoever reads it may have gone (``qtchat serve | head -2``, a
    log pipe that died): that is no reason for the server to stop serving, or to miss
    its own shutdown."""
    stream = stream or sys.stdout
    if stream is None:  # no console at all
        return
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):  # a closed pipe or a closed stream
        # Later lines, and the flush at exit, go nowhere instead of failing again.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


def _watch_stdin() -> None:
    """Stop (as SIGTERM would) when standard input reaches its end.

    The app runs a hosted room as this process with a pipe on its stdin. The pipe
    ends when the app closes it to stop the room, and also when the app dies in any
    way (the kernel closes a killed process's descriptors), so the room never
    outlives the app. Portable where ``PR_SET_PDEATHSIG`` is not (macOS, Windows;
    and it does not depend on which thread started us). A daemon thread blocks
    reading; at the end it raises SIGTERM in this process, whose handler is the
    wake-up one the Qt loop already watches.
    """

    def read() -> None:
        stream = sys.stdin.buffer if sys.stdin is not None else None
        with contextlib.suppress(OSError, ValueError):
            while stream is not None and stream.read1(4096):
                pass  # nothing is said on it: only its end counts
        signal.raise_signal(signal.SIGTERM)

    threading.Thread(target=read, name="stdin-lifeline", daemon=True).start()


class _BackgroundLoop:
    """An asyncio loop on a daemon thread, for the LAN announcer."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="announcer",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout: float) -> None:
        try:
            self.submit(coro).result(timeout)
        except Exception as exc:
            log.warning("could not withdraw the LAN announcement: %s", exc)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2.0)


def _make_announcer():
    try:
        from qtchat.discovery import RoomAnnouncer
    except ImportError:  # pragma: no cover - zeroconf is a dependency
        return None
    return RoomAnnouncer()


async def _announce(announcer, args, config, server) -> None:
    """Announce the room on the LAN; failing to is a warning, not an exit."""
    interfaces = args.interfaces.split(",") if args.interfaces else None
    try:
        name = await asyncio.wait_for(
            announcer.start(config.server_name, server.port, config.tls, server.fingerprint,
                            interfaces, ip_versions=server.ip_versions,
                            password=config.password is not None),
            10.0,
        )
    except Exception as exc:
        _say(f"qtchat: not announced on the LAN ({exc}); people can still join by address",
             sys.stderr)
        return
    _say(f'qtchat: announced on the LAN as "{name}"')
