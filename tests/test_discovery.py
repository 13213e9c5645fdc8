"""Tests for qtchat.discovery: real zeroconf (multicast DNS) on 127.0.0.1.

Room names carry a random suffix, and assertions only look at this test's rooms,
so another run on the same machine announcing on loopback cannot disturb them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, Qt
from zeroconf import Zeroconf
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from qtchat.address import JoinTarget
from qtchat.discovery import (
    SERVICE_TYPE,
    DiscoveredRoom,
    DiscoveredRoomsModel,
    RoomAnnouncer,
    RoomBrowser,
    RoomNameInUse,
    RoomRole,
)
from qtchat.tlsutil import ensure_certificate, fingerprint_of_pem

pytest_plugins = ("_qasync_loop",)

LOOPBACK = ["127.0.0.1"]
WAIT_MS = 15_000  # announcing takes ~3 s (conflict check, probes, announcements)
START_TIMEOUT = 15.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def named(name: str) -> Callable[[DiscoveredRoom], bool]:
    return lambda room: room.name == name


@pytest.fixture
def browser(arun: Any) -> Iterator[RoomBrowser]:
    room_browser = RoomBrowser(interfaces=LOOPBACK)
    arun(room_browser.start())
    yield room_browser
    arun(room_browser.stop())


@pytest.fixture
def announcers(arun: Any) -> Iterator[Callable[..., RoomAnnouncer]]:
    """Makes RoomAnnouncers and stops every one of them after the test."""
    made: list[RoomAnnouncer] = []

    def make(**kwargs: Any) -> RoomAnnouncer:
        made.append(RoomAnnouncer(**kwargs))
        return made[-1]

    yield make
    arun(asyncio.gather(*(announcer.stop() for announcer in made)))


def rows_named(model: DiscoveredRoomsModel, *names: str) -> list[DiscoveredRoom]:
    return [room for room in model.rooms() if room.name in names]


# --------------------------------------------------------------------------- announce / browse


def test_room_found_then_withdrawn(
    arun: Any, qtbot: Any, browser: RoomBrowser, announcers: Callable[..., RoomAnnouncer]
) -> None:
    name = unique("Lobby")
    announcer = announcers()

    with qtbot.waitSignal(browser.roomFound, timeout=WAIT_MS, check_params_cb=named(name)) as found:
        announced = arun(announcer.start(name, 8800, interfaces=LOOPBACK), timeout=START_TIMEOUT)

    room: DiscoveredRoom = found.args[0]
    assert announced == announcer.name == name
    assert announcer.is_running
    assert (room.host, room.port, room.tls, room.fingerprint) == ("127.0.0.1", 8800, False, None)
    assert room.address == "127.0.0.1:8800"
    assert room.addresses == ("127.0.0.1",)
    assert room.key == f"{name}.{SERVICE_TYPE}".lower()
    assert room.join_target() == JoinTarget("127.0.0.1", 8800)
    assert rows_named(browser.model, name) == [room]
    assert room in browser.rooms()

    with qtbot.waitSignal(
        browser.roomRemoved, timeout=WAIT_MS, check_params_cb=lambda key: key == room.key
    ):
        arun(announcer.stop())

    assert not announcer.is_running
    assert announcer.name is None
    assert rows_named(browser.model, name) == []
    assert browser.model.row_of(room.key) == -1
    arun(announcer.stop())  # stopping twice is harmless


def test_two_rooms_at_once(
    arun: Any,
    qtbot: Any,
    qtmodeltester: Any,
    browser: RoomBrowser,
    announcers: Callable[..., RoomAnnouncer],
) -> None:
    first, second = unique("Alpha"), unique("Beta")
    announcer_1, announcer_2 = announcers(), announcers()

    with qtbot.waitSignals(
        [browser.roomFound, browser.roomFound],
        timeout=WAIT_MS,
        check_params_cbs=[named(first), named(second)],
        order="none",
    ):
        arun(
            asyncio.gather(
                announcer_1.start(first, 8801, interfaces=LOOPBACK),
                announcer_2.start(second, 8802, interfaces=LOOPBACK),
            ),
            timeout=START_TIMEOUT,
        )

    rooms = rows_named(browser.model, first, second)
    assert [(room.name, room.port) for room in rooms] == [(first, 8801), (second, 8802)]
    qtmodeltester.check(browser.model)

    key_1 = rooms[0].key
    with qtbot.waitSignal(
        browser.roomRemoved, timeout=WAIT_MS, check_params_cb=lambda key: key == key_1
    ):
        arun(announcer_1.stop())
    assert [room.name for room in rows_named(browser.model, first, second)] == [second]
    qtmodeltester.check(browser.model)


def test_txt_fields_round_trip(
    arun: Any,
    qtbot: Any,
    tmp_path: Path,
    browser: RoomBrowser,
    announcers: Callable[..., RoomAnnouncer],
) -> None:
    cert_path, _ = ensure_certificate(tmp_path, "TLS room")
    fingerprint = fingerprint_of_pem(cert_path.read_bytes())
    # Unicode, spaces and a dot survive as the instance name.
    name = f"Café ☕ v1.0 {uuid.uuid4().hex[:6]}"
    announcer = announcers()

    with qtbot.waitSignal(browser.roomFound, timeout=WAIT_MS, check_params_cb=named(name)) as found:
        arun(
            announcer.start(name, 8443, True, fingerprint.lower(), LOOPBACK),
            timeout=START_TIMEOUT,
        )

    room: DiscoveredRoom = found.args[0]
    assert (room.name, room.port, room.tls, room.fingerprint) == (name, 8443, True, fingerprint)
    assert room.join_target() == JoinTarget("127.0.0.1", 8443, fingerprint, True)

    # What a third-party DNS-SD client sees: exactly the protocol's TXT keys.
    async def resolve() -> dict[str, str | None]:
        aiozc = AsyncZeroconf(zc=Zeroconf(interfaces=LOOPBACK, use_asyncio=True))
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}")
            assert await info.async_request(aiozc.zeroconf, 3000)
            assert info.port == 8443
            assert info.parsed_addresses() == ["127.0.0.1"]
            return info.decoded_properties
        finally:
            await aiozc.async_close()

    assert arun(resolve()) == {"v": "1", "tls": "1", "fp": fingerprint}


def test_a_password_room_says_so_and_never_its_password(
    arun: Any, qtbot: Any, browser: RoomBrowser, announcers: Callable[..., RoomAnnouncer]
) -> None:
    name = unique("Locked")
    with qtbot.waitSignal(browser.roomFound, timeout=WAIT_MS, check_params_cb=named(name)) as found:
        arun(announcers().start(name, 8801, interfaces=LOOPBACK, password=True),
             timeout=START_TIMEOUT)
    room: DiscoveredRoom = found.args[0]
    assert room.password is True
    row = browser.model.index(browser.model.row_of(room.key))
    assert row.data() == f"{name} — 127.0.0.1:8801 · password"
    assert "needs a password" in row.data(Qt.ItemDataRole.ToolTipRole)


@pytest.mark.slow
def test_name_conflict_renames_or_refuses(
    arun: Any, qtbot: Any, browser: RoomBrowser, announcers: Callable[..., RoomAnnouncer]
) -> None:
    name = unique("Same")
    with qtbot.waitSignal(browser.roomFound, timeout=WAIT_MS, check_params_cb=named(name)):
        arun(announcers().start(name, 9001, interfaces=LOOPBACK), timeout=START_TIMEOUT)

    # DNS names compare case-insensitively, so "SAME-…" collides with "Same-…".
    with pytest.raises(RoomNameInUse, match="already called"):
        arun(
            announcers().start(name.upper(), 9002, interfaces=LOOPBACK, allow_rename=False),
            timeout=START_TIMEOUT,
        )

    renamed_to = f"{name}-2"
    second = announcers()
    with qtbot.waitSignal(
        browser.roomFound, timeout=WAIT_MS, check_params_cb=named(renamed_to)
    ) as found:
        assert arun(second.start(name, 9002, interfaces=LOOPBACK), timeout=START_TIMEOUT) == (
            renamed_to
        )
    assert second.name == renamed_to
    assert found.args[0].port == 9002
    rooms = rows_named(browser.model, name, renamed_to)
    assert [(room.name, room.port) for room in rooms] == [(name, 9001), (renamed_to, 9002)]


def test_other_txt_versions_are_ignored(
    arun: Any, qtbot: Any, browser: RoomBrowser
) -> None:
    """A DNS-SD record of our type but another TXT version never becomes a room."""
    future_name, current_name = unique("Future"), unique("Current")
    seen: list[str] = []
    browser.roomFound.connect(lambda room: seen.append(room.name))

    async def register(aiozc: AsyncZeroconf, name: str, version: str, port: int) -> None:
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=port,
            properties={"v": version, "tls": "0"},
            parsed_addresses=LOOPBACK,
            server=f"{name.lower()}.local.",
        )
        await (await aiozc.async_register_service(info))

    async def make_zeroconf() -> AsyncZeroconf:
        return AsyncZeroconf(zc=Zeroconf(interfaces=LOOPBACK, use_asyncio=True))

    aiozc = arun(make_zeroconf())
    try:
        arun(register(aiozc, future_name, "2", 7001))
        # The v1 room announced after it is the "pong": once it is found, the
        # browser has also handled the earlier v2 announcement.
        with qtbot.waitSignal(
            browser.roomFound, timeout=WAIT_MS, check_params_cb=named(current_name)
        ):
            arun(register(aiozc, current_name, "1", 7002))
    finally:
        arun(aiozc.async_close())
    assert future_name not in seen
    assert current_name in seen


@pytest.mark.slow
def test_room_that_vanishes_without_goodbye_is_dropped(arun: Any, qtbot: Any) -> None:
    """A host that crashes sends no goodbye; the liveness check notices the silence."""
    name = unique("Crashed")
    room_browser = RoomBrowser(interfaces=LOOPBACK, resolve_timeout=1.5, liveness_interval=0.5)
    arun(room_browser.start())

    async def announce() -> tuple[AsyncZeroconf, AsyncServiceInfo]:
        aiozc = AsyncZeroconf(zc=Zeroconf(interfaces=LOOPBACK, use_asyncio=True))
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=9150,
            properties={"v": "1", "tls": "0"},
            parsed_addresses=LOOPBACK,
            server=f"{name.lower()}.local.",
            host_ttl=2,  # SRV and A records; a real announcer uses 120 s
        )
        await (await aiozc.async_register_service(info))
        return aiozc, info

    async def crash(aiozc: AsyncZeroconf, info: AsyncServiceInfo) -> None:
        # Forget the service first, so closing sends no goodbye packets.
        aiozc.zeroconf.registry.async_remove(info)
        await aiozc.async_close()

    try:
        with qtbot.waitSignal(room_browser.roomFound, timeout=WAIT_MS, check_params_cb=named(name)):
            aiozc, info = arun(announce())
        key = f"{name}.{SERVICE_TYPE}".lower()
        # Still listed while it answers, over liveness rounds that outlast the 2 s TTL.
        # (assertNotEmitted(wait=…) narrowed to this room: other processes on this
        # machine may announce and withdraw rooms on loopback meanwhile.)
        removed: list[str] = []
        room_browser.roomRemoved.connect(removed.append)
        qtbot.wait(4000)
        assert key not in removed
        assert room_browser.model.row_of(key) >= 0
        with qtbot.waitSignal(
            room_browser.roomRemoved, timeout=WAIT_MS, check_params_cb=lambda k: k == key
        ):
            arun(crash(aiozc, info))
        assert room_browser.model.row_of(key) == -1
    finally:
        arun(room_browser.stop())


def test_interfaces_must_be_addresses(arun: Any) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        RoomBrowser(interfaces=["eth0"])
    with pytest.raises(ValueError, match="not an IP address"):
        arun(RoomAnnouncer().start("Room", 8800, interfaces=["eth0"]))
    assert RoomBrowser(interfaces=[" 127.0.0.1 "]) is not None


def test_browser_stop_reports_rooms_removed(
    arun: Any, qtbot: Any, announcers: Callable[..., RoomAnnouncer]
) -> None:
    name = unique("Leaving")
    room_browser = RoomBrowser(interfaces=LOOPBACK)
    arun(room_browser.start())
    assert room_browser.is_running
    with pytest.raises(RuntimeError):
        arun(room_browser.start())
    try:
        with qtbot.waitSignal(room_browser.roomFound, timeout=WAIT_MS, check_params_cb=named(name)):
            arun(announcers().start(name, 9100, interfaces=LOOPBACK), timeout=START_TIMEOUT)
    finally:
        with qtbot.waitSignal(room_browser.roomRemoved, timeout=1000):
            arun(room_browser.stop())
    assert not room_browser.is_running
    assert room_browser.rooms() == []
    assert room_browser.model.rowCount() == 0
    arun(room_browser.stop())  # twice is harmless


def test_stop_during_start_cancels_it(arun: Any) -> None:
    announcer = RoomAnnouncer()

    async def start_then_stop() -> None:
        start = asyncio.ensure_future(announcer.start(unique("Brief"), 9200, interfaces=LOOPBACK))
        await asyncio.sleep(0.2)  # inside the conflict check
        await announcer.stop()
        assert start.cancelled()

    arun(start_then_stop())
    assert not announcer.is_running


def test_works_on_a_plain_asyncio_loop() -> None:
    """No Qt event loop running: the browser's signals still arrive (direct connections)."""
    name = unique("Plain")

    async def scenario() -> tuple[DiscoveredRoom, str]:
        found: asyncio.Future[DiscoveredRoom] = asyncio.get_running_loop().create_future()
        removed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_found(room: DiscoveredRoom) -> None:
            if room.name == name and not found.done():
                found.set_result(room)

        def on_removed(key: str) -> None:
            if not removed.done() and key == f"{name}.{SERVICE_TYPE}".lower():
                removed.set_result(key)

        room_browser = RoomBrowser(interfaces=LOOPBACK)
        room_browser.roomFound.connect(on_found)
        room_browser.roomRemoved.connect(on_removed)
        announcer = RoomAnnouncer(conflict_check=0.5)
        await room_browser.start()
        try:
            await announcer.start(name, 9300, interfaces=LOOPBACK)
            room = await asyncio.wait_for(found, 10)
            await announcer.stop()
            key = await asyncio.wait_for(removed, 10)
        finally:
            await announcer.stop()
            await room_browser.stop()
        return room, key

    room, key = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert (room.name, room.port, room.host) == (name, 9300, "127.0.0.1")
    assert key == room.key


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Room", 8800, True, None), "fingerprint"),
        (("Room", 8800, False, ":".join(["AB"] * 32)), "fingerprint"),
        (("Room", 8800, True, "AB:CD"), "fingerprint"),
        (("Room", 0), "Port"),
        (("Room", 65536), "Port"),
        (("   ", 8800), "needs a name"),
        (("Bad\nname", 8800), "control characters"),
    ],
)
def test_announcer_rejects_bad_arguments(arun: Any, args: tuple, message: str) -> None:
    announcer = RoomAnnouncer()
    with pytest.raises(ValueError, match=message):
        arun(announcer.start(*args, interfaces=LOOPBACK))
    assert not announcer.is_running


