"""Presence (PROTOCOL-FEATURES.md §5, the ``presence`` feature).

``status {state, text?}`` sets a session's presence (online, away, busy, with a line of
at most 100 characters) and is told as ``user_status {name, state, text}`` to the others
who share a room with it and negotiated ``presence``. ``registered`` (for the lobby) and
``joined`` carry ``statuses`` {name: {state, text}} of those in the room who are not
plainly online (``statuses_in``, asked by the core). Kept in memory with the session: a
status lasts as long as the session (it survives a resume, not the session's end).
"""

from __future__ import annotations

from qtchat import protocol as p
from qtchat.protocol.living import Status, UserStatus
from qtchat.server.domain import Connection, Room, Session
from qtchat.server.features.base import Core, Feature, handles, knows
from qtchat.server.features.rooms import RoomsFeature

# Bytes of ``statuses`` one ``registered``/``joined`` may carry: a crowd of people away
# with long lines must not push the frame past its 64 KiB (the rest show as online
# until their next change).
STATUSES_BUDGET = 16 * 1024


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
        if not status:
            return found
        own = conn.session
        sessions = [own] if own is not None else []  # a resume: its own, as it left it
        sessions += [other.session for other in room.conns if other.session is not own]
        used = 0
        for session in sessions:
            if session is None or session.sid not in status:
                continue
            state, text = status[session.sid]
            entry = {"state": state, "text": text}
            used += p.encoded_size(session.name.display) + p.encoded_size(entry) + 2
            if used > STATUSES_BUDGET:
                break
            found[session.name.display] = entry
        return found

    def on_detach(self, conn: Connection, session: Session, announce: str | None) -> None:
        """A session that ends (bye, a kick) takes its status with it; a drop keeps it
        for the resume."""
        if announce in ("quit", "kicked"):
            self.status.pop(session.sid, None)
