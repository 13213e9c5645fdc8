"""Messages: ``broadcast`` to a room, ``whisper`` to one person, de-duplicated by client id.

A whisper is stored with the identities of its two sides (§1: they own it), and a
whisper to a name whose identity has no session is accepted and stored (an offline
whisper); ``registered.conversations`` lists an identity's conversations.

The hot path of the server. A message is stored (``MessageStore.add`` gives its ``seq``),
built once as a ``Message`` and encoded once; the same ``bytes`` object goes into the
out-list of every live member of the room (``Core.fan_out``), and the sender's copy, the
only one with its ``id``, is encoded once more. ``Core.posted`` records what a failed
commit must take back, so nobody gets a message that was not stored.

A send whose ``id`` the session already used is answered with the original and not
posted again, before any other check (a retry after a drop gets its original even if
the room or the recipient is gone since). Feature modules may veto a message before it is
stored (``Feature.may_post``: moderation's mute and ban).
"""

from __future__ import annotations

from typing import Any

from qtchat import protocol as p
from qtchat.names import parse_name
from qtchat.protocol.conversations import MAX_CONVERSATIONS
from qtchat.protocol.server_frames import Message
from qtchat.server.domain import Connection, ConnState, Room, Session
from qtchat.server.features.base import Core, Feature, handles
from qtchat.server.features.rooms import RoomsFeature
from qtchat.server.features.session import SessionFeature
from qtchat.server.store import WHISPER_BUCKET


class MessagesFeature(Feature):
    def __init__(self, core: Core, rooms: RoomsFeature, sessions: SessionFeature) -> None:
        super().__init__(core)
        self.rooms = rooms
        self.sessions = sessions

    @handles(p.Broadcast)
    def _broadcast(self, conn: Connection, frame: p.Broadcast) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        if frame.id is not None and self._repeat(conn, session, frame.id):
            return
        room = self.rooms.room_of(conn, session, frame.room, "broadcast")
        if room is None or self._vetoed(conn, session, room, frame):
            return
        ts = core.timestamp()
        sender = session.name.display
        seq = core.store.add(ts=ts, bucket=room.key, room=room.display, sender=sender,
                             sender_sid=session.sid, text=frame.text, client_id=frame.id,
                             sender_identity=self.sessions.identity_of(session))  # §7 author
        message = Message(seq=seq, ts=ts, sender=sender, room=room.display, text=frame.text)
        wire = message.to_wire()
        data = p.encode(wire)
        # The sender's copy is not sent while it is still being replayed to: the replay
        # reaches it, in order (it is not in the room's fan-out until it is live).
        if frame.id is None:
            core.fan_out(room, data)
            core.posted(conn, session, message, None, (data, None))
        else:
            session.remember_client_id(frame.id, seq)
            wire["id"] = frame.id
            own = p.encode(wire)
            core.fan_out(room, data, conn, own)
            core.posted(conn, session, message, frame.id, (data, own))

    @handles(p.Whisper)
    def _whisper(self, conn: Connection, frame: p.Whisper) -> None:
        session = conn.session
        assert session is not None
        core = self.core
        if frame.id is not None and self._repeat(conn, session, frame.id):
            return
        name = parse_name(frame.to)
        target = self.sessions.named(name)
        recipient_identity = None
        if target is not None:
            to = target.name.display
            recipient_identity = self.sessions.identity_of(target)
        elif (bound := self.sessions.bound(name)) is not None:
            # An offline whisper (§1): the name's identity has no session; it finds this
            # in registered.conversations and history {with} when it comes back.
            recipient_identity, to = bound[0], bound[1].display
        else:
            core.send_error(conn, "no_such_user", f"Nobody called {frame.to} is here.",
                            "whisper")
            return
        # An offline whisper has no session to speak to: the veto sees the sender's.
        if self._vetoed(conn, session, target or session, frame):
            return
        ts = core.timestamp()
        seq = core.store.add(ts=ts, bucket=WHISPER_BUCKET, room=None,
                             sender=session.name.display, sender_sid=session.sid,
                             recipient=to, recipient_sid=target.sid if target else None,
                             text=frame.text, client_id=frame.id,
                             sender_identity=self.sessions.identity_of(session),
                             recipient_identity=recipient_identity)
        message = Message(seq=seq, ts=ts, sender=session.name.display, to=to, text=frame.text)
        wire = message.to_wire()
        # A held or replaying recipient gets it from the replay of its resume.
        theirs = own = None
        recipient = target.conn if target is not None else None
        if target is not session and recipient is not None \
                and recipient.state is ConnState.LIVE:
            theirs = p.encode(wire)
            core.queue(recipient, theirs)
        if frame.id is not None:
            session.remember_client_id(frame.id, seq)
            wire["id"] = frame.id
        if conn.state is ConnState.LIVE:
            own = p.encode(wire)
            core.queue(conn, own)
        core.posted(conn, session, message, frame.id, (theirs, own))

    def registered_fields(self, conn: Connection, session: Session) -> dict[str, Any]:
        """``conversations`` (§1): the private conversations of the session's identity,
        newest first, so an app brings its private tabs back after a restart. Only to a
        client that sent an identity and ``features`` (protocol 1 stays exact)."""
        identity = self.sessions.identity_of(session)
        if identity is None or conn.features is None:
            return {}
        listed = []
        for partner, last_name, last_seq in self.core.store.conversations(
                identity, MAX_CONVERSATIONS):
            name = last_name
            if partner is not None:  # the name that identity holds now, if it holds one
                bound = self.sessions.identities_name(partner)
                name = bound if bound is not None else last_name
            listed.append({"with": name, "last_seq": last_seq})
        return {"conversations": listed}

    def _repeat(self, conn: Connection, session: Session, client_id: str) -> bool:
        """A send whose id this session already used: answer with the original.

        The original is sent only once the connection is live (a replay in progress
        carries it), and not at all if retention has removed it.
        """
        seq = session.client_ids.get(client_id)
        if seq is None:
            return False
        original = self.core.store.message_by_seq(seq)
        if original is not None and conn.state is ConnState.LIVE:
            self.core.queue(conn, original.encode())
        return True

    def _vetoed(self, conn: Connection, session: Session, target: Room | Session,
                frame: p.Broadcast | p.Whisper) -> bool:
        refusal = self.core.veto_post(conn, session, target, frame.text)
        if refusal is None:
            return False
        code, sentence = refusal
        self.core.send_error(conn, code, sentence, frame.type)
        return True
