"""Private conversations that last (PROTOCOL-FEATURES §1): what ``registered`` adds.

``registered.conversations`` — up to ``MAX_CONVERSATIONS`` ``{with, last_seq}``, newest
first — goes to a session that registered with an ``identity`` and sent ``features``
(a protocol-1 client, which sends no ``features``, gets protocol 1's frames exactly).
The app reopens its private tabs from it after a restart and pages each with
``history {with}``. Importing this module adds the field's check to the shapes.
"""

from __future__ import annotations

from qtchat.protocol import SERVER_FRAME_SHAPES, _list_of, _name_str, _seq, _shape

MAX_CONVERSATIONS = 50

conversation_shape = _shape({"with": _name_str, "last_seq": _seq})
SERVER_FRAME_SHAPES["registered"][1]["conversations"] = _list_of(conversation_shape,
                                                                 MAX_CONVERSATIONS)
