"""Byte transports for the server's connections: what a socket must do, two ways.

``ChatServer`` talks to a ``Transport``: ``read_all``, ``write``, ``pending``
(bytes not yet handed to the kernel), ``kernel_unsent``, ``close`` (after what is
owed is sent), ``abort``; it learns of input, drain and end through the three
callbacks it installs.

- ``RawTransport``: a plain TCP connection as the descriptor ``QTcpServer``
  accepted, watched by ``QSocketNotifier``s and read and written with ``recv``
  and ``send``. It writes straight to the kernel and buffers only what the
  kernel refuses, and it costs about a fifth of the memory of a ``QTcpSocket``,
  whose 16 KiB read chunk stays allocated for the life of every connection:
  that is what lets a thousand idle clients cost a few KiB each.
- ``QtTransport``: a ``QTcpSocket``/``QSslSocket`` (TLS needs Qt's TLS stack).

Both are driven by the Qt event loop; nothing here blocks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable

from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Slot
from PySide6.QtNetwork import QAbstractSocket, QSslSocket, QTcpSocket

log = logging.getLogger(__name__)

try:  # POSIX: the kernel's count of unsent bytes
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):
    _TIOCOUTQ = None

_READ_CHUNK = 256 * 1024
_SEND_BUFFER = 256 * 1024  # a small kernel buffer keeps "unsent bytes" countable
_GONE = (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTUNREACH)


def _kernel_unsent(descriptor: int) -> int:
    """Bytes the operating system still holds for this socket (Linux SIOCOUTQ)."""
    if descriptor < 0 or _TIOCOUTQ is None:
        return 0  # elsewhere our own count is all there is
    try:
        buf = fcntl.ioctl(descriptor, _TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, "little")


class Transport(QObject):
    """What a server connection needs from a socket (see the module docstring).

    Callbacks (set by the owner): ``on_readable()``, ``on_drained()`` (everything
    handed over reached the kernel), ``on_peer_finished()`` (the peer will send no
    more, but may still read: answer what it sent, then ``close``), and
    ``on_closed(reason: str)`` (once; the connection is gone).
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.on_readable: Callable[[], None] = _nothing
        self.on_drained: Callable[[], None] = _nothing
        self.on_peer_finished: Callable[[], None] = _nothing
        self.on_closed: Callable[[str], None] = _ignore_reason
        self.closed = False
        self.peer = "?"
        # The socket's own send(), while handing bytes straight to the kernel is all a
        # write() would do (nothing buffered, not closing); None otherwise. The server's
        # fan-out calls it directly: one call per recipient instead of a write() each.
        self.direct_send: Callable[[bytes], int] | None = None

    def read_all(self) -> bytes:
        raise NotImplementedError

    def pause_reading(self) -> None:
        """Stop waking the owner for input until ``resume_reading`` (TCP pushes back)."""

    def resume_reading(self) -> None:
        """Wake the owner for input again."""

    def write(self, data: bytes) -> int:
        """Hand ``data`` on; returns what is still not with the kernel (``pending``)."""
        raise NotImplementedError

    def pending(self) -> int:
        """Bytes written but not yet accepted by the kernel."""
        raise NotImplementedError

    def kernel_unsent(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Send what is owed, then close (the owner's sweep aborts a stuck close)."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def is_open(self) -> bool:
        return not self.closed


def _nothing() -> None:
    return None


def _ignore_reason(_reason: str) -> None:
    return None


class RawTransport(Transport):
    """A plain TCP connection on an accepted descriptor (see the module docstring)."""

    def __init__(self, descriptor: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        sock = socket.socket(fileno=descriptor)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        self._sock: socket.socket | None = sock
        self._fd = descriptor
        try:
            host, port = sock.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"
        self._out = bytearray()
        self._closing = False
        self.direct_send = sock.send
        self._read_notifier = QSocketNotifier(descriptor, QSocketNotifier.Type.Read, self)
        self._read_notifier.activated.connect(self._on_read_ready)
        self._write_notifier: QSocketNotifier | None = None

    @Slot()
    def _on_read_ready(self) -> None:
        self.on_readable()

    def read_all(self) -> bytes:
        """What is readable now, up to 256 KiB: one peer's flood is taken a slice per
        event-loop pass, so everyone else's reads and writes go on in between. An end
        of stream is reported (on_closed) only after the caller has handled the bytes
        read with it: a ``bye`` and a close arrive together."""
        sock = self._sock
        if sock is None:
            return b""
        try:
            data = sock.recv(_READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            self._read_notifier.setEnabled(False)
            reason = "disconnected" if exc.errno in _GONE else "error"
            QTimer.singleShot(0, self, lambda: self._lost(reason))
            return b""
        if not data:  # the peer half-closed: it may still read our answers
            self._read_notifier.setEnabled(False)  # no more wake-ups for this end of stream
            QTimer.singleShot(0, self, self._peer_finished)
        return data

    def _peer_finished(self) -> None:
        if self._sock is not None:
            self.on_peer_finished()

    def pause_reading(self) -> None:
        if self._sock is not None:
            self._read_notifier.setEnabled(False)

    def resume_reading(self) -> None:
        if self._sock is not None:
            self._read_notifier.setEnabled(True)

    def write(self, data: bytes) -> int:
        out = self._out
        if out:  # keep order: the kernel takes the backlog first
            out += data
            return len(out)
        sock = self._sock
        if sock is None:
            return 0
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost("disconnected" if exc.errno in _GONE else "error")
            return 0
        if sent == len(data):  # the fan-out hot path: one call, one syscall
            return 0
        out += data[sent:]
        self.direct_send = None  # the backlog goes first
        self._want_write(True)
        return len(out)

    def _want_write(self, on: bool) -> None:
        if self._write_notifier is None:
            if not on:
                return
            self._write_notifier = QSocketNotifier(self._fd, QSocketNotifier.Type.Write, self)
            self._write_notifier.activated.connect(self._on_write_ready)
        self._write_notifier.setEnabled(on)

    @Slot()
    def _on_write_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sent = sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost("disconnected" if exc.errno in _GONE else "error")
            return
        if sent < len(self._out):
            del self._out[:sent]
            return
        self._out = bytearray()  # not emptied in place: that would keep its peak capacity
        self._want_write(False)
        if self._closing:
            self._finish_close()
            return
        self.direct_send = sock.send
        self.on_drained()

    def pending(self) -> int:
        return len(self._out)

    def kernel_unsent(self) -> int:
        return _kernel_unsent(self._fd if self._sock is not None else -1)

    def close(self) -> None:
        if self._sock is None:
            return
        self._closing = True
        self.direct_send = None
        if not self._out:
            self._finish_close()

    def _finish_close(self) -> None:
        sock = self._sock
        if sock is not None:
            # Unread input would make close() send a reset, which can destroy what we
            # just sent before the peer reads it: drain it, then FIN, then close.
            with contextlib.suppress(OSError):
                sock.recv(_READ_CHUNK)  # once: a peer that keeps sending gets its reset
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        self._release()
        self._report("closed")

    def abort(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # RST instead of FIN: drop what is unsent
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._release()
        self._report("aborted")

    def _lost(self, reason: str) -> None:
        self._release()
        self._report(reason)

    def _release(self) -> None:
        """Stop watching the descriptor before closing it (it may be reused at once)."""
        sock, self._sock = self._sock, None
        self.direct_send = None
        if sock is None:
            return
        self._read_notifier.setEnabled(False)
        if self._write_notifier is not None:
            self._write_notifier.setEnabled(False)
        self._out = bytearray()
        sock.close()

    def _report(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.on_closed(reason)


class QtTransport(Transport):
    """A ``QTcpSocket`` or ``QSslSocket`` (the TLS path).

    A ``QSslSocket`` holds what it was given in two places: the plain text not yet
    encrypted (``bytesToWrite``) and the encrypted bytes not yet with the kernel
    (``encryptedBytesToWrite``, its inner socket's buffer). The second is where a
    peer that stops reading piles up, so ``pending`` counts both: without it the
    send-queue cap never saw a TLS backlog grow. ``write`` hands the bytes on at
    once (``flush``: encrypt, then give the kernel what it takes), as
    ``RawTransport`` does, so what ``pending`` returns is what the kernel refused.
    """

    def __init__(self, qsocket: QTcpSocket, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.socket = qsocket
        qsocket.setParent(self)
        qsocket.setSocketOption(QAbstractSocket.SocketOption.LowDelayOption, 1)
        qsocket.setSocketOption(QAbstractSocket.SocketOption.SendBufferSizeSocketOption,
                                _SEND_BUFFER)
        qsocket.setReadBufferSize(_READ_CHUNK)
        self.peer = f"{qsocket.peerAddress().toString()}:{qsocket.peerPort()}"
        self._encrypted = isinstance(qsocket, QSslSocket)
        qsocket.readyRead.connect(self._on_ready_read)
        qsocket.disconnected.connect(self._on_disconnected)
        qsocket.errorOccurred.connect(self._on_error)
        qsocket.bytesWritten.connect(self._on_bytes_written)
        if self._encrypted:  # the kernel took encrypted bytes: maybe all of them now
            qsocket.encryptedBytesWritten.connect(self._on_bytes_written)

    @Slot()
    def _on_ready_read(self) -> None:
        self.on_readable()

    @Slot()
    def _on_disconnected(self) -> None:
        self._report("disconnected")

    @Slot(QAbstractSocket.SocketError)
    def _on_error(self, _error: QAbstractSocket.SocketError) -> None:
        self._report("disconnected")

    @Slot(int)
    def _on_bytes_written(self, _count: int) -> None:
        if not self.closed and self.pending() == 0:
            self.on_drained()

    def read_all(self) -> bytes:
        return self.socket.readAll().data()

    def write(self, data: bytes) -> int:
        if data and not self.closed:
            self.socket.write(data)
            self.socket.flush()
        return self.pending()

    def pending(self) -> int:
        socket = self.socket
        if self._encrypted:
            return socket.bytesToWrite() + socket.encryptedBytesToWrite()
        return socket.bytesToWrite()

    def kernel_unsent(self) -> int:
        return _kernel_unsent(int(self.socket.socketDescriptor()))

    def close(self) -> None:
        self.socket.disconnectFromHost()  # after Qt's buffer drains

    def abort(self) -> None:
        self.socket.abort()
        self._report("aborted")

    def is_open(self) -> bool:
        return not self.closed and \
            self.socket.state() != QAbstractSocket.SocketState.UnconnectedState

    def _report(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.on_closed(reason)
