"""The transfers panel: every upload and download with its progress, speed and time left.

``TransferModel`` is a table model fed by whoever moves the bytes (the files
client feature): ``add`` when a transfer starts, ``progress`` as bytes move,
``set_state`` when it pauses, fails, finishes or is cancelled. Speed and time
left come from the clock passed in with each call (seconds), averaged over the
last few seconds so the figures neither jump with every slice nor lag a
stall by long. ``TransfersPanel`` shows the model with a progress bar per row and
Cancel / Retry buttons that act on the selected transfer; it only emits signals:
the feature decides what cancelling or retrying means.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger(__name__)

SPEED_WINDOW = 5.0  # seconds of samples the speed is averaged over

UPLOAD, DOWNLOAD = "upload", "download"


class State(enum.StrEnum):
    UPLOADING = "uploading"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    FAILED = "failed"
    DONE = "done"
    CANCELLED = "cancelled"
    STOPPED = "stopped"  # unfinished when the app last closed (TransferJournal)


ACTIVE = frozenset({State.UPLOADING, State.DOWNLOADING})
RETRYABLE = frozenset({State.PAUSED, State.FAILED, State.CANCELLED, State.STOPPED})
STATE_LABELS = {State.UPLOADING: "Uploading", State.DOWNLOADING: "Downloading",
                State.PAUSED: "Paused", State.FAILED: "Failed", State.DONE: "Done",
                State.CANCELLED: "Cancelled", State.STOPPED: "Stopped"}


class Column(enum.IntEnum):
    NAME = 0
    DIRECTION = 1
    SIZE = 2
    PROGRESS = 3
    SPEED = 4
    TIME_LEFT = 5
    STATE = 6


HEADERS = {Column.NAME: "Name", Column.DIRECTION: "Direction", Column.SIZE: "Size",
           Column.PROGRESS: "Progress", Column.SPEED: "Speed", Column.TIME_LEFT: "Time left",
           Column.STATE: "State"}


class Role(enum.IntEnum):
    KEY = Qt.ItemDataRole.UserRole
    FRACTION = Qt.ItemDataRole.UserRole + 1  # 0.0–1.0
    STATE = Qt.ItemDataRole.UserRole + 2
    BYTES_PER_SECOND = Qt.ItemDataRole.UserRole + 3  # float, or None when unknown
    SECONDS_LEFT = Qt.ItemDataRole.UserRole + 4  # float, or None when unknown


@dataclass(slots=True)
class Transfer:
    """One row: ``done`` of ``size`` bytes, and recent (time, done) samples for the speed."""

    key: str
    name: str
    direction: str
    size: int
    state: State
    done: int = 0
    error: str = ""
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def fraction(self) -> float:
        return 1.0 if self.size <= 0 else min(1.0, self.done / self.size)

    def speed(self) -> float | None:
        """Bytes per second over the samples kept, None before there are two."""
        if self.state not in ACTIVE or len(self.samples) < 2:
            return None
        (first_time, first_done), (last_time, last_done) = self.samples[0], self.samples[-1]
        if last_time <= first_time:
            return None
        return (last_done - first_done) / (last_time - first_time)

    def seconds_left(self) -> float | None:
        speed = self.speed()
        if speed is None:
            return None
        if speed <= 0:
            return float("inf")
        return (self.size - self.done) / speed


def format_size(count: float) -> str:
    """``1.5 MiB`` style: powers of 1024 named as the host names them in its lines and
    refusals ("sunset.jpg (47.4 KiB)"), so the row under that line says the same size."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds == float("inf"):
        return "stalled"
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


