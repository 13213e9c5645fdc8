"""A fake qtchat host for client tests: a real QTcpServer on 127.0.0.1 whose answers a
test scripts, for what a real ChatServer will not do on purpose (go silent after
``registered``, send a frame twice, speak another protocol version).

``ScriptedHost(answer)`` listens on a free port; for every frame a client sends,
``answer(frame)`` returns the frames to send back (dicts, or raw ``bytes``).
``ScriptedHost(None)`` hangs up on every connection without a word.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Slot
from PySide6.QtNetwork import QHostAddress, QTcpServer, QTcpSocket

Answer = Callable[[dict[str, Any]], list[dict[str, Any] | bytes]]


def registered(frame: dict[str, Any], *, session: str = "scripted-session") -> dict[str, Any]:
    """A ``registered`` answer to a client's ``register`` frame."""
    return {"type": "registered", "name": frame["name"], "session": session,
            "users": [frame["name"]], "rooms": ["lobby"], "in_rooms": ["lobby"],
            "server": {"name": "scripted", "version": "0"}, "protocol": 1,
            "resumed": frame.get("resume") == session, "gap": False}


class ScriptedHost(QObject):
    """Answers each client frame with ``answer(frame)``; records what it received."""

    def __init__(self, answer: Answer | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.answer = answer
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self._buffers: dict[QTcpSocket, bytes] = {}
        self._listener = QTcpServer(self)
        self._listener.newConnection.connect(self._accept)
        if not self._listener.listen(QHostAddress(QHostAddress.SpecialAddress.LocalHost), 0):
            raise RuntimeError(self._listener.errorString())

    @property
    def port(self) -> int:
        return self._listener.serverPort()

    def close(self) -> None:
        self._listener.close()
        for socket in list(self._buffers):
            socket.abort()

    @Slot()
    def _accept(self) -> None:
        while self._listener.hasPendingConnections():
            socket = self._listener.nextPendingConnection()
            self.connections += 1
            if self.answer is None:
                socket.disconnectFromHost()
                socket.deleteLater()
                continue
            self._buffers[socket] = b""
            socket.readyRead.connect(self._read)

    @Slot()
    def _read(self) -> None:
        socket = self.sender()
        assert isinstance(socket, QTcpSocket)
        data = self._buffers.get(socket, b"") + socket.readAll().data()
        *lines, self._buffers[socket] = data.split(b"\n")
        assert self.answer is not None
        for line in lines:
            frame = json.loads(line)
            self.received.append(frame)
            for out in self.answer(frame):
                raw = out if isinstance(out, bytes) else json.dumps(out).encode() + b"\n"
                socket.write(raw)
