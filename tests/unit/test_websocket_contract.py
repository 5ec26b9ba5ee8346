"""CONTRACT.md is executable: every JSON example, table and formula in it is checked here.

* ```` ```json c2s <op> ```` blocks decode (the server's codec) to a request of that op and
  re-encode (the client's encoder) to the identical text when they spell every member.
* ```` ```json s2c ok <op> ````, ``s2c error``, ``s2c push <kind>`` blocks parse the way our client
  parses them and re-encode with the server's encoders to the identical text.
* ```` ```json c2s invalid <CODE> ```` blocks are refused with that error code.
* A block whose info string ends in ``v1`` is read and written as a version-1 connection does
  (section 13); every other block is version 2.
* The limits, error-code and close-code tables and the byte-cost formulas agree with the code.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from core import limits
from core import requests as rq
from core.types import (
    CloseReason,
    Conversation,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    MessagesDeleted,
    ReadMarker,
    SentCopy,
)
from transports import registry, websocket
from transports.websocket import _client_codec as cc
from transports.websocket import _messages as m
from transports.websocket import _server

DOC = Path(websocket.__file__).with_name("CONTRACT.md").read_text(encoding="utf-8")
_BLOCK = re.compile(r"^```json (?P<info>[^\n]*)\n(?P<body>.*?)\n```$", re.M | re.S)
BLOCKS: list[tuple[str, str]] = [(b["info"].strip(), b["body"]) for b in _BLOCK.finditer(DOC)]

#: A request of each op, to read an ``ok`` reply against.
SAMPLE = {
    "signup": rq.Signup("a", "b"),
    "login": rq.Login("a", "b"),
    "logout": rq.Logout(),
    "list_accounts": rq.ListAccounts(),
    "send": rq.Send(("a",), "b"),
    "ack": rq.Ack((1,)),
    "delete_account": rq.DeleteAccount("a"),
    "list_conversations": rq.ListConversations(),
    "read_history": rq.ReadHistory(),
    "mark_read": rq.MarkRead(1, 1),
    "delete_messages": rq.DeleteMessages((1,)),
    "resume": rq.Resume("t"),
    "change_password": rq.ChangePassword("a", "b"),
}
PUSHES = {"deliver", "session_ended", "sent", "read", "deleted"}
TIMES = "\N{MULTIPLICATION SIGN}"
ALL_CODES = {code for code, _ in m.WIRE_ERRORS} | set(m.PROTOCOL_ERRORS)


def blocks(direction: str, kind: str | None = None) -> list[tuple[list[str], str]]:
    found = []
    for info, body in BLOCKS:
        words = info.split()
        if words[0] == direction and (kind is None or words[1:2] == [kind]):
            found.append((words, body))
    return found


def version(words: list[str]) -> int:
    return 1 if words[-1] == "v1" else 2


def table(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading``."""
    section = DOC[DOC.index(heading) :]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set(cells[0]) <= {"-"}:
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # (without the header row)


def test_the_doc_has_examples_of_everything() -> None:
    assert {words[1] for words, _ in blocks("c2s") if words[1] != "invalid"} == set(m.OPS)
    replied = {words[2] for words, _ in blocks("s2c", "ok")}
    assert replied == set(m.OPS) - {"ack"}  # (an ack has no success reply)
    assert {words[2] for words, _ in blocks("s2c", "push")} == PUSHES
    notices = {json.loads(body).get("code") for words, body in blocks("s2c", "push")}
    assert notices >= {n for n, _ in m.SESSION_ENDS.values() if n is not None}


@pytest.mark.parametrize(("words", "body"), [b for b in blocks("c2s") if b[0][1] != "invalid"])
def test_request_examples_decode_and_reencode(words: list[str], body: str) -> None:
    rid, request = m.decode_request(body, version(words))
    assert type(request) is type(SAMPLE[words[1]])
    again = cc.encode_request(rid, request)
    assert m.decode_request(again) == (rid, request)
    if json.loads(again).keys() == json.loads(body).keys():
        assert again == body  # byte for byte what our client writes


