"""Tests for qtchat.address: parsing what people type, invites, local addresses."""

from __future__ import annotations

import dataclasses
import ipaddress
from types import SimpleNamespace

import pytest

from qtchat import address
from qtchat.address import JoinTarget, format_invite, local_addresses, parse_join_target

FP = ":".join(f"{n:02X}" for n in range(32))
FP_BARE_LOWER = FP.replace(":", "").lower()

GOOD = [
    # (typed or pasted, expected)
    ("192.168.1.20:8800", JoinTarget("192.168.1.20", 8800)),
    ("192.168.1.20", JoinTarget("192.168.1.20", 8800)),
    ("10.0.0.7:1", JoinTarget("10.0.0.7", 1)),
    ("10.0.0.7:65535", JoinTarget("10.0.0.7", 65535)),
    ("localhost:9000", JoinTarget("localhost", 9000)),
    ("Alice-Laptop.local", JoinTarget("alice-laptop.local", 8800)),
    ("alice-laptop.local.:8801", JoinTarget("alice-laptop.local", 8801)),
    ("my_pc", JoinTarget("my_pc", 8800)),
    ("[::1]:8800", JoinTarget("::1", 8800)),
    ("[::1]", JoinTarget("::1", 8800)),
    ("::1", JoinTarget("::1", 8800)),
    ("2001:DB8::1", JoinTarget("2001:db8::1", 8800)),
    ("[2001:db8:0:0::1]:9", JoinTarget("2001:db8::1", 9)),
    ("fe80::1%eth0", JoinTarget("fe80::1%eth0", 8800)),
    ("[fe80::1%eth0]:8800", JoinTarget("fe80::1%eth0", 8800)),
    ("  192.168.1.20:8800 \n", JoinTarget("192.168.1.20", 8800)),
    ("\n\tqtchat://192.168.1.20:8800\r\n", JoinTarget("192.168.1.20", 8800)),
    ("qtchat://192.168.1.20:8800", JoinTarget("192.168.1.20", 8800)),
    ("qtchat://192.168.1.20:8800/", JoinTarget("192.168.1.20", 8800)),
    ("qtchat://192.168.1.20", JoinTarget("192.168.1.20", 8800)),
    ("QtChat://host:1234", JoinTarget("host", 1234)),
    ("qtchat://[::1]:8800", JoinTarget("::1", 8800)),
    (f"qtchat://192.168.1.20:8800?fp={FP}", JoinTarget("192.168.1.20", 8800, FP, True)),
    (f"qtchat://192.168.1.20:8800/?fp={FP}", JoinTarget("192.168.1.20", 8800, FP, True)),
    (f" qtchat://host:8800/?fp={FP_BARE_LOWER} \n", JoinTarget("host", 8800, FP, True)),
    (f"qtchat://[::1]:8800?fp={FP}", JoinTarget("::1", 8800, FP, True)),
    (f"qtchat://h:1?fp={FP.replace(':', '%3A')}", JoinTarget("h", 1, FP, True)),
    (f"qtchat://h:1?fp={FP}&tls=1", JoinTarget("h", 1, FP, True)),
    (f"qtchat://h:1?fp={FP}&tls=0", JoinTarget("h", 1, FP, True)),  # a fingerprint means TLS
    (f"qtchat://h:1?fp={FP}#room", JoinTarget("h", 1, FP, True)),
    ("qtchat://h:1?tls=1", JoinTarget("h", 1, None, True)),
    ("qtchat://h:1/?tls=true", JoinTarget("h", 1, None, True)),
    ("qtchat://h:1?tls=0", JoinTarget("h", 1, None, False)),
    ("qtchat://h:1?future=thing", JoinTarget("h", 1)),  # unknown parameters are ignored
    ("h:1?tls=1", JoinTarget("h", 1, None, True)),
    ("<qtchat://h:1>", JoinTarget("h", 1)),
    ('"192.168.1.20:8800"', JoinTarget("192.168.1.20", 8800)),
    ("“qtchat://h:1”", JoinTarget("h", 1)),
]

NOT_AN_ADDRESS = "doesn't look like an address"
BAD_PORT = "Port must be a number from 1 to 65535"

