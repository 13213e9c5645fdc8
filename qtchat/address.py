"""Join addresses: what a person types or pastes, invites, and this machine's addresses.

Pure Python, no Qt, no I/O except ``local_addresses`` (which asks the OS for its
interfaces through ``ifaddr``, the library zeroconf already uses).

Accepted by ``parse_join_target`` (white space, newlines, quotes or ``<…>``
around it are ignored)::

    192.168.1.20:8800        host:port
    alice-laptop.local       host alone: port 8800
    [fe80::1%eth0]:8800      IPv6 in brackets, with a port
    ::1                      IPv6 alone (a port needs the brackets)
    qtchat://host:port       an invite link (also with a trailing '/')
    qtchat://host:port?fp=AB:CD:…    invite of a TLS host: pins that certificate
    qtchat://host:port?tls=1         TLS, fingerprint learnt on first use

``format_invite`` writes the links; ``parse_join_target(format_invite(...))``
gives the same target back.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

import ifaddr

from qtchat import DEFAULT_PORT
from qtchat.tlsutil import normalize_fingerprint

logger = logging.getLogger(__name__)

__all__ = [
    "INVITE_SCHEME",
    "JoinTarget",
    "format_hostport",
    "format_invite",
    "local_addresses",
    "parse_join_target",
]

INVITE_SCHEME = "qtchat"

NOT_AN_ADDRESS = "That doesn't look like an address — try host:port, e.g. 192.168.1.20:8800."
EMPTY_ADDRESS = "Type the address of the room to join, e.g. 192.168.1.20:8800."
BAD_PORT = "Port must be a number from 1 to 65535."
BAD_IPV4 = "That IP address isn't valid — each of its four numbers must be from 0 to 255."
BAD_IPV6 = "That IPv6 address isn't valid; check it, or copy it again."
BAD_IPV6_PORT = "Put an IPv6 address in brackets to give a port, e.g. [fe80::1]:8800."
BAD_HOSTNAME = (
    "A host name may use only the letters a–z, digits, '-' and '.', e.g. alice-laptop.local."
)
BAD_FINGERPRINT = (
    "The certificate fingerprint in that link is incomplete or damaged — "
    "ask the host to send the invite again."
)
BAD_LINK = "That qtchat:// link is damaged — ask the host to send the invite again."

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_TLS_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
# Wrappers people paste around links (quotes, mail clients' <…>).
_WRAPPERS = (("<", ">"), ('"', '"'), ("'", "'"), ("“", "”"))


@dataclass(frozen=True, slots=True)
class JoinTarget:
    """Where to connect: ``host``, ``port``, and whether and how to use TLS.

    ``fingerprint`` (canonical "AB:CD:…" form) is the certificate the invite
    vouches for; when it is given ``tls`` is always True. ``host`` is kept in
    normal form: an IPv4 address, an IPv6 address without brackets (scope id
    kept, e.g. ``fe80::1%eth0``) or a lower-case host name. The constructor
    validates and raises ValueError with a sentence for a person.
    """

    host: str
    port: int = DEFAULT_PORT
    fingerprint: str | None = None
    tls: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.host, str):
            raise TypeError(f"host must be str, not {type(self.host).__name__}")
        host = self.host.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        object.__setattr__(self, "host", _parse_host(host))
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError(f"port must be int, not {type(self.port).__name__}")
        if not 1 <= self.port <= 65535:
            raise ValueError(BAD_PORT)
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", normalize_fingerprint(self.fingerprint))
            object.__setattr__(self, "tls", True)

    @property
    def hostport(self) -> str:
        """``host:port``, IPv6 in brackets: the key for ``PinStore`` and for display."""
        return format_hostport(self.host, self.port)

    @property
    def address(self) -> str:
        """Same as ``hostport``."""
        return self.hostport

    @property
    def invite(self) -> str:
        """This target as a ``qtchat://`` link."""
        return format_invite(self.host, self.port, self.fingerprint, tls=self.tls)


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_invite(
    host: str, port: int = DEFAULT_PORT, fingerprint: str | None = None, *, tls: bool = False
) -> str:
    """An invite link, e.g. ``qtchat://192.168.1.20:8800?fp=AB:CD:…``.

    With a fingerprint the link means TLS with that certificate; ``tls=True``
    without one writes ``?tls=1`` (TLS, trust on first use). Raises ValueError
    for a port out of range or a malformed fingerprint.
    """
    target = JoinTarget(host, port, fingerprint, tls)
    link = f"{INVITE_SCHEME}://{target.hostport}"
    if target.fingerprint is not None:
        return f"{link}?fp={target.fingerprint}"
    if target.tls:
        return f"{link}?tls=1"
    return link


