"""Make the documentation screenshots in docs/screenshots/ from the real app.

Everything is built in-process on one qasync loop: Alice hosts a room (a real
``ChatServer`` through ``AppController.host``), simulated members (real
``ChatClient``s) join and talk, Bob joins with a window of his own, and two rooms
are announced on 127.0.0.1 with ``RoomAnnouncer`` for a ``RoomBrowser`` feeding
the start dialog. Windows are captured with ``QWidget.grab()``.

Display: under X11 as-is; with no ``DISPLAY`` it starts ``Xvfb`` itself if it
is installed (real fonts and styles), else falls back to the offscreen platform.
Settings and data live in a temporary directory: the user's are never touched.

    python docs/make_screenshots.py          # or: make screenshots
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT))

log = logging.getLogger("make_screenshots")

#: The LAN address shown in the host's status bar (the real one is this machine's).
SHOWN_ADDRESS = "192.168.1.20"


@contextlib.contextmanager
def display() -> Iterator[str]:
    """A display for Qt: the current one, a private Xvfb, or the offscreen platform."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        yield "existing display"
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        yield "offscreen (Xvfb not found)"
        return
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()  # Xvfb writes its display number when ready
    if not number:
        server.kill()
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        yield "offscreen (Xvfb did not start)"
        return
    os.environ["DISPLAY"] = f":{number}"
    os.environ.pop("QT_QPA_PLATFORM", None)
    try:
        yield f"Xvfb on :{number}"
    finally:
        server.terminate()
        server.wait(5)


