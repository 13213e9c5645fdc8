"""The ``qtchat`` command: the desktop app, ``serve`` (headless), ``host`` and ``join``.

``qtchat`` alone opens the start dialog; ``qtchat serve`` runs the server with
no display; ``qtchat host`` and ``qtchat join`` skip the dialog. Where there is
no display, the GUI commands say so in one line and suggest ``qtchat serve``
instead of letting Qt abort.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from qtchat import DEFAULT_PORT, __version__
from qtchat.paths import default_data_dir, default_host_dir

log = logging.getLogger(__name__)


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _whole(text: str) -> int:
    value = _count(text) if text.strip() not in ("0", "+0", "-0") else 0
    return value


def _name(text: str) -> str:
    from qtchat.names import InvalidName, parse_name

    try:
        return parse_name(text).display
    except InvalidName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is a number from 0 to 65535")
    return value


def add_server_options(parser: argparse.ArgumentParser, *, headless: bool) -> None:
    """Options shared by ``serve`` and ``host``; ``ServerConfig.from_args`` reads them."""
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"TCP port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--server-name", default=None,
                        help="the name people see for this server (default: this computer's name)")
    parser.add_argument("--password", default=None,
                        help="a password everyone must give to join (default: none; or set "
                             "QTCHAT_PASSWORD, which other users of this computer cannot see "
                             "as they can see a command line)")
    parser.add_argument("--admin-password", default=None,
                        help="the host's admin secret: whoever registers with it is the owner, "
                             "who may kick, ban and mute, and make others ops (who may kick, "
                             "ban and mute too, but not each other); bans hold the person's "
                             "identity, address and look-alikes of their name, across restarts "
                             "(default: no owner; or set QTCHAT_ADMIN_PASSWORD)")
    data_dir = default_data_dir() if headless else default_host_dir()
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder for history, sessions and the TLS certificate "
                             f"(default {data_dir})")
    parser.add_argument("--tls", action="store_true",
                        help="encrypt connections with TLS (a self-signed certificate is made "
                             "on first use and its fingerprint printed)")
    parser.add_argument("--no-announce", action="store_true",
                        help="do not announce the room on the LAN (mDNS/DNS-SD)")
    parser.add_argument("--interfaces", default=None,
                        help="comma-separated addresses to announce on (default: all)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-clients", type=_count, default=1000,
                        help="most people registered at once (default 1000)")
    limits.add_argument("--max-rooms", type=_count, default=10_000,
                        help="rooms on the server; joining a new one past it is refused "
                             "(default 10000)")
    limits.add_argument("--max-rooms-per-user", type=_count, default=100,
                        help="rooms one person may be in at once (default 100)")
    limits.add_argument("--max-kept-rooms", type=_count, default=20_000,
                        help="rooms kept at all, in use or holding history; past it the room "
                             "idle the longest goes, with its history (default 20000)")
    limits.add_argument("--resume-grace", type=_positive_float, default=120.0,
                        help="seconds a dropped person's name and messages are kept for them to "
                             "resume (default 120)")
    limits.add_argument("--rate-limit", type=_positive_float, default=20.0,
                        metavar="FRAMES_PER_S",
                        help="frames per second per connection (default 20; 0 = no limit)")
    limits.add_argument("--rate-burst", type=_count, default=40,
                        help="frames a connection may send in a burst (default 40)")
    limits.add_argument("--register-timeout", type=_positive_float, default=10.0,
                        help="seconds a new connection has to register (default 10)")
    limits.add_argument("--idle-timeout", type=_positive_float, default=30.0,
                        help="seconds of silence before the server pings, and again before it "
                             "gives up (default 30)")
    limits.add_argument("--send-queue-bytes", type=_count, default=1 << 20,
                        help="unsent bytes a slow reader may have queued before it is cut off "
                             "(default 1 MiB)")
    limits.add_argument("--history-retention", type=_count, default=10_000,
                        help="messages kept per room (default 10000)")
    limits.add_argument("--name-reservation-days", type=_positive_float, default=30.0,
                        help="days a name stays reserved for the app that registered it "
                             "(its identity) after it was last here (default 30)")
    limits.add_argument("--max-file-size", type=_count, default=2 << 30, metavar="BYTES",
                        help="largest file the room takes (default 2 GiB)")
    limits.add_argument("--files-quota", type=_count, default=5 << 30, metavar="BYTES",
                        help="bytes of files one person may keep on the host (default 5 GiB)")
    limits.add_argument("--files-max-bytes", type=_whole, default=0, metavar="BYTES",
                        help="bytes of files the host keeps at all; past it the oldest go "
                             "(default 0: as much as the disk allows)")
    limits.add_argument("--edit-window", type=_positive_float, default=15.0, metavar="MINUTES",
                        help="how long authors may edit or delete their messages (default "
                             "15; 0: never)")
    if headless:
        parser.add_argument("--host", default="0.0.0.0",
                            help="address to listen on (default 0.0.0.0: every IPv4 interface; "
                                 ":: every IPv6 one; * both)")
        parser.add_argument("--host-user", type=_name, default=None, metavar="NAME",
                            help="the name of the person hosting the room, shown to everyone "
                                 "who joins (qtchat host sets it; default: none)")
        parser.add_argument("--stop-when-stdin-closes", action="store_true",
                            help="say bye and stop when standard input closes (how the app "
                                 "runs a hosted room: it ends with the app, even a killed one)")
        parser.add_argument("-v", "--verbose", action="store_true", help="log more")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qtchat",
        description="Chat with people on your network. Run without arguments to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"qtchat {__version__}")
    parser.add_argument("--smoke", action="store_true",
                        help="self-test: host a room on a free port, join it, post a message, "
                             "exit 0 (works offscreen)")
    parser.add_argument("--startup-probe", action="store_true",
                        help="exit as soon as the start dialog is shown, printing the time taken")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the chat server without a window",
                           description="Run the chat server headless (no display needed).")
    add_server_options(serve, headless=True)

    host = sub.add_parser("host", help="host a room and join it, skipping the start dialog")
    host.add_argument("--nick", required=True, help="your name in the room")
    add_server_options(host, headless=False)

    join = sub.add_parser("join", help="join a room, skipping the start dialog")
    join.add_argument("address", help="host:port, or a qtchat:// invite link")
    join.add_argument("--nick", required=True, help="your name in the room")
    join.add_argument("--password", default=None, help="the room's password, if it has one")
    return parser


def has_display() -> bool:
    """Whether Qt can open windows here (or was told to draw offscreen)."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from qtchat.server.serve import run_serve

        return run_serve(args)
    if args.command in ("host", "join"):
        problem = _check_join_arguments(args)
        if problem:
            print(f"qtchat: {problem}", file=sys.stderr)
            return 2
    if not has_display() and not args.smoke:
        print("qtchat: no display found (DISPLAY and WAYLAND_DISPLAY are unset); "
              "run `qtchat serve` for a headless server.", file=sys.stderr)
        return 2
    if args.smoke:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtchat.gui.app import run_gui

    return run_gui(args)


def _check_join_arguments(args: argparse.Namespace) -> str | None:
    """The sentence to print for a bad ``--nick`` or address, before any window opens."""
    from qtchat.address import parse_join_target
    from qtchat.names import InvalidName, parse_name

    try:
        parse_name(args.nick)
    except InvalidName as exc:
        return f"--nick {args.nick!r}: {exc}"
    if args.command == "join":
        try:
            parse_join_target(args.address)
        except ValueError as exc:
            return str(exc)
    return None
