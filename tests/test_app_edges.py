"""Rough edges of the app a newcomer hit, seen from the start dialog.

Uses the two-person ``apps`` harness of ``test_gui``: real controllers, real widgets,
a real server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_gui import WAIT_MS, Apps, gui_args, isolate_settings

from qtchat.gui.app import AppController, _app_data_dir
from qtchat.gui.start_dialog import HostChoice, StartDialog, fingerprint_lines
from qtchat.tlsutil import PinStore

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_settings(tmp_path, monkeypatch)


@pytest.fixture
def gui_apps(qtbot, tmp_path: Path) -> Iterator[Apps]:
    made = Apps(qtbot, tmp_path)
    yield made
    made.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fingerprint_lines_are_two_halves_that_line_up():
    fingerprint = ":".join(f"{n:02X}" for n in range(32))
    first, second = fingerprint_lines(fingerprint).splitlines()
    assert first == ":".join(f"{n:02X}" for n in range(16))
    assert second == ":".join(f"{n:02X}" for n in range(16, 32))


def test_a_changed_certificate_shows_both_fingerprints_whole_and_can_be_trusted(
        qtbot, gui_apps: Apps):
    alice = gui_apps.controller()
    alice.host(HostChoice(name="Alice", room_name="Secret", port=0, password=None, tls=True))
    qtbot.waitUntil(lambda: alice.window is not None, timeout=WAIT_MS)
    server = alice.host_runtime.server
    address = f"127.0.0.1:{server.port}"
    old = ":".join(["CD"] * 32)
    PinStore(_app_data_dir()).remember(address, old)  # what Bob saw last time

    bob = gui_apps.controller()
    bob.show_dialog()
    dialog = bob.dialog
    assert isinstance(dialog, StartDialog)
    dialog.resize(dialog.minimumSizeHint())  # as small as it opens
    dialog.name_edit.setText("Bob")
    dialog.tabs.setCurrentIndex(1)
    dialog.address_edit.setText(f"qtchat://{address}?tls=1")
    dialog.join_button.click()
    qtbot.waitUntil(dialog.cert_box.isVisible, timeout=WAIT_MS)

    shown = dialog.cert_fingerprints.text()
    assert fingerprint_lines(old) in shown
    assert fingerprint_lines(server.fingerprint) in shown
    assert "changed" in dialog.error_label.text()
    # Nothing clipped: the fingerprints' label and the button fit inside the dialog.
    label = dialog.cert_fingerprints
    assert label.width() >= label.sizeHint().width()
    bottom = dialog.trust_button.mapTo(dialog, dialog.trust_button.rect().bottomRight())
    assert bottom.y() <= dialog.height() and bottom.x() <= dialog.width()
    assert bob.window is None

    dialog.trust_button.click()
    qtbot.waitUntil(lambda: bob.window is not None, timeout=WAIT_MS)
    assert bob.client.peer_fingerprint == server.fingerprint
    assert PinStore(_app_data_dir()).get(address) == server.fingerprint


def test_qtchat_join_that_fails_opens_the_dialog_filled_in(qtbot, gui_apps: Apps, tmp_path: Path):
    port = _closed_port()
    args = gui_args(tmp_path / "host", command="join")
    args.address, args.nick, args.password = f"127.0.0.1:{port}", "Bob", "sesame"
    controller = AppController(args)
    gui_apps.controllers.append(controller)
    controller.start()
    qtbot.waitUntil(lambda: controller.dialog is not None and
                    bool(controller.dialog.error_label.text()), timeout=WAIT_MS)
    dialog = controller.dialog
    assert dialog.isVisible()
    assert dialog.tabs.currentIndex() == 1
    assert dialog.address_edit.text() == f"127.0.0.1:{port}"
    assert dialog.name_edit.text() == "Bob"
    assert dialog.join_password.text() == "sesame"
    assert "nothing is listening" in dialog.error_label.text().lower() or \
        "refused" in dialog.error_label.text().lower(), dialog.error_label.text()
    assert dialog.join_button.isEnabled()
    assert controller.exit_code == 0


def test_qtchat_host_on_a_port_in_use_opens_the_dialog_with_a_free_port(
        qtbot, gui_apps: Apps, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args: argparse.Namespace = gui_args(tmp_path / "host", command="host")
        args.nick, args.port, args.server_name, args.password, args.tls = \
            "Alice", port, "Team room", None, False
        controller = AppController(args)
        gui_apps.controllers.append(controller)
        controller.start()
        dialog = controller.dialog
        assert dialog is not None and dialog.isVisible()
        assert "already in use" in dialog.error_label.text()
        assert dialog.tabs.currentIndex() == 0
        assert dialog.room_edit.text() == "Team room"
        assert dialog.port_spin.value() != port
        assert f"Port {dialog.port_spin.value()} is free" in dialog.error_label.text()


def test_double_clicking_a_password_room_asks_for_the_password_first(qtbot, qapp):
    from qtchat.discovery import SERVICE_TYPE, DiscoveredRoom, DiscoveredRoomsModel

    model = DiscoveredRoomsModel(qapp)
    model.upsert_room(DiscoveredRoom(name="Locked", host="127.0.0.1", port=8801, tls=False,
                                     fingerprint=None, addresses=("127.0.0.1",),
                                     service_name=f"Locked.{SERVICE_TYPE}", password=True))
    dialog = StartDialog(model)
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("Bob")
    dialog.tabs.setCurrentIndex(1)
    with qtbot.assertNotEmitted(dialog.joinRequested):
        dialog._join_discovered(model.index(0))
    assert "Locked needs a password" in dialog.error_label.text()
    assert dialog.address_edit.text() == "127.0.0.1:8801"
    assert dialog.join_password.placeholderText() == "this room needs a password"
    dialog.join_password.setText("sesame")
    with qtbot.waitSignal(dialog.joinRequested) as asked:
        dialog._join_discovered(model.index(0))
    assert asked.args[0].password == "sesame"
