"""Rooms: ``join``, ``leave``, ``history`` pages, and the limits on rooms.

Owns the server's rooms (by folded name and by every look-alike key), who is in each
(``Room.conns``: live connections; ``Room.members``: sessions, connected or held), the
rooms kept idle for their history (the first retired when too many are kept), and the
ranking of the busiest rooms for ``registered.rooms``. ``user_joined``, ``user_left``,
``joined``, ``left`` and ``history`` frames are built here and nowhere else.
"""

from __future__ import annotations

import heapq
import logging

from qtchat import protocol as p
from qtchat.names import Name, parse_room
from qtchat.protocol.server_frames import HistoryPage, Joined, Left, UserJoined, UserLeft
from qtchat.server.domain import Connection, ConnState, Room, Session
from qtchat.server.features.base import (
    Core,
    Feature,
    encode_trimmed,
    handles,
    hooked,
    knows,
    texts_exceed_a_frame,
)

log = logging.getLogger(__name__)

# Rooms listed in ``registered.rooms`` besides the user's own.
ROOMS_LISTED = 100


def user_joined(name: str, room: str) -> bytes:
    return UserJoined(name=name, room=room).encode()


def user_left(name: str, room: str, reason: str) -> bytes:
    return UserLeft(name=name, room=room, reason=reason).encode()


