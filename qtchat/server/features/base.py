"""The contract between ``ServerCore`` and a feature module, and what modules share.

A feature module is a ``Feature`` subclass. It names the client frames it handles by
decorating a method with ``@handles(FrameClass, ...)``; the core builds its dispatch table
(frame type -> module) from every module's ``frames`` and calls ``handle(conn, frame)``
(no ``isinstance`` chain). A module may also:

- set ``name``: a negotiated feature (PROTOCOL-FEATURES §0). Its frames are handled only
  for a connection whose ``register.features`` asked for it (others get ``unknown_type``,
  as from a server without it), and ``registered.features`` lists it when accepted;
- override the hooks: ``on_detach`` (a connection leaves its session: drop, bye,
  takeover), ``on_live`` (a connection went live), ``on_join`` (``joined`` was queued),
  ``on_tick`` (the sweep, about once a second, with the time), ``on_shutdown`` (store
  what must outlive the server), ``on_end_pass`` (before the pass's commit: batch what
  the pass decided), ``may_post`` (a veto on a message before it is stored:
  moderation's mute and ban), ``admit`` (a fresh ``register`` may go on: identity's
  reserved names, moderation's bans), ``on_attach`` (a session got its connection),
  ``registered_fields`` and ``joined_fields`` (what a feature adds to those frames).

Modules act only through ``Core`` (below): they queue bytes, fan out, send errors, close
connections and emit events; they never write to a socket or read a clock. Frames are
built with the classes of ``qtchat.protocol.server_frames``, each kind in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

from qtchat import protocol as p
from qtchat.names import Name
from qtchat.protocol.server_frames import Message
from qtchat.server.config import ServerConfig
from qtchat.server.domain import Connection, Room, Session
from qtchat.server.store import MessageStore


class Core(Protocol):
    """What a feature module may ask of the core (``ServerCore`` implements it)."""

    config: ServerConfig
    store: MessageStore
    now: float  # the time passed in with the event being handled

    def timestamp(self) -> str: ...
    def queue(self, conn: Connection, data: bytes) -> None: ...
    def fan_out(self, room: Room, data: bytes, sender: Connection | None = None,
                sender_copy: bytes = b"") -> None: ...
    def send_error(self, conn: Connection, code: str, message: str, ref: str | None = None,
                   *, retry_after: int | None = None) -> None: ...
    def close(self, conn: Connection, reason: str, *, abort: bool = False) -> None: ...
    def emit(self, signal: str, *args: Any) -> None: ...
    def connections(self) -> list[Connection]: ...
    def start_task(self, conn: Connection, task: Callable[[Connection], bool]) -> None: ...
    def go_live(self, conn: Connection, *, announce: bool) -> None: ...
    def room_joined(self, conn: Connection, session: Session, room: Room) -> None: ...
    def sent_upto(self, conn: Connection) -> int: ...
    def accept_features(self, asked: list[str] | None) -> list[str] | None: ...
    def posted(self, conn: Connection, session: Session, message: Message,
               client_id: str | None, copies: tuple[bytes | None, bytes | None]) -> None: ...
    def veto_post(self, conn: Connection, session: Session, target: Room | Session,
                  text: str) -> tuple[str, str] | None: ...
    def commit_now(self) -> bool: ...
    def watch_replay(self, conn: Connection, since: int, messages: Iterator[Message]
                     ) -> Iterator[Message]: ...
    def replaying(self) -> list[Connection]: ...
    def amend_replay(self, conn: Connection, seq: int,
                     change: Callable[[Message], Message | None], data: bytes | None
                     ) -> None: ...
    def statuses(self, conn: Connection, room: Room) -> dict[str, dict[str, str]] | None: ...


def handles(*frame_classes: type[p.ClientFrame], before_register: bool = False
            ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a ``Feature`` method as the handler of these client frames.

    ``before_register``: also for a connection that has not registered (only
    ``register``, ``ping``, ``pong`` and ``bye`` are, in protocol 1).
    """

    def mark(method: Callable[..., None]) -> Callable[..., None]:
        method._handles = (tuple(cls.type for cls in frame_classes),  # type: ignore[attr-defined]
                           before_register)
        return method

    return mark


