"""Full-text search of the history: how text is folded, indexed and queried.

The contract (PROTOCOL-FEATURES.md §8): a word is a run of letters and digits,
compared after NFKC, case folding and accent removal; every word must match, the
last one as a prefix; text written without spaces (Chinese, Japanese, Thai…) is
found by any part of 3 or more characters; the query is plain words, never a query
language.

Two FTS5 tables, both *contentless* (``content=''``), fed from ``messages`` (schema
version 2, ``create_index``):

- ``messages_words`` (``unicode61 remove_diacritics 2``) indexes ``words(text)``:
  the text after NFKC and casefold, with the spaceless scripts blanked out. The
  tokenizer removes the accents and splits the words.
- ``messages_cjk`` (``trigram``) indexes ``spaceless(text)``: only the runs of
  spaceless scripts, one per line (a trigram that spans two runs has a line break
  in it, and no query has one). Most rows have none and get no row here.

``messages_words_terms`` (``fts5vocab``, nothing stored) lists the word index's terms,
to spell a long prefix out as the words it matches (``expand_prefix``).

Why contentless and not external content (``content=messages``): the index holds
folded text, not ``messages.text``; an external-content table must be given the
very values it indexed to delete a row, and would read the raw text back for
``highlight()``, which nobody uses here (the client marks words itself). A plain
FTS table would store every text a second time. Contentless keeps only the index;
a row is deleted by giving FTS5 the same folded values again, which the triggers
compute from the old text (folding is deterministic). SQLite 3.40 has no
``contentless_delete``, hence the ``'delete'`` command.

New messages are indexed in bulk, off the path of a message, not by a trigger per row:
everything after the mark ``meta.search_upto`` is indexed ``INDEX_SLICE`` rows at a time
by the server's sweep (``MessageStore.index_some``), all of it before every search (so a
search always sees every message stored), and by a commit once ``INDEX_BACKLOG_MAX``
wait. A trigger per row cost ~160 µs of wall time per message stored (11× the row
itself) and halved the server's fan-out rate in small rooms; two ``INSERT … SELECT``
per slice cost ~15–20 µs of CPU per message, paid in slices of ~10 ms a second.

Why triggers for the rest: every way an *indexed* message changes (pruning, a retired
room, an edit, a delete) keeps the index in step without each remembering to; a
message past the mark is not in the index yet, and is indexed as it then is. The
triggers call two SQL functions registered on the connection
(``register_functions``); a tool that writes ``messages`` without them fails loudly
instead of leaving the index stale.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata

# Scripts written without spaces between words: Han, kana, Thai, Lao, Khmer,
# Myanmar (with their combining marks, so a Thai run is not cut at its vowels).
_SPACELESS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana (+ phonetic extensions)
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\U00020000-\U0003134f"  # CJK extensions B–G
)
_SPACELESS_RUN = re.compile(f"[{_SPACELESS}]+")
_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits

# New messages are indexed a slice at a time by the server's sweep (about once a second),
# and all at once before a search; past INDEX_BACKLOG_MAX waiting, a commit indexes them
# (so a search never has more than that to catch up on). See the module docstring.
INDEX_SLICE = 512
INDEX_BACKLOG_MAX = 50_000

TRIGRAM = 3  # the trigram index finds parts of this many characters and more
# A last word of 2+ characters is a prefix, a shorter one whole. FTS5 reads all of a
# prefix query's matches before the first row: at 1M messages "sata*" (a word in 35% of
# them) took 63 ms. With a prefix index for 2 and 3 characters those read one list
# incrementally ("sat*": 0.8 ms); longer prefixes are spelt out as an OR of the terms
# they match (Query.words_with: 18 ms, most of it the term lookup). Each prefix length
# indexed costs ~35% of the text's size more (benchmarks/README.md).
PREFIXES = (2, 3)


def fold(text: str) -> str:
    """NFKC then case folding: full-width Ａ, ﬁ, ß and Σ compare as a, fi, ss, σ."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> str:
    """What the word index is given: the folded text, each character of a spaceless
    run a word of its own (so a part of 1–2 characters is found as a phrase)."""
    return _SPACELESS_RUN.sub(lambda run: " " + " ".join(run.group()) + " ", fold(text))


