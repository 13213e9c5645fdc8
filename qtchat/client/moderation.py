"""The client side of identity and moderation (PROTOCOL-FEATURES §1, §4), with no Qt.

Imported by ``ChatClient`` (``session.py`` cannot import it: a cycle). The events that
protocol-1 frames carry (``removed``, ``memberKicked``) and the role/topic bookkeeping of
``registered``/``joined`` are in ``session.py`` itself.

The ``ClientSession`` handlers of the moderation frames (registered into its
``_HANDLERS``), their events (``Emit`` subclasses, each a ``ChatClient`` signal), and the
sentences a person reads when the host removes, bans or mutes them. What the session
keeps: its own role, and the roles and topics of its rooms, from ``registered``,
``joined``, ``user_role`` and ``topic`` (bounded like its member lists).
"""

from __future__ import annotations

from qtchat.client import session as cs
from qtchat.protocol import moderation as mp

FEATURE = "moderation"


@cs._emit("roleChanged")
class RoleChanged(cs.Emit):
    name: str
    role: str
    by: str


@cs._emit("userMuted")
class UserMuted(cs.Emit):
    name: str
    room: str  # "" for a server-wide mute
    by: str
    until: str  # "" until lifted


@cs._emit("userUnmuted")
class UserUnmuted(cs.Emit):
    name: str
    room: str
    by: str


@cs._emit("topicChanged")
class TopicChanged(cs.Emit):
    room: str
    text: str
    by: str


@cs._emit("roomModeChanged")
class RoomModeChanged(cs.Emit):
    room: str
    moderated: bool
    topic_locked: bool
    by: str


@cs._emit("banListReceived")
class BanListReceived(cs.Emit):
    bans: list


# --- session handlers -------------------------------------------------------------------


def _on_user_role(self: cs.ClientSession, frame: mp.UserRole, now: float) -> None:
    if frame.name.casefold() == self.name.casefold():
        self.role = frame.role
    for roles in self.roles.values():
        if frame.role == "member":
            roles.pop(frame.name, None)
        else:
            roles[frame.name] = frame.role
    self._events.append(RoleChanged(frame.name, frame.role, frame.by))


def _on_user_muted(self: cs.ClientSession, frame: mp.UserMuted, now: float) -> None:
    self._events.append(UserMuted(frame.name, frame.room or "", frame.by, frame.until or ""))


def _on_user_unmuted(self: cs.ClientSession, frame: mp.UserUnmuted, now: float) -> None:
    # A mute that ran out by itself comes with by "": nobody let them speak.
    by = "" if frame.reason == "expired" else frame.by
    self._events.append(UserUnmuted(frame.name, frame.room or "", by))


def _on_topic(self: cs.ClientSession, frame: mp.TopicFrame, now: float) -> None:
    if frame.room.casefold() not in self._members:
        return  # not one of our rooms: nothing to show it in
    self.topics[frame.room.casefold()] = frame.text
    self._events.append(TopicChanged(frame.room, frame.text, frame.by))


def _on_room_mode(self: cs.ClientSession, frame: mp.RoomModeFrame, now: float) -> None:
    if frame.room.casefold() not in self._members:
        return
    self._events.append(RoomModeChanged(frame.room, frame.moderated, frame.topic_locked,
                                        frame.by or ""))


def _on_ban_list(self: cs.ClientSession, frame: mp.BanListFrame, now: float) -> None:
    self._events.append(BanListReceived(list(frame.bans)))


cs._HANDLERS.update({
    mp.UserRole: _on_user_role,
    mp.UserMuted: _on_user_muted,
    mp.UserUnmuted: _on_user_unmuted,
    mp.TopicFrame: _on_topic,
    mp.RoomModeFrame: _on_room_mode,
    mp.BanListFrame: _on_ban_list,
})
