"""Shared test set-up: an offscreen Qt platform before Qt loads, and one qasync loop."""

import os

# Without a display Qt aborts the whole run (exit 134); set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture(scope="session", autouse=True)
def _collect_on_main_thread(qapp):
    """Cycles are collected on the Qt main thread only, as in the app and ``qtchat serve``
    (``qtchat.collector``): a test's threads (``run_threads``' blocking clients, upload
    receivers) would otherwise free an earlier test's garbage sockets, and the main
    loop would then call into a freed notifier."""
    from qtchat.collector import collect_on_main_thread

    return collect_on_main_thread(qapp)


@pytest.fixture(autouse=True)
def _collect_after_each_test(_collect_on_main_thread):
    """A test that never runs the Qt loop still has its cycles collected (the timer only
    ticks in the loop): what automatic collection would have done by now, done here."""
    from qtchat.collector import collect_due

    yield
    collect_due()


@pytest.fixture
def make_server(qtbot, tmp_path):
    """Start in-process ChatServers on 127.0.0.1, port 0; stopped after the test.

    ``make_server(**config)`` overrides ServerConfig fields. The rate limit is off
    unless a test sets it (tests send in bursts); ``data_dir`` is the test's own.
    """
    from qtchat.server.chat_server import ChatServer, ServerConfig

    servers = []

    def make(**overrides):
        settings = {"host": "127.0.0.1", "port": 0, "server_name": "test",
                    "data_dir": tmp_path / "data", "rate_limit": 0.0}
        settings.update(overrides)
        server = ChatServer(ServerConfig(**settings))
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.is_listening:
            server.stop()
        server.close_store()


@pytest.fixture
def server(make_server):
    """One server with the defaults of make_server."""
    return make_server()


@pytest.fixture
def make_client(qtbot):
    """ChatClients closed after the test; ``make_client(**options)`` (a short connect
    timeout unless given: every host here is on 127.0.0.1)."""
    from qtchat.client.chat_client import ChatClient

    clients = []

    def make(**options):
        options.setdefault("connect_timeout", 3.0)
        client = ChatClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
        client.deleteLater()


@pytest.fixture
def isolated_settings(tmp_path, monkeypatch):
    """QSettings and the default data dir point into the test's temp dir."""
    from gui_harness import isolate_settings

    return isolate_settings(tmp_path, monkeypatch)


@pytest.fixture
def apps(qtbot, tmp_path, isolated_settings):
    """``gui_harness.Apps``: app controllers (people), taken down after the test."""
    from gui_harness import Apps

    made = Apps(qtbot, tmp_path)
    yield made
    made.close()


@pytest.fixture
def pair(apps):
    """Alice hosts "Test room"; Bob joins it. Returns (alice's window, bob's window)."""
    return apps.pair()
