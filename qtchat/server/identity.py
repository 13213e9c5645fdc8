"""A name that stays yours (PROTOCOL-FEATURES.md §1) and the owner's secret (§4).

The rules only: which identity secrets are acceptable, how they and the admin
secret are hashed, which identity holds which name and until when, and how many
wrong admin secrets an address may send. Nothing here knows about sockets, Qt,
frames or SQLite: time comes in as ``now`` (wall-clock seconds, ``time.time()``:
bindings outlive the process, so a monotonic clock would not do; tests pass a clock
they advance by hand),
and every table gives its state as plain rows (``to_records``) and is rebuilt from
them (``from_records``), so the feature module persists them however the store
likes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from qtchat.names import InvalidName, Name, parse_name
from qtchat.protocol import LocalProtocolError
from qtchat.server.store import hash_secret

IDENTITY_MIN_CHARS = 22  # 22 characters of base64url carry 132 bits
IDENTITY_MAX_CHARS = 128
IDENTITY_MIN_BITS = 128
# Fewer distinct characters than this and the secret was typed, not drawn: a random
# 22-character base64url secret has about 19, a random 32-digit hex one about 14, and
# either has fewer than 8 with a probability far below one in a million.
_IDENTITY_MIN_DISTINCT = 8
_IDENTITY_CHARS = re.compile(r"[A-Za-z0-9_-]+")
# The smallest common alphabet a secret is drawn from, judged by the characters it
# uses: its bits are at most len × log2(size). 22 digits are 73 bits, not 128. There is
# no letters-only (52) rung: one random 22-character base64url secret in a hundred uses
# no digit, "_" or "-", and would be refused for its luck (judged as 125 bits).
_ALPHABETS = (
    (re.compile(r"[0-9]+"), 10),
    (re.compile(r"[0-9a-f]+"), 16),
    (re.compile(r"[0-9A-F]+"), 16),
    (re.compile(r"[a-z]+"), 26),
    (re.compile(r"[A-Z]+"), 26),
    (re.compile(r"[0-9a-z]+"), 36),
    (re.compile(r"[0-9A-Z]+"), 36),
    (re.compile(r"[0-9A-Za-z]+"), 62),
)

RESERVED = "reserved"  # ``username_taken.reason`` when the name is bound to another identity
DEFAULT_RESERVATION_DAYS = 30
DAY = 86_400.0


def identity_bits(secret: str) -> float:
    """At most how many bits of chance ``secret`` carries, judged by its alphabet."""
    size = next((size for pattern, size in _ALPHABETS if pattern.fullmatch(secret)), 64)
    return len(secret) * math.log2(size)


def check_identity(secret: object) -> str:
    """``register.identity``: 22–128 characters of ``[A-Za-z0-9_-]`` with at least 128
    bits of chance in them; anything else is ``bad_frame`` (a client bug, not a person's
    mistake: the app makes the secret, nobody types it)."""
    if not isinstance(secret, str):
        raise LocalProtocolError("bad_frame", "identity must be a string")
    if not IDENTITY_MIN_CHARS <= len(secret) <= IDENTITY_MAX_CHARS:
        raise LocalProtocolError(
            "bad_frame",
            f"identity must be {IDENTITY_MIN_CHARS} to {IDENTITY_MAX_CHARS} characters long")
    if not _IDENTITY_CHARS.fullmatch(secret):
        raise LocalProtocolError("bad_frame", "identity may hold only A-Z a-z 0-9 _ -")
    if (identity_bits(secret) < IDENTITY_MIN_BITS
            or len(set(secret)) < _IDENTITY_MIN_DISTINCT):
        raise LocalProtocolError(
            "bad_frame", f"identity must be random, with at least {IDENTITY_MIN_BITS} bits")
    return secret


def new_identity() -> str:
    """A fresh identity secret as the app makes one: 192 bits, base64url."""
    return secrets.token_urlsafe(24)


def hash_identity(secret: str) -> str:
    """What the host keeps of an identity secret: its SHA-256, hex.

    A plain fast hash is right here, unlike for a password: the secret is drawn by
    the app with at least 128 bits of chance (``check_identity`` refuses less), so
    reversing the hash by guessing means 2**127 tries whatever the hash costs; a slow
    KDF would only make every registration cost the host CPU (a cheap way to load it)
    without making a stolen table any weaker. It is the same hash as the session
    secrets' (``store.hash_secret``), so one lookup style serves both.
    """
    return hash_secret(secret)


# --- which identity holds which name --------------------------------------------------


class NameReserved(Exception):
    """The name is bound to another identity: ``username_taken`` with ``reason``."""

    reason = RESERVED

    def __init__(self, name: Name) -> None:
        super().__init__(f"The name {name.display} is reserved for someone else.")
        self.name = name


@dataclass(slots=True)
class Binding:
    """One identity's hold on one name, and when that identity was last seen."""

    identity: str  # hash_identity(secret)
    name: Name
    last_seen: float