@pytest.mark.parametrize(("words", "body"), blocks("c2s", "invalid"))
def test_invalid_examples_are_refused_with_their_code(words: list[str], body: str) -> None:
    with pytest.raises(m.Malformed) as refused:
        m.decode_request(body, version(words))
    assert refused.value.code == words[2]
    assert m.encode_error(refused.value.request_id, refused.value.code, "x")  # (answerable)


@pytest.mark.parametrize(("words", "body"), blocks("s2c", "ok"))
def test_ok_examples_parse_and_reencode(words: list[str], body: str) -> None:
    reply = cc.decode_server_message(body)
    assert isinstance(reply, cc.Reply) and reply.ok is not None and reply.request_id is not None
    request = SAMPLE[words[2]]
    result = cc.decode_result(request, reply.ok)
    assert m.encode_reply(reply.request_id, request, result, version(words)) == body


@pytest.mark.parametrize(("words", "body"), blocks("s2c", "error"))
def test_error_examples_parse_and_reencode(words: list[str], body: str) -> None:
    reply = cc.decode_server_message(body)
    assert isinstance(reply, cc.Reply) and reply.ok is None
    assert reply.code in ALL_CODES
    assert m.encode_error(reply.request_id, reply.code, reply.message) == body


@pytest.mark.parametrize(("words", "body"), blocks("s2c", "push"))
def test_push_examples_parse_and_reencode(words: list[str], body: str) -> None:
    push = cc.decode_server_message(body)
    if words[2] == "deliver":
        assert isinstance(push, Delivery)
        assert m.encode_delivery(push, version(words)) == body
        if version(words) == 2:
            assert m.encode_event(push) == [body]
    elif words[2] in ("sent", "read", "deleted"):
        kinds = {"sent": SentCopy, "read": ReadMarker, "deleted": MessagesDeleted}
        assert isinstance(push, SentCopy | ReadMarker | MessagesDeleted)
        assert type(push) is kinds[words[2]]
        assert m.encode_event(push) == [body]
    else:
        assert isinstance(push, cc.SessionEnded)
        reason = m.reason_for_notice(push.code)
        assert reason is not None and push.message == reason.value
        assert m.encode_session_ended(push.code, push.message) == body


def numbers(text: str) -> list[int]:
    """The numbers of a table cell, leaving out those in names ("UTF-8", "0-9")."""
    text = text.replace("UTF-8", "").replace("0-9", "")
    return [int(n) for n in re.findall(r"\d+", text)]


def test_limits_table_matches_the_code() -> None:
    expected = {
        "Message, client to server": [m.MAX_MESSAGE_BYTES],
        "Message, server to client": [m.MAX_MESSAGE_BYTES + m.S2C_SLACK],
        "Message body": [1, limits.MAX_BODY_BYTES],
        "Recipients per send": [1, limits.MAX_RECIPIENTS],
        "A recipient name": [limits.MAX_USERNAME_CHARS * 4],
        "Ids per ack": [limits.MAX_ACK_IDS],
        "Ids per delete_messages": [limits.MAX_DELETE_IDS],
        "Ids per `deleted` push": [m.MAX_IDS_PER_DELETED_PUSH],
        "Username at signup": [1, limits.MAX_USERNAME_CHARS],
        "Password at signup and change_password": [
            limits.MIN_PASSWORD_CHARS,
            limits.MAX_PASSWORD_BYTES,
        ],
        "list_accounts pattern": [limits.MAX_PATTERN_CHARS],
        "list_accounts page size": [0, limits.DEFAULT_PAGE_SIZE, limits.MAX_PAGE_SIZE],
        "list_conversations and read_history page size": [
            0,
            limits.DEFAULT_PAGE_SIZE,
            limits.MAX_PAGE_SIZE,
        ],
        "A page of conversations or messages": [m.MAX_SERVER_MESSAGE_BYTES],
        "Participants named in read_history": [limits.MAX_RECIPIENTS + 1],
        "Pushes queued for one session": [limits.MAX_SESSION_QUEUE],
        "Time output may stay unread": [int(_server.STALL_TIMEOUT)],
        "Time to complete the handshake": [int(_server.OPEN_TIMEOUT)],
    }
    rows = {row[0]: row[1] for row in table("## 5. Limits")}
    assert rows.keys() == expected.keys()
    for name, value in rows.items():
        assert numbers(value) == expected[name], name


