"""The server side: the rules (``core``, no Qt), the Qt adapter (``chat_server``), the store.

``from qtchat.server import ChatServer, ServerConfig`` is the public way in for code that
embeds a server; the names are loaded on first use so that importing a Qt-free module of
this package (``qtchat.server.core``, ``qtchat.server.store``) never imports PySide6.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ChatServer": "qtchat.server.chat_server",
    "ServerConfig": "qtchat.server.config",
    "ServerError": "qtchat.server.chat_server",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
