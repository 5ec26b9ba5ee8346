"""The websocket transport's SEND path spelled out for speed (issue 10) writes and reads exactly
the JSON of CONTRACT.md: the reply to a send and a deliver push are the JSON objects they stand
for, and a request is read the same with or without surrounding whitespace."""

from __future__ import annotations

import json

import pytest

from core import requests as rq
from core.types import Delivery, SendResult
from transports.websocket._messages import Malformed, decode_request, encode_delivery, encode_reply


@pytest.mark.parametrize("unknown", [(), ("ghost",), ('gh"ost', "nobody")])
@pytest.mark.parametrize("version", [1, 2])
def test_send_reply_is_its_json(unknown: tuple[str, ...], version: int) -> None:
    result = SendResult(2**40, 1_700_000_000_123, unknown, 9)
    text = encode_reply(7, rq.Send(("bob",), "hi"), result, version)
    assert text is not None
    ok = {"message_id": 2**40, "sent_at": 1_700_000_000_123, "unknown": list(unknown)}
    if version >= 2:
        ok["conversation_id"] = 9
    assert json.loads(text) == {"id": 7, "ok": ok}


def test_deliver_push_is_its_json() -> None:
    d = Delivery(2**40, "alice", 'hé "x"', 1_700_000_000_123, ("bob",), False, 9)
    assert json.loads(encode_delivery(d, 2)) == {
        "push": "deliver",
        "message_id": 2**40,
        "from": "alice",
        "body": 'hé "x"',
        "sent_at": 1_700_000_000_123,
        "conversation_id": 9,
        "participants": ["bob"],
    }


@pytest.mark.parametrize(
    "text",
    [
        '{"op":"send","to":["bob"],"body":"hi","id":3}',
        '  {"op":"send","to":["bob"],"body":"hi","id":3}\n',
    ],
)
def test_send_request_read_with_or_without_whitespace(text: str) -> None:
    assert decode_request(text, 2) == (3, rq.Send(("bob",), "hi"))


@pytest.mark.parametrize("text", ["", "   ", '{"op":"send"', '{"id":1} {"id":2}', "NaN"])
def test_not_one_json_text_is_malformed(text: str) -> None:
    with pytest.raises(Malformed):
        decode_request(text, 2)
