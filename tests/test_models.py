"""MessageModel, MemberModel and RoomModel: ordering, de-duplication, pending echoes,
markers, and Qt model consistency (``qtmodeltester``).

``qtmodeltester.check`` leaves a QAbstractItemModelTester attached for the rest of
the test, so every change made after it is checked against the begin/end signals.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QDateTime, QModelIndex, QObject, Qt, QTimeZone
from PySide6.QtGui import QColor, QFont

from qtchat.gui.conversation_list import RoomModel, RoomRoles
from qtchat.gui.members import MemberModel, MemberRoles
from qtchat.gui.models import (
    ACTION_PREFIX,
    ConversationKind,
    MessageModel,
    MessageRoles,
    NoticeKind,
    RowKind,
    SendState,
    parse_timestamp,
    sender_color,
)
from qtchat.protocol.server_frames import Message

TS = "2024-05-01T12:34:56.789Z"


def broadcast(seq: int, sender: str = "alice", text: str | None = None,
              **extra: Any) -> Message:
    frame = {
        "type": "broadcast",
        "seq": seq,
        "ts": TS,
        "from": sender,
        "room": "lobby",
        "text": f"message {seq}" if text is None else text,
    }
    frame.update(extra)
    return Message.from_wire(frame)


def whisper(seq: int, sender: str, to: str, text: str = "psst", **extra: Any) -> Message:
    return Message.from_wire({"type": "whisper", "seq": seq, "ts": TS, "from": sender,
                              "to": to, "text": text, **extra})


def seqs(model: MessageModel) -> list[int | None]:
    return [model.index(r).data(MessageRoles.Seq) for r in range(model.rowCount())]


def kinds(model: MessageModel) -> list[int]:
    return [model.index(r).data(MessageRoles.Kind) for r in range(model.rowCount())]


class Recorder:
    """Records rowsInserted/rowsRemoved/rowsMoved/dataChanged of a model."""

    def __init__(self, model: MessageModel) -> None:
        self.inserted: list[tuple[int, int]] = []
        self.removed: list[tuple[int, int]] = []
        self.moved: list[tuple[int, int]] = []
        self.changed: list[int] = []
        model.rowsInserted.connect(lambda _p, first, last: self.inserted.append((first, last)))
        model.rowsRemoved.connect(lambda _p, first, last: self.removed.append((first, last)))
        model.rowsMoved.connect(
            lambda _p, start, _end, _d, row: self.moved.append((start, row))
        )
        model.dataChanged.connect(lambda top, _bottom, _roles=(): self.changed.append(top.row()))


@pytest.fixture
def owner(qapp) -> QObject:
    return QObject()


@pytest.fixture
def model(owner: QObject) -> MessageModel:
    return MessageModel(owner, self_name="me", conversation="lobby")


# ------------------------------------------------------------------ MessageModel


def test_model_with_every_row_kind_passes_the_model_tester(model, qtmodeltester):
    model.add_messages([broadcast(s) for s in range(1, 6)])
    model.add_notice("bob joined", NoticeKind.JOIN)
    model.add_message(whisper(6, "bob", "me"))
    model.set_unread_marker()
    model.add_message(broadcast(7, "me"))
    model.add_gap_marker()
    model.add_pending("local-1", "on its way")
    model.add_pending("local-2", "will fail")
    model.mark_failed("local-2")
    qtmodeltester.check(model)
    # Changes after the check are verified by the tester that stays attached.
    model.add_message(broadcast(9, "me", "on its way", id="local-1"))
    model.add_message(broadcast(8))
    model.set_unread_marker(2)
    model.clear_unread_marker()
    model.remove_pending("local-2")
    model.add_messages([broadcast(s) for s in (0, 10, 11)])
    qtmodeltester.check(model)
    assert model.rowCount(model.index(0)) == 0  # a list: valid parents have no rows


def test_roles_of_a_message(model):
    model.add_message(broadcast(41, "alice", "hi <b>there</b>"))
    index = model.index(0)
    assert index.data(MessageRoles.Kind) == RowKind.MESSAGE
    assert index.data(MessageRoles.Sender) == "alice"
    assert index.data(MessageRoles.Text) == "hi <b>there</b>"
    assert index.data(MessageRoles.Seq) == 41
    assert index.data(MessageRoles.IsOwn) is False
    assert index.data(MessageRoles.IsWhisper) is False
    assert index.data(MessageRoles.IsAction) is False
    assert index.data(MessageRoles.State) == SendState.SENT
    assert index.data(MessageRoles.Peer) == "lobby"
    assert index.data(MessageRoles.LocalId) is None
    assert index.data(MessageRoles.RowKey) == 41
    assert index.data(Qt.ItemDataRole.DisplayRole) == "alice: hi <b>there</b>"
    stamp = index.data(MessageRoles.Timestamp)
    assert isinstance(stamp, QDateTime)
    assert stamp.toTimeZone(QTimeZone.utc()).toString("yyyy-MM-ddThh:mm:ss.zzz") == (
        "2024-05-01T12:34:56.789"
    )
    assert index.data(MessageRoles.TimeText) == stamp.toLocalTime().toString("hh:mm")
    assert isinstance(index.data(MessageRoles.SenderColor), QColor)
    # The tooltip is ours alone (Qt guesses rich text in tooltips).
    assert "<" not in index.data(Qt.ItemDataRole.ToolTipRole)
    assert set(model.roleNames()) >= {int(r) for r in MessageRoles}


def test_own_messages_are_recognised_by_name_or_flag(model):
    model.add_message(broadcast(1, "me"))
    model.add_message(broadcast(2, "alice"))
    model.add_message(broadcast(3, "alice"), own=True)
    assert [model.index(r).data(MessageRoles.IsOwn) for r in range(3)] == [True, False, True]


def test_duplicate_seq_is_dropped(model, qtbot):
    assert model.add_message(broadcast(10))
    assert model.add_message(broadcast(11))
    with qtbot.assertNotEmitted(model.rowsInserted):
        assert not model.add_message(broadcast(10, text="replayed"))
        assert model.add_messages([broadcast(10), broadcast(11), broadcast(11)]) == 0
    assert seqs(model) == [10, 11]
    assert model.index(0).data(MessageRoles.Text) == "message 10"
    # Duplicates inside one batch are dropped too.
    assert model.add_messages([broadcast(12), broadcast(12), broadcast(13)]) == 2
    assert seqs(model) == [10, 11, 12, 13]
    assert model.message_count() == 4


def test_pending_becomes_the_echoed_message_in_place(model, qtbot):
    model.add_message(broadcast(1))
    model.add_pending("abc", "hello", peer="lobby")
    index = model.index(1)
    assert index.data(MessageRoles.State) == SendState.SENDING
    assert index.data(MessageRoles.Seq) is None
    assert index.data(MessageRoles.LocalId) == "abc"
    assert index.data(MessageRoles.IsOwn) is True
    assert index.data(MessageRoles.Sender) == "me"
    assert model.pending("abc") is not None
    recorder = Recorder(model)
    with qtbot.assertNotEmitted(model.rowsInserted):
        assert model.add_message(broadcast(2, "me", "hello", id="abc"))
    assert model.rowCount() == 2
    assert recorder.changed == [1]
    index = model.index(1)
    assert index.data(MessageRoles.State) == SendState.SENT
    assert index.data(MessageRoles.Seq) == 2
    assert index.data(MessageRoles.IsOwn) is True
    assert model.pending("abc") is None and model.pending_entries() == []
    # A replay of the same message later changes nothing.
    assert not model.add_message(broadcast(2, "me", "hello", id="abc"))
    assert model.rowCount() == 2


def test_rows_carrying_files_are_found_without_walking_every_row(model):
    """What a transfer that moved repaints: the rows with files, where they are now
    (older history prepended moves them), the upload's row once, echoed or not."""
    photo = {"file": "f1", "name": "cat.png", "size": 10, "type": "image/png"}
    model.add_messages([broadcast(10), broadcast(11, file=photo), broadcast(12)])
    model.add_pending("up", "", file={"name": "film.mkv", "size": 99})
    assert sorted((row, entry.seq) for row, entry in model.file_rows()) == \
        [(1, 11), (3, None)]
    model.add_messages([broadcast(s) for s in range(1, 6)])  # an older page, above
    assert sorted(row for row, _ in model.file_rows()) == [6, 8]
    model.add_message(broadcast(13, "me", "", id="up", file={**photo, "file": "f2"}))
    found = {entry.seq: row for row, entry in model.file_rows()}
    assert found == {11: 6, 13: 8}
    assert all(model.entry(row).file is not None for row in found.values())


