"""Files and pictures in the chat window (issue 15) with real widgets, a real server and
the clients' own transfer connections: a file dropped on Alice's window goes up with a
progress bar, its picture shows in Bob's window, Bob saves it; a decompression bomb
says "picture too large to show"; refusals are sentences; whispers carry files; a
pasted picture is sent; the transfers panel lists, cancels and retries."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from helpers import chat_window
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QPainter
from PySide6.QtWidgets import QApplication, QLabel
from test_commands import lobby, private
from test_picture import bomb, resident_bytes

from qtchat.client.chat_client import ChatClient
from qtchat.gui.app import APP_FEATURES
from qtchat.gui.conversation import Conversation
from qtchat.gui.main_window import ChatWindow
from qtchat.gui.models import ConversationKind, RowKind, SendState, file_of
from qtchat.gui.picture import TOO_LARGE
from qtchat.gui.transfers import Column, State

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
WAIT_MS = 20_000


def open_window(qtbot, make_client, port: int, name: str) -> ChatWindow:
    """A window as the app makes it: its client asks the host for the app's features."""
    client: ChatClient = make_client(features=APP_FEATURES)
    window = chat_window(qtbot, client, port, name, timeout=WAIT_MS)
    assert client.has_feature("files")
    return window


@pytest.fixture
def people(qtbot, server, make_client, isolated_settings):
    alice = open_window(qtbot, make_client, server.port, "Alice")
    bob = open_window(qtbot, make_client, server.port, "Bob")
    qtbot.waitUntil(lambda: "Bob" in lobby(alice).members.names(), timeout=WAIT_MS)
    yield alice, bob
    for window in (alice, bob):
        window.files.shut_down()


