"""Moderation in the chat window: the client's moderation signals to the widgets of
``qtchat.gui.moderation`` and back, and the ``/kick /ban /mute /topic /op`` commands.

``ModerationGlue`` is made by the window with itself: it puts the ``TopicBar`` above the
messages (the current room's topic, editable by those allowed), gives the member list a
context menu (``MemberMenu``: whisper, kick…, ban…, mute…, make op, by your role and
theirs) whose dialogs (``ModerationDialog``) become frames, shows roles in the member
lists, and tells each moderation event in the conversation it concerns as a notice,
in the sentences of ``qtchat.gui.moderation`` (peer text stays plain text).

The commands register when this module is imported (``feature="moderation"``: only on a
host that accepted it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QPoint, Qt, Slot

from qtchat import protocol as p
from qtchat.gui import moderation as m
from qtchat.gui.commands import CommandContext, CommandError, command
from qtchat.gui.conversation import Conversation, fold
from qtchat.gui.members import MemberRoles
from qtchat.gui.models import ConversationKind, NoticeKind
from qtchat.protocol.server_frames import Joined, Registered
from qtchat.server.moderation import RoomMode

if TYPE_CHECKING:
    from qtchat.gui.main_window import ChatWindow

FEATURE = "moderation"


def _when(iso: str) -> datetime | None:
    """A wire time (``2026-12-03T14:05:00.000Z``) as a datetime; None for "" (until lifted)."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None


