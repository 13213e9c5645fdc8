"""The rules of typing, presence and receipts (qtchat/living.py) on a hand-advanced clock:
what is relayed, what a receiver shows and when it stops, when the app goes away and
back, which receipts are news."""

from __future__ import annotations

import pytest

from qtchat.living import (
    IdleTimer,
    ReceiptBook,
    TypingThrottle,
    TypingTracker,
    typing_sentence,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_typing_throttle_relays_changes_always_and_the_same_state_once_per_2s():
    clock, throttle = Clock(), TypingThrottle()
    assert throttle.allow("bob", "lobby", "active", clock.now)
    assert not throttle.allow("bob", "lobby", "active", clock.advance(0.5))  # dropped
    assert not throttle.allow("bob", "lobby", "active", clock.advance(1.4))  # 1.9 s
    assert throttle.allow("bob", "lobby", "active", clock.advance(0.1))  # 2.0 s
    assert throttle.allow("bob", "lobby", "paused", clock.advance(0.1))  # a change
    assert throttle.allow("bob", "lobby", "active", clock.advance(0.1))  # a change again
    assert throttle.allow("bob", "lobby", "done", clock.advance(0.1))
    assert not throttle.allow("bob", "lobby", "done", clock.advance(0.1))  # the same
    # Per target and per sender: another room, another person are throttled apart.
    assert throttle.allow("bob", "ops", "done", clock.now)
    assert throttle.allow("carol", "lobby", "done", clock.now)
    throttle.forget("bob")  # Bob left: his next frame is news again
    assert throttle.allow("bob", "lobby", "done", clock.now)


def test_typing_tracker_expires_active_after_6s_and_paused_after_30s():
    clock, tracker = Clock(), TypingTracker()
    tracker.update("Bob", "active", clock.now)
    tracker.update("Carol", "paused", clock.now)
    assert tracker.typing(clock.now) == ["Bob", "Carol"]
    assert tracker.next_change(clock.now) == 6.0
    assert tracker.typing(clock.advance(5.9)) == ["Bob", "Carol"]
    assert tracker.typing(clock.advance(0.1)) == ["Carol"]  # active: 6 s
    assert tracker.next_change(clock.now) == pytest.approx(24.0)
    assert tracker.typing(clock.advance(23.9)) == ["Carol"]
    assert tracker.typing(clock.advance(0.1)) == []  # paused: 30 s
    assert tracker.next_change(clock.now) is None


def test_typing_tracker_is_refreshed_and_cleared_by_done_or_a_message():
    clock, tracker = Clock(), TypingTracker()
    tracker.update("Bob", "active", clock.now)
    tracker.update("Carol", "active", clock.now)
    tracker.update("Bob", "active", clock.advance(4))  # repeated every 3 s while typing
    assert tracker.typing(clock.advance(4)) == ["Bob"]  # Carol's ran out, Bob's did not
    tracker.update("Bob", "paused", clock.now)
    assert tracker.typing(clock.now, "paused") == ["Bob"]
    tracker.message_from("Bob")  # he sent it
    assert tracker.typing(clock.now) == []
    tracker.update("Carol", "active", clock.now)
    tracker.update("Carol", "done", clock.advance(1))
    assert tracker.typing(clock.now) == []
    tracker.update("Dave", "active", clock.now)
    tracker.clear()
    assert tracker.typing(clock.now) == []


def test_the_typing_sentence():
    assert typing_sentence([]) == ""
    assert typing_sentence(["Bob"]) == "Bob is typing…"
    assert typing_sentence(["Bob", "Carol"]) == "Bob and Carol are typing…"
    assert typing_sentence(["Bob", "Carol", "Dave"]) == "Several people are typing…"


def test_idle_timer_goes_away_without_input_and_back_with_it():
    clock = Clock()
    idle = IdleTimer(clock.now, away_after=600)
    assert idle.state(clock.now) == "online"
    assert idle.next_change(clock.now) == 600
    assert idle.state(clock.advance(599)) == "online"
    idle.input(clock.now)  # a key press at 599 s starts the wait again
    assert idle.state(clock.advance(599)) == "online"
    assert idle.state(clock.advance(1)) == "away"
    idle.input(clock.advance(30))
    assert idle.state(clock.now) == "online"


def test_idle_timer_leaves_a_chosen_state_alone():
    clock = Clock()
    idle = IdleTimer(clock.now, away_after=60)
    idle.choose("busy", clock.now)
    assert idle.state(clock.advance(3600)) == "busy"  # busy stays busy
    assert idle.next_change(clock.now) is None
    idle.choose("away", clock.now)
    idle.input(clock.advance(1))
    assert idle.state(clock.now) == "away"  # moving the mouse does not undo it
    idle.choose("online", clock.now)
    assert idle.state(clock.advance(60)) == "away"
    off = IdleTimer(clock.now, away_after=0)  # the setting "never"
    assert off.state(clock.advance(10**6)) == "online"
    with pytest.raises(ValueError):
        idle.choose("invisible", clock.now)


def test_receipts_only_move_forward_per_pair_and_state():
    book = ReceiptBook()
    assert book.advance("bob", "alice", "delivered", 10)
    assert not book.advance("bob", "alice", "delivered", 10)  # not news
    assert not book.advance("bob", "alice", "delivered", 7)  # backwards: ignored
    assert book.advance("bob", "alice", "read", 7)  # read is its own state
    assert book.upto("bob", "alice", "delivered") == 10
    assert book.advance("bob", "alice", "read", 12)
    assert book.upto("bob", "alice", "delivered") == 12  # read implies delivered
    assert book.advance("carol", "alice", "read", 3)  # another pair starts at 0
    assert book.advance("alice", "bob", "read", 5)  # and so does the other direction
    assert book.read_up_to("alice", "bob") == {"you": 5, "them": 12}
    restored = ReceiptBook()
    restored.load(book.items())
    assert not restored.advance("bob", "alice", "read", 12)
    with pytest.raises(ValueError):
        book.advance("bob", "alice", "seen", 99)