def spaceless(text: str) -> str:
    """What the trigram index is given: the spaceless runs, one per line ('' for none)."""
    return "\n".join(_SPACELESS_RUN.findall(fold(text)))


def register_functions(db: sqlite3.Connection) -> None:
    """The folding functions the index triggers call; before any write to messages."""
    db.create_function("qtchat_fold", 1, fold, deterministic=True)
    db.create_function("qtchat_words", 1, words, deterministic=True)
    db.create_function("qtchat_spaceless", 1, spaceless, deterministic=True)


_INDEX_SCHEMA = (
    """CREATE VIRTUAL TABLE messages_words USING fts5(
        text, content='', tokenize='unicode61 remove_diacritics 2', prefix='2 3')""",
    "CREATE VIRTUAL TABLE messages_cjk USING fts5(text, content='', tokenize='trigram')",
    # The word index's terms (a view of it, nothing stored): see Query.words_with.
    "CREATE VIRTUAL TABLE messages_words_terms USING fts5vocab(messages_words, 'row')",
    # Edits and deletes: one row per changed message (absent: never changed).
    """CREATE TABLE message_changes (
        seq INTEGER PRIMARY KEY,
        edited_ts TEXT,                -- the last edit's time
        deleted_by TEXT,               -- who deleted it (name as shown), NULL if not
        deleted_ts TEXT
    )""",
    """CREATE TRIGGER messages_index_remove AFTER DELETE ON messages
        WHEN old.text<>'' AND old.seq<=(SELECT value FROM meta WHERE key='search_upto') BEGIN
        INSERT INTO messages_words (messages_words, rowid, text)
            VALUES ('delete', old.seq, qtchat_words(old.text));
        INSERT INTO messages_cjk (messages_cjk, rowid, text)
            SELECT 'delete', old.seq, qtchat_spaceless(old.text)
            WHERE qtchat_spaceless(old.text)<>'';
    END""",
    """CREATE TRIGGER messages_changes_remove AFTER DELETE ON messages BEGIN
        DELETE FROM message_changes WHERE seq=old.seq;
    END""",
    # An edit or a delete: the old words out, the new ones (none for a tombstone) in.
    """CREATE TRIGGER messages_index_change AFTER UPDATE OF text ON messages
        WHEN old.seq<=(SELECT value FROM meta WHERE key='search_upto') BEGIN
        INSERT INTO messages_words (messages_words, rowid, text)
            SELECT 'delete', old.seq, qtchat_words(old.text) WHERE old.text<>'';
        INSERT INTO messages_cjk (messages_cjk, rowid, text)
            SELECT 'delete', old.seq, qtchat_spaceless(old.text)
            WHERE qtchat_spaceless(old.text)<>'';
        INSERT INTO messages_words (rowid, text)
            SELECT new.seq, qtchat_words(new.text) WHERE new.text<>'';
        INSERT INTO messages_cjk (rowid, text) SELECT new.seq, qtchat_spaceless(new.text)
            WHERE qtchat_spaceless(new.text)<>'';
    END""",
)


def create_index(db: sqlite3.Connection) -> None:
    """Schema version 1 → 2: the search index (and edits/deletes), built for the
    history already there. Needs ``register_functions`` on ``db``."""
    for statement in _INDEX_SCHEMA:
        db.execute(statement)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('search_upto', 0)")
    last = db.execute("SELECT max(seq) FROM messages").fetchone()[0]
    if last is not None:
        index_upto(db, 0, last)


def indexed_upto(db: sqlite3.Connection) -> int:
    """The highest ``seq`` the index has taken in (every message up to it is indexed)."""
    row = db.execute("SELECT value FROM meta WHERE key='search_upto'").fetchone()
    return 0 if row is None else row[0]


