"""Property tests of the websocket transport's JSON codec (CONTRACT.md): every request and every
reply and push round-trips between the client's and the server's coders, and any JSON, or any
text, only ever decodes to a request or is refused with one of the contract's error codes.
(The coverage-guided target of the same codec is ``fuzz/websocket_messages.py``.)"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import requests as rq
from core.types import (
    AccountPage,
    Delivery,
    LoginResult,
    MessagesDeleted,
    ReadMarker,
    SendResult,
    SentCopy,
)
from transports.websocket import _client_codec as cc
from transports.websocket import _messages as m

CODES = {code for code, _ in m.WIRE_ERRORS} | set(m.PROTOCOL_ERRORS)
V2_ONLY = (rq.ListConversations, rq.ReadHistory, rq.MarkRead, rq.DeleteMessages)

text = st.text(st.characters(codec="utf-8"), max_size=40)  # valid Unicode: no lone surrogates
names = st.lists(text, max_size=6).map(tuple)
rid = st.integers(0, m.MAX_REQUEST_ID)
number = st.integers(0, 2**63 - 1)
ids = st.lists(number, min_size=1, max_size=20).map(tuple)
body = st.one_of(text, st.text(st.characters(codec="utf-8"), max_size=2000))

requests_v1 = st.one_of(
    st.builds(rq.Signup, text, text),
    st.builds(rq.Login, text, text),
    st.builds(rq.Logout),
    st.builds(rq.ListAccounts, text, text, st.integers(0, 10_000)),
    st.builds(rq.Send, st.lists(text, min_size=1, max_size=8).map(tuple), body),
    st.builds(rq.Ack, ids),
    st.builds(rq.DeleteAccount, text),
)
requests_v2 = st.one_of(
    requests_v1,
    st.builds(rq.ListConversations, number, st.integers(0, 10_000)),
    st.builds(rq.ReadHistory, names, number, st.integers(0, 10_000), number),
    st.builds(rq.MarkRead, number, number),
    st.builds(rq.DeleteMessages, ids, st.booleans()),
)
sorted_names = st.lists(text, max_size=4, unique=True).map(lambda xs: tuple(sorted(xs)))
deliveries = st.builds(Delivery, number, text, body, number, sorted_names, st.booleans(), number)


@settings(max_examples=250, deadline=None)
@given(rid, requests_v2)
def test_every_request_round_trips(request_id: int, request: rq.Request[Any]) -> None:
    assert m.decode_request(cc.encode_request(request_id, request)) == (request_id, request)


@settings(max_examples=200, deadline=None)
@given(rid, requests_v2)
def test_a_version_1_connection_decodes_exactly_the_version_1_ops(
    request_id: int, request: rq.Request[Any]
) -> None:
    wire = cc.encode_request(request_id, request)
    if isinstance(request, V2_ONLY):
        try:
            m.decode_request(wire, 1)
        except m.Malformed as exc:
            assert (exc.code, exc.request_id) == (m.UNKNOWN_OP, request_id)
        else:
            raise AssertionError(f"a version 1 connection accepted {wire}")
    else:
        assert m.decode_request(wire, 1) == (request_id, request)


@settings(max_examples=300, deadline=None)
@given(
    rid,
    st.one_of(
        st.tuples(st.builds(rq.Login, text, text), st.builds(LoginResult, text, number)),
        st.tuples(
            st.builds(rq.Send, names, text),
            st.builds(SendResult, number, number, names, number),
        ),
        st.tuples(st.builds(rq.ListAccounts), st.builds(AccountPage, names, st.booleans())),
        st.tuples(
            st.builds(rq.MarkRead, number, number), st.builds(ReadMarker, number, number, number)
        ),
    ),
)
def test_every_reply_round_trips(request_id: int, pair: tuple[rq.Request[Any], Any]) -> None:
    request, result = pair
    reply = cc.decode_server_message(m.encode_reply(request_id, request, result) or "")
    assert isinstance(reply, cc.Reply) and reply.request_id == request_id and reply.ok is not None
    assert cc.decode_result(request, reply.ok) == result


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        deliveries,
        st.builds(SentCopy, deliveries),
        st.builds(ReadMarker, number, number, number),
        st.builds(MessagesDeleted, ids),
    )
)
def test_every_push_round_trips(event: Any) -> None:
    assert [cc.decode_server_message(push) for push in m.encode_event(event)] == [event]


@given(st.one_of(rid, st.none()), st.sampled_from(sorted(CODES)), text)
def test_every_error_round_trips(request_id: int | None, code: str, message: str) -> None:
    decoded = cc.decode_server_message(m.encode_error(request_id, code, message))
    assert decoded == cc.Reply(request_id, None, code, message)


# -- garbage in: a request or a coded refusal, nothing else -------------------------------------
def _refused_or_decoded(wire: str, version: int) -> None:
    try:
        request_id, request = m.decode_request(wire, version)
    except m.Malformed as exc:
        assert exc.code in CODES, exc.code
    else:
        assert 0 <= request_id <= m.MAX_REQUEST_ID
        assert version >= 2 or not isinstance(request, V2_ONLY)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
#: Objects shaped like requests (a real op, an id) with members of any type: these reach
#: every field check of every op, which random JSON rarely does.
member_names = st.sampled_from(
    ["username", "password", "pattern", "after", "limit", "to", "body", "ids", "before_id",
     "conversation_id", "participants", "up_to_id", "for_everyone"]
)  # fmt: skip
request_shaped = st.builds(
    lambda op, request_id, members: {"op": op, "id": request_id, **members},
    st.sampled_from(m.OPS),
    st.one_of(rid, json_values),
    st.dictionaries(member_names, json_values, max_size=5),
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(json_values, request_shaped), st.sampled_from([1, 2]))
def test_any_json_is_a_request_or_refused_with_a_code(value: Any, version: int) -> None:
    _refused_or_decoded(json.dumps(value), version)


@FUZZ
@given(st.text(max_size=300), st.sampled_from([1, 2]))
def test_any_text_is_a_request_or_refused_with_a_code(wire: str, version: int) -> None:
    _refused_or_decoded(wire, version)


@FUZZ
@given(st.one_of(json_values, request_shaped), st.sampled_from(["ok", "push", "error"]))
def test_a_client_reads_any_server_json_or_refuses_it(value: Any, key: str) -> None:
    wire = json.dumps(
        {key: value, "id": 1}
        if key != "push"
        else {"push": "deliver", **(value if isinstance(value, dict) else {})}
    )
    try:
        message = cc.decode_server_message(wire)
        if isinstance(message, cc.Reply) and message.ok is not None:
            for request in (rq.Login("a", "b"), rq.Send(("a",), "b"), rq.ReadHistory()):
                try:
                    cc.decode_result(request, message.ok)
                except cc.BadServerMessage:
                    pass
    except cc.BadServerMessage:
        pass
