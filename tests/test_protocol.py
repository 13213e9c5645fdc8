"""The sans-IO protocol: frames, validation, the line decoder and its buffer cap."""

from __future__ import annotations

import json
import re

import pytest
from helpers import GARBAGE_LINES as GARBAGE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtchat import protocol as p

CAP = p.MAX_FRAME_BYTES


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def decode_all(data: bytes, chunk: int | None = None) -> list:
    decoder = p.FrameDecoder()
    if chunk is None:
        return decoder.feed(data)
    out = []
    for start in range(0, len(data), chunk):
        out.extend(decoder.feed(data[start:start + chunk]))
    return out


VALID = [
    p.Register(name="Alice", protocol=1),
    p.Register(name="Bob", protocol=1, password="pw", resume="abc", since=7),
    p.Broadcast(text="hello"),
    p.Broadcast(text="in a room", room="games", id="c-1"),
    p.Whisper(to="Bob", text="psst", id="w1"),
    p.Join(room="games"),
    p.Leave(room="games"),
    p.History(room="lobby", before=10, limit=200),
    p.Ping(token="t"),
    p.Ping(),
    p.Pong(token="x"),
    p.Bye(),
]


@pytest.mark.parametrize("frame", VALID, ids=lambda f: f.type)
def test_encode_then_decode_gives_the_same_frame(frame):
    data = p.encode(frame)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert p.FrameDecoder().feed(data) == [frame]