def test_the_size_limit_is_derived_as_the_doc_says() -> None:
    worst_body = m.ESCAPE_FACTOR * limits.MAX_BODY_BYTES
    per_name = m.ESCAPE_FACTOR * limits.MAX_USERNAME_CHARS + 3
    derivation = (
        f"6 {TIMES} {limits.MAX_BODY_BYTES} + {limits.MAX_RECIPIENTS} {TIMES} {per_name} + "
        f"{m.ENVELOPE_BYTES} = {m.MAX_MESSAGE_BYTES}"
    )
    assert derivation in DOC
    assert worst_body + limits.MAX_RECIPIENTS * per_name + m.ENVELOPE_BYTES == m.MAX_MESSAGE_BYTES
    assert f"hence {m.MAX_SERVER_MESSAGE_BYTES}" in DOC
    assert f"more than {m.S2C_SLACK} bytes" in DOC
    assert f"a message over {m.MAX_MESSAGE_BYTES} bytes" in DOC


def test_error_code_table_is_the_codes_of_the_code() -> None:
    codes = [row[0].strip("`") for row in table("## 8. Error codes")]
    assert sorted(codes) == sorted(ALL_CODES)


def test_close_code_table_is_the_close_enum() -> None:
    codes = [int(row[0]) for row in table("### 9.2 When the server ends a session")]
    assert sorted(codes) == sorted(int(c) for c in m.Close)
    for reason, (_, close) in m.SESSION_ENDS.items():
        assert m.reason_for_close(int(close)) is reason


def test_connection_facts() -> None:
    assert f"`ws://HOST:PORT{m.PATH}`" in DOC
    assert f"The default port is {registry.ENTRIES[-1].default_port}." in DOC
    assert registry.ENTRIES[-1].name == "websocket"
    assert DOC.startswith(f"# The wirechat WebSocket contract, `{m.SUBPROTOCOL}`")
    assert f"ping every {int(_server.PING_INTERVAL)} seconds" in DOC
    assert f"no pong\ncomes within {int(_server.PING_TIMEOUT)} seconds" in DOC
    assert f"within {int(_server.OPEN_TIMEOUT)} seconds" in DOC
    assert f"({_server.WRITE_LIMIT // 1024} KiB of it in the server's buffer" in DOC
    assert f"the\nserver waits {int(_server.CLOSE_TIMEOUT)} seconds for them to be read" in DOC
    assert "2^53 - 1" in DOC and str(m.MAX_REQUEST_ID) in DOC
    port = registry.ENTRIES[-1].default_port
    assert f'new WebSocket("ws://localhost:{port}{m.PATH}", "{m.SUBPROTOCOL}")' in DOC
    assert m.SUBPROTOCOLS == (m.SUBPROTOCOL_V2_2, m.SUBPROTOCOL_V2, m.SUBPROTOCOL_V1)
    assert set(m.SUBPROTOCOLS) == set(m.VERSIONS)
    assert f"offer `{m.SUBPROTOCOL_V2}` or `{m.SUBPROTOCOL_V1}`" in DOC
    assert f"offers `{m.SUBPROTOCOL_V2_2}` too" in DOC
    assert m.OFFERS[m.SUBPROTOCOL_V2_2] == (m.SUBPROTOCOL_V2_2, m.SUBPROTOCOL_V2)


def _digits(n: int) -> int:
    return len(str(n))


def _evaluate(formula: str, env: dict[str, int]) -> int:
    """One of the doc's byte formulas ("102 + m + 2f", "k TIMES (47 + m)"), evaluated."""
    expression = re.sub(r"(\d)([a-z])", r"\1*\2", formula.replace(TIMES, "*"))
    return int(eval(expression, {}, env))  # (the doc's own formula, over plain numbers)


