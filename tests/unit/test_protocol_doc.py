"""PROTOCOL.md is executable: every hex example, table and formula in it is checked here.

* Each ```` ```hex <dir> <MESSAGE> ```` block is decoded by the codec (fed whole, one byte at a
  time, and followed by the start of another frame), must give one event of that message whose
  fields equal the block's annotations, line by line (the bytes on a line must be exactly that
  field's encoding), and must re-encode to the identical bytes.
* Each ```` ```hex c2s invalid <CODE> ```` block must be refused with that error code.
* A block whose info string ends in ``v2`` (``v3``, ``v4``) travels on a connection that
  negotiated version 2 (3, 4).
  Fields of nested values are annotated by path (``messages[1].body``); a few wire-only names
  (``flags``, DELIVER's ``others``, HISTORY's ``senders``) must at least be encodings of their
  annotated values.
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
from core.throttle import MAX_TRACKED_NAMES, LoginThrottle
from core.types import Delivery
from transports import custom
from transports.custom import (
    OPCODE_OF,
    Connection,
    ErrorCode,
    Hello,
    History,
    MarkedRead,
    MarkRead,
    Opcode,
    ProtocolError,
    Role,
    Welcome,
    _server,
)
from transports.custom._events import NEED_DATA
from transports.custom._messages import (
    CLIENT_MESSAGES,
    CLIENT_MESSAGES_V2,
    CLIENT_MESSAGES_V3,
    SERVER_MESSAGES,
    SERVER_MESSAGES_V2,
    SERVER_MESSAGES_V3,
    read_varint,
)
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
_ANNOTATION = re.compile(
    r"(?P<name>[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*)\s*=\s*(?P<value>.+)"
)
_IDENTIFIER = re.compile(r"(?P<value>[A-Z][A-Z0-9_]*)(?P<rest>.*)")
WELCOME = Welcome(PROTOCOL_VERSION, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
WELCOME_V2 = Welcome(2, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
HELLO_V2 = Hello(1, 2)


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
    version: int = 1  # the version the connection negotiated
    data: bytes = b""
    fields: list[Field] = field(default_factory=list)

    def __str__(self) -> str:
        kind = "invalid " if self.invalid else ""
        version = f" v{self.version}" if self.version > 1 else ""
        return f"PROTOCOL.md:{self.line} {self.direction} {kind}{self.message}{version}"

    @property
    def v2(self) -> bool:
        """On a connection of version 2 or later (the version 2 layouts apply)."""
        return self.version >= 2


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
        line,
        words[0],
        words[2] if invalid else words[1],
        invalid,
        "first" in words[2:],
        max((int(w[1:]) for w in words[2:] if re.fullmatch(r"v[2-9]", w)), default=1),
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
def _greeting(version: int) -> tuple[Hello, Welcome]:
    if version == 1:
        return Hello(), WELCOME
    return Hello(1, version), Welcome(version, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)


def receiver(example: Example) -> Connection:
    """A connection in the state where ``example`` is the next frame to arrive."""
    hello, welcome = _greeting(example.version)
    if example.direction == "c2s":
        conn = Connection(Role.SERVER)
        if example.message != "HELLO" and not example.first:
            conn.receive_data(Connection(Role.CLIENT).send(hello))
            conn.next_event()
            conn.send(welcome)
        return conn
    conn = Connection(Role.CLIENT)
    conn.send(hello)
    if example.message != "WELCOME":
        conn.receive_data(_welcome_bytes(example.version))
        conn.next_event()
    return conn


def sender_of(example: Example) -> Connection:
    """A connection in the state where it may send ``example``."""
    hello, welcome = _greeting(example.version)
    if example.direction == "c2s":
        conn = Connection(Role.CLIENT)
        if example.message != "HELLO":
            conn.send(hello)
            conn.receive_data(_welcome_bytes(example.version))
            conn.next_event()
        return conn
    conn = Connection(Role.SERVER)
    conn.receive_data(Connection(Role.CLIENT).send(hello))
    conn.next_event()
    if example.message != "WELCOME":
        conn.send(welcome)
    return conn


def _welcome_bytes(version: int = 1) -> bytes:
    hello, welcome = _greeting(version)
    conn = Connection(Role.SERVER)
    conn.receive_data(Connection(Role.CLIENT).send(hello))
    conn.next_event()
    return conn.send(welcome)


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


#: Event fields a version 2 layout carries in other words (section 7.9): covered by these.
DERIVED = {"participants": "others.count", "sender_deleted": "flags"}
#: Event fields that only the version 2 layouts of SENT and DELIVER carry.
V2_ONLY = {"conversation_id", "participants", "sender_deleted"}
#: Event fields that only the version 3 layouts of these messages carry.
V3_ONLY = {
    "SIGNED_UP": {"resume_token"},
    "LOGGED_IN": {"resume_token", "username"},
    "DELETE_ACCOUNT": {"password"},
}


@pytest.mark.parametrize("example", VALID, ids=str)
def test_example_annotations_are_the_decoded_fields(example: Example) -> None:
    (event,) = decode(receiver(example), example.data)
    names = {f.name for f in example.fields}
    header = {"length", "opcode", "request_id"} | ({"magic"} if isinstance(event, Hello) else set())
    assert header <= names, f"{example}: the header is not annotated"
    for name in (f.name for f in dataclasses.fields(event)):
        covered = (
            name in names
            or any(n.startswith((f"{name}.", f"{name}[")) for n in names)
            or (example.v2 and DERIVED.get(name) in names)
            or (not example.v2 and example.message in ("SENT", "DELIVER") and name in V2_ONLY)
            or (example.version < 3 and name in V3_ONLY.get(example.message, ()))
        )
        assert covered, f"{example}: {name} not annotated"
    for f in example.fields:
        expected, encodings = _actual(example, event, f)
        assert f.value == expected, f"{example}: {f.name} is {expected!r}, not {f.value!r}"
        assert bytes(f.data) in encodings, f"{example}: the bytes of {f.name} are not its value"


_STEP = re.compile(r"(?P<attr>[a-z_]+)(?:\[(?P<index>\d+)\])?")
#: Wire-only helper fields: no value of their own in the event (their sections map them back).
_WIRE_ONLY = re.compile(r"(.*\.)?(flags|others(\[\d+\]|\.count)?)$|^senders\b")


def _resolve(event: Any, path: str) -> Any:
    """The value at ``path`` (``messages[1].body``, ``participants.count``) in the event."""
    value = event
    for step in path.split("."):
        if step == "count":
            return len(value)
        match = _STEP.fullmatch(step)
        assert match, path
        value = getattr(value, match["attr"])
        if match["index"] is not None:
            value = value[int(match["index"])]
    return value


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
    if _WIRE_ONLY.search(f.name):  # checked against its own annotation (and by re-encoding)
        return f.value, _encodings(f.value)
    value = _resolve(event, f.name)
    if isinstance(value, bytes):  # opaque payloads are annotated as text
        return value.decode(), {value}
    if isinstance(value, ErrorCode) and f.symbolic:
        return value.name, {bytes([value])}
    item = re.fullmatch(r"(?P<list>[a-z_]+)\[(?P<i>\d+)\](?:\.(?P<attr>[a-z_]+))?", f.name)
    if item and int(item["i"]) and item["list"] in ("message_ids", "messages"):
        # delta-encoded lists (section 2 id-list, section 7.12 HISTORY)
        values, i = getattr(event, item["list"]), int(item["i"])
        if item["list"] == "message_ids":
            return value, {_varint(value - values[i - 1])}
        if item["attr"] == "message_id":
            return value, {_varint(values[i - 1].message_id - value)}
        if item["attr"] == "sent_at_ms":
            return value, {_zigzag(value - values[i - 1].sent_at_ms)}
    if item and item["list"] == "messages" and item["attr"] == "sender":
        return value, {
            _varint(
                _senders(event.messages).index(
                    (value, _resolve(event, f.name[: -len(".sender")]).sender_deleted)
                )
            )
        }
    return value, _encodings(value)


def _senders(messages: Any) -> list[tuple[str, bool]]:
    """HISTORY's senders table: (name, deleted) pairs in order of first use."""
    table: list[tuple[str, bool]] = []
    for m in messages:
        if (m.sender, m.sender_deleted) not in table:
            table.append((m.sender, m.sender_deleted))
    return table


