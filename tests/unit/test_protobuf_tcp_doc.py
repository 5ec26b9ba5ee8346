"""protobuf-tcp's PROTOCOL.md is executable: its hex examples, message table and byte costs.

* Each ```` ```hex <dir> <MESSAGE> ```` block is decoded by the codec (whole, one byte at a time,
  and followed by the start of another frame) into one event of that message; every line's bytes
  must be exactly its field's encoding (a protobuf field whole: tag, length, value) and its
  annotation the decoded value; and the event must re-encode to the identical bytes.
* Each ```` ```hex c2s invalid <CODE> ```` block must be refused with that code.
* The opcode -> message table must be the codec's, and the byte-cost formulas must give the
  size of every example and of larger events, and the figures the prose quotes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.types import Delivery
from transports.custom._events import (
    NEED_DATA,
    Ack,
    Deliver,
    Hello,
    History,
    MarkedRead,
    MarkRead,
    ReadHistory,
    ReadMark,
    Send,
    Sent,
    SentCopy,
    Welcome,
)
from transports.custom._messages import OPCODE_OF, read_varint
from transports.custom._wire import (
    MAX_BODY,
    MAX_FRAME,
    MAX_RECIPIENTS,
    PROTOCOL_VERSION,
    ErrorCode,
    Opcode,
    ProtocolError,
    put_varint,
    varint_size,
)
from transports.protobuf_tcp._bodies import MAGIC
from transports.protobuf_tcp._bodies import MESSAGE_OF as MESSAGE_OF_V1
from transports.protobuf_tcp._bodies_v2 import MESSAGE_OF_V2
from transports.protobuf_tcp._bodies_v3 import CLIENT_MESSAGES_V3, MESSAGE_OF_V3, SERVER_MESSAGES_V3
from transports.protobuf_tcp._codec import Connection, Role

DOC = Path(__file__).resolve().parents[2].joinpath("transports/protobuf_tcp/PROTOCOL.md")
TEXT = DOC.read_text(encoding="utf-8")
_BLOCK = re.compile(r"^```hex (?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)
_ANNOTATION = re.compile(r"(?P<name>[a-z_]+(?:\[\d+\])?)\s*=\s*(?P<value>.+)")
_IDENTIFIER = re.compile(r"(?P<value>[A-Z][A-Z0-9_]*)(?P<rest>.*)")
WELCOME = Welcome(PROTOCOL_VERSION, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
HEADER = {"length", "opcode", "request_id"}
#: The opcodes protobuf-tcp carries (custom protocol versions 1-4's: 4 adds none).
CARRIED = [Opcode(op) for op, *_ in CLIENT_MESSAGES_V3 + SERVER_MESSAGES_V3]
MESSAGE_OF = MESSAGE_OF_V1 | MESSAGE_OF_V2 | MESSAGE_OF_V3
#: Event fields whose protobuf field has another name (PROTOCOL.md section 2, version 3).
PROTO_NAME = {"token": "resume_token"}
#: Messages whose size section 6 gives in prose, not as one formula (nested repeated messages).
PROSE_COSTS = {"CONVERSATIONS", "HISTORY"}


@dataclass
class Field:
    name: str
    value: Any
    symbolic: bool
    data: bytearray


@dataclass
class Example:
    line: int
    direction: str
    message: str  # the message name, or the error code of an invalid example
    invalid: bool
    first: bool
    before_welcome: bool
    version: int = 1
    data: bytes = b""
    fields: list[Field] = field(default_factory=list)

    def __str__(self) -> str:
        kind = "invalid " if self.invalid else ""
        return f"PROTOCOL.md:{self.line} {self.direction} {kind}{self.message}"


def _parse_value(text: str) -> tuple[Any, bool]:
    text = text.strip()
    try:
        value, end = json.JSONDecoder().raw_decode(text)
        symbolic = False
    except json.JSONDecodeError:
        match = _IDENTIFIER.fullmatch(text)
        assert match, f"not a JSON value or a name: {text!r}"
        value, end, symbolic = match["value"], match.end("value"), True
    rest = text[end:].strip()
    assert not rest or (rest.startswith("(") and rest.endswith(")")), f"junk after {text!r}"
    return value, symbolic


def _parse(match: re.Match[str]) -> Example:
    words = match["info"].split()
    line = TEXT.count("\n", 0, match.start()) + 1
    assert words[0] in ("c2s", "s2c"), f"line {line}: direction c2s or s2c"
    invalid = len(words) > 1 and words[1] == "invalid"
    example = Example(
        line,
        words[0],
        words[2] if invalid else words[1],
        invalid,
        "first" in words[2:],
        "before-welcome" in words[2:],
        next((int(w[1:]) for w in words[2:] if re.fullmatch(r"v\d", w)), 1),
    )
    data = bytearray()
    for text in match["body"].splitlines():
        hex_part, _, note = text.partition(";")
        chunk = bytes.fromhex(hex_part)
        assert chunk, f"line {line}: a line without bytes: {text!r}"
        data += chunk
        if invalid:
            continue  # annotations of refused bytes are prose
        if note.strip():
            annotation = _ANNOTATION.fullmatch(note.strip())
            assert annotation, f"line {line}: not 'name = value': {note!r}"
            value, symbolic = _parse_value(annotation["value"])
            example.fields.append(Field(annotation["name"], value, symbolic, bytearray(chunk)))
        else:
            assert example.fields, f"line {line}: a continuation line with nothing to continue"
            example.fields[-1].data += chunk
    example.data = bytes(data)
    return example


EXAMPLES = [_parse(m) for m in _BLOCK.finditer(TEXT)]
VALID = [e for e in EXAMPLES if not e.invalid]
INVALID = [e for e in EXAMPLES if e.invalid]


# -- codec states ----------------------------------------------------------------------------
def _server_greeted(version: int = 1) -> Connection:
    server = Connection(Role.SERVER)
    server.receive_data(Connection(Role.CLIENT).send(Hello(1, version)))
    server.next_event()
    return server


def _welcome(version: int = 1) -> Welcome:
    return dataclasses.replace(WELCOME, version=version)


def _welcome_bytes(version: int = 1) -> bytes:
    return _server_greeted(version).send(_welcome(version))


def receiver(example: Example) -> Connection:
    """A connection in the state where ``example`` is the next frame to arrive."""
    if example.direction == "c2s":
        if example.message == "HELLO" or example.first:
            return Connection(Role.SERVER)
        server = _server_greeted(example.version)
        server.send(_welcome(example.version))
        return server
    client = Connection(Role.CLIENT)
    client.send(Hello(1, example.version))
    if example.message != "WELCOME" and not example.before_welcome:
        client.receive_data(_welcome_bytes(example.version))
        client.next_event()
    return client


def sender_of(example: Example) -> Connection:
    """A connection in the state where it may send ``example``."""
    if example.direction == "c2s":
        client = Connection(Role.CLIENT)
        if example.message != "HELLO":
            client.send(Hello(1, example.version))
            client.receive_data(_welcome_bytes(example.version))
            client.next_event()
        return client
    if example.before_welcome:
        return Connection(Role.SERVER)  # refusing the first frame
    server = _server_greeted(example.version)
    if example.message != "WELCOME":
        server.send(_welcome(example.version))
    return server


def _fields_of(event: Any) -> Any:
    """The event whose fields are the body's: SENT_COPY's body is its message's."""
    return event.message if isinstance(event, SentCopy) else event


