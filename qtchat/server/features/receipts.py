"""Receipts for private messages (PROTOCOL-FEATURES.md §6, the ``receipts`` feature).

``receipt {with, seq, state}`` from a reader says that the whispers of ``with`` up to
``seq`` reached (``delivered``) or were read by (``read``) them; the writer gets
``receipt {from, seq, state}`` if it negotiated ``receipts`` and is connected. Only
forwards: a receipt not above the last one of that reader, writer and state is ignored
without a word (``qtchat.living.ReceiptBook``), a ``read`` counts as ``delivered`` too.
Stored (in the pass's commit, before it is forwarded) and kept per session: a writer
who was away learns it from the stored state, not from a replay.

Sending none at all when the person turned receipts off is the client's part: the
server cannot tell "not read" from "not telling".
"""

from __future__ import annotations

from qtchat import protocol as p
from qtchat.living import ReceiptBook
from qtchat.names import parse_name
from qtchat.protocol.living import Receipt, ReceiptNotice
from qtchat.protocol.server_frames import HistoryPage
from qtchat.server.domain import Connection, ConnState
from qtchat.server.features.base import (
    Core,
    Feature,
    encode_trimmed,
    handles,
    knows,
    texts_exceed_a_frame,
)
from qtchat.server.features.session import SessionFeature


class ReceiptsFeature(Feature):
    name = "receipts"

    def __init__(self, core: Core, sessions: SessionFeature) -> None:
        super().__init__(core)
        self.sessions = sessions
        self.book = ReceiptBook()
        self.book.load(core.store.receipts())

    @handles(Receipt)
    def _receipt(self, conn: Connection, frame: Receipt) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        writer = self.sessions.named(parse_name(frame.with_))
        if writer is None:
            if self.sessions.bound(parse_name(frame.with_)) is not None:
                # A conversation kept by identity (§1) whose writer has no session: an app
                # reading it after a restart is right; there is nobody to tell, nothing kept.
                return
            core.send_error(conn, "no_such_user", f"Nobody called {frame.with_} is here.",
                            "receipt")
            return
        if frame.seq > core.store.last_seq:
            core.send_error(conn, "no_such_message", "There is no such message here.",
                            "receipt")
            return
        if writer is session or not self.book.advance(session.sid, writer.sid, frame.state,
                                                       frame.seq):
            return
        core.store.save_receipt(session.sid, writer.sid, frame.state, frame.seq)
        if frame.state == "read":
            core.store.save_receipt(session.sid, writer.sid, "delivered",
                                    self.book.upto(session.sid, writer.sid, "delivered"))
        theirs = writer.conn
        if theirs is not None and theirs.state is ConnState.LIVE and knows(theirs, "receipts"):
            core.queue(theirs, ReceiptNotice(sender=session.name.display, seq=frame.seq,
                                             state=frame.state).encode())

    def private_history(self, conn: Connection, frame: p.History) -> None:
        """``history {with}``: a page of the whispers between this session and ``with``
        (for every client: the rooms module hands it here), with ``read_up_to`` {you,
        them} for a client that negotiated ``receipts``. Heavy work, like a room's page."""
        session = conn.session
        assert session is not None and frame.with_ is not None
        core = self.core
        # Whispers belong to identities (§1): an identity's pages reach back past its
        # sessions, to a partner whose session ended long ago, never to an earlier holder.
        found = self.sessions.party_named(session, frame.with_)
        if found is None:
            core.send_error(conn, "no_such_user", f"Nobody called {frame.with_} is here.",
                            "history")
            return
        party, shown = found
        mine = self.sessions.party_of(session)
        other = self.sessions.named(parse_name(frame.with_))

        def page_turn(conn: Connection) -> bool:
            conn.task = None  # done after this turn
            messages = core.store.conversation_page(mine, party, frame.before, frame.limit,
                                                    p.MAX_FRAME_BYTES,
                                                    tombstones=knows(conn, "edit"))
            read = (self.book.read_up_to(session.sid, other.sid)
                    if knows(conn, "receipts") and other is not None else None)
            wire = HistoryPage(with_=shown, messages=messages, read_up_to=read).to_wire()
            data, _cut = encode_trimmed(wire, ("messages", True),
                                        surely_too_large=texts_exceed_a_frame(messages))
            core.queue(conn, data)
            return False

        core.start_task(conn, page_turn)