def _zigzag(value: int) -> bytes:
    return _varint((value << 1) ^ (value >> 63))


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
    assert zero_id == {
        "HELLO",
        "ACK",
        "WELCOME",
        "DELIVER",
        "SENT_COPY",
        "READ_MARK",
        "MESSAGES_GONE",
    }
    versions = {r[1]: r[-1] for r in rows}
    tables = [
        CLIENT_MESSAGES + SERVER_MESSAGES,
        CLIENT_MESSAGES_V2 + SERVER_MESSAGES_V2,
        CLIENT_MESSAGES_V3 + SERVER_MESSAGES_V3,
    ]
    names = [{OPCODE_OF[cls].name for _, cls, *_ in table} for table in tables]
    for version in (2, 3):
        new = {name for name, v in versions.items() if v == str(version)}
        assert new == names[version - 1] - names[version - 2], version


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
    "Ids per DELETE_MESSAGES": f"1..{limits.MAX_DELETE_IDS}",
    "Ids per MESSAGES_GONE": f"1..{limits.MAX_DELETE_IDS}",
    "READ_HISTORY participants": (
        f"at most {limits.MAX_RECIPIENTS + 1} names, each at most "
        f"{limits.MAX_USERNAME_CHARS * 4} characters"
    ),
    "Page size of LIST_CONVERSATIONS, READ_HISTORY": (
        f"0 means {limits.DEFAULT_PAGE_SIZE}; at most {limits.MAX_PAGE_SIZE}"
    ),
    "Username at SIGNUP": f"1..{limits.MAX_USERNAME_CHARS} of `A-Z a-z 0-9 _ . -`",
    "Password at SIGNUP": (
        f"at least {limits.MIN_PASSWORD_CHARS} characters, at most {limits.MAX_PASSWORD_BYTES}"
        " bytes of UTF-8, not a common password"
    ),
    "New password at CHANGE_PASSWORD": "as at SIGNUP",
    "Resume token": f"at most {limits.MAX_RESUME_TOKEN_CHARS} characters (a token is 43)",
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


