"""A name that stays yours (PROTOCOL-FEATURES.md §1) and the admin secret's limiter
(§4): the rules of qtchat.server.identity, driven by a hand-advanced clock."""

from __future__ import annotations

import secrets

import pytest

from qtchat.names import parse_name
from qtchat.protocol import LocalProtocolError
from qtchat.server.identity import (
    ADMIN_ATTEMPTS,
    ADMIN_WINDOW,
    DAY,
    AdminSecret,
    GuessLimiter,
    NameBindings,
    NameReserved,
    address_of,
    check_identity,
    hash_identity,
    new_identity,
)

T0 = 1_800_000_000.0  # a wall-clock time in 2027


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


# --- the identity secret --------------------------------------------------------------


@pytest.mark.parametrize("secret", [
    new_identity(),
    secrets.token_urlsafe(17)[:22],  # the shortest: 22 base64url characters, 132 bits
    secrets.token_hex(16),  # 32 hex digits: exactly 128 bits
    "qWeRtYuIoPaSdFgHjKlZxC",  # a 22-character base64url draw with no digit, _ or - in it
    secrets.token_urlsafe(96)[:128],
])
def test_random_identities_are_accepted(secret):
    assert check_identity(secret) == secret


@pytest.mark.parametrize("secret", [
    None, 12345, b"x" * 30,
    secrets.token_urlsafe(16)[:21],  # one character short
    secrets.token_urlsafe(100)[:129],  # one too many
    "abcdefghijklmnopqrstu+",  # a character outside [A-Za-z0-9_-]
    "ÄbcdefghijklmnopqrstuvwxyzABC",  # not ASCII
    "a" * 40,  # long enough, but one character: no chance in it
    "ababababababababababababababab",  # two characters
    "1234567890" * 3,  # 30 digits: ~100 bits at most
    secrets.token_hex(15),  # 30 hex digits: 120 bits
])
def test_weak_or_malformed_identities_are_bad_frames(secret):
    with pytest.raises(LocalProtocolError) as caught:
        check_identity(secret)
    assert caught.value.code == "bad_frame"


def test_the_host_keeps_a_hash_not_the_secret():
    secret = new_identity()
    kept = hash_identity(secret)
    assert secret not in kept and len(kept) == 64
    assert hash_identity(secret) == kept  # the same secret finds its name again
    assert hash_identity(new_identity()) != kept


# --- names bound to identities ---------------------------------------------------------


ALICE_ID, BOB_ID = hash_identity(new_identity()), hash_identity(new_identity())


def test_a_bound_name_is_refused_to_others_and_to_clients_without_identity():
    clock = Clock()
    names = NameBindings()
    names.bind(parse_name("Alice"), ALICE_ID, clock.now)
    for lookalike in ("Alice", "alice", "ALICE", "ａｌｉｃｅ", "AIice"):
        assert names.refusal(parse_name(lookalike), BOB_ID, clock.now) == "reserved"
        assert names.refusal(parse_name(lookalike), None, clock.now) == "reserved"
        assert names.refusal(parse_name(lookalike), ALICE_ID, clock.now) is None
    with pytest.raises(NameReserved) as caught:
        names.bind(parse_name("alice"), BOB_ID, clock.now)
    assert caught.value.reason == "reserved"
    assert names.holder(parse_name("alice"), clock.now) == ALICE_ID
    assert names.refusal(parse_name("Bob"), None, clock.now) is None  # free names stay free


def test_a_confusable_in_another_script_is_refused_too():
    clock = Clock()
    names = NameBindings()
    names.bind(parse_name("papa"), ALICE_ID, clock.now)
    cyrillic = parse_name("рара")  # Cyrillic er and a
    assert cyrillic.display != "papa"
    assert names.refusal(cyrillic, BOB_ID, clock.now) == "reserved"


def test_one_identity_holds_one_name_and_taking_another_moves_it():
    clock = Clock()
    names = NameBindings()
    names.bind(parse_name("Alice"), ALICE_ID, clock.now)
    names.bind(parse_name("Alicia"), ALICE_ID, clock.advance(60))
    assert names.name_of(ALICE_ID, clock.now).display == "Alicia"
    assert names.refusal(parse_name("Alice"), BOB_ID, clock.now) is None
    names.bind(parse_name("Alice"), BOB_ID, clock.now)
    assert names.holder(parse_name("Alice"), clock.now) == BOB_ID
    assert len(names) == 2


def test_a_binding_lapses_after_the_days_without_its_identity():
    clock = Clock()
    names = NameBindings(days=30)
    names.bind(parse_name("Alice"), ALICE_ID, clock.now)
    clock.advance(29 * DAY)
    names.touch(ALICE_ID, clock.now)  # she came back on day 29: 30 more days
    clock.advance(29 * DAY)
    assert names.refusal(parse_name("Alice"), BOB_ID, clock.now) == "reserved"
    assert names.lapsed(clock.now) == []
    clock.advance(1 * DAY)
    lapsed = names.lapsed(clock.now)
    assert [b.identity for b in lapsed] == [ALICE_ID]
    assert names.refusal(parse_name("Alice"), BOB_ID, clock.now) is None
    assert names.name_of(ALICE_ID, clock.now) is None


def test_a_lapsed_binding_frees_the_name_even_before_the_sweep():
    clock = Clock()
    names = NameBindings(days=2)
    names.bind(parse_name("Alice"), ALICE_ID, clock.now)
    clock.advance(2 * DAY)
    names.bind(parse_name("Alice"), BOB_ID, clock.now)  # no NameReserved
    assert names.holder(parse_name("Alice"), clock.now) == BOB_ID


