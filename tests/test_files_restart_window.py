"""The window remembers unfinished transfers across an app restart (issue 15), with real
widgets, an in-process server and real sockets: Alice's window starts uploading a file and
is closed mid-way; a NEW window (new client, new journal) on the same data dir and with the
same identity lists the upload in the transfers panel as "Stopped", goes on by itself from
what the host held, and the file posted is the source byte for byte (SHA-256). A download
cut the same way comes back into its ``.part``; cancelling a restored one forgets it and
removes the ``.part``."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import pytest
from helpers import chat_window
from test_commands import lobby
from test_files_window import file_rows

from qtchat.address import parse_join_target
from qtchat.client.chat_client import ChatClient, Endpoint
from qtchat.client.files import JOURNAL_NAME, TransferJournal
from qtchat.gui.app import APP_FEATURES
from qtchat.gui.files_glue import STOPPED_SENTENCE
from qtchat.gui.main_window import ChatWindow
from qtchat.gui.models import file_of
from qtchat.gui.start_dialog import JoinChoice
from qtchat.gui.transfers import Column, State

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
WAIT_MS = 20_000
MiB = 1 << 20
SIZE = 24 * MiB
CUT_AT = 3 * MiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_app(qtbot, make_client, port: int, name: str, data_dir: Path,
             identity: str | None = None) -> ChatWindow:
    """What the app does on a start: a client with the app's features and this person's
    identity, one TransferJournal in the app's data dir attached to it, the window once
    registered."""
    client: ChatClient = make_client(features=APP_FEATURES)
    client.identity = identity
    TransferJournal(data_dir, client).attach(client)
    return chat_window(qtbot, client, port, name, timeout=WAIT_MS)


def joined(qtbot, make_client, port: int, name: str) -> ChatClient:
    client = make_client(features=("files",))
    with qtbot.waitSignal(client.registered, timeout=WAIT_MS):
        client.open(Endpoint("127.0.0.1", port), name)
    return client


def close_when(window: ChatWindow, at: int) -> list[int]:
    """Close the window (the person quits the app) once ``at`` bytes have moved."""
    cut: list[int] = []

    def check(_key: str, done: int, _total: int) -> None:
        if not cut and done >= at:
            cut.append(done)
            window.close()

    window.client.transferProgress.connect(check)
    return cut


def panel_row(window: ChatWindow, key: str) -> dict[Column, str]:
    model = window.files.model
    row = next(r for r in range(model.rowCount()) if model.key_at(r) == key)
    return {column: model.index(row, column).data() for column in Column}


def stored(data_dir: Path) -> list[dict]:
    return json.loads((data_dir / JOURNAL_NAME).read_text())["transfers"]


def test_an_upload_cut_by_closing_the_window_comes_back_and_finishes(
        qtbot, make_server, make_client, isolated_settings, tmp_path):
    server = make_server()
    data_dir = tmp_path / "app"
    identity = secrets.token_urlsafe(24)
    data = os.urandom(SIZE)
    source = tmp_path / "film.bin"
    source.write_bytes(data)

    alice = open_app(qtbot, make_client, server.port, "Alice", data_dir, identity)
    cut = close_when(alice, CUT_AT)
    with qtbot.waitSignal(alice.client.transferFailed, timeout=WAIT_MS):
        [key] = alice.files.send_paths([str(source)])
    assert cut and not alice.isVisible()
    [entry] = stored(data_dir)
    assert (entry["kind"], entry["id"]) == ("upload", key)

    # The app starts again: a new client, journal and window; the same data dir, identity.
    bob = joined(qtbot, make_client, server.port, "Bob")
    again = open_app(qtbot, make_client, server.port, "Alice", data_dir, identity)
    shown = panel_row(again, key)
    assert shown[Column.NAME] == "film.bin" and shown[Column.DIRECTION] == "Upload"
    assert shown[Column.STATE].startswith("Stopped")
    again.files.panel.select(key)
    assert again.files.panel.retry_button.isEnabled()
    assert again.files.panel.cancel_button.isEnabled()
    conv = lobby(again)

    accepted, moved, seen = [], [], []
    again.client.fileAccepted.connect(accepted.append)
    again.client.transferProgress.connect(lambda _k, done, _t: moved.append(done))
    bob.messageReceived.connect(seen.append)
    with qtbot.waitSignal(again.client.transferProgress, timeout=WAIT_MS):
        pass  # resuming is the window's own doing
    [row] = file_rows(conv)  # Alice's own file, pending, as before the restart
    entry = conv.model.entry(row)
    assert entry.seq is None and entry.local_id == key
    with qtbot.waitSignals([again.client.fileSent, bob.messageReceived], timeout=30_000):
        pass
    [offer] = accepted
    assert offer.id == key and offer.offset >= CUT_AT - 2 * MiB  # from what the host held
    assert min(moved) > offer.offset - 1
    assert again.files.model.transfer(key).state is State.DONE
    assert panel_row(again, key)[Column.STATE] == "Done"
    [message] = seen
    assert message.file["name"] == "film.bin" and message.file["size"] == SIZE
    assert stored(data_dir) == []
    [row] = file_rows(conv)  # the pending row became the posted message: one row
    assert conv.model.entry(row).seq is not None
    assert file_of(conv.model.entry(row))["size"] == SIZE

    saved = tmp_path / "bob" / "film.bin"
    saved.parent.mkdir()
    with qtbot.waitSignal(bob.fileSaved, timeout=WAIT_MS):
        bob.download(message.file["file"], saved)
    assert sha(saved.read_bytes()) == sha(data)
    again.files.shut_down()


def posted(qtbot, make_client, port: int, data: bytes, tmp_path: Path) -> tuple[str, ChatClient]:
    """Carol posts ``data`` in the lobby; the host's file id."""
    carol = joined(qtbot, make_client, port, "Carol")
    source = tmp_path / "carol" / "notes.bin"
    source.parent.mkdir()
    source.write_bytes(data)
    with qtbot.waitSignal(carol.fileSent, timeout=WAIT_MS) as sent:
        carol.send_file(source)
    return sent.args[1], carol