def test_welcome_examples_announce_the_real_limits() -> None:
    examples = [e for e in VALID if e.message == "WELCOME"]
    assert [e.version for e in examples] == [1, 2, 3, 4]
    for example in examples:
        expected = _greeting(example.version)[1]
        assert decode(receiver(example), example.data) == [expected]


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


def _n(xs: tuple[str, ...]) -> int:
    return varint_size(len(xs)) + sum(map(_s, xs))


def _z(x: int) -> int:
    return varint_size(2 * x if x >= 0 else -2 * x - 1)


def _o(participants: tuple[str, ...], sender: str) -> int:
    others = list(participants)
    if sender in others:
        others.remove(sender)
    return _n(tuple(others))


def _c(conversations: Any) -> int:
    total = 0
    for c in conversations:
        m = c.last_message
        total += varint_size(c.conversation_id) + varint_size(c.unread)
        total += varint_size(c.read_up_to) + _n(c.participants) + _n(c.deleted_participants)
        total += varint_size(m.message_id) + varint_size(m.sent_at_ms) + 1
        total += _s(m.sender) + _s(m.body)
    return total


def _t(messages: Any) -> int:
    table = _senders(messages)
    return varint_size(len(table)) + sum(1 + _s(name) for name, _ in table)


def _h(messages: Any) -> int:
    table = _senders(messages)
    total = varint_size(len(messages))
    for i, m in enumerate(messages):
        if i == 0:
            total += varint_size(m.message_id) + varint_size(m.sent_at_ms)
        else:
            previous = messages[i - 1]
            total += varint_size(previous.message_id - m.message_id)
            total += _z(m.sent_at_ms - previous.sent_at_ms)
        total += varint_size(table.index((m.sender, m.sender_deleted))) + _s(m.body)
    return total


