"""A hosted room's server as a child process, so a busy room never stalls the window.

Hosting from the app runs the room as ``qtchat serve`` in a process of its own (the
same Python with ``-m qtchat``, or the PyInstaller bundle's own executable). The
window's process then only runs the window: a server in a thread of the app still
shared the interpreter lock with it, and a resume storm of 200 clients stalled the
host's window for 100–200 ms at a time.

``HostedServer`` is the window's whole view of that process: ``start`` it, wait for
``ready`` (then ``port`` and ``fingerprint`` are known, read from the lines the child
prints) or ``failed`` (its one-line reason), ``stop`` it, and hear ``died`` if it ends
on its own. The child never outlives the app: it is started with
``--stop-when-stdin-closes`` and a pipe on its stdin, which the kernel closes when
the app ends in any way, ``kill -9`` included; a normal stop closes that pipe and
sends SIGTERM, and kills the child if it has not gone after a grace period.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal, Slot

import qtchat
from qtchat.server.config import ServerConfig

log = logging.getLogger(__name__)

_SERVING = "qtchat: serving "
_FINGERPRINT = "qtchat: TLS certificate fingerprint (SHA-256) "
# Starting takes well under a second (imports, bind, SQLite; with TLS a certificate is
# made once); a busy machine or a one-file bundle unpacking itself can take far longer.
_START_TIMEOUT_MS = 60_000
# How long a stopping child has to say bye to everyone before it is killed: it quits
# 200 ms after the signal, then closes its history.
_STOP_GRACE_MS = 5_000
_STDERR_KEPT = 20

def serve_command() -> list[str]:
    """How to run ``qtchat serve`` from here: this Python with ``-m qtchat``, or, in a
    PyInstaller bundle (which has no Python to give ``-m``), the bundle itself."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "serve"]
    return [sys.executable, "-m", "qtchat", "serve"]


def _ip_versions(host: str) -> tuple[int, ...]:
    """What a server listening on ``host`` can be reached on (as ChatServer says)."""
    if host == "*":
        return (4, 6)
    try:
        return (ipaddress.ip_address(host).version,)
    except ValueError:
        return (4,)


def _exit_reason(status: QProcess.ExitStatus, code: int) -> str:
    if status == QProcess.ExitStatus.CrashExit:
        if os.name == "posix" and code > 0:
            try:
                return f"killed by {signal.Signals(code).name}"
            except ValueError:
                return f"killed by signal {code}"
        return "it crashed"
    return f"exit code {code}"