def decode(conn: Connection, data: bytes, *, bytewise: bool = False) -> list[object]:
    events: list[object] = []
    for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return events


# -- the examples ----------------------------------------------------------------------------
def test_the_examples_the_brief_asks_for_are_there() -> None:
    assert {"HELLO", "SEND", "SENT", "DELIVER", "ERROR"} <= {e.message for e in VALID}
    assert any(e.before_welcome for e in VALID)
    assert {"BAD_HANDSHAKE", "MALFORMED", "INVALID_UTF8"} <= {e.message for e in INVALID}
    v2 = {e.message for e in VALID if e.version == 2}
    assert {"DELIVER", "SENT_COPY", "READ_MARK", "MESSAGES_GONE", "SENT"} <= v2  # every push
    assert v2 & {"LIST_CONVERSATIONS", "READ_HISTORY", "MARK_READ", "DELETE_MESSAGES"}
    assert v2 & {"CONVERSATIONS", "HISTORY", "MARKED_READ", "REMOVED"}
    v3 = {e.message for e in VALID if e.version == 3}
    assert {"RESUME", "CHANGE_PASSWORD", "PASSWORD_CHANGED", "LOGGED_IN", "DELETE_ACCOUNT"} <= v3


@pytest.mark.parametrize("example", VALID, ids=str)
def test_example_decodes_to_its_message(example: Example) -> None:
    events = decode(receiver(example), example.data)
    assert len(events) == 1, f"{example}: {events}"
    assert OPCODE_OF[type(events[0])].name == example.message
    assert decode(receiver(example), example.data, bytewise=True) == events
    conn = receiver(example)
    assert decode(conn, example.data + b"\x05\x09") == events
    assert conn.buffered == 2


