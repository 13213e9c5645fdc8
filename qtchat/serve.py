"""``qtchat serve``: the chat server without a window (QCoreApplication only)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys

import qasync

log = logging.getLogger(__name__)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from PySide6.QtCore import QCoreApplication

    from qtchat.cli import install_signal_wakeup, server_config
    from qtchat.server import ChatServer, ServerError

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    config = server_config(args)
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
    # One qasync loop runs both Qt (the server) and asyncio (zeroconf's announcer).
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    announcer = None if args.no_announce else _make_announcer()

    def stop(signum: int) -> None:
        log.info("signal %d: saying bye to everyone", signum)
        server.stop("shutdown")
        loop.create_task(_finish(loop, announcer))

    # Handlers before the "serving" line: whoever reads it may signal at once.
    notifier = install_signal_wakeup(stop)
    host = config.host
    print(f'qtchat: serving "{config.server_name}" on {host}:{server.port}', flush=True)
    if server.fingerprint:
        print(f"qtchat: TLS certificate fingerprint (SHA-256) {server.fingerprint}", flush=True)
    if config.password:
        print("qtchat: a password is required to join", flush=True)
    if announcer is not None:
        loop.create_task(_announce(announcer, args, config, server))
    with loop:
        loop.run_forever()
    del notifier
    server.close_store()
    return 0


async def _finish(loop: asyncio.AbstractEventLoop, announcer) -> None:
    """Withdraw the LAN announcement (best effort), let the bye frames leave, stop."""
    if announcer is not None:
        try:
            await asyncio.wait_for(announcer.stop(), 2.0)
        except Exception as exc:  # best effort at exit
            log.warning("could not withdraw the LAN announcement: %s", exc)
    await asyncio.sleep(0.2)
    loop.stop()


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
                            interfaces),
            10.0,
        )
    except Exception as exc:
        print(f"qtchat: not announced on the LAN ({exc}); people can still join by address",
              file=sys.stderr, flush=True)
        return
    print(f'qtchat: announced on the LAN as "{name}"', flush=True)