class Feature:
    """Base of the feature modules (see the module docstring)."""

    name: ClassVar[str | None] = None  # a negotiated feature's name; None: always on
    # frame type -> (method name, handled before register); filled from @handles.
    frames: ClassVar[dict[str, tuple[str, bool]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        frames = dict(cls.frames)
        for attr, value in vars(cls).items():
            marked = getattr(value, "_handles", None)
            if marked is not None:
                kinds, before = marked
                for kind in kinds:
                    frames[kind] = (attr, before)
        cls.frames = frames

    def __init__(self, core: Core) -> None:
        self.core = core
        self._handlers = {kind: getattr(self, attr) for kind, (attr, _) in self.frames.items()}

    def handle(self, conn: Connection, frame: p.ClientFrame) -> None:
        """Apply one frame of a type this module handles."""
        self._handlers[frame.type](conn, frame)

    # --- hooks: override what the feature needs (the core calls only overridden ones) --

    def on_detach(self, conn: Connection, session: Session, announce: str | None) -> None:
        """``conn`` leaves ``session`` (``announce``: the reason others are told, or None
        when they are told nothing: it was not live yet)."""

    def on_live(self, conn: Connection, session: Session) -> None:
        """``conn`` went live (registered, or its resume's replay caught up)."""

    def on_join(self, conn: Connection, session: Session, room: Room) -> None:
        """``conn`` was answered ``joined`` for ``room`` (what follows comes after it)."""

    def on_tick(self, now: float) -> None:
        """The periodic sweep (at least once a second)."""

    def on_shutdown(self) -> None:
        """The server is stopping: store what must outlive it (the store commits after)."""

    def on_end_pass(self) -> None:
        """The pass is ending; the store is committed right after this."""

    def may_post(self, conn: Connection, session: Session, target: Room | Session,
                 text: str) -> tuple[str, str] | None:
        """Refuse a message before it is stored: (error code, sentence), or None."""
        return None

    def admit(self, conn: Connection, frame: p.Register, name: Name) -> bool:
        """Whether a fresh ``register`` (not a resume) for ``name`` may go on; a module
        that says no has answered it (and may have closed the connection)."""
        return True

    def on_attach(self, conn: Connection, session: Session, frame: p.Register, *,
                  resumed: bool) -> None:
        """``session`` has ``conn`` now (a fresh register or a resume), before its
        ``registered`` is built."""

    def registered_fields(self, conn: Connection, session: Session) -> dict[str, Any]:
        """Fields this module adds to ``registered``."""
        return {}

    def joined_fields(self, conn: Connection, session: Session, room: Room) -> dict[str, Any]:
        """Fields this module adds to ``joined``."""
        return {}
    def statuses_in(self, conn: Connection, room: Room) -> dict[str, dict[str, str]] | None:
        """``statuses`` for ``conn``'s ``registered``/``joined`` of ``room`` (presence)."""
        return None


def knows(conn: Connection, feature: str) -> bool:
    """Whether ``conn`` negotiated ``feature`` (a protocol-1 client knows none)."""
    return conn.features is not None and feature in conn.features


def overrides(feature: Feature, hook: str) -> bool:
    """Whether ``feature`` implements ``hook`` itself (else the core skips it)."""
    return getattr(type(feature), hook) is not getattr(Feature, hook)


def hooked(core: Core, hook: str) -> list[Feature]:
    """The modules of ``core`` that implement ``hook`` (the core's list, once it is made)."""
    return [f for f in getattr(core, "features", ()) if overrides(f, hook)]


# --- frames too large for one line ------------------------------------------------------


def texts_exceed_a_frame(messages: list[Message]) -> bool:
    """Whether the texts alone (a byte at least per character) overflow a frame."""
    total = 0
    for message in messages:
        total += len(message.text)
        if total >= p.MAX_FRAME_BYTES:
            return True
    return False


def encode_trimmed(
    frame: dict[str, Any], *trims: tuple[str, bool], surely_too_large: bool = False
) -> tuple[bytes, dict[str, list[Any]]]:
    """Encode ``frame`` (a wire object) within the frame size, shortening its lists if it
    must.

    ``trims`` names the lists to shorten, in the order to sacrifice them, each with
    whether to keep its tail (newest history) rather than its head. Each list is cut
    only as far as needed, once the lists before it are as short as they can be.
    Returns the bytes and, per list, the items left out (the caller may send those
    some other way, e.g. members as ``user_joined``).

    When it does not fit, each item is measured once, and only as many as can fit: a
    page of 200 messages of 4,000 emoji (several MB) costs what 64 KiB of it does, not a
    binary search that encodes it again and again (``surely_too_large`` skips even the
    first try of the whole).
    """
    cut: dict[str, list[Any]] = {}
    if not surely_too_large:  # the caller's cheap check says it may well fit as it is
        try:
            return p.encode(frame), cut  # what nearly every frame does
        except p.LocalProtocolError:
            pass
    for key, keep_tail in trims:
        items = list(frame[key])
        frame[key] = []
        try:
            room = p.MAX_FRAME_BYTES - len(p.encode(frame))  # what the list may take
        except p.LocalProtocolError:
            cut[key] = items  # even without any of it the frame is too large: go on
            continue
        taken = used = 0
        for item in (reversed(items) if keep_tail else items):
            size = p.encoded_size(item) + (1 if taken else 0)  # "," between items
            if used + size > room:
                break
            used += size
            taken += 1
        frame[key] = items[len(items) - taken:] if keep_tail else items[:taken]
        left_out = items[:len(items) - taken] if keep_tail else items[taken:]
        if left_out:
            cut[key] = left_out
        return p.encode(frame), cut
    try:
        return p.encode(frame), cut
    except p.LocalProtocolError:
        raise p.LocalProtocolError(
            "frame_too_large", f"{frame['type']} does not fit in a frame") from None