def download_cut_by_closing(qtbot, make_server, make_client, tmp_path):
    """Carol posts a file; Dave's window saves it and is closed mid-way (CUT_AT)."""
    server = make_server()
    data_dir = tmp_path / "app"
    data = os.urandom(SIZE)
    file_id, _carol = posted(qtbot, make_client, server.port, data, tmp_path)
    destination = tmp_path / "saved" / "notes.bin"
    destination.parent.mkdir()
    part = destination.with_name("notes.bin.part")

    dave = open_app(qtbot, make_client, server.port, "Dave", data_dir)
    dave.files.ask_save_path = lambda _suggested: str(destination)
    cut = close_when(dave, CUT_AT)
    with qtbot.waitSignal(dave.client.transferFailed, timeout=WAIT_MS):
        key = dave.files.save({"file": file_id, "name": "notes.bin", "size": SIZE})
    assert cut
    return server, data_dir, data, file_id, destination, part, key


def test_a_download_cut_by_closing_the_window_goes_on_into_its_part_file(
        qtbot, make_server, make_client, isolated_settings, tmp_path):
    server, data_dir, data, file_id, destination, part, key = download_cut_by_closing(
        qtbot, make_server, make_client, tmp_path)
    assert part.exists() and 0 < part.stat().st_size < SIZE
    [entry] = stored(data_dir)
    assert (entry["kind"], entry["id"], entry["file"]) == ("download", key, file_id)

    again = open_app(qtbot, make_client, server.port, "Dave", data_dir)
    shown = panel_row(again, key)
    assert (shown[Column.NAME], shown[Column.DIRECTION]) == ("notes.bin", "Download")
    assert shown[Column.STATE].startswith("Stopped")
    moved = []
    again.client.transferProgress.connect(lambda _k, done, _t: moved.append(done))
    with qtbot.waitSignal(again.client.fileSaved, timeout=30_000):
        pass
    assert min(moved) > CUT_AT - 2 * MiB  # from the .part, not from 0
    assert sha(destination.read_bytes()) == sha(data) and not part.exists()
    assert again.files.model.transfer(key).state is State.DONE
    assert stored(data_dir) == []
    again.files.shut_down()


