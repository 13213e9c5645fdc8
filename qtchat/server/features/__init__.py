"""The server's feature modules: each owns the rules of one part of the protocol.

``session`` (register, resume, bye, ping/pong, the clocks of a session), ``rooms`` (join,
leave, history pages, room limits) and ``messages`` (broadcast, whisper, de-duplication)
are protocol 1; a negotiated feature (PROTOCOL-FEATURES.md) is one more module with a
``name``. ``base`` is the contract between a module and ``ServerCore``.
"""
