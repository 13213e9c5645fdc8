"""Search of the history on the host (PROTOCOL-FEATURES.md §8), at the store: words
found whatever their case and accents, the last one as a prefix, CJK text by any part
of 3+ characters, the query always plain words, edits and deletes kept in step, and a
version 1 history searchable once migrated. The scope (rooms, own whispers) is the
caller's; the store must filter by it exactly."""

from __future__ import annotations

import sqlite3

import pytest
from test_store_migrations import make_v0_file

from qtchat.server.store import SCHEMA_VERSION, MessageStore

TS = "2026-01-01T00:00:00Z"


@pytest.fixture
def store():
    made = MessageStore(None)
    yield made
    made.close()


def say(store: MessageStore, text: str, room: str = "lobby", sender: str = "Alice",
        sid: int = 1) -> int:
    seq = store.add(ts=TS, bucket=room, room=room, sender=sender, sender_sid=sid, text=text)
    store.commit()
    return seq


def whisper(store: MessageStore, text: str, sid: int, to_sid: int) -> int:
    seq = store.add(ts=TS, bucket="", room=None, sender=f"s{sid}", sender_sid=sid, text=text,
                    recipient=f"s{to_sid}", recipient_sid=to_sid)
    store.commit()
    return seq


def found(store: MessageStore, query: str, rooms=("lobby",), **kw) -> list[int]:
    return [m.seq for m in store.search(query, rooms, **kw)[0]]


def test_words_match_whatever_their_case_accents_and_width(store):
    cafe = say(store, "Meet at the Café Über-Straße at noon")
    other = say(store, "nothing to see")
    assert found(store, "cafe") == [cafe]
    assert found(store, "CAFÉ") == [cafe]
    assert found(store, "uber strasse") == [cafe]  # ß folds to ss, Ü to u
    assert found(store, "ｎｏｏｎ") == [cafe]  # full-width letters (NFKC)
    assert found(store, "see") == [other]
    assert found(store, "cafe see") == []  # every word must match


def test_the_last_word_is_a_prefix_the_others_whole(store):
    seq = say(store, "deployment finished tonight")
    assert found(store, "deploy") == [seq]
    assert found(store, "finished ton") == [seq]
    assert found(store, "fin tonight") == []  # only the last word is a prefix


def test_cjk_text_is_found_by_any_part_of_three_or_more_characters(store):
    tokyo = say(store, "明日は東京タワーに行きます")
    mixed = say(store, "iPhone手机很好用")
    assert found(store, "東京タワー") == [tokyo]
    assert found(store, "タワーに行") == [tokyo]  # the middle of a run
    assert found(store, "京タワ") == [tokyo]
    assert found(store, "手机很") == [mixed]
    assert found(store, "iphone 很好用") == [mixed]
    assert found(store, "大阪タワー") == []
    assert found(store, "東京") == [tokyo]  # shorter than a trigram: still found (scan)


@pytest.mark.parametrize("query", ['"', '*', 'NEAR(', 'OR', 'AND', '-', 'a"b', 'x*',
                                   'NEAR(one two)', '"unbalanced', '-minus', 'one OR two',
                                   'text:one', '^one', 'one AND', '(one'])
def test_query_syntax_is_plain_text_and_never_an_error(store, query):
    say(store, "one two three")
    say(store, "or and near minus")
    store.search(query, ["lobby"])  # no sqlite3.OperationalError, whatever the query


def test_operators_are_words_and_punctuation_is_nothing(store):
    words = say(store, "this OR that and NEAR nothing")
    plain = say(store, "one two")
    assert found(store, "OR") == [words]  # a word like any other
    assert found(store, "one OR two") == []  # 'or' must be in the message too
    assert found(store, '"one" -two') == [plain]  # quotes and minus are not syntax
    assert found(store, "NEAR(one two)") == []  # 'near' must be in the message too
    assert found(store, "one*") == [plain]
    for nothing in ('"', "*", "-", "()", "  ", "!?", "_"):
        assert store.search(nothing, ["lobby"]) == ([], False)  # no letters or digits