def test_cancelling_a_restored_download_forgets_it_and_removes_its_part(
        qtbot, make_server, make_client, isolated_settings, tmp_path):
    server, data_dir, _data, _file_id, destination, part, key = download_cut_by_closing(
        qtbot, make_server, make_client, tmp_path)
    assert part.exists()

    # The host is away when the app starts again: the transfer waits, stopped.
    port = server.port
    server.stop()
    server.close_store()
    client: ChatClient = make_client(features=APP_FEATURES)
    TransferJournal(data_dir, client).attach(client)
    client.endpoint = Endpoint("127.0.0.1", port)  # where the app was asked to connect
    window = ChatWindow(client)
    qtbot.addWidget(window)
    assert panel_row(window, key)[Column.STATE].startswith("Stopped")
    window.files.panel.select(key)
    window.files.panel.cancel_button.click()
    assert window.files.model.transfer(key).state is State.CANCELLED
    assert not part.exists() and not destination.exists()
    assert stored(data_dir) == []
    window.files.shut_down()


def test_the_app_remembers_an_upload_in_its_data_dir_and_the_next_run_finishes_it(
        qtbot, apps, make_server, make_client, tmp_path):
    """The same through ``AppController``: the journal is the app's own (its data dir,
    its identity for the host), the second run is a new controller."""
    server = make_server()
    data = os.urandom(SIZE)
    source = tmp_path / "film.bin"
    source.write_bytes(data)
    first = apps.join(server.port, "Alice")
    window = first.window
    window.closedByUser.disconnect()  # the app would quit the QApplication; the test goes on
    window.closedByUser.connect(lambda: None)  # (the harness disconnects it again)
    cut = close_when(window, CUT_AT)
    with qtbot.waitSignal(window.client.transferFailed, timeout=WAIT_MS):
        [key] = window.files.send_paths([str(source)])
    assert cut
    first.release_session()  # what the app does as its window closes
    [entry] = stored(first.client.journal.folder)
    assert entry["id"] == key

    bob = joined(qtbot, make_client, server.port, "Bob")
    seen = []
    bob.messageReceived.connect(seen.append)
    second = apps.controller()  # (apps.join, but listening from the client's start)
    second.join(JoinChoice(name="Alice", target=parse_join_target(f"127.0.0.1:{server.port}"),
                           password=None))
    assert second.client.journal is not None
    accepted = []
    second.client.fileAccepted.connect(accepted.append)
    qtbot.waitUntil(lambda: second.window is not None, timeout=WAIT_MS)
    # (the event loop ran until the window was up: it may be moving already)
    shown = panel_row(second.window, key)
    assert (shown[Column.NAME], shown[Column.DIRECTION]) == ("film.bin", "Upload")
    assert shown[Column.STATE] in ("Stopped: " + STOPPED_SENTENCE, "Uploading")
    with qtbot.waitSignals([second.client.fileSent, bob.messageReceived], timeout=30_000):
        pass
    [offer] = accepted
    assert offer.offset > 0  # the host knew it was the same person: went on, not anew
    assert panel_row(second.window, key)[Column.STATE] == "Done"
    [message] = seen
    saved = tmp_path / "bob" / "film.bin"
    saved.parent.mkdir()
    with qtbot.waitSignal(bob.fileSaved, timeout=WAIT_MS):
        bob.download(message.file["file"], saved)
    assert sha(saved.read_bytes()) == sha(data)
    assert stored(second.client.journal.folder) == []


def test_a_transfer_the_person_cancelled_is_not_offered_after_a_restart(
        qtbot, make_server, make_client, isolated_settings, tmp_path):
    server = make_server()
    data_dir = tmp_path / "app"
    identity = secrets.token_urlsafe(24)
    source = tmp_path / "film.bin"
    source.write_bytes(os.urandom(SIZE))
    alice = open_app(qtbot, make_client, server.port, "Alice", data_dir, identity)

    def cancel_midway(key: str, done: int, _total: int) -> None:
        if done >= CUT_AT and alice.files.model.transfer(key).state is State.UPLOADING:
            alice.files.panel.select(key)
            alice.files.panel.cancel_button.click()

    alice.client.transferProgress.connect(cancel_midway)
    with qtbot.waitSignal(alice.client.transferFailed, timeout=WAIT_MS) as failed:
        [key] = alice.files.send_paths([str(source)])
    assert failed.args[:2] == [key, "cancelled"]
    assert stored(data_dir) == []
    alice.close()

    again = open_app(qtbot, make_client, server.port, "Alice", data_dir, identity)
    assert again.files.model.rowCount() == 0
    again.files.shut_down()
