"""Chess in the chat window: ``/chess NAME [5+3]``, offers as notices, a tab per game.

``ChessGames`` listens to the window's ``ChatClient`` (its ``game…`` signals) and keeps,
per game, the snapshot the board is drawn from (the fields of ``game_started``, updated
by each ``game_moved``); a game opens as a tab holding a ``ChessPanel`` when it starts
(or when a resume brings it again). The board's ``moveChosen`` and buttons go to the
host; nothing on the board changes until the host answers with the move.

An offer to you is a notice in the lobby saying how to answer (``/chess accept`` or
``/chess decline``); the end of a game is a notice there too, and the panel stays open
on the final position until its tab is closed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QWidget

from qtchat import protocol as p
from qtchat.gui.chess_board import ChessPanel
from qtchat.gui.commands import CommandContext, CommandError, command
from qtchat.gui.models import ConversationKind, NoticeKind
from qtchat.protocol import chess as pc

if TYPE_CHECKING:
    from qtchat.gui.main_window import ChatWindow

_CLOCK = re.compile(r"(\d{1,3})\+(\d{1,3})")
_RESULT_WORDS = {"1-0": "White wins", "0-1": "Black wins", "1/2-1/2": "Draw", "*": "No result"}


def parse_time_control(text: str) -> tuple[int, int]:
    """``5+3`` → (300, 3): minutes and seconds of increment, as players write it."""
    found = _CLOCK.fullmatch(text.strip())
    if found is None:
        raise CommandError(f"{text!r} is not a time control: write minutes+increment, as 5+3.")
    minutes, increment = int(found[1]), int(found[2])
    if minutes * 60 > pc.MAX_INITIAL or increment > pc.MAX_INCREMENT:
        raise CommandError(f"At most {pc.MAX_INITIAL // 60} minutes and "
                           f"{pc.MAX_INCREMENT} s of increment.")
    return minutes * 60, increment


class ChessGames(QObject):
    """The games of one chat window (see the module docstring)."""

    def __init__(self, window: ChatWindow) -> None:
        super().__init__(window)
        self.window = window
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.panels: dict[str, ChessPanel] = {}
        self.offers: dict[str, pc.GameOffered] = {}  # offers to us, oldest first
        client = window.client
        client.gameOffered.connect(self._offered)
        client.gameOfferEnded.connect(self._offer_ended)
        client.gameStarted.connect(self._started)
        client.gameMoved.connect(self._moved)
        client.gameDraw.connect(self._draw)
        client.gameOver.connect(self._over)
        window.tabs.tabCloseRequested.connect(self._close_tab)

    @property
    def me(self) -> str:
        return self.window.client.name

    def _notice(self, text: str, kind: NoticeKind = NoticeKind.INFO) -> None:
        lobby = self.window.conversation(ConversationKind.ROOM, p.LOBBY)
        if lobby is not None:
            lobby.model.add_notice(text, kind)

    # --- what the host says ----------------------------------------------------------

    @Slot(object)
    def _offered(self, offer: pc.GameOffered) -> None:
        clock = offer.clock
        control = (f"{clock['initial'] // 60}+{clock['increment']}" if clock["initial"]
                   else "untimed")
        if offer.sender == self.me:
            self._notice(f"You challenged {offer.to} to chess ({control}); the offer lasts "
                         f"{offer.expires} s.")
            return
        self.offers[offer.game] = offer
        yours = {"white": "black", "black": "white"}.get(offer.color, "a colour drawn by lot")
        self._notice(f"{offer.sender} challenges you to chess ({control}, you play {yours}): "
                     "type /chess accept or /chess decline.")

    @Slot(object)
    def _offer_ended(self, ended: pc.GameOfferEnded) -> None:
        offer = self.offers.pop(ended.game, None)
        if ended.reason != "accepted":
            who = offer.sender if offer is not None else "The chess offer"
            self._notice(f"{who}: chess offer {ended.reason}.")

    @Slot(object)
    def _started(self, frame: pc.GameStarted) -> None:
        self.offers.pop(frame.game, None)
        snapshot = frame.to_wire()
        snapshot["state"] = "adjourned" if frame.adjourned else "running"
        self.snapshots[frame.game] = snapshot
        panel = self.panels.get(frame.game)
        if panel is None:
            panel = self._open_panel(frame.game, snapshot)
        panel.apply_snapshot(snapshot, self.me)

    @Slot(object)
    def _moved(self, frame: pc.GameMoved) -> None:
        snapshot = self.snapshots.get(frame.game)
        if snapshot is None:
            return
        snapshot["moves"] = [*snapshot["moves"], frame.uci]
        snapshot.update(fen=frame.fen, turn=frame.turn, white_ms=frame.white_ms,
                        black_ms=frame.black_ms, draw_offer_from=None)
        self.panels[frame.game].apply_snapshot(snapshot, self.me)

    @Slot(object)
    def _draw(self, frame: pc.GameDrawRelay) -> None:
        snapshot = self.snapshots.get(frame.game)
        if snapshot is None:
            return
        snapshot["draw_offer_from"] = frame.sender if frame.action == "offer" else None
        self.panels[frame.game].apply_snapshot(snapshot, self.me)
        if frame.action == "offer":
            self._notice(f"{frame.sender} offers a draw.")
        else:
            self._notice(f"{frame.sender} declined your draw offer.")

    @Slot(object)
    def _over(self, frame: pc.GameOver) -> None:
        snapshot = self.snapshots.get(frame.game)
        if snapshot is not None:
            snapshot.update(state="finished", result=frame.result, reason=frame.reason)
            self.panels[frame.game].apply_snapshot(snapshot, self.me)
            snapshot["pgn"] = frame.pgn
        self._notice(f"Chess: {_RESULT_WORDS.get(frame.result, frame.result)} "
                     f"({frame.result}, {frame.reason.replace('_', ' ')}).")

    # --- the tab -----------------------------------------------------------------------

    def _open_panel(self, game: str, snapshot: dict[str, Any]) -> ChessPanel:
        panel = ChessPanel()
        panel.setProperty("chessGame", game)
        client = self.window.client
        panel.board.moveChosen.connect(lambda uci, g=game: client.move(g, uci))
        buttons = panel.buttons
        buttons.resign.clicked.connect(lambda _=False, g=game: client.resign_game(g))
        buttons.abort.clicked.connect(lambda _=False, g=game: client.abort_game(g))
        buttons.claim_draw.clicked.connect(lambda _=False, g=game: client.draw(g, "claim"))
        buttons.offer_draw.clicked.connect(lambda _=False, g=game: self._offer_draw(g))
        self.panels[game] = panel
        tabs = self.window.tabs
        index = tabs.addTab(panel, f"♞ {snapshot['white']} – {snapshot['black']}")
        if self.me in (snapshot["white"], snapshot["black"]):
            tabs.setCurrentIndex(index)
        return panel

    def _offer_draw(self, game: str) -> None:
        snapshot = self.snapshots.get(game, {})
        offered = snapshot.get("draw_offer_from") not in (None, self.me)
        self.window.client.draw(game, "accept" if offered else "offer")
        if not offered:
            snapshot["draw_offer_from"] = self.me
            self.panels[game].apply_snapshot(snapshot, self.me)

    @Slot(int)
    def _close_tab(self, index: int) -> None:
        widget: QWidget | None = self.window.tabs.widget(index)
        for game, panel in list(self.panels.items()):
            if panel is widget:
                self.window.tabs.removeTab(index)
                del self.panels[game]
                self.snapshots.pop(game, None)
                panel.deleteLater()
                return


@command("chess", args="NAME [CLOCK]", feature="chess",
         help="challenge NAME to chess (CLOCK like 5+3); /chess accept or /chess decline "
              "answers a challenge")
def chess_command(ctx: CommandContext, name: str, clock: str) -> None:
    games: ChessGames | None = getattr(ctx.window, "chess", None)
    client = ctx.client
    if name.lower() in ("accept", "decline") and not clock and games is not None:
        if not games.offers:
            raise CommandError("Nobody has challenged you to chess.")
        game = next(reversed(games.offers))  # the latest challenge
        (client.accept_game if name.lower() == "accept" else client.decline_game)(game)
        return
    ctx.checked_name(name)
    initial, increment = parse_time_control(clock) if clock else (0, 0)
    # A challenge typed in a room is played there, watched by its members; in the lobby
    # or a private tab it is between the two alone.
    room = ctx.target.title if ctx.target.kind == ConversationKind.ROOM else None
    if room is not None and room.casefold() == p.LOBBY:
        room = None
    if not client.offer_game(name, room=room, initial=initial, increment=increment):
        raise CommandError("Not connected: try again once the host is back.")
