"""The chess widgets: a board you play on, two clocks, the move list and the game buttons.

The board never decides anything: it shows the position it was given and, when you
make a move (drag, click-click, keyboard, or typed in SAN or UCI), it emits
``moveChosen("e2e4")`` and waits. The server checks the move; the position changes only
when the caller passes the next one in (``set_moves``). Legal-move hints and the
promotion chooser use python-chess on the local copy of the position, so what the board
offers is what the server will accept.

The pieces are python-chess's SVG set (``chess.svg.piece``, the Cburnett pieces, freely
licensed), rendered with QtSvg once per piece and square size.

Keyboard: the board takes focus; the arrow keys move a focus square (drawn as a frame),
Space or Enter picks the piece there up and puts it down on the next square, Escape puts
it back. ``MoveEntry`` takes a move typed as ``Nf3`` or ``g1f3``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import chess
import chess.svg
from PySide6.QtCore import (
    QByteArray,
    QObject,
    QPoint,
    QPointF,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QIcon,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QRadialGradient,
)
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

LIGHT = QColor("#f0d9b5")
DARK = QColor("#b58863")
LAST_MOVE = QColor(205, 210, 106, 170)
SELECTED = QColor(20, 85, 30, 120)
HINT = QColor(20, 85, 30, 110)
FOCUS = QColor("#1f6fd1")
CHECK = QColor(230, 30, 30)

PROMOTION_PIECES = (chess.QUEEN, chess.ROOK, chess.BISHOP, chess.KNIGHT)
COLOUR_WORDS = {chess.WHITE: "White", chess.BLACK: "Black"}

_pixmaps: dict[tuple[str, int], QPixmap] = {}


def piece_pixmap(piece: chess.Piece, size: int) -> QPixmap:
    """The piece drawn ``size`` device pixels square; one rendering per piece and size."""
    key = (piece.symbol(), size)
    pixmap = _pixmaps.get(key)
    if pixmap is None:
        renderer = QSvgRenderer(QByteArray(chess.svg.piece(piece).encode("utf-8")))
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        _pixmaps[key] = pixmap
    return pixmap


def piece_words(piece: chess.Piece) -> str:
    return f"{COLOUR_WORDS[piece.color].lower()} {chess.piece_name(piece.piece_type)}"


def board_from_moves(moves: list[str]) -> chess.Board:
    """The position after ``moves`` (UCI) from the start, with its history for claims."""
    board = chess.Board()
    for uci in moves:
        board.push(board.parse_uci(uci))
    return board


def parse_typed_move(board: chess.Board, text: str) -> chess.Move | None:
    """A move typed as SAN (``Nf3``, ``exd5``, ``O-O``) or UCI (``g1f3``), if legal here."""
    text = text.strip()
    if not text:
        return None
    for parse in (board.parse_san, board.parse_uci):
        try:
            move = parse(text)
        except ValueError:
            continue
        if move and board.is_legal(move):
            return move
    return None


def describe_move(board_before: chess.Board, move: chess.Move) -> str:
    """'White knight from g1 to f3', with captures, castling, promotion and check in words."""
    piece = board_before.piece_at(move.from_square)
    if piece is None:
        return move.uci()
    who = COLOUR_WORDS[piece.color]
    if board_before.is_castling(move):
        side = "kingside" if board_before.is_kingside_castling(move) else "queenside"
        words = f"{who} castles {side}"
    else:
        words = (
            f"{who} {chess.piece_name(piece.piece_type)} from "
            f"{chess.square_name(move.from_square)} to {chess.square_name(move.to_square)}"
        )
        if board_before.is_en_passant(move):
            words += ", taking a pawn en passant"
        else:
            captured = board_before.piece_at(move.to_square)
            if captured is not None:
                words += f", taking the {chess.piece_name(captured.piece_type)}"
        if move.promotion:
            words += f", promoting to a {chess.piece_name(move.promotion)}"
    after = board_before.copy(stack=False)
    after.push(move)
    if after.is_checkmate():
        words += ", checkmate"
    elif after.is_check():
        words += ", check"
    return words


class PromotionChooser(QFrame):
    """A small popup with the four pieces a pawn can become; ``chosen(piece_type)``."""

    chosen = Signal(int)
    cancelled = Signal()

    def __init__(self, color: chess.Color, size: int, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setFrameShape(QFrame.Shape.Box)
        self.setAccessibleName("Promote the pawn to")
        self._done = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        self.buttons: dict[int, QToolButton] = {}
        for piece_type in PROMOTION_PIECES:
            button = QToolButton(self)
            name = chess.piece_name(piece_type)
            button.setIcon(QIcon(piece_pixmap(chess.Piece(piece_type, color), size * 2)))
            button.setIconSize(QSize(size, size))
            button.setToolTip(name.capitalize())
            button.setAccessibleName(name.capitalize())
            button.setAutoRaise(True)
            button.clicked.connect(lambda _=False, kind=piece_type: self._choose(kind))
            layout.addWidget(button)
            self.buttons[piece_type] = button

    def _choose(self, piece_type: int) -> None:
        self._done = True
        self.close()
        self.chosen.emit(piece_type)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        keys = {Qt.Key.Key_Q: chess.QUEEN, Qt.Key.Key_R: chess.ROOK}
        keys |= {Qt.Key.Key_B: chess.BISHOP, Qt.Key.Key_N: chess.KNIGHT}
        if event.key() in keys:
            self._choose(keys[Qt.Key(event.key())])
            return
        super().keyPressEvent(event)

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        if not self._done:
            self._done = True
            self.cancelled.emit()


class ChessBoard(QWidget):
    """A board that shows a position and lets "you" choose a move: ``moveChosen(uci)``.

    ``you`` is the colour you play (None: you watch, and nothing can be picked up).
    Moves can be chosen only when it is your turn and ``set_active(True)`` (the game is
    running); the board stays as it is until ``set_moves``/``set_position`` is called.
    """

    moveChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(False)
        self.setMinimumSize(160, 160)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setAccessibleName("Chess board")
        self._board = chess.Board()
        self._you: chess.Color | None = None
        self._active = True
        self._flipped = False
        self._selected: chess.Square | None = None
        self._focus_square: chess.Square = chess.E2
        self._press_pos: QPoint | None = None
        self._drag_pos: QPoint | None = None
        self._dragging = False
        self._press_selected_already = False
        self.promotion_chooser: PromotionChooser | None = None
        # The last move when only a FEN was given (set_position), which has no history.
        self._last_override: chess.Move | None = None
        self._update_description()

    # --- What it shows. ---------------------------------------------------------------

    @property
    def position(self) -> chess.Board:
        return self._board.copy()

    @property
    def you(self) -> chess.Color | None:
        return self._you

    @property
    def flipped(self) -> bool:
        return self._flipped

    @property
    def selected_square(self) -> chess.Square | None:
        return self._selected

    @property
    def focus_square(self) -> chess.Square:
        return self._focus_square

    def set_moves(self, moves: list[str]) -> None:
        """Show the position after ``moves`` (UCI, from the start); keeps the history."""
        self._set_board(board_from_moves(moves))

    def set_position(self, fen: str, last_uci: str | None = None) -> None:
        """Show ``fen``; ``last_uci`` (the move that led to it) is highlighted."""
        self._last_override = chess.Move.from_uci(last_uci) if last_uci else None
        self._set_board(chess.Board(fen), keep_override=True)

    def set_you(self, color: chess.Color | None) -> None:
        """Who you are; the board turns so that your side is at the bottom."""
        self._you = color
        self._flipped = color == chess.BLACK
        self._cancel()
        self.update()

    def set_active(self, active: bool) -> None:
        """Whether moves can be chosen at all (False once the game is over or adjourned)."""
        self._active = active
        if not active:
            self._cancel()
        self.update()

    def set_flipped(self, flipped: bool) -> None:
        self._flipped = flipped
        self.update()

    def flip(self) -> None:
        self.set_flipped(not self._flipped)

    def last_move(self) -> chess.Move | None:
        if self._last_override is not None:
            return self._last_override
        return self._board.move_stack[-1] if self._board.move_stack else None

    def can_move(self) -> bool:
        return (
            self._active
            and self._you is not None
            and self._board.turn == self._you
            and not self._board.is_game_over()
        )

    def legal_targets(self, square: chess.Square) -> set[chess.Square]:
        return {m.to_square for m in self._board.legal_moves if m.from_square == square}

    def choose_move(self, move: chess.Move) -> bool:
        """Emit ``move`` if you may play it now (legal, your turn); True if emitted."""
        if not self.can_move() or not self._board.is_legal(move):
            return False
        self._cancel()
        self.moveChosen.emit(move.uci())
        return True

    def describe(self) -> str:
        """The position in words, for a screen reader: whose move, the last move, pieces."""
        board = self._board
        parts = []
        if board.is_checkmate():
            parts.append(f"Checkmate, {COLOUR_WORDS[not board.turn]} wins.")
        elif board.is_stalemate():
            parts.append("Stalemate.")
        else:
            parts.append(f"{COLOUR_WORDS[board.turn]} to move.")
            if board.is_check():
                parts.append(f"{COLOUR_WORDS[board.turn]} is in check.")
        last = self.last_move()
        if last is not None:
            if board.move_stack and self._last_override is None:
                before = board.copy()
                before.pop()
                parts.append(f"Last move: {describe_move(before, last)}.")
            else:
                parts.append(
                    f"Last move: from {chess.square_name(last.from_square)} "
                    f"to {chess.square_name(last.to_square)}."
                )
        for color in (chess.WHITE, chess.BLACK):
            pieces = []
            for piece_type in (chess.KING, chess.QUEEN, chess.ROOK, chess.BISHOP):
                pieces += self._piece_list(color, piece_type)
            pieces += self._piece_list(color, chess.KNIGHT)
            pieces += self._piece_list(color, chess.PAWN)
            parts.append(f"{COLOUR_WORDS[color]}: {', '.join(pieces)}.")
        return " ".join(parts)

    def _piece_list(self, color: chess.Color, piece_type: int) -> list[str]:
        squares = [chess.square_name(s) for s in self._board.pieces(piece_type, color)]
        if not squares:
            return []
        name = chess.piece_name(piece_type)
        if len(squares) == 1:
            return [f"{name} {squares[0]}"]
        return [f"{name}s {' '.join(squares)}"]

    def _set_board(self, board: chess.Board, *, keep_override: bool = False) -> None:
        if not keep_override:
            self._last_override = None
        self._board = board
        self._cancel()
        self._update_description()
        self.update()

    def _update_description(self) -> None:
        self.setAccessibleDescription(self.describe())

    # --- Geometry. ----------------------------------------------------------------------

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return width

    def sizeHint(self) -> QSize:
        return QSize(480, 480)

    def _square_size(self) -> float:
        return min(self.width(), self.height()) / 8.0

    def _origin(self) -> QPointF:
        side = self._square_size() * 8
        return QPointF((self.width() - side) / 2, (self.height() - side) / 2)

    def square_rect(self, square: chess.Square) -> QRectF:
        size = self._square_size()
        file, rank = chess.square_file(square), chess.square_rank(square)
        column, row = (7 - file, rank) if self._flipped else (file, 7 - rank)
        origin = self._origin()
        return QRectF(origin.x() + column * size, origin.y() + row * size, size, size)

    def square_center(self, square: chess.Square) -> QPoint:
        return self.square_rect(square).center().toPoint()

    def square_at(self, pos: QPoint | QPointF) -> chess.Square | None:
        size = self._square_size()
        origin = self._origin()
        column = int((pos.x() - origin.x()) // size)
        row = int((pos.y() - origin.y()) // size)
        if not (0 <= column < 8 and 0 <= row < 8):
            return None
        file, rank = (7 - column, row) if self._flipped else (column, 7 - row)
        return chess.square(file, rank)

    # --- Painting. ----------------------------------------------------------------------

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        size = self._square_size()
        ratio = self.devicePixelRatioF()
        piece_px = max(1, round(size * ratio))
        last = self.last_move()
        highlighted = {last.from_square, last.to_square} if last else set()
        coordinate_font = QFont(self.font())
        coordinate_font.setPixelSize(max(8, int(size * 0.16)))
        coordinate_font.setBold(True)
        painter.setFont(coordinate_font)
        for square in chess.SQUARES:
            rect = self.square_rect(square)
            light = (chess.square_file(square) + chess.square_rank(square)) % 2 == 1
            painter.fillRect(rect, LIGHT if light else DARK)
            if square in highlighted:
                painter.fillRect(rect, LAST_MOVE)
            if square == self._selected:
                painter.fillRect(rect, SELECTED)
            self._paint_coordinates(painter, square, rect, light)
        king = self._board.king(self._board.turn)
        if king is not None and self._board.is_check():
            rect = self.square_rect(king)
            gradient = QRadialGradient(rect.center(), size * 0.6)
            gradient.setColorAt(0.0, CHECK)
            gradient.setColorAt(0.55, QColor(CHECK.red(), CHECK.green(), CHECK.blue(), 150))
            gradient.setColorAt(1.0, QColor(CHECK.red(), CHECK.green(), CHECK.blue(), 0))
            painter.fillRect(rect, gradient)
        for square, piece in self._board.piece_map().items():
            if self._dragging and square == self._selected:
                continue
            pixmap = piece_pixmap(piece, piece_px)
            pixmap.setDevicePixelRatio(ratio)
            painter.drawPixmap(self.square_rect(square).topLeft(), pixmap)
        if self._selected is not None:
            self._paint_hints(painter, size)
        if self.hasFocus():
            pen = QPen(FOCUS, max(2.0, size * 0.06))
            pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            inset = pen.widthF() / 2
            painter.drawRect(
                self.square_rect(self._focus_square).adjusted(inset, inset, -inset, -inset)
            )
        if self._dragging and self._selected is not None and self._drag_pos is not None:
            piece = self._board.piece_at(self._selected)
            if piece is not None:
                pixmap = piece_pixmap(piece, piece_px)
                pixmap.setDevicePixelRatio(ratio)
                painter.drawPixmap(
                    QPointF(self._drag_pos.x() - size / 2, self._drag_pos.y() - size / 2), pixmap
                )
        painter.end()

    def _paint_coordinates(self, painter: QPainter, square: int, rect: QRectF, light: bool) -> None:
        file, rank = chess.square_file(square), chess.square_rank(square)
        bottom_rank = 7 if self._flipped else 0
        left_file = 7 if self._flipped else 0
        painter.setPen(DARK if light else LIGHT)
        margin = rect.width() * 0.05
        inner = rect.adjusted(margin, margin * 0.5, -margin, -margin * 0.5)
        if rank == bottom_rank:
            painter.drawText(
                inner, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, "abcdefgh"[file]
            )
        if file == left_file:
            painter.drawText(
                inner, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, str(rank + 1)
            )

    def _paint_hints(self, painter: QPainter, size: float) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        for target in self.legal_targets(self._selected):
            rect = self.square_rect(target)
            capture = self._board.piece_at(target) is not None or (
                self._board.ep_square == target
                and self._board.piece_type_at(self._selected) == chess.PAWN
            )
            if capture:
                pen = QPen(HINT, size * 0.08)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                inset = size * 0.06
                painter.drawEllipse(rect.adjusted(inset, inset, -inset, -inset))
                painter.setPen(Qt.PenStyle.NoPen)
            else:
                painter.setBrush(HINT)
                painter.drawEllipse(rect.center(), size * 0.15, size * 0.15)

    # --- Mouse. -------------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            self._cancel()
            return
        square = self.square_at(event.position())
        if square is None or not self.can_move():
            self._cancel()
            return
        self._focus_square = square
        if self._selected is not None and square in self.legal_targets(self._selected):
            self._put_down(square)  # click-click: the second click
            return
        if self._own_piece(square):
            self._press_selected_already = self._selected == square
            self._selected = square
            self._press_pos = event.position().toPoint()
            self._drag_pos = self._press_pos
        else:
            self._selected = None
        self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press_pos is None or self._selected is None:
            return
        pos = event.position().toPoint()
        if not self._dragging:
            distance = (pos - self._press_pos).manhattanLength()
            if distance < QApplication.startDragDistance():
                return
            self._dragging = True
        self._drag_pos = pos
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._press_pos is None:
            return
        was_dragging = self._dragging
        self._press_pos = None
        self._dragging = False
        self._drag_pos = None
        if self._selected is None:
            self.update()
            return
        square = self.square_at(event.position())
        if was_dragging:
            if square is not None and square in self.legal_targets(self._selected):
                self._put_down(square)
                return
            if square != self._selected:
                self._selected = None  # dropped off the board or on a square it cannot go
        elif square == self._selected and self._press_selected_already:
            self._selected = None  # a second click on the picked-up piece puts it back
        self.update()

    def _own_piece(self, square: chess.Square) -> bool:
        piece = self._board.piece_at(square)
        return piece is not None and piece.color == self._you

    def _put_down(self, target: chess.Square) -> None:
        """Make the move from the selected square to ``target`` (asking for a promotion)."""
        source = self._selected
        if source is None:
            return
        candidates = [
            m for m in self._board.legal_moves if m.from_square == source and m.to_square == target
        ]
        if not candidates:
            return
        if any(m.promotion for m in candidates):
            self._ask_promotion(source, target)
            return
        self.choose_move(candidates[0])

    def _ask_promotion(self, source: chess.Square, target: chess.Square) -> None:
        size = max(24, int(self._square_size() * 0.8))
        chooser = PromotionChooser(self._board.turn, size, self)
        chooser.chosen.connect(
            lambda kind: self.choose_move(chess.Move(source, target, promotion=kind))
        )
        chooser.cancelled.connect(self._cancel)
        chooser.destroyed.connect(lambda: setattr(self, "promotion_chooser", None))
        chooser.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.promotion_chooser = chooser
        chooser.adjustSize()
        rect = self.square_rect(target)
        chooser.move(self.mapToGlobal(rect.bottomLeft().toPoint()))
        chooser.show()
        chooser.buttons[chess.QUEEN].setFocus()

    def _cancel(self) -> None:
        self._selected = None
        self._press_pos = None
        self._drag_pos = None
        self._dragging = False
        self.update()

    # --- Keyboard. ----------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        steps = {
            Qt.Key.Key_Up: (0, 1),
            Qt.Key.Key_Down: (0, -1),
            Qt.Key.Key_Left: (-1, 0),
            Qt.Key.Key_Right: (1, 0),
        }
        if key in steps:
            file_step, rank_step = steps[Qt.Key(key)]
            if self._flipped:  # the keys follow the screen, not White's view
                file_step, rank_step = -file_step, -rank_step
            file = min(7, max(0, chess.square_file(self._focus_square) + file_step))
            rank = min(7, max(0, chess.square_rank(self._focus_square) + rank_step))
            self._focus_square = chess.square(file, rank)
            self._announce_focus()
            self.update()
            return
        if key in (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._activate_focus_square()
            return
        if key == Qt.Key.Key_Escape and self._selected is not None:
            self._cancel()
            return
        super().keyPressEvent(event)

    def _activate_focus_square(self) -> None:
        square = self._focus_square
        if not self.can_move():
            return
        if self._selected is not None and square in self.legal_targets(self._selected):
            self._put_down(square)
        elif self._own_piece(square) and self._selected != square:
            self._selected = square
        else:
            self._selected = None
        self.update()

    def _announce_focus(self) -> None:
        piece = self._board.piece_at(self._focus_square)
        name = chess.square_name(self._focus_square)
        self.setAccessibleName(f"Chess board, {name}, {piece_words(piece) if piece else 'empty'}")

    def focusInEvent(self, event) -> None:
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event) -> None:
        super().focusOutEvent(event)
        self.update()


class MoveEntry(QLineEdit):
    """A line where a move is typed in SAN (``Nf3``) or UCI (``g1f3``) and Enter sends it."""

    def __init__(self, board: ChessBoard, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._board = board
        self.setPlaceholderText("Type a move (Nf3 or g1f3) and press Enter")
        self.setAccessibleName("Type a move")
        self.returnPressed.connect(self._submit)
        self.textEdited.connect(lambda _text: self.setToolTip(""))

    def _submit(self) -> None:
        text = self.text()
        if not text.strip():
            return
        if not self._board.can_move():
            self.setToolTip("It is not your move")
            self.setAccessibleDescription("It is not your move")
            return
        move = parse_typed_move(self._board.position, text)
        if move is None:
            message = f"{text.strip()} is not a legal move here"
            self.setToolTip(message)
            self.setAccessibleDescription(message)
            self.selectAll()
            return
        if self._board.choose_move(move):
            self.clear()
            self.setAccessibleDescription("")


def format_clock(ms: int) -> str:
    """'4:59', '1:02:03', and tenths under ten seconds ('9.4') as a clock shows them."""
    ms = max(0, ms)
    if ms < 10_000:
        return f"0:0{ms // 1000}.{(ms % 1000) // 100}"
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


class ChessClocks(QObject):
    """Two clocks (``labels``) counting down from the server's figures, corrected locally.

    ``set_clocks`` takes what the server said (milliseconds left, whose turn, whether
    the game runs); the running clock counts down from that with the local monotonic
    clock until the next figures come. The running one is highlighted. The labels are
    laid out by the owner: ``top_label`` goes by the top edge of the board (the side
    playing from there), ``bottom_label`` by the bottom edge.
    """

    def __init__(self, parent: QObject | None = None, *, monotonic=time.monotonic) -> None:
        super().__init__(parent)
        self._monotonic = monotonic
        self._ms: dict[chess.Color, int | None] = {chess.WHITE: None, chess.BLACK: None}
        self._running: chess.Color | None = None
        self._received = monotonic()
        self.flipped = False
        self.labels = {chess.WHITE: QLabel(), chess.BLACK: QLabel()}
        for color, label in self.labels.items():
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setMinimumWidth(110)
            font = QFont(label.font())
            font.setPointSizeF(font.pointSizeF() * 1.6)
            font.setStyleHint(QFont.StyleHint.Monospace)
            label.setFont(font)
            label.setAccessibleName(f"{COLOUR_WORDS[color]}'s clock")
            label.setContentsMargins(8, 4, 8, 4)
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self.refresh)
        self.refresh()

    @property
    def top_label(self) -> QLabel:
        return self.labels[chess.WHITE if self.flipped else chess.BLACK]

    @property
    def bottom_label(self) -> QLabel:
        return self.labels[chess.BLACK if self.flipped else chess.WHITE]

    def set_clocks(
        self, white_ms: int | None, black_ms: int | None, running: chess.Color | None
    ) -> None:
        """The server's figures; ``running`` is the side whose clock runs now (or None)."""
        self._ms = {chess.WHITE: white_ms, chess.BLACK: black_ms}
        self._running = running if white_ms is not None else None
        self._received = self._monotonic()
        if self._running is None:
            self._timer.stop()
        else:
            self._timer.start()
        self.refresh()

    def shown_ms(self, color: chess.Color) -> int | None:
        """What the clock of ``color`` shows now (the server's figure minus the time since)."""
        ms = self._ms[color]
        if ms is None:
            return None
        if color == self._running:
            ms -= int((self._monotonic() - self._received) * 1000)
        return max(0, ms)

    def refresh(self) -> None:
        for color, label in self.labels.items():
            ms = self.shown_ms(color)
            text = "–" if ms is None else format_clock(ms)
            label.setText(text)
            # An untimed game has no clocks to show (only after the labels were laid out,
            # so a parentless label never opens as a window of its own).
            if label.parentWidget() is not None:
                label.setVisible(ms is not None)
            running = color == self._running
            low = ms is not None and ms < 10_000
            background = "#2e7d32" if running else "transparent"
            foreground = "white" if running else ("#c62828" if low else "palette(text)")
            if running and low:
                background = "#c62828"
            label.setStyleSheet(
                f"QLabel {{ background: {background}; color: {foreground}; border-radius: 4px; "
                f"font-weight: {'bold' if running else 'normal'}; }}"
            )
            state = ", running" if running else ""
            label.setAccessibleDescription(f"{text}{state}" if ms is not None else "untimed")
            label.setToolTip(f"{COLOUR_WORDS[color]}'s clock")
        if self._running is not None and self.shown_ms(self._running) == 0:
            self._timer.stop()


