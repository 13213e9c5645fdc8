"""Make docs/screenshots/chess-game.png and chess-finished.png from the real app.

A ``ChatServer`` on 127.0.0.1 and two ``ChatWindow``s (Alice, Bob) in this process:
Alice challenges Bob from the dialog in his member menu's place, Bob accepts with the
challenge bar, they play an Italian opening through the host, and Alice's window is
grabbed mid-game; then Black blunders into a mate and the finished game (with its
banner) is grabbed. Run it on a display (``Xvfb :96 &`` then ``DISPLAY=:96``); settings
and data live in a temporary directory.

    DISPLAY=:96 PYTHONPATH=. python docs/make_chess_screenshots.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT))


def until(condition, what: str, timeout: float = 15.0) -> None:
    """Run Qt's loop until ``condition()`` holds (a script: polling is fine)."""
    from PySide6.QtTest import QTest

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        QTest.qWait(20)


def save(widget, name: str) -> None:
    from PySide6.QtTest import QTest

    QTest.qWait(300)  # let layouts, the clocks' tick and the board's paint settle
    path = OUT / name
    if not widget.grab().save(str(path)):
        raise OSError(f"could not write {path}")
    print(f"wrote {path.relative_to(ROOT)} ({widget.width()}×{widget.height()})")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="qtchat-chess-shots-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["XDG_DATA_HOME"] = str(tmp / "data")
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
            QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp / "config"))
        app = QApplication.instance() or QApplication(sys.argv[:1])
        app.setApplicationName("qtchat")
        from qtchat.client.chat_client import ChatClient, Endpoint
        from qtchat.gui.main_window import ChatWindow
        from qtchat.server.chat_server import ChatServer, ServerConfig

        server = ChatServer(ServerConfig(host="127.0.0.1", port=0, server_name="Chess club",
                                         data_dir=tmp / "server", rate_limit=0.0))
        server.start()
        windows = {}
        for name in ("Alice", "Bob"):
            client = ChatClient(features=("chess",), connect_timeout=3.0)
            frames = []
            client.registered.connect(frames.append)
            client.open(Endpoint("127.0.0.1", server.port), name)
            until(lambda f=frames: f, f"{name} registered")
            window = ChatWindow(client)
            window._on_registered(frames[0])
            window.resize(1000, 680)
            window.show()
            windows[name] = window
        alice, bob = windows["Alice"], windows["Bob"]
        until(lambda: "Bob" in alice.conversation(alice.current().kind, "lobby").members.names(),
              "Bob in Alice's lobby")
        alice.client.send_broadcast("Anyone for a quick game?")
        bob.client.send_broadcast("Sure, challenge me — 5+3?")
        alice.client.offer_game("Bob", color="white", initial=300, increment=3)
        until(bob.chess.challenge_bar.isVisible, "the challenge bar")
        bob.chess.challenge_bar.accept_button.click()
        until(lambda: alice.chess.panels and bob.chess.panels, "the boards")
        game = next(iter(alice.chess.panels))
        line = ["e2e4", "e7e5", "g1f3", "b8c6", "f1c4", "f8c5", "c2c3", "g8f6", "d2d4"]
        for ply, uci in enumerate(line):
            (alice if ply % 2 == 0 else bob).client.move(game, uci)
            until(lambda n=ply + 1: len(alice.chess.snapshots[game]["moves"]) == n, uci)
            until(lambda n=ply + 1: len(bob.chess.snapshots[game]["moves"]) == n, uci)
        save(alice, "chess-game.png")
        for ply, uci in enumerate(["e5d4", "e4e5", "f6e4", "c4f7", "e8f7", "f3g5", "f7g8",
                                   "d1h5", "d7d5", "h5f7"], start=len(line)):
            (alice if ply % 2 == 0 else bob).client.move(game, uci)
            until(lambda n=ply + 1: len(alice.chess.snapshots[game]["moves"]) == n
                  or alice.chess.snapshots[game].get("state") == "finished", uci)
        until(lambda: game in alice.chess.banners and alice.chess.banners[game].isVisible(),
              "the banner")
        save(alice, "chess-finished.png")
        for window in windows.values():
            window.client.close()
            window.close()
        server.stop()
        server.close_store()
    return 0


if __name__ == "__main__":
    sys.exit(main())
