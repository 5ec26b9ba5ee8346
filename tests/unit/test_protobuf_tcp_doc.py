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

from transports.custom._events import NEED_DATA, Ack, Deliver, Hello, Send, Sent, Welcome
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
from transports.protobuf_tcp._bodies import CLIENT_MESSAGES, MAGIC, MESSAGE_OF, SERVER_MESSAGES
from transports.protobuf_tcp._codec import Connection, Role

DOC = Path(__file__).resolve().parents[2].joinpath("transports/protobuf_tcp/PROTOCOL.md")
TEXT = DOC.read_text(encoding="utf-8")
_BLOCK = re.compile(r"^```hex (?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)
_ANNOTATION = re.compile(r"(?P<name>[a-z_]+(?:\[\d+\])?)\s*=\s*(?P<value>.+)")
_IDENTIFIER = re.compile(r"(?P<value>[A-Z][A-Z0-9_]*)(?P<rest>.*)")
WELCOME = Welcome(PROTOCOL_VERSION, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
HEADER = {"length", "opcode", "request_id"}
#: The opcodes protobuf-tcp carries (custom protocol version 1's; see _codec.Connection.versions).
CARRIED = [Opcode(op) for op, *_ in CLIENT_MESSAGES + SERVER_MESSAGES]


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
def _server_greeted() -> Connection:
    server = Connection(Role.SERVER)
    server.receive_data(Connection(Role.CLIENT).send(Hello()))
    server.next_event()
    return server


def _welcome_bytes() -> bytes:
    return _server_greeted().send(WELCOME)


def receiver(example: Example) -> Connection:
    """A connection in the state where ``example`` is the next frame to arrive."""
    if example.direction == "c2s":
        if example.message == "HELLO" or example.first:
            return Connection(Role.SERVER)
        server = _server_greeted()
        server.send(WELCOME)
        return server
    client = Connection(Role.CLIENT)
    client.send(Hello())
    if example.message != "WELCOME" and not example.before_welcome:
        client.receive_data(_welcome_bytes())
        client.next_event()
    return client


def sender_of(example: Example) -> Connection:
    """A connection in the state where it may send ``example``."""
    if example.direction == "c2s":
        client = Connection(Role.CLIENT)
        if example.message != "HELLO":
            client.send(Hello())
            client.receive_data(_welcome_bytes())
            client.next_event()
        return client
    if example.before_welcome:
        return Connection(Role.SERVER)  # refusing the first frame
    server = _server_greeted()
    if example.message != "WELCOME":
        server.send(WELCOME)
    return server


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
    for name in (d.name for d in dataclasses.fields(event)):  # every field on the wire
        if getattr(event, name) not in (0, "", b"", (), False) or isinstance(event, Hello):
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
    item = re.fullmatch(r"(\w+)\[(\d+)\]", f.name)
    if item:  # one element of a repeated field: its own tag, length and value
        value = getattr(event, item[1])[int(item[2])]
        return value, message(**{item[1]: [value]}).SerializeToString()
    value = getattr(event, f.name)
    encoding = message(**{f.name: value}).SerializeToString()
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
    namespace = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    namespace.setdefault("request_id", 0)
    namespace |= {"V": varint_size, "T": _t, "R": _r, "K": _k, "len": _blen}
    payload = eval(FORMULAS[OPCODE_OF[type(event)].name], {"__builtins__": {}}, namespace)
    return varint_size(payload) + payload


def test_every_message_has_a_cost_formula() -> None:
    assert set(FORMULAS) == {op.name for op in CARRIED}


@pytest.mark.parametrize("example", [e for e in VALID if not e.before_welcome], ids=str)
def test_cost_formula_of_each_example(example: Example) -> None:
    event: Any
    (event,) = decode(receiver(example), example.data)
    assert frame_cost(event) == len(example.data)
    bigger = dataclasses.replace(event, **_scaled(event))  # multi-byte lengths too
    assert frame_cost(bigger) == len(sender_of(example).send(bigger))


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