def test_echo_after_others_moves_the_pending_row_to_its_seq(model):
    model.add_message(broadcast(1))
    model.add_pending("a", "first")
    model.add_pending("b", "second")
    model.add_message(broadcast(2))  # arrives while ours are pending: above them
    assert seqs(model) == [1, 2, None, None]
    recorder = Recorder(model)
    # The second send is echoed first (seq 3), then the first (seq 4).
    model.add_message(broadcast(3, "me", "second", id="b"))
    assert recorder.moved == [(3, 2)]
    assert seqs(model) == [1, 2, 3, None]
    model.add_message(broadcast(4, "me", "first", id="a"))
    assert seqs(model) == [1, 2, 3, 4]
    texts = [model.index(r).data(MessageRoles.Text) for r in range(4)]
    assert texts == ["message 1", "message 2", "second", "first"]
    assert model.pending_entries() == []


def test_echo_already_seen_in_a_replay_drops_the_pending_row(model):
    model.add_pending("x", "hi")
    model.add_messages([broadcast(5, "me", "hi", id="x")])  # e.g. the resume replay
    assert seqs(model) == [5]
    assert not model.add_message(broadcast(5, "me", "hi", id="x"))
    assert model.rowCount() == 1 and model.pending_entries() == []


def test_failed_and_retried_pending_rows(model, qtbot):
    model.add_pending("x", "hi")
    key_before = model.index(0).data(MessageRoles.RowKey)
    with qtbot.waitSignal(model.dataChanged):
        assert model.mark_failed("x")
    assert model.index(0).data(MessageRoles.State) == SendState.FAILED
    assert model.index(0).data(MessageRoles.RowKey) != key_before  # size changes: new key
    assert "failed" in model.index(0).data(Qt.ItemDataRole.DisplayRole)
    assert model.mark_sending("x")
    assert model.index(0).data(MessageRoles.State) == SendState.SENDING
    assert not model.mark_failed("unknown")
    with pytest.raises(ValueError, match="already pending"):
        model.add_pending("x", "again")
    assert model.remove_pending("x") and model.rowCount() == 0


