"""PROTOCOL.md is executable: every hex example, table and formula in it is checked here.

* Each ```` ```hex <dir> <MESSAGE> ```` block is decoded by the codec (fed whole, one byte at a
  time, and followed by the start of another frame), must give one event of that message whose
  fields equal the block's annotations, line by line (the bytes on a line must be exactly that
  field's encoding), and must re-encode to the identical bytes.
* Each ```` ```hex c2s invalid <CODE> ```` block must be refused with that error code.
* The opcode tables, the error code table, the limits table and the byte-cost formulas must agree
  with the code; every message and every connection-level error has an example.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core import limits
from transports import custom
from transports.custom import (
    OPCODE_OF,
    Connection,
    ErrorCode,
    Hello,
    Opcode,
    ProtocolError,
    Role,
    Welcome,
    _server,
)
from transports.custom._events import NEED_DATA
from transports.custom._messages import read_varint
from transports.custom._wire import (
    HANDSHAKE_TIMEOUT,
    MAX_BODY,
    MAX_FRAME,
    MAX_RECIPIENTS,
    PROTOCOL_VERSION,
    S2C_SLACK,
    closes,
    put_varint,
    varint_size,
)

DOC_PATH = Path(custom.__file__).with_name("PROTOCOL.md")
DOC = DOC_PATH.read_text(encoding="utf-8")
_BLOCK = re.compile(r"^```hex (?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)
_ANNOTATION = re.compile(r"(?P<name>[a-z_]+(?:\.count|\[\d+\])?)\s*=\s*(?P<value>.+)")
_IDENTIFIER = re.compile(r"(?P<value>[A-Z][A-Z0-9_]*)(?P<rest>.*)")
WELCOME = Welcome(PROTOCOL_VERSION, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)


@dataclass
class Field:
    name: str
    value: Any  # a JSON value, or the name of an opcode / error code (a str, symbolic=True)
    symbolic: bool
    data: bytearray


@dataclass
class Example:
    line: int  # where the block starts in PROTOCOL.md, for error messages
    direction: str  # c2s or s2c
    message: str  # the message name, or the error code for an invalid example
    invalid: bool
    first: bool  # invalid bytes that open the connection
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
    line = DOC.count("\n", 0, match.start()) + 1
    assert words[0] in ("c2s", "s2c"), f"line {line}: direction c2s or s2c, not {words[0]!r}"
    invalid = len(words) > 1 and words[1] == "invalid"
    example = Example(
        line, words[0], words[2] if invalid else words[1], invalid, "first" in words[2:]
    )
    data = bytearray()
    for text in match["body"].splitlines():
        hex_part, _, note = text.partition(";")
        chunk = bytes.fromhex(hex_part)
        assert chunk, f"line {line}: a line without bytes: {text!r}"
        data += chunk
        if example.invalid:
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


EXAMPLES = [_parse(m) for m in _BLOCK.finditer(DOC)]
VALID = [e for e in EXAMPLES if not e.invalid]
INVALID = [e for e in EXAMPLES if e.invalid]


# -- codec states the examples need ----------------------------------------------------------
def receiver(example: Example) -> Connection:
    """A connection in the state where ``example`` is the next frame to arrive."""
    if example.direction == "c2s":
        conn = Connection(Role.SERVER)
        if example.message != "HELLO" and not example.first:
            conn.receive_data(Connection(Role.CLIENT).send(Hello()))
            conn.next_event()
            conn.send(WELCOME)
        return conn
    conn = Connection(Role.CLIENT)
    conn.send(Hello())
    if example.message != "WELCOME":
        conn.receive_data(_welcome_bytes())
        conn.next_event()
    return conn


def sender_of(example: Example) -> Connection:
    """A connection in the state where it may send ``example``."""
    if example.direction == "c2s":
        conn = Connection(Role.CLIENT)
        if example.message != "HELLO":
            conn.send(Hello())
            conn.receive_data(_welcome_bytes())
            conn.next_event()
        return conn
    conn = Connection(Role.SERVER)
    conn.receive_data(Connection(Role.CLIENT).send(Hello()))
    conn.next_event()
    if example.message != "WELCOME":
        conn.send(WELCOME)
    return conn


def _welcome_bytes() -> bytes:
    conn = Connection(Role.SERVER)
    conn.receive_data(Connection(Role.CLIENT).send(Hello()))
    conn.next_event()
    return conn.send(WELCOME)


def decode(conn: Connection, data: bytes, *, bytewise: bool = False) -> list[object]:
    events: list[object] = []
    for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return events


# -- the examples ----------------------------------------------------------------------------
@pytest.mark.parametrize("example", VALID, ids=str)
def test_example_decodes_to_its_message(example: Example) -> None:
    events = decode(receiver(example), example.data)
    assert len(events) == 1, f"{example}: {events}"
    assert OPCODE_OF[type(events[0])].name == example.message
    assert decode(receiver(example), example.data, bytewise=True) == events
    conn = receiver(example)
    assert decode(conn, example.data + b"\x05\x09") == events  # the start of a next frame
    assert conn.buffered == 2


@pytest.mark.parametrize("example", VALID, ids=str)
def test_example_annotations_are_the_decoded_fields(example: Example) -> None:
    (event,) = decode(receiver(example), example.data)
    names = {f.name for f in example.fields}
    header = {"length", "opcode", "request_id"} | ({"magic"} if isinstance(event, Hello) else set())
    assert header <= names, f"{example}: the header is not annotated"
    for name in (f.name for f in dataclasses.fields(event)):
        assert name in names or f"{name}.count" in names, f"{example}: {name} not annotated"
    for f in example.fields:
        expected, encodings = _actual(example, event, f)
        assert f.value == expected, f"{example}: {f.name} is {expected!r}, not {f.value!r}"
        assert bytes(f.data) in encodings, f"{example}: the bytes of {f.name} are not its value"


def _actual(example: Example, event: Any, f: Field) -> tuple[Any, set[bytes]]:
    """(the field's value in the decoded event, as annotated; its possible encodings)."""
    if f.name == "length":
        length, end = read_varint(bytearray(example.data), 0, len(example.data), 5)
        return length, {example.data[:end]}
    if f.name == "opcode":
        opcode = OPCODE_OF[type(event)]
        return opcode.name, {bytes([opcode])}
    if f.name == "request_id":
        rid = getattr(event, "request_id", 0)
        return rid, {_varint(rid)}
    if f.name == "magic":
        return "WC", {b"WC"}
    base, _, rest = f.name.partition(".")
    if rest == "count":
        count = len(getattr(event, base))
        return count, {_varint(count)}
    item = re.fullmatch(r"(\w+)\[(\d+)\]", f.name)
    if item:
        values, index = getattr(event, item[1]), int(item[2])
        value = values[index]
        encodings = _encodings(value)
        if item[1] == "message_ids" and index:  # ACK sends each id as a delta
            encodings = {_varint(value - values[index - 1])}
        return value, encodings
    value = getattr(event, f.name)
    if isinstance(value, bytes):  # opaque payloads are annotated as text
        return value.decode(), {value}
    if isinstance(value, ErrorCode) and f.symbolic:
        return value.name, {bytes([value])}
    return value, _encodings(value)


def _varint(value: int) -> bytes:
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


def _encodings(value: Any) -> set[bytes]:
    if isinstance(value, bool):
        return {bytes([value])}
    if isinstance(value, int):
        return {_varint(value)} | ({bytes([value])} if value < 256 else set())
    data = value.encode()
    return {_varint(len(data)) + data, data}  # a str, or the rest of the frame


@pytest.mark.parametrize("example", VALID, ids=str)
def test_example_reencodes_to_the_same_bytes(example: Example) -> None:
    (event,) = decode(receiver(example), example.data)
    assert sender_of(example).send(event) == example.data


@pytest.mark.parametrize("example", INVALID, ids=str)
@pytest.mark.parametrize("bytewise", [False, True])
def test_invalid_example_is_refused_with_its_code(example: Example, bytewise: bool) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(receiver(example), example.data, bytewise=bytewise)
    assert info.value.code is ErrorCode[example.message]


def test_every_message_and_connection_error_has_an_example() -> None:
    assert {e.message for e in VALID} == {op.name for op in Opcode}
    assert {e.message for e in INVALID} >= {c.name for c in ErrorCode if c < 0x10}


# -- the tables ----------------------------------------------------------------------------
def _section(number: str) -> str:
    start = DOC.index(f"\n## {number}. ")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def _rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| `0x")
    ]


def test_opcode_tables_match_the_code() -> None:
    rows = _rows(_section("6")) + _rows(_section("7"))
    assert {(int(r[0].strip("`"), 16), r[1]) for r in rows} == {(op, op.name) for op in Opcode}
    zero_id = {r[1] for r in rows if r[2] == "0"}
    assert zero_id == {"HELLO", "ACK", "WELCOME", "DELIVER"}


def test_error_code_table_matches_the_code() -> None:
    rows = _rows(_section("10"))
    assert {(int(r[0].strip("`"), 16), r[1]) for r in rows} == {(c, c.name) for c in ErrorCode}
    for code, _, level, closing, _ in ((int(r[0].strip("`"), 16), *r[1:]) for r in rows):
        expected = "connection" if code < 0x10 else "request" if code < 0x20 else "session end"
        assert level == expected, code
        assert closes(code) == (closing == "yes") or 0x10 <= code < 0x20, code


LIMIT_ROWS = {
    "Frame length, client to server": f"{MAX_FRAME} bytes (`max_frame`)",
    "Frame length, server to client": f"at most `max_frame` + {S2C_SLACK}",
    "Message body": f"1..{MAX_BODY} bytes of UTF-8 (`max_body`)",
    "Recipients per SEND": f"1..{MAX_RECIPIENTS} (`max_recipients`), distinct",
    "A recipient name": f"at most {limits.MAX_USERNAME_CHARS * 4} characters",
    "Ids per ACK": f"1..{limits.MAX_ACK_IDS}",
    "Username at SIGNUP": f"1..{limits.MAX_USERNAME_CHARS} of `A-Z a-z 0-9 _ . -`",
    "Password at SIGNUP": f"1..{limits.MAX_PASSWORD_BYTES} bytes of UTF-8",
    "LIST_ACCOUNTS pattern": f"at most {limits.MAX_PATTERN_CHARS} characters",
    "LIST_ACCOUNTS after": f"at most {limits.MAX_USERNAME_CHARS * 4} characters",
    "LIST_ACCOUNTS page size": (
        f"0 means {limits.DEFAULT_PAGE_SIZE}; at most {limits.MAX_PAGE_SIZE}"
    ),
    "Time to a complete HELLO": f"{HANDSHAKE_TIMEOUT:g} seconds",
    "Unread output": f"{_server.HIGH_WATER // 1024} KiB unread with no progress for "
    f"{_server.STALL_TIMEOUT:g} s, or {limits.MAX_SESSION_QUEUE} messages queued",
}


def test_limits_table_matches_the_code() -> None:
    rows = [line.strip().strip("|").split("|") for line in _section("4").splitlines()]
    table = {cells[0].strip(): cells[1].strip() for cells in rows if len(cells) > 2}
    for name, value in LIMIT_ROWS.items():
        assert table.get(name) == value, name
    assert limits.MAX_RECIPIENTS * (1 + limits.MAX_USERNAME_CHARS) + 8 + MAX_BODY < MAX_FRAME
    assert f"for up to {_server.LINGER:g} seconds" in _section("9")


def test_welcome_example_announces_the_real_limits() -> None:
    (example,) = [e for e in VALID if e.message == "WELCOME"]
    assert decode(receiver(example), example.data) == [WELCOME]


# -- the byte-cost formulas of section 11 ------------------------------------------------------
def _blen(x: str | bytes | tuple[Any, ...]) -> int:
    return len(x.encode()) if isinstance(x, str) else len(x)


def _s(x: str) -> int:
    return varint_size(_blen(x)) + _blen(x)


def _d(ids: tuple[int, ...]) -> int:
    deltas = [b - a for a, b in itertools.pairwise(ids)]
    return varint_size(len(ids)) + varint_size(ids[0]) + sum(map(varint_size, deltas))


FORMULAS = {
    row[0]: row[1].strip("`")
    for line in _section("11").splitlines()
    if line.startswith("| ") and not line.startswith("| Message")
    for row in [[c.strip() for c in line.strip().strip("|").split("|")]]
    if row[1].startswith("`")
}


def frame_cost(event: Any) -> int:
    """V(P) + P, with P from PROTOCOL.md's formula for this message."""
    namespace = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    namespace.setdefault("request_id", 0)
    namespace |= {
        "V": varint_size,
        "S": _s,
        "N": lambda xs: varint_size(len(xs)) + sum(map(_s, xs)),
        "D": _d,
        "len": _blen,
    }
    payload = eval(FORMULAS[OPCODE_OF[type(event)].name], {"__builtins__": {}}, namespace)
    return varint_size(payload) + payload


def test_every_message_has_a_cost_formula() -> None:
    assert set(FORMULAS) == {op.name for op in Opcode}


@pytest.mark.parametrize("example", VALID, ids=str)
def test_cost_formula_of_each_example(example: Example) -> None:
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
    return changes