@pytest.mark.parametrize("seed", range(20))
def test_byte_cost_formulas(seed: int) -> None:
    rng = random.Random(seed)
    rid = rng.choice([1, 7, 42, 999, 123456, m.MAX_REQUEST_ID])
    mid = rng.choice([1, 42, 5000, 2**40])
    cid = rng.choice([1, 77, 2**33])
    up_to, unread, limit = rng.choice([3, 4567]), rng.choice([0, 12]), rng.choice([5, 50, 500])
    name = "n" * rng.randint(1, 32)
    sender = "s" * rng.randint(1, 32)
    body = "x" * rng.randint(1, 300)
    k = rng.randint(1, 60)
    sent_at = 1_764_331_200_123
    env = {"d": _digits(rid), "n": len(name), "b": len(body), "m": _digits(mid)}
    env |= {"t": _digits(sent_at), "f": len(sender), "c": _digits(cid), "k": k}
    env |= {"u": _digits(up_to), "g": _digits(unread), "r": _digits(up_to), "l": _digits(limit)}
    one_to_one = Delivery(mid, sender, body, sent_at, (sender,), False, cid)
    page = HistoryPage(cid, (name,), tuple(one_to_one for _ in range(k)), False, read_up_to=up_to)
    sent = Delivery(mid, sender, body, sent_at, (name,), False, cid)
    actual = {
        "send, one recipient": cc.encode_request(rid, rq.Send((name,), body)),
        "send reply, no unknown names": m.encode_reply(
            rid, rq.Send((name,), body), m.SendResult(mid, sent_at, (), cid)
        ),
        "deliver push, one-to-one": m.encode_delivery(one_to_one),
        "ack of one id": cc.encode_request(rid, rq.Ack((mid,))),
        "read_history by one name": cc.encode_request(rid, rq.ReadHistory((name,), 0, limit)),
        "read_history by id, with a cursor": cc.encode_request(
            rid, rq.ReadHistory((), mid, limit, cid)
        ),
        "history page of k messages, one-to-one": m.encode_reply(rid, rq.ReadHistory(), page),
        "mark_read": cc.encode_request(rid, rq.MarkRead(cid, up_to)),
        "mark_read reply": m.encode_reply(
            rid, rq.MarkRead(cid, up_to), ReadMarker(cid, up_to, unread)
        ),
        "read push": m.encode_event(ReadMarker(cid, up_to, unread))[0],
        "delete_messages of one id, for everyone": cc.encode_request(
            rid, rq.DeleteMessages((mid,), True)
        ),
        "delete_messages reply": m.encode_reply(rid, rq.DeleteMessages((mid,)), None),
        "deleted push of one id": m.encode_event(MessagesDeleted((mid,)))[0],
        "sent push, one-to-one": m.encode_event(SentCopy(sent))[0],
    }
    rows = table("## 12. Byte costs")
    assert [row[0] for row in rows] == list(actual)
    for label, formula in rows:
        text = actual[label]
        assert text is not None
        assert _evaluate(formula.split(",")[0], env) == len(text.encode()), label
    more = m.encode_reply(rid, rq.ReadHistory(), dataclasses.replace(page, more=True))
    assert more is not None
    assert len(more) == len(actual["history page of k messages, one-to-one"] or "") - 1

    v1 = {
        "send reply, no unknown names": m.encode_reply(
            rid, rq.Send((name,), body), m.SendResult(mid, sent_at, (), cid), 1
        ),
        "deliver push": m.encode_delivery(one_to_one, 1),
    }
    rows = table("| Message (version 1) |")
    assert [row[0] for row in rows] == list(v1)
    for label, formula in rows:
        assert _evaluate(formula, env) == len((v1[label] or "").encode()), label


def ws_frame(payload: int, *, masked: bool) -> int:
    """RFC 6455 section 5.2: the bytes of one unfragmented frame with this payload."""
    header = 2 if payload <= 125 else 4 if payload <= 65535 else 10
    return header + (4 if masked else 0) + payload