async def until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Let the loop run until ``condition()`` is true (this is a script: polling is fine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def save(widget, name: str) -> Path:
    from PySide6.QtWidgets import QApplication

    for _ in range(3):  # let layouts and delegates settle before the grab
        QApplication.processEvents()
    path = OUT / name
    if not widget.grab().save(str(path)):
        raise OSError(f"could not write {path}")
    print(f"wrote {path.relative_to(ROOT)} ({widget.width()}×{widget.height()})")
    return path


def texts(window) -> list[str]:
    """The text of every row of every conversation of a chat window."""
    from qtchat.gui.models import MessageRoles

    found = []
    for conv in window._conversations.values():
        model = conv.model
        found += [model.index(r).data(MessageRoles.Text) for r in range(model.rowCount())]
    return found


async def shoot(tmp: Path) -> None:
    from qtchat import DEFAULT_PORT
    from qtchat.address import parse_join_target
    from qtchat.client.chat_client import ChatClient, Endpoint
    from qtchat.discovery import RoomAnnouncer, RoomBrowser
    from qtchat.gui import app as app_module
    from qtchat.gui.app import AppController, free_port_after
    from qtchat.gui.models import ConversationKind
    from qtchat.gui.start_dialog import HostChoice, JoinChoice, StartDialog, settings

    OUT.mkdir(parents=True, exist_ok=True)
    app_module.local_addresses = lambda versions=(4, 6): [SHOWN_ADDRESS]  # not this machine's

    def args() -> argparse.Namespace:
        return argparse.Namespace(command=None, smoke=False, startup_probe=False,
                                  no_announce=True, interfaces=None, data_dir=tmp / "host")

    # 1. The start dialog, Host tab, filled in as a first-time host would.
    dialog = StartDialog()
    dialog.name_edit.setText("Alice")
    dialog.room_edit.setText("Design team")
    dialog.port_spin.setValue(DEFAULT_PORT)
    dialog.tabs.setCurrentIndex(0)
    dialog.show()
    dialog.resize(dialog.width(), dialog.minimumSizeHint().height())
    save(dialog, "start-dialog.png")

    # 1b. The same dialog after a join met a changed TLS certificate.
    dialog.tabs.setCurrentIndex(1)
    dialog.address_edit.setText(f"qtchat://{SHOWN_ADDRESS}:{DEFAULT_PORT}?tls=1")
    dialog.show_certificate_warning(
        f"{SHOWN_ADDRESS}:{DEFAULT_PORT}",
        "5C:0B:9E:41:D2:7A:13:F8:6E:22:A9:C4:37:B0:58:1D:E6:93:0F:7C:44:AB:2D:91:6A:F0:3E:85:"
        "C7:19:B2:60",
        "A1:77:3C:E8:05:9B:D4:62:1F:C0:8A:35:E9:4D:76:B3:08:5E:F1:2A:9C:63:D7:40:BB:16:8F:E2:"
        "59:C4:03:7D")
    save(dialog, "certificate-changed.png")
    dialog.close()

    # 2. Alice hosts; three members join and talk; Bob has a window of his own.
    alice = AppController(args())
    port = DEFAULT_PORT if free_port_after(DEFAULT_PORT - 1) == DEFAULT_PORT else 0
    alice.host(HostChoice(name="Alice", room_name="Design team", port=port, password=None,
                          tls=False))
    await until(lambda: alice.window is not None, "Alice's window")
    port = alice.host_runtime.server.port
    alice_window = alice.window

    settings().remove("sessions")  # Bob is on another computer: nothing of Alice's is his
    bob = AppController(args())
    bob.join(JoinChoice(name="Bob", target=parse_join_target(f"127.0.0.1:{port}"),
                        password=None))
    await until(lambda: bob.window is not None, "Bob's window")
    bob_window = bob.window

    members: dict[str, ChatClient] = {}
    for name in ("Carol", "Dave"):
        client = ChatClient(alice)
        client.open(Endpoint("127.0.0.1", port, False, None), name)
        members[name] = client
        await until(lambda c=client: c.state == "connected", f"{name} registered")

    async def say(who: str, text: str, *, to: str | None = None) -> None:
        shown = text.removeprefix("/me ")
        if who == "Alice":
            alice_window.submit(f"/w {to} {text}" if to else text)
        elif who == "Bob":
            bob_window.submit(f"/w {to} {text}" if to else text)
        elif to:
            members[who].send_whisper(to, text)
        else:
            members[who].send_broadcast(text)
        watcher = bob_window if to == "Bob" or who == "Bob" else alice_window
        await until(lambda: texts(watcher).count(shown) >= 1 and
                    not alice_window.client.pending_ids and
                    not bob_window.client.pending_ids, f"{text!r} delivered")

    await say("Bob", "Morning! The new onboarding mockups are up.")
    await say("Carol", "/me grabs a coffee and opens them")
    await say("Dave", "Spec and comments: https://wiki.example.com/design/onboarding-v3")
    await say("Carol", "Step 2 still says <b>Continue</b> in the copy — should that be "
                       "\"Next\"?")
    await say("Alice", "Good catch. Let's settle the wording in today's review.")
    await say("Dave", "Can you look at my contrast fixes before the review?", to="Alice")
    await say("Bob", "I can take the copy changes after lunch.")
    await say("Alice", "are you free for a quick call at 3 about the review?", to="Bob")
    await say("Bob", "Sure — 3 works. I'll send a link.", to="Alice")
    await say("Alice", "Thanks! I'll bring the notes.", to="Bob")

    lobby = alice_window.conversation(ConversationKind.ROOM, "lobby", create=False)
    alice_window.show_conversation(lobby)
    alice_window.input.setText("Thanks Dave, looking now")
    alice_window.resize(1000, 620)
    alice_window.show()
    save(alice_window, "busy-room.png")
    alice_window.resize(alice_window.minimumSize())  # the messages keep most of the width
    save(alice_window, "narrow-window.png")
    alice_window.resize(1000, 620)

    private = bob_window.conversation(ConversationKind.PRIVATE, "Alice", create=False)
    bob_window.show_conversation(private)
    bob_window.resize(900, 560)
    bob_window.show()
    save(bob_window, "whisper-tab.png")

    # 2b. The busy room in the dark theme (Settings ▸ Theme ▸ Dark).
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from qtchat.gui.theme import apply_theme

    light = QPalette(QApplication.instance().palette())
    apply_theme("dark")
    alice_window.show_conversation(lobby)
    save(alice_window, "dark-theme.png")
    QApplication.instance().setPalette(light)

    # 2c. Moderation: the room's topic above the messages and a member's menu as the
    # owner sees it (the host mode's owner). The menu is a popup of its own: it is drawn
    # onto the window's picture where it opened.
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QPainter

    alice_window.client.set_topic("lobby", "Onboarding review at 3 pm — settle step 2's "
                                           "wording first")
    await until(lambda: bool(bob_window.client.topic()), "the topic")
    await until(lambda: alice_window.moderation.topic_bar.isVisible(), "the topic bar")
    view = alice_window.members_view
    members_model = view.model()
    row = members_model.names().index("Carol")
    rect = view.visualRect(members_model.index(row))
    menu = alice_window.moderation.menu_for("Carol")
    at = view.viewport().mapTo(alice_window, rect.center() + QPoint(-60, 8))
    menu.popup(alice_window.mapToGlobal(at))
    await until(menu.isVisible, "the member menu")
    picture = alice_window.grab()
    painter = QPainter(picture)
    painter.drawPixmap(at, menu.grab())
    painter.end()
    path = OUT / "moderation-menu.png"
    if not picture.save(str(path)):
        raise RuntimeError(f"could not save {path}")
    print(f"make_screenshots: {path.relative_to(ROOT)}")
    menu.close()

    # 3. Two rooms announced on this computer, found by the start dialog's browser.
    announcers = [RoomAnnouncer(conflict_check=0), RoomAnnouncer(conflict_check=0)]
    browser = RoomBrowser(interfaces=["127.0.0.1"])
    try:
        await announcers[0].start("Design team", port, interfaces=["127.0.0.1"])
        await announcers[1].start("Friday board games", port + 1, interfaces=["127.0.0.1"])
        await browser.start()
        join_dialog = StartDialog(browser.model)
        join_dialog.name_edit.setText("Erin")
        join_dialog.tabs.setCurrentIndex(1)
        join_dialog.address_edit.clear()
        join_dialog.show()
        ours = {announcer.name for announcer in announcers}
        await until(lambda: ours <= {room.name for room in browser.rooms()},
                    "both rooms discovered", timeout=20)
        for room in browser.rooms():  # rooms other programs on this computer announce
            if room.name not in ours:
                browser.model.remove_room(room.key)
        join_dialog.rooms_view.setCurrentIndex(browser.model.index(0))
        join_dialog._pick_discovered(browser.model.index(0))
        join_dialog.resize(join_dialog.width(), join_dialog.minimumSizeHint().height())
        save(join_dialog, "join-discovered.png")
        join_dialog.close()
    finally:
        await browser.stop()
        for announcer in announcers:
            await announcer.stop()

    for window in (bob_window, alice_window):
        window.closedByUser.disconnect()
        window._force_close = True
        window.close()
    for client in members.values():
        client.close()
    alice.host_runtime.server.wait_stopped()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="qtchat-screenshots-") as tmp_name, \
            display() as where:
        tmp = Path(tmp_name)
        os.environ["XDG_DATA_HOME"] = str(tmp / "data")
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
        import qasync
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
            QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp / "config"))
        print(f"make_screenshots: drawing on {where}")
        app = QApplication.instance() or QApplication(sys.argv[:1])
        app.setApplicationName("qtchat")
        app.setOrganizationName("qtchat")
        app.setQuitOnLastWindowClosed(False)
        from qtchat.resources import install_app_icon

        install_app_icon(app)
        asyncio.run(shoot(tmp), loop_factory=qasync.QEventLoop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
