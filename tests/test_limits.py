"""Limits and their enforcement: what a misbehaving or slow client costs, and what it gets.

Over real sockets: the rules with a clock in them (registration deadline, idle ping and
timeout, the rate limit's one error a second) are tested on the core with a hand-advanced
clock in test_core_rules.py.
"""

from __future__ import annotations

import json

import pytest
from helpers import LineClient, ServeProcess, SyncClient, connect_clients, run_threads, wait_until

import qtchat.server.features.session


def test_max_clients_gets_server_full_then_close(qtbot, make_server):
    server = make_server(max_clients=2)
    first, second = connect_clients(qtbot, server.port, 2, "full", auto_pong=True)
    third = LineClient(qtbot, server.port)
    error = third.register("Third")
    assert (error["code"], error["ref"]) == ("server_full", "register")
    third.wait_closed()
    assert server.users() == [first.name, second.name]
    # Counted at register: a held session does not count, and its owner may come back.
    second.close()
    first.wait_for("user_left")
    fourth = LineClient(qtbot, server.port)
    assert fourth.register("Fourth")["type"] == "registered"
    back = LineClient(qtbot, server.port)
    assert back.register(second.name, resume=second.session)["resumed"] is True


def test_8_kib_before_register_then_closed(qtbot, server):
    client = LineClient(qtbot, server.port)
    pings = b"".join(b'{"type":"ping","token":"%04d"}\n' % i for i in range(400))  # 12 KB
    client.send_raw(pings)
    client.wait_closed()
    pongs = [f for f in client.frames if f["type"] == "pong"]
    assert 0 < len(pongs) < 400
    assert len(pongs) * len(b'{"type":"ping","token":"0000"}\n') <= 8 * 1024
    assert client.frames[-1]["type"] == "error"
    assert client.frames[-1]["code"] == "not_registered"


def test_frames_pipelined_behind_register_do_not_count_as_before_register(qtbot, server):
    watcher = connect_clients(qtbot, server.port, 1)[0]
    client = LineClient(qtbot, server.port)
    burst = [{"type": "register", "name": "Pipeliner", "protocol": 1},
             *({"type": "broadcast", "text": "p" * 500} for _ in range(40))]
    client.send_raw(b"".join(json.dumps(f).encode() + b"\n" for f in burst))  # 21 KB
    assert client.sync() and not client.closed
    assert sum(f["type"] == "broadcast" for f in watcher.sync()) == 40


def test_a_slow_reader_is_reset_without_slowing_the_others(qtbot, make_server):
    server = make_server(idle_timeout=60.0)
    sender, fast = connect_clients(qtbot, server.port, 2, "fast")
    slow = SyncClient(server.port, rcvbuf=4096)
    (registered,) = run_threads(qtbot, [lambda: slow.register("Slowpoke")])
    assert registered["type"] == "registered"
    fast.wait_for("user_joined", name="Slowpoke")
    count = 600  # about 2.5 MB: far more than the 1 MiB a slow reader may have queued
    text = "x" * 4000
    sender.send_raw(b"".join(json.dumps({"type": "broadcast", "text": text,
                                         "id": f"{i}"}).encode() + b"\n"
                             for i in range(count)))
    left = fast.wait_for("user_left", name="Slowpoke", timeout=30_000)
    assert left["reason"] == "timeout"
    # The fast reader got everything and still answers at once.
    qtbot.waitUntil(lambda: sum(f["type"] == "broadcast" for f in fast.frames) >= count,
                    timeout=30_000)
    fast.pos = len(fast.frames)
    assert fast.sync() == []
    assert "Slowpoke" not in server.users()
    with pytest.raises(OSError):  # the slow one was reset, not waited for
        while True:
            slow._fill()


def test_a_fast_clients_ping_is_answered_while_a_slow_reader_is_stuck(qtbot, make_server):
    server = make_server(send_queue_bytes=64 << 20)  # never cut off in this test
    sender, fast = connect_clients(qtbot, server.port, 2, "stuck")
    slow = SyncClient(server.port, rcvbuf=4096)
    run_threads(qtbot, [lambda: slow.register("Stuck")])
    fast.wait_for("user_joined", name="Stuck")
    sender.send_raw(b"".join(json.dumps({"type": "broadcast", "text": "y" * 4000}).encode()
                             + b"\n" for _ in range(300)))
    sender.wait_for("broadcast", timeout=30_000)
    for _ in range(5):
        fast.sync()
    assert not fast.closed
    assert "Stuck" in server.users()
    slow.close()