def test_the_worked_round_trip() -> None:
    request = cc.encode_request(7, rq.Send(("bob_12345678",), "x" * 32))
    reply = m.encode_reply(7, rq.Send(("b",), "x"), m.SendResult(42, 1_764_331_200_123, (), 5))
    v1_reply = m.encode_reply(7, rq.Send(("b",), "x"), m.SendResult(42, 1_764_331_200_123), 1)
    assert reply is not None and v1_reply is not None
    up, down = ws_frame(len(request), masked=True), ws_frame(len(reply), masked=False)
    stated = (
        f"is {len(request)} bytes of JSON in a {up}-byte frame to\nthe server and {len(reply)} "
        f"bytes in a {down}-byte frame back: {up + down} bytes on the wire for the round trip"
    )
    assert stated in DOC
    v1 = up + ws_frame(len(v1_reply), masked=False)
    assert f"({v1} on a version-1 connection" in DOC
    assert (up, down, v1) == (90, 90, 160)


def test_the_worked_history_page_and_mark_read() -> None:
    name, other = "alice_123456", "bob_12345678"
    messages = tuple(
        Delivery(1000 + i, (name, other)[i % 2], "x" * 32, 1_764_331_200_123, (other,), False, 42)
        for i in range(50)
    )
    page = HistoryPage(42, (other,), messages[::-1], True, read_up_to=1049)
    ask = cc.encode_request(12, rq.ReadHistory((other,), 0, 50))
    reply = m.encode_reply(12, rq.ReadHistory(), dataclasses.replace(page, more=False))
    assert reply is not None
    up, down = ws_frame(len(ask), masked=True), ws_frame(len(reply.encode()), masked=False)
    stated = (
        f"{len(ask)}-byte request in a {up}-byte frame and a {len(reply)}-byte reply in a "
        f"{down}-byte frame: {up + down} bytes on the\nwire, about "
        f"{round((up + down) / 50, -1):.0f} bytes a message"
    )
    assert stated in DOC
    cursor = cc.encode_request(13, rq.ReadHistory((), 1001, 50, 42))
    assert f"costs {len(cursor) - len(ask)} bytes more" in DOC

    mark = cc.encode_request(12, rq.MarkRead(42, 1049))
    marked = m.encode_reply(12, rq.MarkRead(42, 1049), ReadMarker(42, 1049, 0))
    [push] = m.encode_event(ReadMarker(42, 1049, 0))
    assert marked is not None
    up, down = ws_frame(len(mark), masked=True), ws_frame(len(marked), masked=False)
    stated = (
        f"{len(mark)}-byte request in a {up}-byte frame and a {len(marked)}-byte reply in a\n"
        f"{down}-byte frame ({up + down} bytes), plus a {ws_frame(len(push), masked=False)}-byte "
        f"frame (a {len(push)}-byte `read` push)"
    )
    assert stated in DOC


def test_session_end_notices_carry_the_close_reasons_text() -> None:
    for reason in (CloseReason.ACCOUNT_DELETED, CloseReason.SLOW_CONSUMER, CloseReason.SHUTDOWN):
        notice, _ = m.SESSION_ENDS[reason]
        assert notice is not None and m.reason_for_notice(notice) is reason


def test_error_table_round_trips() -> None:
    for code, cls in m.WIRE_ERRORS:
        assert m.code_for_error(cls("x")) == code
        error = m.error_for_code(code, "x")
        assert type(error) is cls
    assert isinstance(m.error_for_code(m.INTERNAL, "x"), ConnectionError)
    assert m.code_for_error(RuntimeError()) == m.INTERNAL


def test_only_a_version_2_2_connection_is_sent_a_code_of_version_2_2() -> None:
    """Section 14: OVERLOADED to a wirechat.v2.2.json connection, LIMIT_EXCEEDED (what every
    connection got before 2.2) to the others; every other code is the same on all three."""
    assert m.SENT_AS == {"OVERLOADED": "LIMIT_EXCEEDED"}
    for code, cls in m.WIRE_ERRORS:
        assert m.code_for_error(cls("x"), m.SUBPROTOCOL_V2_2) == code
        for older in (m.SUBPROTOCOL_V2, m.SUBPROTOCOL_V1):
            assert m.code_for_error(cls("x"), older) == m.SENT_AS.get(code, code)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "null",
        '{"id":1,"op":"send","to":["a"],"body":NaN}',
        '{"id":-1,"op":"logout"}',
        f'{{"id":{2**53},"op":"logout"}}',
        '{"id":1' + "0" * 5000 + ',"op":"logout"}',
        '{"id":1,"op":"ack","ids":[true]}',
        '{"id":1,"op":"list_accounts","limit":"5"}',
        '{"id":1,"op":"signup","username":5,"password":"x"}',
        "[" * 200_000 + "]" * 200_000,
        '{"id":1,"op":"send","to":' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_garbage_is_malformed_not_a_crash(text: str) -> None:
    with pytest.raises(m.Malformed) as refused:
        m.decode_request(text)
    assert refused.value.code in ALL_CODES