def test_out_of_order_message_is_inserted_in_place(model):
    recorder = Recorder(model)
    model.add_messages([broadcast(1), broadcast(2), broadcast(5)])
    model.add_message(broadcast(3))
    assert seqs(model) == [1, 2, 3, 5]
    assert recorder.inserted[-1] == (2, 2)
    model.add_message(broadcast(0))
    assert seqs(model) == [0, 1, 2, 3, 5]
    assert model.oldest_seq() == 0 and model.newest_seq() == 5


def test_history_page_is_prepended_in_one_insert(model):
    model.add_messages([broadcast(s) for s in range(100, 150)])
    model.add_notice("you joined")
    recorder = Recorder(model)
    page = [broadcast(s) for s in range(50, 100)]
    assert model.add_messages(page) == 50
    assert recorder.inserted == [(0, 49)]
    assert seqs(model)[:51] == list(range(50, 101))
    assert model.oldest_seq() == 50
    assert model.index(model.rowCount() - 1).data(MessageRoles.Kind) == RowKind.NOTICE


def test_batch_is_sorted_and_inserted_one_block_per_gap(model):
    model.add_messages([broadcast(s) for s in (10, 20, 30)])
    recorder = Recorder(model)
    model.add_messages([broadcast(s) for s in (35, 12, 11, 25, 5, 31)])
    assert seqs(model) == [5, 10, 11, 12, 20, 25, 30, 31, 35]
    assert len(recorder.inserted) == 4  # [5] [11 12] [25] [31 35]
    assert sum(last - first + 1 for first, last in recorder.inserted) == 6


def test_backlog_is_appended_in_one_insert(model):
    model.add_message(broadcast(1))
    model.add_pending("p", "pending stays last")
    recorder = Recorder(model)
    model.add_messages([broadcast(s) for s in range(2, 10_002)])
    assert recorder.inserted == [(1, 10_000)]
    assert model.index(model.rowCount() - 1).data(MessageRoles.LocalId) == "p"
    assert model.newest_seq() == 10_001


