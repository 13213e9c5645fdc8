"""The client side: the session rules (no Qt), the connector, and ``ChatClient``.

``from qtchat.client import ChatClient, Endpoint, ConnectError`` is the public way in; the
names are loaded on first use so that importing a Qt-free module of this package
(``qtchat.client.session``) never imports PySide6.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ChatClient": "qtchat.client.chat_client",
    "ClientSession": "qtchat.client.session",
    "ConnectError": "qtchat.client.errors",
    "Endpoint": "qtchat.client.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
