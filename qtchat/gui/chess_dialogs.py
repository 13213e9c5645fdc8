"""The chess pieces around the board: the challenge bar, the challenge dialog, the
banner at a game's end, and the "Games" list.

They hold no game state: ``ChessGames`` (chess_games.py) feeds them what the host said
and connects their signals to the client. Every text a peer chose (names) goes into
plain-text labels.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

__all__ = ["TIME_CONTROLS", "ChallengeBar", "ChallengeDialog", "GameOverBanner",
           "GamesDialog", "clock_words", "result_sentence"]

# (label, initial seconds, increment seconds), as the challenge dialog offers them.
TIME_CONTROLS: list[tuple[str, int, int]] = [
    ("Untimed", 0, 0), ("1+0 bullet", 60, 0), ("3+2 blitz", 180, 2), ("5+3 blitz", 300, 3),
    ("10+5 rapid", 600, 5), ("15+10 rapid", 900, 10), ("30+0 classical", 1800, 0),
]

_WIN_WORDS = {"checkmate": "checkmate", "resign": "resignation", "timeout": "time",
              "abandoned": "abandonment"}
_DRAW_WORDS = {"stalemate": "stalemate", "insufficient_material": "insufficient material",
               "fivefold_repetition": "fivefold repetition",
               "seventyfive_moves": "the 75-move rule",
               "threefold_repetition": "threefold repetition",
               "fifty_moves": "the 50-move rule", "agreement": "agreement",
               "timeout": "time out against a lone king"}


def clock_words(clock: dict[str, int] | None) -> str:
    """``{"initial": 300, "increment": 3}`` → "5+3"; no clock → "untimed"."""
    if not clock or not clock.get("initial"):
        return "untimed"
    return f"{clock['initial'] // 60}+{clock.get('increment', 0)}"


def result_sentence(result: str, reason: str) -> str:
    """"Black won by checkmate", "Draw by stalemate": the end of a game in words."""
    if reason == "aborted":
        return "Game aborted"
    if result in ("1-0", "0-1"):
        winner = "White" if result == "1-0" else "Black"
        return f"{winner} won by {_WIN_WORDS.get(reason, reason.replace('_', ' '))}"
    if result == "1/2-1/2":
        return f"Draw by {_DRAW_WORDS.get(reason, reason.replace('_', ' '))}"
    return f"Game ended ({reason.replace('_', ' ')})"


class ChallengeBar(QWidget):
    """Above the message box, like the reconnect bar: "Alice challenges you to chess
    (5+3, you play black)" with Accept and Decline. It shows one offer (the latest for
    the conversation in front); ``answered(game, accept)`` is the click."""

    answered = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.game: str | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # the challenger's name is theirs
        self.label.setWordWrap(True)
        self.accept_button = QPushButton("Accept")
        self.decline_button = QPushButton("Decline")
        self.accept_button.clicked.connect(lambda: self._answer(True))
        self.decline_button.clicked.connect(lambda: self._answer(False))
        layout.addWidget(self.label, 1)
        layout.addWidget(self.accept_button)
        layout.addWidget(self.decline_button)
        self.setAccessibleName("Chess challenge")
        self.hide()

    def show_offer(self, game: str, text: str) -> None:
        self.game = game
        self.label.setText(text)
        self.show()

    def clear(self) -> None:
        self.game = None
        self.hide()

    def _answer(self, accept: bool) -> None:
        if self.game is not None:
            self.answered.emit(self.game, accept)


class ChallengeDialog(QDialog):
    """Challenge NAME: colour (random, white, black) and a time control preset."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setWindowTitle("Challenge to chess")
        self.color = QComboBox()
        for text, value in (("Random", "random"), ("White", "white"), ("Black", "black")):
            self.color.addItem(text, value)
        self.color.setAccessibleName("Your colour")
        self.time_control = QComboBox()
        for text, initial, increment in TIME_CONTROLS:
            self.time_control.addItem(text, (initial, increment))
        self.time_control.setCurrentIndex(3)  # 5+3: long enough to think, short for a break
        self.time_control.setAccessibleName("Time control")
        who = QLabel(name)
        who.setTextFormat(Qt.TextFormat.PlainText)
        form = QFormLayout()
        form.addRow("Opponent:", who)
        form.addRow("You play:", self.color)
        form.addRow("Time control:", self.time_control)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Challenge")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def choice(self) -> tuple[str, int, int]:
        """(colour, initial seconds, increment seconds) as chosen."""
        initial, increment = self.time_control.currentData()
        return self.color.currentData(), initial, increment