def test_live_messages_of_one_event_loop_pass_are_one_insertion(model, qtmodeltester,
                                                                 qtbot):
    # A burst read in one slice of the client reaches the view as one insertion,
    # in order, each message once (the window's models coalesce live appends).
    model.coalesce_appends = True
    model.add_messages([broadcast(s) for s in range(1, 11)])
    qtmodeltester.check(model)
    recorder = Recorder(model)
    for s in range(11, 511):
        assert model.add_message(broadcast(s))
    assert not model.add_message(broadcast(300))  # a replayed duplicate: dropped at once
    assert model.has_seq(510) and model.newest_seq() == 510
    assert model.rowCount() == 10 and recorder.inserted == []  # told on the next pass
    with qtbot.waitSignal(model.rowsInserted, timeout=5000):
        pass
    assert recorder.inserted == [(10, 509)]
    assert seqs(model) == list(range(1, 511))


def _mixed_changes(model: MessageModel) -> None:
    model.add_message(broadcast(1))
    model.add_message(broadcast(2))
    model.add_membership("bob", "joined")
    model.add_message(broadcast(3))
    model.change_message(3, text="changed")
    model.add_message(broadcast(5))
    model.add_message(broadcast(4))  # late: goes in above 5
    model.add_message(broadcast(6))
    model.add_pending("p", "mine")
    model.add_message(broadcast(7))
    model.set_unread_marker()
    model.add_message(broadcast(8, "me", "mine", id="p"))
    model.add_message(broadcast(9))
    model.mark_receipt(9, "read")
    model.add_notice("carol left", NoticeKind.LEAVE)
    model.add_message(broadcast(10))
    model.add_gap_marker()
    model.add_message(broadcast(11))


def test_coalesced_rows_come_out_as_rows_added_one_by_one(owner, qtmodeltester, qapp):
    plain = MessageModel(owner, self_name="me")
    _mixed_changes(plain)
    coalesced = MessageModel(owner, self_name="me")
    coalesced.coalesce_appends = True
    qtmodeltester.check(coalesced)  # stays attached: every signal is checked
    _mixed_changes(coalesced)
    qapp.processEvents()
    assert coalesced.rowCount() == plain.rowCount()
    shown = [(e.kind, e.seq, e.text, e.flags) for e in coalesced.entries()]
    assert shown == [(e.kind, e.seq, e.text, e.flags) for e in plain.entries()]
    texts = [coalesced.index(r).data() for r in range(coalesced.rowCount())]
    assert texts == [plain.index(r).data() for r in range(plain.rowCount())]


def test_notices_follow_the_newest_message_and_stay_put(model):
    model.add_messages([broadcast(1), broadcast(5)])
    model.add_notice("connection lost", NoticeKind.CONNECTION_LOST)
    model.add_notice("reconnected", NoticeKind.RECONNECTED)
    model.add_message(broadcast(3))  # late and older: above the notices
    model.add_message(broadcast(6))  # newer: below them
    assert kinds(model) == [RowKind.MESSAGE] * 3 + [RowKind.NOTICE] * 2 + [RowKind.MESSAGE]
    assert seqs(model) == [1, 3, 5, None, None, 6]
    notice = model.index(3)
    assert notice.data(MessageRoles.NoticeKind) == NoticeKind.CONNECTION_LOST
    assert notice.data(Qt.ItemDataRole.DisplayRole) == "connection lost"
    assert notice.data(MessageRoles.SenderColor) is None
    model.add_pending("p", "mine")
    model.add_notice("bob left", NoticeKind.LEAVE)  # notices go above pending rows
    assert model.index(model.rowCount() - 1).data(MessageRoles.LocalId) == "p"


def test_unread_marker_is_single_movable_and_clearable(model, qtmodeltester):
    qtmodeltester.check(model)
    model.add_messages([broadcast(s) for s in range(1, 4)])
    assert model.unread_marker_row() == -1
    model.set_unread_marker()
    model.add_messages([broadcast(4), broadcast(5)])
    assert model.unread_marker_row() == 3
    model.set_unread_marker(4)  # moved, not duplicated
    assert model.unread_marker_row() == 4
    assert kinds(model).count(RowKind.UNREAD_MARKER) == 1
    model.set_unread_marker(4)  # no-op
    model.clear_unread_marker()
    assert model.unread_marker_row() == -1
    assert RowKind.UNREAD_MARKER not in kinds(model)
    model.clear_unread_marker()  # harmless twice


