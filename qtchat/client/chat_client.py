"""ChatClient: one person's connection to a qtchat server, as a Qt object with signals.

It is the thin Qt façade over two parts:

- ``ClientSession`` (``qtchat.client.session``, no Qt): the rules — the client's state,
  resume and dedupe by ``seq``, the outbox of sends confirmed or refused by their ``id``,
  keep-alive and reconnect decisions, the checks a hostile host meets — fed what happens
  with the time ``now``, answering with events (signals to emit, actions to take);
- ``Connector`` (``qtchat.client.connector``): the socket, TLS and pinning, the TLS
  probe, and the ``ConnectError`` sentences for the network's own failures.

This class runs the timers the session asks for, moves bytes between the two, and turns
the session's events into the signals below. What is read is handled in slices of at
most ``SLICE_FRAMES`` frames or ``SLICE_SECONDS`` so the window keeps repainting.
``connect_async`` wraps the first connection in an awaitable for qasync flows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from qtchat import protocol as p
from qtchat.client import chess as _chess  # noqa: F401 (registers the game events)
from qtchat.client import moderation as _moderation  # noqa: F401 (its frames' handlers)
from qtchat.client import session as s
from qtchat.client.connector import Connector, Ending, qt_error_text
from qtchat.client.errors import FAILURE_KINDS, ConnectError, Endpoint
from qtchat.client.files import Download, Upload
from qtchat.client.living import LIVING_FEATURES
from qtchat.client.session import ClientSession
from qtchat.protocol import chess as pc
from qtchat.protocol import living as pl
from qtchat.protocol import moderation as mp
from qtchat.protocol.files import FileAccepted, FileGet, FileOffer, FileTicket
from qtchat.protocol.server_frames import Registered
from qtchat.worker import run_in_thread

__all__ = ["FAILURE_KINDS", "ChatClient", "ConnectError", "Endpoint", "qt_error_text"]

log = logging.getLogger(__name__)

DECODE_CHUNK = 16 << 10  # bytes decoded at once (at most a few ms of JSON)
SLICE_FRAMES = 200
SLICE_SECONDS = 0.008
# The features this client implements and asks for in ``register.features`` (sending
# even the empty list makes this a features session: per-id ``rate_limited``).
CLIENT_FEATURES: tuple[str, ...] = ("moderation", *LIVING_FEATURES)


class ChatClient(QObject):
    """A chat connection that survives drops.

    Signals:
        stateChanged(str state): "disconnected", "connecting", "connected", "reconnecting".
        registered(Registered frame): the server accepted us (also after each resume).
        connectFailed(ConnectError error): joining failed (the first connection, or a
            reconnect that cannot succeed, e.g. the name was taken meanwhile); no retry follows.
        usernameTaken(str name): the name is in use; call ``register`` with another.
        connectionLost(str reason): an established connection dropped; reconnecting.
        protocolError(ConnectError error): the host sent a frame that breaks the protocol,
            so the client left it (kind "protocol", a sentence saying what); a reconnect
            follows. When the client gives up instead, only ``connectFailed`` says so.
        reconnected(bool gap): resumed after a drop; ``gap`` if history was lost meanwhile.
        startedOver(): the host came back with a different history (a new data folder):
            its ``seq`` numbers start again, so what was shown before is no longer on it.
            Emitted before ``reconnected``.
        closed(str reason): the conversation is over (bye, kicked, or ``close()``).
        userJoined(str name, str room) / userLeft(str name, str room, str reason).
        roomJoined(Joined frame): a ``joined`` frame (members and recent history).
        roomLeft(str room).
        messageReceived(Message message): a new ``broadcast`` or ``whisper`` (never twice).
        historyReceived(str room, list[Message] messages): an answer to ``request_history``.
        sendConfirmed(str id, Message message): the server stored our message ``id``.
        sendFailed(str id, str code, str message): the server refused our message ``id``.
        errorReceived(str code, str message, str ref): any other ``error`` frame.
        pongReceived(str token).
        certificateSeen(str fingerprint): the TLS certificate the host presented.
        reconnecting(int attempt, str reason): reconnect attempt ``attempt`` is scheduled
            after the connection was lost for ``reason`` (a sentence fragment).
        reconnectStopped(str sentence): the client stopped reconnecting, by itself after
            the host's grace period (nothing could be resumed after it) or because
            ``stop_reconnecting`` was called; ``reconnect_now`` tries again.
        gameOffered / gameOfferEnded / gameStarted / gameMoved / gameDraw / gameOver /
            gameAdjourned / gameList (frame): chess, each with its typed frame.

    Moderation (PROTOCOL-FEATURES §4; qtchat/client/moderation.py):
        roleChanged(str name, str role, str by); userMuted(str name, str room, str by,
        str until) and userUnmuted(str name, str room, str by) (room "" = server-wide,
        until "" = until lifted, by "" = the mute ran out);
        topicChanged(str room, str text, str by);
        roomModeChanged(str room, bool moderated, bool topic_locked, str by);
        banListReceived(list bans); memberKicked(str name, str room, str by, str text);
        removed(str room, str kind, str by, str reason, str until): we were kicked
        ("kicked") from ``room``, or from the host (room ""), or banned ("banned"; until
        "" = until lifted): from the host, ``closed`` follows and no reconnect.

    Private conversations that last (PROTOCOL-FEATURES §1, with an ``identity``):
        conversationsReceived(list): ``registered.conversations``, [{with, last_seq}]
        newest first (also ``conversations``); page each with
        ``request_private_history``.

    The living-room features (each only if the host accepted it, see ``has_feature``),
    each signal carrying the frame (``qtchat.protocol.living``):
        searchResults(SearchResults): the answer to ``search`` (its ``id`` echoed).
        privateHistoryReceived(HistoryPage): an answer to ``request_private_history``:
            ``with_``, ``messages`` (whispers, oldest first) and, with receipts,
            ``read_up_to`` {you, them}.
        messageEdited(Edited) / messageDeleted(Deleted): a message changed or was taken
            back (a deleted one's text is gone; show a tombstone).
        typingReceived(TypingNotice): someone's typing state in a room or to us.
        statusReceived(UserStatus): someone went away, busy or back online.
        receiptReceived(ReceiptNotice): our whispers to them up to ``seq`` were delivered
            or read.
    Refusals of these (``no_such_message``, ``not_permitted``, ``edit_window_expired``…)
    come as ``errorReceived`` with ``ref`` the frame's type.
    """

    stateChanged = Signal(str)
    registered = Signal(object)
    connectFailed = Signal(object)
    usernameTaken = Signal(str)
    connectionLost = Signal(str)
    protocolError = Signal(object)
    reconnected = Signal(bool)
    startedOver = Signal()
    closed = Signal(str)
    userJoined = Signal(str, str)
    userLeft = Signal(str, str, str)
    roomJoined = Signal(object)
    roomLeft = Signal(str)
    messageReceived = Signal(object)
    historyReceived = Signal(str, list)
    sendConfirmed = Signal(str, object)
    sendFailed = Signal(str, str, str)
    errorReceived = Signal(str, str, str)
    pongReceived = Signal(str)
    certificateSeen = Signal(str)
    reconnecting = Signal(int, str)
    reconnectStopped = Signal(str)
    # Chess (PROTOCOL-FEATURES §3; only from a host that accepted "chess"): each carries
    # the typed frame of qtchat.protocol.chess (GameOffered, GameStarted, GameMoved...).
    gameOffered = Signal(object)
    gameOfferEnded = Signal(object)
    gameStarted = Signal(object)
    gameMoved = Signal(object)
    gameDraw = Signal(object)
    gameOver = Signal(object)
    gameAdjourned = Signal(object)
    gameList = Signal(object)
    roleChanged = Signal(str, str, str)
    userMuted = Signal(str, str, str, str)
    userUnmuted = Signal(str, str, str)
    topicChanged = Signal(str, str, str)
    roomModeChanged = Signal(str, bool, bool, str)
    banListReceived = Signal(list)
    memberKicked = Signal(str, str, str, str)
    removed = Signal(str, str, str, str, str)
    # Files (the ``files`` feature; see send_file and download). Each transfer is named
    # by the id its offer or file_get carried.
    transferProgress = Signal(str, int, int)  # id, bytes done, total
    fileSent = Signal(str, str, int)  # id, the host's file id, the message's seq
    fileSaved = Signal(str, str)  # id, the path it was saved to
    transferFailed = Signal(str, str, str)  # id, code, sentence (resumable unless refused)
    # The session's answers, which this class turns into transfers.
    fileAccepted = Signal(object)
    fileTicket = Signal(object)
    fileRefused = Signal(str, str, str)
    searchResults = Signal(object)
    privateHistoryReceived = Signal(object)
    conversationsReceived = Signal(list)
    messageEdited = Signal(object)
    messageDeleted = Signal(object)
    typingReceived = Signal(object)
    statusReceived = Signal(object)
    receiptReceived = Signal(object)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        reconnect: bool = True,
        pin_store: Any = None,
        give_up_after: float | None = None,
        features: tuple[str, ...] = CLIENT_FEATURES,
    ) -> None:
        super().__init__(parent)
        self._session = ClientSession(keepalive=keepalive, auto_reconnect=reconnect,
                                      give_up_after=give_up_after, features=features)
        self._connector = Connector(self, connect_timeout=connect_timeout, pin_store=pin_store)
        self._connector.ready.connect(self._on_ready)
        self._connector.readable.connect(self._on_ready_read)
        self._connector.ended.connect(self._on_ended)
        self._connector.failed.connect(self._on_failed)
        self._connector.certificateSeen.connect(self.certificateSeen)
        self.endpoint: Endpoint | None = None
        # The person's privacy switches: off, nothing of the kind leaves this client.
        self.typing_enabled = True
        self.receipts_enabled = True
        self._state = "disconnected"
        self._generation = 0  # which connection the frames being handled came from
        self._frames: deque[Any] = deque()  # decoded, not yet handled
        self._after_input: Ending | None = None  # how the connection ended, once handled
        self._reconnect_timer = self._timer(self._on_reconnect_timer)
        self._give_up_timer = self._timer(self._on_give_up_timer)
        self._keepalive_timer = self._timer(self._on_keepalive_timer)
        self._pace_timer = self._timer(self._flush)
        self._slice_timer = self._timer(self._handle_input)
        self._slice_timer.setInterval(0)
        self._timers = {"reconnect": self._reconnect_timer, "give_up": self._give_up_timer,
                        "keepalive": self._keepalive_timer}
        self._actions: dict[type, Any] = {
            s.StateChanged: self._do_state,
            s.StartConnection: self._do_start_connection,
            s.DropConnection: self._do_drop,
            s.CloseConnection: self._do_close,
            s.SettleConnect: lambda _action: self._connector.settle(),
            s.ArmTimer: self._do_arm,
            s.DisarmTimer: lambda action: self._timers[action.timer].stop(),
        }
        # Files: offers and tickets asked for, by id (path, size), and transfers running.
        self._offers: dict[str, tuple[Path, int]] = {}
        self._wanted: dict[str, Path] = {}
        self._transfers: dict[str, Any] = {}
        self._hashing: dict[str, tuple[Path, dict[str, Any]]] = {}  # id -> path, offer
        self.journal: Any = None  # a TransferJournal (client/files.py): survives restarts
        self.fileAccepted.connect(self._start_upload)
        self.fileTicket.connect(self._start_download)
        self.fileRefused.connect(self._file_refused)
        # Each signal event's ``emit``, bound once: a burst emits one per message.
        self._emitters = {cls: getattr(self, cls.signal).emit for cls in s.Emit.__subclasses__()
                          if cls not in self._actions}

    def _timer(self, slot) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.timeout.connect(slot)
        return timer

    # --- what the session and the connector hold, as before ---------------------------------

    @property
    def session(self) -> str | None:
        return self._session.session

    @property
    def last_seq(self) -> int:
        return self._session.last_seq

    @last_seq.setter
    def last_seq(self, value: int) -> None:
        self._session.last_seq = value

    @property
    def name(self) -> str:
        return self._session.name

    @property
    def password(self) -> str | None:
        return self._session.password

    @property
    def server_info(self) -> dict[str, Any]:
        return self._session.server_info

    @property
    def rooms(self) -> list[str]:
        return self._session.rooms

    @property
    def features(self) -> list[str]:
        """The features the host accepted on this session (``register.features``)."""
        return self._session.features

    def has_feature(self, name: str) -> bool:
        return self._session.has_feature(name)

    @property
    def lost_reason(self) -> str:
        return self._session.lost_reason

    @property
    def stopped_reconnecting(self) -> bool:
        return self._session.stopped_reconnecting

    @property
    def give_up_after(self) -> float | None:
        return self._session.give_up_after

    @give_up_after.setter
    def give_up_after(self, value: float | None) -> None:
        self._session.give_up_after = value

    @property
    def keepalive(self) -> float:
        return self._session.keepalive

    @keepalive.setter
    def keepalive(self, value: float) -> None:
        self._session.keepalive = value

    @property
    def auto_reconnect(self) -> bool:
        return self._session.auto_reconnect

    @auto_reconnect.setter
    def auto_reconnect(self, value: bool) -> None:
        self._session.auto_reconnect = value

    @property
    def connect_timeout(self) -> float:
        return self._connector.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, value: float) -> None:
        self._connector.connect_timeout = value

    @property
    def pin_store(self) -> Any:
        return self._connector.pin_store

    @pin_store.setter
    def pin_store(self, value: Any) -> None:
        self._connector.pin_store = value

    @property
    def peer_fingerprint(self) -> str | None:
        return self._connector.peer_fingerprint

    @property
    def fingerprint_first_use(self) -> bool:
        return self._connector.fingerprint_first_use

    @property
    def state(self) -> str:
        return self._state

    @property
    def connected(self) -> bool:
        return self._session.live

    @property
    def pending_ids(self) -> list[str]:
        """Messages sent or queued that the server has not confirmed yet (failed ones too)."""
        return self._session.pending_ids

    @property
    def failed_ids(self) -> list[str]:
        """Messages refused (``sendFailed``): kept for ``retry`` or ``discard``, not re-sent."""
        return self._session.failed_ids

    def grace_period(self) -> float:
        """Seconds to keep reconnecting: ``give_up_after``, else the host's grace."""
        return self._session.grace_period()

    # --- public API ------------------------------------------------------------------------

    def open(
        self,
        endpoint: Endpoint,
        name: str,
        password: str | None = None,
        resume: tuple[str, int] | None = None,
    ) -> None:
        """Connect and register; results arrive as ``registered`` or ``connectFailed``.

        ``resume`` = (session, last seq seen) from an earlier run of the app: the
        server gives the name back and replays what was missed, if it still holds
        that session; otherwise it is a fresh registration.
        """
        self.endpoint = endpoint
        self._run(self._session.open(endpoint.address, name, password, resume))

    async def connect_async(
        self, endpoint: Endpoint, name: str, password: str | None = None
    ) -> Registered:
        """``open`` as an awaitable: the ``registered`` frame, or raises ConnectError."""
        future: asyncio.Future[Registered] = asyncio.get_running_loop().create_future()

        def done(frame: object) -> None:
            if not future.done():
                future.set_result(frame)  # type: ignore[arg-type]

        def failed(error: object) -> None:
            if not future.done():
                future.set_exception(error)  # type: ignore[arg-type]

        def taken(taken_name: str) -> None:
            failed(ConnectError(
                "username_taken",
                f"Someone at {endpoint.address} already uses the name \"{taken_name}\": "
                "choose another name."))

        self.registered.connect(done)
        self.connectFailed.connect(failed)
        self.usernameTaken.connect(taken)
        try:
            self.open(endpoint, name, password)
            return await future
        finally:
            self.registered.disconnect(done)
            self.connectFailed.disconnect(failed)
            self.usernameTaken.disconnect(taken)

    def register(self, name: str) -> None:
        """Try another name after ``usernameTaken`` or ``invalid_name`` (the connection
        stayed open). An invalid name is refused at once with ``connectFailed``."""
        self._run(self._session.register(name))

    def send_broadcast(self, text: str, room: str = p.LOBBY, message_id: str | None = None) -> str:
        """Post to a room; returns the message's id. Queued while disconnected."""
        message_id = self._session.send_message(
            p.Broadcast(text=text, room=room, id=message_id or _new_id()))
        self._flush()
        return message_id

    def send_whisper(self, to: str, text: str, message_id: str | None = None) -> str:
        """A private message to one person; returns the message's id."""
        message_id = self._session.send_message(
            p.Whisper(to=to, text=text, id=message_id or _new_id()))
        self._flush()
        return message_id

    def retry(self, message_id: str) -> None:
        """Send a failed message again (same id: the server will not post it twice).

        While disconnected it goes with the next (re)connection.
        """
        self._session.retry(message_id)
        self._flush()

    def discard(self, message_id: str) -> None:
        """Forget a pending or failed message."""
        self._session.discard(message_id)

    def join(self, room: str) -> None:
        self._session.join(room)
        self._flush()

    def leave(self, room: str) -> None:
        self._session.send_frame(p.Leave(room=room))
        self._flush()

    def request_history(self, room: str, before: int | None = None, limit: int = 50) -> None:
        self._session.request_history(room, before, limit)
        self._flush()

    # --- chess (PROTOCOL-FEATURES §3): refusals come as errorReceived with the ref ---

    def _send_game(self, frame: p.ClientFrame) -> bool:
        sent = self._session.send_frame(frame)
        self._flush()
        return sent

    def offer_game(self, to: str, *, room: str | None = None, color: str = "random",
                   initial: int = 0, increment: int = 0) -> bool:
        """Challenge ``to`` (``color`` is ours); whether it went (False: not connected)."""
        clock = {"initial": initial, "increment": increment} if initial else None
        return self._send_game(pc.GameOffer(to=to, room=room, color=color, clock=clock))

    def accept_game(self, game: str) -> bool:
        return self._send_game(pc.GameAccept(game=game))

    def decline_game(self, game: str) -> bool:
        return self._send_game(pc.GameDecline(game=game))

    def cancel_game(self, game: str) -> bool:
        return self._send_game(pc.GameCancel(game=game))

    def move(self, game: str, uci: str) -> bool:
        """Play ``uci`` (e2e4, e7e8q); the host answers gameMoved, or an error."""
        return self._send_game(pc.GameMove(game=game, move=uci))

    def resign_game(self, game: str) -> bool:
        return self._send_game(pc.GameResign(game=game))

    def abort_game(self, game: str) -> bool:
        return self._send_game(pc.GameAbort(game=game))

    def draw(self, game: str, action: str) -> bool:
        """``action``: offer, accept, decline or claim."""
        return self._send_game(pc.GameDraw(game=game, action=action))

    def list_games(self) -> bool:
        return self._send_game(pc.GameListRequest(id=_new_id()))
    # --- files ---------------------------------------------------------------------------

    def send_file(self, path: Path | str, *, room: str | None = None, to: str | None = None,
                  text: str | None = None, mime: str | None = None,
                  preview: dict[str, Any] | None = None, offer_id: str | None = None) -> str:
        """Offer a file to a room (default the lobby) or a person, then upload it on a
        connection of its own; returns its id. ``transferProgress``, then ``fileSent``
        (the message is posted) or ``transferFailed``. The same ``offer_id`` again (after
        a failure, even after an app restart) resumes from what the host holds.

        The SHA-256 (the host checks it at the end) is computed in a thread first, so
        a large file does not freeze the window; the offer goes once it is known.
        """
        path = Path(path)
        offer_id = offer_id or _new_id()
        offer = {"room": room, "to": to, "text": text, "mime": mime, "preview": preview}
        if self.journal is not None:
            self.journal.upload_begun(offer_id, path, offer)
        self._hashing[offer_id] = (path, offer)
        run_in_thread(functools.partial(_size_and_sha256, path),
                      functools.partial(self._hashed, offer_id), owner=self, name="qtchat-hash")
        return offer_id

    def _hashed(self, offer_id: str, result: Any) -> None:
        hashed = self._hashing.pop(offer_id, None)
        if hashed is None:
            return
        path, offer = hashed
        if isinstance(result, str):  # what went wrong, in a sentence
            self.transferFailed.emit(offer_id, "file", result)
            return
        size, sha256 = result
        self._offers[offer_id] = (path, size)
        frame = FileOffer(id=offer_id, name=path.name, size=size, sha256=sha256,
                          **offer)
        if not self._session.send_frame(frame):
            self.transferFailed.emit(
                offer_id, "offline", "Not connected to the host; try again once connected.")
        self._flush()

    def download(self, file_id: str, destination: Path | str,
                 transfer_id: str | None = None) -> str:
        """Fetch a posted file into ``destination`` (the person chose it); returns the
        transfer's id. A download cut short goes on from its ``.part`` file when asked
        again for the same destination."""
        transfer_id = transfer_id or _new_id()
        self._wanted[transfer_id] = Path(destination)
        if self.journal is not None:
            self.journal.download_begun(transfer_id, file_id, Path(destination))
        if not self._session.send_frame(FileGet(id=transfer_id, file=file_id)):
            QTimer.singleShot(0, self, lambda: self.transferFailed.emit(
                transfer_id, "offline", "Not connected to the host; try again once connected."))
        self._flush()
        return transfer_id

    def cancel_transfer(self, transfer_id: str) -> None:
        """Stop a transfer; what moved is kept, so the same id can resume it."""
        transfer = self._transfers.get(transfer_id)
        if transfer is not None:
            transfer.cancel()

    def _transfer_endpoint(self) -> Endpoint:
        """The chat's host, pinned to the certificate the chat connection saw."""
        assert self.endpoint is not None
        seen = self._connector.peer_fingerprint
        return dataclasses.replace(self.endpoint, fingerprint=seen) if seen \
            else self.endpoint

    def _run_transfer(self, transfer_id: str, transfer: Any) -> None:
        self._transfers[transfer_id] = transfer
        transfer.progress.connect(
            lambda done, total: self.transferProgress.emit(transfer_id, done, total))
        transfer.succeeded.connect(lambda result: self._transfer_done(transfer_id, result))
        transfer.failed.connect(lambda code, sentence: self._transfer_failed(
            transfer_id, code, sentence))
        transfer.start()

    @Slot(object)
    def _start_upload(self, frame: FileAccepted) -> None:
        offer = self._offers.get(frame.id)
        if offer is None or frame.id in self._transfers or self.endpoint is None:
            return
        path, size = offer
        self._run_transfer(frame.id, Upload(
            self._transfer_endpoint(), frame.token, path, size,
            pin_store=self._connector.pin_store, connect_timeout=self.connect_timeout,
            parent=self))

    @Slot(object)
    def _start_download(self, frame: FileTicket) -> None:
        destination = self._wanted.get(frame.id or "")
        if destination is None or frame.id in self._transfers or self.endpoint is None:
            return
        self._run_transfer(frame.id or "", Download(
            self._transfer_endpoint(), frame.token, destination, frame.size, frame.sha256,
            pin_store=self._connector.pin_store, connect_timeout=self.connect_timeout,
            parent=self))

    def _transfer_done(self, transfer_id: str, result: Any) -> None:
        transfer = self._transfers.pop(transfer_id, None)
        if transfer is not None:
            transfer.deleteLater()
        if isinstance(result, Path):
            self._wanted.pop(transfer_id, None)
            self.fileSaved.emit(transfer_id, str(result))
        else:
            self._offers.pop(transfer_id, None)
            file_id, seq = result
            self.fileSent.emit(transfer_id, file_id, seq)

    def _transfer_failed(self, transfer_id: str, code: str, sentence: str) -> None:
        transfer = self._transfers.pop(transfer_id, None)
        if transfer is not None:
            transfer.deleteLater()
        self.transferFailed.emit(transfer_id, code, sentence)

    @Slot(str, str, str)
    def _file_refused(self, transfer_id: str, code: str, sentence: str) -> None:
        self._offers.pop(transfer_id, None)
        self._wanted.pop(transfer_id, None)
        self.transferFailed.emit(transfer_id, code, sentence)
    # --- the living-room features (each a no-op unless the host accepted it) ---------------

    def _send_feature(self, feature: str, frame: p.ClientFrame) -> bool:
        if not self._session.has_feature(feature) or not self._session.send_frame(frame):
            return False
        self._flush()
        return True

    def search(self, query: str, *, room: str | None = None, with_: str | None = None,
               before: int | None = None, limit: int = pl.DEFAULT_SEARCH_LIMIT) -> str | None:
        """Ask for messages with these words; returns the id ``searchResults`` echoes
        (None: not connected, or the host has no search)."""
        search_id = _new_id()
        frame = pl.Search(id=search_id, query=query, room=room, with_=with_, before=before,
                          limit=limit)
        return search_id if self._send_feature("search", frame) else None

    def request_private_history(self, with_: str, before: int | None = None,
                                limit: int = 50) -> None:
        """Ask for a page of the whispers with ``with_`` (``history {with}``), older than
        ``before`` (None: the newest); the answer comes as ``privateHistoryReceived``.
        With an identity this reaches back past both sessions (§1)."""
        self._session.request_private_history(with_, before, limit)
        self._flush()

    @property
    def conversations(self) -> list[dict[str, Any]]:
        """The private conversations of this app's identity on this host, newest first
        (``[{with, last_seq}]``, from ``registered``; ``conversationsReceived`` says when
        they arrive). Empty without an identity, or from a host that does not keep them."""
        return list(self._session.conversations)

    def edit_message(self, seq: int, text: str) -> bool:
        """New text for one of our messages; the host answers with ``messageEdited``."""
        return self._send_feature("edit", pl.Edit(seq=seq, text=text))

    def delete_message(self, seq: int) -> bool:
        """Take a message back (ours, or any in a room we moderate)."""
        return self._send_feature("edit", pl.Delete(seq=seq))

    def send_typing(self, state: str, *, room: str | None = None, to: str | None = None
                    ) -> bool:
        """Our typing state (``active``, ``paused``, ``done``) in a room or to someone.
        Nothing is sent while ``typing_enabled`` is off (the person said so)."""
        if not self.typing_enabled:
            return False
        return self._send_feature("typing", pl.Typing(state=state, room=room, to=to))

    def set_status(self, state: str, text: str | None = None) -> bool:
        """online, away or busy, with an optional line."""
        return self._send_feature("presence", pl.Status(state=state, text=text or None))

    def send_receipt(self, with_: str, seq: int, state: str) -> bool:
        """Their whispers up to ``seq`` were delivered to, or read by, us. Nothing is
        sent while ``receipts_enabled`` is off (the person said so)."""
        if not self.receipts_enabled:
            return False
        return self._send_feature("receipts", pl.Receipt(with_=with_, seq=seq, state=state))

    def ping(self, token: str | None = None) -> str:
        token = self._session.ping(token)
        self._flush()
        return token

    # --- identity and moderation ------------------------------------------------------

    @property
    def identity(self) -> str | None:
        """The identity secret sent to this host (set before ``open``; one per host)."""
        return self._session.identity

    @identity.setter
    def identity(self, value: str | None) -> None:
        self._session.identity = value

    @property
    def admin(self) -> str | None:
        """The host's admin secret, sent at register (host mode: the owner)."""
        return self._session.admin

    @admin.setter
    def admin(self, value: str | None) -> None:
        self._session.admin = value

    @property
    def role(self) -> str:
        """Ours: ``owner``, ``op`` or ``member``."""
        return self._session.role

    def roles(self, room: str = p.LOBBY) -> dict[str, str]:
        """Those in ``room`` who are not plain members, by name."""
        return dict(self._session.roles.get(room.casefold(), {}))

    def topic(self, room: str = p.LOBBY) -> str:
        return self._session.topics.get(room.casefold(), "")

    @property
    def taken_reason(self) -> str | None:
        """Why the last ``usernameTaken`` refused the name (``"reserved"``: it belongs to
        someone else's identity), or None."""
        return self._session.taken_reason

    def _moderate(self, frame: p.ClientFrame) -> bool:
        sent = self._session.send_frame(frame)
        self._flush()
        return sent

    def set_role(self, name: str, role: str) -> bool:
        return self._moderate(mp.SetRole(name=name, role=role))

    def kick(self, name: str, room: str | None = None, reason: str | None = None) -> bool:
        return self._moderate(mp.Kick(name=name, room=room, reason=reason or None))

    def ban(self, name: str, minutes: int | None = None, reason: str | None = None) -> bool:
        return self._moderate(mp.Ban(name=name, minutes=minutes, reason=reason or None))

    def unban(self, name: str) -> bool:
        return self._moderate(mp.Unban(name=name))

    def request_ban_list(self) -> bool:
        return self._moderate(mp.BanListRequest(id=_new_id()))

    def mute(self, name: str, room: str | None = None, minutes: int | None = None) -> bool:
        return self._moderate(mp.Mute(name=name, room=room, minutes=minutes))

    def unmute(self, name: str, room: str | None = None) -> bool:
        return self._moderate(mp.Unmute(name=name, room=room))

    def set_topic(self, room: str, text: str) -> bool:
        return self._moderate(mp.SetTopic(room=room, text=text))

    def set_room_mode(self, room: str, *, moderated: bool | None = None,
                      topic_locked: bool | None = None) -> bool:
        return self._moderate(mp.SetRoomMode(room=room, moderated=moderated,
                                             topic_locked=topic_locked))

    def release_name(self, name: str) -> bool:
        return self._moderate(mp.ReleaseName(name=name))

    def close(self, reason: str = "quit") -> None:
        """Leave for good: ``bye``, then close. No reconnect follows."""
        self._forget_input()
        self._pace_timer.stop()
        self._run(self._session.close(reason))

    def stop_reconnecting(self, sentence: str | None = None) -> None:
        """Stop trying to reconnect (the person pressed Stop, or the grace period ended).

        The outbox fails (its messages can be retried after ``reconnect_now``)."""
        self._run(self._session.stop_reconnecting(sentence))

    def reconnect_now(self) -> None:
        """Try again after ``stop_reconnecting`` (or a give-up): a fresh grace period."""
        if self.endpoint is not None:
            self._run(self._session.reconnect_now(time.monotonic()))

    # --- executing the session's events -----------------------------------------------------

    def _run(self, events: list[s.Event]) -> None:
        """Do what the session decided, in order: actions here, signals emitted."""
        emitters = self._emitters
        for event in events:
            emit = emitters.get(type(event))
            if emit is not None:  # a signal (the hot path: one per message)
                emit(*event.args())  # type: ignore[union-attr]
            else:
                self._actions[type(event)](event)
        if self._session.wants_output:
            self._flush()

    def _do_state(self, event: s.StateChanged) -> None:
        self._state = event.state
        self.stateChanged.emit(event.state)

    def _do_start_connection(self, _action: s.StartConnection) -> None:
        assert self.endpoint is not None
        self._forget_input()
        self._generation += 1
        self._connector.start(self.endpoint)

    def _do_drop(self, _action: s.DropConnection) -> None:
        self._forget_input()
        self._generation += 1
        self._connector.drop()

    def _do_close(self, action: s.CloseConnection) -> None:
        self._forget_input()
        self._generation += 1
        self._connector.close(action.bye)

    def _do_arm(self, action: s.ArmTimer) -> None:
        self._timers[action.timer].start(max(0, int(action.seconds * 1000)))

    @Slot()
    def _flush(self) -> None:
        """Write what the session lets leave now; come back when more may."""
        if self._connector.socket is None or not self._session.wants_output:
            return
        data, wait = self._session.pull_output(time.monotonic())
        if data:
            self._connector.write(data)
        if wait is not None:
            ms = int(wait * 1000) + 1
            if not self._pace_timer.isActive() or self._pace_timer.remainingTime() > ms:
                self._pace_timer.start(ms)

    @Slot()
    def _on_reconnect_timer(self) -> None:
        self._run(self._session.reconnect_due(time.monotonic()))

    @Slot()
    def _on_give_up_timer(self) -> None:
        self._run(self._session.give_up_due(time.monotonic()))

    @Slot()
    def _on_keepalive_timer(self) -> None:
        self._run(self._session.keepalive_tick(time.monotonic()))

    # --- the connector's news ---------------------------------------------------------------

    @Slot()
    def _on_ready(self) -> None:
        self._run(self._session.connection_made())

    @Slot(object, bool)
    def _on_failed(self, error: ConnectError, retry: bool) -> None:
        self._forget_input()
        self._run(self._session.connection_failed(error, retry=retry, now=time.monotonic()))

    @Slot(object)
    def _on_ended(self, ending: Ending) -> None:
        if self._after_input is not None:
            return  # already waiting (errorOccurred, then disconnected)
        self._connector.read_rest()
        if self._frames or self._connector.inbox:
            # The connection ended with frames read but not handled yet (the last
            # messages, a ``bye``): handle them first, then the ending.
            self._after_input = ending
            if not self._slice_timer.isActive():
                self._slice_timer.start()
            return
        self._ended(ending)

    def _ended(self, ending: Ending) -> None:
        session = self._session
        if session.live:
            self._run(session.connection_lost(ending.reason, time.monotonic()))
        elif self._connector.may_be_tls_host(ending, first=not session.ever_registered):
            self._forget_input()
            self._connector.probe_for_tls()
        else:
            self._on_failed(ending.error, True)

    # --- receiving ---------------------------------------------------------------------------

    def _forget_input(self) -> None:
        """The connection is gone: what it sent and was not handled goes with it."""
        self._slice_timer.stop()
        self._frames.clear()
        self._connector.inbox.clear()
        self._after_input = None

    @Slot()
    def _on_ready_read(self) -> None:
        if not self._read():
            return
        if not self._slice_timer.isActive():
            self._handle_input()

    def _read(self) -> bool:
        before = len(self._connector.inbox)
        if not self._connector.read():
            return False
        if len(self._connector.inbox) > before:
            self._session.bytes_read()
        return True

    @Slot()
    def _handle_input(self) -> None:
        """Handle one slice of what was read: at most SLICE_FRAMES frames or about
        SLICE_SECONDS, then let the event loop run (the rest follows on a zero timer).

        Each frame is handled in its own ``try``, so one that trips a bug never
        strands the frames behind it.
        """
        connector = self._connector
        if connector.socket is None:
            return
        generation = self._generation
        deadline = time.perf_counter() + SLICE_SECONDS
        for _ in range(SLICE_FRAMES):
            if not self._frames:
                if not connector.inbox and not (connector.bytes_waiting() and self._read()):
                    break
                self._decode_some()
                if not self._frames:
                    continue
            item = self._frames.popleft()
            try:
                self._run(self._session.handle(item, time.monotonic()))
            except Exception:  # a bug here must not cost the frames behind it
                log.exception("error handling %s", type(item).__name__)
            if self._generation != generation:
                return  # the frame ended this connection
            if time.perf_counter() >= deadline:
                break
        if self._generation == generation and self._read() and \
                self._generation == generation:
            if self._frames or connector.inbox:
                self._slice_timer.start()
            elif self._after_input is not None:
                ending, self._after_input = self._after_input, None
                self._ended(ending)

    def _decode_some(self) -> None:
        """Decode the next DECODE_CHUNK bytes of the inbox (cut after a newline)."""
        inbox = self._connector.inbox
        cut = inbox.rfind(b"\n", 0, DECODE_CHUNK)
        size = cut + 1 if cut >= 0 else min(len(inbox), DECODE_CHUNK)
        chunk = bytes(inbox[:size])
        del inbox[:size]
        self._frames.extend(self._session.decode(chunk))


def _size_and_sha256(path: Path) -> tuple[int, str] | str:
    """A file's size and SHA-256 (on a worker thread), or what went wrong in a sentence."""
    digest = hashlib.sha256()
    try:
        size = 0  # what was hashed is what is offered, even if the file grows
        with open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        return f"Cannot read {path.name}: {exc.strerror}"
    return size, digest.hexdigest()


def _new_id() -> str:
    return uuid.uuid4().hex[:16]