class ModerationGlue(QObject):
    def __init__(self, window: ChatWindow) -> None:
        super().__init__(window)
        self.window = window
        self.client = client = window.client
        self.modes: dict[str, RoomMode] = {}  # folded room -> its mode
        self.muted: set[str] = set()  # folded names muted somewhere (the menu offers Unmute)
        self.told_removed = False  # the window's "disconnected" notice would repeat it
        self.topic_bar = m.TopicBar()
        self.topic_bar.hide()
        self.topic_bar.topicEdited.connect(self._topic_edited)
        layout = window.tabs.parentWidget().layout()
        layout.insertWidget(0, self.topic_bar)
        view = window.members_view
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.customContextMenuRequested.connect(self._member_menu)
        window.tabs.currentChanged.connect(self._refresh_topic)
        c = client
        c.roomJoined.connect(self._on_room_joined)
        c.userJoined.connect(self._on_user_joined)
        c.roleChanged.connect(self._on_role)
        c.userMuted.connect(self._on_muted)
        c.userUnmuted.connect(self._on_unmuted)
        c.topicChanged.connect(self._on_topic)
        c.roomModeChanged.connect(self._on_mode)
        c.memberKicked.connect(self._on_member_kicked)
        c.removed.connect(self._on_removed)
        c.banListReceived.connect(self._on_ban_list)

    # --- what the window asks -------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.client.has_feature(FEATURE)

    def role_of(self, name: str, room: str = p.LOBBY) -> str:
        if fold(name) == fold(self.window.me):
            return self.client.role
        for who, role in self.client.roles(room).items():
            if fold(who) == fold(name):
                return role
        return m.MEMBER

    def _room_convs(self) -> list[Conversation]:
        return [c for c in self.window._conversations.values()
                if c.kind == ConversationKind.ROOM]

    def _room(self, room: str) -> Conversation | None:
        return self.window.conversation(ConversationKind.ROOM, room, create=False)

    def _notice(self, conv: Conversation | None, text: str,
                kind: NoticeKind = NoticeKind.INFO) -> None:
        if conv is None:
            conv = self.window.conversation(ConversationKind.ROOM, p.LOBBY)
        assert conv is not None
        conv.model.add_notice(text, kind)

    def _show_roles(self, conv: Conversation) -> None:
        """The member list shows "(owner)" and "(op)" beside names."""
        if conv.members is not None:
            conv.members.set_roles(self.client.roles(conv.title))

    # --- the topic bar --------------------------------------------------------------------

    @Slot()
    def _refresh_topic(self, *_args: object) -> None:
        conv = self.window.current()
        if conv is None or conv.kind != ConversationKind.ROOM or not self.enabled:
            self.topic_bar.hide()
            return
        self.topic_bar.set_topic(self.client.topic(conv.title))
        mode = self.modes.get(fold(conv.title), RoomMode())
        self.topic_bar.set_editable(m.may_set_topic(self.client.role, mode))
        self.topic_bar.show()

    @Slot(str)
    def _topic_edited(self, text: str) -> None:
        conv = self.window.current()
        if conv is not None and conv.kind == ConversationKind.ROOM:
            self.client.set_topic(conv.title, text)

    # --- the member menu ----------------------------------------------------------------

    def menu_for(self, name: str) -> m.MemberMenu:
        """The context menu of ``name`` in the current room (also for tests)."""
        conv = self.window.current()
        room = conv.title if conv is not None and conv.kind == ConversationKind.ROOM \
            else p.LOBBY
        my_role = self.client.role if self.enabled else m.MEMBER
        menu = m.MemberMenu(name, my_role, self.role_of(name, room),
                            is_me=fold(name) == fold(self.window.me),
                            muted=fold(name) in self.muted, parent=self.window)
        menu.chosen.connect(lambda action, who: self.act(action, who, room))
        return menu

    @Slot(QPoint)
    def _member_menu(self, point: QPoint) -> None:
        view = self.window.members_view
        name = view.indexAt(point).data(MemberRoles.Name)
        if not isinstance(name, str):
            return
        menu = self.menu_for(name)
        if menu.actions():
            menu.exec(view.viewport().mapToGlobal(point))

    def act(self, action: str, name: str, room: str) -> m.ModerationDialog | None:
        """Do what the menu's entry says; kick, ban and mute open their dialog first
        (returned, shown, so a test can fill it in)."""
        client = self.client
        if action == m.WHISPER:
            conv = self.window.conversation(ConversationKind.PRIVATE, name)
            assert conv is not None
            self.window.show_conversation(conv)
        elif action == m.MAKE_OP:
            client.set_role(name, "op")
        elif action == m.REMOVE_OP:
            client.set_role(name, "member")
        elif action == m.UNMUTE:
            client.unmute(name)
            client.unmute(name, room)
        elif action in (m.KICK, m.BAN, m.MUTE):
            dialog = m.ModerationDialog(action, name, None if fold(room) == p.LOBBY else room,
                                        self.window)
            dialog.requested.connect(self.send_request)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.open()
            return dialog
        return None

    @Slot(object)
    def send_request(self, request: m.ModerationRequest) -> None:
        client = self.client
        if request.kind == m.KICK:
            client.kick(request.name, request.room, request.reason)
        elif request.kind == m.BAN:
            client.ban(request.name, request.minutes, request.reason)
        elif request.kind == m.MUTE:
            client.mute(request.name, request.room, request.minutes)

    # --- client signals -------------------------------------------------------------------

    def registered(self, frame: Registered) -> None:
        """Called by the window's own ``_on_registered`` (the app calls that directly for
        the first one, before any signal could reach this object)."""
        self.told_removed = False
        lobby = self._room(p.LOBBY)
        if lobby is not None:
            self._show_roles(lobby)
        self._refresh_topic()

    @Slot(object)
    def _on_room_joined(self, frame: Joined) -> None:
        if frame.mode:
            self.modes[fold(frame.room)] = RoomMode(bool(frame.mode.get("moderated")),
                                                    bool(frame.mode.get("topic_locked")))
        conv = self._room(frame.room)
        if conv is not None:
            self._show_roles(conv)
        self._refresh_topic()

    @Slot(str, str)
    def _on_user_joined(self, name: str, room: str) -> None:
        conv = self._room(room)
        if conv is not None and conv.members is not None:
            conv.members.set_role(name, self.role_of(name, room))

    @Slot(str, str, str)
    def _on_role(self, name: str, role: str, by: str) -> None:
        for conv in self._room_convs():
            if conv.members is not None and name in conv.members:
                conv.members.set_role(name, role)
        self._notice(self.window.current(), m.role_notice(name, role, by))
        self._refresh_topic()

    @Slot(str, str, str, str)
    def _on_muted(self, name: str, room: str, by: str, until: str) -> None:
        self.muted.add(fold(name))
        now = datetime.now(UTC)
        if fold(name) == fold(self.window.me):
            text = m.muted_sentence(by, room or None, _when(until), now)
            self._notice(self._room(room) if room else None, text, NoticeKind.ERROR)
            return
        text = m.mute_notice(name, by, room or None, _when(until), now)
        self._notice(self._room(room) if room else self.window.current(), text)

    @Slot(str, str, str)
    def _on_unmuted(self, name: str, room: str, by: str) -> None:
        self.muted.discard(fold(name))
        text = m.unmute_notice(name, by, room or None, me=fold(name) == fold(self.window.me))
        self._notice(self._room(room) if room else self.window.current(), text)

    @Slot(str, str, str)
    def _on_topic(self, room: str, text: str, by: str) -> None:
        self._notice(self._room(room), m.topic_notice(text, by))
        self._refresh_topic()

    @Slot(str, bool, bool, str)
    def _on_mode(self, room: str, moderated: bool, topic_locked: bool, by: str) -> None:
        mode = RoomMode(moderated, topic_locked)
        self.modes[fold(room)] = mode
        self._notice(self._room(room), m.mode_notice(mode, by, room))
        self._refresh_topic()

    @Slot(str, str, str, str)
    def _on_member_kicked(self, name: str, room: str, by: str, text: str) -> None:
        where = None if fold(room) == p.LOBBY else room
        self._notice(self._room(room), m.kick_notice(name, by, where, text or None),
                     NoticeKind.LEAVE)

    @Slot(str, str, str, str, str)
    def _on_removed(self, room: str, kind: str, by: str, reason: str, until: str) -> None:
        if kind == "banned":
            text = m.banned_sentence(_when(until), datetime.now(UTC), by=by or None,
                                     reason=reason or None)
        else:
            text = m.kicked_sentence(by or "A moderator", room or None, reason or None)
        if room:  # out of one room: its tab closes, the lobby says why
            self._notice(None, text, NoticeKind.ERROR)
            return
        self.told_removed = True
        for conv in list(self.window._conversations.values()):
            self._notice(conv, text, NoticeKind.ERROR)

    @Slot(list)
    def _on_ban_list(self, bans: list) -> None:
        if not bans:
            self._notice(self.window.current(), "Nobody is banned.")
            return
        now = datetime.now(UTC)
        lines = []
        for ban in bans:
            until = _when(ban.get("until") or "")
            when = "until lifted" if until is None else f"until {m.clock_time(until, now)}"
            why = f": {ban['reason']}" if ban.get("reason") else ""
            lines.append(f"{ban.get('name')} — by {ban.get('by')}, {when}{why}")
        self._notice(self.window.current(), "Banned: " + "; ".join(lines))