def test_gap_marker_sits_where_history_was_lost(model):
    model.add_messages([broadcast(1), broadcast(2)])
    model.add_gap_marker()
    model.add_messages([broadcast(40), broadcast(41)])  # the replay after a resume
    assert kinds(model)[2] == RowKind.GAP_MARKER
    assert "history" in model.index(2).data(Qt.ItemDataRole.DisplayRole).lower()


def test_actions_and_whispers(model):
    model.add_message(broadcast(1, "alice", ACTION_PREFIX + "waves"))
    model.add_message(broadcast(2, "alice", "/me", action=False))
    model.add_message(broadcast(3, "alice", "dances"), action=True)
    model.add_message(whisper(4, "bob", "me", "psst"))
    model.add_message(whisper(5, "me", "bob", "yes?"))
    rows = [model.index(r) for r in range(5)]
    assert [r.data(MessageRoles.IsAction) for r in rows] == [True, False, True, False, False]
    assert rows[0].data(MessageRoles.Text) == "waves"
    assert rows[0].data(Qt.ItemDataRole.DisplayRole) == "* alice waves"
    assert rows[1].data(MessageRoles.Text) == "/me"
    assert rows[3].data(MessageRoles.IsWhisper) and rows[4].data(MessageRoles.IsWhisper)
    assert rows[3].data(MessageRoles.Peer) == "me" and rows[4].data(MessageRoles.Peer) == "bob"
    assert rows[3].data(Qt.ItemDataRole.DisplayRole) == "← bob: psst"
    assert rows[4].data(Qt.ItemDataRole.DisplayRole) == "→ bob: yes?"


@pytest.mark.parametrize(
    "frame",
    [
        Message(seq=-1, ts=TS, sender="a", text="negative seq", room="lobby"),
        Message(seq="7", ts=TS, sender="a", text="string seq", room="lobby"),
        Message(seq=True, ts=TS, sender="a", text="bool seq", room="lobby"),
        Message(seq=7, ts=TS, sender=None, text="bad sender", room="lobby"),
        Message(seq=7, ts=TS, sender="a", text=None, room="lobby"),
        {"type": "broadcast", "seq": 7, "ts": TS, "from": "a", "text": "a dict, not a Message"},
        None,
    ],
)
def test_malformed_frames_raise_alone_and_are_skipped_in_batches(model, frame, caplog):
    with pytest.raises(ValueError):
        model.add_message(frame)
    with caplog.at_level(logging.WARNING, logger="qtchat.gui.models"):
        assert model.add_messages([broadcast(1), frame, broadcast(2)]) == 2
    assert seqs(model) == [1, 2]
    assert "malformed" in caplog.text


def test_bad_timestamp_falls_back_to_now(model):
    model.add_message(broadcast(1, ts="yesterday-ish"))
    stamp = model.index(0).data(MessageRoles.Timestamp)
    assert abs(stamp.secsTo(QDateTime.currentDateTime())) < 3600
    assert parse_timestamp("2024-05-01T12:34:56.789Z") == 1714566896789
    assert parse_timestamp("2024-05-01T12:34:56.789") == 1714566896789  # naive = UTC


def test_every_stored_row_is_a_row_and_older_ones_go_in_place(owner, qtmodeltester):
    # No tail window any more: the view lays out only what is on screen.
    model = MessageModel(owner)
    qtmodeltester.check(model)
    model.add_messages([broadcast(s) for s in range(100, 1100)])
    model.add_pending("p", "mine")
    assert model.rowCount() == model.stored_count() == 1001
    assert model.row_of_seq(100) == 0 and model.row_of_seq(1099) == 999
    model.add_messages([broadcast(s) for s in range(1, 100)])  # an older page
    assert model.rowCount() == 1100 and model.row_of_seq(1) == 0
    assert model.index(model.rowCount() - 1).data(MessageRoles.LocalId) == "p"  # still last
    model.add_message(broadcast(0))
    assert model.oldest_seq() == 0 and model.row_of_seq(0) == 0