@pytest.mark.parametrize("example", VALID, ids=str)
def test_example_reencodes_to_the_same_bytes(example: Example) -> None:
    (event,) = decode(receiver(example), example.data)
    assert sender_of(example).send(event) == example.data


@pytest.mark.parametrize("example", VALID, ids=str)
def test_example_annotations_are_the_decoded_fields(example: Example) -> None:
    event: Any
    (event,) = decode(receiver(example), example.data)
    names = {f.name for f in example.fields}
    assert names >= HEADER, f"{example}: the header is not annotated"
    annotated = {re.sub(r"\[\d+\]$", "", name) for name in names}
    body = _fields_of(event)
    for name in (d.name for d in dataclasses.fields(body)):  # every field on the wire
        if getattr(body, name) not in (0, "", b"", (), False) or isinstance(event, Hello):
            assert name in annotated, f"{example}: {name} is not annotated"
    for f in example.fields:
        value, encoding = _actual(example, event, f)
        assert f.value == value, f"{example}: {f.name} is {value!r}, not {f.value!r}"
        assert bytes(f.data) == encoding, f"{example}: the bytes of {f.name} are not its field"


def _varint(value: int) -> bytes:
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


def _actual(example: Example, event: Any, f: Field) -> tuple[Any, bytes]:
    """(the field's value in the decoded event, as annotated; the bytes it must be)."""
    if f.name == "length":
        length, end = read_varint(bytearray(example.data), 0, len(example.data), 5)
        return length, example.data[:end]
    if f.name == "opcode":
        opcode = OPCODE_OF[type(event)]
        return opcode.name, bytes([opcode])
    if f.name == "request_id":
        rid = getattr(event, "request_id", 0)
        return rid, _varint(rid)
    if isinstance(event, Hello):  # the custom layout, magic "WP"
        if f.name == "magic":
            return MAGIC.decode(), MAGIC
        value = getattr(event, f.name)
        return value, bytes([value])
    if example.before_welcome:  # the custom ERROR: code u8, message rest-text
        if f.name == "code":
            return event.code.name, bytes([event.code])
        return event.message, event.message.encode()
    message = MESSAGE_OF[OPCODE_OF[type(event)]]
    event = _fields_of(event)
    item = re.fullmatch(r"(\w+)\[(\d+)\]", f.name)
    if item:  # one element of a repeated field: its own tag, length and value
        value = getattr(event, item[1])[int(item[2])]
        return value, message(**{item[1]: [value]}).SerializeToString()
    value = getattr(event, f.name)
    encoding = message(**{PROTO_NAME.get(f.name, f.name): value}).SerializeToString()
    if isinstance(value, ErrorCode) and f.symbolic:
        return value.name, encoding
    if isinstance(value, tuple):
        return list(value), encoding
    if isinstance(value, bytes):
        return value.decode(), encoding
    return value, encoding


@pytest.mark.parametrize("example", INVALID, ids=str)
@pytest.mark.parametrize("bytewise", [False, True])
def test_invalid_example_is_refused_with_its_code(example: Example, bytewise: bool) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(receiver(example), example.data, bytewise=bytewise)
    assert info.value.code is ErrorCode[example.message]


# -- the message table -------------------------------------------------------------------------
def _section(number: str) -> str:
    start = TEXT.index(f"\n## {number}. ")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end > 0 else None]


def test_message_table_is_the_codecs() -> None:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in _section("2").splitlines()
        if line.startswith("| `0x")
    ]
    table = {int(r[0].strip("`"), 16): (r[1], r[2]) for r in rows}
    assert {op: name for op, (name, _) in table.items()} == {op: op.name for op in CARRIED}
    for opcode, cls in MESSAGE_OF.items():
        body = table[opcode][1]
        assert body.startswith(f"`{cls.DESCRIPTOR.full_name}`"), (opcode.name, body)
    assert "magic `WP`" in table[Opcode.HELLO][1]


