"""Typing notices (PROTOCOL-FEATURES.md §5, the ``typing`` feature).

``typing {room? | to?, state}`` is relayed as ``typing {from, room? | to?, state}`` to
the others in the room (or to the one person) who negotiated ``typing``; never stored,
never replayed. A change of state is always relayed, the same state at most once per
2 s per target (``qtchat.living.TypingThrottle``; the extra ones are dropped without a
word). It costs a frame of the rate limit like any frame (the core counts it).
"""

from __future__ import annotations

from qtchat import protocol as p
from qtchat.living import TypingThrottle
from qtchat.names import parse_name
from qtchat.protocol.living import Typing, TypingNotice
from qtchat.server.domain import Connection, ConnState, Session
from qtchat.server.features.base import Core, Feature, handles, knows
from qtchat.server.features.rooms import RoomsFeature
from qtchat.server.features.session import SessionFeature


class TypingFeature(Feature):
    name = "typing"

    def __init__(self, core: Core, rooms: RoomsFeature, sessions: SessionFeature) -> None:
        super().__init__(core)
        self.rooms = rooms
        self.sessions = sessions
        self.throttle = TypingThrottle()

    @handles(Typing)
    def _typing(self, conn: Connection, frame: Typing) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        sender = session.name.display
        if frame.to is not None:
            target = self.sessions.named(parse_name(frame.to))
            if target is None and self.sessions.bound(parse_name(frame.to)) is not None:
                return  # typing an offline whisper (§1): nobody to tell, and no error
            if target is None or target.conn is None:
                core.send_error(conn, "no_such_user", f"Nobody called {frame.to} is here.",
                                "typing")
                return
            if target is session or not self.throttle.allow(session.sid, ("to", target.sid),
                                                             frame.state, core.now):
                return
            theirs = target.conn
            if theirs.state is ConnState.LIVE and knows(theirs, "typing"):
                core.queue(theirs, TypingNotice(sender=sender, to=target.name.display,
                                                state=frame.state).encode())
            return
        room = self.rooms.room_of(conn, session, frame.room or p.LOBBY, "typing")
        if room is None:
            return
        if not self.throttle.allow(session.sid, room.key, frame.state, core.now):
            return
        data = TypingNotice(sender=sender, room=room.display, state=frame.state).encode()
        for other in room.conns:
            if other is not conn and knows(other, "typing"):
                core.queue(other, data)

    def on_detach(self, conn: Connection, session: Session, announce: str | None) -> None:
        self.throttle.forget(session.sid)
