"""Finding rooms on the LAN: DNS-SD over multicast DNS (zeroconf's asyncio API).

A hosting app announces its room with ``RoomAnnouncer``; a joining app lists
the rooms around it with ``RoomBrowser`` (Qt signals) and its
``DiscoveredRoomsModel`` (a list model for a view). Service type
``_qtchat._tcp.local.``, instance name = the room server's name, TXT ``v=1``,
``tls=0|1``, ``fp=<fingerprint>`` when TLS, and ``pw=1`` when joining needs a
password (see the protocol's Discovery section).

Both run on the asyncio loop that is running when ``start()`` is awaited: the
qasync loop in the app, or a plain asyncio loop (zeroconf is created with
``use_asyncio=True``, so it never starts a thread of its own). On the qasync
loop the browser's signals come on the GUI thread.

Usage::

    announcer = RoomAnnouncer()
    shown_name = await announcer.start("Alice's room", 8800, tls=True, fingerprint=fp)
    ...
    await announcer.stop()

    browser = RoomBrowser(parent=window)
    view.setModel(browser.model)
    browser.roomFound.connect(...)
    await browser.start()
    ...
    await browser.stop()

Everything a browser reports came from the network: names are untrusted text
(show them as plain text) and a fingerprint from discovery is no more
trustworthy than the LAN it came over.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
import socket
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

import ifaddr
from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
    Slot,
)
from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from qtchat.address import JoinTarget, format_hostport, local_addresses
from qtchat.tlsutil import normalize_fingerprint

logger = logging.getLogger(__name__)

__all__ = [
    "SERVICE_TYPE",
    "DiscoveredRoom",
    "DiscoveredRoomsModel",
    "DiscoveryError",
    "RoomAnnouncer",
    "RoomBrowser",
    "RoomNameInUse",
    "RoomRole",
]

SERVICE_TYPE = "_qtchat._tcp.local."
TXT_VERSION = "1"

#: A DNS label holds at most 63 bytes; keep room for a "-NN" rename suffix.
_MAX_INSTANCE_BYTES = 63 - len("-99")
_MAX_RENAMES = 99
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
QtIndex: TypeAlias = QModelIndex | QPersistentModelIndex


class DiscoveryError(RuntimeError):
    """Announcing or browsing could not start; the message is a sentence for a person."""


class RoomNameInUse(DiscoveryError):
    """Another room on the LAN already has this name and renaming was not allowed."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Another room on this network is already called “{name}”. Pick a different name."
        )
        self.name = name


