"""Where qtchat keeps its files: the one place that knows the platform's data folders.

A leaf module (it imports nothing of qtchat), so the command line, the server's
settings and the app can all ask it without importing one another.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    """The app's data folder: a server's history, sessions and TLS certificate (``qtchat
    serve`` without ``--data-dir``), and the TLS fingerprints the app has pinned."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or base
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    return Path(base) / "qtchat"


def default_host_dir() -> Path:
    """The data folder of a room hosted from the app (``qtchat host`` without
    ``--data-dir``): apart from a ``qtchat serve`` run by the same person, so the two
    can run side by side."""
    return default_data_dir() / "host"