def frame_cost(event: Any, version: int = 1) -> int:
    """V(P) + P, with P from PROTOCOL.md's formula for this message."""
    namespace = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    namespace.setdefault("request_id", 0)
    namespace |= {
        "V": varint_size,
        "S": _s,
        "N": _n,
        "D": _d,
        "Z": _z,
        "O": _o,
        "C": _c,
        "T": _t,
        "H": _h,
        "len": _blen,
    }
    name = OPCODE_OF[type(event)].name
    for grown in range(version, 1, -1):  # the latest layout up to this version
        if f"{name} (version {grown})" in FORMULAS:
            name = f"{name} (version {grown})"
            break
    payload = eval(FORMULAS[name], {"__builtins__": {}}, namespace)
    return varint_size(payload) + payload


def test_every_message_has_a_cost_formula() -> None:
    grown = {
        "SENT (version 2)",
        "DELIVER (version 2)",
        "SIGNED_UP (version 3)",
        "LOGGED_IN (version 3)",
        "DELETE_ACCOUNT (version 3)",
    }
    assert set(FORMULAS) == {op.name for op in Opcode} | grown


@pytest.mark.parametrize("example", VALID, ids=str)
def test_cost_formula_of_each_example(example: Example) -> None:
    (event,) = decode(receiver(example), example.data)
    assert frame_cost(event, example.version) == len(example.data)
    bigger = dataclasses.replace(event, **_scaled(event))  # multi-byte lengths too
    assert frame_cost(bigger, example.version) == len(sender_of(example).send(bigger))


def _scaled(event: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, str | bytes) and value:
            changes[f.name] = value * 300
        elif isinstance(value, tuple) and value and isinstance(value[0], str):
            changes[f.name] = tuple(name * 150 for name in value)
    return changes


def test_the_history_and_mark_read_figures_of_section_11() -> None:
    """The worked figures: a 50-message page and a MARK_READ (section 11, "History")."""
    v2 = Example(0, "s2c", "HISTORY", False, False, version=2)
    t0 = 1_767_225_600_000
    messages = tuple(
        Delivery(
            2000 - i, "alice" if i % 2 else "bob", "x" * 20, t0 - 30_000 * i, ("bob",), False, 7
        )
        for i in range(50)
    )
    page = sender_of(v2).send(History(1, 7, ("bob",), messages, True, (), 1990))
    assert len(page) == 1332
    assert "1332 bytes on the wire, of which the 50 bodies are 1000" in " ".join(
        _section("11").split()
    )
    request = dataclasses.replace(v2, direction="c2s", message="MARK_READ")
    assert len(sender_of(request).send(MarkRead(1, 7, 2000))) == 6
    assert len(sender_of(v2).send(MarkedRead(1, 7, 2000, 5))) == 7


def test_the_login_backoff_schedule_of_section_6_3_is_the_servers() -> None:
    throttle = LoginThrottle()  # what the server runs with
    delays = []
    for _ in range(10):
        throttle._failed("bob")
        delays.append(throttle.delay("bob"))
    assert delays == [0, 0, 0.25, 0.5, 1, 2, 4, 8, 8, 8]  # after the 1st..10th failure
    text = " ".join(_section("6").split())
    assert "0.25 s after the 3rd failure, then 0.5, 1, 2 and 4 s, and 8 s from the 8th" in text
    assert f"beyond {MAX_TRACKED_NAMES:,}" in text