class NameBindings:
    """Names bound to identities (§1): bound by the name's confusable keys, so a name
    reserved as ``Alice`` refuses ``alice`` and ``Аlice`` (Cyrillic А) to others too.

    One identity holds one name: binding another moves it. A binding lapses
    ``days`` after its identity was last seen: the caller ``touch``es an identity when
    it registers and when its session ends (a session that lasts for weeks does not
    lose its name: ``lapsed`` skips identities the caller says are present).
    """

    def __init__(self, days: float = DEFAULT_RESERVATION_DAYS) -> None:
        self.lifetime = days * DAY
        self._by_identity: dict[str, Binding] = {}
        self._by_key: dict[str, Binding] = {}  # every Name.keys of a bound name

    def __len__(self) -> int:
        return len(self._by_identity)

    def _live(self, binding: Binding | None, now: float) -> Binding | None:
        if binding is not None and binding.last_seen + self.lifetime <= now:
            self._drop(binding)
            return None
        return binding

    def _drop(self, binding: Binding) -> None:
        self._by_identity.pop(binding.identity, None)
        for key in binding.name.keys:
            if self._by_key.get(key) is binding:
                del self._by_key[key]

    def binding_for(self, name: Name, now: float) -> Binding | None:
        """The live binding of ``name`` or of a name that looks like it."""
        for key in name.keys:
            binding = self._live(self._by_key.get(key), now)
            if binding is not None:
                return binding
        return None

    def holder(self, name: Name, now: float) -> str | None:
        """The identity (hash) that holds ``name``, if any."""
        binding = self.binding_for(name, now)
        return binding.identity if binding else None

    def name_of(self, identity: str, now: float) -> Name | None:
        """The name ``identity`` holds, if any."""
        binding = self._live(self._by_identity.get(identity), now)
        return binding.name if binding else None

    def refusal(self, name: Name, identity: str | None, now: float) -> str | None:
        """None if ``identity`` (None: a client without one) may use ``name``; else
        the ``username_taken`` reason (``"reserved"``)."""
        holder = self.holder(name, now)
        return None if holder is None or holder == identity else RESERVED

    def bind(self, name: Name, identity: str, now: float) -> Binding:
        """Bind ``name`` to ``identity`` (moving the identity's old binding, if any);
        raise NameReserved when another identity holds it."""
        current = self.binding_for(name, now)
        if current is not None and current.identity != identity:
            raise NameReserved(name)
        old = self._by_identity.get(identity)
        if old is not None:
            self._drop(old)
        binding = Binding(identity, name, now)
        self._by_identity[identity] = binding
        for key in name.keys:
            self._by_key[key] = binding
        return binding

    def touch(self, identity: str, now: float) -> None:
        """``identity`` was here now: its name's 'days without it' start again."""
        binding = self._live(self._by_identity.get(identity), now)
        if binding is not None:
            binding.last_seen = max(binding.last_seen, now)

    def release(self, name: Name, now: float) -> str | None:
        """Drop the hold on ``name`` (``release_name``, the owner's); returns the identity
        that held it, None if nobody did. A session on the name keeps it until it ends:
        that is the server's business, not this table's."""
        binding = self.binding_for(name, now)
        if binding is None:
            return None
        self._drop(binding)
        return binding.identity

    def lapsed(self, now: float, present: Iterable[str] = ()) -> list[Binding]:
        """Remove and return the bindings whose identity has been away too long;
        identities in ``present`` (with a session now) are touched instead."""
        keep = set(present)
        for identity in keep:
            self.touch(identity, now)
        gone = [b for b in self._by_identity.values()
                if b.identity not in keep and b.last_seen + self.lifetime <= now]
        for binding in gone:
            self._drop(binding)
        return gone

    def to_records(self) -> list[tuple[str, str, float]]:
        """Rows ``(identity hash, name as shown, last seen)`` for the store."""
        return [(b.identity, b.name.display, b.last_seen) for b in self._by_identity.values()]

    @classmethod
    def from_records(cls, rows: Iterable[tuple[str, str, float]],
                     days: float = DEFAULT_RESERVATION_DAYS) -> NameBindings:
        """Rebuild from ``to_records`` rows. A row whose name no longer passes the name
        rules (they were tightened since) is dropped: nobody could register it anyway."""
        table = cls(days)
        for identity, display, last_seen in sorted(rows, key=lambda row: row[2]):
            try:
                name = parse_name(display)
            except InvalidName:
                continue
            # Oldest first, so when two rows claim one name the newer hold wins.
            current = table.binding_for(name, float("-inf"))
            if current is not None:
                table._drop(current)
            table.bind(name, identity, float(last_seen))
        return table