def _any_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.randint(-(2**60), 2**60)
    if kind == 1:
        return rng.choice(["", "send", "login", "\ud800", "ü", "x" * 40])
    if kind == 2:
        return rng.choice([None, True, False, 1.5])
    if kind == 3:
        return rng.choice(list(m.OPS))
    if kind == 4:
        return rng.randint(0, 10)
    if kind == 5:
        return [_any_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["id", "op", "to", "body", "ids", "username", "password", "pattern", "limit", "after"]
    keys += ["before_id", "participants", "conversation_id", "up_to_id", "for_everyone"]
    return {rng.choice(keys): _any_json(rng, depth + 1) for _ in range(rng.randrange(7))}


@pytest.mark.parametrize("version", [1, 2])
def test_random_json_decodes_or_is_refused(version: int) -> None:
    rng = random.Random(8)
    for _ in range(3000):
        text = json.dumps(_any_json(rng))
        try:
            rid, request = m.decode_request(text, version)
        except m.Malformed as exc:
            assert exc.code in ALL_CODES
        else:
            assert isinstance(request, rq.Request) and 0 <= rid <= m.MAX_REQUEST_ID


def test_a_client_ignores_pushes_and_members_it_does_not_know() -> None:
    assert cc.decode_server_message('{"push":"typing","from":"bob"}') is None
    reply = cc.decode_server_message('{"id":3,"ok":{"username":"a","pending":2,"new":1},"x":0}')
    assert isinstance(reply, cc.Reply) and reply.ok is not None
    assert cc.decode_result(SAMPLE["login"], reply.ok) == LoginResult("a", 2)
    rid, request = m.decode_request('{"id":3,"op":"logout","trace":"abc"}')
    assert (rid, request) == (3, rq.Logout())


@pytest.mark.parametrize(
    ("names", "body"),
    [
        (("bob",), "hi"),
        (("a", "b" * 32), "x" * 300),
        (('q"uote', "back\\slash", "ü", "\u2028", "\x00"), 'line\nbreak "✓" \x7f \ud7ff'),
        ((), ""),
    ],
)
def test_the_spelled_out_hot_paths_write_what_the_json_encoder_writes(
    names: tuple[str, ...], body: str
) -> None:
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    request = cc.encode_request(123, rq.Send(names, body))
    assert request == encode({"id": 123, "op": "send", "to": list(names), "body": body})
    assert json.loads(request) == {"id": 123, "op": "send", "to": list(names), "body": body}
    result = m.SendResult(2**40, 1_764_331_200_123, names, 77)
    members = {"message_id": 2**40, "sent_at": 1_764_331_200_123, "unknown": list(names)}
    reply = m.encode_reply(9, rq.Send(names, body), result, 1)
    assert reply == encode({"id": 9, "ok": members})
    reply = m.encode_reply(9, rq.Send(names, body), result)
    assert reply == encode({"id": 9, "ok": members | {"conversation_id": 77}})
    if names:
        assert m.decode_request(request) == (123, rq.Send(names, body))  # (fast path or not)
    for deleted in (False, True):
        delivery = Delivery(2**40, body, body, 1_764_331_200_123, names, deleted, 77)
        fields = {"message_id": 2**40, "from": body, "body": body, "sent_at": 1_764_331_200_123}
        v2 = fields | {"conversation_id": 77, "participants": list(names)}
        v2 |= {"sender_deleted": True} if deleted else {}
        assert m.encode_delivery(delivery, 1) == encode({"push": "deliver"} | fields)
        assert m.encode_delivery(delivery) == encode({"push": "deliver"} | v2)
        assert m.encode_event(SentCopy(delivery)) == [encode({"push": "sent"} | v2)]
        assert cc.decode_server_message(m.encode_delivery(delivery)) == delivery


# -- version 2: pages, their size bound, and the pushes ------------------------------------------
def _worst_message(conversation_id: int = 2**62) -> Delivery:
    """The largest message a user can see: a 64 KiB body of control characters (6 bytes each
    in JSON), the longest names, the largest ids, a deleted sender."""
    return Delivery(
        2**63 - 1,
        "s" * limits.MAX_USERNAME_CHARS,
        "\x01" * limits.MAX_BODY_BYTES,
        99_999_999_999_999,
        _worst_names(),
        True,
        conversation_id,
    )


def _worst_names() -> tuple[str, ...]:
    """A conversation's other participants at most: everyone of 257, but the reader."""
    return tuple(f"{i:0{limits.MAX_USERNAME_CHARS}d}" for i in range(limits.MAX_RECIPIENTS))


def test_one_item_of_the_largest_kind_always_fits_a_message() -> None:
    worst = _worst_message()
    names = _worst_names()
    rid = m.MAX_REQUEST_ID
    texts = [
        m.encode_delivery(worst),
        *m.encode_event(SentCopy(worst)),
        m.encode_reply(rid, rq.ReadHistory(), HistoryPage(2**62, names, (worst,), True, names, 1)),
        m.encode_reply(
            rid,
            rq.ListConversations(),
            ConversationPage((Conversation(2**62, names, worst, 2**40, 2**62, names),), True),
        ),
    ]
    for text in texts:
        assert text is not None and len(text.encode()) <= m.MAX_SERVER_MESSAGE_BYTES
    assert len(m.encode_delivery(worst, 1).encode()) <= m.MAX_MESSAGE_BYTES + 64  # (v1's bound)


def test_a_page_too_large_for_one_message_is_cut_and_says_more() -> None:
    big = Delivery(5, "bob", "\x01" * limits.MAX_BODY_BYTES, 1_764_331_200_123, ("bob",), False, 9)
    messages = tuple(dataclasses.replace(big, message_id=100 - i) for i in range(4))
    text = m.encode_reply(3, rq.ReadHistory(), HistoryPage(9, ("bob",), messages, False))
    assert text is not None and len(text.encode()) <= m.MAX_SERVER_MESSAGE_BYTES
    reply = cc.decode_server_message(text)
    assert isinstance(reply, cc.Reply) and reply.ok is not None
    page = cc.decode_result(rq.ReadHistory(), reply.ok)
    assert isinstance(page, HistoryPage) and page.more
    assert page.messages == messages[:1]  # (one fits: 393 KB of escapes; the cursor goes on)

    conversations = tuple(
        Conversation(i, ("bob",), dataclasses.replace(big, conversation_id=i), 0, 0)
        for i in range(1, 4)
    )
    text = m.encode_reply(3, rq.ListConversations(), ConversationPage(conversations, False))
    assert text is not None and len(text.encode()) <= m.MAX_SERVER_MESSAGE_BYTES
    reply = cc.decode_server_message(text)
    assert isinstance(reply, cc.Reply) and reply.ok is not None
    assert cc.decode_result(rq.ListConversations(), reply.ok) == ConversationPage(
        conversations[:1], True
    )
    small = HistoryPage(
        9, ("bob",), tuple(dataclasses.replace(big, body="hi") for _ in range(3)), False
    )
    text = m.encode_reply(3, rq.ReadHistory(), small)
    assert text is not None and '"more":false' in text


def test_a_large_deletion_is_split_into_pushes() -> None:
    ids = tuple(range(1, 10_001))
    texts = m.encode_event(MessagesDeleted(ids))
    assert len(texts) == 3
    got: list[int] = []
    for text in texts:
        push = cc.decode_server_message(text)
        assert isinstance(push, MessagesDeleted)
        assert len(push.message_ids) <= m.MAX_IDS_PER_DELETED_PUSH
        got += push.message_ids
    assert tuple(got) == ids


@pytest.mark.parametrize(
    "text",
    [
        '{"push":"deleted","ids":["1"]}',
        '{"push":"read","conversation_id":7,"up_to_id":4}',
        '{"push":"sent","message_id":1,"from":"a","body":"b","sent_at":1,"participants":"bob"}',
        '{"push":"deliver","message_id":1,"from":"a","body":"b","sent_at":1,"sender_deleted":1}',
        '{"push":"deliver","message_id":1,"from":"a","body":"b","sent_at":1,"conversation_id":"7"}',
    ],
)
def test_a_client_refuses_a_push_that_breaks_the_contract(text: str) -> None:
    with pytest.raises(cc.BadServerMessage):
        cc.decode_server_message(text)


@pytest.mark.parametrize(
    ("request_", "ok"),
    [
        # (atheris found the first: a string where the page's messages are an array)
        (rq.ReadHistory(), '{"conversation_id":3,"participants":[],"messages":"x","more":false}'),
        (rq.ReadHistory(), '{"conversation_id":3,"participants":[],"messages":[7],"more":false}'),
        (rq.ListConversations(), '{"conversations":"abc","more":false}'),
        (
            rq.ListConversations(),
            '{"conversations":[{"conversation_id":1,"participants":[],'
            '"last_message":"hi","unread":0,"read_up_to":0}],"more":false}',
        ),
        (rq.ListAccounts(), '{"usernames":"alice","more":false}'),
        (rq.ListAccounts(), '{"usernames":["alice"],"more":"no"}'),
        (rq.Login("a", "b"), '{"username":"a","pending":"2"}'),
        (rq.Send(("b",), "x"), '{"message_id":1.5,"sent_at":1}'),
        (rq.Send(("b",), "x"), '{"message_id":1,"sent_at":1,"unknown":"bob"}'),
    ],
)
def test_a_client_refuses_a_reply_of_the_wrong_shape(request_: rq.Request[Any], ok: str) -> None:
    reply = cc.decode_server_message(f'{{"id":1,"ok":{ok}}}')
    assert isinstance(reply, cc.Reply) and reply.ok is not None
    with pytest.raises(cc.BadServerMessage):
        cc.decode_result(request_, reply.ok)


@pytest.mark.parametrize(
    "text", ['["push"]', '"push"', '{"id":[1],"ok":{}}', '{"id":1,"error":["code"]}', "7"]
)
def test_a_client_refuses_a_server_message_that_is_not_an_object_it_knows(text: str) -> None:
    with pytest.raises(cc.BadServerMessage):
        cc.decode_server_message(text)


def test_version_1_connections_know_only_version_1_ops() -> None:
    assert set(m.V1_OPS) | set(m.V2_OPS) == set(m.OPS)
    for op in m.V2_OPS:
        with pytest.raises(m.Malformed) as refused:
            m.decode_request(f'{{"id":4,"op":"{op}"}}', 1)
        assert refused.value.code == m.UNKNOWN_OP and refused.value.request_id == 4
        assert m.SUBPROTOCOL_V2 in refused.value.message
    with pytest.raises(m.Malformed) as refused:
        m.decode_request('{"id":4,"op":"shout"}', 1)
    assert "read_history" not in refused.value.message


def test_the_client_leaves_out_default_members() -> None:
    assert cc.encode_request(1, rq.ListConversations()) == '{"id":1,"op":"list_conversations"}'
    assert (
        cc.encode_request(1, rq.ReadHistory()) == '{"id":1,"op":"read_history","participants":[]}'
    )
    assert (
        cc.encode_request(1, rq.DeleteMessages((3,))) == '{"id":1,"op":"delete_messages","ids":[3]}'
    )
    for request in (
        rq.ListConversations(5, 7),
        rq.ReadHistory(("a", "b"), 9, 3),
        rq.ReadHistory((), 9, 0, 4),
        rq.MarkRead(3, 9),
        rq.DeleteMessages((1, 2), True),
    ):
        assert m.decode_request(cc.encode_request(8, request)) == (8, request)
