"""Sessions: ``register`` (fresh or a resume), ``bye``, ``ping``/``pong``, and their clocks.

Owns who is registered: sessions by their secret's hash, the names taken (every
look-alike key of a name, connected or held for a resume), how many are connected, and
the wrong passwords per address. Its clocks run on the time the core passes in
(``on_tick``): the registration deadline, the idle ping and its timeout, the guesses
window, and the grace period after which a dropped session ends.

A resume re-attaches the session and streams its replay from the store as heavy work
(``ServerCore.start_task``), a turn at a time, each once the previous one reached the
kernel; the connection goes live when the replay has caught up.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
from collections.abc import Iterator
from typing import Any

from qtchat import __version__
from qtchat import protocol as p
from qtchat.names import Name, parse_name, parse_room
from qtchat.protocol.server_frames import (
    Message,
    Registered,
    ServerBye,
    ServerPing,
    ServerPong,
    UsernameTaken,
)
from qtchat.server.domain import CLIENT_IDS_KEPT, Connection, ConnState, Session
from qtchat.server.features.base import Core, Feature, encode_trimmed, handles, hooked, knows
from qtchat.server.features.rooms import RoomsFeature, user_joined
from qtchat.server.store import WHISPER_BUCKET, Party, hash_secret

log = logging.getLogger(__name__)

# A resume's replay: what one turn may queue, and how much may wait unsent before the
# next turn (the replay is fed as the peer takes it: it never trips the send-queue cap).
TURN_BYTES = 32 * 1024


class SessionFeature(Feature):
    def __init__(self, core: Core, rooms: RoomsFeature) -> None:
        super().__init__(core)
        self.rooms = rooms
        self.by_secret: dict[str, Session] = {}  # keyed by secret hash
        self.names: dict[str, Session] = {}  # every key of a name -> session (or held)
        self.registered = 0  # connected sessions
        self._password_failures: dict[str, list[float]] = {}  # address -> times, in window

    def load(self, now: float) -> None:
        """Sessions that were live when the server stopped are held, as after a drop."""
        store = self.core.store
        held_until = now + self.core.config.resume_grace
        for stored in store.sessions():
            try:
                name = parse_name(stored.name)
            except ValueError:
                store.end_session(stored.sid)
                continue
            if any(key in self.names for key in name.keys):  # looks like one held already
                store.end_session(stored.sid)
                continue
            session = Session(stored.sid, stored.secret_hash, name, start_seq=stored.start_seq)
            session.sent_upto = max(stored.sent_upto, stored.start_seq)
            session.held_until = held_until
            for room_name in stored.rooms:
                try:
                    room = self.rooms.room(parse_room(room_name))
                except ValueError:
                    continue
                self.rooms.enter(session, room)
            session.client_ids = store.client_ids(stored.sid, CLIENT_IDS_KEPT)
            self.by_secret[stored.secret_hash] = session
            for key in name.keys:
                self.names[key] = session

    # --- frames ------------------------------------------------------------------------

    @handles(p.Ping, before_register=True)
    def _ping(self, conn: Connection, frame: p.Ping) -> None:
        self.core.queue(conn, ServerPong(token=frame.token).encode())

    @handles(p.Pong, before_register=True)
    def _pong(self, conn: Connection, frame: p.Pong) -> None:
        """Nothing to do: any frame already counts as a sign of life."""

    @handles(p.Bye, before_register=True)
    def _bye(self, conn: Connection, frame: p.Bye) -> None:
        self.core.close(conn, "quit")

    @handles(p.Register, before_register=True)
    def _register(self, conn: Connection, frame: p.Register) -> None:
        core = self.core
        c = core.config
        if conn.session is not None:
            core.send_error(conn, "already_registered",
                            f"You are already registered as {conn.session.name.display}.",
                            "register")
            return
        if frame.protocol != p.PROTOCOL_VERSION:
            core.send_error(
                conn, "protocol_mismatch",
                f"This server speaks protocol {p.PROTOCOL_VERSION}, not {frame.protocol}.",
                "register")
            return
        if c.password is not None and not self._password_ok(conn, frame.password or ""):
            core.close(conn, "kicked")
            return
        session = None
        if frame.resume:
            session = self.by_secret.get(hash_secret(frame.resume))
        name = parse_name(frame.name)
        if session is not None and session.name.skeleton != name.skeleton:
            session = None  # a session belongs to its name
        if session is None and self.registered >= c.max_clients:
            core.send_error(conn, "server_full",
                            f"The server is full ({c.max_clients} people).", "register")
            core.close(conn, "kicked")
            return
        if session is not None:
            self._resume(conn, session, frame)
            return
        for feature in hooked(core, "admit"):
            if not feature.admit(conn, frame, name):
                return
        if self.named(name) is not None:
            core.queue(conn, UsernameTaken(name=name.display).encode())
            return
        if len(self.by_secret) - self.registered >= c.max_clients:
            # As many names held for a resume as people allowed: the oldest hold goes.
            held = (s for s in self.by_secret.values() if s.conn is None)
            self.end_session(min(held, key=lambda s: s.held_until or 0.0))
        secret = secrets.token_urlsafe(24)  # 192 bits
        lobby = self.rooms.lobby
        sid = core.store.new_session(secret, name.display, [lobby.display])
        session = Session(sid, hash_secret(secret), name, secret,
                          start_seq=core.store.last_seq)
        self.rooms.enter(session, lobby)
        self.by_secret[session.secret_hash] = session
        for key in name.keys:
            self.names[key] = session
        accepted = self._attach(conn, session, frame)
        for feature in hooked(core, "on_attach"):
            feature.on_attach(conn, session, frame, resumed=False)
        self._send_registered(conn, session, accepted, resumed=False, gap=False)
        core.go_live(conn, announce=True)

    def _password_ok(self, conn: Connection, given: str) -> bool:
        """Check the room password; answer a wrong one. An address that keeps guessing
        waits out the window (a LAN password falls to thousands of guesses a second)."""
        core = self.core
        c = core.config
        now = core.now
        address = conn.peer.rsplit(":", 1)[0]
        failures = self._password_failures.get(address)
        if failures:
            failures[:] = [t for t in failures if t > now - c.password_window]
            if len(failures) >= c.password_attempts:
                wait = math.ceil(failures[0] + c.password_window - now)
                # retry_after: seconds, so a client can say when rather than "check it".
                core.send_error(conn, "wrong_password", "Too many wrong passwords from your "
                                f"address; try again in {wait} s.", "register",
                                retry_after=wait)
                return False
        if hmac.compare_digest(given.encode("utf-8"), (c.password or "").encode("utf-8")):
            return True
        self._password_failures.setdefault(address, []).append(now)
        core.send_error(conn, "wrong_password", "Wrong password.", "register")
        return False

    def _attach(self, conn: Connection, session: Session, frame: p.Register) -> list[str] | None:
        """``conn`` is ``session``'s now; returns the features accepted for it (None for a
        client that asked none)."""
        accepted = self.core.accept_features(frame.features)
        conn.session = session
        conn.features = frozenset(accepted) if accepted is not None else None
        conn.to(ConnState.REGISTERED)
        session.conn = conn
        session.held_until = None
        self.registered += 1
        self.core.emit("clientCountChanged", self.registered)
        return accepted

    def _send_registered(self, conn: Connection, session: Session, features: list[str] | None,
                         *, resumed: bool, gap: bool) -> None:
        """Queue ``registered``; lobby members that do not fit follow as ``user_joined``."""
        core, c = self.core, self.core.config
        lobby = self.rooms.lobby
        extra: dict = {}
        for feature in hooked(core, "registered_fields"):
            extra.update(feature.registered_fields(conn, session))
        registered = Registered(**extra,
            name=session.name.display,
            session=session.secret,
            users=self.rooms.users_of(lobby, session),
            rooms=self.rooms.listed_for(session),
            rooms_total=len(self.rooms.rooms),
            in_rooms=[room.display for room in session.rooms.values()],
            server={"name": c.server_name, "version": __version__, "tls": c.tls,
                    "host": c.host_user, "history": core.store.history_id,
                    "grace": c.resume_grace},
            protocol=p.PROTOCOL_VERSION,
            resumed=resumed,
            gap=gap if resumed else None,
            # Only to a client that asked: a protocol-1 client gets no field it did not know.
            features=features,
            statuses=core.statuses(conn, lobby),
        )
        data, cut = encode_trimmed(registered.to_wire(), ("users", False), ("rooms", False),
                                   ("in_rooms", False))
        core.queue(conn, data)
        for name in cut.get("users", ()):
            core.queue(conn, user_joined(name, lobby.display))
        if cut.get("rooms") or cut.get("in_rooms"):
            log.warning("registered frame for %s left out %d rooms to fit %d bytes",
                        session.name.display, len(cut.get("rooms", ())), p.MAX_FRAME_BYTES)

    def _resume(self, conn: Connection, session: Session, frame: p.Register) -> None:
        core = self.core
        old = session.conn
        if old is not None:  # the server has not noticed the old connection die yet
            core.close(old, "disconnected", abort=True)
        if frame.resume:
            session.secret = frame.resume
        since = frame.since if frame.since is not None else session.sent_upto
        # What came before the session began was never missed (and never lost to it).
        since = max(since, session.start_seq)
        buckets = [*session.rooms, WHISPER_BUCKET]
        gap = any(core.store.pruned_upto(bucket) > since for bucket in buckets)
        accepted = self._attach(conn, session, frame)
        for feature in hooked(core, "on_attach"):
            feature.on_attach(conn, session, frame, resumed=True)
        self._send_registered(conn, session, accepted, resumed=True, gap=gap)
        log.info("%s resumed since seq %d", session.name.display, since)
        conn.to(ConnState.REPLAYING)
        # The live key view: rooms joined while replaying are replayed too.
        replay = core.store.replay(session.rooms.keys(), session.sid, since, batch=100,
                                   tombstones=knows(conn, "edit"))
        # Watched: an edit or delete made while it runs reaches it (EditFeature).
        replay = core.watch_replay(conn, since, replay)
        core.start_task(conn, lambda conn: self._replay_turn(conn, replay))

    def _replay_turn(self, conn: Connection, replay: Iterator[Message]) -> bool:
        """Queue the next part of a replay; go live when caught up. Returns whether it
        should have another turn at once (False: done, or waiting for its output to
        reach the kernel: ``ServerCore.drained`` brings it back)."""
        core = self.core
        budget = max(64 * 1024, core.config.send_queue_bytes // 4)
        outstanding = conn.pending + sum(map(len, conn.out))
        if outstanding > budget:
            return False
        queued = 0
        turn = min(TURN_BYTES, budget - outstanding)
        for message in replay:
            data = message.encode()
            core.queue(conn, data)
            queued += len(data)
            if queued >= turn:
                return outstanding + queued <= budget
        conn.task = None
        core.go_live(conn, announce=True)
        return False

    # --- hooks -------------------------------------------------------------------------

    def on_detach(self, conn: Connection, session: Session, announce: str | None) -> None:
        session.conn = None
        session.sent_upto = self.core.sent_upto(conn)
        self.core.store.update_session_sent_upto(session.sid, session.sent_upto)
        self.registered -= 1
        self.core.emit("clientCountChanged", self.registered)

    def on_tick(self, now: float) -> None:
        """Registration deadline, idle pings and timeouts, the guesses window, and
        sessions whose grace period is over."""
        core, c = self.core, self.core.config
        for conn in core.connections():
            if not conn.open:  # closed by an earlier one in this sweep (a takeover)
                continue
            if conn.session is None:
                if now - conn.connected_at > c.register_timeout:
                    core.send_error(conn, "not_registered",
                                    f"No register within {c.register_timeout:g} s; closing.")
                    core.close(conn, "timeout")
            elif conn.ping_sent_at is not None:
                if now - conn.ping_sent_at > c.idle_timeout:
                    core.queue(conn, ServerBye(reason="timeout").encode())
                    core.close(conn, "timeout")
            elif now - conn.last_heard > c.idle_timeout:
                conn.ping_sent_at = now
                core.queue(conn, ServerPing(token=secrets.token_hex(4)).encode())
        if self._password_failures:
            window = c.password_window
            for address, times in list(self._password_failures.items()):
                if times[-1] <= now - window:
                    del self._password_failures[address]
        for session in list(dict.fromkeys(self.names.values())):
            if session.held_until is not None and session.held_until < now:
                log.info("resume grace of %s ended", session.name.display)
                self.end_session(session)

    # --- for the core and the other modules --------------------------------------------

    def hold(self, session: Session, reason: str) -> None:
        """After a detach: ``bye`` and a kick end the session, anything else holds it for
        its resume during the grace period."""
        if reason in ("quit", "kicked"):
            self.end_session(session)
        else:
            session.held_until = self.core.now + self.core.config.resume_grace

    def end_session(self, session: Session) -> None:
        self.by_secret.pop(session.secret_hash, None)
        for key in session.name.keys:
            if self.names.get(key) is session:
                del self.names[key]
        self.rooms.leave_all(session)
        self.core.store.end_session(session.sid)

    def named(self, name: Name) -> Session | None:
        """The session whose name is, or looks like, ``name``."""
        for key in name.keys:
            session = self.names.get(key)
            if session is not None:
                return session
        return None

    def held_names(self) -> list[str]:
        return sorted({session.name.display for session in self.names.values()})

    # --- who a private conversation is with (PROTOCOL-FEATURES §1) ----------------------
    # Identities are the moderation module's (it admits and binds them); these read them
    # so messages, history and search need not know that module.

    def _identities(self) -> Any:
        return getattr(self.core, "moderation", None)

    def identity_of(self, session: Session) -> str | None:
        """The identity (hash) ``session`` registered with, if any."""
        identities = self._identities()
        return identities.identity_of(session) if identities is not None else None

    def bound(self, name: Name) -> tuple[str, Name] | None:
        """(identity, name as bound) of the identity that holds ``name`` now, if any."""
        identities = self._identities()
        if identities is None:
            return None
        binding = identities.bindings.binding_for(name, identities.wall())
        return (binding.identity, binding.name) if binding is not None else None

    def identities_name(self, identity: str) -> str | None:
        """The name ``identity`` holds now, as shown, if any."""
        identities = self._identities()
        if identities is None:
            return None
        name = identities.bindings.name_of(identity, identities.wall())
        return name.display if name is not None else None

    def party_of(self, session: Session) -> Party:
        """``session`` as one side of its whispers: its identity's, when it has one (so
        the whispers of its earlier sessions are its too), else this session's only."""
        identity = self.identity_of(session)
        return Party(identity=identity) if identity is not None else Party(sid=session.sid)

    def party_named(self, asker: Session, raw: str) -> tuple[Party, str] | None:
        """The other side of ``asker``'s conversation with ``raw``, and its name as shown:
        the session on that name (by its identity if it has one), else the identity the
        name is bound to (its session ended long ago), else — for an asker with an
        identity, whose own whispers they are — whoever had that name when nobody holds
        it now (a partner without identity, or one whose name lapsed). None: nobody (an
        asker without identity keeps protocol 1's ``no_such_user``)."""
        name = parse_name(raw)
        session = self.named(name)
        if session is not None:
            return self.party_of(session), session.name.display
        bound = self.bound(name)
        if bound is not None:
            return Party(identity=bound[0]), bound[1].display
        if self.identity_of(asker) is not None:
            return Party(name=name.display), name.display
        return None
