"""The host's edit window (``--edit-window``, PROTOCOL-FEATURES §7) from the app: the Host
tab's Advanced settings, passed to the hosted ``qtchat serve`` child and remembered.
Real widgets and a real hosted room (pytest-qt)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from gui_harness import WAIT_MS
from PySide6.QtCore import Qt

from qtchat.gui.start_dialog import DEFAULT_EDIT_WINDOW, StartDialog

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


def host_dialog(qtbot) -> StartDialog:
    dialog = StartDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.tabs.setCurrentIndex(0)
    return dialog


def test_an_edit_window_of_never_from_the_host_dialog_reaches_the_room_and_is_kept(
        qtbot, apps):
    dialog = host_dialog(qtbot)
    assert not dialog.edit_window_spin.isVisible()  # folded away until asked for
    assert dialog.edit_window_spin.value() == DEFAULT_EDIT_WINDOW
    qtbot.mouseClick(dialog.advanced_toggle, Qt.MouseButton.LeftButton)
    assert dialog.edit_window_spin.isVisible()
    dialog.edit_window_spin.setValue(0)
    assert dialog.edit_window_spin.text() == "Never"
    dialog.name_edit.setText("Alice")
    controller = apps.controller()
    # The test's own port (0: any free one); everything else is the dialog's choice.
    dialog.hostRequested.connect(lambda choice: controller.host(replace(choice, port=0)))
    qtbot.mouseClick(dialog.host_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.window is not None, timeout=WAIT_MS)

    client = controller.window.client
    with qtbot.waitSignal(client.messageReceived, timeout=WAIT_MS,
                          check_params_cb=lambda m: m.text == "helo") as sent:
        client.send_broadcast("helo")
    with qtbot.waitSignal(client.errorReceived, timeout=WAIT_MS) as refused:
        assert client.edit_message(sent.args[0].seq, "hello")
    assert refused.args[0] == "edit_window_expired"  # the child was told: no edits here
    assert "cannot be changed" in refused.args[1]

    again = host_dialog(qtbot)  # the next time, the dialog remembers
    assert again.edit_window_spin.value() == 0


def test_a_remembered_edit_window_is_what_the_dialog_offers_and_hosts_with(qtbot,
                                                                          isolated_settings):
    dialog = host_dialog(qtbot)
    dialog.edit_window_spin.setValue(90)
    dialog.name_edit.setText("Bob")
    with qtbot.waitSignal(dialog.hostRequested) as asked:
        qtbot.mouseClick(dialog.host_button, Qt.MouseButton.LeftButton)
    assert asked.args[0].edit_window == 90
    assert host_dialog(qtbot).edit_window_spin.value() == 90