class GameOverBanner(QFrame):
    """The top of a finished game's tab: the result in words, "Save PGN…", "Copy PGN"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pgn = ""
        self.save_dialog: QFileDialog | None = None
        self.setObjectName("gameOverBanner")
        self.setStyleSheet("#gameOverBanner { background: #37474f; border-radius: 4px; }"
                           "#gameOverBanner QLabel { color: white; }")
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.label.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.label.setFont(font)
        self.detail = QLabel()
        self.detail.setTextFormat(Qt.TextFormat.PlainText)  # players' names
        self.save_button = QPushButton("Save PGN…")
        self.copy_button = QPushButton("Copy PGN")
        self.save_button.clicked.connect(self.ask_save)
        self.copy_button.clicked.connect(self.copy)
        words = QVBoxLayout()
        words.addWidget(self.label)
        words.addWidget(self.detail)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addLayout(words, 1)
        layout.addWidget(self.save_button)
        layout.addWidget(self.copy_button)
        self.setAccessibleName("Game over")
        self.hide()

    def show_result(self, sentence: str, detail: str, pgn: str) -> None:
        self.label.setText(sentence)
        self.detail.setText(detail)
        self.pgn = pgn
        self.save_button.setEnabled(bool(pgn))
        self.copy_button.setEnabled(bool(pgn))
        self.setAccessibleDescription(f"{sentence}. {detail}")
        self.show()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.pgn)

    def ask_save(self) -> None:
        """A window-modal file dialog (``open``, not ``exec``: the game tab stays live)."""
        dialog = QFileDialog(self, "Save the game as PGN", "game.pgn",
                             "PGN files (*.pgn);;All files (*)")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix("pgn")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self.save_to)
        self.save_dialog = dialog
        dialog.open()

    def save_to(self, path: str) -> None:
        with open(path, "w", encoding="utf-8", newline="\n") as out:
            out.write(self.pgn.rstrip("\n") + "\n")


class GamesDialog(QDialog):
    """Chat ▸ Games…: the host's ``game_list`` answer, running games first.

    ``openGame(game)``: a running (or adjourned) game was double-clicked.
    """

    openGame = Signal(str)
    GAME_ROLE = Qt.ItemDataRole.UserRole
    RUNNING_ROLE = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Games")
        self.resize(520, 360)
        self.status = QLabel("Asking the host…")
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Game", "State", "Result"])
        self.tree.setRootIsDecorated(False)
        self.tree.itemDoubleClicked.connect(self._double_clicked)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.tree, 1)
        layout.addWidget(close)

    def fill(self, games: list[dict[str, Any]], finished: list[dict[str, Any]]) -> None:
        self.tree.clear()
        for entry in games:
            state = "Adjourned" if entry.get("adjourned") else "Running"
            item = QTreeWidgetItem([f"{entry['white']} – {entry['black']}", state,
                                    f"{clock_words(entry.get('clock'))}, "
                                    f"{len(entry.get('moves') or [])} plies"])
            item.setData(0, self.GAME_ROLE, entry["game"])
            item.setData(0, self.RUNNING_ROLE, True)
            item.setToolTip(0, "Double-click to open the board")
            self.tree.addTopLevelItem(item)
        for entry in finished:  # newest first, as the host lists them
            item = QTreeWidgetItem([f"{entry['white']} – {entry['black']}", "Finished",
                                    f"{entry['result']} · "
                                    f"{result_sentence(entry['result'], entry['reason'])}"])
            item.setData(0, self.GAME_ROLE, entry["game"])
            item.setData(0, self.RUNNING_ROLE, False)
            self.tree.addTopLevelItem(item)
        for column in range(3):
            self.tree.resizeColumnToContents(column)
        self.status.setText(f"{len(games)} running, {len(finished)} finished"
                            if games or finished else "No games yet.")

    def _double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        if item.data(0, self.RUNNING_ROLE):
            self.openGame.emit(item.data(0, self.GAME_ROLE))
            self.accept()