def test_a_reader_that_falls_behind_gets_everything_in_order_then_the_direct_path(
        qtbot, make_server):
    """What the kernel refuses waits in order; once it drains, sends go direct again."""
    server = make_server(send_queue_bytes=64 << 20)  # never cut off in this test
    sender, fast = connect_clients(qtbot, server.port, 2, "behind")
    slow = SyncClient(server.port, rcvbuf=4096)
    run_threads(qtbot, [lambda: slow.register("Behind")])
    fast.wait_for("user_joined", name="Behind")
    (conn,) = [c for c in server.core.connections()
               if c.session and c.session.name.display == "Behind"]
    transport = conn.handle
    assert transport.direct_send is not None
    count = 300  # about 1.2 MB: far more than a 4 KiB window and the kernel's buffer
    sender.send_raw(b"".join(json.dumps({"type": "broadcast", "text": f"m{i} " + "z" * 3990})
                             .encode() + b"\n" for i in range(count)))
    qtbot.waitUntil(lambda: sum(f["type"] == "broadcast" for f in fast.frames) >= count,
                    timeout=30_000)
    assert transport.pending() > 0 and transport.direct_send is None

    def read_all() -> list[str]:
        frame, before = slow.recv_until("broadcast", text=f"m{count - 1} " + "z" * 3990)
        return [f["text"].split()[0] for f in [*before, frame] if f["type"] == "broadcast"]

    (texts,) = run_threads(qtbot, [read_all])
    assert texts == [f"m{i}" for i in range(count)]
    qtbot.waitUntil(lambda: transport.direct_send is not None)
    sender.send({"type": "broadcast", "text": "caught up"})
    (frame,) = run_threads(qtbot, [lambda: slow.recv_until("broadcast", text="caught up")[0]])
    assert frame["from"] == sender.name
    slow.close()


def test_wrong_password_then_close_and_the_compare_is_constant_time(qtbot, make_server,
                                                                     monkeypatch):
    calls = []
    real = qtchat.server.features.session.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(qtchat.server.features.session.hmac, "compare_digest", spy)
    server = make_server(password="s3cret")
    for attempt in ({}, {"password": "wrong"}, {"password": "s3cre"}):
        client = LineClient(qtbot, server.port)
        error = client.register("Guest", **attempt)
        assert (error["code"], error["ref"]) == ("wrong_password", "register")
        client.wait_closed()
    client = LineClient(qtbot, server.port)
    assert client.register("Guest", password="s3cret")["type"] == "registered"
    assert len(calls) == 4 and calls[-1] == (b"s3cret", b"s3cret")


def test_1000_connect_then_reset_cycles_leak_no_file_descriptors(tmp_path):
    with ServeProcess(tmp_path / "data") as server:
        warm = SyncClient(server.port)
        warm.register("warm")
        warm.send({"type": "broadcast", "text": "warm up the store"})
        warm.recv_until("broadcast")
        warm.send({"type": "bye"})
        warm.close()
        baseline = _quiet_fd_count(server)
        for cycle in range(1000):
            client = SyncClient(server.port)
            kind = cycle % 10
            if kind == 0:
                client.register(f"cycle{cycle}")
            elif kind == 1:
                client.send_raw(b'{"type":"register","na')  # half a frame
            elif kind == 2:
                client.send_raw(b"\xff" * 100 + b"\n")
            client.reset()
        probe = SyncClient(server.port)
        probe.sync()  # accepted after every connection before it
        wait_until(lambda: server.open_fds() <= baseline + 1)
        probe.close()
        wait_until(lambda: server.open_fds() <= baseline)
        assert server.open_fds() == baseline
        probe = SyncClient(server.port)
        assert probe.register("probe")["type"] == "registered"


def _quiet_fd_count(server: ServeProcess) -> int:
    """The server's open files once every earlier connection has been dealt with.

    A probe connection is accepted after all that queued before it, so once it
    has its pong the earlier ones have been accepted (and their resets seen);
    then the count settles at what it is without the probe.
    """
    probe = SyncClient(server.port)
    probe.sync()
    with_probe = server.open_fds()
    probe.send({"type": "bye"})
    probe.close()
    wait_until(lambda: server.open_fds() < with_probe)
    return server.open_fds()


def test_serve_raises_its_open_file_limit_to_the_hard_limit(tmp_path):
    with ServeProcess(tmp_path / "data", open_files=(64, 256)) as server:
        assert server.open_file_limits() == (256, 256)
        assert SyncClient(server.port).register("Counted")["type"] == "registered"


def test_out_of_descriptors_the_server_waits_then_accepts_when_one_closes(tmp_path):
    """At the descriptor limit new connections wait in the backlog (no busy loop on
    accept: see benchmarks/limits_bench.py), the connected ones are served, a closed
    connection lets the next one in, and the condition is logged once."""
    limit = 48
    with ServeProcess(tmp_path / "data", "--register-timeout", "60", "--idle-timeout", "60",
                      open_files=(limit, limit)) as server:
        first = SyncClient(server.port)
        first.register("first")
        first.send({"type": "broadcast", "text": "the store has its files open"})
        first.recv_until("broadcast")
        inside = [first]
        while server.open_fds() < limit:
            client = SyncClient(server.port)
            assert client.register(f"in{len(inside)}")["type"] == "registered"
            inside.append(client)
        waiting = [SyncClient(server.port, timeout=20.0) for _ in range(3)]
        for index, client in enumerate(waiting):
            client.send({"type": "register", "name": f"waiting{index}", "protocol": 1})
        # The server says so (once) when accept first fails: it is at the limit now.
        assert "out of file descriptors" in server.log_line()
        inside[-1].send({"type": "broadcast", "text": "still here"})
        heard, _ = first.recv_until("broadcast", text="still here")
        assert heard["from"] == inside[-1].name
        for client in inside[:5]:
            client.sync()
        for index, client in enumerate(waiting):
            inside.pop().close()  # a descriptor comes free: the next in line gets it
            frame, _ = client.recv_until("registered")
            assert frame["name"] == f"waiting{index}"
            client.sync()
        first.sync()
        assert server.terminate() == 0
        log = server.process.stderr.read()
        assert "out of file descriptors" not in log, log
