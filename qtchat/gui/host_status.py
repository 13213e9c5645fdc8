"""What the status bar shows while this window hosts the room (``HostStatus``).

The addresses others can join at (all of them, and the TLS certificate's
fingerprint when there is one, in the tooltip) and a "Copy invite" button. A
window that only joined has none of it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QStatusBar

__all__ = ["HostStatus"]


class HostStatus:
    """The hosting widgets of the status bar, added as permanent widgets (right-aligned,
    never covered by a passing status message).

    ``invite_button.clicked`` is the person asking for the invite; the window copies it.
    """

    def __init__(self, status_bar: QStatusBar, host: Any) -> None:
        self.address_label = QLabel(host.addresses_text())
        self.address_label.setTextFormat(Qt.TextFormat.PlainText)
        self.address_label.setMaximumWidth(420)  # the tooltip has all of them
        self.address_label.setToolTip("\n".join(host.addresses()) or "this computer only")
        self.address_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.invite_button = QPushButton("Copy invite")
        self.invite_button.setToolTip("Copy a qtchat:// link others can paste into Join")
        status_bar.addPermanentWidget(self.address_label)
        status_bar.addPermanentWidget(self.invite_button)
        if host.server.fingerprint:
            self.address_label.setToolTip(
                f"{self.address_label.toolTip()}\nTLS certificate fingerprint (SHA-256): "
                f"{host.server.fingerprint}")