# -- the byte costs of section 6 -----------------------------------------------------------------
def _blen(x: str | bytes) -> int:
    return len(x.encode()) if isinstance(x, str) else len(x)


def _t(x: Any) -> int:
    if x in (0, "", b"", False):
        return 0
    if x is True:
        return 2
    if isinstance(x, int):
        return 1 + varint_size(x)
    return 1 + varint_size(_blen(x)) + _blen(x)


def _r(xs: tuple[str, ...]) -> int:
    return sum(1 + varint_size(_blen(x)) + _blen(x) for x in xs)


def _k(ids: tuple[int, ...]) -> int:
    n = sum(map(varint_size, ids))
    return 1 + varint_size(n) + n if ids else 0


FORMULAS = {
    row[0]: row[1].strip("`")
    for line in _section("6").splitlines()
    if line.startswith("| ") and not line.startswith("| Message")
    for row in [[c.strip() for c in line.strip().strip("|").split("|")]]
    if row[1].startswith("`")
}


def frame_cost(event: Any) -> int:
    """V(P) + P, with P from PROTOCOL.md's formula for this message."""
    body = _fields_of(event)
    namespace = {f.name: getattr(body, f.name) for f in dataclasses.fields(body)}
    namespace.setdefault("request_id", 0)
    namespace |= {"V": varint_size, "T": _t, "R": _r, "K": _k, "len": _blen}
    payload = eval(FORMULAS[OPCODE_OF[type(event)].name], {"__builtins__": {}}, namespace)
    return varint_size(payload) + payload


def test_every_message_has_a_cost_formula() -> None:
    assert set(FORMULAS) == {op.name for op in CARRIED} - PROSE_COSTS


@pytest.mark.parametrize("example", [e for e in VALID if not e.before_welcome], ids=str)
def test_cost_formula_of_each_example(example: Example) -> None:
    event: Any
    (event,) = decode(receiver(example), example.data)
    assert frame_cost(event) == len(example.data)
    bigger = _bigger(event)  # multi-byte lengths too
    assert frame_cost(bigger) == len(sender_of(example).send(bigger))


def _bigger(event: Any) -> Any:
    if isinstance(event, SentCopy):
        return SentCopy(_bigger(event.message))
    return dataclasses.replace(event, **_scaled(event))


def _scaled(event: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, str | bytes) and value:
            changes[f.name] = value * 300
        elif isinstance(value, tuple) and value and isinstance(value[0], str):
            changes[f.name] = tuple(name * 150 for name in value)
        elif isinstance(value, tuple) and value:
            changes[f.name] = tuple(i * 2**40 for i in value)
        elif f.name in ("conversation_id", "up_to_id", "unread") and value:
            changes[f.name] = value * 2**30  # (0 stays 0: not a field of version 1)
        elif f.name in ("message_id", "sent_at_ms", "pending", "limit"):
            changes[f.name] = value * 2**20 + 1
        elif f.name == "request_id":
            changes[f.name] = value * 2**20 + 300
    return changes


def _client() -> Connection:
    return sender_of(Example(0, "c2s", "SEND", False, False, False))


def _server() -> Connection:
    return sender_of(Example(0, "s2c", "SENT", False, False, False))


@pytest.mark.parametrize("body_size", [1, 32, 115, 116, 127, 128, 1000, 16370, 16400, MAX_BODY])
@pytest.mark.parametrize("name_size", [1, 12, 32])
def test_the_budget_of_a_chat_message(body_size: int, name_size: int) -> None:
    body, name, sender = "b" * body_size, "n" * name_size, "s" * name_size
    send = len(_client().send(Send(1, (name,), body)))
    p = body_size + name_size + 5 + varint_size(body_size)
    assert send == varint_size(p) + p <= body_size + name_size + 11
    if p < 128:
        assert send == body_size + name_size + 7
    elif body_size >= 128 and p < 16384:
        assert send == body_size + name_size + 9
    for message_id in (1, 1000, 2**20):
        sent = len(_server().send(Sent(1, message_id, 1767225600000, ())))
        assert sent == 1 + 10 + varint_size(message_id)
        deliver = _server().send(Deliver(message_id, 1767225600000, sender, body))
        p = body_size + name_size + 13 + varint_size(message_id) + varint_size(body_size)
        assert len(deliver) == varint_size(p) + p
        assert len(_client().send(Ack((message_id,)))) == 5 + varint_size(message_id)