# --- the owner's secret ------------------------------------------------------------------

# scrypt at n=2**14, r=8: 16 MiB and some tens of milliseconds per check. The admin
# password is chosen by a person, so unlike the identity it may be guessable: a stolen
# hash must cost a guesser that much per try. The guess limiter below keeps the host's
# own cost at five checks per address per quarter hour.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_LEN = 32
_SCRYPT_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AdminSecret:
    """The host's admin secret (``--admin-password``), kept only as an scrypt hash."""

    salt: bytes
    digest: bytes
    n: int = _SCRYPT_N
    r: int = _SCRYPT_R
    p: int = _SCRYPT_P

    @classmethod
    def from_password(cls, password: str, salt: bytes | None = None) -> AdminSecret:
        salt = secrets.token_bytes(16) if salt is None else salt
        return cls(salt, _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P))

    def verify(self, given: str) -> bool:
        """Whether ``given`` is the secret, compared in constant time."""
        return hmac.compare_digest(_scrypt(given, self.salt, self.n, self.r, self.p),
                                   self.digest)

    def to_record(self) -> str:
        """One line for a settings file or the store: ``scrypt$n$r$p$salt$digest`` (hex)."""
        return f"scrypt${self.n}${self.r}${self.p}${self.salt.hex()}${self.digest.hex()}"

    @classmethod
    def from_record(cls, record: str) -> AdminSecret:
        kind, n, r, p, salt, digest = record.split("$")
        if kind != "scrypt":
            raise ValueError(f"not an scrypt record: {kind!r}")
        return cls(bytes.fromhex(salt), bytes.fromhex(digest), int(n), int(r), int(p))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=_SCRYPT_MAXMEM, dklen=_SCRYPT_LEN)


# --- wrong guesses per address --------------------------------------------------------

ADMIN_ATTEMPTS = 5
ADMIN_WINDOW = 15 * 60.0


class GuessLimiter:
    """Wrong secrets per address: after ``attempts`` wrong ones within ``window``
    seconds, the address is refused — right secret or not — for a while.

    ``hold`` says how long. ``"last"`` (the admin secret, §4): until ``window`` after
    the last wrong one. ``"oldest"`` (the room password, chat_server's
    ``_password_ok``): until the oldest wrong one in the window leaves it, so a
    patient guesser gets one try per ``window / attempts``. Refused tries are not
    counted (the address is waiting already; counting them would let anyone sharing
    the address, a NAT, keep it locked forever).
    """

    def __init__(self, attempts: int, window: float, *,
                 hold: Literal["last", "oldest"] = "last") -> None:
        self.attempts = attempts
        self.window = window
        self.hold = hold
        self._failures: dict[str, list[float]] = {}  # address -> times, in window
        self._locked_until: dict[str, float] = {}

    def wait(self, address: str, now: float) -> float:
        """Seconds ``address`` must still wait (0: it may try)."""
        if self.hold == "last":
            return max(0.0, self._locked_until.get(address, 0.0) - now)
        failures = self._failures.get(address)
        if not failures:
            return 0.0
        failures[:] = [t for t in failures if t > now - self.window]
        if len(failures) < self.attempts:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, address: str, now: float) -> None:
        """A wrong secret came from ``address``."""
        failures = self._failures.setdefault(address, [])
        failures[:] = [t for t in failures if t > now - self.window]
        failures.append(now)
        if len(failures) >= self.attempts:
            self._locked_until[address] = now + self.window

    def prune(self, now: float) -> None:
        """Forget addresses with nothing left to count (call it from a periodic tick)."""
        for address, times in list(self._failures.items()):
            if times[-1] <= now - self.window:
                del self._failures[address]
        for address, until in list(self._locked_until.items()):
            if until <= now:
                del self._locked_until[address]

    def __len__(self) -> int:
        return len(self._failures.keys() | self._locked_until.keys())


def address_of(peer: str) -> str:
    """The address part of ``host:port`` (IPv6 too): what limits and bans key on."""
    return peer.rsplit(":", 1)[0]
