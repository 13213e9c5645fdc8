"""Chess (PROTOCOL-FEATURES §3): offers, games, moves, clocks, and the end of a game.

The rules of chess are python-chess's, through ``qtchat.chess.game.ChessGame``; this
module decides who may ask what, keeps the offers and the games, stores each game
(``MessageStore.save_game``, committed at the end of the pass, before anyone hears of
the change) and tells the game's audience: both players and, for a game in a room, that
room's members (watchers) — only connections that negotiated ``chess``.

Time comes from the core (``Core.now``, and ``on_tick``): an offer lapses after
``OFFER_SECONDS``, and a clock that runs out ends its game at the next sweep (at most a
second late) even if nobody moves — ``ChessGame.deadline`` says when. A player who
drops keeps their game (the clock runs only on their turn); when their session ends
(``bye``, the end of the grace period) a running game is abandoned, a loss for the one
gone (aborted if nobody has moved yet). Games in the store are loaded when the server
starts, their clocks restarting then: no time is charged while the host was down.

Not yet here (see docs/protocol.md): adjournment between identities (the identity
feature is another module), and ``games`` in ``registered``/``joined`` (the running
games are sent as ``game_started`` frames right after instead).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import secrets
from dataclasses import dataclass
from typing import Any

from qtchat import protocol as p
from qtchat.chess.game import FINISHED, RUNNING, ChessError, ChessGame, Clock
from qtchat.names import parse_name, parse_room
from qtchat.protocol import chess as pc
from qtchat.protocol.server_frames import Message
from qtchat.server.domain import Connection, ConnState, Room, Session
from qtchat.server.features.base import Core, Feature, encode_trimmed, handles

log = logging.getLogger(__name__)

OFFER_SECONDS = 60
MAX_RUNNING_PER_PLAYER = 5
FINISHED_LISTED = 20
SAVE_EVERY = 10.0  # seconds between stores of a running clock (see on_tick)

_RESULT_WORDS = {"1-0": "White wins", "0-1": "Black wins", "1/2-1/2": "Draw", "*": "No result"}


@dataclass(slots=True)
class Offer:
    game: str
    sender: Session
    to: Session
    room: Room | None
    color: str  # the offerer's: white, black or random
    clock: Clock
    expires_at: float


class ChessFeature(Feature):
    name = "chess"

    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self.offers: dict[str, Offer] = {}
        self.games: dict[str, ChessGame] = {}  # running and adjourned
        self.sids: dict[str, tuple[int | None, int | None]] = {}  # game -> players' sessions
        self._finished_ids: set[str] = set()  # games ended since start (game_finished)
        self._saved_at: dict[str, float] = {}  # game -> when last stored
        self._load()

    # --- the other modules, as the core has them ---------------------------------------

    @property
    def _sessions(self) -> Any:
        return self.core.sessions  # type: ignore[attr-defined]

    @property
    def _rooms(self) -> Any:
        return self.core.rooms  # type: ignore[attr-defined]

    def _load(self) -> None:
        now = self.core.now
        for white_sid, black_sid, record in self.core.store.open_games():
            try:
                game = ChessGame.from_record(record, resume_at=now)
            except (ValueError, KeyError, TypeError):
                log.exception("stored game %r cannot be read; left out", record.get("game"))
                continue
            if game.state == RUNNING and game.paused:  # paused by the last shutdown
                game.resume(now)
            self.games[game.game_id] = game
            self.sids[game.game_id] = (white_sid, black_sid)

    # --- offers --------------------------------------------------------------------------

    @handles(pc.GameOffer)
    def _offer(self, conn: Connection, frame: pc.GameOffer) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        target = self._sessions.named(parse_name(frame.to))
        if target is None:
            core.send_error(conn, "no_such_user", f"Nobody called {frame.to} is here.",
                            frame.type)
            return
        if target is session:
            core.send_error(conn, "not_permitted", "You cannot play yourself.", frame.type)
            return
        if not self._plays_chess(target.conn):
            core.send_error(conn, "not_permitted",
                            f"{target.name.display} has no chess board (their app does not "
                            "play chess, or they are away).", frame.type)
            return
        room = None
        if frame.room is not None:
            room = self._rooms.room_of(conn, session, frame.room, frame.type)
            if room is None:
                return
            if room.key not in target.rooms:
                core.send_error(conn, "not_in_room",
                                f"{target.name.display} is not in {room.display}.", frame.type)
                return
        for player in (session, target):
            if self._running_count(player.name.display) >= MAX_RUNNING_PER_PLAYER:
                core.send_error(conn, "too_many_games",
                                f"{player.name.display} already plays "
                                f"{MAX_RUNNING_PER_PLAYER} games, the most allowed.", frame.type)
                return
        wanted = frame.clock or {}
        clock = Clock(initial=wanted.get("initial", 0), increment=wanted.get("increment", 0))
        game = secrets.token_urlsafe(9)
        offer = Offer(game, session, target, room, frame.color, clock,
                      core.now + OFFER_SECONDS)
        self.offers[game] = offer
        data = pc.GameOffered(game=game, sender=session.name.display, to=target.name.display,
                              room=room.display if room else None, color=frame.color,
                              clock=clock.to_wire(), expires=OFFER_SECONDS).encode()
        for conn_ in self._live(session, target):
            core.queue(conn_, data)

    def _own_offer(self, conn: Connection, game: str, ref: str, *, as_sender: bool
                   ) -> Offer | None:
        offer = self.offers.get(game)
        session = conn.session
        mine = offer is not None and (offer.sender if as_sender else offer.to) is session
        if offer is None or not mine:
            if offer is not None and session in (offer.sender, offer.to):
                self.core.send_error(conn, "not_permitted",
                                     "Only the one offered a game may accept or decline it, "
                                     "and only the one who offered it may cancel it.", ref)
            else:
                self.core.send_error(conn, "no_such_game", "There is no such offer.", ref)
            return None
        return offer

    @handles(pc.GameDecline)
    def _decline(self, conn: Connection, frame: pc.GameDecline) -> None:
        offer = self._own_offer(conn, frame.game, frame.type, as_sender=False)
        if offer is not None:
            self._end_offer(offer, "declined")

    @handles(pc.GameCancel)
    def _cancel(self, conn: Connection, frame: pc.GameCancel) -> None:
        offer = self._own_offer(conn, frame.game, frame.type, as_sender=True)
        if offer is not None:
            self._end_offer(offer, "cancelled")

    def _end_offer(self, offer: Offer, reason: str) -> None:
        self.offers.pop(offer.game, None)
        data = pc.GameOfferEnded(game=offer.game, reason=reason).encode()
        for conn in self._live(offer.sender, offer.to):
            self.core.queue(conn, data)

    @handles(pc.GameAccept)
    def _accept(self, conn: Connection, frame: pc.GameAccept) -> None:
        offer = self._own_offer(conn, frame.game, frame.type, as_sender=False)
        if offer is None:
            return
        core = self.core
        for player in (offer.sender, offer.to):
            if self._running_count(player.name.display) >= MAX_RUNNING_PER_PLAYER:
                core.send_error(conn, "too_many_games",
                                f"{player.name.display} already plays "
                                f"{MAX_RUNNING_PER_PLAYER} games, the most allowed.", frame.type)
                return
        del self.offers[offer.game]
        color = offer.color if offer.color != "random" else random.choice(("white", "black"))
        white, black = ((offer.sender, offer.to) if color == "white"
                        else (offer.to, offer.sender))
        game = ChessGame(white=white.name.display, black=black.name.display, now=core.now,
                         clock=offer.clock, date=dt.datetime.now(dt.UTC).date(),
                         game_id=offer.game, room=offer.room.display if offer.room else None)
        self.games[game.game_id] = game
        self.sids[game.game_id] = (white.sid, black.sid)
        self._save(game)
        data = self._started(game).encode()
        for conn_ in self._audience(game):
            core.queue(conn_, data)

    # --- games ---------------------------------------------------------------------------

    def _game_of(self, conn: Connection, game_id: str, ref: str) -> ChessGame | None:
        game = self.games.get(game_id)
        if game is None:
            self.core.send_error(conn, "no_such_game" if not self._was_finished(game_id)
                                 else "game_finished",
                                 "There is no such game running.", ref)
        return game

    def _was_finished(self, game_id: str) -> bool:
        return game_id in self._finished_ids

    @handles(pc.GameMove)
    def _move(self, conn: Connection, frame: pc.GameMove) -> None:
        session = conn.session
        assert session is not None
        game = self._game_of(conn, frame.game, frame.type)
        if game is None:
            return
        core = self.core
        before = game.to_record()
        try:
            uci, san = game.move(session.name.display, frame.move, core.now)
        except ChessError as error:
            self.core.send_error(conn, error.code, str(error), frame.type)
            if game.state == FINISHED:  # the flag had fallen before the move came
                self._over(game, None)
            return
        snap = game.snapshot()
        self._save(game)
        if not core.commit_now():
            # Stored means stored (§0): a move the disk refused was played by nobody.
            # The game goes back to the position before it, and that is what the store
            # is asked to keep when it has room again (it replaces the refused change).
            game = ChessGame.from_record(before)
            self.games[game.game_id] = game
            self._save(game)
            core.send_error(conn, "storage_error", "The host could not store your move "
                            "(its disk may be full), so it was not played; try again later.",
                            frame.type)
            return
        data = pc.GameMoved(game=game.game_id, ply=game.ply, uci=uci, san=san, fen=snap["fen"],
                            white_ms=snap["white_ms"], black_ms=snap["black_ms"],
                            turn=snap["turn"]).encode()
        for conn_ in self._audience(game):
            core.queue(conn_, data)
        if game.state == FINISHED:
            self._over(game, conn)

    @handles(pc.GameResign)
    def _resign(self, conn: Connection, frame: pc.GameResign) -> None:
        self._act(conn, frame, lambda game, name, now: game.resign(name, now))

    @handles(pc.GameAbort)
    def _abort(self, conn: Connection, frame: pc.GameAbort) -> None:
        self._act(conn, frame, lambda game, name, now: game.abort(name, now))

    @handles(pc.GameDraw)
    def _draw(self, conn: Connection, frame: pc.GameDraw) -> None:
        session = conn.session
        assert session is not None

        def draw(game: ChessGame, name: str, now: float) -> None:
            done = game.draw(name, frame.action, now)
            if done in ("offer", "decline"):
                opponent = self._sessions.named(parse_name(game.opponent_of(name)))
                if opponent is not None and self._plays_chess(opponent.conn):
                    self.core.queue(opponent.conn, pc.GameDrawRelay(
                        game=game.game_id, sender=name, action=done).encode())
            self._save(game)

        self._act(conn, frame, draw)

    def _act(self, conn: Connection, frame: Any, action: Any) -> None:
        session = conn.session
        assert session is not None
        game = self._game_of(conn, frame.game, frame.type)
        if game is None:
            return
        try:
            action(game, session.name.display, self.core.now)
        except ChessError as error:
            self.core.send_error(conn, error.code, str(error), frame.type)
        if game.state == FINISHED:
            self._over(game, conn)

    @handles(pc.GameListRequest)
    def _list(self, conn: Connection, frame: pc.GameListRequest) -> None:
        session = conn.session
        assert session is not None
        name = session.name.display
        running = [self._started(game).to_wire() for game in self.games.values()
                   if name in (game.white, game.black) or self._watches(session, game)]
        for wire in running:
            del wire["type"]
        finished = [{"game": r["game"], "white": r["white"], "black": r["black"],
                     "room": r.get("room"), "result": r["result"], "reason": r["reason"],
                     "pgn": ChessGame.from_record(r).pgn()}
                    for r in self.core.store.finished_games(name, FINISHED_LISTED)]
        wire = pc.GameListAnswer(games=running, finished=finished, id=frame.id).to_wire()
        # Long games' PGN can pass a frame: the oldest finished games go first, then
        # the running games past what fits (each running game comes again as
        # game_started on the next resume).
        data, _cut = encode_trimmed(wire, ("finished", False), ("games", False))
        self.core.queue(conn, data)

    # --- hooks ---------------------------------------------------------------------------

    def on_detach(self, conn: Connection, session: Session, announce: str | None) -> None:
        """An offer ends when either's connection drops; games wait for the session."""
        for offer in list(self.offers.values()):
            if session in (offer.sender, offer.to):
                self._end_offer(offer, "gone")

    def on_shutdown(self) -> None:
        """Charge the running clocks up to now and store them: the next start restarts
        them from there (the time the host is down is charged to nobody)."""
        for game in self.games.values():
            game.pause(self.core.now)
            if game.state == FINISHED:  # the flag fell just before the shutdown
                self._over(game, None)
            else:
                self._save(game)

    def on_tick(self, now: float) -> None:
        for offer in list(self.offers.values()):
            if offer.expires_at <= now:
                self._end_offer(offer, "expired")
        for game in list(self.games.values()):
            if game.state != RUNNING:
                continue
            if game.tick(now):
                self._over(game, None)
                continue
            if game.clock.timed and now - self._saved_at.get(game.game_id, now) >= SAVE_EVERY:
                # A crash (kill -9) then costs the player to move at most this much
                # thinking time: the clock restarts from the last save.
                game.pause(now)
                game.resume(now)
                self._save(game)
            gone = self._gone_player(game)
            if gone is not None:
                other = game.opponent_of(gone)
                if game.ply == 0:
                    game.finish("*", "aborted", other, now)
                else:
                    result = "0-1" if gone == game.white else "1-0"
                    game.finish(result, "abandoned", other, now)
                self._over(game, None)

    # --- inside --------------------------------------------------------------------------

    def _gone_player(self, game: ChessGame) -> str | None:
        """A player whose session has ended (not merely dropped), if any."""
        for name, sid in zip((game.white, game.black), self.sids.get(game.game_id, (None, None)),
                             strict=True):
            session = self._sessions.named(parse_name(name))
            if session is None or (sid is not None and session.sid != sid):
                return name
        return None

    def _over(self, game: ChessGame, conn: Connection | None) -> None:
        """Tell the audience, store it, and say it in the room."""
        core = self.core
        self._save(game)
        audience = self._audience(game)
        self.games.pop(game.game_id, None)
        self._saved_at.pop(game.game_id, None)
        self._finished_ids.add(game.game_id)
        result, reason = game.result or "*", game.reason or "aborted"
        data = pc.GameOver(game=game.game_id, result=result, reason=reason,
                           pgn=game.pgn()).encode()
        for conn_ in audience:
            core.queue(conn_, data)
        if game.room is None:
            return
        room = self._room_named(game.room)
        if room is None:
            return
        sender = game.ended_by or game.white
        text = (f"Chess, {game.white} (White) against {game.black} (Black): "
                f"{_RESULT_WORDS.get(result, result)} ({result}), "
                f"{reason.replace('_', ' ')}.")
        ender = self._sessions.named(parse_name(sender))
        ts = core.timestamp()
        seq = core.store.add(ts=ts, bucket=room.key, room=room.display, sender=sender,
                             sender_sid=ender.sid if ender is not None else 0, text=text)
        message = Message(seq=seq, ts=ts, sender=sender, room=room.display, text=text)
        wire = message.to_wire()
        wire["game"] = {"game": game.game_id, "result": result, "reason": reason}
        data = p.encode(wire)
        core.fan_out(room, data)
        poster = conn if conn is not None else (ender.conn if ender is not None else None)
        if poster is not None and poster.session is not None:
            core.posted(poster, poster.session, message, None, (data, None))

    def _room_named(self, display: str) -> Room | None:
        try:
            return self._rooms.find(parse_room(display))
        except ValueError:
            return None

    def _save(self, game: ChessGame) -> None:
        self._saved_at[game.game_id] = self.core.now
        white_sid, black_sid = self.sids.get(game.game_id, (None, None))
        self.core.store.save_game(game.game_id, game.white, game.black, white_sid, black_sid,
                                  game.state, game.to_record())

    def _started(self, game: ChessGame) -> pc.GameStarted:
        snap = game.snapshot(self.core.now)
        return pc.GameStarted(game=game.game_id, white=game.white, black=game.black,
                              room=game.room, clock=game.clock.to_wire(), fen=snap["fen"],
                              moves=snap["moves"], white_ms=snap["white_ms"],
                              black_ms=snap["black_ms"], turn=snap["turn"],
                              adjourned=True if game.state != RUNNING else None)

    def _running_count(self, name: str) -> int:
        return sum(1 for game in self.games.values() if name in (game.white, game.black))

    def _watches(self, session: Session, game: ChessGame) -> bool:
        if game.room is None:
            return False
        room = self._room_named(game.room)
        return room is not None and room.key in session.rooms

    @staticmethod
    def _plays_chess(conn: Connection | None) -> bool:
        return (conn is not None and conn.state is ConnState.LIVE
                and conn.features is not None and pc.FEATURE in conn.features)

    def _live(self, *sessions: Session) -> list[Connection]:
        return [s.conn for s in sessions if s.conn is not None and self._plays_chess(s.conn)]

    def _audience(self, game: ChessGame) -> list[Connection]:
        """The players' and (a room game) the room's live connections with chess."""
        found: dict[Connection, None] = {}
        for name in (game.white, game.black):
            session = self._sessions.named(parse_name(name))
            if session is not None and self._plays_chess(session.conn):
                found[session.conn] = None
        if game.room is not None:
            room = self._room_named(game.room)
            if room is not None:
                for conn in room.conns:
                    if self._plays_chess(conn):
                        found[conn] = None
        return list(found)

    def on_join(self, conn: Connection, session: Session, room: Room) -> None:
        """Joining a room: its running games, to watch (in place of ``joined.games``)."""
        if not self._plays_chess(conn):
            return
        for game in self.games.values():
            if game.room is not None and self._room_named(game.room) is room:
                self.core.queue(conn, self._started(game).encode())

    def on_live(self, conn: Connection, session: Session) -> None:
        """A connection went live: the running games it plays or watches, as
        ``game_started`` (in place of ``registered.games``)."""
        if not self._plays_chess(conn):
            return
        for game in self.games.values():
            if session.name.display in (game.white, game.black) or self._watches(session, game):
                self.core.queue(conn, self._started(game).encode())