BAD = [
    # (typed or pasted, part of the message shown)
    ("", "Type the address"),
    ("   \n ", "Type the address"),
    ("Bob's room", NOT_AN_ADDRESS),
    ("192.168.1.20 8800", NOT_AN_ADDRESS),
    (":8800", NOT_AN_ADDRESS),
    ("host:", BAD_PORT),
    ("host:0", BAD_PORT),
    ("host:65536", BAD_PORT),
    ("host:99999999999999999999", BAD_PORT),
    ("host:-1", BAD_PORT),
    ("host:+80", BAD_PORT),
    ("host:80a", BAD_PORT),
    ("host:٨٨", BAD_PORT),  # Arabic-Indic digits
    ("[::1]:", BAD_PORT),
    ("[::1]:0", BAD_PORT),
    ("qtchat://host:0", BAD_PORT),
    ("999.1.1.1", "IP address isn't valid"),
    ("192.168.1", "IP address isn't valid"),
    ("192.168.1.20.5:8800", "IP address isn't valid"),
    ("::1:2:3:4:5:6:7:8:9", "brackets"),
    ("::g", "brackets"),
    ("[::1", "IPv6 address isn't valid"),
    ("[not-v6]:8800", "IPv6 address isn't valid"),
    ("[::1]8800", NOT_AN_ADDRESS),
    ("bad_host$:8800", "host name may use only"),
    ("-leading-dash", "host name may use only"),
    ("host..local", "host name may use only"),
    ("café.local", "host name may use only"),
    ("a" * 64 + ".local", "host name may use only"),
    ("http://192.168.1.20:8800", "Only qtchat:// invites"),
    ("https://example.com/", "Only qtchat:// invites"),
    ("qtchat://", NOT_AN_ADDRESS),
    ("qtchat://host:8800/room/lobby", "link is damaged"),
    ("qtchat://user@host:8800", "link is damaged"),
    ("host/path", NOT_AN_ADDRESS),
    ("qtchat://host:8800?fp=AB:CD", "fingerprint in that link"),
    ("qtchat://host:8800?fp=", "fingerprint in that link"),
    (f"qtchat://host:8800?fp={FP}&fp={FP}", "fingerprint in that link"),
    (f"qtchat://host:8800?fp={FP}XX", "fingerprint in that link"),
    ("qtchat://host:8800?tls=maybe", "link is damaged"),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_parse_good(text: str, expected: JoinTarget) -> None:
    assert parse_join_target(text) == expected


@pytest.mark.parametrize(("text", "message"), BAD)
def test_parse_bad(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as excinfo:
        parse_join_target(text)
    shown = str(excinfo.value)
    # A sentence for a person: capitalised, ends with a full stop, no Python repr.
    assert shown[0].isupper() and shown.endswith("."), shown
    assert "Traceback" not in shown and "ValueError" not in shown


def test_join_target_is_frozen_and_normalises() -> None:
    target = JoinTarget("[::1]", 8800, FP_BARE_LOWER)
    assert target == JoinTarget("::1", 8800, FP, True)
    assert target.tls is True
    assert target.hostport == target.address == "[::1]:8800"
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.port = 1  # type: ignore[misc]
    assert JoinTarget("Host.Local").hostport == "host.local:8800"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"host": "h", "port": 0}, ValueError),
        ({"host": "h", "port": 70000}, ValueError),
        ({"host": "h", "port": "8800"}, TypeError),
        ({"host": "h", "port": True}, TypeError),
        ({"host": "", "port": 1}, ValueError),
        ({"host": "h", "port": 1, "fingerprint": "AB"}, ValueError),
    ],
)
def test_join_target_validates(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        JoinTarget(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "link"),
    [
        (("192.168.1.20", 8800), {}, "qtchat://192.168.1.20:8800"),
        (("192.168.1.20", 8800, FP_BARE_LOWER), {}, f"qtchat://192.168.1.20:8800?fp={FP}"),
        (("::1", 8800, FP), {}, f"qtchat://[::1]:8800?fp={FP}"),
        (("[::1]", 9), {}, "qtchat://[::1]:9"),
        (("Alice-Laptop.local", 8800), {"tls": True}, "qtchat://alice-laptop.local:8800?tls=1"),
        (("h", 1, FP), {"tls": False}, f"qtchat://h:1?fp={FP}"),
    ],
)
def test_format_invite(args: tuple, kwargs: dict, link: str) -> None:
    invite = format_invite(*args, **kwargs)
    assert invite == link
    assert parse_join_target(invite).invite == invite


@pytest.mark.parametrize(
    "target",
    [
        JoinTarget("192.168.1.20", 8800),
        JoinTarget("192.168.1.20", 8800, FP),
        JoinTarget("fe80::1%eth0", 1, FP),
        JoinTarget("host.local", 65535, None, True),
    ],
)
def test_invite_round_trip(target: JoinTarget) -> None:
    invite = format_invite(target.host, target.port, target.fingerprint, tls=target.tls)
    assert parse_join_target(invite) == target
    assert parse_join_target(target.invite) == target
    assert parse_join_target(target.hostport) == JoinTarget(target.host, target.port)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("h", 0), "Port"),
        (("h", 1, "zz"), "fingerprint"),
        (("", 1), "address"),
        (("a b", 1), "host name"),
    ],
)
def test_format_invite_rejects(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_invite(*args)


# --------------------------------------------------------------------------- local addresses


def test_local_addresses_of_this_machine() -> None:
    found = local_addresses()
    assert len(found) == len(set(found))
    for text in found:
        parsed = ipaddress.ip_address(text)  # plain addresses, no scope ids
        assert not parsed.is_loopback
        assert not (parsed.version == 6 and parsed.is_link_local)
        parse_join_target(text)  # each one works as a join address


def _adapter(name: str, *ips: tuple[str | tuple[str, int, int], int]) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, ips=[SimpleNamespace(ip=ip, network_prefix=prefix) for ip, prefix in ips]
    )


def test_local_addresses_order_and_filtering(monkeypatch: pytest.MonkeyPatch) -> None:
    adapters = [
        _adapter("lo", ("127.0.0.1", 8), (("::1", 0, 0), 128)),
        _adapter(
            "eth0",
            ("203.0.113.9", 24),  # documentation range: ipaddress calls it private
            ("8.8.4.4", 24),  # public
            ("192.168.1.20", 24),
            (("fe80::1", 0, 2), 64),  # link-local IPv6: left out
            (("2a00:1450::1", 0, 0), 64),  # global IPv6
            (("fd00::2", 0, 0), 64),  # unique local IPv6
        ),
        _adapter("wlan0", ("169.254.3.4", 16), ("10.0.0.5", 8), ("192.168.1.20", 24)),
    ]
    monkeypatch.setattr(address.ifaddr, "get_adapters", lambda: adapters)

    assert local_addresses() == [
        "10.0.0.5",
        "192.168.1.20",
        "203.0.113.9",
        "8.8.4.4",
        "169.254.3.4",
        "2a00:1450::1",
        "fd00::2",
    ]


def test_local_addresses_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        address.ifaddr, "get_adapters", lambda: [_adapter("lo", ("127.0.0.1", 8))]
    )
    assert local_addresses() == []
