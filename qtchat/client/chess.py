"""The client side of chess (PROTOCOL-FEATURES §3): the host's game frames as events.

Each frame of ``qtchat.protocol.chess`` that the host sends becomes one event whose
signal on ``ChatClient`` carries the typed frame (``gameStarted(GameStarted)`` ...): the
board widgets read a snapshot from it. The session keeps no game state of its own: the
host's frames are the truth, and a resume brings ``game_started`` again for every game.
Importing this module (``chat_client.py`` does) registers the handlers.
"""

from __future__ import annotations

from typing import Any

from qtchat.client.session import _HANDLERS, ClientSession, Emit, _emit
from qtchat.protocol import chess as pc


@_emit("gameOffered")
class GameOfferedEvent(Emit):
    frame: pc.GameOffered


@_emit("gameOfferEnded")
class GameOfferEndedEvent(Emit):
    frame: pc.GameOfferEnded


@_emit("gameStarted")
class GameStartedEvent(Emit):
    frame: pc.GameStarted


@_emit("gameMoved")
class GameMovedEvent(Emit):
    frame: pc.GameMoved


@_emit("gameDraw")
class GameDrawEvent(Emit):
    frame: pc.GameDrawRelay


@_emit("gameOver")
class GameOverEvent(Emit):
    frame: pc.GameOver


@_emit("gameAdjourned")
class GameAdjournedEvent(Emit):
    frame: pc.GameAdjourned


@_emit("gameList")
class GameListEvent(Emit):
    frame: pc.GameListAnswer


_EVENTS: dict[type, type] = {
    pc.GameOffered: GameOfferedEvent,
    pc.GameOfferEnded: GameOfferEndedEvent,
    pc.GameStarted: GameStartedEvent,
    pc.GameMoved: GameMovedEvent,
    pc.GameDrawRelay: GameDrawEvent,
    pc.GameOver: GameOverEvent,
    pc.GameAdjourned: GameAdjournedEvent,
    pc.GameListAnswer: GameListEvent,
}


def _on_game_frame(session: ClientSession, frame: Any, now: float) -> None:
    """Only from a host that accepted ``chess``: others have no business sending it."""
    if session.has_feature(pc.FEATURE):
        session._events.append(_EVENTS[type(frame)](frame))


for _kind in _EVENTS:
    _HANDLERS[_kind] = _on_game_frame
