"""A shown ``MessageView`` over its own ``MessageModel``, for the view's tests.

``broadcast()`` makes the server frame a row comes from; ``ShownView`` is the view at a
given size, shown, with ``settle()`` to let the posted paint run. Test modules subclass
it with what they read back (painted text, scroll positions, rendered rows).
"""

from __future__ import annotations

from PySide6.QtWidgets import QScrollBar

from qtchat.gui.message_view import MessageView
from qtchat.gui.models import MessageModel
from qtchat.protocol.server_frames import Message

TS = "2024-05-01T12:34:56.789Z"


def broadcast(seq: int, sender: str = "alice", text: str | None = None, **extra) -> Message:
    return Message.from_wire({"type": "broadcast", "seq": seq, "ts": TS, "from": sender,
                              "room": "lobby",
                              "text": f"message {seq}" if text is None else text, **extra})


class ShownView:
    """A shown MessageView over its own MessageModel (the user is "me")."""

    def __init__(self, qtbot, width: int = 500, height: int = 300):
        self.model = MessageModel(None, self_name="me")
        self.view = MessageView(self.model)
        self.model.setParent(self.view)
        qtbot.addWidget(self.view)
        self.delegate = self.view.delegate()
        self.view.resize(width, height)
        self.view.show()
        self.qtbot = qtbot
        self.settle()

    def settle(self) -> None:
        self.qtbot.wait(1)  # let the posted paint run
        self.view.viewport().repaint()

    @property
    def bar(self) -> QScrollBar:
        return self.view.verticalScrollBar()
