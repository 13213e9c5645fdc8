"""A name that stays yours and a host who can keep order (PROTOCOL-FEATURES §1, §4).

The rules are in ``qtchat.server.identity`` (which identity holds which name, the admin
secret, the guess limiter) and ``qtchat.server.moderation`` (who may do what, bans,
mutes, room modes and topics); this module turns frames into their calls and their
answers into frames, and keeps their records in the store (``MessageStore.keep``: written
by the pass's commit, before anyone is told).

What runs for every client, negotiated or not, because a host's order must hold for
protocol-1 clients too: the ``register`` gate (``admit``: a wrong admin secret, a ban, a
name reserved for another identity; a fresh register with the identity that holds the
name ends that identity's previous session) and the posting veto (``may_post``: mutes and
moderated rooms). The moderation frames, ``roles``/``topic`` in ``registered`` and
``joined``, and ``user_role``/``user_muted``/``topic``/``room_mode`` go only to sessions
that asked for ``moderation``. ``registered.identity`` goes to a client that sent one.

Time: the core's ``now`` is a monotonic clock, but a ban's ``until`` and a binding's 30
days must outlive the process, so wall time is the core's time plus the offset taken at
start (a test that advances the core's clock by hand advances this one with it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from qtchat import protocol as p
from qtchat.names import Name, parse_name, parse_room
from qtchat.protocol import moderation as mp
from qtchat.protocol.server_frames import ErrorFrame, Left, ServerBye, UserLeft, UsernameTaken
from qtchat.server.domain import Connection, Room, Session
from qtchat.server.features.base import Core, Feature, handles
from qtchat.server.features.rooms import RoomsFeature
from qtchat.server.features.session import SessionFeature
from qtchat.server.identity import (
    ADMIN_ATTEMPTS,
    ADMIN_WINDOW,
    AdminSecret,
    GuessLimiter,
    NameBindings,
    address_of,
    check_identity,
    hash_identity,
)
from qtchat.server.moderation import (
    MEMBER,
    OWNER,
    BanList,
    Mute,
    Mutes,
    Roles,
    RoomMode,
    RoomModes,
    check,
    iso_time,
    speech_refusal,
)

log = logging.getLogger(__name__)

# How often the sweep lifts bans and mutes whose time is up and lets bindings lapse.
SWEEP_EVERY = 5.0
# How often the last-seen time of identities with a session is stored (a binding lasts
# days: an hour off costs nothing, and a row per person every sweep would).
TOUCH_SAVE_EVERY = 3600.0
FEATURE = "moderation"


class ModerationFeature(Feature):
    name = FEATURE

    def __init__(self, core: Core, rooms: RoomsFeature, sessions: SessionFeature, *,
                 wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(core)
        self.rooms = rooms
        self.sessions = sessions
        c = core.config
        self._offset = wall_clock() - core.now
        self.admin = (AdminSecret.from_password(c.admin_password)
                      if c.admin_password else None)
        self.guesses = GuessLimiter(ADMIN_ATTEMPTS, ADMIN_WINDOW)
        rows = core.store.rows
        self.bindings = NameBindings.from_records(
            rows("SELECT identity, name, last_seen FROM name_bindings"),
            c.name_reservation_days)
        self.roles = Roles.from_records(rows("SELECT identity, role FROM roles"))
        self.bans = BanList.from_records(
            rows("SELECT name, identity, address, until, by, reason, ts FROM bans"))
        self.mutes = Mutes.from_records(
            rows("SELECT name, identity, room, until, by, ts FROM mutes"))
        self.modes = RoomModes.from_records(rows(
            "SELECT room, moderated, topic_locked, topic, topic_by, topic_ts FROM room_modes"))
        # Session id -> (identity hash or None, owner): what each session registered with.
        self.idents: dict[int, tuple[str | None, bool]] = {
            sid: (identity, bool(owner)) for sid, identity, owner in
            rows("SELECT sid, identity, owner FROM session_identities")}
        # Decided by ``admit`` for the register being handled, taken by ``on_attach``.
        self._admitted: dict[Connection, tuple[str | None, bool]] = {}
        self._next_sweep = core.now
        self._next_touch_save = core.now + TOUCH_SAVE_EVERY

    # --- who is who ------------------------------------------------------------------

    def wall(self) -> float:
        return self.core.now + self._offset

    def identity_of(self, session: Session) -> str | None:
        return self.idents.get(session.sid, (None, False))[0]

    def role_of(self, session: Session) -> str:
        identity, owner = self.idents.get(session.sid, (None, False))
        return self.roles.role_of(identity, owner=owner)

    @staticmethod
    def negotiated(conn: Connection | None) -> bool:
        return conn is not None and conn.features is not None and FEATURE in conn.features

    def roles_in(self, room: Room) -> dict[str, str]:
        """``roles``: those in ``room`` now who are not plain members."""
        roles = {}
        for conn in room.conns:
            session = conn.session
            if session is not None:
                role = self.role_of(session)
                if role != MEMBER:
                    roles[session.name.display] = role
        return roles

    # --- register ----------------------------------------------------------------------

    def admit(self, conn: Connection, frame: p.Register, name: Name) -> bool:
        core = self.core
        identity = None
        if frame.identity is not None:
            try:
                identity = hash_identity(check_identity(frame.identity))
            except p.LocalProtocolError as exc:
                core.send_error(conn, "bad_frame", exc.message, "register")
                return False
        address = address_of(conn.peer)
        owner = False
        if frame.admin is not None:
            wait = self.guesses.wait(address, core.now)
            if wait > 0:
                seconds = math.ceil(wait)
                core.send_error(conn, "rate_limited", "Too many wrong admin secrets from your "
                                f"address; try again in {seconds} s.", "register",
                                retry_after=seconds)
                core.close(conn, "kicked")
                return False
            if self.admin is None or not self.admin.verify(frame.admin):
                self.guesses.failed(address, core.now)
                core.send_error(conn, "wrong_password", "Wrong admin secret.", "register")
                core.close(conn, "kicked")
                return False
            owner = True
        now = self.wall()
        if not owner:  # the right admin secret is never refused by a ban (§4)
            ban = self.bans.match(identity=identity, address=address, name=name, now=now)
            if ban is not None:
                until = iso_time(ban.until)
                wire = ErrorFrame(code="banned", message=_banned_sentence(ban.by, until,
                                                                          ban.reason),
                                  ref="register", id=frame.id).to_wire()
                wire["until"] = until  # null: until lifted
                core.queue(conn, p.encode(wire))
                core.close(conn, "kicked")
                return False
        if self.bindings.refusal(name, identity, now) is not None:
            core.queue(conn, UsernameTaken(name=name.display, reason="reserved").encode())
            return False
        if identity is not None:
            current = self.sessions.named(name)
            if current is not None and self.identity_of(current) == identity:
                self._end(current, ServerBye(reason="replaced"), "quit")
        self._admitted[conn] = (identity, owner)
        return True

    def on_attach(self, conn: Connection, session: Session, frame: p.Register, *,
                  resumed: bool) -> None:
        now = self.wall()
        if not resumed:
            identity, owner = self._admitted.pop(conn, (None, False))
            if identity is None and not owner:
                return
            self.idents[session.sid] = (identity, owner)
            self.core.store.keep(("session_identity", session.sid),
                                 "INSERT OR REPLACE INTO session_identities VALUES (?, ?, ?)",
                                 (session.sid, identity, int(owner)))
            if identity is not None:
                self.bindings.bind(session.name, identity, now)
                self._save_binding(identity)
            return
        identity = self.identity_of(session)
        if identity is not None:
            self.bindings.touch(identity, now)

    def registered_fields(self, conn: Connection, session: Session) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        identity = self.identity_of(session)
        if identity is not None:
            fields["identity"] = self.bindings.name_of(identity, self.wall()) == session.name
        if self.negotiated(conn):
            lobby = self.rooms.lobby
            roles = self.roles_in(lobby)
            role = self.role_of(session)
            if role != MEMBER:
                roles[session.name.display] = role
            fields["roles"] = roles
            fields["role"] = role
            topic = self.modes.topic(lobby.key)
            if topic is not None:
                fields["topic"] = topic.to_wire(lobby.display)
        return fields

    def joined_fields(self, conn: Connection, session: Session, room: Room) -> dict[str, Any]:
        if not self.negotiated(conn):
            return {}
        fields: dict[str, Any] = {"roles": self.roles_in(room)}
        topic = self.modes.topic(room.key)
        if topic is not None:
            fields["topic"] = topic.to_wire(room.display)
        mode = self.modes.mode(room.key)
        if mode != RoomMode():
            fields["mode"] = {"moderated": mode.moderated, "topic_locked": mode.topic_locked}
        return fields

    # --- the posting veto ----------------------------------------------------------------

    def may_post(self, conn: Connection, session: Session, target: Room | Session,
                 text: str) -> tuple[str, str] | None:
        room = target if isinstance(target, Room) else None
        if not len(self.mutes) and (room is None or not self.modes.mode(room.key).moderated):
            return None  # nearly every message: no mute anywhere, not a moderated room
        code = speech_refusal(
            self.role_of(session), mutes=self.mutes, identity=self.identity_of(session),
            name=session.name, room=room.key if room else None,
            mode=self.modes.mode(room.key) if room else None, now=self.wall())
        if code is None:
            return None
        if code == "muted":
            mute = self.mutes.muted(identity=self.identity_of(session), name=session.name,
                                    room=room.key if room else None, now=self.wall())
            until = iso_time(mute.until) if mute else None
            where = f"in {room.display}" if mute and mute.room is not None and room else "here"
            return code, (f"You are muted {where} by {mute.by if mute else 'a moderator'}"
                          + (f" until {until}." if until else "."))
        return code, f"{room.display if room else 'This room'} is moderated: only ops and " \
                     "the owner may speak in it."

    # --- frames --------------------------------------------------------------------------

    def _actor(self, conn: Connection) -> tuple[Session, str]:
        session = conn.session
        assert session is not None
        return session, self.role_of(session)

    def _refuse(self, conn: Connection, ref: str, sentence: str,
                code: str = "not_permitted") -> None:
        self.core.send_error(conn, code, sentence, ref)

    def _person(self, raw: str) -> tuple[Name, Session | None, str | None, str]:
        """The name, its session if present, its identity (the session's, or the one
        the name is bound to), and its role."""
        name = parse_name(raw)
        session = self.sessions.named(name)
        if session is not None:
            return session.name, session, self.identity_of(session), self.role_of(session)
        identity = self.bindings.holder(name, self.wall())
        return name, None, identity, self.roles.role_of(identity)

    @handles(mp.SetRole)
    def _set_role(self, conn: Connection, frame: mp.SetRole) -> None:
        me, role = self._actor(conn)
        name, target, identity, target_role = self._person(frame.name)
        if check(role, "set_role", target_role) is not None:
            self._refuse(conn, "set_role", "Only the owner gives or takes the op role.")
            return
        if identity is None:
            self._refuse(conn, "set_role", f"{name.display} has no identity here to keep a "
                         "role by (an app that does not keep its name).")
            return
        if self.roles.set_role(identity, frame.role):
            self._save_roles()
        frame_out = mp.UserRole(name=name.display, role=frame.role, by=me.name.display)
        self._tell(self._around(target, conn), frame_out.encode())

    @handles(mp.Kick)
    def _kick(self, conn: Connection, frame: mp.Kick) -> None:
        me, role = self._actor(conn)
        name, target, _identity, target_role = self._person(frame.name)
        if check(role, "kick", target_role) is not None:
            self._refuse(conn, "kick", _not_allowed(role, "kick", name))
            return
        if target is None:
            self._refuse(conn, "kick", f"Nobody called {frame.name} is here.", "no_such_user")
            return
        by, text = me.name.display, frame.reason or None
        if frame.room is not None and parse_room(frame.room).folded != p.LOBBY:
            room = self.rooms.find(parse_room(frame.room))
            if room is None:
                self._refuse(conn, "kick", f"There is no room called {frame.room!r}.",
                             "no_such_room")
                return
            if room.key not in target.rooms:
                self._refuse(conn, "kick", f"{name.display} is not in {room.display}.",
                             "not_in_room")
                return
            self._kick_from_room(target, room, by, text)
            return
        self._end(target, ServerBye(reason="kicked", by=by, text=text), "kicked", by=by,
                  text=text)

    @handles(mp.Ban)
    def _ban(self, conn: Connection, frame: mp.Ban) -> None:
        me, role = self._actor(conn)
        name, target, identity, target_role = self._person(frame.name)
        if check(role, "ban", target_role) is not None:
            self._refuse(conn, "ban", _not_allowed(role, "ban", name))
            return
        address = address_of(target.conn.peer) if target and target.conn else None
        ban = self.bans.add(name, identity=identity, address=address, minutes=frame.minutes,
                            by=me.name.display, reason=frame.reason, now=self.wall())
        self._save_bans()
        if target is not None:
            self._end(target, ServerBye(reason="banned", by=ban.by, text=ban.reason,
                                        until=iso_time(ban.until)),
                      "kicked", by=ban.by, text=ban.reason)

    @handles(mp.Unban)
    def _unban(self, conn: Connection, frame: mp.Unban) -> None:
        _me, role = self._actor(conn)
        if check(role, "unban") is not None:
            self._refuse(conn, "unban", "Only ops and the owner lift bans.")
            return
        if self.bans.lift(parse_name(frame.name)):
            self._save_bans()

    @handles(mp.BanListRequest)
    def _ban_list(self, conn: Connection, frame: mp.BanListRequest) -> None:
        _me, role = self._actor(conn)
        if check(role, "ban_list") is not None:
            self._refuse(conn, "ban_list", "Only ops and the owner see the bans.")
            return
        bans = self.bans.listed(self.wall())[:mp.MAX_BANS_LISTED]
        self.core.queue(conn, mp.BanListFrame(bans=bans, id=frame.id).encode())

    @handles(mp.Mute, mp.Unmute)
    def _mute(self, conn: Connection, frame: mp.Mute | mp.Unmute) -> None:
        me, role = self._actor(conn)
        name, target, identity, target_role = self._person(frame.name)
        if check(role, frame.type, target_role) is not None:
            self._refuse(conn, frame.type, _not_allowed(role, frame.type, name))
            return
        room = None
        if frame.room is not None:
            room = self.rooms.find(parse_room(frame.room))
            if room is None:
                self._refuse(conn, frame.type, f"There is no room called {frame.room!r}.",
                             "no_such_room")
                return
        key = room.key if room else None
        by = me.name.display
        if isinstance(frame, mp.Mute):
            mute = self.mutes.add(name, identity=identity, room=key, minutes=frame.minutes,
                                  by=by, now=self.wall())
            out = mp.UserMuted(name=name.display, by=by, room=room.display if room else None,
                               until=iso_time(mute.until)).encode()
        else:
            if not self.mutes.remove(name, identity=identity, room=key):
                return
            out = mp.UserUnmuted(name=name.display, by=by,
                                 room=room.display if room else None).encode()
        self._save_mutes()
        conns = list(room.conns) if room else self._around(target, conn)
        if conn not in conns:
            conns.append(conn)
        self._tell(conns, out)

    @handles(mp.SetTopic)
    def _topic(self, conn: Connection, frame: mp.SetTopic) -> None:
        me, role = self._actor(conn)
        room = self.rooms.room_of(conn, me, frame.room, "topic")
        if room is None:
            return
        if check(role, "topic", mode=self.modes.mode(room.key)) is not None:
            self._refuse(conn, "topic", f"The topic of {room.display} is locked: only ops "
                         "and the owner change it.")
            return
        try:
            topic = self.modes.set_topic(room.key, frame.text, by=me.name.display,
                                         now=self.wall())
        except p.LocalProtocolError as exc:
            self._refuse(conn, "topic", exc.message, exc.code)
            return
        self._save_modes()
        self._tell(room.conns, mp.TopicFrame(**topic.to_wire(room.display)).encode())

    @handles(mp.SetRoomMode)
    def _room_mode(self, conn: Connection, frame: mp.SetRoomMode) -> None:
        me, role = self._actor(conn)
        if check(role, "room_mode") is not None:
            self._refuse(conn, "room_mode", "Only ops and the owner set a room's mode.")
            return
        room = self.rooms.room_of(conn, me, frame.room, "room_mode")
        if room is None:
            return
        mode = self.modes.set_mode(room.key, moderated=frame.moderated,
                                   topic_locked=frame.topic_locked)
        self._save_modes()
        self._tell(room.conns, mp.RoomModeFrame(room=room.display, moderated=mode.moderated,
                                                topic_locked=mode.topic_locked,
                                                by=me.name.display).encode())

    @handles(mp.ReleaseName)
    def _release_name(self, conn: Connection, frame: mp.ReleaseName) -> None:
        _me, role = self._actor(conn)
        if check(role, "release_name") is not None:
            self._refuse(conn, "release_name", "Only the owner releases a reserved name.")
            return
        identity = self.bindings.release(parse_name(frame.name), self.wall())
        if identity is not None:
            self.core.store.keep(("binding", identity),
                                 "DELETE FROM name_bindings WHERE identity=?", (identity,))

    # --- hooks -------------------------------------------------------------------------

    def on_end_pass(self) -> None:
        self._admitted.clear()  # a register admitted but refused later (a name in use)

    def on_tick(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY
        wall = self.wall()
        # A ban that ends tells nobody (the contract has no frame for it: ``ban_list``
        # is asked for, and no longer lists it); a mute that ends is said, as it began.
        if self.bans.expire(wall):
            self._save_bans()
        ended = self.mutes.expire(wall)
        if ended:
            self._save_mutes()
            for mute in ended:
                self._mute_ended(mute)
        self.guesses.prune(now)
        live = {s.sid for s in self.sessions.by_secret.values()}
        present = set()
        for sid in list(self.idents):
            if sid not in live:
                del self.idents[sid]
                self.core.store.keep(("session_identity", sid),
                                     "DELETE FROM session_identities WHERE sid=?", (sid,))
            elif (identity := self.idents[sid][0]) is not None:
                present.add(identity)
        for binding in self.bindings.lapsed(wall, present):
            self.core.store.keep(("binding", binding.identity),
                                 "DELETE FROM name_bindings WHERE identity=?",
                                 (binding.identity,))
        if now >= self._next_touch_save:  # their "days without them" start again, stored
            self._next_touch_save = now + TOUCH_SAVE_EVERY  # (to the hour: of 30 days)
            for row in self.bindings.to_records():
                if row[0] in present:
                    self.core.store.keep(("binding", row[0]), "INSERT OR REPLACE INTO "
                                         "name_bindings VALUES (?, ?, ?)", row)

    # --- doing it ------------------------------------------------------------------------

    def _mute_ended(self, mute: Mute) -> None:
        """``user_unmuted {reason: "expired"}`` for a timed mute that ran out, to those who
        got its ``user_muted`` and are here now: the room (a room mute), or the muted
        person and everyone sharing a room with them (a server mute); and whoever muted
        them. ``by`` is who set the mute (the field is required; ``reason`` says that
        nobody lifted it)."""
        room = self.rooms.rooms.get(mute.room) if mute.room is not None else None
        if mute.room is not None and room is None:
            return  # the room is gone, and with it everyone who heard of the mute
        conns: dict[Connection, None] = {}
        if room is not None:
            conns.update(room.conns)
        else:
            for session in dict.fromkeys(self.sessions.names.values()):
                if mute.covers(self.identity_of(session), session.name):
                    conns.update(dict.fromkeys(self._around(session, None)))
        try:
            muter = self.sessions.named(parse_name(mute.by))
        except ValueError:
            muter = None
        if muter is not None and muter.conn is not None:
            conns[muter.conn] = None
        out = mp.UserUnmuted(name=mute.name, by=mute.by, room=room.display if room else None,
                             reason="expired").encode()
        self._tell((conn for conn in conns if conn is not None and conn.open), out)


    def _tell(self, conns: Iterable[Connection], data: bytes) -> None:
        """Queue ``data`` for those of ``conns`` that asked for moderation."""
        for conn in conns:
            if self.negotiated(conn):
                self.core.queue(conn, data)

    def _around(self, target: Session | None, actor: Connection | None) -> list[Connection]:
        """Everyone sharing a room with ``target`` (and ``target``, and the actor)."""
        conns: dict[Connection, None] = {actor: None} if actor is not None else {}
        if target is not None:
            if target.conn is not None:
                conns[target.conn] = None
            for room in target.rooms.values():
                conns.update(room.conns)
        return list(conns)

    def _kick_from_room(self, target: Session, room: Room, by: str, text: str | None) -> None:
        core = self.core
        conn = target.conn
        if conn is not None:
            core.queue(conn, Left(room=room.display, reason="kicked", by=by,
                                  text=text).encode())
            if room.conns.pop(conn, False) is None:
                name = target.name.display
                core.fan_out(room, UserLeft(name=name, room=room.display, reason="kicked",
                                            by=by, text=text).encode())
                core.emit("userLeft", name, room.display, "kicked")
        self.rooms.leave_room(target, room)
        core.store.update_session_rooms(target.sid,
                                        [r.display for r in target.rooms.values()])

    def _end(self, target: Session, bye: ServerBye, reason: str, *, by: str | None = None,
             text: str | None = None) -> None:
        """End ``target``'s session: others in its rooms hear ``user_left`` (``reason``,
        with who and why), its connection gets ``bye`` and is closed."""
        core = self.core
        conn = target.conn
        if conn is None:  # held for a resume: nobody sees it, it just ends
            self.sessions.end_session(target)
            return
        name = target.name.display
        for room in target.rooms.values():
            if room.conns.pop(conn, False) is None:
                core.fan_out(room, UserLeft(name=name, room=room.display, reason=reason,
                                            by=by, text=text).encode())
                core.emit("userLeft", name, room.display, reason)
        core.queue(conn, bye.encode())
        core.close(conn, "quit" if reason == "quit" else "kicked")

    # --- keeping the records -----------------------------------------------------------

    def _save_binding(self, identity: str) -> None:
        for row in self.bindings.to_records():
            if row[0] == identity:
                self.core.store.keep(("binding", identity),
                                     "INSERT OR REPLACE INTO name_bindings VALUES (?, ?, ?)", row)
                return

    def _save_table(self, table: str, columns: int, rows: list[tuple[Any, ...]]) -> None:
        """Replace a small table's rows (the later of two saves in a pass wins: see
        ``MessageStore.keep``, which puts a thing changed again last)."""
        keep = self.core.store.keep
        keep((table, "clear"), f"DELETE FROM {table}", ())
        marks = ", ".join("?" * columns)
        for index, row in enumerate(rows):
            keep((table, index), f"INSERT INTO {table} VALUES ({marks})", tuple(row))

    def _save_roles(self) -> None:
        self._save_table("roles", 2, self.roles.to_records())

    def _save_bans(self) -> None:
        self._save_table("bans", 7, self.bans.to_records())

    def _save_mutes(self) -> None:
        self._save_table("mutes", 6, self.mutes.to_records())

    def _save_modes(self) -> None:
        self._save_table("room_modes", 6, self.modes.to_records())


def _banned_sentence(by: str, until: str | None, reason: str | None) -> str:
    when = f"until {until}" if until else "until the ban is lifted"
    why = f": {reason}" if reason else "."
    return f"You are banned from this server by {by}, {when}{why}"


def _not_allowed(role: str, action: str, name: Name) -> str:
    if role not in (OWNER, "op"):
        return f"Only ops and the owner may {action} people."
    return f"You may not {action} {name.display}: nobody acts on the owner, nor an op " \
           "on another op."