class MoveList(QListWidget):
    """The moves so far in SAN, one line per full move ('12. Nf3 Nc6')."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Moves")
        self.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    def set_moves(self, moves: list[str]) -> None:
        board = chess.Board()
        sans = []
        for uci in moves:
            move = board.parse_uci(uci)
            sans.append(board.san(move))
            board.push(move)
        self.set_sans(sans)

    def set_sans(self, sans: list[str]) -> None:
        self.clear()
        for index in range(0, len(sans), 2):
            pair = sans[index : index + 2]
            self.addItem(f"{index // 2 + 1}. {' '.join(pair)}")
        self.scrollToBottom()


class GameButtons(QWidget):
    """Resign, offer draw, claim draw and abort, each enabled when the rules allow it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.resign = QPushButton("Resign", self)
        self.offer_draw = QPushButton("Offer draw", self)
        self.claim_draw = QPushButton("Claim draw", self)
        self.abort = QPushButton("Abort", self)
        for button, description in (
            (self.resign, "Give up the game"),
            (self.offer_draw, "Offer your opponent a draw"),
            (self.claim_draw, "Claim a draw by threefold repetition or the fifty-move rule"),
            (self.abort, "Call the game off before both sides have moved"),
        ):
            button.setAccessibleName(button.text())
            button.setAccessibleDescription(description)
            button.setToolTip(description)
            layout.addWidget(button)
        self.update_for({}, None)

    def update_for(self, snapshot: Mapping[str, Any], you: str | None) -> None:
        """Enable what ``you`` may do in the game ``snapshot`` (ChessGame.snapshot's shape)."""
        players = (snapshot.get("white"), snapshot.get("black"))
        playing = (
            you is not None and you in players and snapshot.get("state", "running") == "running"
        )
        moves = list(snapshot.get("moves") or [])
        try:
            board = board_from_moves(moves)
        except ValueError:
            board = chess.Board(snapshot.get("fen", chess.STARTING_FEN))
        over = board.is_game_over()
        offer_from = snapshot.get("draw_offer_from")
        opponent_offered = offer_from is not None and offer_from != you
        self.resign.setEnabled(playing and not over)
        self.abort.setEnabled(playing and not over and len(moves) < 2)
        self.offer_draw.setEnabled(playing and not over and offer_from != you)
        self.offer_draw.setText("Accept draw" if opponent_offered else "Offer draw")
        self.offer_draw.setAccessibleName(self.offer_draw.text())
        claimable = board.is_repetition(3) or board.halfmove_clock >= 100
        self.claim_draw.setEnabled(playing and not over and claimable)