@dataclass(frozen=True, slots=True)
class DiscoveredRoom:
    """A room seen on the LAN.

    ``host`` is the best of ``addresses`` to connect to (an address on one of
    our own subnets first, IPv4 before IPv6); the others are alternatives.
    ``service_name`` is the full DNS-SD name; ``key`` (its lower-case form)
    identifies the room in ``RoomBrowser.roomRemoved``.
    """

    name: str
    host: str
    port: int
    tls: bool
    fingerprint: str | None
    addresses: tuple[str, ...] = ()
    service_name: str = ""
    password: bool = False  # the room says joining needs a password (TXT pw=1)

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets), for display and for ``parse_join_target``."""
        return format_hostport(self.host, self.port)

    @property
    def key(self) -> str:
        return (self.service_name or f"{self.name}.{SERVICE_TYPE}").lower()

    def join_target(self) -> JoinTarget:
        """Where to connect, with TLS and the advertised fingerprint."""
        return JoinTarget(self.host, self.port, self.fingerprint, self.tls)


# --------------------------------------------------------------------------- helpers


def _interface_addresses(interfaces: list[str] | None) -> list[str] | None:
    """The interface list as normal IP address strings; ValueError (a sentence) if one is not."""
    if not interfaces:
        return None
    addresses = []
    for entry in interfaces:
        try:
            addresses.append(str(ipaddress.ip_address(str(entry).strip())))
        except ValueError:
            raise ValueError(
                f"“{entry}” is not an IP address; name network interfaces by one of "
                "their addresses, e.g. 192.168.1.20."
            ) from None
    return addresses


def _zeroconf(interfaces: list[str] | None) -> AsyncZeroconf:
    """A zeroconf bound to the running asyncio loop, on the given interface addresses."""
    try:
        if interfaces:
            # ip_version is detected from the list (IPv4, IPv6 or both).
            zc = Zeroconf(interfaces=list(interfaces), use_asyncio=True)
        else:
            # zeroconf's default for "all interfaces" is IPv4 multicast only; AAAA
            # records still travel in it, so IPv6 addresses are announced anyway.
            zc = Zeroconf(
                interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only, use_asyncio=True
            )
    except OSError as exc:
        raise DiscoveryError(
            f"Could not open the network port for finding rooms on the LAN (mDNS, UDP 5353): {exc}"
        ) from exc
    return AsyncZeroconf(zc=zc)


def _instance_label(name: str) -> str:
    """The DNS-SD instance label for a room name: trimmed, at most 60 UTF-8 bytes."""
    label = name.strip()
    if not label:
        raise ValueError("The room needs a name to be announced.")
    if _CONTROL_RE.search(label):
        raise ValueError("A room name cannot contain control characters.")
    encoded = label.encode("utf-8")
    if len(encoded) > _MAX_INSTANCE_BYTES:
        label = encoded[:_MAX_INSTANCE_BYTES].decode("utf-8", errors="ignore").rstrip()
        logger.info("Room name %r is too long for DNS-SD; announcing %r", name, label)
    return label


def _instance_of(service_name: str) -> str | None:
    """``"Lobby._qtchat._tcp.local."`` -> ``"Lobby"``; None for another type."""
    suffix = "." + SERVICE_TYPE
    if not service_name.lower().endswith(suffix) or len(service_name) == len(suffix):
        return None
    return service_name[: -len(suffix)]


def _server_name() -> str:
    """A host name of our own for the SRV record, unique per announcer.

    Not the machine's ``<hostname>.local.``: the OS's responder (Avahi,
    mDNSResponder) owns that name, and announcing other address records for it
    would be a conflict that can make the OS rename the machine.
    """
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return f"qtchat-{host[:30] or 'host'}-{secrets.token_hex(4)}.local."


def _local_networks() -> list[IPNetwork]:
    networks: list[IPNetwork] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            with contextlib.suppress(ValueError):
                networks.append(ipaddress.ip_network(f"{text}/{ip.network_prefix}", strict=False))
    return networks


def _address_preference(text: str, networks: list[IPNetwork]) -> tuple[int, int, int]:
    address: IPAddress = ipaddress.ip_address(text.split("%")[0])
    on_our_subnet = any(address in network for network in networks if not network.is_loopback)
    if address.is_loopback:
        kind = 9
    elif address.is_link_local:
        kind = 5
    elif address.version == 4:
        kind = 0 if address.is_private else 1
        if address in ipaddress.ip_network("192.168.0.0/16"):
            kind = -1  # typical home/office LAN; 172.17.x is more often a container bridge
    else:
        kind = 2 if address.is_global else 3
    return (0 if on_our_subnet else 1), kind, address.version


def _room_from_info(info: AsyncServiceInfo, networks: list[IPNetwork]) -> DiscoveredRoom | None:
    """A DiscoveredRoom from resolved DNS-SD data, or None when it is not a usable v1 room."""
    name = _instance_of(info.name)
    properties = info.decoded_properties
    if name is None or properties.get("v") != TXT_VERSION:
        logger.debug("Ignoring %s: TXT %r is not a qtchat v1 room", info.name, properties)
        return None
    if not info.port:
        return None
    addresses: list[str] = []
    for text in info.parsed_scoped_addresses():
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(text.split("%")[0])
            addresses.append(text)
    if not addresses:
        return None
    addresses.sort(key=lambda text: _address_preference(text, networks))
    fingerprint: str | None = None
    if raw_fingerprint := properties.get("fp"):
        try:
            fingerprint = normalize_fingerprint(raw_fingerprint)
        except ValueError:
            logger.info("Room %r advertises a malformed fingerprint %r", name, raw_fingerprint)
    return DiscoveredRoom(
        name=name,
        host=addresses[0],
        port=info.port,
        tls=properties.get("tls") == "1",
        fingerprint=fingerprint,
        addresses=tuple(addresses),
        service_name=info.name,
        password=properties.get("pw") == "1",
    )


async def _names_on_network(aiozc: AsyncZeroconf, wait: float) -> set[str]:
    """Instance names of the rooms that answer a browse within ``wait`` seconds.

    A multicast (QM) question on purpose: zeroconf's own conflict probe asks
    for unicast replies, and those reach only one of the sockets sharing UDP
    5353 on a machine (another app, Avahi), so it misses conflicts.
    """
    seen: set[str] = set()

    def on_change(**kwargs: Any) -> None:
        if kwargs["state_change"] is ServiceStateChange.Added:
            seen.add(kwargs["name"])

    browser = AsyncServiceBrowser(
        aiozc.zeroconf, [SERVICE_TYPE], handlers=[on_change], question_type=DNSQuestionType.QM
    )
    try:
        await asyncio.sleep(wait)
    finally:
        await browser.async_cancel()
    return {instance for name in seen if (instance := _instance_of(name)) is not None}


async def _name_answers(aiozc: AsyncZeroconf, label: str, wait: float) -> bool:
    """Whether a room called ``label`` answers a question for its own record."""
    info = AsyncServiceInfo(SERVICE_TYPE, f"{label}.{SERVICE_TYPE}")
    return await info.async_request(aiozc.zeroconf, wait * 1000,
                                    question_type=DNSQuestionType.QM)


# --------------------------------------------------------------------------- announcer


class RoomAnnouncer:
    """Announces one room on the LAN while it runs.

    ``await start(...)`` returns the name actually announced: when another room
    already uses the name it becomes ``"<name>-2"`` (``-3``, …), as zeroconf
    renames, unless ``allow_rename=False``, which raises ``RoomNameInUse``.
    ``await stop()`` withdraws the room (goodbye packets, so browsers drop it
    at once) and closes the sockets; it is safe to call twice, or while
    ``start`` is still running (which it then cancels).

    ``conflict_check`` is how long ``start`` listens for existing rooms first
    (1.5 s covers zeroconf's one-second delay before it repeats a record it
    just multicast); 0 leaves conflicts to zeroconf's own probe alone.
    """

    def __init__(self, *, conflict_check: float = 1.5) -> None:
        self._conflict_check = conflict_check
        self._aiozc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._start_task: asyncio.Task[Any] | None = None
        self._name: str | None = None

    @property
    def name(self) -> str | None:
        """The announced instance name, or None when not announcing."""
        return self._name

    @property
    def is_running(self) -> bool:
        return self._name is not None

    async def start(
        self,
        name: str,
        port: int,
        tls: bool = False,
        fingerprint: str | None = None,
        interfaces: list[str] | None = None,
        *,
        allow_rename: bool = True,
        ip_versions: tuple[int, ...] = (4, 6),
        password: bool = False,
    ) -> str:
        """Announce a room server listening on ``port``; return the announced name.

        ``interfaces``: IP addresses of this machine to announce on and to
        publish as the room's addresses (e.g. ``["127.0.0.1"]`` in tests);
        None means every interface, publishing ``local_addresses(ip_versions)``
        (the versions the server listens on: an address it does not answer on fails).
        ``fingerprint`` is required with ``tls=True`` and refused without it.
        ``password``: say that joining needs a password (never the password itself).
        Raises ValueError for bad arguments, RoomNameInUse, or DiscoveryError
        when the mDNS socket cannot be opened.
        """
        if self._aiozc is not None:
            raise RuntimeError("RoomAnnouncer is already started; stop() it first")
        label = _instance_label(name)
        if not 1 <= port <= 65535:
            raise ValueError("Port must be a number from 1 to 65535.")
        if tls != (fingerprint is not None):
            raise ValueError("Give the certificate fingerprint exactly when tls is True.")
        properties = {"v": TXT_VERSION, "tls": "1" if tls else "0"}
        if password:
            properties["pw"] = "1"
        if fingerprint is not None:
            properties["fp"] = normalize_fingerprint(fingerprint)
        interfaces = _interface_addresses(interfaces)
        addresses = interfaces or local_addresses(ip_versions) or ["127.0.0.1"]

        self._start_task = asyncio.current_task()
        self._aiozc = aiozc = _zeroconf(interfaces)
        try:
            if self._conflict_check > 0:
                # A browse finds every room, and a question for the name itself, asked at
                # the same time, is answered by its owner even when the browse's answers
                # come late (a busy machine): both within the same wait.
                existing, answered = await asyncio.gather(
                    _names_on_network(aiozc, self._conflict_check),
                    _name_answers(aiozc, label, self._conflict_check),
                )
                taken = {other.lower() for other in existing}
                if answered:
                    taken.add(label.lower())
                candidate, number = label, 2
                while candidate.lower() in taken or (
                    candidate != label
                    and await _name_answers(aiozc, candidate, self._conflict_check)
                ):
                    if not allow_rename:
                        raise RoomNameInUse(label)
                    if number > _MAX_RENAMES:
                        raise DiscoveryError(
                            f"Too many rooms on this network are called “{label}”."
                        )
                    candidate, number = f"{label}-{number}", number + 1
                label = candidate
            info = AsyncServiceInfo(
                SERVICE_TYPE,
                f"{label}.{SERVICE_TYPE}",
                port=port,
                properties=properties,
                parsed_addresses=addresses,
                server=_server_name(),
            )
            try:
                # The first await probes; the second waits for the announcements.
                await (await aiozc.async_register_service(info, allow_name_change=allow_rename))
            except NonUniqueNameException:
                raise RoomNameInUse(label) from None
        except BaseException:
            self._aiozc = None
            await aiozc.async_close()
            raise
        finally:
            self._start_task = None
        self._info = info
        self._name = _instance_of(info.name) or label
        logger.info(
            "Announcing room %r on port %d (tls=%s) at %s", self._name, port, tls, addresses
        )
        return self._name

    async def stop(self) -> None:
        """Withdraw the room and close zeroconf. Does nothing when not started."""
        start_task = self._start_task
        if start_task is not None and start_task is not asyncio.current_task():
            start_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start_task
        aiozc, info = self._aiozc, self._info
        self._aiozc = self._info = self._name = None
        if aiozc is None:
            return
        try:
            if info is not None:
                await (await aiozc.async_unregister_service(info))
                logger.info("Withdrew room %r", _instance_of(info.name))
        finally:
            await aiozc.async_close()


# --------------------------------------------------------------------------- model


_USER_ROLE = int(Qt.ItemDataRole.UserRole)


class RoomRole(IntEnum):
    """Data roles of ``DiscoveredRoomsModel`` (DisplayRole is the name)."""

    Name = _USER_ROLE + 1
    Host = _USER_ROLE + 2
    Port = _USER_ROLE + 3
    Tls = _USER_ROLE + 4
    Fingerprint = _USER_ROLE + 5
    Address = _USER_ROLE + 6
    Room = _USER_ROLE + 7  # the DiscoveredRoom itself
    Key = _USER_ROLE + 8


class DiscoveredRoomsModel(QAbstractListModel):
    """The rooms on the LAN, one row each, sorted by name.

    Fed by a ``RoomBrowser`` (``RoomBrowser.model`` is one already connected),
    or by calling ``upsert_room``/``remove_room`` directly; it never touches
    the network itself.
    """

    _ROLE_NAMES: ClassVar[dict[RoomRole, bytes]] = {
        RoomRole.Name: b"name",
        RoomRole.Host: b"host",
        RoomRole.Port: b"port",
        RoomRole.Tls: b"tls",
        RoomRole.Fingerprint: b"fingerprint",
        RoomRole.Address: b"address",
        RoomRole.Room: b"room",
        RoomRole.Key: b"key",
    }

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rooms: list[DiscoveredRoom] = []

    def rowCount(self, parent: QtIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._rooms)

    def data(self, index: QtIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rooms):
            return None
        room = self._rooms[index.row()]
        match role:
            case Qt.ItemDataRole.DisplayRole:
                secured = " · TLS" if room.tls else ""
                locked = " · password" if room.password else ""
                return f"{room.name} — {room.address}{secured}{locked}"
            case RoomRole.Name:
                return room.name
            case Qt.ItemDataRole.ToolTipRole:
                secured = "TLS" if room.tls else "no TLS"
                locked = "; needs a password" if room.password else ""
                return f"{room.address} ({secured}{locked})"
            case RoomRole.Host:
                return room.host
            case RoomRole.Port:
                return room.port
            case RoomRole.Tls:
                return room.tls
            case RoomRole.Fingerprint:
                return room.fingerprint
            case RoomRole.Address:
                return room.address
            case RoomRole.Room:
                return room
            case RoomRole.Key:
                return room.key
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        names = super().roleNames()
        names.update({int(role): QByteArray(name) for role, name in self._ROLE_NAMES.items()})
        return names

    def room_at(self, row: int) -> DiscoveredRoom:
        return self._rooms[row]

    def rooms(self) -> list[DiscoveredRoom]:
        return list(self._rooms)

    def row_of(self, key: str) -> int:
        """Row of the room with ``key``, or -1."""
        key = key.lower()
        return next((row for row, room in enumerate(self._rooms) if room.key == key), -1)

    @Slot(object)
    def upsert_room(self, room: DiscoveredRoom) -> None:
        """Add a room, or update the row of the room with the same key."""
        row = self.row_of(room.key)
        if row >= 0:
            if self._rooms[row] == room:
                return
            if self._insert_position(room, skip=row) == row:
                self._rooms[row] = room
                index = self.index(row, 0)
                self.dataChanged.emit(index, index, [])
                return
            self.remove_room(room.key)
        position = self._insert_position(room)
        self.beginInsertRows(QModelIndex(), position, position)
        self._rooms.insert(position, room)
        self.endInsertRows()

    @Slot(str)
    def remove_room(self, key: str) -> None:
        row = self.row_of(key)
        if row < 0:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._rooms[row]
        self.endRemoveRows()

    @Slot()
    def clear(self) -> None:
        if not self._rooms:
            return
        self.beginResetModel()
        self._rooms.clear()
        self.endResetModel()

    def _insert_position(self, room: DiscoveredRoom, skip: int = -1) -> int:
        """Where ``room`` goes in name order (as if row ``skip`` were absent)."""
        sort_key = (room.name.casefold(), room.key)
        position = 0
        for row, other in enumerate(self._rooms):
            if row == skip:
                continue
            if (other.name.casefold(), other.key) < sort_key:
                position += 1
        return position


# --------------------------------------------------------------------------- browser


class RoomBrowser(QObject):
    """Watches the LAN for rooms while started.

    Signals:
        roomFound(DiscoveredRoom): a room appeared (resolved: it has an address).
        roomUpdated(DiscoveredRoom): a known room's address, port or TXT changed.
        roomRemoved(str): the room with this ``DiscoveredRoom.key`` is gone
            (withdrawn, expired, or the browser stopped).

    ``model`` is a ``DiscoveredRoomsModel`` child kept in step with the signals.
    ``interfaces``: IP addresses to listen on (``["127.0.0.1"]`` in tests);
    None means every interface.

    A room whose host vanished without a goodbye (crash, sleep, cable pulled)
    would stay listed until its PTR record expires, and zeroconf keeps those at
    least 19 minutes. So every ``liveness_interval`` seconds each known room is
    looked up again: while its SRV record (2-minute TTL) is cached that costs
    nothing; once it has expired a query goes out, and a room that does not
    answer within ``resolve_timeout`` is reported removed. A vanished room thus
    leaves the list within about 2.5 minutes.

    The signals are emitted from inside event-loop callbacks: connected slots
    should not spin a nested event loop (``QDialog.exec()``); use ``open()``
    or a queued connection for that.
    """

    roomFound = Signal(object)
    roomUpdated = Signal(object)
    roomRemoved = Signal(str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        interfaces: list[str] | None = None,
        resolve_timeout: float = 3.0,
        liveness_interval: float = 30.0,
    ) -> None:
        super().__init__(parent)
        self._interfaces = _interface_addresses(interfaces)
        self._resolve_timeout_ms = int(resolve_timeout * 1000)
        self._liveness_interval = liveness_interval
        self._watcher: asyncio.Task[None] | None = None
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._networks: list[IPNetwork] = []
        self._rooms: dict[str, DiscoveredRoom] = {}
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._model = DiscoveredRoomsModel(self)
        self.roomFound.connect(self._model.upsert_room)
        self.roomUpdated.connect(self._model.upsert_room)
        self.roomRemoved.connect(self._model.remove_room)

    @property
    def model(self) -> DiscoveredRoomsModel:
        return self._model

    @property
    def is_running(self) -> bool:
        return self._browser is not None

    def rooms(self) -> list[DiscoveredRoom]:
        """The rooms known right now, in no particular order."""
        return list(self._rooms.values())

    async def start(self) -> None:
        """Start browsing (returns at once; rooms arrive as signals). Raises DiscoveryError."""
        if self._aiozc is not None:
            raise RuntimeError("RoomBrowser is already started; stop() it first")
        self._networks = _local_networks()
        self._aiozc = _zeroconf(self._interfaces)
        self._browser = AsyncServiceBrowser(
            self._aiozc.zeroconf, [SERVICE_TYPE], handlers=[self._on_service_state_change]
        )
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch_liveness(self._aiozc.zeroconf)
        )
        logger.debug("Browsing for %s on %s", SERVICE_TYPE, self._interfaces or "all interfaces")

    async def stop(self) -> None:
        """Stop browsing; every known room is reported removed. Safe to call twice."""
        aiozc, browser = self._aiozc, self._browser
        self._aiozc = self._browser = None
        tasks = list(self._resolving.values())
        self._resolving.clear()
        if self._watcher is not None:
            tasks.append(self._watcher)
            self._watcher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if browser is not None:
                await browser.async_cancel()
        finally:
            if aiozc is not None:
                await aiozc.async_close()
            for key in list(self._rooms):
                del self._rooms[key]
                self.roomRemoved.emit(key)

    def _on_service_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """zeroconf's handler (runs in the event loop); must not raise into zeroconf."""
        try:
            key = name.lower()
            previous = self._resolving.pop(key, None)
            if previous is not None:
                previous.cancel()
            if state_change is ServiceStateChange.Removed:
                self._forget(key)
                return
            task = asyncio.get_running_loop().create_task(
                self._resolve(zeroconf, service_type, name, key)
            )
            self._resolving[key] = task
            task.add_done_callback(lambda done, key=key: self._resolved(key, done))
        except Exception:
            logger.exception("Failed to handle %s of %s", state_change, name)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str, key: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, self._resolve_timeout_ms):
            logger.debug("No complete answer for %s within %d ms", name, self._resolve_timeout_ms)
            return
        self._apply(key, info)

    def _apply(self, key: str, info: AsyncServiceInfo) -> None:
        room = _room_from_info(info, self._networks)
        if room is None:
            self._forget(key)
            return
        known = self._rooms.get(key)
        self._rooms[key] = room
        if known is None:
            logger.info("Found room %r at %s", room.name, room.address)
            self.roomFound.emit(room)
        elif known != room:
            self.roomUpdated.emit(room)

    async def _watch_liveness(self, zeroconf: Zeroconf) -> None:
        while True:
            await asyncio.sleep(self._liveness_interval)
            rooms = [
                (key, room) for key, room in self._rooms.items() if key not in self._resolving
            ]
            await asyncio.gather(*(self._check_alive(zeroconf, key, room) for key, room in rooms))

    async def _check_alive(self, zeroconf: Zeroconf, key: str, room: DiscoveredRoom) -> None:
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, room.service_name)
            alive = await info.async_request(zeroconf, self._resolve_timeout_ms)
        except Exception:
            logger.exception("Checking room %s failed", key)
            return
        # Skip if the room changed meanwhile: the newer news wins.
        if self._rooms.get(key) is not room or key in self._resolving:
            return
        if alive:
            self._apply(key, info)
        else:
            logger.info("Room %s stopped answering", key)
            self._forget(key)

    def _resolved(self, key: str, task: asyncio.Task[None]) -> None:
        if self._resolving.get(key) is task:
            del self._resolving[key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("Resolving room %s failed", key, exc_info=exc)

    def _forget(self, key: str) -> None:
        if self._rooms.pop(key, None) is not None:
            logger.info("Room %s is gone", key)
            self.roomRemoved.emit(key)
