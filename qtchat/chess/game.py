"""One chess game as the server keeps it: the board, whose turn, the clocks, the outcome.

The rules are python-chess's, never our own: a move from a client is read with
``Board.parse_uci`` (which checks it is legal) and only then pushed; the outcome comes
from ``Board.outcome``. What python-chess leaves to the program is here: who may do what
(only the player to move moves; only before both sides have moved may a game be
aborted), draw offers, claims, resignation, and the clocks.

Time is passed in (``now``, seconds on any monotonic scale the caller keeps) to every
call and never read here, so a test can drive a game with a hand-advanced clock and the
server decides what "now" is. The clock of the side to move runs from the moment the
last move was stored (White's from the start); a move adds the increment to the mover's
clock. ``deadline()`` says when the running clock would reach zero, so the server can
set a timer and call ``tick(now)`` then, ending the game even if nobody moves.

Errors are ``ChessError`` subclasses whose ``code`` is the protocol's error code
(``not_your_turn``, ``illegal_move``, ``not_permitted``, ``game_finished``); the
feature module answers the frame with that code and the message.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import chess
import chess.pgn

RUNNING = "running"
ADJOURNED = "adjourned"
FINISHED = "finished"

# The contract's `reason` for each automatic end python-chess reports.
_AUTOMATIC = {
    chess.Termination.CHECKMATE: "checkmate",
    chess.Termination.STALEMATE: "stalemate",
    chess.Termination.INSUFFICIENT_MATERIAL: "insufficient_material",
    chess.Termination.SEVENTYFIVE_MOVES: "seventyfive_moves",
    chess.Termination.FIVEFOLD_REPETITION: "fivefold_repetition",
}

# UCI as the contract has it: from, to, and a promotion piece; lower case. ("0000", the
# null move, is UCI too, and is refused by name below.)
_UCI = re.compile(r"[a-h][1-8][a-h][1-8][qrbn]?")

MAX_INITIAL = 10_800  # seconds (3 h), the contract's limit
MAX_INCREMENT = 180


class ChessError(Exception):
    """A request the rules refuse; ``code`` is the protocol error code to answer with."""

    code: ClassVar[str] = "not_permitted"


class NotPermitted(ChessError):
    code = "not_permitted"


class NotYourTurn(ChessError):
    code = "not_your_turn"


class IllegalMove(ChessError):
    code = "illegal_move"


class GameFinished(ChessError):
    code = "game_finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class Clock:
    """A time control: ``initial`` seconds each, ``increment`` seconds added per move.

    ``initial == 0`` means untimed (then the increment is ignored).
    """

    initial: int = 0
    increment: int = 0

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("initial", self.initial, MAX_INITIAL),
            ("increment", self.increment, MAX_INCREMENT),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise ValueError(f"clock {name} must be a whole number of seconds 0..{limit}")

    @property
    def timed(self) -> bool:
        return self.initial > 0

    def to_wire(self) -> dict[str, int]:
        return {"initial": self.initial, "increment": self.increment}

    def pgn_time_control(self) -> str:
        return f"{self.initial}+{self.increment}" if self.timed else "-"


def _colour_name(color: chess.Color) -> str:
    return "white" if color == chess.WHITE else "black"


class ChessGame:
    """The board, clocks and state of one game between ``white`` and ``black``.

    Every method that changes the game takes ``now``; read the result from ``state``,
    ``result``, ``reason``, ``ended_by`` and ``snapshot()`` afterwards.
    """

    def __init__(
        self,
        *,
        white: str,
        black: str,
        now: float,
        clock: Clock | None = None,
        date: dt.date | None = None,
        game_id: str = "",
        room: str | None = None,
    ) -> None:
        if white == black:
            raise ValueError("a player cannot play themselves")
        self.game_id = game_id
        self.white = white
        self.black = black
        self.room = room
        self.clock = clock or Clock()
        self.date = date
        self.state = RUNNING
        self.result: str | None = None
        self.reason: str | None = None
        self.ended_by: str | None = None  # whose move or action ended it (White on a flag)
        self.draw_offer_from: str | None = None
        self._board = chess.Board()
        self._sans: list[str] = []
        # Seconds left on each clock as of ``_since``; the side to move's clock runs
        # from ``_since`` unless it is None (paused, adjourned, finished or untimed).
        initial = float(self.clock.initial)
        self._left = {chess.WHITE: initial, chess.BLACK: initial}
        self._since: float | None = now if self.clock.timed else None
        self._clocks_after: list[float] = []  # the mover's clock after each move (for PGN)

    # --- What the game is. ------------------------------------------------------------------

    @property
    def board(self) -> chess.Board:
        """A copy of the position (with its move stack): changing it changes nothing here."""
        return self._board.copy()

    @property
    def ply(self) -> int:
        return len(self._board.move_stack)

    @property
    def turn(self) -> str:
        return _colour_name(self._board.turn)

    @property
    def player_to_move(self) -> str:
        return self.white if self._board.turn == chess.WHITE else self.black

    @property
    def paused(self) -> bool:
        """True while no clock runs although the game is timed and not over."""
        return self.clock.timed and self.state != FINISHED and self._since is None

    def color_of(self, player: str) -> chess.Color | None:
        if player == self.white:
            return chess.WHITE
        if player == self.black:
            return chess.BLACK
        return None

    def opponent_of(self, player: str) -> str:
        return self.black if player == self.white else self.white

    def seconds_left(self, color: chess.Color, now: float | None = None) -> float | None:
        """What ``color`` has left at ``now`` (as of the last stored moment without it)."""
        if not self.clock.timed:
            return None
        left = self._left[color]
        if now is not None and self._since is not None and color == self._board.turn:
            left -= max(0.0, now - self._since)
        return max(0.0, left)

    def deadline(self) -> float | None:
        """When (on the caller's time scale) the running clock reaches zero; None if none runs."""
        if self._since is None or self.state != RUNNING:
            return None
        return self._since + self._left[self._board.turn]

    def can_abort(self) -> bool:
        return self.state != FINISHED and self.ply < 2

    def can_claim_draw(self) -> bool:
        """Threefold repetition of the current position, or fifty moves without progress."""
        return self.state != FINISHED and (
            self._board.is_repetition(3) or self._board.halfmove_clock >= 100
        )

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The fields of ``game_started`` / ``game_moved``, clocks as of ``now``.

        Without ``now`` the clocks are as of the last stored moment (the last move,
        the start, or the pause), which is what ``game_moved`` reports.
        """
        last = self._board.move_stack[-1] if self._board.move_stack else None
        white_left = self.seconds_left(chess.WHITE, now)
        black_left = self.seconds_left(chess.BLACK, now)
        return {
            "game": self.game_id,
            "white": self.white,
            "black": self.black,
            "room": self.room,
            "clock": self.clock.to_wire(),
            "fen": self._board.fen(),
            "moves": [move.uci() for move in self._board.move_stack],
            "white_ms": None if white_left is None else round(white_left * 1000),
            "black_ms": None if black_left is None else round(black_left * 1000),
            "turn": self.turn,
            "ply": self.ply,
            "uci": last.uci() if last else None,
            "san": self._sans[-1] if self._sans else None,
            "state": self.state,
            "result": self.result,
            "reason": self.reason,
            "draw_offer_from": self.draw_offer_from,
        }

    # --- What players do. ---------------------------------------------------------------

    def move(self, player: str, uci: str, now: float) -> tuple[str, str]:
        """Play ``uci`` for ``player``; returns (uci, san) as stored. Raises ChessError."""
        self.tick(now)  # a move that arrives after the flag fell does not count
        self._check_can_act(player)
        color = self.color_of(player)
        if color != self._board.turn:
            raise NotYourTurn(f"it is {self.player_to_move}'s move")
        if not isinstance(uci, str) or uci == "0000":
            raise IllegalMove("the null move is not a move")
        if not _UCI.fullmatch(uci):
            raise IllegalMove(f"{uci!r} is not a move in UCI notation (like e2e4 or e7e8q)")
        try:
            move = self._board.parse_uci(uci)  # validates: raises unless legal here
        except ValueError as error:
            raise IllegalMove(f"{uci} is not legal in this position") from error
        if not move or not self._board.is_legal(move):
            raise IllegalMove(f"{uci} is not legal in this position")
        san = self._board.san(move)
        self._charge(now)
        if self.clock.timed:
            self._left[color] += self.clock.increment
            self._clocks_after.append(self._left[color])
            self._since = now
        self._board.push(move)
        self._sans.append(san)
        self.draw_offer_from = None  # a pending offer lapses when a move is made
        outcome = self._board.outcome(claim_draw=False)
        if outcome is not None:
            self._finish(outcome.result(), _AUTOMATIC[outcome.termination], player)
        return move.uci(), san

    def resign(self, player: str, now: float) -> None:
        self.tick(now)
        self._check_can_act(player, adjourned_ok=True)
        self._charge(now)
        self._finish("0-1" if player == self.white else "1-0", "resign", player)

    def abort(self, player: str, now: float) -> None:
        self.tick(now)
        self._check_can_act(player, adjourned_ok=True)
        if not self.can_abort():
            raise NotPermitted("a game can be aborted only before each side has moved")
        self._charge(now)
        self._finish("*", "aborted", player)

    def draw(self, player: str, action: str, now: float) -> str:
        """Offer, accept, decline or claim a draw; returns the action that took effect.

        Offering while the opponent's offer is pending accepts it ("accept" is returned).
        """
        self.tick(now)
        self._check_can_act(player)
        opponent = self.opponent_of(player)
        if action == "offer":
            if self.draw_offer_from == opponent:
                action = "accept"
            else:
                self.draw_offer_from = player
                return "offer"
        if action == "accept":
            if self.draw_offer_from != opponent:
                raise NotPermitted("there is no draw offer from your opponent to accept")
            self._charge(now)
            self._finish("1/2-1/2", "agreement", player)
            return "accept"
        if action == "decline":
            if self.draw_offer_from != opponent:
                raise NotPermitted("there is no draw offer from your opponent to decline")
            self.draw_offer_from = None
            return "decline"
        if action == "claim":
            if self._board.is_repetition(3):
                reason = "threefold_repetition"
            elif self._board.halfmove_clock >= 100:
                reason = "fifty_moves"
            else:
                raise NotPermitted(
                    "a draw can be claimed only on threefold repetition or after fifty moves "
                    "without a capture or a pawn move"
                )
            self._charge(now)
            self._finish("1/2-1/2", reason, player)
            return "claim"
        raise NotPermitted(f"unknown draw action {action!r}")

    # --- What the host does. ------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """End the game on time if the running clock is out at ``now``; True if it did."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return False
        loser = self._board.turn
        self._left[loser] = 0.0
        self._since = None
        winner = not loser
        if self._board.has_insufficient_material(winner):
            result = "1/2-1/2"  # the other side cannot mate: no win on time
        else:
            result = "1-0" if winner == chess.WHITE else "0-1"
        self._finish(result, "timeout", self.white)
        return True

    def pause(self, now: float) -> None:
        """Stop the running clock (host shutting down, game adjourned); charges up to ``now``."""
        if self.state == FINISHED:
            return
        self.tick(now)
        self._charge(now)
        self._since = None

    def adjourn(self, now: float) -> None:
        """A player's session ended: no moves and no time until ``resume``."""
        if self.state == FINISHED:
            raise GameFinished("the game is over")
        self.pause(now)
        if self.state != FINISHED:
            self.state = ADJOURNED
            self.draw_offer_from = None

    def resume(self, now: float) -> None:
        """Run again from ``now`` with the clocks as they were when paused or adjourned."""
        if self.state == FINISHED:
            raise GameFinished("the game is over")
        self.state = RUNNING
        if self.clock.timed and self._since is None:
            self._since = now

    def finish(self, result: str, reason: str, by: str | None, now: float) -> None:
        """End the game for a reason the host decides (``abandoned``; ``aborted`` on a drop)."""
        if self.state == FINISHED:
            raise GameFinished("the game is over")
        self._charge(now)
        self._finish(result, reason, by)

    # --- Storage. -----------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """Everything needed to restore this game exactly, as JSON-able values."""
        return {
            "version": 1,
            "game": self.game_id,
            "white": self.white,
            "black": self.black,
            "room": self.room,
            "clock": self.clock.to_wire(),
            "date": self.date.isoformat() if self.date else None,
            "moves": [move.uci() for move in self._board.move_stack],
            "white_left": self._left[chess.WHITE],
            "black_left": self._left[chess.BLACK],
            "since": self._since,
            "clocks_after": list(self._clocks_after),
            "state": self.state,
            "result": self.result,
            "reason": self.reason,
            "ended_by": self.ended_by,
            "draw_offer_from": self.draw_offer_from,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, resume_at: float | None = None) -> ChessGame:
        """The game ``to_record`` saved; moves are replayed through the validating calls.

        With ``resume_at``, a clock that was running restarts at that moment with the
        time it had when stored: the time the host was down is charged to nobody.
        """
        clock = Clock(**record["clock"])
        date = dt.date.fromisoformat(record["date"]) if record.get("date") else None
        game = cls(
            white=record["white"],
            black=record["black"],
            now=0.0,
            clock=clock,
            date=date,
            game_id=record["game"],
            room=record.get("room"),
        )
        for uci in record["moves"]:
            move = game._board.parse_uci(uci)
            if not move:
                raise ValueError("a stored game holds a null move")
            game._sans.append(game._board.san(move))
            game._board.push(move)
        game._left = {chess.WHITE: record["white_left"], chess.BLACK: record["black_left"]}
        game._since = record["since"]
        game._clocks_after = list(record["clocks_after"])
        game.state = record["state"]
        game.result = record["result"]
        game.reason = record["reason"]
        game.ended_by = record["ended_by"]
        game.draw_offer_from = record["draw_offer_from"]
        if resume_at is not None and game._since is not None:
            game._since = resume_at
        return game

    def pgn(self) -> str:
        """The game in PGN: players, date, result, and ``[%clk]`` after each timed move."""
        game = chess.pgn.Game()
        game.headers["Event"] = "qtchat game"
        game.headers["Site"] = f"qtchat {self.room}" if self.room else "qtchat"
        game.headers["Date"] = self.date.strftime("%Y.%m.%d") if self.date else "????.??.??"
        game.headers["Round"] = "-"
        game.headers["White"] = self.white
        game.headers["Black"] = self.black
        game.headers["Result"] = self.result or "*"
        game.headers["TimeControl"] = self.clock.pgn_time_control()
        if self.reason:
            game.headers["Termination"] = self.reason.replace("_", " ")
        node: chess.pgn.GameNode = game
        for index, move in enumerate(self._board.move_stack):
            node = node.add_variation(move)
            if self.clock.timed and index < len(self._clocks_after):
                node.set_clock(self._clocks_after[index])
        out = io.StringIO()
        game.accept(chess.pgn.FileExporter(out))
        return out.getvalue().strip() + "\n"

    # --- Inside. ------------------------------------------------------------------------

    def _check_can_act(self, player: str, *, adjourned_ok: bool = False) -> None:
        if self.state == FINISHED:
            raise GameFinished("the game is over")
        if self.color_of(player) is None:
            raise NotPermitted("only the two players can do that")
        if self.state == ADJOURNED and not adjourned_ok:
            raise NotPermitted("the game is adjourned")
        if self.paused and not adjourned_ok:
            raise NotPermitted("the game is paused")

    def _charge(self, now: float) -> None:
        """Take the time since ``_since`` off the running clock and restart it at ``now``."""
        if self._since is None:
            return
        color = self._board.turn
        self._left[color] = max(0.0, self._left[color] - max(0.0, now - self._since))
        self._since = now

    def _finish(self, result: str, reason: str, by: str | None) -> None:
        self.state = FINISHED
        self.result = result
        self.reason = reason
        self.ended_by = by
        self.draw_offer_from = None
        self._since = None
