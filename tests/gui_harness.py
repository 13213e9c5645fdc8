"""The desktop app's test harness: settings in the test's temp dir, and ``Apps``, which
starts ``AppController``s (people) and takes them down again without quitting the
QApplication. The ``isolated_settings`` and ``apps`` fixtures (conftest) use it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from qtchat.address import parse_join_target
from qtchat.gui.app import AppController
from qtchat.gui.start_dialog import HostChoice, JoinChoice, settings

WAIT_MS = 10_000


def isolate_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """QSettings and the default data dir point into the test's temp dir."""
    config = tmp_path / "config"
    config.mkdir()
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(config))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    assert settings().fileName().startswith(str(config)), settings().fileName()
    return config


def gui_args(data_dir: Path, command: str | None = None) -> argparse.Namespace:
    """What ``qtchat`` (or ``qtchat host``) parses to, with the LAN announcement off."""
    return argparse.Namespace(command=command, smoke=False, startup_probe=False,
                              no_announce=True, interfaces=None, data_dir=data_dir)


class Apps:
    """Starts controllers and takes them down again without quitting the QApplication."""

    def __init__(self, qtbot, tmp_path: Path) -> None:
        self.qtbot = qtbot
        self.tmp_path = tmp_path
        self.controllers: list[AppController] = []

    def controller(self) -> AppController:
        controller = AppController(gui_args(self.tmp_path / "host"))
        self.controllers.append(controller)
        return controller

    def host(self, name: str = "Alice", room: str = "Test room") -> AppController:
        controller = self.controller()
        controller.host(HostChoice(name=name, room_name=room, port=0, password=None, tls=False))
        self.qtbot.waitUntil(lambda: controller.window is not None, timeout=WAIT_MS)
        return controller

    def join(self, port: int, name: str = "Bob") -> AppController:
        controller = self.controller()
        controller.join(JoinChoice(name=name, target=parse_join_target(f"127.0.0.1:{port}"),
                                   password=None))
        self.qtbot.waitUntil(lambda: controller.window is not None, timeout=WAIT_MS)
        return controller

    def pair(self):
        """Alice hosts "Test room"; Bob joins it. Returns (alice's window, bob's window)."""
        from qtchat.gui.models import ConversationKind

        alice = self.host("Alice")
        bob = self.join(alice.host_runtime.server.port, "Bob")
        lobby = alice.window.conversation(ConversationKind.ROOM, "lobby", create=False)
        self.qtbot.waitUntil(lambda: "Bob" in lobby.members.names(), timeout=WAIT_MS)
        return alice.window, bob.window

    def close(self) -> None:
        for controller in self.controllers:
            # ``quit()`` would end the QApplication's loop; tear down by hand instead.
            if controller.dialog is not None:
                controller.dialog.rejected.disconnect()
                controller.dialog.done(0)
                controller.dialog.deleteLater()
            window = controller.window
            if window is not None:
                window.closedByUser.disconnect()
                window._force_close = True
                window.close()
                window.deleteLater()
            elif controller.client is not None:
                controller.client.close()
            if controller.host_runtime is not None:
                controller.host_runtime.shutdown()
                controller.host_runtime.server.wait_stopped()
