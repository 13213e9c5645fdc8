"""The client side of chess (PROTOCOL-FEATURES §3): the host's game frames as events.

Each frame of ``qtchat.protocol.chess`` that the host sends becomes one event whose
signal on ``ChatClient`` carries the typed frame (``gameStarted(GameStarted)`` ...): the
board widgets read a snapshot from it. The session keeps no game state of its own: the
host's frames are the truth. ``registered.games`` and ``joined.games`` (a session's own
games and its rooms' after a (re)connect; a room's games on joining it) come out as one
``gameStarted`` each, after the ``registered``/``roomJoined`` event, so a window opens
a board for them exactly as for a game that starts while it watches. Importing this
module (``chat_client.py`` does) registers the handlers.
"""

from __future__ import annotations

from typing import Any

from qtchat.client.session import _HANDLERS, ClientSession, Emit, RegisteredEvent, RoomJoined, _emit
from qtchat.protocol import chess as pc
from qtchat.protocol.server_frames import Joined, Registered


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


def _with_games(handle: Any, answered: type) -> Any:
    """``handle`` (the core's handler of registered/joined), then a ``gameStarted`` per
    listed game, if the core took the frame (it emitted ``answered``)."""

    def handled(session: ClientSession, frame: Any, now: float) -> None:
        before = len(session._events)
        handle(session, frame, now)
        if not frame.games or not session.has_feature(pc.FEATURE):
            return
        if not any(isinstance(event, answered) for event in session._events[before:]):
            return  # refused (a protocol violation): nothing of it counts
        for entry in frame.games:
            session._events.append(GameStartedEvent(pc.GameStarted.from_wire(entry)))

    return handled


_HANDLERS[Registered] = _with_games(_HANDLERS[Registered], RegisteredEvent)
_HANDLERS[Joined] = _with_games(_HANDLERS[Joined], RoomJoined)