class TransferModel(QAbstractTableModel):
    """Transfers as rows (oldest first), columns as in ``Column``; see the module docstring."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[Transfer] = []
        self._index: dict[str, int] = {}

    # ----------------------------------------------------------------- changes

    def add(self, key: str, name: str, direction: str, size: int, *, now: float,
            done: int = 0) -> None:
        """A new transfer (or the same key again: restarted, e.g. a retry)."""
        state = State.UPLOADING if direction == UPLOAD else State.DOWNLOADING
        if key in self._index:
            row = self._index[key]
            transfer = self._rows[row]
            transfer.name, transfer.size, transfer.state, transfer.error = name, size, state, ""
            transfer.done = done
            transfer.samples = deque([(now, done)])
            self._changed(row)
            return
        row = len(self._rows)
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.append(Transfer(key, name, direction, size, state, done,
                                   samples=deque([(now, done)])))
        self._index[key] = row
        self.endInsertRows()

    def progress(self, key: str, done: int, *, now: float) -> None:
        """``done`` bytes of ``key`` have moved by ``now``."""
        row = self._index[key]
        transfer = self._rows[row]
        transfer.done = max(0, min(done, transfer.size))
        samples = transfer.samples
        samples.append((now, transfer.done))
        while len(samples) > 2 and samples[0][0] < now - SPEED_WINDOW:
            samples.popleft()
        self._changed(row)

    def set_state(self, key: str, state: State, *, now: float, error: str = "") -> None:
        """Paused, failed (with a sentence), done, cancelled — or active again."""
        row = self._index[key]
        transfer = self._rows[row]
        transfer.state = State(state)
        transfer.error = error
        transfer.samples = deque([(now, transfer.done)])
        if transfer.state is State.DONE:
            transfer.done = transfer.size
        self._changed(row)

    def remove(self, key: str) -> None:
        row = self._index.pop(key)
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._rows[row]
        self.endRemoveRows()
        self._index = {t.key: i for i, t in enumerate(self._rows)}

    def transfer(self, key: str) -> Transfer:
        return self._rows[self._index[key]]

    def key_at(self, row: int) -> str:
        return self._rows[row].key

    def _changed(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(Column) - 1))

    # ------------------------------------------------------------- model API

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008  (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if (orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole
                and 0 <= section < len(Column)):
            return HEADERS[Column(section)]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        transfer = self._rows[index.row()]
        column = Column(index.column())
        if role == Role.KEY:
            return transfer.key
        if role == Role.FRACTION:
            return transfer.fraction
        if role == Role.STATE:
            return transfer.state.value
        if role == Role.BYTES_PER_SECOND:
            return transfer.speed()
        if role == Role.SECONDS_LEFT:
            return transfer.seconds_left()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(transfer, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == Column.STATE and transfer.error:
                return transfer.error  # plain text: the view shows tooltips as given
            if column == Column.NAME:
                return transfer.name
        if (role == Qt.ItemDataRole.TextAlignmentRole
                and column in (Column.SIZE, Column.SPEED, Column.TIME_LEFT)):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _display(transfer: Transfer, column: Column) -> str:
        if column == Column.NAME:
            return transfer.name
        if column == Column.DIRECTION:
            return "Upload" if transfer.direction == UPLOAD else "Download"
        if column == Column.SIZE:
            return format_size(transfer.size)
        if column == Column.PROGRESS:
            return f"{transfer.fraction * 100:.0f} %"
        if column == Column.SPEED:
            speed = transfer.speed()
            return "" if speed is None else f"{format_size(speed)}/s"
        if column == Column.TIME_LEFT:
            return format_duration(transfer.seconds_left())
        label = STATE_LABELS[transfer.state]
        return f"{label}: {transfer.error}" if transfer.error else label


class ProgressDelegate(QStyledItemDelegate):
    """Paints the progress column as the platform's progress bar."""

    def paint(self, painter, option, index) -> None:
        fraction = index.data(Role.FRACTION)
        if fraction is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 2, -2, -2)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(fraction * 1000)
        bar.text = index.data(Qt.ItemDataRole.DisplayRole) or ""
        bar.textVisible = True
        bar.state = option.state
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)


class TransfersPanel(QWidget):
    """The list of transfers with Cancel and Retry for the selected one.

    Signals:
        cancel_requested(key: str): Cancel pressed on an active or paused transfer.
        retry_requested(key: str): Retry pressed on a failed, paused or cancelled one.
    """

    cancel_requested = Signal(str)
    retry_requested = Signal(str)

    def __init__(self, model: TransferModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.view = QTableView(self)
        self.view.setModel(model)
        self.view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.view.verticalHeader().hide()
        self.view.horizontalHeader().setSectionResizeMode(Column.NAME,
                                                          QHeaderView.ResizeMode.Stretch)
        self._progress_delegate = ProgressDelegate(self.view)
        self.view.setItemDelegateForColumn(Column.PROGRESS, self._progress_delegate)
        self.cancel_button = QPushButton("Cancel", self)
        self.retry_button = QPushButton("Retry", self)
        self.cancel_button.setAccessibleName("Cancel the selected transfer")
        self.retry_button.setAccessibleName("Retry the selected transfer")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.retry_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view)
        layout.addLayout(buttons)
        self.cancel_button.clicked.connect(self._cancel)
        self.retry_button.clicked.connect(self._retry)
        self.view.selectionModel().selectionChanged.connect(self._update_buttons)
        model.dataChanged.connect(self._update_buttons)
        model.rowsRemoved.connect(self._update_buttons)
        self._update_buttons()

    def selected_key(self) -> str | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.key_at(rows[0].row()) if rows else None

    def select(self, key: str) -> None:
        row = self.model._index[key]
        self.view.selectRow(row)

    @Slot()
    def _update_buttons(self, *_args) -> None:
        key = self.selected_key()
        state = self.model.transfer(key).state if key is not None else None
        self.cancel_button.setEnabled(state in ACTIVE or state in (State.PAUSED, State.STOPPED))
        self.retry_button.setEnabled(state in RETRYABLE)

    @Slot()
    def _cancel(self) -> None:
        key = self.selected_key()
        if key is not None:
            self.cancel_requested.emit(key)

    @Slot()
    def _retry(self) -> None:
        key = self.selected_key()
        if key is not None:
            self.retry_requested.emit(key)
