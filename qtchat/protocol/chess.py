"""The frames of the ``chess`` feature (PROTOCOL-FEATURES §3), both ways.

Kept in a module of its own so that each negotiated feature adds its frames without
editing the shared tables' source: importing this module registers the client frames in
``CLIENT_FRAME_TYPES``, the server frames in ``SERVER_FRAME_TYPES`` (``@server_frame``)
and their checks in ``SERVER_FRAME_SHAPES``. Each side that speaks chess imports
it (``qtchat.server.features.chess``, ``qtchat.client.chess``), so both ends see them.

Client frames validate their own fields (a bad one is ``bad_frame``, as in protocol 1);
the rules (whose turn, which moves are legal) are the server's, in
``qtchat.server.features.chess``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from qtchat.protocol import (
    MAX_ID_CHARS,
    SERVER_FRAME_SHAPES,
    ClientFrame,
    LocalProtocolError,
    _Bad,
    _boolean,
    _check_name,
    _check_optional_str,
    _check_str,
    _list_of,
    _name_str,
    _seq,
    _shape,
    _short_str,
    _string,
    register_client_frames,
)
from qtchat.protocol.server_frames import ServerFrame, server_frame

FEATURE = "chess"
COLORS = ("white", "black", "random")
DRAW_ACTIONS = ("offer", "accept", "decline", "claim")
MAX_INITIAL = 10_800  # seconds: the contract's limits on a time control
MAX_INCREMENT = 180
MAX_GAME_CHARS = 64  # a game id
MAX_MOVES = 10_000  # UCI moves listed in one game_started (a real game is far below it)
MAX_GAMES_LISTED = 1_000
MAX_PGN_CHARS = 60_000


def _check_game(value: object) -> None:
    _check_str(value, "game", MAX_GAME_CHARS)


def _check_clock(value: object) -> None:
    if not isinstance(value, dict):
        raise LocalProtocolError("bad_frame", "clock must be an object {initial, increment}")
    for key, limit in (("initial", MAX_INITIAL), ("increment", MAX_INCREMENT)):
        item = value.get(key, 0)
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= limit:
            raise LocalProtocolError("bad_frame", f"clock.{key} must be 0 to {limit} seconds")


# --- frames a client sends --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GameOffer(ClientFrame):
    type: ClassVar[str] = "game_offer"
    _required: ClassVar[tuple[str, ...]] = ("to",)
    to: str
    room: str | None = None
    color: str = "random"
    clock: dict[str, int] | None = None

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)
        _check_name(self.to)
        if self.room is not None:
            _check_name(self.room, room=True)
        if self.color not in COLORS:
            raise LocalProtocolError("bad_frame", "color must be white, black or random")
        if self.clock is not None:
            _check_clock(self.clock)


@dataclass(frozen=True, slots=True, kw_only=True)
class _GameFrame(ClientFrame):
    """A frame that names one game (offer or game) and nothing else."""

    _required: ClassVar[tuple[str, ...]] = ("game",)
    game: str

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)
        _check_game(self.game)


@dataclass(frozen=True, slots=True, kw_only=True)
class GameAccept(_GameFrame):
    type: ClassVar[str] = "game_accept"


@dataclass(frozen=True, slots=True, kw_only=True)
class GameDecline(_GameFrame):
    type: ClassVar[str] = "game_decline"


@dataclass(frozen=True, slots=True, kw_only=True)
class GameCancel(_GameFrame):
    type: ClassVar[str] = "game_cancel"


@dataclass(frozen=True, slots=True, kw_only=True)
class GameResign(_GameFrame):
    type: ClassVar[str] = "game_resign"


@dataclass(frozen=True, slots=True, kw_only=True)
class GameAbort(_GameFrame):
    type: ClassVar[str] = "game_abort"


@dataclass(frozen=True, slots=True, kw_only=True)
class GameMove(ClientFrame):
    type: ClassVar[str] = "game_move"
    _required: ClassVar[tuple[str, ...]] = ("game", "move")
    game: str
    move: str

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)
        _check_game(self.game)
        _check_str(self.move, "move", 8)  # legality is the server's to judge


@dataclass(frozen=True, slots=True, kw_only=True)
class GameDraw(ClientFrame):
    type: ClassVar[str] = "game_draw"
    _required: ClassVar[tuple[str, ...]] = ("game", "action")
    game: str
    action: str

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)
        _check_game(self.game)
        if self.action not in DRAW_ACTIONS:
            raise LocalProtocolError("bad_frame", "action must be offer, accept, decline or claim")


@dataclass(frozen=True, slots=True, kw_only=True)
class GameListRequest(ClientFrame):
    type: ClassVar[str] = "game_list"

    def __post_init__(self) -> None:
        _check_optional_str(self.id, "id", MAX_ID_CHARS)


CLIENT_FRAMES = (GameOffer, GameAccept, GameDecline, GameCancel, GameMove, GameResign,
                 GameDraw, GameAbort, GameListRequest)
register_client_frames(*CLIENT_FRAMES)


# --- frames a server sends ---------------------------------------------------------------


@server_frame
class GameOffered(ServerFrame):
    type: ClassVar[str] = "game_offered"
    game: str
    sender: str  # "from" on the wire
    to: str
    color: str
    clock: dict[str, int]
    expires: int  # seconds from now the offer lasts
    room: str | None = None


@server_frame
class GameOfferEnded(ServerFrame):
    type: ClassVar[str] = "game_offer_ended"
    game: str
    reason: str


@server_frame
class GameStarted(ServerFrame):
    type: ClassVar[str] = "game_started"
    game: str
    white: str
    black: str
    clock: dict[str, int]
    fen: str
    moves: list[str]
    white_ms: int | None
    black_ms: int | None
    turn: str
    room: str | None = None
    adjourned: bool | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = ServerFrame.to_wire(self)  # (slots: no zero-argument super)
        wire.setdefault("white_ms", None)  # null on the wire: an untimed game
        wire.setdefault("black_ms", None)
        return wire


@server_frame
class GameMoved(ServerFrame):
    type: ClassVar[str] = "game_moved"
    game: str
    ply: int
    uci: str
    san: str
    fen: str
    white_ms: int | None
    black_ms: int | None
    turn: str

    def to_wire(self) -> dict[str, Any]:
        wire = ServerFrame.to_wire(self)  # (slots: no zero-argument super)
        wire.setdefault("white_ms", None)
        wire.setdefault("black_ms", None)
        return wire


@server_frame
class GameDrawRelay(ServerFrame):
    """``game_draw`` as the server relays it to the opponent."""

    type: ClassVar[str] = "game_draw"
    game: str
    sender: str  # "from"
    action: str


@server_frame
class GameOver(ServerFrame):
    type: ClassVar[str] = "game_over"
    game: str
    result: str
    reason: str
    pgn: str


@server_frame
class GameAdjourned(ServerFrame):
    type: ClassVar[str] = "game_adjourned"
    game: str


@server_frame
class GameListAnswer(ServerFrame):
    type: ClassVar[str] = "game_list"
    games: list[dict[str, Any]]
    finished: list[dict[str, Any]]
    id: str | None = None


def _one_of(*allowed: str) -> Callable[[object], str]:
    def checked(value: object) -> str:
        if value not in allowed:
            raise _Bad("one of " + ", ".join(allowed))
        return value  # type: ignore[return-value]
    return checked


def _ms(value: object) -> int | None:
    return None if value is None else _seq(value)


_game = _short_str
_clock = _shape({"initial": _seq, "increment": _seq})
_turn = _one_of("white", "black")
_uci = _list_of(lambda v: _string(v, 8), MAX_MOVES)
_STARTED = (
    {"game": _game, "white": _name_str, "black": _name_str, "clock": _clock,
     "fen": lambda v: _string(v, 128), "moves": _uci, "turn": _turn},
    {"room": _name_str, "white_ms": _ms, "black_ms": _ms, "adjourned": _boolean},
)
_finished_game = _shape({"game": _game, "white": _name_str, "black": _name_str,
                         "result": _short_str, "reason": _short_str,
                         "pgn": lambda v: _string(v, MAX_PGN_CHARS)}, {"room": _name_str})

SERVER_FRAME_SHAPES.update({
    "game_offered": ({"game": _game, "from": _name_str, "to": _name_str,
                      "color": _one_of(*COLORS), "clock": _clock, "expires": _seq},
                     {"room": _name_str}),
    "game_offer_ended": ({"game": _game, "reason": _short_str}, {}),
    "game_started": _STARTED,
    "game_moved": ({"game": _game, "ply": _seq, "uci": lambda v: _string(v, 8),
                    "san": lambda v: _string(v, 16), "fen": lambda v: _string(v, 128),
                    "turn": _turn}, {"white_ms": _ms, "black_ms": _ms}),
    "game_draw": ({"game": _game, "from": _name_str, "action": _one_of(*DRAW_ACTIONS)}, {}),
    "game_over": ({"game": _game, "result": _one_of("1-0", "0-1", "1/2-1/2", "*"),
                   "reason": _short_str, "pgn": lambda v: _string(v, MAX_PGN_CHARS)}, {}),
    "game_adjourned": ({"game": _game}, {}),
    "game_list": ({"games": _list_of(_shape(*_STARTED), MAX_GAMES_LISTED),
                   "finished": _list_of(_finished_game, MAX_GAMES_LISTED)},
                  {"id": _short_str}),
})
# A broadcast may say how a chess game ended: ``game`` {game, result, reason}.
_said = _shape({"game": _game, "result": _one_of("1-0", "0-1", "1/2-1/2", "*"),
                "reason": _short_str})
SERVER_FRAME_SHAPES["broadcast"][1]["game"] = _said
# ``registered`` and ``joined`` may carry ``games`` (the game_started shape, without type).
for _kind in ("registered", "joined"):
    SERVER_FRAME_SHAPES[_kind][1]["games"] = _list_of(_shape(*_STARTED), MAX_GAMES_LISTED)