def picture_png(path: Path, width: int = 400, height: int = 300) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.fillRect(20, 20, width // 2, height // 2, QColor("steelblue"))
    painter.end()
    assert image.save(str(path), "PNG")
    return path.read_bytes()


def drop_files(window: ChatWindow, paths: list[Path]) -> None:
    """What a file manager's drop on the window delivers: file URLs in a QMimeData."""
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    point = QPointF(window.width() / 2, window.height() / 2)
    enter = QDragEnterEvent(point, Qt.DropAction.CopyAction, data,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(point, Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)
    assert drop.isAccepted()


def file_rows(conv: Conversation) -> list[int]:
    """The file rows on screen: a room's live messages reach its view on the next
    event-loop pass (one insertion per pass), so let that pass run first."""
    QApplication.processEvents()
    model = conv.model
    return [row for row in range(model.rowCount())
            if model.entry(row).kind == RowKind.MESSAGE and file_of(model.entry(row))]


def shown_lines(conv: Conversation, row: int) -> list[str]:
    """What the file box of ``row`` shows, as painted (after laying the view out)."""
    conv.view.scroll_to_row(row)
    conv.view.viewport().repaint()
    return conv.view.delegate().file_lines(conv.model.entry(row))


def last_file_row(conv: Conversation) -> int:
    rows = file_rows(conv)
    assert rows, "no file row"
    return rows[-1]


def click_action(qtbot, conv: Conversation, row: int, what: str) -> None:
    """Click the file row's link ``what`` ("save", "picture", …) as painted."""
    view = conv.view
    view.scroll_to_row(row)
    view.viewport().repaint()
    entry = conv.model.entry(row)
    top_left = view.row_rect(row).topLeft()
    for y in range(view.row_rect(row).height()):
        for x in range(0, view.viewport().width(), 3):
            if view.delegate().file_action_at(entry, QPoint(x, y)) == what:
                qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                                 pos=top_left + QPoint(x + 1, y + 1))
                return
    raise AssertionError(f"no {what!r} link on the row: {shown_lines(conv, row)}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_dropped_picture_goes_up_shows_in_the_other_window_and_is_saved(
        qtbot, people, tmp_path):
    alice, bob = people
    source = tmp_path / "garden.png"
    data = picture_png(source)
    progress = []
    alice.client.transferProgress.connect(lambda _key, done, total: progress.append(done))
    with qtbot.waitSignals([alice.client.fileSent, bob.client.messageReceived],
                           timeout=WAIT_MS):
        drop_files(alice, [source])
        # At once, before the host answers: Alice's own row, uploading, with Cancel.
        row = last_file_row(lobby(alice))
        entry = lobby(alice).model.entry(row)
        assert entry.state == SendState.SENDING and file_of(entry)["name"] == "garden.png"
        assert "Cancel" in shown_lines(lobby(alice), row)
    assert progress and progress[-1] == len(data)
    # Alice's row is the posted message now; the transfers panel says Done.
    entry = lobby(alice).model.entry(last_file_row(lobby(alice)))
    assert entry.seq is not None and entry.state == SendState.SENT
    panel = alice.files.model
    assert panel.index(0, Column.STATE).data() == "Done"
    assert panel.index(0, Column.NAME).data() == "garden.png"

    # Bob sees the name, size and type, and the picture inline (the offer's preview).
    conv = lobby(bob)
    row = last_file_row(conv)
    lines = shown_lines(conv, row)
    assert "garden.png" in lines and any("image/png" in line for line in lines)
    delegate = conv.view.delegate()
    qtbot.waitUntil(lambda: delegate.file_row(conv.model.entry(row)).picture is not None,
                    timeout=WAIT_MS)
    picture = delegate.file_row(conv.model.entry(row)).picture
    assert max(picture.width(), picture.height()) <= 320
    conv.view.viewport().repaint()  # the row grew by the picture: measured again
    assert conv.view.row_rect(row).height() > picture.height()

    # A click on the picture shows it whole, fetched from the host, in a viewer.
    click_action(qtbot, conv, row, "picture")
    qtbot.waitUntil(lambda: bool(bob.files._viewers), timeout=WAIT_MS)
    [label] = bob.files._viewers[-1].findChildren(QLabel)
    assert label.pixmap().size().toTuple() == (400, 300)

    # Save as…: the person chooses where; the bytes are the original's.
    saved = tmp_path / "bob's" / "garden copy.png"
    saved.parent.mkdir()
    asked = []
    bob.files.ask_save_path = lambda suggested: asked.append(suggested) or str(saved)
    with qtbot.waitSignal(bob.client.fileSaved, timeout=WAIT_MS):
        click_action(qtbot, conv, row, "save")
    assert Path(asked[0]).name == "garden.png"  # in the download folder, by its name
    assert sha(saved.read_bytes()) == sha(data)
    qtbot.waitUntil(lambda: any(line.startswith("Saved as") for line in
                                shown_lines(conv, row)), timeout=WAIT_MS)
    assert "Open" in shown_lines(conv, row)
    assert bob.files.opened == []  # never opened by itself


def test_a_decompression_bomb_shows_picture_too_large_to_show(qtbot, people, tmp_path):
    alice, bob = people
    source = tmp_path / "tiny.png"
    source.write_bytes(bomb())  # 30,000 x 30,000 declared, under 2 KB
    before = resident_bytes()
    with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS):
        drop_files(alice, [source])
    conv = lobby(bob)
    row = last_file_row(conv)
    assert "preview" not in file_of(conv.model.entry(row))  # Alice's app made none
    qtbot.waitUntil(lambda: TOO_LARGE in shown_lines(conv, row), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: TOO_LARGE in shown_lines(lobby(alice), last_file_row(
        lobby(alice))), timeout=WAIT_MS)
    grown = resident_bytes() - before
    assert grown < 100 * 1024 * 1024, f"memory grew by {grown / 2**20:.0f} MB"
    # The viewer says so too, instead of a picture.
    bob.files.act(conv, conv.model.entry(row), "picture")
    qtbot.waitUntil(lambda: bool(bob.files._viewers), timeout=WAIT_MS)
    texts = [label.text() for label in bob.files._viewers[-1].findChildren(QLabel)]
    assert TOO_LARGE in texts


def test_a_file_larger_than_the_room_allows_is_refused_in_a_sentence(
        qtbot, make_server, make_client, isolated_settings, tmp_path):
    server = make_server(max_file_size=1000)
    alice = open_window(qtbot, make_client, server.port, "Alice")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(5000))
    with qtbot.waitSignal(alice.client.transferFailed, timeout=WAIT_MS):
        drop_files(alice, [source])
    conv = lobby(alice)
    notices = [conv.model.entry(row).text for row in range(conv.model.rowCount())
               if conv.model.entry(row).kind == RowKind.NOTICE]
    assert any(text.startswith("big.bin was not sent: That file is larger than this "
                               "room allows") for text in notices), notices
    row = last_file_row(conv)
    assert conv.model.entry(row).state == SendState.FAILED
    lines = shown_lines(conv, row)
    assert "Retry" in lines and any("larger than this room allows" in line for line in lines)
    assert alice.files.model.index(0, Column.STATE).data().startswith("Failed: That file")
    alice.files.shut_down()