# --- commands ----------------------------------------------------------------------------


def _room_of(ctx: CommandContext) -> str | None:
    """The room the command was typed in (None: the lobby or a private tab: the host)."""
    target = ctx.target
    if target.kind == ConversationKind.ROOM and fold(target.title) != p.LOBBY:
        return target.title
    return None


def _minutes(text: str) -> int | None:
    if not text:
        return None
    try:
        minutes = int(text)
    except ValueError:
        raise CommandError(f"“{text}” is not a number of minutes.") from None
    if minutes < 0:
        raise CommandError("Minutes cannot be negative.")
    return minutes


@command("kick", args="NAME [REASON]", feature=FEATURE,
         help="remove someone from this room (in the lobby: from the host)")
def kick(ctx: CommandContext, name: str, reason: str) -> None:
    ctx.client.kick(ctx.checked_name(name), _room_of(ctx), reason.strip() or None)


@command("ban", args="NAME [REASON]", feature=FEATURE,
         help="refuse someone's name, identity and address until lifted (/unban)")
def ban(ctx: CommandContext, name: str, reason: str) -> None:
    ctx.client.ban(ctx.checked_name(name), None, reason.strip() or None)


@command("unban", args="NAME", feature=FEATURE, help="lift a ban")
def unban(ctx: CommandContext, name: str) -> None:
    ctx.client.unban(ctx.checked_name(name))
    ctx.notice(f"Asked the host to lift the ban on {name}.")


@command("bans", feature=FEATURE, help="list who is banned")
def bans(ctx: CommandContext) -> None:
    ctx.client.request_ban_list()


@command("mute", args="NAME [MINUTES]", feature=FEATURE,
         help="stop someone speaking in this room (in the lobby: everywhere)")
def mute(ctx: CommandContext, name: str, minutes: str) -> None:
    ctx.client.mute(ctx.checked_name(name), _room_of(ctx), _minutes(minutes.strip()))


@command("unmute", args="NAME", feature=FEATURE, help="let someone speak again")
def unmute(ctx: CommandContext, name: str) -> None:
    ctx.client.unmute(ctx.checked_name(name), _room_of(ctx))


@command("topic", args="[TEXT]", feature=FEATURE, help="show or set this room's topic")
def topic(ctx: CommandContext, text: str) -> None:
    if ctx.target.kind != ConversationKind.ROOM:
        raise CommandError("Topics belong to rooms.")
    if not text.strip():
        current = ctx.client.topic(ctx.target.title)
        ctx.notice(f"Topic: {current}" if current else "No topic is set.")
        return
    ctx.client.set_topic(ctx.target.title, text.strip())


@command("op", args="NAME", feature=FEATURE, help="make someone an op (the owner only)")
def op(ctx: CommandContext, name: str) -> None:
    ctx.client.set_role(ctx.checked_name(name), "op")


@command("deop", args="NAME", feature=FEATURE, help="take someone's op role away")
def deop(ctx: CommandContext, name: str) -> None:
    ctx.client.set_role(ctx.checked_name(name), "member")
