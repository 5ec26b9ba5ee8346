"""Fuzz target: the websocket transport's JSON codec (``transports.websocket._messages`` and
``_client_codec``), both directions.

The first input byte picks the reader, the rest is the text of one message (the websockets
library has already refused a text frame that is not UTF-8, so invalid bytes become U+FFFD):
  * a server reading a request of a version 1 or 2 connection: ``decode_request`` returns a
    request id in 0..2^53-1 and a core request whose strings are all valid Unicode (no lone
    surrogate reaches the service), which the client's encoder writes back to the same request;
    or it raises ``Malformed`` with one of CONTRACT.md's error codes. Never anything else.
  * a client reading a server message: ``decode_server_message`` and, for an ``ok`` reply,
    ``decode_result`` for one of the requests, return values or raise ``BadServerMessage``.
Run: ``python fuzz/run.py websocket_messages -runs=20000``, or ``make fuzz``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import _harness

from core import requests as rq
from transports.websocket import _client_codec as cc
from transports.websocket import _messages as m

#: Requests to read an ``ok`` reply against (one of each op).
REQUESTS: tuple[rq.Request[Any], ...] = (
    rq.Signup("a", "b"),
    rq.Login("a", "b"),
    rq.Logout(),
    rq.ListAccounts(),
    rq.Send(("a",), "b"),
    rq.Ack((1,)),
    rq.DeleteAccount("a"),
    rq.ListConversations(),
    rq.ReadHistory(),
    rq.MarkRead(1, 1),
    rq.DeleteMessages((1,)),
)
CODES = {code for code, _ in m.WIRE_ERRORS} | set(m.PROTOCOL_ERRORS)
#: Readers: 0 and 1 a server of that version (0: version 2), 2.. a client.
READERS = 2 + len(REQUESTS)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return [s for item in value for s in _strings(item)]
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in _strings(getattr(value, f.name))]
    return []


def check_request(text: str, version: int) -> None:
    """The server side of the contract (module docstring)."""
    try:
        rid, request = m.decode_request(text, version)
    except m.Malformed as exc:
        assert exc.code in CODES, f"unknown error code {exc.code!r}"
        assert exc.request_id is None or 0 <= exc.request_id <= m.MAX_REQUEST_ID
        return
    assert 0 <= rid <= m.MAX_REQUEST_ID
    assert version >= 2 or not isinstance(
        request, rq.ListConversations | rq.ReadHistory | rq.MarkRead | rq.DeleteMessages
    ), f"a version 1 connection decoded {request!r}"
    for string in _strings(request):
        string.encode("utf-8")  # (raises on a lone surrogate)
    assert m.decode_request(cc.encode_request(rid, request), version) == (rid, request)


def check_server_message(text: str, request: rq.Request[Any]) -> None:
    """The client side of the contract (module docstring)."""
    try:
        message = cc.decode_server_message(text)
        if isinstance(message, cc.Reply) and message.ok is not None:
            cc.decode_result(request, message.ok)
    except cc.BadServerMessage:
        pass


def test_one_input(data: bytes) -> None:
    """One fuzz input: a reader byte, then the message's text."""
    if not data:
        return
    reader, text = data[0] % READERS, data[1:].decode("utf-8", "replace")
    if reader < 2:
        check_request(text, 2 - reader)
    else:
        check_server_message(text, REQUESTS[reader - 2])


def seeds() -> list[bytes]:
    """Every JSON example of CONTRACT.md, for the reader it is written for."""
    found = []
    for words, text in _harness.json_examples("transports/websocket/CONTRACT.md"):
        data = text.encode()
        if words[0] == "c2s":
            found.append(bytes((1 if words[-1] == "v1" else 0,)) + data)
        else:
            op = words[2] if len(words) > 2 and words[1] == "ok" else "send"
            index = next((i for i, r in enumerate(REQUESTS) if _op(r) == op), 4)
            found.append(bytes((2 + index,)) + data)
    return found


def _op(request: rq.Request[Any]) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in type(request).__name__)[1:]
