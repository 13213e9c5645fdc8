"""The server's settings: ``ServerConfig``, and the one way to build it from a command line.

``qtchat serve`` and ``qtchat host`` parse the same options (``cli.add_server_options``);
``ServerConfig.from_args`` turns either into settings, so a limit flag can never again
be parsed and then forgotten by one of them. A room hosted from the app runs in a
``qtchat serve`` child process: ``to_serve_args`` (with ``serve_environment`` for the
password) is the way back from settings to that child's command line, and a test
holds the two directions to each other for every field.

No Qt here: a tool that only needs the settings (or the sans-IO server core) does
not load PySide6.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qtchat.names import parse_name
from qtchat.paths import default_data_dir, default_host_dir
from qtchat.protocol import MAX_FRAME_BYTES

# The password may come from the environment instead of the command line: a command
# line is readable by every user of the machine (``ps``), an environment only by its owner.
PASSWORD_ENV = "QTCHAT_PASSWORD"
# The admin secret (PROTOCOL-FEATURES §4: registering with it makes one the owner), for
# the same reason: ``--admin-password`` or this.
ADMIN_PASSWORD_ENV = "QTCHAT_ADMIN_PASSWORD"

# ServerConfig fields that ``qtchat serve`` takes as a limit flag, each with its flag.
_LIMIT_FLAGS = {
    "max_clients": "--max-clients",
    "max_rooms": "--max-rooms",
    "max_rooms_per_user": "--max-rooms-per-user",
    "max_kept_rooms": "--max-kept-rooms",
    "resume_grace": "--resume-grace",
    "rate_limit": "--rate-limit",
    "rate_burst": "--rate-burst",
    "register_timeout": "--register-timeout",
    "idle_timeout": "--idle-timeout",
    "send_queue_bytes": "--send-queue-bytes",
    "history_retention": "--history-retention",
    "name_reservation_days": "--name-reservation-days",
    "max_file_size": "--max-file-size",
    "files_quota": "--files-quota",
    "files_max_bytes": "--files-max-bytes",
    "edit_window": "--edit-window",
}
# Fields with no flag: the protocol's own limits and the server's tuning, which a person
# hosting a room has no reason to change (tests and benchmarks set them in code).
FIXED_FIELDS = ("pre_register_bytes", "max_frame_bytes", "password_attempts",
                "password_window", "listen_backlog")


@dataclass(slots=True)
class ServerConfig:
    """Everything a host may tune; the defaults are PROTOCOL.md's."""

    host: str = "0.0.0.0"
    port: int = 8800
    server_name: str = "qtchat"
    password: str | None = None
    data_dir: Path | None = None  # None: history in memory only
    max_clients: int = 1000
    max_rooms: int = 10_000  # rooms on the server (join refuses a new one past it)
    max_rooms_per_user: int = 100
    # Rooms kept at all, in use or holding history; past it the longest idle one is retired.
    max_kept_rooms: int = 20_000
    register_timeout: float = 10.0
    idle_timeout: float = 30.0
    rate_limit: float = 20.0  # frames per second; 0 = off
    rate_burst: int = 40
    send_queue_bytes: int = 1 << 20
    pre_register_bytes: int = 8 * 1024
    max_frame_bytes: int = MAX_FRAME_BYTES
    history_retention: int = 10_000
    resume_grace: float = 120.0
    # Wrong passwords from one address: this many per window, then it waits.
    password_attempts: int = 5
    password_window: float = 60.0
    tls: bool = False
    listen_backlog: int = 1024
    host_user: str | None = None  # the name of the person hosting the room, if any
    # The owner's secret (None: nobody is owner); kept only as an scrypt hash in the server.
    admin_password: str | None = None
    # Days a name stays bound to an identity that does not come back (PROTOCOL-FEATURES §1).
    name_reservation_days: float = 30.0
    # Files (PROTOCOL-FEATURES §2): bytes per file, bytes held per person, bytes the
    # host keeps at all (0 = no cap but the disk's; past it the oldest files go).
    max_file_size: int = 2 << 30
    files_quota: int = 5 << 30
    files_max_bytes: int = 0
    edit_window: float = 15.0  # minutes authors may edit or delete (0: never; features §7)

    @classmethod
    def from_args(cls, args: argparse.Namespace, host: str = "0.0.0.0", *,
                  environ: Mapping[str, str] | None = None) -> ServerConfig:
        """The settings of parsed ``qtchat serve`` or ``qtchat host`` options.

        ``host``: the address to listen on when the options have none (``qtchat
        host`` listens everywhere; ``serve`` has ``--host``). For ``host`` the
        person's ``--nick`` is the room's host and names the room unless
        ``--server-name`` does, and the history lives in the app's host folder.
        ``environ`` (default ``os.environ``): where ``QTCHAT_PASSWORD`` is looked
        up when no ``--password`` is given.
        """
        if environ is None:
            environ = os.environ
        nick = getattr(args, "nick", None)  # only `qtchat host` has one
        if nick is not None:
            host_user: str | None = parse_name(nick).display
            default_name = f"{nick}'s room"
            default_dir = default_host_dir()
        else:
            host_user = getattr(args, "host_user", None)
            default_name = socket.gethostname() or "qtchat"
            default_dir = default_data_dir()
        limits = {field: getattr(args, field) for field in _LIMIT_FLAGS}
        return cls(
            host=getattr(args, "host", host),
            port=args.port,
            server_name=args.server_name or default_name,
            password=args.password or environ.get(PASSWORD_ENV) or None,
            admin_password=(getattr(args, "admin_password", None)
                            or environ.get(ADMIN_PASSWORD_ENV) or None),
            data_dir=args.data_dir or default_dir,
            tls=args.tls,
            host_user=host_user,
            **limits,
        )

    def to_serve_args(self) -> list[str]:
        """The ``qtchat serve`` options that give these settings back (``from_args``
        of them, with ``serve_environment()``, is equal to this config).

        Not the passwords: pass ``serve_environment()`` in the child's environment.
        Raises ValueError for what ``serve`` cannot be told: history in memory
        (``data_dir=None``), or a changed field that has no flag (``FIXED_FIELDS``).
        """
        if self.data_dir is None:
            raise ValueError("qtchat serve keeps its history in a folder: data_dir is None")
        defaults = ServerConfig()
        changed = [name for name in FIXED_FIELDS
                   if getattr(self, name) != getattr(defaults, name)]
        if changed:
            raise ValueError(f"qtchat serve has no option for {', '.join(changed)}")
        # --flag=value: a value that starts with "-" is not taken for a flag.
        argv = [f"--host={self.host}", f"--port={self.port}",
                f"--server-name={self.server_name}", f"--data-dir={self.data_dir}"]
        if self.tls:
            argv.append("--tls")
        if self.host_user is not None:
            argv.append(f"--host-user={self.host_user}")
        # str(float) is its repr: it reads back as the very same number.
        argv += [f"{flag}={getattr(self, field)}" for field, flag in _LIMIT_FLAGS.items()]
        return argv

    def serve_environment(self) -> dict[str, str]:
        """What a ``qtchat serve`` child needs in its environment besides
        ``to_serve_args()``: the password, always set (empty for none), so that a
        ``QTCHAT_PASSWORD`` the app itself was started with does not leak into a room
        hosted without one."""
        return {PASSWORD_ENV: self.password or "",
                ADMIN_PASSWORD_ENV: self.admin_password or ""}
