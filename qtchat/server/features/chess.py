"""Chess (PROTOCOL-FEATURES §3): offers, games, moves, clocks, and the end of a game.

The rules of chess are python-chess's, through ``qtchat.chess.game.ChessGame``; this
module decides who may ask what, keeps the offers and the games, stores each game
(``MessageStore.save_game``, committed at the end of the pass, before anyone hears of
the change) and tells the game's audience: both players and, for a game in a room, that
room's members (watchers) — only connections that negotiated ``chess``.

Time comes from the core (``Core.now``, and ``on_tick``): an offer lapses after
``OFFER_SECONDS``, and a clock that runs out ends its game at the next sweep (at most a
second late) even if nobody moves — ``ChessGame.deadline`` says when. A player who
drops keeps their game (the clock runs only on their turn). When their session ends
(``bye``, the end of the grace period), a game whose two players registered with an
identity (``ModerationFeature.identity_of``) is adjourned: its clock stops, it is
stored, the other player and the watchers get ``game_adjourned``, and it resumes
(``game_started`` again, clocks as stored) once a session of each identity is back
under the player's name — after a host restart too. Without identities it is
abandoned, a loss for the one gone (aborted if nobody has moved yet). Games in the
store are loaded when the server starts, their clocks restarting then: no time is
charged while the host was down.

``registered`` and ``joined`` carry ``games`` (those of your rooms and your own, in
the ``game_started`` shape) for a connection with ``chess``; games past
``GAMES_IN_FRAME`` characters of them follow as ``game_started`` frames, so a room of
long games never pushes the frame past its size.
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
GAMES_IN_FRAME = 24_000  # characters of ``games`` in one registered/joined (see above)

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
        # game -> the players' identities (hashes; None: registered without one).
        self.idents: dict[str, tuple[str | None, str | None]] = {}
        # What a registered/joined being built listed of each game: (ply, state). What
        # differs by the time it is live (a move during a resume's replay, a game that
        # did not fit) follows as game_started then (see on_live, on_join).
        self._given: dict[Connection, dict[str, tuple[int, str]]] = {}
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
            white_id, black_id = record.get("identities") or (None, None)
            self.idents[game.game_id] = (white_id, black_id)

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
        self.idents[game.game_id] = (self._identity(white), self._identity(black))
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
        self._given.pop(conn, None)
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
                self._try_resume(game)
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
            back = self._back(game) if gone is not None else None
            if back is not None:
                # Both identities have sessions (an app restarted: its new session
                # ended the old one): the game goes on with the new ones.
                self.sids[game.game_id] = (back[0].sid, back[1].sid)
                self._save(game)
            elif gone is not None and all(self.idents.get(game.game_id, (None, None))):
                self._adjourn(game)
            elif gone is not None:
                other = game.opponent_of(gone)
                if game.ply == 0:
                    game.finish("*", "aborted", other, now)
                else:
                    result = "0-1" if gone == game.white else "1-0"
                    game.finish(result, "abandoned", other, now)
                self._over(game, None)

    # --- adjournment between identities --------------------------------------------------

    def _identity(self, session: Session) -> str | None:
        """The identity (hash) ``session`` registered with, if any (moderation keeps it)."""
        moderation = getattr(self.core, "moderation", None)
        return moderation.identity_of(session) if moderation is not None else None

    def _adjourn(self, game: ChessGame) -> None:
        """A player's session ended and both have identities: stop the clock, store the
        game, tell the other player and the watchers; it waits for both to be back."""
        game.adjourn(self.core.now)
        if game.state == FINISHED:  # the flag fell at the very moment
            self._over(game, None)
            return
        self._save(game)
        data = pc.GameAdjourned(game=game.game_id).encode()
        for conn in self._audience(game):
            self.core.queue(conn, data)

    def _try_resume(self, game: ChessGame) -> None:
        """An adjourned game runs again once each player's identity has a session under
        the player's name (new sessions, possibly after a restart): ``game_started``
        again, the clocks as stored, running from now."""
        sessions = self._back(game, connected=True)
        if sessions is None:
            return
        game.resume(self.core.now)
        self.sids[game.game_id] = (sessions[0].sid, sessions[1].sid)
        self._save(game)
        data = self._started(game).encode()
        for conn in self._audience(game):
            self.core.queue(conn, data)

    def _back(self, game: ChessGame, *, connected: bool = False
              ) -> tuple[Session, Session] | None:
        """Both players' sessions if each is held by the identity the game has for it
        (``connected``: and each has a connection, not merely a session in its grace
        period, as after a host restart before anyone is back)."""
        found = []
        for name, identity in zip((game.white, game.black),
                                  self.idents.get(game.game_id, (None, None)), strict=True):
            session = self._sessions.named(parse_name(name))
            if identity is None or session is None or self._identity(session) != identity:
                return None
            if connected and session.conn is None:
                return None
            found.append(session)
        return found[0], found[1]

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
        self.idents.pop(game.game_id, None)
        self.sids.pop(game.game_id, None)
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
        said = {"game": game.game_id, "result": result, "reason": reason}
        core.store.add_game_notice(seq, said)
        message = Message(seq=seq, ts=ts, sender=sender, room=room.display, text=text,
                          game=said)
        data = message.encode()
        # A client without chess gets the plain broadcast (its text says it all).
        plain = message._replace(game=None).encode()
        for conn_ in room.conns:
            core.queue(conn_, data if self._plays_chess(conn_) else plain)
        poster = conn if conn is not None else (ender.conn if ender is not None else None)
        if poster is not None and poster.session is not None:
            # Both copies go back if the commit fails (see ServerCore._storage_failed).
            core.posted(poster, poster.session, message, None, (data, plain))

    def _room_named(self, display: str) -> Room | None:
        try:
            return self._rooms.find(parse_room(display))
        except ValueError:
            return None

    def _save(self, game: ChessGame) -> None:
        self._saved_at[game.game_id] = self.core.now
        white_sid, black_sid = self.sids.get(game.game_id, (None, None))
        record = game.to_record()
        record["identities"] = list(self.idents.get(game.game_id, (None, None)))
        self.core.store.save_game(game.game_id, game.white, game.black, white_sid, black_sid,
                                  game.state, record)

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

    def _games_field(self, conn: Connection, games: list[ChessGame]) -> dict[str, Any]:
        """``games`` for a registered/joined: as many as fit in ``GAMES_IN_FRAME``
        characters (the rest follow as ``game_started``, see ``_catch_up``)."""
        if not self._plays_chess_negotiated(conn):
            return {}
        listed: list[dict[str, Any]] = []
        given: dict[str, tuple[int, str]] = {}
        size = 0
        for game in games:
            wire = self._started(game).to_wire()
            del wire["type"]
            size += len(p.encode(wire))
            if size <= GAMES_IN_FRAME:
                listed.append(wire)
                given[game.game_id] = (game.ply, game.state)
        self._given[conn] = given
        return {"games": listed}

    def _catch_up(self, conn: Connection, games: list[ChessGame]) -> None:
        """``game_started`` for each of ``games`` not as the registered/joined gave it,
        and ``game_over`` for a game of its own it listed that has ended since."""
        given = self._given.pop(conn, {})
        if not self._plays_chess(conn) or conn.session is None:
            return
        for game in games:
            if given.get(game.game_id) != (game.ply, game.state):
                self.core.queue(conn, self._started(game).encode())
        ended = [game_id for game_id in given if game_id not in self.games]
        if ended:
            name = conn.session.name.display
            for record in self.core.store.finished_games(name, FINISHED_LISTED):
                if record["game"] in ended:
                    self.core.queue(conn, pc.GameOver(
                        game=record["game"], result=record["result"] or "*",
                        reason=record["reason"] or "aborted",
                        pgn=ChessGame.from_record(record).pgn()).encode())

    def _games_of(self, session: Session) -> list[ChessGame]:
        """The games ``session`` plays or watches (in its rooms)."""
        name = session.name.display
        return [game for game in self.games.values()
                if name in (game.white, game.black) or self._watches(session, game)]

    def _games_in(self, room: Room) -> list[ChessGame]:
        return [game for game in self.games.values()
                if game.room is not None and self._room_named(game.room) is room]

    def registered_fields(self, conn: Connection, session: Session) -> dict[str, Any]:
        """``registered.games``: the games of the session's rooms and its own."""
        return self._games_field(conn, self._games_of(session))

    def joined_fields(self, conn: Connection, session: Session, room: Room) -> dict[str, Any]:
        """``joined.games``: the room's games, to watch."""
        return self._games_field(conn, self._games_in(room))

    def on_join(self, conn: Connection, session: Session, room: Room) -> None:
        """The room's games that did not fit in ``joined.games``."""
        self._catch_up(conn, self._games_in(room))

    def on_live(self, conn: Connection, session: Session) -> None:
        """What changed while a resume replayed (moves are sent only to live
        connections), and what did not fit in ``registered.games``; then an adjourned
        game of this player's may resume, now that they are back."""
        self._catch_up(conn, self._games_of(session))
        for game in list(self.games.values()):
            if game.state != RUNNING and session.name.display in (game.white, game.black):
                self._try_resume(game)

    @staticmethod
    def _plays_chess_negotiated(conn: Connection) -> bool:
        """Asked for chess (``registered``/``joined`` are built before the connection is
        live, so ``_plays_chess`` would say no)."""
        return conn.features is not None and pc.FEATURE in conn.features