class HostedServer(QObject):
    """A hosted room's ``qtchat serve`` child, as the window sees it.

    Signals:
        ready(): listening; ``port``, ``fingerprint`` and ``ip_versions`` are set.
        failed(str): could not start; the child's one-line reason (no traceback).
        died(str): ended while serving without being asked to; a sentence saying so.
    """

    ready = Signal()
    failed = Signal(str)
    died = Signal(str)

    def __init__(self, config: ServerConfig, parent: QObject | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(parent)
        self.config = config
        self.port = 0
        self.fingerprint: str | None = None
        self.ip_versions: tuple[int, ...] = ()
        # What the child said on stderr before it listened (a history started over).
        self.notices: list[str] = []
        self._extra_args = extra_args
        self._stderr: deque[str] = deque(maxlen=_STDERR_KEPT)
        self._partial = {"out": b"", "err": b""}
        self._ready = False
        self._stopping = False
        self._ended = False
        self.process = QProcess(self)
        self.process.readyReadStandardOutput.connect(self._read_stdout)
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self._start_timer = QTimer(self)
        self._start_timer.setSingleShot(True)
        self._start_timer.setInterval(_START_TIMEOUT_MS)
        self._start_timer.timeout.connect(self._start_timed_out)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.setInterval(_STOP_GRACE_MS)
        self._kill_timer.timeout.connect(self.process.kill)

    # --- the app's side ------------------------------------------------------------

    def start(self) -> None:
        """Start the child; ``ready`` or ``failed`` follows (never both)."""
        try:
            options = self.config.to_serve_args()
        except ValueError as exc:
            reason = f"cannot host this room: {exc}"
            QTimer.singleShot(0, lambda: self._fail(reason))  # after the caller connected
            return
        command, *base = serve_command()
        environment = QProcessEnvironment.systemEnvironment()
        for key, value in self.config.serve_environment().items():
            environment.insert(key, value)
        environment.insert("PYTHONUNBUFFERED", "1")
        if not getattr(sys, "frozen", False):
            # The child runs the very qtchat this app runs, wherever it was started from.
            source = str(Path(qtchat.__file__).resolve().parents[1])
            paths = [source, *filter(None, [environment.value("PYTHONPATH")])]
            environment.insert("PYTHONPATH", os.pathsep.join(paths))
        self.process.setProcessEnvironment(environment)
        self.process.setProgram(command)
        self.process.setArguments([*base, *options, "--no-announce",
                                   "--stop-when-stdin-closes", *self._extra_args])
        self._start_timer.start()
        self.process.start()

    @property
    def pid(self) -> int:
        """The child's process id (0 when none runs)."""
        return int(self.process.processId())

    @property
    def is_listening(self) -> bool:
        return self._ready and not self._stopping and not self._ended

    def stop(self) -> None:
        """Ask the child to say bye to everyone and end; returns at once. It is
        killed if it has not ended after a grace period."""
        if self._stopping or self._ended:
            return
        self._stopping = True
        self._start_timer.stop()
        if self.process.state() == QProcess.ProcessState.NotRunning:
            return
        self.process.closeWriteChannel()  # the child's stdin ends: it stops (any OS)
        self.process.terminate()  # SIGTERM, the same stop, at once (POSIX)
        self._kill_timer.start()

    def wait_stopped(self, timeout_ms: int = _STOP_GRACE_MS) -> bool:
        """Stop (if not yet asked) and block until the child has ended, killing it after
        ``timeout_ms``; True if it ended by itself. The app calls it as it exits."""
        self.stop()
        if self.process.state() == QProcess.ProcessState.NotRunning:
            return True
        if self.process.waitForFinished(timeout_ms):
            return True
        log.warning("the room's server did not end in %d ms: killing it", timeout_ms)
        self.process.kill()
        self.process.waitForFinished(timeout_ms)
        return False

    # --- the child's side ----------------------------------------------------------

    def _lines(self, stream: str, data: bytes) -> list[str]:
        data = self._partial[stream] + data
        *lines, self._partial[stream] = data.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    @Slot()
    def _read_stdout(self) -> None:
        for line in self._lines("out", self.process.readAllStandardOutput().data()):
            if self._ready or self._stopping:
                continue
            if line.startswith(_SERVING):
                port = line.rsplit(":", 1)[-1]
                if port.isdigit():
                    self.port = int(port)
            elif line.startswith(_FINGERPRINT):
                self.fingerprint = line[len(_FINGERPRINT):].strip()
            # TLS: the fingerprint is printed just after the serving line.
            if self.port and (self.fingerprint or not self.config.tls):
                self._ready = True
                self._start_timer.stop()
                self.ip_versions = _ip_versions(self.config.host)
                self.ready.emit()

    @Slot()
    def _read_stderr(self) -> None:
        # Always drained: a child blocked writing its log would stop serving.
        for line in self._lines("err", self.process.readAllStandardError().data()):
            if not line.strip():
                continue
            self._stderr.append(line)
            if not self._ready and line.startswith("qtchat: "):
                self.notices.append(line.removeprefix("qtchat: "))
            elif self._ready:
                print(line, file=sys.stderr)  # the room's log, where the app's goes

    def _last_words(self) -> str:
        """The child's reason, in one line: its ``qtchat:`` sentence, or else the last
        line of whatever it printed (an exception's last line, not its traceback)."""
        said = [line for line in self._stderr if line.startswith("qtchat: ")]
        if said:
            return said[-1].removeprefix("qtchat: ")
        return self._stderr[-1].strip() if self._stderr else ""

    @Slot(int, QProcess.ExitStatus)
    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_stderr()
        self._ended = True
        self._start_timer.stop()
        self._kill_timer.stop()
        if self._stopping:
            return
        if not self._ready:
            reason = self._last_words() or _exit_reason(status, code)
            self._fail(reason)
            return
        words = self._last_words()
        why = _exit_reason(status, code) + (f": {words}" if words and code != 0 else "")
        self.died.emit(f"The room's server stopped unexpectedly ({why}); guests are "
                       "waiting to reconnect.")

    @Slot(QProcess.ProcessError)
    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self._stopping:
            self._ended = True
            self._start_timer.stop()
            self._fail(f"cannot start the room's server ({self.process.errorString()})")

    @Slot()
    def _start_timed_out(self) -> None:
        if self._ready or self._stopping:
            return
        self._stopping = True  # what follows is our doing, not the child's
        self.process.kill()
        self.failed.emit(f"the room's server did not start in {_START_TIMEOUT_MS // 1000} s")

    def _fail(self, reason: str) -> None:
        self._stopping = True
        self.failed.emit(reason)
