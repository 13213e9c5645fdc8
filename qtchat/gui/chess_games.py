"""Chess in the chat window: ``/chess NAME [5+3]``, offers as notices, a tab per game.

``ChessGames`` listens to the window's ``ChatClient`` (its ``game…`` signals) and keeps,
per game, the snapshot the board is drawn from (the fields of ``game_started``, updated
by each ``game_moved``); a game opens as a tab holding a ``ChessPanel`` when it starts
(or when ``registered.games`` brings it again after a reconnect or a restart of the app;
an adjourned game's board stays still until it resumes). The board's ``moveChosen`` and
buttons go to the host; nothing on the board changes until the host answers with the move.

An offer to you is a notice in the conversation it came from (its room, else the
lobby), a bar with Accept / Decline above the message box while that conversation is in
front (``/chess accept`` or ``/chess decline`` answer too), and a notification when the
window is not active. "Challenge to chess…" in a member's context menu opens the
challenge dialog (colour, time control). The end of a game is a notice, and a banner
on the panel (result in words, "Save PGN…", "Copy PGN"); the panel stays open on the
final position until its tab is closed. Chat ▸ Games… lists the host's ``game_list``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QWidget

from qtchat import protocol as p
from qtchat.gui.chess_board import ChessPanel
from qtchat.gui.chess_dialogs import (
    ChallengeBar,
    ChallengeDialog,
    GameOverBanner,
    GamesDialog,
    clock_words,
    result_sentence,
)
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
        self.banners: dict[str, GameOverBanner] = {}
        self.games_dialog: GamesDialog | None = None
        # The challenge bar sits just above the reconnect bar (both above the input).
        self.challenge_bar = ChallengeBar()
        self.challenge_bar.answered.connect(self._answer)
        center = window.reconnect_bar.parentWidget().layout()
        center.insertWidget(center.indexOf(window.reconnect_bar), self.challenge_bar)
        window.tabs.currentChanged.connect(self._update_bar)
        window.members_panel.challengeRequested.connect(self.challenge)
        window.members_panel.can_challenge = lambda name: (
            self.window.client.has_feature(pc.FEATURE)
            and name.casefold() != self.me.casefold())
        self.games_action = QAction("&Games…", window)
        self.games_action.setStatusTip("Your chess games: running and finished")
        self.games_action.triggered.connect(self.show_games)
        for menu_action in window.menuBar().actions():
            if menu_action.menu() is not None and window.settings_action in \
                    menu_action.menu().actions():
                menu_action.menu().insertAction(window.settings_action, self.games_action)
        client = window.client
        client.gameOffered.connect(self._offered)
        client.gameOfferEnded.connect(self._offer_ended)
        client.gameStarted.connect(self._started)
        client.gameMoved.connect(self._moved)
        client.gameDraw.connect(self._draw)
        client.gameOver.connect(self._over)
        client.gameAdjourned.connect(self._adjourned)
        client.gameList.connect(self._listed)
        client.registered.connect(self._registered)
        window.tabs.tabCloseRequested.connect(self._close_tab)

    @property
    def me(self) -> str:
        return self.window.client.name

    def _notice(self, text: str, kind: NoticeKind = NoticeKind.INFO,
                room: str | None = None) -> None:
        conv = None
        if room is not None:
            conv = self.window.conversation(ConversationKind.ROOM, room, create=False)
        if conv is None:
            conv = self.window.conversation(ConversationKind.ROOM, p.LOBBY)
        if conv is not None:
            conv.model.add_notice(text, kind)

    def _offer_view(self, offer: pc.GameOffered) -> QWidget | None:
        """The tab an offer came from: its room if we are in it, else the lobby."""
        conv = None
        if offer.room is not None:
            conv = self.window.conversation(ConversationKind.ROOM, offer.room, create=False)
        if conv is None:
            conv = self.window.conversation(ConversationKind.ROOM, p.LOBBY, create=False)
        return conv.view if conv is not None else None

    @Slot()
    def _update_bar(self, _index: int = -1) -> None:
        """The latest offer made in the conversation in front, or no bar."""
        current = self.window.tabs.currentWidget()
        for game, offer in reversed(self.offers.items()):
            if current is not None and self._offer_view(offer) is current:
                self.challenge_bar.show_offer(game, self._offer_text(offer))
                return
        self.challenge_bar.clear()

    @staticmethod
    def _offer_text(offer: pc.GameOffered) -> str:
        yours = {"white": "black", "black": "white"}.get(offer.color, "a colour drawn by lot")
        return (f"{offer.sender} challenges you to chess ({clock_words(offer.clock)}, "
                f"you play {yours}).")

    @Slot(str, bool)
    def _answer(self, game: str, accept: bool) -> None:
        client = self.window.client
        (client.accept_game if accept else client.decline_game)(game)
        self.offers.pop(game, None)  # the host's game_offer_ended or game_started follows
        self._update_bar()

    @Slot(str)
    def challenge(self, name: str) -> ChallengeDialog | None:
        """"Challenge to chess…": the dialog, then the offer (in the room in front)."""
        if name.casefold() == self.me.casefold():
            return None
        dialog = ChallengeDialog(name, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def send() -> None:
            color, initial, increment = dialog.choice()
            conv = self.window.current()
            room = conv.title if conv is not None and conv.kind == ConversationKind.ROOM \
                else None
            if room is not None and room.casefold() == p.LOBBY:
                room = None
            if not self.window.client.offer_game(name, room=room, color=color,
                                                 initial=initial, increment=increment):
                self._notice("Not connected: try the challenge again once the host is back.",
                             NoticeKind.ERROR)
        dialog.accepted.connect(send)
        dialog.open()
        return dialog

    @Slot()
    def show_games(self) -> GamesDialog:
        """Chat ▸ Games…: a dialog filled from the host's answer to ``game_list``."""
        if self.games_dialog is None:
            self.games_dialog = GamesDialog(self.window)
            self.games_dialog.openGame.connect(self.open_game)
        self.games_dialog.status.setText("Asking the host…")
        self.window.client.list_games()
        self.games_dialog.open()
        return self.games_dialog

    @Slot(object)
    def _registered(self, frame: Any) -> None:
        """After a (re)connect: a board of our own that the host no longer lists in
        ``registered.games`` ended while we were away; ``game_list`` says how."""
        if frame.games is None:  # a host without chess, or one that does not list games
            return
        listed = {entry["game"] for entry in frame.games}
        me = self.me
        if any(snapshot.get("state") != "finished" and game not in listed
               and me in (snapshot.get("white"), snapshot.get("black"))
               for game, snapshot in self.snapshots.items()):
            self.window.client.list_games()

    @Slot(object)
    def _listed(self, frame: pc.GameListAnswer) -> None:
        self._listed_games = {entry["game"]: entry for entry in frame.games}
        if self.games_dialog is not None:
            self.games_dialog.fill(frame.games, frame.finished)
        for entry in frame.finished:  # boards still open on a game that ended meanwhile
            snapshot = self.snapshots.get(entry["game"])
            if snapshot is not None and snapshot.get("state") != "finished":
                self._over(pc.GameOver(game=entry["game"], result=entry["result"],
                                       reason=entry["reason"], pgn=entry["pgn"]))

    @Slot(str)
    def open_game(self, game: str) -> None:
        """Bring a running game's tab to the front, opening it from the list if closed."""
        panel = self.panels.get(game)
        if panel is None:
            entry = getattr(self, "_listed_games", {}).get(game)
            if entry is None:
                return
            snapshot = dict(entry)
            snapshot["state"] = "adjourned" if entry.get("adjourned") else "running"
            snapshot.setdefault("draw_offer_from", None)
            self.snapshots[game] = snapshot
            panel = self._open_panel(game, snapshot)
            panel.apply_snapshot(snapshot, self.me)
        self.window.tabs.setCurrentWidget(panel)

    # --- what the host says ----------------------------------------------------------

    @Slot(object)
    def _offered(self, offer: pc.GameOffered) -> None:
        control = clock_words(offer.clock)
        if offer.sender == self.me:
            self._notice(f"You challenged {offer.to} to chess ({control}); the offer lasts "
                         f"{offer.expires} s.", room=offer.room)
            return
        self.offers[offer.game] = offer
        text = self._offer_text(offer)
        self._notice(f"{text[:-1]}: answer with the bar below, or type /chess accept or "
                     "/chess decline.", room=offer.room)
        self._update_bar()
        self.window.notify(f"Chess challenge from {offer.sender}", text)

    @Slot(object)
    def _offer_ended(self, ended: pc.GameOfferEnded) -> None:
        offer = self.offers.pop(ended.game, None)
        self._update_bar()
        if ended.reason != "accepted":
            who = offer.sender if offer is not None else "The chess offer"
            self._notice(f"{who}: chess offer {ended.reason}.")

    @Slot(object)
    def _started(self, frame: pc.GameStarted) -> None:
        self.offers.pop(frame.game, None)
        self._update_bar()
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
    def _adjourned(self, frame: pc.GameAdjourned) -> None:
        """A player's session ended: the board stops (no moves, no clock) until the host
        resumes the game with ``game_started`` once both are back."""
        snapshot = self.snapshots.get(frame.game)
        if snapshot is None:
            return
        snapshot.update(state="adjourned", draw_offer_from=None)
        self.panels[frame.game].apply_snapshot(snapshot, self.me)
        self._notice(f"Chess, {snapshot['white']} against {snapshot['black']}: adjourned; "
                     "it goes on when both players are back.", room=snapshot.get("room"))

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
            self._show_banner(frame, snapshot)
        self._notice(f"Chess: {_RESULT_WORDS.get(frame.result, frame.result)} "
                     f"({frame.result}, {frame.reason.replace('_', ' ')}).")

    def _show_banner(self, frame: pc.GameOver, snapshot: dict[str, Any]) -> None:
        """"Black won by checkmate" over the final position, with the PGN to keep."""
        panel = self.panels[frame.game]
        banner = self.banners.get(frame.game)
        if banner is None:
            banner = self.banners[frame.game] = GameOverBanner(panel)
            panel.layout().insertWidget(0, banner)
        moves = len(snapshot.get("moves") or [])
        banner.show_result(result_sentence(frame.result, frame.reason),
                           f"{snapshot['white']} – {snapshot['black']} · {frame.result} · "
                           f"{(moves + 1) // 2} moves", frame.pgn)

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
                self.banners.pop(game, None)
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
