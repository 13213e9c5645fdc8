"""Chess played through the chat server: the rules and clocks of one game (``game``).

No Qt and no sockets here: the server's chess feature module owns a ``ChessGame`` per
game, passes it what players asked and the time, and sends what it reports.
"""

from qtchat.chess.game import (
    ChessError,
    ChessGame,
    Clock,
    GameFinished,
    IllegalMove,
    NotPermitted,
    NotYourTurn,
)

__all__ = [
    "ChessError",
    "ChessGame",
    "Clock",
    "GameFinished",
    "IllegalMove",
    "NotPermitted",
    "NotYourTurn",
]
