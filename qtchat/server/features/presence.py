"""Presence (PROTOCOL-FEATURES.md §5, the ``presence`` feature).

``status {state, text?}`` sets a session's presence (online, away, busy, with a line of
at most 100 characters) and is told as ``user_status {name, state, text}`` to the others
who share a room with it and negotiated ``presence``. ``registered`` (for the lobby) and
``joined`` carry ``statuses`` {name: {state, text}} of those in the room who are not
plainly online (``statuses_in``, asked by the core). Kept in memory with the session: a
status lasts as long as the session (it survives a resume, not the session's end).
"""

from __future__ import annotations

from qtchat.protocol.living import Status, UserStatus
from qtchat.server.domain import Connection, Room, Session
from qtchat.server.features.base import Core, Feature, handles, knows
from qtchat.server.features.rooms import RoomsFeature


class PresenceFeature(Feature):
    name = "presence"

    def __init__(self, core: Core, rooms: RoomsFeature) -> None:
        super().__init__(core)
        self.rooms = rooms
        self.status: dict[int, tuple[str, str]] = {}  # session id -> (state, text)

    @handles(Status)
    def _status(self, conn: Connection, frame: Status) -> None:
        session = conn.session
        assert session is not None
        text = frame.text or ""
        new = (frame.state, text)
        if self.status.get(session.sid, ("online", "")) == new:
            return  # no change: nobody is told again
        if new == ("online", ""):
            self.status.pop(session.sid, None)
        else:
            self.status[session.sid] = new
        data = UserStatus(name=session.name.display, state=frame.state, text=text).encode()
        told = {conn}
        core = self.core
        for room in session.rooms.values():
            for other in room.conns:
                if other not in told and knows(other, "presence"):
                    told.add(other)
                    core.queue(other, data)

    def statuses_in(self, conn: Connection, room: Room) -> dict[str, dict[str, str]] | None:
        if not knows(conn, "presence"):
            return None
        found: dict[str, dict[str, str]] = {}
        status = self.status
        for other in room.conns:
            session = other.session
            if session is not None and session.sid in status:
                state, text = status[session.sid]
                found[session.name.display] = {"state": state, "text": text}
        own = conn.session
        if own is not None and own.sid in status:  # a resume: its own, as it left it
            state, text = status[own.sid]
            found[own.name.display] = {"state": state, "text": text}
        return found

    def forget(self, session: Session) -> None:
        self.status.pop(session.sid, None)