def test_the_quoted_figures() -> None:
    body, name = "b" * 32, "r" * 12
    assert len(_client().send(Send(1, (name,), body))) == 51
    assert len(_server().send(Sent(1, 1000, 1767225600000, ()))) == 13
    assert len(_server().send(Deliver(1000, 1767225600000, "s" * 12, body))) == 61
    assert len(_client().send(Ack((1000,)))) == 7
    assert "51 + 13 = 64" in _section("6") and "61 + 7 = 68" in _section("6")
    largest = Send(2**32 - 1, tuple(f"{i:032d}" for i in range(MAX_RECIPIENTS)), "x" * MAX_BODY)
    frame = _client().send(largest)
    length, _ = read_varint(bytearray(frame), 0, len(frame), 5)
    assert length == 74250 < MAX_FRAME and "74250 bytes" in _section("1")
    smallest_body = Send(2**32 - 1, largest.recipients, "x")
    reply = Sent(2**32 - 1, 2**64 - 1, 2**64 - 1, largest.recipients)
    growth = len(_server().send(reply)) - len(_client().send(smallest_body))
    assert growth == 19 and "at most 19 bytes" in _section("1")


# -- version 2's pages and read marks (the prose of section 6) ----------------------------------
def _v2() -> tuple[Connection, Connection]:
    client = sender_of(Example(0, "c2s", "MARK_READ", False, False, False, 2))
    return client, sender_of(Example(0, "s2c", "HISTORY", False, False, False, 2))


def _page() -> History:
    """The page section 6 quotes: 50 messages of 32 bytes, alternating senders, 1.5 s apart."""
    messages = tuple(
        Delivery(1049 - i, ("alice", "bob")[i % 2], "b" * 32, 1767225600000 + (49 - i) * 1500,
                 ("alice",), False, 7)
        for i in range(50)
    )  # fmt: skip
    return History(2, 7, ("alice",), messages, True, (), 1040)


def _history_cost(page: History) -> int:
    """V(P) + P by the HISTORY formula of section 6."""
    p = 1 + varint_size(page.request_id) + _t(page.conversation_id) + _r(page.participants)
    p += _t(page.more) + _r(page.deleted_participants) + _t(page.read_up_to)
    for d in page.messages:
        m = _t(d.message_id) + _t(d.sent_at_ms) + _t(d.sender) + _t(d.body)
        m += _t(d.sender_deleted)
        p += 1 + varint_size(m) + m
    return varint_size(p) + p


def test_the_history_formula_and_quoted_version_2_figures() -> None:
    from transports.custom._codec import Connection as CustomConnection

    custom_client, custom_server = CustomConnection(Role.CLIENT), CustomConnection(Role.SERVER)
    custom_server.receive_data(custom_client.send(Hello(1, 2)))
    custom_server.next_event()
    custom_client.receive_data(custom_server.send(_welcome(2)))
    custom_client.next_event()
    client, server = _v2()
    page = _page()
    assert len(server.send(page)) == _history_cost(page) == 2618
    assert len(custom_server.send(page)) == 1885
    deleted = dataclasses.replace(page, messages=page.messages[:3], deleted_participants=("alice",))
    assert len(server.send(deleted)) == _history_cost(deleted)
    request = ReadHistory(2, 0, 0, 50, ("alice",))
    assert (len(client.send(request)), len(custom_client.send(request))) == (12, 13)
    mark, marked = MarkRead(3, 7, 1049), MarkedRead(3, 7, 1049, 0)
    assert len(client.send(mark)) + len(server.send(marked)) == 8 + 8
    assert len(custom_client.send(mark)) + len(custom_server.send(marked)) == 6 + 7
    assert len(server.send(ReadMark(7, 1049, 0))) == 8
    assert len(custom_server.send(ReadMark(7, 1049, 0))) == 7
    prose = " ".join(_section("6").split())
    for quoted in ("2618 bytes here, 1885 in custom", "12 bytes (custom: 13)", "8 + 8 = 16"):
        assert quoted in prose, quoted
    assert "6 + 7 = 13" in prose and "8 bytes (custom: 7)" in prose