def test_hundred_thousand_messages(owner):
    model = MessageModel(owner)
    for start in range(0, 100_000, 10_000):
        model.add_messages([broadcast(s, text="x" * 40) for s in range(start, start + 10_000)])
    assert model.rowCount() == 100_000 == model.message_count()
    assert model.oldest_seq() == 0 and model.newest_seq() == 99_999
    model.add_message(broadcast(50_000))  # still a duplicate
    model.add_message(broadcast(100_000))
    assert model.row_of_seq(100_000) == 100_000
    # Sender strings are stored once per model, not once per message.
    assert len({id(entry.sender) for entry in model.entries()}) == 1


# One operation of the property test below: (what, seqs).
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("one"), st.lists(st.integers(0, 60), min_size=1, max_size=1)),
        st.tuples(st.just("batch"), st.lists(st.integers(0, 60), max_size=15)),
        st.tuples(st.just("notice"), st.just([])),
        st.tuples(st.just("pending"), st.lists(st.integers(0, 60), min_size=1, max_size=1)),
        st.tuples(st.just("marker"), st.just([])),
    ),
    max_size=25,
)


@pytest.mark.parametrize("coalesce", [False, True])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=_operations)
def test_any_arrival_order_gives_sorted_unique_rows(qapp, operations, coalesce):
    owner = QObject()
    model = MessageModel(owner, self_name="me")
    model.coalesce_appends = coalesce
    seen: set[int] = set()
    pending: dict[str, int] = {}
    for what, numbers in operations:
        if what == "one":
            model.add_message(broadcast(numbers[0]))
            seen.add(numbers[0])
        elif what == "batch":
            model.add_messages([broadcast(n) for n in numbers])
            seen.update(numbers)
        elif what == "notice":
            model.add_notice("n")
        elif what == "marker":
            model.set_unread_marker()
        else:  # a pending row now; its echo with a fresh seq later in the run
            local_id = f"l{len(pending)}"
            model.add_pending(local_id, "mine")
            pending[local_id] = 100 + numbers[0] + len(pending) * 100
    for local_id, seq in pending.items():
        model.add_message(broadcast(seq, "me", "mine", id=local_id))
        seen.add(seq)
    qapp.processEvents()  # coalesced live rows are told to Qt on the next pass
    entries = list(model.entries())
    stored = [e.seq for e in entries if e.seq is not None]
    assert stored == sorted(seen)
    assert [e.key for e in entries] == sorted(e.key for e in entries)
    assert model.rowCount() == len(entries)
    assert model.pending_entries() == []
    assert sum(e.kind == RowKind.UNREAD_MARKER for e in entries) <= 1
    assert model.oldest_seq() == (min(seen) if seen else None)
    assert model.newest_seq() == (max(seen) if seen else None)


def test_clear_forgets_everything(model):
    model.add_messages([broadcast(1), broadcast(2)])
    model.add_pending("p", "x")
    model.set_unread_marker()
    model.clear()
    assert model.rowCount() == 0 and model.newest_seq() is None
    assert model.unread_marker_row() == -1 and model.pending("p") is None
    assert model.add_message(broadcast(1))  # no longer a duplicate


def test_sender_colour_is_stable_and_readable():
    assert sender_color("Alice") == sender_color("alice") == sender_color("ALICE")
    assert sender_color("alice") != sender_color("bob")

    def luminance(color: QColor) -> float:
        def channel(c: float) -> float:
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        return (0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF())
                + 0.0722 * channel(color.blueF()))

    for name in ["alice", "bob", "carol", "dave", "ѕсоре", "名前", "x" * 32]:
        lum = luminance(sender_color(name))
        assert 1.05 / (lum + 0.05) >= 4.4  # on white
        assert (lum + 0.05) / 0.05 >= 4.4  # on black
        assert luminance(sender_color(name, dark=True)) > lum


# ------------------------------------------------------------------- MemberModel


def member_names(model: MemberModel) -> list[str]:
    return [model.index(r).data(MemberRoles.Name) for r in range(model.rowCount())]