class ChessPanel(QWidget):
    """A board with clocks, move list, move entry and buttons, fed snapshots of one game."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.board = ChessBoard(self)
        self.clocks = ChessClocks(self)
        self._side = QVBoxLayout()
        self.moves = MoveList(self)
        self.entry = MoveEntry(self.board, self)
        self.buttons = GameButtons(self)
        self.flip_button = QPushButton("Flip board", self)
        self.flip_button.setAccessibleName("Flip board")
        self.flip_button.clicked.connect(self.flip)
        side = self._side
        side.addWidget(self.clocks.top_label)  # the opponent's clock, by their edge
        side.addWidget(self.moves, 1)
        side.addWidget(self.flip_button)
        side.addWidget(self.clocks.bottom_label)  # yours, by your edge
        top = QHBoxLayout()
        top.addWidget(self.board, 3)
        top.addLayout(side, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addWidget(self.entry)
        layout.addWidget(self.buttons)
        self.setAccessibleName("Chess game")

    def flip(self) -> None:
        self.board.flip()
        self._place_clocks()

    def _place_clocks(self) -> None:
        """Each clock by the edge of the board its side plays from."""
        if self.clocks.flipped == self.board.flipped:
            return
        self.clocks.flipped = self.board.flipped
        self._side.removeWidget(self.clocks.top_label)
        self._side.removeWidget(self.clocks.bottom_label)
        self._side.insertWidget(0, self.clocks.top_label)
        self._side.addWidget(self.clocks.bottom_label)

    def apply_snapshot(self, snapshot: Mapping[str, Any], you: str | None) -> None:
        """Show a game (ChessGame.snapshot's fields) as ``you`` (a player's name, or a watcher)."""
        color = None
        if you is not None and you == snapshot.get("white"):
            color = chess.WHITE
        elif you is not None and you == snapshot.get("black"):
            color = chess.BLACK
        if color != self.board.you:
            self.board.set_you(color)
            self._place_clocks()
        moves = list(snapshot.get("moves") or [])
        self.board.set_moves(moves)
        running = snapshot.get("state", "running") == "running"
        self.board.set_active(running)
        self.moves.set_moves(moves)
        turn = chess.WHITE if snapshot.get("turn", "white") == "white" else chess.BLACK
        self.clocks.set_clocks(
            snapshot.get("white_ms"), snapshot.get("black_ms"), turn if running else None
        )
        self.buttons.update_for(snapshot, you)