def test_an_edit_is_found_by_its_new_words_only(store):
    seq = say(store, "the meeting is on tuesdya")
    assert store.edit_message(seq, "the meeting is on Wednesday", "2026-01-01T00:01:00Z")
    store.commit()
    assert found(store, "tuesdya") == []
    assert found(store, "wednesday") == [seq]
    assert found(store, "meeting") == [seq]
    assert store.changes([seq]) == {seq: ("2026-01-01T00:01:00Z", None, None)}
    assert store.message_by_seq(seq).text == "the meeting is on Wednesday"


def test_a_deleted_message_leaves_a_tombstone_and_is_never_found(store):
    seq = say(store, "my password is hunter2 東京タワー")
    kept = say(store, "hunter2 is a meme")
    assert store.delete_message(seq, "Alice", "2026-01-01T00:02:00Z")
    store.commit()
    assert found(store, "hunter2") == [kept]
    assert found(store, "password") == []
    assert found(store, "東京タワ") == [] and found(store, "東京") == []
    assert store.message_by_seq(seq).text == ""  # the tombstone row stays
    assert store.changes([seq, kept]) == {seq: (None, "Alice", "2026-01-01T00:02:00Z")}
    # Neither edited back to life nor deleted twice.
    assert not store.edit_message(seq, "hunter2 again", TS)
    assert not store.delete_message(seq, "Bob", TS)
    assert not store.edit_message(9999, "no such", TS)
    assert found(store, "hunter2") == [kept]


def test_the_scope_is_the_rooms_given_and_the_callers_own_whispers(store):
    lobby = say(store, "secret plan", room="lobby")
    ops = say(store, "secret plan", room="ops")
    mine = whisper(store, "secret plan", sid=1, to_sid=2)
    theirs = whisper(store, "secret plan", sid=3, to_sid=4)
    to_me = whisper(store, "secret plan", sid=5, to_sid=1)
    assert found(store, "secret") == [lobby]
    assert found(store, "secret", rooms=("lobby", "ops")) == [ops, lobby]
    assert found(store, "secret", whisper_sid=1) == [to_me, mine, lobby]
    assert found(store, "secret", rooms=(), whisper_sid=1, with_sid=2) == [mine]
    assert found(store, "secret", rooms=()) == []
    assert theirs not in found(store, "secret", rooms=("lobby", "ops"), whisper_sid=1)


def test_results_are_newest_first_and_paged_with_before(store):
    seqs = [say(store, f"ping number {n}") for n in range(7)]
    page, more = store.search("ping", ["lobby"], limit=3)
    assert [m.seq for m in page] == seqs[:-4:-1] and more
    page, more = store.search("ping", ["lobby"], before=page[-1].seq, limit=3)
    assert [m.seq for m in page] == seqs[3:0:-1] and more
    page, more = store.search("ping", ["lobby"], before=page[-1].seq, limit=3)
    assert [m.seq for m in page] == [seqs[0]] and not more


def test_pruned_and_retired_messages_leave_the_index(tmp_path):
    store = MessageStore(tmp_path / "h.sqlite3", retention=100)
    for n in range(110):
        store.add(ts=TS, bucket="lobby", room="lobby", sender="A", sender_sid=1,
                  text=f"needle {n}")
    store.commit()
    assert store.count("lobby") == 100
    assert len(store.search("needle", ["lobby"], limit=50)[0]) == 50
    store.retire_room("lobby")
    store.commit()
    assert store.search("needle", ["lobby"]) == ([], False)
    store.close()
    db = sqlite3.connect(tmp_path / "h.sqlite3")  # the index holds no stale rows either
    assert db.execute("SELECT COUNT(*) FROM messages_words_docsize").fetchone()[0] == 0
    db.close()


