"""Name rules: PRECIS normalisation, allowed characters, one script, confusable skeletons."""

from __future__ import annotations

import pytest

from qtchat.names import MAX_NAME_LENGTH, InvalidName, parse_name, parse_room, skeleton


@pytest.mark.parametrize(
    ("raw", "display", "folded"),
    [
        ("Alice", "Alice", "alice"),
        ("ｂｏｂ", "bob", "bob"),  # fullwidth: NFKC for display too
        ("user_1.x-y", "user_1.x-y", "user_1.x-y"),
        ("Zoë", "Zoë", "zoë"),
        ("Zoe\u0308", "Zoë", "zoë"),  # combining diaeresis composes
        ("Σίσυφος", "Σίσυφος", "σίσυφος"),
        ("日本語ひらがなカタカナ", "日本語ひらがなカタカナ", "日本語ひらがなカタカナ"),
        ("김민준", "김민준", "김민준"),
        ("Nguyễn", "Nguyễn", "nguyễn"),  # two accents on one letter
        ("Zu\u0308\u0301\u0300\u0302", "Z\u01d8\u0300\u0302", "z\u01d8\u0300\u0302"),  # 4
        ("a" * MAX_NAME_LENGTH, "a" * MAX_NAME_LENGTH, "a" * MAX_NAME_LENGTH),
    ],
)
def test_valid_names_keep_their_case_for_display(raw, display, folded):
    name = parse_name(raw)
    assert (name.display, name.folded) == (display, folded)
    assert str(name) == display


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Bob", "bob"),
        ("Bob", "ｂｏｂ"),
        ("BOB", "ｂｏｂ"),
        ("scope", "ѕсоре"),  # all-Cyrillic look-alike
        ("user1", "userl"),  # digit one and letter l share a skeleton
    ],
)
def test_confusable_names_collide(first, second):
    assert parse_name(first).skeleton == parse_name(second).skeleton


def test_different_names_do_not_collide():
    assert parse_name("alice").skeleton != parse_name("alicia").skeleton
    assert parse_name("bob").skeleton != parse_name("rob").skeleton


@pytest.mark.parametrize(
    "raw",
    [
        "pаypal",  # Latin with one Cyrillic а
        "Ѕcope",  # Cyrillic Ѕ then Latin
        "abcαβγ",  # Latin and Greek
        "日本bob",  # Han with Latin
    ],
)
def test_mixed_scripts_are_refused(raw):
    with pytest.raises(InvalidName, match="one script"):
        parse_name(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "a" * (MAX_NAME_LENGTH + 1),
        "two words",
        "tab\there",
        "new\nline",
        "nul\x00",
        "\u200bbob",  # zero-width space
        "bo\u200db",  # zero-width joiner
        "bob\u202e",  # right-to-left override
        "😀",
        "a@b",
        "a/b",
        "a:b",
        "<b>",
        "\u0301a",  # a combining mark with no letter before it
        "Ⅻ",  # compatibility character PRECIS disallows
    ],
)
def test_invalid_names_are_refused_with_a_sentence(raw):
    with pytest.raises(InvalidName) as exc:
        parse_name(raw)
    assert str(exc.value).endswith((".", ")."))


@pytest.mark.parametrize(
    "raw",
    [
        "Za\u0301\u0300\u0302\u0303\u0304",  # 5 accents: NFC composes á, 4 remain
        "Zu\u0308\u0301\u0300\u0302\u0303\u0304",  # 6: NFC composes ǘ, 4 remain
        "\u01d8\u0300\u0302\u0303\u0304",  # ǘ as one code point, then 4 more
        "\u1ec7\u0300\u0302\u0303",  # ệ (2 accents) and 3 more
    ],
)
def test_accents_are_counted_decomposed(raw):
    with pytest.raises(InvalidName, match="at most 4 accents"):
        parse_name(raw)


@pytest.mark.parametrize("raw", [None, 5, 1.5, ["a"], {"a": 1}])
def test_non_strings_are_refused(raw):
    with pytest.raises((InvalidName, TypeError)):
        parse_name(raw)


def test_room_names_follow_the_same_rules_and_say_room():
    assert parse_room("Games").folded == "games"
    with pytest.raises(InvalidName, match="room name"):
        parse_room("two words")


def test_skeleton_is_idempotent():
    for text in ("scope", "ѕсоре", "paypal", "user1"):
        once = skeleton(text)
        assert skeleton(once) == once