def parse_join_target(text: str) -> JoinTarget:
    """Parse what a person typed or pasted to join a room.

    Raises ValueError whose message is a sentence to show the person as is.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, not {type(text).__name__}")
    text = _unwrap(text.strip())
    if not text:
        raise ValueError(EMPTY_ADDRESS)
    if any(ch.isspace() for ch in text):
        raise ValueError(NOT_AN_ADDRESS)

    is_link = False
    scheme = _SCHEME_RE.match(text)
    if scheme:
        if scheme.group(1).lower() != INVITE_SCHEME:
            raise ValueError(
                f"Only {INVITE_SCHEME}:// invites can be joined here, "
                f"not {scheme.group(1)}:// links."
            )
        text = text[scheme.end() :]
        is_link = True

    text, _, _fragment = text.partition("#")
    text, has_query, query = text.partition("?")
    netloc, slash, path = text.partition("/")
    if slash and path:
        raise ValueError(BAD_LINK if is_link else NOT_AN_ADDRESS)
    if "@" in netloc:
        raise ValueError(BAD_LINK if is_link else NOT_AN_ADDRESS)

    host, port = _split_host_port(netloc)
    fingerprint, tls = _parse_query(query) if has_query else (None, False)
    return JoinTarget(host, port, fingerprint, tls or fingerprint is not None)


def _unwrap(text: str) -> str:
    for opening, closing in _WRAPPERS:
        if len(text) >= 2 and text.startswith(opening) and text.endswith(closing):
            return text[len(opening) : -len(closing)].strip()
    return text


def _split_host_port(netloc: str) -> tuple[str, int]:
    if not netloc:
        raise ValueError(NOT_AN_ADDRESS)
    if netloc.startswith("["):
        inside, bracket, after = netloc[1:].partition("]")
        if not bracket:
            raise ValueError(BAD_IPV6)
        host = _parse_ipv6(inside)
        if not after:
            return host, DEFAULT_PORT
        if not after.startswith(":"):
            raise ValueError(NOT_AN_ADDRESS)
        return host, _parse_port(after[1:])
    if netloc.count(":") >= 2:
        # A bare IPv6 address: "::1:8800" is itself an address, so a port needs brackets.
        try:
            return _parse_ipv6(netloc), DEFAULT_PORT
        except ValueError:
            raise ValueError(BAD_IPV6_PORT) from None
    host_text, colon, port_text = netloc.partition(":")
    return _parse_host(host_text), _parse_port(port_text) if colon else DEFAULT_PORT


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(BAD_PORT)
    return int(text)


def _parse_ipv6(text: str) -> str:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(BAD_IPV6) from None
    return str(address)


def _parse_host(text: str) -> str:
    """An IPv4/IPv6 literal or a host name, in normal form."""
    if not text:
        raise ValueError(NOT_AN_ADDRESS)
    if ":" in text:
        return _parse_ipv6(text)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    name = text.lower().removesuffix(".")
    labels = name.split(".")
    if all(label.isascii() and label.isdigit() for label in labels):
        raise ValueError(BAD_IPV4)
    if len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(BAD_HOSTNAME)
    return name


def _parse_query(query: str) -> tuple[str | None, bool]:
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise ValueError(BAD_LINK) from None
    fingerprint: str | None = None
    if "fp" in params:
        values = params["fp"]
        if len(values) != 1:
            raise ValueError(BAD_FINGERPRINT)
        try:
            fingerprint = normalize_fingerprint(values[0])
        except ValueError:
            raise ValueError(BAD_FINGERPRINT) from None
    tls = False
    if "tls" in params:
        values = params["tls"]
        word = values[0].strip().lower() if len(values) == 1 else None
        if word not in _TLS_WORDS:
            raise ValueError(BAD_LINK)
        tls = _TLS_WORDS[word]
    # Unknown parameters are ignored: later versions may add some.
    return fingerprint, tls


def local_addresses(versions: tuple[int, ...] = (4, 6)) -> list[str]:
    """Every non-loopback address of this machine, best first, for "join me at …"
    (only of the IP ``versions`` given: those a server listens on).

    Private IPv4 first (what LAN peers can reach), then other IPv4 (public, then
    link-local 169.254.x.x), then IPv6 global and unique-local. Link-local IPv6
    is left out (useless without a scope id a person cannot type). No duplicates.
    """
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                address = ipaddress.ip_address(text.split("%")[0])
            except ValueError:
                logger.debug("Skipping unparsable interface address %r", ip.ip)
                continue
            if address.is_loopback or address.is_unspecified or address.is_multicast:
                continue
            if address.version == 6 and address.is_link_local:
                continue
            if address.version in versions:
                found.add(address)
    return [str(address) for address in sorted(found, key=_address_rank)]


def _address_rank(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> tuple[int, int, int]:
    if address.version == 4:
        if address.is_link_local:  # is_private is also true for 169.254/16
            group = 2
        elif address.is_private:
            group = 0
        else:
            group = 1
    else:
        group = 3 if address.is_global else 4
    return group, address.version, int(address)
