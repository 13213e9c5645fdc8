"""The client's side of the living-room features (PROTOCOL-FEATURES.md §5–§8).

The frames the host sends for search, edit/delete, typing, presence and receipts become
events of ``ClientSession`` (each an ``Emit``, one ``ChatClient`` signal), through
handlers registered in ``session._HANDLERS`` when this module is imported (by
``chat_client.py``; ``session.py`` does not import it, so there is no cycle). The host
sends these frames only to a session that negotiated the feature; a frame of a feature
we did not ask for is still just reported (it is bounded by its shape, and the views
ignore what they do not show).

The rules of time (who is still typing, when to go away) are ``qtchat.living``'s; the
façade's methods that send (``ChatClient.search`` …) are in ``chat_client.py``.
"""

from __future__ import annotations

from qtchat.client import session as s
from qtchat.protocol.living import (
    Deleted,
    Edited,
    ReceiptNotice,
    SearchResults,
    TypingNotice,
    UserStatus,
)

# What this client implements and asks for in ``register.features``.
LIVING_FEATURES = ("search", "edit", "typing", "presence", "receipts")


@s._emit("searchResults")
class SearchAnswered(s.Emit):
    frame: SearchResults


@s._emit("messageEdited")
class MessageEdited(s.Emit):
    frame: Edited


@s._emit("messageDeleted")
class MessageDeleted(s.Emit):
    frame: Deleted


@s._emit("typingReceived")
class TypingReceived(s.Emit):
    frame: TypingNotice


@s._emit("statusReceived")
class StatusReceived(s.Emit):
    frame: UserStatus


@s._emit("receiptReceived")
class ReceiptReceived(s.Emit):
    frame: ReceiptNotice


def _reporter(event: type[s.Emit]):
    def handle(session: s.ClientSession, frame: object, now: float) -> None:
        session._events.append(event(frame))  # type: ignore[call-arg]
    return handle


s._HANDLERS.update({
    SearchResults: _reporter(SearchAnswered),
    Edited: _reporter(MessageEdited),
    Deleted: _reporter(MessageDeleted),
    TypingNotice: _reporter(TypingReceived),
    UserStatus: _reporter(StatusReceived),
    ReceiptNotice: _reporter(ReceiptReceived),
})