def test_long_names_are_cut_to_a_dns_label(
    arun: Any, qtbot: Any, browser: RoomBrowser, announcers: Callable[..., RoomAnnouncer]
) -> None:
    name = uuid.uuid4().hex[:6] + "é" * 40  # 86 UTF-8 bytes; a label holds 63
    announcer = announcers(conflict_check=0.5)
    announced = arun(announcer.start(name, 9400, interfaces=LOOPBACK), timeout=START_TIMEOUT)
    # Cut on a character boundary, leaving room for a "-NN" suffix should it be renamed.
    assert len(announced.encode("utf-8")) == 60
    assert announced == name[:33]


# --------------------------------------------------------------------------- model


def room(name: str, port: int = 8800, **changes: Any) -> DiscoveredRoom:
    fields: dict[str, Any] = {
        "name": name,
        "host": "192.168.1.20",
        "port": port,
        "tls": False,
        "fingerprint": None,
        "addresses": ("192.168.1.20",),
        "service_name": f"{name}.{SERVICE_TYPE}",
    }
    fields.update(changes)
    return DiscoveredRoom(**fields)


def test_model_rows_roles_and_updates(qtbot: Any, qtmodeltester: Any, qapp: Any) -> None:
    model = DiscoveredRoomsModel(qapp)
    try:
        qtmodeltester.check(model)
        fingerprint = ":".join(["AB"] * 32)
        with qtbot.waitSignal(model.rowsInserted):
            model.upsert_room(room("beta"))
        model.upsert_room(room("Alpha", tls=True, fingerprint=fingerprint))
        model.upsert_room(room("gamma"))
        assert [model.data(model.index(row), RoomRole.Name) for row in range(3)] == [
            "Alpha", "beta", "gamma"]
        # What the Join list shows: name, address, and whether TLS is on.
        assert model.data(model.index(0)) == "Alpha — 192.168.1.20:8800 · TLS"
        assert model.data(model.index(1)) == "beta — 192.168.1.20:8800"
        model.upsert_room(room("delta", password=True))
        assert model.data(model.index(2)) == "delta — 192.168.1.20:8800 · password"
        model.remove_room(f"delta.{SERVICE_TYPE}")
        assert model.rowCount(model.index(0)) == 0  # a list: no children

        index = model.index(0)
        assert model.data(index, RoomRole.Name) == "Alpha"
        assert model.data(index, RoomRole.Host) == "192.168.1.20"
        assert model.data(index, RoomRole.Port) == 8800
        assert model.data(index, RoomRole.Tls) is True
        assert model.data(index, RoomRole.Fingerprint) == fingerprint
        assert model.data(index, RoomRole.Address) == "192.168.1.20:8800"
        assert model.data(index, RoomRole.Room) == model.room_at(0)
        assert model.data(index, RoomRole.Key) == f"alpha.{SERVICE_TYPE}"
        assert model.data(index, Qt.ItemDataRole.ToolTipRole) == "192.168.1.20:8800 (TLS)"
        assert model.data(QModelIndex()) is None
        assert model.roleNames()[RoomRole.Fingerprint].data() == b"fingerprint"
        qtmodeltester.check(model)

        # Same key, new data: one dataChanged, no rows added.
        with qtbot.waitSignal(model.dataChanged), qtbot.assertNotEmitted(model.rowsInserted):
            model.upsert_room(room("beta", port=9999))
        assert model.room_at(1).port == 9999
        with qtbot.assertNotEmitted(model.dataChanged):
            model.upsert_room(room("beta", port=9999))  # unchanged: nothing to say

        # A case-only rename moves the row to its new place.
        model.upsert_room(room("GAMMA", service_name=f"gamma.{SERVICE_TYPE}"))
        assert [r.name for r in model.rooms()] == ["Alpha", "beta", "GAMMA"]
        qtmodeltester.check(model)

        with qtbot.waitSignal(model.rowsRemoved):
            model.remove_room(f"BETA.{SERVICE_TYPE}")
        model.remove_room("no such room")
        assert [r.name for r in model.rooms()] == ["Alpha", "GAMMA"]
        with qtbot.waitSignal(model.modelReset):
            model.clear()
        assert model.rowCount() == 0
        qtmodeltester.check(model)
    finally:
        model.deleteLater()


def test_room_browser_model_is_its_child(qapp: Any) -> None:
    room_browser = RoomBrowser(qapp, interfaces=LOOPBACK)
    try:
        assert room_browser.model.parent() is room_browser
        assert room_browser.parent() is qapp
        assert not room_browser.is_running
    finally:
        room_browser.deleteLater()