def test_a_version_1_history_is_searchable_once_migrated(tmp_path):
    path = tmp_path / "history.sqlite3"
    make_v0_file(path)  # version 0 → 1 → 2: step 2 builds the index from what is there
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO messages VALUES (51, ?, 'lobby', 'lobby', 'Bob', 2, NULL, NULL, "
               "'Crème brûlée 東京タワー', NULL)", (TS,))
    db.commit()
    db.close()
    store = MessageStore(path)
    assert found(store, "creme brulee") == [51]
    assert found(store, "京タワ") == [51]
    assert found(store, "message", rooms=("lobby",), limit=50) == list(range(49, 0, -2))
    assert found(store, "psst", rooms=(), whisper_sid=1) == [50, 40, 30, 20, 10]
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    db.close()


def test_a_prefix_matching_many_words_still_finds_them_all(store):
    """Up to EXPAND_MAX words a prefix is spelt out as an OR of them; past it FTS5's own
    prefix query runs: the same messages either way."""
    from qtchat.server.search import EXPAND_MAX
    few = [say(store, f"plan{n}x ready") for n in range(3)]
    many = [say(store, f"draft{n}x ready") for n in range(EXPAND_MAX + 6)]
    assert found(store, "plan", limit=50) == few[::-1]
    assert found(store, "ready draft", limit=100) == many[::-1]
    assert found(store, "draft1", limit=100) == [s for n, s in enumerate(many)
                                                  if str(n).startswith("1")][::-1]


def test_messages_are_indexed_off_the_path_of_a_message_and_found_all_the_same(store):
    """A message is stored without touching the index (that cost 11× the row itself);
    the sweep indexes a slice at a time, and a search first catches up on the rest.
    An edit, a delete or a prune of a message not indexed yet leaves nothing stale."""
    first = say(store, "apples before the sweep")
    edited = say(store, "typo in bananna")
    gone = say(store, "cherries to be deleted")
    store.commit()
    assert store._search_upto == 0  # stored, not indexed
    assert store.edit_message(edited, "fixed banana", "2026-01-01T00:01:00Z")
    assert store.delete_message(gone, "Alice", "2026-01-01T00:02:00Z")
    store.commit()
    assert store.index_some(limit=2) == 2  # the sweep's slice
    store.commit()
    later = say(store, "apples after the sweep")
    store.commit()
    assert found(store, "apples") == [later, first]  # the search indexed the rest first
    assert found(store, "bananna") == [] and found(store, "banana") == [edited]
    assert found(store, "cherries") == []
    # Editing an indexed message takes its old words out of the index.
    assert store.edit_message(first, "pears now", "2026-01-01T00:03:00Z")
    store.commit()
    assert found(store, "apples") == [later] and found(store, "pears") == [first]
    store._db.execute("INSERT INTO messages_words(messages_words) VALUES('integrity-check')")


def test_the_index_mark_survives_a_restart(tmp_path):
    path = tmp_path / "history.sqlite3"
    store = MessageStore(path)
    seqs = [say(store, f"word{i} common") for i in range(5)]
    store.commit()
    store.index_some(limit=3)
    store.commit()
    store.close()
    store = MessageStore(path)
    assert store._search_upto == seqs[2]
    assert found(store, "common") == seqs[::-1]
    store.close()


def test_a_backlog_past_its_bound_is_indexed_a_slice_per_commit(store, monkeypatch):
    """Messages nobody has searched for yet wait for the sweep; past the bound, a commit
    indexes down to a slice under it, not the whole backlog at once (a 50,000-row catch-
    up held the server 1.4-10 s), and a search still finds everything."""
    from qtchat.server import search as fts

    monkeypatch.setattr(fts, "INDEX_BACKLOG_MAX", 300)
    monkeypatch.setattr(fts, "INDEX_SLICE", 50)
    for number in range(1000):
        store.add(ts=TS, bucket="lobby", room="lobby", sender="Alice", sender_sid=1,
                  text=f"needle {number}")
    store.commit()  # one pass of 1,000: indexed down to 250 waiting, no further
    assert store.last_seq - store._search_upto == 250
    waiting = []
    for number in range(1000, 1120):
        say(store, f"needle {number}")  # passes of one: back to 250 at the bound
        waiting.append(store.last_seq - store._search_upto)
    assert max(waiting) < 300 and waiting[48:51] == [299, 250, 251]
    assert len(found(store, "needle", limit=2000)) == 1120
