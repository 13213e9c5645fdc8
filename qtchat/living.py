"""The rules of presence, typing and receipts (PROTOCOL-FEATURES.md §5–§6), without Qt.

Shared by the server (throttle, receipts) and the client (expiry, sentence, idle timer),
hence here and not under qtchat/server or qtchat/client.

Every rule takes ``now`` (seconds, any monotonic clock) from its caller, so the
server's and the client's glue pass ``time.monotonic()`` and the tests a clock they
advance by hand. Nothing here sends or stores anything: each rule answers "relay
it?", "who is typing?", "go away now?", "is this receipt news?".

- ``TypingThrottle`` (server): a change of state is always relayed, the same state
  at most once per 2 s per (sender, target); extra ones are dropped silently.
- ``TypingTracker`` (client): who is typing in one conversation; ``active`` expires
  after 6 s, ``paused`` after 30 s, and a message from that person clears them.
- ``typing_sentence``: "Bob is typing…", "Bob and Carol are typing…", "Several
  people are typing…".
- ``IdleTimer`` (client): away after the timeout without input, back on input; a
  state the person chose (``busy``, or ``away`` by hand) is never changed by it.
- ``ReceiptBook`` (server): receipts only move forward, per pair and per state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TYPING_STATES = ("active", "paused", "done")
PRESENCE_STATES = ("online", "away", "busy")
RECEIPT_STATES = ("delivered", "read")
STATUS_TEXT_MAX = 100  # characters of a status line

TYPING_REPEAT = 2.0  # s: the same state is relayed at most this often per target
TYPING_EXPIRY = {"active": 6.0, "paused": 30.0}  # s: receivers forget it after this
TYPING_SEND_EVERY = 3.0  # s: a client repeats `active` this often while typing
DEFAULT_AWAY_AFTER = 600.0  # s without input: 10 minutes


class TypingThrottle:
    """Which ``typing`` frames the server relays.

    Keyed by (sender, target) — the target is the room key, or the recipient for a
    private conversation — so typing in two rooms is throttled apart. ``forget``
    when the sender leaves, so the table holds only people who are here.
    """

    def __init__(self, repeat: float = TYPING_REPEAT) -> None:
        self.repeat = repeat
        self._last: dict[tuple[object, object], tuple[str, float]] = {}

    def allow(self, sender: object, target: object, state: str, now: float) -> bool:
        """Whether to relay this frame (and remember it if so)."""
        key = (sender, target)
        last = self._last.get(key)
        if last is not None and last[0] == state and now - last[1] < self.repeat:
            return False
        self._last[key] = (state, now)
        return True

    def forget(self, sender: object) -> None:
        """The sender left (or went): drop what is kept about them."""
        for key in [key for key in self._last if key[0] == sender]:
            del self._last[key]


@dataclass
class TypingTracker:
    """Who is typing in one conversation, as its receiver sees it.

    ``update`` on every ``typing`` frame, ``message_from`` on every message,
    ``typing(now)`` for the names (in the order they started), ``next_change(now)``
    for when to look again (a single-shot timer: the label changes only then).
    """

    expiry: dict[str, float] = field(default_factory=lambda: dict(TYPING_EXPIRY))
    _since: dict[str, tuple[str, float]] = field(default_factory=dict)  # name → (state, at)

    def update(self, name: str, state: str, now: float) -> None:
        self._expire(now)
        if state not in self.expiry:  # `done`, or a state this client does not know
            self._since.pop(name, None)
        else:
            self._since[name] = (state, now)  # one already typing keeps their place

    def message_from(self, name: str) -> bool:
        """A message from them: whatever they typed is sent. Whether they were typing."""
        return self._since.pop(name, None) is not None

    def clear(self) -> None:
        """The conversation was left, or the connection lost: nobody is typing."""
        self._since.clear()

    def _expire(self, now: float) -> None:
        for name, (state, at) in list(self._since.items()):
            if now - at >= self.expiry[state]:
                del self._since[name]

    def typing(self, now: float, state: str | None = None) -> list[str]:
        """Who is typing now (only those in ``state``, if given)."""
        self._expire(now)
        return [name for name, (s, _) in self._since.items() if state is None or s == state]

    def next_change(self, now: float) -> float | None:
        """Seconds until someone's state expires (None: nobody is typing)."""
        self._expire(now)
        ends = [at + self.expiry[state] - now for state, at in self._since.values()]
        return max(0.0, min(ends)) if ends else None


def typing_sentence(names: list[str]) -> str:
    """The line under the message view ('' for nobody). Names are plain text."""
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are typing…"
    return "Several people are typing…"


class IdleTimer:
    """Away after ``away_after`` seconds without input, and back on input.

    ``chosen`` is the state the person set by hand (online, away, busy). Only a
    chosen ``online`` goes away by itself: someone who said ``busy`` stays busy, and
    someone who went away by hand is not brought back by moving the mouse.
    ``state(now)`` is what to announce; the glue sends a ``status`` frame when it
    differs from the last one sent. ``away_after`` 0 turns the timer off.
    """

    def __init__(self, now: float, away_after: float = DEFAULT_AWAY_AFTER) -> None:
        self.away_after = away_after
        self.chosen = "online"
        self._last_input = now

    def input(self, now: float) -> None:
        self._last_input = now

    def choose(self, state: str, now: float) -> None:
        if state not in PRESENCE_STATES:
            raise ValueError(f"unknown presence state {state!r}")
        self.chosen = state
        self._last_input = now

    def state(self, now: float) -> str:
        if (self.chosen == "online" and self.away_after > 0
                and now - self._last_input >= self.away_after):
            return "away"
        return self.chosen

    def next_change(self, now: float) -> float | None:
        """Seconds until ``state`` would change without input (None: it will not)."""
        if self.chosen != "online" or self.away_after <= 0:
            return None
        return max(0.0, self._last_input + self.away_after - now)


class ReceiptBook:
    """The highest ``seq`` each reader has acknowledged from each writer, per state.

    ``advance`` says whether a receipt is news (higher than the one before for that
    reader, writer and state); a lower or equal one is ignored. A ``read`` receipt
    also counts as ``delivered`` (what was read was received). ``load`` / ``items``
    let the glue store and restore it (stored means stored).
    """

    def __init__(self) -> None:
        self._upto: dict[tuple[object, object, str], int] = {}

    def advance(self, reader: object, writer: object, state: str, seq: int) -> bool:
        if state not in RECEIPT_STATES:
            raise ValueError(f"unknown receipt state {state!r}")
        key = (reader, writer, state)
        if seq <= self._upto.get(key, 0):
            return False
        self._upto[key] = seq
        if state == "read":
            delivered = (reader, writer, "delivered")
            self._upto[delivered] = max(self._upto.get(delivered, 0), seq)
        return True

    def upto(self, reader: object, writer: object, state: str) -> int:
        return self._upto.get((reader, writer, state), 0)

    def read_up_to(self, you: object, them: object) -> dict[str, int]:
        """``history {with}``'s ``read_up_to``: how far each has read the other."""
        return {"you": self.upto(you, them, "read"), "them": self.upto(them, you, "read")}

    def load(self, rows: list[tuple[object, object, str, int]]) -> None:
        for reader, writer, state, seq in rows:
            self._upto[(reader, writer, state)] = seq

    def items(self) -> list[tuple[object, object, str, int]]:
        return [(*key, seq) for key, seq in self._upto.items()]
