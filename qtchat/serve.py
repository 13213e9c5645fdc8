"""``qtchat serve``: the chat server without a window (QCoreApplication only)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

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
    host = config.host
    print(f'qtchat: serving "{config.server_name}" on {host}:{server.port}', flush=True)
    if server.fingerprint:
        print(f"qtchat: TLS certificate fingerprint (SHA-256) {server.fingerprint}", flush=True)
    if config.password:
        print("qtchat: a password is required to join", flush=True)

    announcer = None
    loop = None
    if not args.no_announce:
        loop, announcer = _start_announcer(args, config, server)

    def stop(signum: int) -> None:
        log.info("signal %d: saying bye to everyone", signum)
        if announcer is not None and loop is not None:
            loop.run_until_complete(_quietly(announcer.stop()))
        server.stop("shutdown")
        # Give the bye frames a moment to leave, then quit.
        from PySide6.QtCore import QTimer

        QTimer.singleShot(200, app.quit)

    notifier = install_signal_wakeup(stop)
    app.exec()
    del notifier
    server.close_store()
    return 0


async def _quietly(coro) -> None:
    try:
        await asyncio.wait_for(coro, 2.0)
    except Exception as exc:  # withdrawing the announcement is best effort at exit
        log.warning("could not withdraw the LAN announcement: %s", exc)


def _start_announcer(args, config, server):
    """Announce the room on the LAN; failure to announce is a warning, not an exit."""
    try:
        from qtchat.discovery import RoomAnnouncer
    except ImportError:
        return None, None
    interfaces = args.interfaces.split(",") if args.interfaces else None
    loop = asyncio.new_event_loop()
    announcer = RoomAnnouncer()
    try:
        loop.run_until_complete(
            asyncio.wait_for(
                announcer.start(config.server_name, server.port, config.tls, server.fingerprint,
                                interfaces),
                10.0,
            )
        )
    except Exception as exc:
        print(f"qtchat: not announced on the LAN ({exc}); people can still join by address",
              file=sys.stderr)
        return None, None
    return loop, announcer