def test_a_file_in_a_private_tab_goes_as_a_whisper(qtbot, people, tmp_path):
    alice, bob = people
    alice.submit("/w Bob")
    conv = private(alice, "Bob")
    assert conv is not None and alice.current() is conv
    source = tmp_path / "notes.txt"
    source.write_text("for your eyes only\n")
    with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS) as got:
        alice.files.send_paths([str(source)])
    message = got.args[0]
    assert message.to == "Bob" and message.file["name"] == "notes.txt"
    theirs = private(bob, "Alice")
    assert theirs is not None
    entry = theirs.model.entry(last_file_row(theirs))
    assert entry.is_whisper and file_of(entry)["size"] == len("for your eyes only\n")
    assert not file_rows(lobby(bob))


def test_a_pasted_picture_is_sent_as_a_png(qtbot, people):
    alice, bob = people
    image = QImage(64, 48, QImage.Format.Format_RGB32)
    image.fill(QColor("orange"))
    QGuiApplication.clipboard().setImage(image)
    with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS) as got:
        alice.input.setFocus()
        alice.input.paste()
    info = got.args[0].file
    assert info["name"].startswith("Pasted picture") and info["name"].endswith(".png")
    assert info["mime"] == "image/png" and "preview" in info
    assert alice.input.text() == ""  # a picture, not text in the box
    conv = lobby(bob)
    row = last_file_row(conv)
    qtbot.waitUntil(lambda: conv.view.delegate().file_row(conv.model.entry(row)).picture
                    is not None, timeout=WAIT_MS)


def test_the_transfers_panel_cancels_and_retries_an_upload(qtbot, people, tmp_path):
    alice, bob = people
    assert alice.files.transfers_action in alice.view_menu.actions()
    alice.files.transfers_action.trigger()
    assert alice.files.dock.isVisible()
    source = tmp_path / "big.bin"
    data = os.urandom(64 << 20)
    source.write_bytes(data)
    key = None

    def cancel_midway(offer_id: str, done: int, _total: int) -> None:
        nonlocal key
        if key is None and done >= 8 << 20:
            key = offer_id
            alice.files.panel.select(offer_id)
            alice.files.panel.cancel_button.click()

    alice.client.transferProgress.connect(cancel_midway)
    with qtbot.waitSignal(alice.client.transferFailed, timeout=WAIT_MS):
        alice.files.send_paths([str(source)])
    alice.client.transferProgress.disconnect(cancel_midway)
    assert alice.files.model.transfer(key).state is State.CANCELLED
    conv = lobby(alice)
    row = last_file_row(conv)
    assert conv.model.entry(row).state == SendState.FAILED
    assert "Retry" in shown_lines(conv, row)
    moved = []
    alice.client.transferProgress.connect(lambda _k, done, _t: moved.append(done))
    with qtbot.waitSignals([alice.client.fileSent, bob.client.messageReceived],
                           timeout=WAIT_MS):
        alice.files.panel.retry_button.click()
    assert min(moved) > 4 << 20  # it went on from what the host held, not from 0
    assert alice.files.model.transfer(key).state is State.DONE
    assert file_of(lobby(bob).model.entry(last_file_row(lobby(bob))))["size"] == len(data)


def test_opening_a_saved_program_warns_first(qtbot, people, tmp_path):
    alice, bob = people
    source = tmp_path / "setup.sh"
    source.write_text("echo hi\n")
    with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS):
        alice.files.send_paths([str(source)])
    conv = lobby(bob)
    row = last_file_row(conv)
    bob.files.ask_save_path = lambda suggested: str(tmp_path / "saved.sh")
    with qtbot.waitSignal(bob.client.fileSaved, timeout=WAIT_MS):
        bob.files.act(conv, conv.model.entry(row), "save")
    warned = []
    bob.files.confirm_open = lambda path: warned.append(path) or False
    bob.files.act(conv, conv.model.entry(row), "open")
    assert warned == [tmp_path / "saved.sh"] and bob.files.opened == []


def test_a_private_conversation_kind_is_kept(qtbot, people):
    # The files glue gives every conversation it shows its file clicks, once.
    alice, _bob = people
    conv = alice.conversation(ConversationKind.PRIVATE, "Bob")
    alice.show_conversation(conv)
    assert conv.view.property("filesAttached") and conv.view.delegate().files is alice.files


