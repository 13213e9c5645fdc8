"""What a failed join is called and where a client connects: no Qt, no sockets.

``ConnectError`` and ``Endpoint`` are shared by the sans-IO session (protocol violations,
refusals, a name taken while away) and the connector (the network's own failures), so
they live in this leaf module that both import; ``qtchat.client`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

FAILURE_KINDS = {
    "not_resolved": "The name does not resolve to an address.",
    "refused": "Nothing is listening at that address and port.",
    "timeout": "No answer in time (firewall, wrong network, or a program that is not qtchat).",
    "closed": "The host closed the connection before answering.",
    "tls_mismatch": "The host's certificate is not the one expected.",
    "tls_failed": "The secure (TLS) connection could not be set up.",
    "wrong_password": "The room's password was not accepted.",
    "server_full": "The room is full.",
    "protocol_mismatch": "The host runs an incompatible version of qtchat.",
    "username_taken": "Someone in the room already uses that name.",
    "invalid_name": "The name is not allowed.",
    "network": "A network error.",
    "protocol": "The host sent something that breaks the qtchat protocol.",
}


class ConnectError(Exception):
    """Joining failed; ``kind`` is a key of FAILURE_KINDS, ``str()`` says what to do."""

    def __init__(self, kind: str, message: str, *, expected: str | None = None,
                 presented: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        # For ``tls_mismatch``: the fingerprint we pinned and the one the host showed.
        self.expected = expected
        self.presented = presented


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect."""

    host: str
    port: int
    tls: bool = False
    fingerprint: str | None = None  # expected SHA-256 fingerprint (from an invite or discovery)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