def test_whole_byte_by_byte_and_coalesced_decode_alike():
    data = b"".join(p.encode(frame) for frame in VALID)
    whole = decode_all(data)
    assert whole == VALID
    assert decode_all(data, chunk=1) == VALID
    assert decode_all(data, chunk=7) == VALID
    assert decode_all(data, chunk=len(data) // 2 + 1) == VALID


def test_a_bad_frame_does_not_strand_the_frames_behind_it():
    data = line({"type": "ping", "token": "a"}) + b"{nope\n" + line({"type": "ping", "token": "b"})
    first, error, last = p.FrameDecoder().feed(data)
    assert first == p.Ping(token="a")
    assert isinstance(error, p.RemoteProtocolError) and error.code == "bad_frame"
    assert not error.fatal
    assert last == p.Ping(token="b")


def test_blank_lines_and_crlf_are_harmless():
    data = b"\n\r\n   \n" + b'{"type":"ping","token":"x"}\r\n' + b"\n"
    assert p.FrameDecoder().feed(data) == [p.Ping(token="x")]


def test_unknown_fields_are_ignored_and_from_is_not_a_field():
    frame = p.FrameDecoder().feed(line({"type": "broadcast", "text": "hi", "from": "Mallory",
                                        "future": [1, 2]}))[0]
    assert frame == p.Broadcast(text="hi")
    assert "from" not in frame.to_dict()




@pytest.mark.parametrize(("raw", "code"), [(raw, code) for _, raw, code in GARBAGE],
                         ids=[label for label, _, _ in GARBAGE])
def test_garbage_becomes_a_remote_error_and_the_decoder_goes_on(raw, code):
    decoder = p.FrameDecoder()
    error, after = decoder.feed(raw + b"\n" + b'{"type":"ping"}\n')
    assert isinstance(error, p.RemoteProtocolError)
    assert error.code == code
    assert not error.fatal
    assert after == p.Ping()
    frame = error.to_frame()
    assert frame["type"] == "error" and frame["code"] == code and frame["message"]
    p.encode(frame)  # the answer itself is always sendable


def test_unknown_type_names_the_type_in_ref():
    (error,) = p.FrameDecoder().feed(b'{"type":"shout"}\n')
    assert error.code == "unknown_type" and error.ref == "shout"


def test_text_limits():
    assert p.Broadcast(text="x" * 4000).text == "x" * 4000
    assert p.Broadcast(text="😀" * 4000).text  # code points, not bytes
    with pytest.raises(p.LocalProtocolError) as exc:
        p.Broadcast(text="x" * 4001)
    assert exc.value.code == "invalid_text"


def test_constructors_validate():
    with pytest.raises(p.LocalProtocolError):
        p.Broadcast(text="")
    with pytest.raises(p.LocalProtocolError):
        p.Whisper(to="two words", text="x")
    with pytest.raises(p.LocalProtocolError):
        p.History(room="lobby", limit=500)
    with pytest.raises(p.LocalProtocolError):
        p.Register(name="Bob", protocol=1, since=2**63)


# --- the buffer cap ---------------------------------------------------------------------------


def test_a_frame_of_exactly_the_maximum_size_is_accepted():
    body = b'{"type":"ping","token":"t","pad":"'
    data = body + b"x" * (CAP - len(body) - 3) + b'"}\n'
    assert len(data) == CAP
    assert p.FrameDecoder().feed(data) == [p.Ping(token="t")]


def test_one_byte_more_is_frame_too_large_and_closes_the_decoder():
    body = b'{"type":"ping","token":"t","pad":"'
    data = body + b"x" * (CAP - len(body) - 2) + b'"}\n'
    assert len(data) == CAP + 1
    decoder = p.FrameDecoder()
    (error,) = decoder.feed(data + b'{"type":"ping"}\n')
    assert error.code == "frame_too_large" and error.fatal
    assert decoder.closed and decoder.buffered == 0
    assert decoder.feed(b'{"type":"ping"}\n') == []


@pytest.mark.parametrize("chunk", [1, 1000, CAP - 1, CAP, 1 << 20])
def test_an_endless_line_never_buffers_more_than_the_cap(chunk):
    decoder = p.FrameDecoder()
    fed = 0
    results = []
    while fed < 3 * CAP and not decoder.closed:
        size = min(chunk, 3 * CAP - fed)
        results.extend(decoder.feed(b"a" * size))
        fed += size
        assert decoder.buffered <= CAP - 1
    assert [r.code for r in results] == ["frame_too_large"]
    assert decoder.buffered == 0


def test_a_partial_line_then_its_end_across_many_feeds():
    data = p.encode(p.Broadcast(text="y" * 3000))
    decoder = p.FrameDecoder()
    out = []
    for byte in data:
        out.extend(decoder.feed(bytes([byte])))
        assert decoder.buffered < len(data)
    assert out == [p.Broadcast(text="y" * 3000)]
    assert decoder.buffered == 0


def test_a_long_line_trickled_byte_by_byte_is_linear():
    # 65,535 one-byte feeds: quadratic re-copying of the partial line would take
    # minutes here (and the per-test timeout would end it).
    decoder = p.FrameDecoder()
    body = b'{"type":"ping","pad":"' + b"z" * (CAP - 26) + b'"}\n'
    out = []
    for index in range(len(body)):
        out.extend(decoder.feed(body[index:index + 1]))
    assert out == [p.Ping()]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(min_value=2, max_value=512))
def test_arbitrary_bytes_never_raise_or_exceed_the_cap(chunks, cap):
    decoder = p.FrameDecoder(max_frame=cap)
    for chunk in chunks:
        for item in decoder.feed(chunk):
            assert isinstance(item, p.ClientFrame | p.RemoteProtocolError)
            if isinstance(item, p.RemoteProtocolError):
                assert item.code in p.ERROR_CODES
                p.encode(item.to_frame())
        assert decoder.buffered <= cap - 1


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from([*p.CLIENT_FRAME_TYPES, "other"])},
            optional={key: _json_values | st.text(max_size=40)
                      for key in ("name", "protocol", "text", "room", "to", "id", "token",
                                  "since", "before", "limit", "resume", "password")},
        ),
        max_size=8,
    ),
    st.data(),
)
def test_arbitrary_json_objects_decode_to_frames_or_errors_in_any_chunking(objects, data):
    raw = b"".join(json.dumps(obj).encode() + b"\n" for obj in objects)
    whole = p.FrameDecoder().feed(raw)
    assert len(whole) == len(objects)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    decoder = p.FrameDecoder()
    pieces = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        pieces.extend(decoder.feed(raw[start:end]))
    assert [_comparable(x) for x in pieces] == [_comparable(x) for x in whole]