def test_an_upload_cut_by_a_host_restart_goes_on_by_itself(
        qtbot, make_server, make_client, isolated_settings, tmp_path):
    server = make_server()
    port = server.port
    alice = open_window(qtbot, make_client, port, "Alice")
    source = tmp_path / "film.mkv"
    data = os.urandom(48 << 20)
    source.write_bytes(data)
    cut = []

    def restart_midway(_key: str, done: int, _total: int) -> None:
        if not cut and done >= 8 << 20:
            cut.append(done)
            server.stop()
            server.close_store()

    alice.client.transferProgress.connect(restart_midway)
    with qtbot.waitSignal(alice.client.transferFailed, timeout=WAIT_MS) as failed:
        [key] = alice.files.send_paths([str(source)])
    alice.client.transferProgress.disconnect(restart_midway)
    assert failed.args[1] == "network"
    conv = lobby(alice)
    row = last_file_row(conv)
    assert "Retry" in shown_lines(conv, row)
    # What the host had written when it stopped (its thread may still add a slice):
    # how far the client got is no measure, the socket buffers hold megabytes.
    held = sum(part.stat().st_size for part in (tmp_path / "data").rglob("*.part"))
    assert held > 0
    again = make_server(port=port)  # the same data folder: what arrived is kept
    moved = []
    alice.client.transferProgress.connect(lambda _k, done, _t: moved.append(done))
    with qtbot.waitSignal(alice.client.fileSent, timeout=30_000):
        pass  # reconnecting and resuming are the app's own doing
    assert min(moved) >= held  # from what the host held, not from 0
    assert alice.files.model.transfer(key).state is State.DONE
    entry = lobby(alice).model.entry(last_file_row(lobby(alice)))
    assert entry.seq is not None and file_of(entry)["size"] == len(data)
    assert again.is_listening
    alice.files.shut_down()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="30000" height="30000">'
       b'<image href="http://example.invalid/x.png" width="10" height="10"/></svg>')


def test_svg_is_never_drawn_inline_even_named_like_a_png(qtbot, people, tmp_path):
    alice, bob = people
    honest, disguised = tmp_path / "logo.svg", tmp_path / "logo.png"
    honest.write_bytes(SVG)
    disguised.write_bytes(SVG)
    conv = lobby(bob)
    with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS):
        alice.files.send_paths([str(honest)])
    row = last_file_row(conv)
    shown = conv.view.delegate().file_row(conv.model.entry(row))
    assert shown.picture is None and shown.picture_note == ""  # a file, not a picture
    with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS):
        alice.files.send_paths([str(disguised)])
    row = last_file_row(conv)
    assert "preview" not in file_of(conv.model.entry(row))
    qtbot.waitUntil(lambda: "not a picture this app shows" in shown_lines(conv, row),
                    timeout=WAIT_MS)


@pytest.mark.parametrize(("sent", "suggested"), [
    ("con.txt", "_con.txt"),
    ("what? <now>.txt", "what_ _now_.txt"),
    ("notes.txt. ", "notes.txt"),
])
def test_save_as_suggests_a_name_safe_on_any_system(qtbot, people, tmp_path, sent,
                                                    suggested):
    alice, bob = people
    source = tmp_path / "out" / sent
    source.parent.mkdir()
    source.write_text("x")
    with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS):
        alice.files.send_paths([str(source)])
    conv = lobby(bob)
    asked = []
    bob.files.ask_save_path = lambda path: asked.append(path) and None  # the person cancels
    bob.files.act(conv, conv.model.entry(last_file_row(conv)), "save")
    assert [Path(path).name for path in asked] == [suggested]


def test_pictures_without_previews_are_fetched_and_shown(qtbot, people, tmp_path):
    # An app that sends no previews: Bob's window fetches the small pictures to show
    # them (a few at a time; six tiny ones shown at once all arrive).
    alice, bob = people
    bob.resize(980, 1000)
    conv = lobby(bob)
    elsewhere = bob.conversation(ConversationKind.PRIVATE, "Alice")
    bob.show_conversation(elsewhere)  # the rows arrive unseen, then show all at once
    for number in range(6):
        source = tmp_path / f"dot{number}.png"
        picture_png(source, 24, 12)
        with qtbot.waitSignal(bob.client.messageReceived, timeout=WAIT_MS):
            alice.client.send_file(source, mime="image/png")  # no preview
    rows = file_rows(conv)
    assert len(rows) == 6
    bob.show_conversation(conv)
    conv.view.scroll_to_bottom()
    conv.view.viewport().repaint()
    assert {row for row, _rect in conv.view.visible_rows()} >= set(rows)  # all at once

    def pictures() -> list:
        conv.view.viewport().repaint()
        return [conv.view.delegate().file_row(conv.model.entry(row)).picture for row in rows]

    qtbot.waitUntil(lambda: all(picture is not None for picture in pictures()),
                    timeout=WAIT_MS)
    notices = [conv.model.entry(row).text for row in range(conv.model.rowCount())
               if conv.model.entry(row).kind == RowKind.NOTICE]
    assert not any("not saved" in text for text in notices)