def index_upto(db: sqlite3.Connection, done: int, upto: int) -> None:
    """Index the messages after ``done`` up to ``upto``, in two statements, and move
    the mark. In the caller's transaction: a rollback undoes both together."""
    db.execute("INSERT INTO messages_words (rowid, text) SELECT seq, qtchat_words(text) "
               "FROM messages WHERE seq>? AND seq<=? AND text<>''", (done, upto))
    db.execute("INSERT INTO messages_cjk (rowid, text) SELECT seq, s FROM (SELECT seq, "
               "qtchat_spaceless(text) AS s FROM messages WHERE seq>? AND seq<=?) WHERE s<>''",
               (done, upto))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('search_upto', ?)", (upto,))


class Query:
    """A search query compiled to FTS5 MATCH strings: always plain words.

    Every token is one of ours, taken from the runs of letters and digits of the
    folded query and written as an FTS5 string (``"…"``), so ``"`` ``*`` ``NEAR(``
    ``OR`` ``AND`` ``-`` are text (``or`` is a word to find, punctuation is nothing).
    ``words``: the MATCH for the word index (None: no such words), where a spaceless
    part under 3 characters is a phrase of its characters; ``runs``: the MATCH for
    the trigram index, for parts of 3 or more (None: none). ``empty``: no letters or
    digits at all.
    """

    def __init__(self, text: str) -> None:
        folded = fold(text)
        runs = _SPACELESS_RUN.findall(folded)
        tokens = _WORD.findall(_SPACELESS_RUN.sub(" ", folded))
        self.empty = not tokens and not runs
        quoted = ['"' + token.replace('"', '""') + '"' for token in tokens]
        ends_in_word = bool(tokens) and not _ends_in_run(folded)
        if quoted and ends_in_word and len(tokens[-1]) >= PREFIXES[0]:
            quoted[-1] += " *"  # the last word as a prefix (the one still being typed)
        # Short spaceless parts go first: the prefix word, if any, stays last.
        quoted = ['"' + " ".join(run) + '"' for run in runs if len(run) < TRIGRAM] + quoted
        self.words = " AND ".join(quoted) or None
        # A longer last word: the store may spell its prefix out (see expand_prefix).
        self.prefix = tokens[-1] if quoted and quoted[-1].endswith("*") else None
        self._whole = quoted[:-1] if self.prefix else quoted
        long_runs = [run for run in runs if len(run) >= TRIGRAM]
        self.runs = " AND ".join('"' + run + '"' for run in long_runs) or None


    def words_with(self, terms: list[str]) -> str:
        """The word MATCH with the last word as any one of ``terms`` (index terms that
        begin with it) instead of a prefix: FTS5 reads a prefix query's matches all at
        once before the first row, but merges an OR of terms row by row, so a page of
        the newest costs a page, not the 350,000 rows of a common word."""
        either = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        return " AND ".join([*self._whole, f"({either})"])


EXPAND_MAX = 64  # terms a prefix is spelt out into; more, and FTS5's prefix query runs
EXPAND_FROM = max(PREFIXES) + 1  # shorter prefixes have their own index


def expand_prefix(db: sqlite3.Connection, prefix: str) -> list[str] | None:
    """The index's terms that begin with ``prefix`` (accents off, as the tokenizer
    stored them), or None when there are none or too many to spell out."""
    bare = "".join(c for c in unicodedata.normalize("NFD", prefix)
                   if not unicodedata.combining(c))
    terms = [row[0] for row in db.execute(
        "SELECT term FROM messages_words_terms WHERE term>=? AND term<? LIMIT ?",
        (bare, bare + "\U0010ffff", EXPAND_MAX + 1))]
    return terms if 0 < len(terms) <= EXPAND_MAX else None


def _ends_in_run(folded: str) -> bool:
    """Whether the query's last letter or digit is in a spaceless run."""
    last = _WORD.findall(folded)
    return bool(last) and bool(_SPACELESS_RUN.search(last[-1][-1]))
