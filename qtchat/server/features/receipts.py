"""Receipts for private messages (PROTOCOL-FEATURES.md §6, the ``receipts`` feature).

``receipt {with, seq, state}`` from a reader says that the whispers of ``with`` up to
``seq`` reached (``delivered``) or were read by (``read``) them; the writer gets
``receipt {from, seq, state}`` if it negotiated ``receipts`` and is connected. Only
forwards: a receipt not above the last one of that reader, writer and state is ignored
without a word (``qtchat.living.ReceiptBook``), a ``read`` counts as ``delivered`` too.
Stored (in the pass's commit, before it is forwarded): a writer who was away learns it
from the stored state, not from a replay. Kept by identity where both sides have one
(§1: ``read_up_to`` still says how far the other read after both apps restarted days
later; a later holder of the name, another identity or none, inherits nothing), else by
session as before.

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
from qtchat.server.store import Party


def _identity(identity: str) -> tuple[str, str]:
    """An identity as a side of the receipt book (sessions are there by their int sid)."""
    return ("identity", identity)


class ReceiptsFeature(Feature):
    name = "receipts"

    def __init__(self, core: Core, sessions: SessionFeature) -> None:
        super().__init__(core)
        self.sessions = sessions
        self.book = ReceiptBook()
        self.book.load(core.store.receipts())
        self.book.load([(_identity(reader), _identity(writer), state, seq)
                        for reader, writer, state, seq in core.store.identity_receipts()])

    @handles(Receipt)
    def _receipt(self, conn: Connection, frame: Receipt) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        name = parse_name(frame.with_)
        writer = self.sessions.named(name)
        bound = self.sessions.bound(name) if writer is None else None
        if writer is None and bound is None:
            core.send_error(conn, "no_such_user", f"Nobody called {frame.with_} is here.",
                            "receipt")
            return
        if frame.seq > core.store.last_seq:
            core.send_error(conn, "no_such_message", "There is no such message here.",
                            "receipt")
            return
        reader_id = self.sessions.identity_of(session)
        writer_id = self.sessions.identity_of(writer) if writer is not None else bound[0]
        if writer is session or (reader_id is not None and reader_id == writer_id):
            return
        if reader_id is not None and writer_id is not None:
            # Both have an identity: kept by identity (§1), also while the writer's app
            # is closed (a conversation brought back after a restart).
            reader_key, writer_key = _identity(reader_id), _identity(writer_id)
            save = core.store.save_identity_receipt
            stored = (reader_id, writer_id)
        elif writer is not None:
            reader_key, writer_key = session.sid, writer.sid
            save = core.store.save_receipt
            stored = (session.sid, writer.sid)
        else:  # a writer's identity without session, a reader without: nothing to keep
            return
        if not self.book.advance(reader_key, writer_key, frame.state, frame.seq):
            return
        save(*stored, frame.state, frame.seq)
        if frame.state == "read":
            save(*stored, "delivered", self.book.upto(reader_key, writer_key, "delivered"))
        if writer is None:
            return  # nobody to tell now: the stored state tells them later
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
        sides = self._sides(mine, party, session.sid, other.sid if other else None)

        def page_turn(conn: Connection) -> bool:
            conn.task = None  # done after this turn
            messages = core.store.conversation_page(mine, party, frame.before, frame.limit,
                                                    p.MAX_FRAME_BYTES,
                                                    tombstones=knows(conn, "edit"))
            read = (self.book.read_up_to(*sides)
                    if knows(conn, "receipts") and sides is not None else None)
            wire = HistoryPage(with_=shown, messages=messages, read_up_to=read).to_wire()
            data, _cut = encode_trimmed(wire, ("messages", True),
                                        surely_too_large=texts_exceed_a_frame(messages))
            core.queue(conn, data)
            return False

        core.start_task(conn, page_turn)

    @staticmethod
    def _sides(mine: Party, party: Party, sid: int, other_sid: int | None
               ) -> tuple[object, object] | None:
        """The two sides of a conversation in the receipt book, as ``_receipt`` keeps
        them: by identity when both have one, else by session (None: no session there)."""
        if mine.identity is not None and party.identity is not None:
            return _identity(mine.identity), _identity(party.identity)
        return (sid, other_sid) if other_sid is not None else None