def test_an_identity_present_for_weeks_keeps_its_name():
    clock = Clock()
    names = NameBindings(days=30)
    names.bind(parse_name("Alice"), ALICE_ID, clock.now)
    for _ in range(8):  # eight weekly sweeps while her session stays up
        assert names.lapsed(clock.advance(7 * DAY), present=[ALICE_ID]) == []
    assert names.holder(parse_name("Alice"), clock.now) == ALICE_ID


def test_the_owner_releases_a_name():
    clock = Clock()
    names = NameBindings()
    names.bind(parse_name("Alice"), ALICE_ID, clock.now)
    assert names.release(parse_name("alice"), clock.now) == ALICE_ID
    assert names.refusal(parse_name("Alice"), BOB_ID, clock.now) is None
    assert names.release(parse_name("alice"), clock.now) is None


def test_bindings_round_trip_through_records():
    clock = Clock()
    names = NameBindings(days=30)
    names.bind(parse_name("Alice"), ALICE_ID, clock.now)
    names.bind(parse_name("Bob"), BOB_ID, clock.advance(DAY))
    rows = names.to_records()
    assert all(isinstance(value, (str, float)) for row in rows for value in row)
    again = NameBindings.from_records(list(rows), days=30)
    assert sorted(again.to_records()) == sorted(rows)
    assert again.refusal(parse_name("ALICE"), BOB_ID, clock.now) == "reserved"
    # The restored table still lapses at the right time: Alice was last seen at T0.
    clock.now = T0 + 30 * DAY
    assert again.refusal(parse_name("Alice"), BOB_ID, clock.now) is None
    assert again.refusal(parse_name("Bob"), ALICE_ID, clock.now) == "reserved"


def test_records_with_a_name_no_longer_valid_are_dropped():
    rows = [(ALICE_ID, "Alice", T0), (BOB_ID, "bad name", T0)]
    again = NameBindings.from_records(rows)
    assert [row[1] for row in again.to_records()] == ["Alice"]


# --- the admin secret ------------------------------------------------------------------


def test_admin_secret_is_kept_as_scrypt_and_checked():
    kept = AdminSecret.from_password("correct horse")
    assert kept.verify("correct horse")
    assert not kept.verify("correct horsE")
    assert not kept.verify("")
    record = kept.to_record()
    assert "correct horse" not in record and record.startswith("scrypt$")
    assert AdminSecret.from_record(record).verify("correct horse")
    # A salt per host: the same password does not give the same record twice.
    assert AdminSecret.from_password("correct horse").to_record() != record


# --- the admin guess limiter ---------------------------------------------------------------


def test_five_wrong_admin_secrets_lock_the_address_until_15_minutes_after_the_last():
    clock = Clock()
    limiter = GuessLimiter(ADMIN_ATTEMPTS, ADMIN_WINDOW)
    for _ in range(4):
        assert limiter.wait("10.0.0.5", clock.now) == 0
        limiter.failed("10.0.0.5", clock.now)
        clock.advance(120)  # one wrong guess every two minutes
    assert limiter.wait("10.0.0.5", clock.now) == 0  # four in the window: still allowed
    limiter.failed("10.0.0.5", clock.now)  # the fifth, 8 minutes after the first
    last = clock.now
    assert limiter.wait("10.0.0.5", clock.now) == pytest.approx(ADMIN_WINDOW)
    assert limiter.wait("10.0.0.6", clock.now) == 0  # another address is not affected
    # Past the first one's window the address still waits: the hold runs from the last.
    clock.now = last + ADMIN_WINDOW - 1
    assert limiter.wait("10.0.0.5", clock.now) == pytest.approx(1)
    clock.now = last + ADMIN_WINDOW
    assert limiter.wait("10.0.0.5", clock.now) == 0
    # Afterwards the count starts again: one wrong guess does not lock it.
    limiter.failed("10.0.0.5", clock.now)
    assert limiter.wait("10.0.0.5", clock.now) == 0


def test_wrong_admin_secrets_spread_over_more_than_15_minutes_never_lock():
    clock = Clock()
    limiter = GuessLimiter(ADMIN_ATTEMPTS, ADMIN_WINDOW)
    for _ in range(20):
        assert limiter.wait("10.0.0.5", clock.now) == 0
        limiter.failed("10.0.0.5", clock.now)
        clock.advance(ADMIN_WINDOW / 4 + 1)  # four per window at most
    limiter.prune(clock.now + ADMIN_WINDOW)
    assert len(limiter) == 0  # nothing left to remember


def test_the_room_password_policy_waits_for_the_oldest_guess_to_leave_the_window():
    """chat_server's room-password limiter, as this class's "oldest" hold."""
    clock = Clock()
    limiter = GuessLimiter(5, 60.0, hold="oldest")
    for _ in range(5):
        limiter.failed("10.0.0.5", clock.now)
        clock.advance(10)
    assert limiter.wait("10.0.0.5", clock.now) == pytest.approx(10)  # first at 0, now 50
    clock.advance(10)
    assert limiter.wait("10.0.0.5", clock.now) == 0


def test_address_of_drops_the_port():
    assert address_of("192.168.1.7:50123") == "192.168.1.7"
    assert address_of("::1:50123") == "::1"
