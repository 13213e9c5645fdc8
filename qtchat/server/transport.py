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

``Acceptor`` takes new connections off a listening socket (and stops, rather than
spin, when the process is out of descriptors); ``TlsHandshakes`` sees a TLS
connection through its handshake before it becomes a ``QtTransport``.

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
from PySide6.QtNetwork import QAbstractSocket, QSslConfiguration, QSslSocket, QTcpSocket

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


def raise_descriptor_limit() -> tuple[int, int] | None:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE) to the hard one.

    Each connection holds a descriptor, and the soft limit is often 1,024 while the
    hard one is far higher: a server left at the soft one refuses people it could
    serve. Returns the (soft, hard) limits now in force; None where there are none
    (Windows). Failing to raise it is no reason not to serve.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:  # Linux refuses "unlimited" (fs.nr_open caps it)
        target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.info("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft, hard
        log.info("open-file limit raised from %d to %d", soft, target)
        soft = target
    return soft, hard


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

    def fileno(self) -> int:
        """The socket's descriptor (-1 once closed): a download sends a file straight
        into it (``os.sendfile``) while nothing is buffered here."""
        return self._fd if self._sock is not None else -1

    def wait_writable(self) -> None:
        """Call ``on_drained`` once the kernel takes bytes again (after a write that the
        caller made itself, such as ``os.sendfile``, was refused)."""
        if self._sock is not None:
            self._want_write(True)

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


# --- accepting ---------------------------------------------------------------------------

# Errors of accept() that say this process (or the system) has no descriptor or memory to
# spare: the pending connection stays in the backlog, so trying again at once would spin.
_STARVED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_BATCH = 256  # connections taken per wake-up; the rest on the next pass
_ACCEPT_RETRY_MS = 1000  # out of descriptors: one accept() a second at most


class Acceptor(QObject):
    """Accepts connections on a listening descriptor and hands each one over.

    A ``QTcpServer`` still binds and listens (its addresses and error messages), but
    its accept loop cannot be trusted at the descriptor limit: once it has met an
    ``EAGAIN`` its socket engine keeps reporting that first error, so ``EMFILE``
    looks temporary and it calls ``accept`` again at full speed (~95 % of a core)
    until a descriptor comes free. This one stops watching the listener when
    ``accept`` fails for want of descriptors, logs it once, and tries again when the
    owner says one came free (``descriptor_freed``) or after a second.
    """

    def __init__(self, descriptor: int, on_descriptor: Callable[[int], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._on_descriptor = on_descriptor
        # A duplicate of the listener's descriptor, ours to close: the QTcpServer
        # closes its own, and a socket object must never close a number it does not own.
        borrowed = socket.socket(fileno=descriptor)
        try:
            self._sock: socket.socket | None = borrowed.dup()
        finally:
            borrowed.detach()
        self._sock.setblocking(False)
        self._notifier = QSocketNotifier(self._sock.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._on_ready)
        # "accepting"; "starved" (waiting for a descriptor); "probing" (watching again
        # since a retry, not yet a whole retry period without failing).
        self.state = "accepting"
        self._paused = False
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.timeout.connect(self._on_retry)

    @Slot()
    def _on_ready(self) -> None:
        sock = self._sock
        for _ in range(_ACCEPT_BATCH):
            if sock is None or self._paused:
                return
            try:
                accepted, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _STARVED:
                    self._starve(exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that one went before it was taken; the next may be fine
                log.warning("cannot accept connections: %s", exc)
                self._starve(exc)
                return
            self._on_descriptor(accepted.detach())

    def _starve(self, exc: OSError) -> None:
        self._notifier.setEnabled(False)
        if self.state == "accepting":
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                log.warning("out of file descriptors (limit %s): new connections wait "
                            "until one closes", _open_file_limit())
            elif exc.errno in _STARVED:
                log.warning("cannot accept connections (%s): they wait until it passes",
                            exc.strerror)
        self.state = "starved"
        self._retry.start(_ACCEPT_RETRY_MS)

    def descriptor_freed(self) -> None:
        """One of the owner's descriptors was closed: a waiting connection may fit now."""
        if self.state == "starved":
            self._retry.start(0)  # coalesced: many closes in one pass, one retry

    @Slot()
    def _on_retry(self) -> None:
        if self._sock is None:
            return
        if self.state == "probing":  # a whole retry period without failing
            self.state = "accepting"
            log.warning("accepting new connections again")
            return
        self.state = "probing"
        self._notifier.setEnabled(not self._paused)
        self._retry.start(_ACCEPT_RETRY_MS)

    def pause(self) -> None:
        """Leave new connections waiting in the listen backlog."""
        self._paused = True
        self._notifier.setEnabled(False)

    def resume(self) -> None:
        self._paused = False
        if self._sock is not None and self.state != "starved":
            self._notifier.setEnabled(True)

    def close(self) -> None:
        """Stop accepting (the QTcpServer's close() stops the listening)."""
        self._retry.stop()
        self._notifier.setEnabled(False)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _open_file_limit() -> str:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return "?"
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


class TlsHandshakes(QObject):
    """Turns accepted descriptors into ``QSslSocket``s that finished their handshake.

    Each must finish within ``deadline_ms`` or is reset; ``on_socket(socket)`` gets
    the encrypted ones and ``on_released()`` is called whenever a failed one gives
    its descriptor back. (What ``QSslServer`` does, without its accept loop: see
    ``Acceptor``.)
    """

    def __init__(self, ssl: QSslConfiguration, deadline_ms: int,
                 on_socket: Callable[[QSslSocket], None], on_released: Callable[[], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ssl = ssl
        self._deadline_ms = deadline_ms
        self._on_socket = on_socket
        self._on_released = on_released
        self._pending: dict[QSslSocket, QTimer] = {}

    def start(self, descriptor: int) -> None:
        sock = QSslSocket(self)
        sock.setSslConfiguration(self._ssl)
        if not sock.setSocketDescriptor(descriptor):
            log.warning("could not take an accepted TLS connection: %s", sock.errorString())
            with contextlib.suppress(OSError):
                socket.socket(fileno=descriptor).close()  # a SOCKET on Windows, not an fd
            sock.deleteLater()
            self._on_released()
            return
        deadline = QTimer(sock)
        deadline.setSingleShot(True)
        deadline.timeout.connect(self._on_deadline)
        deadline.start(self._deadline_ms)
        self._pending[sock] = deadline
        sock.encrypted.connect(self._on_encrypted)
        sock.errorOccurred.connect(self._on_failed)
        sock.disconnected.connect(self._on_failed)
        sock.startServerEncryption()

    @Slot()
    def _on_encrypted(self) -> None:
        sock = self.sender()
        deadline = self._pending.pop(sock, None)
        if deadline is None:
            return
        deadline.stop()
        deadline.deleteLater()
        sock.encrypted.disconnect(self._on_encrypted)
        sock.errorOccurred.disconnect(self._on_failed)
        sock.disconnected.disconnect(self._on_failed)
        self._on_socket(sock)

    @Slot()
    def _on_failed(self) -> None:
        self._give_up(self.sender())

    @Slot()
    def _on_deadline(self) -> None:
        deadline = self.sender()
        self._give_up(deadline.parent() if deadline is not None else None)

    def _give_up(self, sock: QObject | None) -> None:
        """A handshake that failed or took too long: reset it, free its descriptor."""
        if sock is None or self._pending.pop(sock, None) is None:
            return
        sock.abort()
        sock.deleteLater()
        self._on_released()

    def close(self) -> None:
        for sock in list(self._pending):
            self._give_up(sock)
