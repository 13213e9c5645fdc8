"""Connector: one connection's socket, its TLS and pinning, and what went wrong, in words.

``ChatClient`` asks it to ``start`` a connection to an ``Endpoint``; it says ``ready``
once the host can be sent ``register`` (TCP connected, or TLS set up and the certificate
the expected one), ``readable`` when bytes wait (``read`` moves them into ``inbox``,
capped at ``INBOX_BYTES``), ``failed(ConnectError, retry)`` when an attempt fails with a
sentence a person can act on, and ``ended(Ending)`` when the socket closes or errs (the
façade decides, after handling what was read, whether that was a drop of a live
connection or a failed attempt). A plain connection a host hangs up on without a word
may be to a TLS host: ``probe_for_tls`` tells which, so the sentence says so.

It knows nothing of frames or sessions; the rules are in ``qtchat.client.session``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtNetwork import QAbstractSocket, QSslSocket, QTcpSocket

from qtchat.client.errors import ConnectError, Endpoint

log = logging.getLogger(__name__)

# Reading is cheap and handling is not: what was read waits, up to INBOX_BYTES, for the
# façade to handle it in slices. A full inbox stops reading (Qt's own buffer is capped
# too) until it is handled: TCP then slows the host.
INBOX_BYTES = 1 << 20
CLOSE_LINGER_MS = 2000  # how long ``close`` lets the bye drain before dropping the socket
TLS_PROBE_MS = 3000  # how long a TLS handshake may take to tell a TLS host (see probe_for_tls)


@dataclass(frozen=True, slots=True)
class Ending:
    """How a socket ended: ``reason`` for a live connection (mid-sentence), ``error`` for
    an attempt, and whether the host hung up (which a TLS host does to a plain client)."""

    reason: str
    error: ConnectError
    hung_up: bool


class Connector(QObject):
    """A socket to the host, and the sentences for what went wrong with it.

    Signals:
        ready(): send ``register`` now.
        readable(): bytes wait in the socket (call ``read``).
        ended(Ending ending): the socket closed or failed.
        failed(ConnectError error, bool retry): the attempt failed; the socket is gone.
        certificateSeen(str fingerprint): the TLS certificate the host presented.
    """

    ready = Signal()
    readable = Signal()
    ended = Signal(object)
    failed = Signal(object, bool)
    certificateSeen = Signal(str)

    def __init__(self, parent: QObject | None = None, *, connect_timeout: float = 10.0,
                 pin_store: Any = None) -> None:
        super().__init__(parent)
        self.connect_timeout = connect_timeout
        self.pin_store = pin_store
        self.endpoint: Endpoint | None = None
        self.socket: QTcpSocket | None = None
        self.inbox = bytearray()  # read, not yet handled (at most INBOX_BYTES)
        self.heard = False  # any bytes from the host on this connection yet
        self.peer_fingerprint: str | None = None  # the host's TLS certificate, when TLS
        self.fingerprint_first_use = False
        self._connect_timer = QTimer(self)
        self._connect_timer.setSingleShot(True)
        self._connect_timer.timeout.connect(self._on_connect_timeout)
        self._tls_probe: QSslSocket | None = None
        self._tls_probe_timer = QTimer(self)
        self._tls_probe_timer.setSingleShot(True)
        self._tls_probe_timer.timeout.connect(self._on_tls_probe_done)

    # --- connecting ----------------------------------------------------------------------

    def start(self, endpoint: Endpoint) -> None:
        """A new connection (the old one, if any, is dropped)."""
        self.drop()
        self.endpoint = endpoint
        self.heard = False
        socket: QTcpSocket = QSslSocket(self) if endpoint.tls else QTcpSocket(self)
        self.socket = socket
        socket.setReadBufferSize(INBOX_BYTES)  # Qt's buffer too: a full inbox stops reading
        socket.connected.connect(self._on_connected)
        socket.readyRead.connect(self.readable)
        socket.disconnected.connect(self._on_disconnected)
        socket.errorOccurred.connect(self._on_socket_error)
        self._connect_timer.start(int(self.connect_timeout * 1000))
        if isinstance(socket, QSslSocket):
            socket.setPeerVerifyMode(QSslSocket.PeerVerifyMode.VerifyNone)  # we pin instead
            socket.encrypted.connect(self._on_encrypted)
            socket.connectToHostEncrypted(endpoint.host, endpoint.port)
        else:
            socket.connectToHost(endpoint.host, endpoint.port)

    def settle(self) -> None:
        """The host answered like a qtchat host: the connect timeout no longer applies."""
        self._connect_timer.stop()

    def drop(self) -> None:
        """Abort the connection (and a TLS probe); what was read and not handled goes."""
        self._connect_timer.stop()
        self._drop_tls_probe()
        self.inbox.clear()
        socket, self.socket = self.socket, None
        if socket is not None:
            socket.blockSignals(True)
            socket.abort()
            socket.deleteLater()

    def close(self, bye: bytes | None) -> None:
        """Leave politely: write ``bye`` (if any and connected), let it drain, close."""
        self._connect_timer.stop()
        self._drop_tls_probe()
        self.inbox.clear()
        socket, self.socket = self.socket, None
        if socket is None:
            return
        socket.blockSignals(True)
        if bye is not None and socket.state() == QAbstractSocket.SocketState.ConnectedState:
            socket.write(bye)
        # Not abort(): that discards the unsent bye, and the server, seeing a drop
        # instead of a goodbye, would hold the name for its whole resume grace period.
        socket.disconnectFromHost()
        if socket.state() == QAbstractSocket.SocketState.UnconnectedState:
            socket.deleteLater()
        else:  # still sending the bye
            QTimer.singleShot(CLOSE_LINGER_MS, socket, socket.deleteLater)

    def write(self, data: bytes) -> None:
        if self.socket is not None and data:
            self.socket.write(data)

    @Slot()
    def _on_connected(self) -> None:
        socket = self.socket
        if socket is None:
            return
        socket.setSocketOption(QAbstractSocket.SocketOption.LowDelayOption, 1)
        if not isinstance(socket, QSslSocket):
            self.ready.emit()

    @Slot()
    def _on_encrypted(self) -> None:
        socket = self.socket
        if not isinstance(socket, QSslSocket) or self.endpoint is None:
            return
        from qtchat.tlsutil import qt_fingerprint

        seen = qt_fingerprint(socket.peerCertificate())
        self.certificateSeen.emit(seen)
        expected = self.endpoint.fingerprint
        address = self.endpoint.address
        if expected is None and self.pin_store is not None:
            expected = self.pin_store.get(address)
        if expected is not None and _same_fingerprint(expected, seen) is False:
            self._fail(ConnectError(
                "tls_mismatch",
                f"Warning: the host at {address} presented a different certificate than "
                f"expected, so qtchat did not connect: someone may be impersonating the "
                f"host, or it was reinstalled — ask the host for a new invite link and "
                f"compare fingerprints.\nExpected: {expected}\nPresented: {seen}",
                expected=expected, presented=seen,
            ), retry=False)
            return
        self.peer_fingerprint = seen
        self.fingerprint_first_use = expected is None  # trusted on first use, now pinned
        if self.pin_store is not None:
            self.pin_store.remember(address, seen)
        self.ready.emit()

    def _fail(self, error: ConnectError, *, retry: bool) -> None:
        self.drop()
        self.failed.emit(error, retry)

    @Slot()
    def _on_connect_timeout(self) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        socket = self.socket
        where, wait = endpoint.address, f"{self.connect_timeout:g} s"
        connected = (socket is not None
                     and socket.state() == QAbstractSocket.SocketState.ConnectedState)
        if not connected:
            error = ConnectError(
                "timeout",
                f"No answer from {where} within {wait}: check that the address is right and "
                f"the host is on this network, or ask the host to let port {endpoint.port} "
                "through its firewall.")
        elif isinstance(socket, QSslSocket) and not socket.isEncrypted():
            error = ConnectError(
                "tls_failed",
                f"The host at {where} accepted the connection but the secure (TLS) "
                f"handshake did not finish within {wait}: the host may not use TLS — try "
                "joining without TLS, or use the host's invite link.")
        else:
            error = ConnectError(
                "timeout",
                f"The host at {where} accepted the connection but did not answer like a "
                f"qtchat host within {wait}: check the port number (qtchat uses 8800 unless "
                "the host changed it) and that qtchat on the host is not stuck.")
        self._fail(error, retry=True)

    # --- reading -------------------------------------------------------------------------

    def read(self) -> bool:
        """Move what the socket holds into the inbox, up to its cap; False if that
        ended the connection (a TLS host answering a plain client)."""
        socket = self.socket
        if socket is None:
            return False
        room = INBOX_BYTES - len(self.inbox)
        if room <= 0 or not socket.bytesAvailable():
            return True  # full: read again once handled
        data = socket.read(room).data()
        if not self.heard and data:
            self.heard = True
            # A TLS record (handshake 0x16 or alert 0x15, version 3.x) where a JSON
            # frame should be: the host wants TLS and we spoke plain TCP.
            if not isinstance(socket, QSslSocket) and data[:1] in (b"\x15", b"\x16") \
                    and data[1:2] == b"\x03":
                self._fail(self._plain_client_tls_server(), retry=False)
                return False
        self.inbox += data
        return True

    def read_rest(self) -> None:
        """The socket ended: take all Qt still holds (capped by its buffer)."""
        socket = self.socket
        if socket is not None and socket.bytesAvailable():
            self.inbox += socket.readAll().data()

    def bytes_waiting(self) -> bool:
        socket = self.socket
        return bool(self.inbox) or (socket is not None and bool(socket.bytesAvailable()))

    # --- ending --------------------------------------------------------------------------

    @Slot(QAbstractSocket.SocketError)
    def _on_socket_error(self, error: QAbstractSocket.SocketError) -> None:
        socket = self.socket
        if socket is None:
            return
        self.ended.emit(Ending(
            reason=qt_error_text(socket.errorString()),
            error=self._describe(error),
            hung_up=error == QAbstractSocket.SocketError.RemoteHostClosedError))

    @Slot()
    def _on_disconnected(self) -> None:
        if self.socket is None:
            return
        self.ended.emit(Ending(reason="the connection closed", error=self.closed_error(),
                               hung_up=True))

    def _describe(self, error: QAbstractSocket.SocketError) -> ConnectError:
        endpoint = self.endpoint
        assert endpoint is not None
        E = QAbstractSocket.SocketError
        where = endpoint.address
        if error == E.HostNotFoundError:
            return ConnectError(
                "not_resolved",
                f"Can't find a computer called \"{endpoint.host}\" (to join {where}): check "
                "the spelling, or use the host's IP address instead.")
        if error == E.ConnectionRefusedError:
            return ConnectError(
                "refused",
                f"Nothing is listening on {where}: check that the host has started the room "
                "and that the port number is right.")
        if error == E.SocketTimeoutError:
            return ConnectError(
                "timeout",
                f"No answer from {where}: check that the host is on this network, or ask the "
                f"host to let port {endpoint.port} through its firewall.")
        if error in (E.SslHandshakeFailedError, E.SslInternalError, E.SslInvalidUserDataError):
            return ConnectError(
                "tls_failed",
                f"The secure (TLS) connection to {where} failed: the host may not use TLS — "
                "try joining without TLS, or use the host's invite link.")
        if error == E.RemoteHostClosedError:
            return self.closed_error()
        message = qt_error_text(self.socket.errorString()) if self.socket else \
            "network error"
        return ConnectError(
            "network",
            f"Could not connect to {where} ({message}): check the address and this "
            "computer's network connection, then try again.")

    def closed_error(self) -> ConnectError:
        assert self.endpoint is not None
        where = self.endpoint.address
        if self.heard:  # it answered (e.g. username_taken), then gave up waiting
            return ConnectError(
                "closed",
                f"The host at {where} closed the connection before a name was accepted: "
                "join again and choose a name promptly.")
        return ConnectError(
            "closed",
            f"The host at {where} closed the connection before answering: check the port "
            "number, or ask the host whether the room is running.")

    def _plain_client_tls_server(self) -> ConnectError:
        assert self.endpoint is not None
        return ConnectError(
            "tls_failed",
            f"The host at {self.endpoint.address} expects a secure (TLS) connection: join "
            "with TLS turned on, or use the host's invite link.")

    def not_qtchat_error(self) -> ConnectError:
        assert self.endpoint is not None
        return ConnectError(
            "network",
            f"The host at {self.endpoint.address} answered with something that is not "
            "qtchat: check the port number (qtchat uses 8800 unless the host changed it).")

    # --- telling a TLS host --------------------------------------------------------------

    def may_be_tls_host(self, ending: Ending, *, first: bool) -> bool:
        """A first plain connection closed without a byte back: a TLS host does that."""
        return (ending.hung_up and first and self.endpoint is not None
                and not self.endpoint.tls and not self.heard and QSslSocket.supportsSsl())

    def probe_for_tls(self) -> None:
        """The host hung up on our plain first frame without a word, as a TLS host does:
        try a TLS handshake (nothing is sent over it) to tell the person which it is;
        ``failed`` follows either way."""
        assert self.endpoint is not None
        heard = self.heard
        self.drop()
        self.heard = heard
        probe = QSslSocket(self)
        self._tls_probe = probe
        probe.setPeerVerifyMode(QSslSocket.PeerVerifyMode.VerifyNone)
        probe.encrypted.connect(self._on_tls_probe_done)
        probe.errorOccurred.connect(self._on_tls_probe_done)
        self._tls_probe_timer.start(TLS_PROBE_MS)
        probe.connectToHostEncrypted(self.endpoint.host, self.endpoint.port)

    @Slot()
    def _on_tls_probe_done(self) -> None:
        probe, self._tls_probe = self._tls_probe, None
        if probe is None:
            return
        self._tls_probe_timer.stop()
        speaks_tls = probe.isEncrypted()
        probe.blockSignals(True)
        probe.abort()
        probe.deleteLater()
        self.failed.emit(self._plain_client_tls_server() if speaks_tls
                         else self.closed_error(), True)

    def _drop_tls_probe(self) -> None:
        probe, self._tls_probe = self._tls_probe, None
        self._tls_probe_timer.stop()
        if probe is not None:
            probe.blockSignals(True)
            probe.abort()
            probe.deleteLater()


def qt_error_text(text: str) -> str:
    """Qt's ``errorString()`` made fit to embed mid-sentence: "The remote host closed
    the connection" becomes "the remote host…", but "SSL handshake failed" stays."""
    text = text.strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text or "network error"


def _same_fingerprint(a: str, b: str) -> bool:
    return a.replace(":", "").upper() == b.replace(":", "").upper()
