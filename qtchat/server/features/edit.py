"""Edit and delete (PROTOCOL-FEATURES.md §7, the ``edit`` feature).

``edit {seq, text}`` by the message's author (the same identity, or the same session:
§1, an identity keeps its messages past an app restart) within the host's edit
window (``ServerConfig.edit_window`` minutes, ``--edit-window``; 0: never) becomes
``edited`` for everyone who can see the message and negotiated ``edit``; ``delete
{seq}`` by its author in the window, or by an op of the room, leaves a tombstone
(text "", ``deleted {by, ts}``) and becomes ``deleted``. A message you cannot see is
``no_such_message`` (whether it exists is not given away); one you can see but did not
write is ``not_permitted``.

Stored means stored: the change is committed (``Core.commit_now``) before anyone is
told; if that fails, the editor hears ``storage_error`` and nobody else anything.

The window is measured between the message's ``ts`` and the core's ``timestamp()``
(both UTC), not on a monotonic clock: it must hold across a restart of the host.
Clients without ``edit`` never get a tombstone (history and replays leave deleted
messages out for them, see ``MessageStore.page``); they do see the edited text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from qtchat.protocol.living import Delete, Deleted, Edit, Edited
from qtchat.protocol.server_frames import Message
from qtchat.server.domain import Connection, ConnState, Room, Session
from qtchat.server.features.base import Core, Feature, handles, knows
from qtchat.server.features.rooms import RoomsFeature
from qtchat.server.features.session import SessionFeature

# Roles (the moderation module's) that may delete anyone's room messages.
_MODERATORS = frozenset({"op", "owner"})


def _hidden(change: Callable[[Message], Message | None]
            ) -> Callable[[Message], Message | None]:
    """``change`` for a replay without tombstones: a message it deletes is left out."""
    def apply(copy: Message) -> Message | None:
        changed = change(copy)
        return None if changed is None or changed.deleted is not None else changed
    return apply


def parse_ts(ts: str) -> datetime:
    """A message's ``ts`` (``2026-12-03T12:00:00.000Z``) as an aware datetime."""
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class EditFeature(Feature):
    name = "edit"

    def __init__(self, core: Core, rooms: RoomsFeature, sessions: SessionFeature) -> None:
        super().__init__(core)
        self.rooms = rooms
        self.sessions = sessions
        self._parties: set[int | None] = set()  # the sessions of the message being changed
        self._identities: set[str] = set()  # ... and the identities (a whisper's)
        # The change being told, as it applies to a copy not yet replayed (see _tell).
        self._change: Callable[[Message], Message | None] = lambda copy: copy

    @handles(Edit)
    def _edit(self, conn: Connection, frame: Edit) -> None:
        found = self._own(conn, frame.seq, "edit", op_may=False)
        if found is None:
            return
        message, room = found
        core = self.core
        edited_ts = core.timestamp()
        if not core.store.edit_message(frame.seq, frame.text, edited_ts):
            self._no_such_message(conn, "edit")
            return
        if not core.commit_now():
            self._not_stored(conn, "edit")
            return
        data = Edited(seq=message.seq, room=message.room, to=message.to, text=frame.text,
                      edited_ts=edited_ts).encode()
        text = frame.text
        self._change = lambda copy: copy._replace(text=text, edited=edited_ts)
        self._tell(message, room, data)

    @handles(Delete)
    def _delete(self, conn: Connection, frame: Delete) -> None:
        found = self._own(conn, frame.seq, "delete", op_may=True)
        if found is None:
            return
        message, room = found
        core = self.core
        session = conn.session
        assert session is not None
        ts = core.timestamp()
        by = session.name.display
        if not core.store.delete_message(frame.seq, by, ts):
            self._no_such_message(conn, "delete")
            return
        if not core.commit_now():
            self._not_stored(conn, "delete")
            return
        data = Deleted(seq=message.seq, room=message.room, to=message.to, by=by,
                       ts=ts).encode()
        tombstone = {"by": by, "ts": ts}
        self._change = lambda copy: copy._replace(text="", edited=None, file=None,
                                                  deleted=tombstone)
        self._tell(message, room, data)
        for feature in getattr(core, "features", ()):  # a file it carried leaves with it
            hook = getattr(feature, "on_message_deleted", None)
            if hook is not None:
                hook(frame.seq)

    # --- the rules -----------------------------------------------------------------------

    def _own(self, conn: Connection, seq: int, ref: str, *, op_may: bool
             ) -> tuple[Message, Room | None] | None:
        """The message ``seq`` if this session may change it now, with its room (None for
        a whisper); else answer why not and return None."""
        session = conn.session
        assert session is not None
        core = self.core
        meta = core.store.message_meta(seq)
        if meta is None:
            self._no_such_message(conn, ref)
            return None
        bucket, sender_sid, recipient_sid, message = meta
        author_identity, recipient_identity = core.store.message_identities(seq)
        self._parties = {sender_sid, recipient_sid}
        self._identities = {i for i in (author_identity, recipient_identity) if i is not None}
        mine = self.sessions.identity_of(session)
        room = session.rooms.get(bucket) if bucket else None
        visible = room is not None if bucket else self._party(session, mine)
        if not visible or message.deleted is not None:
            self._no_such_message(conn, ref)
            return None
        # The same session, or the same identity from a later one (§7); a later holder of
        # the name (another identity, or none) is not the author.
        author = sender_sid == session.sid or (mine is not None and mine == author_identity)
        if op_may and room is not None and self._is_op(session, room):
            return message, room  # ops may delete room messages whatever the window
        if not author:
            core.send_error(conn, "not_permitted", "Only its author may change a message.",
                            ref)
            return None
        window = core.config.edit_window
        age = (parse_ts(core.timestamp()) - parse_ts(message.ts)).total_seconds()
        if window <= 0 or age > window * 60:
            how_long = ("Messages cannot be changed on this host." if window <= 0 else
                        f"Messages can be changed for {window:g} minutes after they are sent.")
            core.send_error(conn, "edit_window_expired", how_long, ref)
            return None
        return message, room

    def _party(self, session: Session, identity: str | None = None) -> bool:
        """Whether ``session`` is one side of the whisper being changed: by its session,
        or by its identity (whispers belong to identities, §1)."""
        if session.sid in self._parties:
            return True
        if identity is None:
            identity = self.sessions.identity_of(session)
        return identity is not None and identity in self._identities

    def _is_op(self, session: Session, room: Room) -> bool:
        """Whether ``session`` moderates ``room``: asked of any module that knows (the
        moderation module's ``role_of(session)``: an op or the owner; or an
        ``is_op(session, room)``); without one, nobody is."""
        for feature in getattr(self.core, "features", ()):
            is_op = getattr(feature, "is_op", None)
            if is_op is not None and is_op(session, room):
                return True
            role_of = getattr(feature, "role_of", None)
            if role_of is not None and role_of(session) in _MODERATORS:
                return True
        return False

    def _tell(self, message: Message, room: Room | None, data: bytes) -> None:
        """Everyone who can see the message now and negotiated ``edit``: the room's live
        members, or a whisper's two sides (by session or identity, not by name: a name may
        have passed to someone else since); and those whose resume is replaying."""
        core = self.core
        self._tell_replaying(message, room, data)
        if room is not None:
            for conn in room.conns:
                if knows(conn, "edit"):
                    core.queue(conn, data)
            return
        for session in self.sessions.by_secret.values():
            conn = session.conn
            if conn is not None and conn.state is ConnState.LIVE and knows(conn, "edit") \
                    and self._party(session):
                core.queue(conn, data)

    def _tell_replaying(self, message: Message, room: Room | None, data: bytes) -> None:
        """A session that can see the message and whose resume is still replaying (in no
        fan-out yet) gets it through its replay (``Core.amend_replay``): the frame after
        the replayed copy, or the copy already changed (``self._change``) - a client
        without ``edit`` gets the edited text that way, and a deleted message not at all."""
        core = self.core
        change = self._change
        for conn in core.replaying():
            session = conn.session
            if session is None or not (room.key in session.rooms if room is not None
                                       else self._party(session)):
                continue
            if knows(conn, "edit"):
                core.amend_replay(conn, message.seq, change, data)
            else:  # no tombstones for it: a deleted message is left out of its replay
                core.amend_replay(conn, message.seq, _hidden(change), None)

    def _no_such_message(self, conn: Connection, ref: str) -> None:
        self.core.send_error(conn, "no_such_message", "There is no such message here.", ref)

    def _not_stored(self, conn: Connection, ref: str) -> None:
        self.core.send_error(conn, "storage_error", "The host could not store the change "
                             "(its disk may be full); try again later.", ref)
