"""Search (PROTOCOL-FEATURES.md §8, the ``search`` feature).

``search {query, room? | with?, before?, limit?}`` → ``search_results {id?, query,
messages (newest first), more}``. The scope is decided here and only here: the rooms
the session is in and its own whispers (with ``room``: that room, which it must be in;
with ``with``: its whispers with that person). Whispers are the identity's when the
session has one (§1): its old whispers are found after its partner's session ended, and
never those of an earlier holder of its name. The store only filters and matches
(``MessageStore.search``: plain words, accents and case folded, the last word a prefix).

A search is heavy work like a history page: it waits for its connection's turn
(``ServerCore.start_task``), and what the client sends behind it waits for the answer.
"""

from __future__ import annotations

from qtchat.protocol.living import Search, SearchResults
from qtchat.server.domain import Connection
from qtchat.server.features.base import Core, Feature, encode_trimmed, handles
from qtchat.server.features.rooms import RoomsFeature
from qtchat.server.features.session import SessionFeature


class SearchFeature(Feature):
    name = "search"

    def __init__(self, core: Core, rooms: RoomsFeature, sessions: SessionFeature) -> None:
        super().__init__(core)
        self.rooms = rooms
        self.sessions = sessions

    @handles(Search)
    def _search(self, conn: Connection, frame: Search) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        mine = self.sessions.party_of(session)  # by identity when it has one (§1)
        other = None
        if frame.room is not None:
            room = self.rooms.room_of(conn, session, frame.room, "search")
            if room is None:
                return
            buckets, whispers = [room.key], False
        elif frame.with_ is not None:
            found = self.sessions.party_named(session, frame.with_)
            if found is None:
                core.send_error(conn, "no_such_user", f"Nobody called {frame.with_} is here.",
                                "search")
                return
            buckets, whispers, other = [], True, found[0]
        else:
            buckets, whispers = list(session.rooms), True

        def search_turn(conn: Connection) -> bool:
            conn.task = None  # done after this turn
            found, more = core.store.search(frame.query, buckets, before=frame.before,
                                            limit=frame.limit,
                                            mine=mine if whispers else None, other=other)
            wire = SearchResults(id=frame.id, query=frame.query, messages=found,
                                 more=more).to_wire()
            data, cut = encode_trimmed(wire, ("messages", False))
            if cut.get("messages") and not more:
                # Left out to fit the frame: the next page (before the oldest sent) has them.
                wire["more"] = True
                data, _ = encode_trimmed(wire, ("messages", False))
            core.queue(conn, data)
            return False

        core.start_task(conn, search_turn)