def test_members_sorted_case_insensitively_with_delta_updates(owner, qtmodeltester, qtbot):
    members = MemberModel(owner)
    qtmodeltester.check(members)
    members.set_members(["carol", "Bob", "alice"], hosts=["carol"])
    assert member_names(members) == ["alice", "Bob", "carol"]
    with qtbot.waitSignal(members.rowsInserted) as blocker:
        assert members.add_member("Dave")
    assert blocker.args[1:] == [3, 3]
    assert members.add_member("aaron")
    assert not members.add_member("Bob")  # already there
    assert member_names(members) == ["aaron", "alice", "Bob", "carol", "Dave"]
    assert members.row_of("carol") == 3 and members.row_of("nobody") == -1
    assert "Dave" in members and "dave" not in members  # exact names, as shown
    with qtbot.waitSignal(members.rowsRemoved) as blocker:
        assert members.remove_member("alice")
    assert blocker.args[1:] == [1, 1]
    assert not members.remove_member("alice")
    assert members.names() == ["aaron", "Bob", "carol", "Dave"]
    qtmodeltester.check(members)


def test_member_host_flag(owner, qtmodeltester):
    members = MemberModel(owner)
    members.set_members(["alice", "bob"], hosts=["alice", "ghost"])
    qtmodeltester.check(members)
    host = members.index(members.row_of("alice"))
    assert host.data(MemberRoles.IsHost) is True
    assert host.data(Qt.ItemDataRole.DisplayRole) == "alice (host)"
    assert members.index(members.row_of("bob")).data(Qt.ItemDataRole.DisplayRole) == "bob"
    assert not members.is_host("ghost")  # hosts are only members
    assert members.set_host("bob") and members.is_host("bob")
    assert members.set_host("alice", False) and not members.is_host("alice")
    assert not members.set_host("nobody")
    members.add_member("carol", host=True)
    assert members.is_host("carol")
    assert isinstance(host.data(MemberRoles.NameColor), QColor)


# --------------------------------------------------------------------- RoomModel


def test_rooms_with_unread_counts(owner, qtmodeltester, qtbot):
    rooms = RoomModel(owner)
    qtmodeltester.check(rooms)
    rooms.add("zeta")
    rooms.add("lobby")
    rooms.add("Alpha")
    rooms.add("bob", ConversationKind.PRIVATE)
    assert rooms.add("zeta") == rooms.row_of("zeta")  # idempotent
    assert rooms.conversations() == [
        ("lobby", ConversationKind.ROOM),
        ("Alpha", ConversationKind.ROOM),
        ("zeta", ConversationKind.ROOM),
        ("bob", ConversationKind.PRIVATE),
    ]
    with qtbot.waitSignal(rooms.dataChanged):
        assert rooms.increment_unread("lobby") == 1
    rooms.increment_unread("lobby", by=2)
    lobby = rooms.index(rooms.row_of("lobby"))
    assert lobby.data(Qt.ItemDataRole.DisplayRole) == "lobby (3)"
    assert lobby.data(RoomRoles.Unread) == 3
    assert lobby.data(RoomRoles.Kind) == ConversationKind.ROOM
    assert lobby.data(Qt.ItemDataRole.FontRole).bold()
    # A first whisper from someone opens their conversation; a room "carol" is apart.
    assert rooms.increment_unread("carol", ConversationKind.PRIVATE) == 1
    rooms.add("carol")
    assert rooms.unread("carol", ConversationKind.PRIVATE) == 1 and rooms.unread("carol") == 0
    assert rooms.total_unread() == 4
    rooms.clear_unread("lobby")
    assert lobby.data(Qt.ItemDataRole.DisplayRole) == "lobby"
    assert not isinstance(lobby.data(Qt.ItemDataRole.FontRole), QFont)
    assert rooms.remove("zeta") and not rooms.remove("zeta")
    assert rooms.row_of("zeta") == -1
    qtmodeltester.check(rooms)
    assert rooms.rowCount(QModelIndex()) == 5


def test_a_notice_before_any_message_stays_below_the_history_pages(model):
    # "You joined" comes before the room's history: older pages go above it, and
    # live messages below it (it used to sort as seq 0 and stay pinned on top).
    model.add_notice("You joined")
    model.add_messages([broadcast(s) for s in range(351, 401)])  # the recent history
    model.add_messages([broadcast(s) for s in range(251, 351)])  # an older page
    model.add_message(broadcast(401))  # someone speaks
    model.add_messages([broadcast(s) for s in range(151, 251)])  # another older page
    rows = [model.entry(r) for r in range(model.rowCount())]
    notice_row = next(r for r, e in enumerate(rows) if e.kind == RowKind.NOTICE)
    assert [e.seq for e in rows[:notice_row]] == list(range(151, 401))
    assert [e.seq for e in rows[notice_row + 1 :]] == [401]
