"""An edit or a delete made while someone's resume is still replaying reaches them: once,
in order, whether the replay had already sent that message, had read it ahead with its
old text, or had not read it yet (PROTOCOL-FEATURES §7: "replays show the current text").

Driven through ``ServerCore`` with ``Net``: the resumer's kernel buffer is small
(``window``), so its replay stalls part way and the test edits while it does.
"""

from __future__ import annotations

import json
from typing import Any

from test_core_rules import FakeClient
from test_living_core import ALL, living_net

from qtchat.server.domain import ConnState

COUNT = 1200


def view(client: FakeClient) -> dict[int, dict[str, Any]]:
    """What the client shows after applying every frame in order: seq -> message. An
    ``edited``/``deleted`` for a message it does not have yet is a fault (it would be
    dropped and the message would stay as it was)."""
    shown: dict[int, dict[str, Any]] = {}
    for frame in client.frames:
        kind = frame["type"]
        if kind in ("broadcast", "whisper") and "seq" in frame:
            shown[frame["seq"]] = dict(frame)
        elif kind == "edited":
            assert frame["seq"] in shown, f"edited before its message: {frame}"
            shown[frame["seq"]].update(text=frame["text"], edited=frame["edited_ts"])
        elif kind == "deleted":
            assert frame["seq"] in shown, f"deleted before its message: {frame}"
            shown[frame["seq"]].update(text="", deleted={"by": frame["by"],
                                                         "ts": frame["ts"]})
    return shown


def stalled_resume(features: list[str] | None):
    """Ann posts COUNT messages (and whispers one to Rae) while Rae is away; Rae resumes
    with a small buffer: the replay is part way when this returns."""
    net = living_net(send_queue_bytes=128 * 1024)  # a replay turn budget of 64 KB
    ann = net.registered("Ann", features=ALL)
    rae = net.registered("Rae", features=features)
    since = net.store.last_seq
    net.drop(rae)
    ann.send_raw(b"".join(json.dumps({"type": "broadcast", "text": f"{i} " + "x" * 150})
                          .encode() + b"\n" for i in range(COUNT // 2)))
    ann.send(type="whisper", to="Rae", text="psst: typo")
    ann.send_raw(b"".join(json.dumps({"type": "broadcast", "text": f"{i} " + "x" * 150})
                          .encode() + b"\n" for i in range(COUNT // 2, COUNT)))
    frames = ann.new()
    secret_seq = [f for f in frames if f["type"] == "whisper"][-1]["seq"]
    seqs = [f["seq"] for f in frames if f["type"] == "broadcast"
            and f["text"].endswith("x" * 150)]
    assert len(seqs) == COUNT
    back = net.client(window=16 * 1024)
    answer = back.register("Rae", resume=rae.session, since=since, features=features)
    assert answer["resumed"] is True and back.conn.state is ConnState.REPLAYING
    back.peek()
    return net, ann, back, seqs, secret_seq


def queued_upto(client: FakeClient) -> int:
    """The last seq the server has written towards the client (parsed, in its buffer, or
    held by the server's transport): the replay's position."""
    data = client.partial + client.unread + client.pending
    lines = [json.loads(line) for line in data.split(b"\n")[:-1] if line]
    return max(f["seq"] for f in [*client.frames, *lines]
               if f["type"] in ("broadcast", "whisper"))


def replay_to_the_end(net, back: FakeClient) -> None:
    turns = 0
    while back.conn.state is ConnState.REPLAYING:
        turns += 1
        assert turns < 1000
        back.read()
    back.read()
    back.send(type="ping", token="end")  # everything before the pong has arrived
    back.read()
    assert back.of("pong")[-1]["token"] == "end"


def test_edits_and_deletes_made_during_a_replay_reach_the_resumer_once_in_order():
    net, ann, back, seqs, secret_seq = stalled_resume(ALL)
    sent = queued_upto(back)
    assert seqs[10] < sent < seqs[-10]  # the replay is part way
    # One already sent, the next ones (read ahead by the store, not yet sent), one far
    # ahead (not read yet), the whisper to Rae; and deletes of the same three kinds.
    edits = {seqs[3]: "early, fixed", sent + 1: "next, fixed", sent + 2: "after, fixed",
             seqs[-5]: "late, fixed", secret_seq: "psst: fixed"}
    deletes = [seqs[4], sent + 3, seqs[-4]]
    for seq, text in edits.items():
        ann.send(type="edit", seq=seq, text=text)
    for seq in deletes:
        ann.send(type="delete", seq=seq)
    assert not [f for f in ann.new() if f["type"] == "error"]
    replay_to_the_end(net, back)

    shown = view(back)
    for seq, text in edits.items():
        assert shown[seq]["text"] == text and shown[seq]["edited"]
    for seq in deletes:
        assert shown[seq]["text"] == "" and shown[seq]["deleted"]["by"] == "Ann"
    assert len([s for s in seqs if s in shown]) == COUNT  # every message, tombstones too
    # Exactly once: each change came either in the replayed copy or as one frame after it.
    for seq in (*edits, *deletes):
        copies = [f for f in back.frames if f.get("seq") == seq
                  and f["type"] in ("broadcast", "whisper")]
        changes = [f for f in back.frames if f.get("seq") == seq
                   and f["type"] in ("edited", "deleted")]
        assert len(copies) == 1
        changed_copy = bool(copies[0].get("edited") or copies[0].get("deleted"))
        assert changed_copy + len(changes) == 1, (seq, copies, changes)
    # The one sent before the edit was told by a frame; the far one came already edited.
    assert [f["type"] for f in back.frames if f.get("seq") == seqs[3]] == \
        ["broadcast", "edited"]
    assert [f["type"] for f in back.frames if f.get("seq") == seqs[-5]] == ["broadcast"]


def test_a_client_without_edit_replays_the_current_text_and_no_deleted_message():
    net, ann, back, seqs, _secret = stalled_resume(None)
    sent = queued_upto(back)
    ann.send(type="edit", seq=sent + 1, text="read ahead, fixed")
    ann.send(type="edit", seq=seqs[-3], text="late, fixed")
    ann.send(type="delete", seq=sent + 2)
    ann.send(type="delete", seq=seqs[-2])
    replay_to_the_end(net, back)
    shown = view(back)
    assert shown[sent + 1]["text"] == "read ahead, fixed"
    assert shown[seqs[-3]]["text"] == "late, fixed"
    assert sent + 2 not in shown and seqs[-2] not in shown  # no tombstones for it
    assert not back.of("edited") and not back.of("deleted")  # frames it never asked for
