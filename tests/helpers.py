"""Test clients for the qtchat server: real sockets on 127.0.0.1.

``LineClient`` is a QTcpSocket client for tests driven by the Qt loop: every wait
is ``qtbot.waitUntil`` on frames that arrived, never a sleep. ``SyncClient`` is a
blocking Python socket for threads that put load on an in-process server while
the main thread runs the Qt loop (``run_threads``), or for talking to a server
in another process.

Both decode what the server sends with ``protocol.parse_server_frame``, so every
test also checks that the server's frames carry their required fields with the
right JSON types.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Slot
from PySide6.QtNetwork import QAbstractSocket, QTcpSocket

import qtchat
from qtchat import protocol as p

WAIT_MS = 10_000
_tokens = itertools.count(1)
_names = itertools.count(1)


# Every kind of garbage line (without its newline), with the error code the peer gets.
GARBAGE_LINES = [
    ("not utf-8", b'{"type":"ping","token":"\xff\xfe"}', "bad_frame"),
    ("overlong utf-8", b'{"type":"ping","token":"\xc0\xaf"}', "bad_frame"),
    ("encoded surrogate", b'{"type":"ping","token":"\xed\xa0\x80"}', "bad_frame"),
    ("not json", b"hello there", "bad_frame"),
    ("truncated json", b'{"type":"ping"', "bad_frame"),
    ("json array", b'["type","ping"]', "bad_frame"),
    ("json string", b'"ping"', "bad_frame"),
    ("json number", b"42", "bad_frame"),
    ("json null", b"null", "bad_frame"),
    ("no type", b'{"text":"hi"}', "bad_frame"),
    ("type not a string", b'{"type":7}', "bad_frame"),
    ("type null", b'{"type":null}', "bad_frame"),
    ("deep nesting", b'{"type":"ping","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}", "bad_frame"),
    ("deep nesting unclosed", b"[" * 60_000, "bad_frame"),
    ("NaN", b'{"type":"history","room":"lobby","before":NaN}', "bad_frame"),
    ("Infinity", b'{"type":"history","room":"lobby","limit":Infinity}', "bad_frame"),
    ("-Infinity", b'{"type":"ping","x":-Infinity}', "bad_frame"),
    ("huge float", b'{"type":"history","room":"lobby","before":1e999}', "bad_frame"),
    ("huge int", b'{"type":"history","room":"lobby","before":' + b"9" * 30 + b"}", "bad_frame"),
    ("int digits beyond python's limit", b'{"type":"ping","x":' + b"1" * 5000 + b"}",
     "bad_frame"),
    ("unknown type", b'{"type":"shout","text":"hi"}', "unknown_type"),
    ("missing text", b'{"type":"broadcast"}', "bad_frame"),
    ("missing name", b'{"type":"register","protocol":1}', "bad_frame"),
    ("missing protocol", b'{"type":"register","name":"a"}', "bad_frame"),
    ("missing to", b'{"type":"whisper","text":"x"}', "bad_frame"),
    ("missing room", b'{"type":"join"}', "bad_frame"),
    ("text a number", b'{"type":"broadcast","text":5}', "bad_frame"),
    ("text a list", b'{"type":"broadcast","text":["a"]}', "bad_frame"),
    ("text null", b'{"type":"broadcast","text":null}', "bad_frame"),
    ("name a number", b'{"type":"register","name":5,"protocol":1}', "bad_frame"),
    ("name an object", b'{"type":"register","name":{"a":1},"protocol":1}', "bad_frame"),
    ("name a list", b'{"type":"register","name":["a"],"protocol":1}', "bad_frame"),
    ("room a number", b'{"type":"join","room":1}', "bad_frame"),
    ("to a list", b'{"type":"whisper","to":[],"text":"x"}', "bad_frame"),
    ("protocol a string", b'{"type":"register","name":"a","protocol":"1"}', "bad_frame"),
    ("protocol a bool", b'{"type":"register","name":"a","protocol":true}', "bad_frame"),
    ("protocol a float", b'{"type":"register","name":"a","protocol":1.0}', "bad_frame"),
    ("since negative", b'{"type":"register","name":"a","protocol":1,"since":-1}', "bad_frame"),
    ("since a string", b'{"type":"register","name":"a","protocol":1,"since":"5"}', "bad_frame"),
    ("resume a number", b'{"type":"register","name":"a","protocol":1,"resume":5}', "bad_frame"),
    ("limit zero", b'{"type":"history","room":"lobby","limit":0}', "bad_frame"),
    ("limit too big", b'{"type":"history","room":"lobby","limit":201}', "bad_frame"),
    ("id a number", b'{"type":"broadcast","text":"x","id":5}', "bad_frame"),
    ("id too long", b'{"type":"broadcast","text":"x","id":"' + b"i" * 65 + b'"}', "bad_frame"),
    ("token an object", b'{"type":"ping","token":{}}', "bad_frame"),
    ("lone surrogate in id", b'{"type":"broadcast","text":"x","id":"\\ud800"}', "bad_frame"),
    ("lone surrogate in token", b'{"type":"ping","token":"\\udfff"}', "bad_frame"),
    ("lone surrogate in password",
     b'{"type":"register","name":"a","protocol":1,"password":"\\ud800"}', "bad_frame"),
    ("lone surrogate in text", b'{"type":"broadcast","text":"a\\ud800b"}', "invalid_text"),
    ("lone surrogate in type", b'{"type":"\\ud800"}', "bad_frame"),
    ("lone surrogate in an unknown type", b'{"type":"x\\udc00y","text":"t"}', "bad_frame"),
    ("only zero-width text", b'{"type":"broadcast","text":"\\u200b\\u2060 \\ufeff"}',
     "invalid_text"),
    ("empty text", b'{"type":"broadcast","text":""}', "invalid_text"),
    ("blank text", b'{"type":"broadcast","text":" \\t\\u3000 "}', "invalid_text"),
    ("text too long", b'{"type":"broadcast","text":"' + b"x" * 4001 + b'"}', "invalid_text"),
    # Texts that show as nothing, and controls that have no place in a message.
    *((f"text only {label}", b'{"type":"broadcast","text":"' + text + b'"}', "invalid_text")
      for label, text in [
          ("NUL", b"\\u0000"),
          ("controls", b"\\u0001\\u0007\\u001b\\u007f\\u0085\\u009b"),
          ("tag characters", b"\\udb40\\udc01\\udb40\\udc41\\udb40\\udc7f"),
          ("VS17 and VS256", b"\\udb40\\udd00\\udb40\\uddef"),
          ("shorthand format controls", b"\\ud82f\\udca0\\ud82f\\udca3"),
          ("braille blanks", b"\\u2800\\u2800 \\u2800"),
          ("Hangul fillers", b"\\u3164\\u115f\\u1160\\uffa0"),
          ("format characters", b"\\u2061\\u206a\\ufff9\\u180e\\u034f"),
          ("musical format controls", b"\\ud834\\udd73\\ud834\\udd7a"),
      ]),
    *((f"text with {label}", b'{"type":"broadcast","text":"a' + control + b'b"}', "invalid_text")
      for label, control in [
          ("NUL", b"\\u0000"), ("BEL", b"\\u0007"), ("ESC", b"\\u001b"),
          ("form feed", b"\\f"), ("vertical tab", b"\\u000b"), ("DEL", b"\\u007f"),
          ("a C1 control", b"\\u0085"), ("CSI", b"\\u009b"),
      ]),
    ("lone surrogate in name", b'{"type":"register","name":"a\\ud800","protocol":1}',
     "invalid_name"),
    ("empty room", b'{"type":"join","room":""}', "invalid_name"),
]


def unique_name(prefix: str = "user") -> str:
    """A name no other call returns (names compare by skeleton: digits keep them apart)."""
    return f"{prefix}{next(_names)}"


def frame_bytes(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":")).encode() + b"\n"


def matches(frame: dict[str, Any], kind: str | None, fields: dict[str, Any]) -> bool:
    if kind is not None and frame.get("type") != kind:
        return False
    return all(frame.get(key) == value for key, value in fields.items())


class LineClient(QObject):
    """A line client on QTcpSocket; frames are collected as they arrive.

    ``frames`` holds everything received; ``pos`` is the read cursor used by
    ``next``/``wait_for``/``sync``.
    """

    def __init__(self, qtbot, port: int, host: str = "127.0.0.1", *, connect: bool = True,
                 auto_pong: bool = False):
        super().__init__()
        self.auto_pong = auto_pong  # answer the server's pings, as a live client does
        self.qtbot = qtbot
        self.port = port
        self.host = host
        self.socket = QTcpSocket(self)
        self.decoder = p.FrameDecoder(parse=p.parse_server_frame, max_frame=p.MAX_FRAME_BYTES)
        self.frames: list[dict[str, Any]] = []
        self.errors: list[Exception] = []
        self.pos = 0
        self.closed = False
        self.name: str | None = None
        self.session: str | None = None
        self.socket.readyRead.connect(self._on_ready_read)
        self.socket.disconnected.connect(self._on_disconnected)
        if connect:
            self.connect()

    def connect(self) -> None:
        self.socket.connectToHost(self.host, self.port)
        self.qtbot.waitUntil(
            lambda: self.socket.state() == QAbstractSocket.SocketState.ConnectedState,
            timeout=WAIT_MS,
        )

    @Slot()
    def _on_ready_read(self) -> None:
        if not self.socket.isOpen():
            return
        for item in self.decoder.feed(self.socket.readAll().data()):
            if isinstance(item, Exception):
                self.errors.append(item)
                continue
            self.frames.append(item)
            if self.auto_pong and item["type"] == "ping":
                self.send({"type": "pong", "token": item.get("token")})

    @Slot()
    def _on_disconnected(self) -> None:
        self._on_ready_read()
        self.closed = True

    # --- sending ------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        self.send_raw(frame_bytes(frame))

    def send_raw(self, data: bytes) -> None:
        self.socket.write(data)
        self.socket.flush()

    # --- receiving ----------------------------------------------------------------------

    def unread(self) -> list[dict[str, Any]]:
        return self.frames[self.pos:]

    def next(self, timeout: int = WAIT_MS) -> dict[str, Any]:
        """The next unread frame, whatever it is."""
        self.qtbot.waitUntil(lambda: len(self.frames) > self.pos or self.closed, timeout=timeout)
        assert len(self.frames) > self.pos, f"connection closed; read so far: {self.frames}"
        frame = self.frames[self.pos]
        self.pos += 1
        return frame

    def wait_for(self, kind: str | None = None, timeout: int = WAIT_MS,
                 **fields: Any) -> dict[str, Any]:
        """The first unread frame of ``kind`` with these field values (others are skipped)."""
        found: list[int] = []

        def check() -> bool:
            for index in range(self.pos, len(self.frames)):
                if matches(self.frames[index], kind, fields):
                    found.append(index)
                    return True
            return self.closed

        self.qtbot.waitUntil(check, timeout=timeout)
        assert found, (f"closed before a {kind} {fields} arrived; "
                       f"unread: {self.frames[self.pos:]}")
        index = found[0]
        self.pos = index + 1
        return self.frames[index]

    def sync(self, timeout: int = WAIT_MS) -> list[dict[str, Any]]:
        """Round-trip a ping; return the unread frames that came before its pong.

        What the server sent before answering the ping has arrived by then, so an
        empty list proves that nothing (else) was sent.
        """
        token = f"sync{next(_tokens)}"
        start = self.pos
        self.send({"type": "ping", "token": token})
        self.wait_for("pong", timeout=timeout, token=token)
        return [f for f in self.frames[start:self.pos - 1] if f.get("token") != token]

    def wait_closed(self, timeout: int = WAIT_MS) -> None:
        self.qtbot.waitUntil(lambda: self.closed, timeout=timeout)

    # --- conversations ------------------------------------------------------------------

    def register(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
        """Send ``register`` and return the answer (``registered`` or a refusal)."""
        name = unique_name() if name is None else name
        self.send({"type": "register", "name": name, "protocol": 1, **extra})
        answer = self._answer()
        if answer["type"] == "registered":
            self.name = answer["name"]
            self.session = answer["session"]
        return answer

    def _answer(self) -> dict[str, Any]:
        def check() -> bool:
            return any(f["type"] in ("registered", "username_taken", "error")
                       for f in self.frames[self.pos:]) or self.closed

        self.qtbot.waitUntil(check, timeout=WAIT_MS)
        for index in range(self.pos, len(self.frames)):
            if self.frames[index]["type"] in ("registered", "username_taken", "error"):
                self.pos = index + 1
                return self.frames[index]
        raise AssertionError(f"closed without an answer to register: {self.frames}")

    def close(self) -> None:
        self.socket.abort()

    def bye(self) -> None:
        self.send({"type": "bye"})
        self.wait_closed()


def connect_clients(qtbot, port: int, count: int, prefix: str = "user", *,
                    auto_pong: bool = False) -> list[LineClient]:
    """``count`` registered LineClients; each has read everything up to its own register."""
    clients = []
    for _ in range(count):
        client = LineClient(qtbot, port, auto_pong=auto_pong)
        assert client.register(unique_name(prefix))["type"] == "registered"
        clients.append(client)
    for client in clients:
        client.sync()
        client.pos = len(client.frames)
    return clients


class SyncClient:
    """A blocking-socket client, for threads and for servers in other processes."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, rcvbuf: int | None = None,
                 timeout: float = 30.0, wrap: Callable[[socket.socket], Any] | None = None,
                 source: str | None = None) -> None:
        """``source``: the local address to connect from (127.0.0.2…: another person's
        address on the loopback, for rules keyed by address such as bans)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:
            self.sock.bind((source, 0))
        if rcvbuf is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if wrap is not None:  # e.g. TLS
            self.sock = wrap(self.sock)
        self.decoder = p.FrameDecoder(parse=p.parse_server_frame)
        self.pending: list[dict[str, Any]] = []
        self.closed = False
        self.session: str | None = None
        self.name: str | None = None

    def send(self, frame: dict[str, Any]) -> None:
        self.sock.sendall(frame_bytes(frame))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            self.closed = True
            raise ConnectionError("server closed the connection")
        for item in self.decoder.feed(data):
            if isinstance(item, Exception):
                raise item
            self.pending.append(item)

    def recv(self) -> dict[str, Any]:
        while not self.pending:
            self._fill()
        return self.pending.pop(0)

    def recv_until(self, kind: str, **fields: Any) -> tuple[dict[str, Any], list[dict]]:
        """Read until a matching frame; return it and the frames before it."""
        skipped = []
        while True:
            frame = self.recv()
            if matches(frame, kind, fields):
                return frame, skipped
            skipped.append(frame)

    def register(self, name: str, **extra: Any) -> dict[str, Any]:
        self.send({"type": "register", "name": name, "protocol": 1, **extra})
        while True:
            frame = self.recv()
            if frame["type"] in ("registered", "username_taken", "error"):
                if frame["type"] == "registered":
                    self.session = frame["session"]
                    self.name = frame["name"]
                return frame

    def sync(self) -> list[dict[str, Any]]:
        token = f"sync{next(_tokens)}"
        self.send({"type": "ping", "token": token})
        _pong, before = self.recv_until("pong", token=token)
        return before

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0): the unclean drop of a dead network."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def run_threads(qtbot, targets: Iterable[Callable[[], Any]],
                timeout: int = 60_000) -> list[Any]:
    """Run callables in threads while the Qt loop runs; re-raise the first failure."""
    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    threads = []
    for index, target in enumerate(targets):
        def body(index: int = index, target: Callable[[], Any] = target) -> None:
            try:
                results[index] = target()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        threads.append(thread)
    qtbot.waitUntil(lambda: all(not t.is_alive() for t in threads) or bool(errors),
                    timeout=timeout)
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(threads))]


# --- a server in a subprocess ----------------------------------------------------------------

SERVING = re.compile(r'^qtchat: serving "(?P<name>.*)" on (?P<host>[^\s]+):(?P<port>\d+)$')


# The qtchat these tests import (a worktree's, say): its subprocesses run the same code,
# not whatever copy the environment's editable install points at.
_SOURCE_ROOT = str(Path(qtchat.__file__).resolve().parents[1])  # the folder holding qtchat/


def _limit_open_files(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before it runs qtchat
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def qtchat_command() -> list[str]:
    """The installed ``qtchat`` command of this environment (its console script)."""
    script = Path(sys.executable).with_name("qtchat")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from qtchat.cli import main; sys.exit(main())"]


class ServeProcess:
    """``qtchat serve`` in a subprocess; ``port`` is read from its serving line."""

    def __init__(self, data_dir: Path, *args: str, port: int = 0,
                 open_files: tuple[int, int] | None = None) -> None:
        """``open_files``: the (soft, hard) RLIMIT_NOFILE the server starts with."""
        self.argv = self.command(data_dir, *args, port=port)
        limit = None if open_files is None else _limit_open_files(*open_files)
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        env=self.environment(), preexec_fn=limit)
        self.line = self.process.stdout.readline().rstrip("\n")
        match = SERVING.match(self.line)
        if match is None:
            self.process.kill()
            _out, err = self.process.communicate(timeout=30)
            raise AssertionError(f"no serving line: {self.line!r}; stderr: {err}")
        self.port = int(match["port"])
        self.pid = self.process.pid

    @staticmethod
    def command(data_dir: Path, *args: str, port: int = 0) -> list[str]:
        return [*qtchat_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
                "--data-dir", str(data_dir), "--no-announce", "--server-name", "proc", *args]

    @staticmethod
    def environment() -> dict[str, str]:
        """The tests' environment, running the qtchat they import."""
        path = os.pathsep.join(filter(None, (_SOURCE_ROOT, os.environ.get("PYTHONPATH"))))
        return dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1",
                    PYTHONPATH=path)

    def open_file_limits(self) -> tuple[int, int]:
        """The server's (soft, hard) limit on open files, as the kernel has them now."""
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
        raise AssertionError("no open-file limit in /proc")

    def log_line(self, timeout: float = 30.0) -> str:
        """The next line the server writes to stderr (its log); "" if none in time."""
        ready, _, _ = select.select([self.process.stderr], [], [], timeout)
        return self.process.stderr.readline() if ready else ""

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.terminate()
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=30)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a condition on another process's state (no Qt loop to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        select.select([], [], [], 0.01)


def chat_window(qtbot, client: Any, port: int, name: str, *, timeout: int = WAIT_MS) -> Any:
    """A shown ``ChatWindow`` for ``client`` once it has registered as ``name`` on the
    server at ``port``, made as ``AppController`` makes the first one."""
    from qtchat.client.chat_client import Endpoint
    from qtchat.gui.main_window import ChatWindow

    with qtbot.waitSignal(client.registered, timeout=timeout) as blocker:
        client.open(Endpoint("127.0.0.1", port), name)
    window = ChatWindow(client)
    qtbot.addWidget(window)
    window._on_registered(blocker.args[0])
    window.show()
    return window