class RoomsFeature(Feature):
    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self.rooms: dict[str, Room] = {}  # folded name (the history bucket) -> room
        self._room_keys: dict[str, Room] = {}  # every Name.keys of a room -> room
        self.occupied = 0  # rooms with members
        # Rooms nobody is in that are kept for their history, longest idle first.
        self._idle: dict[str, Room] = {}
        self._ranked: list[Room] | None = None  # see ranked
        self._ranked_at = 0.0

    @property
    def lobby(self) -> Room:
        return self.rooms[p.LOBBY]

    def load(self) -> None:
        """The lobby and every stored room (before the sessions that are in them)."""
        self.room(parse_room(p.LOBBY))
        for key, display in self.core.store.rooms():
            if key not in self.rooms:
                try:
                    name = parse_room(display)
                except ValueError:  # stored under older rules: kept for its history
                    name = Name(display=display, folded=key, skeleton=key, keys=(key,))
                self._add_room(name)

    def settle(self) -> None:
        """After loading: rooms nobody is in and nothing was said in go; past the cap on
        rooms kept, the longest idle go (a history from before the cap, or a lower cap)."""
        for room in list(self.rooms.values()):
            if not room.members:
                self._forget_if_empty(room)
        while len(self.rooms) > self.core.config.max_kept_rooms and self._idle:
            self._make_room_for_one_more()

    # --- frames ------------------------------------------------------------------------

    @handles(p.Join)
    def _join(self, conn: Connection, frame: p.Join) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        name = parse_room(frame.room)
        existing = self.find(name)  # the same name, or one that looks the same
        room = session.rooms.get(existing.key) if existing is not None else None
        if room is None:
            c = core.config
            if len(session.rooms) >= c.max_rooms_per_user:
                core.send_error(conn, "too_many_rooms",
                                f"You are in {len(session.rooms)} rooms, the most allowed here; "
                                "leave one first.", "join")
                return
            if (existing is None or not existing.members) and self.occupied >= c.max_rooms:
                core.send_error(conn, "too_many_rooms",
                                f"This server has {self.occupied:,} rooms in use, the most it "
                                "allows; join one of them.", "join")
                return
            if existing is None and not self._make_room_for_one_more():
                core.send_error(conn, "too_many_rooms",
                                f"This server keeps {len(self.rooms):,} rooms, all in use, "
                                "the most it allows; join one of them.", "join")
                return
            room = existing or self.room(name)
            self.enter(session, room)
            self._save_rooms(session)
            if conn.state is ConnState.LIVE:  # else go_live announces it, when caught up
                self._announce_join(conn, session, room)
        users = self.users_of(room, session)
        history = core.store.page(room.key, None, p.DEFAULT_HISTORY_LIMIT, p.MAX_FRAME_BYTES,
                                  tombstones=knows(conn, "edit"))
        extra: dict = {}
        for feature in hooked(core, "joined_fields"):
            extra.update(feature.joined_fields(conn, session, room))
        wire = Joined(room=room.display, users=users, history=history,
                      statuses=core.statuses(conn, room), **extra).to_wire()
        data, cut = encode_trimmed(wire, ("history", True), ("users", False),
                                   surely_too_large=texts_exceed_a_frame(history))
        core.queue(conn, data)
        for user in cut.get("users", ()):
            core.queue(conn, user_joined(user, room.display))
        core.room_joined(conn, session, room)

    @handles(p.Leave)
    def _leave(self, conn: Connection, frame: p.Leave) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        found = self.find(parse_room(frame.room))
        if found is not None and found.key == p.LOBBY:
            core.send_error(conn, "not_in_room", "Everyone stays in the lobby; it cannot be left.",
                            "leave")
            return
        room = session.rooms.get(found.key) if found is not None else None
        if room is None:
            if found is not None:
                core.send_error(conn, "not_in_room", f"You are not in {frame.room!r}.", "leave")
            else:
                core.send_error(conn, "no_such_room", f"There is no room called {frame.room!r}.",
                                "leave")
            return
        core.queue(conn, Left(room=room.display).encode())
        if room.conns.pop(conn, False) is None:  # it was live there, so others knew
            core.fan_out(room, user_left(session.name.display, room.display, "left"))
            core.emit("userLeft", session.name.display, room.display, "left")
        self.leave_room(session, room)
        self._save_rooms(session)

    @handles(p.History)
    def _history(self, conn: Connection, frame: p.History) -> None:
        """A page is heavy work: it waits for its connection's turn (ServerCore.work), and
        what the client sends behind it waits for the page, in order. Whether the room
        is one of the sender's is answered at once (with the frame's ``id``)."""
        session = conn.session
        assert session is not None
        if frame.with_ is not None:  # a private conversation's page: its own module
            for feature in getattr(self.core, "features", ()):
                private_history = getattr(feature, "private_history", None)
                if private_history is not None:
                    private_history(conn, frame)
                    return
            self.core.send_error(conn, "bad_frame", "history needs a 'room'.", "history")
            return
        assert frame.room is not None
        room = self.room_of(conn, session, frame.room, "history")
        if room is None:
            return

        def page_turn(conn: Connection) -> bool:
            conn.task = None  # done after this turn (nothing the client sent ran meanwhile)
            messages = self.core.store.page(room.key, frame.before, frame.limit,
                                            p.MAX_FRAME_BYTES, tombstones=knows(conn, "edit"))
            wire = HistoryPage(room=room.display, messages=messages).to_wire()
            data, _cut = encode_trimmed(wire, ("messages", True),
                                        surely_too_large=texts_exceed_a_frame(messages))
            self.core.queue(conn, data)
            return False

        self.core.start_task(conn, page_turn)

    # --- hooks -------------------------------------------------------------------------

    def on_detach(self, conn: Connection, session: Session, announce: str | None) -> None:
        for room in session.rooms.values():
            # Announced only where it was in the fan-out (a kick takes it out first and
            # says who kicked it: see features/moderation.py).
            if room.conns.pop(conn, False) is None and announce:
                self.core.fan_out(room, user_left(session.name.display, room.display, announce))
                self.core.emit("userLeft", session.name.display, room.display, announce)

    # --- for the other modules ---------------------------------------------------------

    def went_live(self, conn: Connection, session: Session, *, announce: bool) -> None:
        """``conn`` is live: in its rooms' fan-out, announced there if ``announce``."""
        for room in session.rooms.values():
            if announce:
                self._announce_join(conn, session, room)
            else:
                room.conns[conn] = None

    def _announce_join(self, conn: Connection, session: Session, room: Room) -> None:
        self.core.fan_out(room, user_joined(session.name.display, room.display))
        self.core.emit("userJoined", session.name.display, room.display)
        room.conns[conn] = None

    def users_of(self, room: Room, session: Session | None = None) -> list[str]:
        """Names in ``room`` now (live), in join order, with ``session``'s own if absent."""
        users = [c.session.name.display for c in room.conns if c.session]
        if session is not None and session.name.display not in users \
                and room.key in session.rooms:
            users.append(session.name.display)
        return users

    def room_of(self, conn: Connection, session: Session, raw: str, ref: str) -> Room | None:
        """The room ``raw`` names if the session is in it; else answer why not."""
        found = self.find(parse_room(raw))
        room = session.rooms.get(found.key) if found is not None else None
        if room is None:
            if found is not None:
                self.core.send_error(conn, "not_in_room",
                                     f"You are not in {raw!r}; join it first.", ref)
            else:
                self.core.send_error(conn, "no_such_room", f"There is no room called {raw!r}.",
                                     ref)
        return room

    def find(self, name: Name) -> Room | None:
        """The room called ``name``, or one whose name looks the same (``ѕсоре`` in
        Cyrillic is ``scope``)."""
        room = self.rooms.get(name.folded)
        if room is None:
            for key in name.keys:
                room = self._room_keys.get(key)
                if room is not None:
                    break
        return room

    def room(self, name: Name) -> Room:
        """The room of that name, made (and stored) if new."""
        room = self.find(name)
        if room is None:
            room = self._add_room(name)
            self.core.store.save_room(room.key, room.display)
        return room

    def enter(self, session: Session, room: Room) -> None:
        session.rooms[room.key] = room
        room.members += 1
        if room.members == 1:
            self.occupied += 1
            self._idle.pop(room.key, None)

    def leave_room(self, session: Session, room: Room) -> None:
        """``session`` is out of ``room``; a room left empty and without history goes
        (so joining and leaving made-up rooms leaves nothing behind)."""
        if session.rooms.pop(room.key, None) is None:
            return
        room.members -= 1
        if room.members:
            return
        self.occupied -= 1
        self._forget_if_empty(room)

    def leave_all(self, session: Session) -> None:
        for room in list(session.rooms.values()):
            self.leave_room(session, room)

    def listed_for(self, session: Session) -> list[str]:
        """``registered.rooms``: the session's own rooms first, then the busiest others
        (most people connected), at most ROOMS_LISTED of them. Ranked afresh at most
        once a second on a server with many rooms, so a register costs the same with 20
        rooms or 20,000."""
        now = self.core.now
        ranked = self._ranked
        if ranked is None or now - self._ranked_at > 1.0:
            wanted = ROOMS_LISTED + self.core.config.max_rooms_per_user
            ranked = self._ranked = heapq.nsmallest(
                wanted, self.rooms.values(), key=lambda room: (-len(room.conns), room.display))
            self._ranked_at = now
        rooms, own = self.rooms, session.rooms
        others = [room.display for room in ranked
                  if rooms.get(room.key) is room and room.key not in own]
        return [*(room.display for room in own.values()), *others[:ROOMS_LISTED]]

    # --- keeping rooms -----------------------------------------------------------------

    def _save_rooms(self, session: Session) -> None:
        self.core.store.update_session_rooms(session.sid,
                                             [r.display for r in session.rooms.values()])

    def _add_room(self, name: Name) -> Room:
        room = self.rooms[name.folded] = Room(name)
        for key in room.names:
            self._room_keys.setdefault(key, room)
        self._rooms_changed()
        return room

    def _rooms_changed(self) -> None:
        """A room came or went: on a small server, rank again at the next register."""
        if len(self.rooms) <= 2 * ROOMS_LISTED:
            self._ranked = None

    def _forget_if_empty(self, room: Room) -> None:
        """An empty room goes if nothing was said in it; one with history stays, idle
        (the first to be retired when the server keeps too many rooms)."""
        if room.key == p.LOBBY or room.conns or room.members:
            return
        if self.core.store.count(room.key):
            self._idle[room.key] = room
            return
        self._drop_room(room)
        self.core.store.forget_room(room.key)

    def _drop_room(self, room: Room) -> None:
        del self.rooms[room.key]
        self._idle.pop(room.key, None)
        for key in room.names:
            if self._room_keys.get(key) is room:
                del self._room_keys[key]
        self._rooms_changed()

    def _make_room_for_one_more(self) -> bool:
        """At ``max_kept_rooms``, retire the room idle the longest (nobody in it, left
        longest ago) with its history; False if every room kept is in use."""
        if len(self.rooms) < self.core.config.max_kept_rooms:
            return True
        if not self._idle:
            return False
        room = next(iter(self._idle.values()))
        log.info("room %r retired with its history: the server keeps %d rooms at most",
                 room.display, self.core.config.max_kept_rooms)
        self._drop_room(room)
        self.core.store.retire_room(room.key)
        return True
