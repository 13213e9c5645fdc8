"""The transfers model and panel (qtchat.gui.transfers): progress, speed and time left from a
hand-advanced clock, and the Cancel / Retry buttons of a real panel."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from qtchat.gui.transfers import (
    DOWNLOAD,
    UPLOAD,
    Column,
    Role,
    State,
    TransferModel,
    TransfersPanel,
)

MB = 1024 * 1024

# The offscreen platform says so whenever a top-level widget is shown: not ours to fix.
pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")


def shown(model: TransferModel, row: int, column: Column) -> str:
    return model.data(model.index(row, column), Qt.ItemDataRole.DisplayRole)


def test_the_model_passes_the_model_tester_through_every_change(qtmodeltester):
    model = TransferModel()
    qtmodeltester.check(model)
    model.add("u1", "holiday.jpg", UPLOAD, 10 * MB, now=0.0)
    model.add("d1", "report.pdf", DOWNLOAD, 3 * MB, now=0.0)
    model.progress("u1", 1 * MB, now=1.0)
    model.set_state("d1", State.FAILED, now=2.0, error="The host is short of disk space")
    model.remove("u1")
    qtmodeltester.check(model)
    assert model.rowCount() == 1 and model.key_at(0) == "d1"


def test_speed_and_time_left_come_from_the_clock_passed_in():
    model = TransferModel()
    model.add("u1", "film.mkv", UPLOAD, 10 * MB, now=100.0)
    assert shown(model, 0, Column.SPEED) == "" and shown(model, 0, Column.TIME_LEFT) == ""
    model.progress("u1", 1 * MB, now=101.0)
    model.progress("u1", 2 * MB, now=102.0)
    assert shown(model, 0, Column.PROGRESS) == "20 %"
    assert shown(model, 0, Column.SPEED) == "1.0 MiB/s"
    assert shown(model, 0, Column.TIME_LEFT) == "8 s"
    assert model.data(model.index(0, 0), Role.SECONDS_LEFT) == 8.0
    assert shown(model, 0, Column.STATE) == "Uploading"
    assert shown(model, 0, Column.SIZE) == "10.0 MiB"


def test_a_stall_shows_as_stalled_and_old_speed_is_forgotten():
    model = TransferModel()
    model.add("d1", "big.iso", DOWNLOAD, 100 * MB, now=0.0)
    for second in range(1, 4):
        model.progress("d1", second * 10 * MB, now=float(second))
    assert shown(model, 0, Column.SPEED) == "10.0 MiB/s"
    model.progress("d1", 30 * MB, now=20.0)  # nothing moved for 17 s
    assert shown(model, 0, Column.SPEED) == "0 bytes/s"
    assert shown(model, 0, Column.TIME_LEFT) == "stalled"
    model.progress("d1", 31 * MB, now=21.0)  # moving again: the speed is of the last seconds
    assert shown(model, 0, Column.SPEED) == "1.0 MiB/s"
    assert shown(model, 0, Column.TIME_LEFT) == "1 min 09 s"


def test_states_show_their_sentence_and_done_is_complete():
    model = TransferModel()
    model.add("u1", "a.bin", UPLOAD, 1000, now=0.0)
    model.progress("u1", 400, now=1.0)
    model.set_state("u1", State.FAILED, now=2.0, error="The host is short of disk space")
    assert shown(model, 0, Column.STATE) == "Failed: The host is short of disk space"
    assert shown(model, 0, Column.SPEED) == ""  # a failed transfer has no speed
    model.add("u1", "a.bin", UPLOAD, 1000, now=3.0, done=400)  # retried: resumes at 400
    assert model.rowCount() == 1 and shown(model, 0, Column.STATE) == "Uploading"
    model.set_state("u1", State.DONE, now=4.0)
    assert shown(model, 0, Column.PROGRESS) == "100 %"


def test_the_panel_cancels_and_retries_the_selected_transfer(qtbot):
    model = TransferModel()
    panel = TransfersPanel(model)
    qtbot.addWidget(panel)
    panel.resize(700, 200)
    panel.show()
    qtbot.waitExposed(panel)
    model.add("u1", "holiday.jpg", UPLOAD, 10 * MB, now=0.0)
    model.add("d1", "report.pdf", DOWNLOAD, 3 * MB, now=0.0)
    model.progress("u1", 4 * MB, now=1.0)
    assert not panel.cancel_button.isEnabled()  # nothing selected yet
    panel.select("u1")
    assert panel.cancel_button.isEnabled() and not panel.retry_button.isEnabled()
    with qtbot.waitSignal(panel.cancel_requested) as cancelled:
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert cancelled.args == ["u1"]
    model.set_state("u1", State.CANCELLED, now=2.0)
    assert panel.retry_button.isEnabled() and not panel.cancel_button.isEnabled()
    with qtbot.waitSignal(panel.retry_requested) as retried:
        qtbot.mouseClick(panel.retry_button, Qt.MouseButton.LeftButton)
    assert retried.args == ["u1"]
    panel.select("d1")
    with qtbot.assertNotEmitted(panel.retry_requested):
        qtbot.mouseClick(panel.retry_button, Qt.MouseButton.LeftButton)  # disabled
    assert not panel.grab().isNull()  # the progress bars paint without warnings


def test_a_peer_name_is_plain_text_in_the_panel(qtbot):
    model = TransferModel()
    model.add("d1", "<b>bold</b>\u202egpj.exe", DOWNLOAD, 10, now=0.0)
    assert shown(model, 0, Column.NAME) == "<b>bold</b>\u202egpj.exe"
    assert model.data(model.index(0, Column.NAME), Qt.ItemDataRole.ToolTipRole).startswith("<b>")