def _comparable(item):
    if isinstance(item, p.RemoteProtocolError):
        return ("error", item.code)
    return item


# --- encoding and server frames -----------------------------------------------------------


def test_encode_is_compact_utf8_and_refuses_oversized_frames():
    assert p.encode({"type": "x", "text": "é"}) == '{"type":"x","text":"é"}\n'.encode()
    with pytest.raises(p.LocalProtocolError):
        p.encode({"type": "x", "text": "a" * CAP})
    with pytest.raises(ValueError):
        p.encode({"type": "x", "n": float("nan")})


def test_timestamps_are_utc_iso8601_with_milliseconds():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", p.utc_timestamp())


def test_server_frames_are_type_checked():
    ok = p.parse_server_frame(b'{"type":"user_joined","name":"a","room":"lobby","x":1}')
    assert ok["name"] == "a"
    assert p.parse_server_frame(b'{"type":"future_thing"}') == {"type": "future_thing"}
    for bad in (b'{"type":"broadcast","seq":"1","ts":"t","from":"a","room":"r","text":"x"}',
                b'{"type":"broadcast","seq":true,"ts":"t","from":"a","room":"r","text":"x"}',
                b'{"type":"registered","name":"a"}'):
        with pytest.raises(p.RemoteProtocolError):
            p.parse_server_frame(bad)


# --- typed server frames and Message ------------------------------------------------------


def test_every_server_frame_type_has_a_class_and_a_shape():
    from qtchat.protocol.server_frames import SERVER_FRAME_TYPES

    assert set(SERVER_FRAME_TYPES) == set(p.SERVER_FRAME_SHAPES)


def test_server_frames_round_trip_through_the_wire():
    from qtchat.protocol.server_frames import (
        ErrorFrame,
        Joined,
        Message,
        Registered,
        UserLeft,
        read_server_frame,
    )

    said = Message(seq=7, ts="2026-12-03T10:00:00.000Z", sender="Bob", text="hi", room="lobby")
    whispered = Message(seq=8, ts="2026-12-03T10:00:01.000Z", sender="Bob", text="psst",
                        to="Alice", id="c1")
    frames = [
        said, whispered,
        Joined(room="lobby", users=["Alice", "Bob"], history=[said]),
        Registered(name="Alice", session="s", users=["Alice"], rooms=["lobby"],
                   server={"name": "vm"}, features=[]),
        UserLeft(name="Bob", room="lobby", reason="quit"),
        ErrorFrame(code="rate_limited", message="slow down", ref="broadcast", id="c2"),
    ]
    for frame in frames:
        assert read_server_frame(frame.encode()) == frame
    assert b'"from":"Bob"' in said.encode()
    assert said.with_id("x").encode().endswith(b'"id":"x"}\n')


def test_a_hostile_server_frame_is_refused_before_it_is_built():
    from qtchat.protocol.server_frames import read_server_frame

    with pytest.raises(p.RemoteProtocolError, match="'seq'"):
        read_server_frame(b'{"type":"broadcast","seq":"7","ts":"t","from":"a",'
                          b'"room":"r","text":"x"}\n')
    assert read_server_frame(b'{"type":"from_a_newer_host","x":1}\n') is None


def test_any_client_frame_may_carry_an_id_and_register_may_offer_features():
    join = p.parse_client_frame(b'{"type":"join","room":"chess","id":"j1"}')
    assert join.id == "j1"
    reg = p.parse_client_frame(
        b'{"type":"register","name":"bob","protocol":1,"features":["chess","files"]}')
    assert reg.features == ["chess", "files"]
    with pytest.raises(p.RemoteProtocolError):
        p.parse_client_frame(b'{"type":"register","name":"bob","protocol":1,"features":"x"}')
    with pytest.raises(p.RemoteProtocolError):
        p.parse_client_frame(b'{"type":"join","room":"chess","id":"' + b"x" * 65 + b'"}')
