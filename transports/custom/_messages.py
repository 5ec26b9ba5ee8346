"""Message bodies of the custom protocol: one decoder and one encoder per opcode, one table.

Pure functions with no connection state: a decoder reads the fields after the request id from
a ``FrameReader`` and returns an event; an encoder appends the request id and the fields of an
event to a bytearray. ``MESSAGES`` ties each opcode to its event class, its kind (what the
handshake table needs to know) and its two coders. Layouts are PROTOCOL.md sections 6-7.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from typing import Any

from transports.custom._events import (
    Accounts,
    Ack,
    DeleteAccount,
    Deleted,
    Deliver,
    Error,
    Hello,
    ListAccounts,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Ping,
    Pong,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._wire import (
    MAGIC,
    MAX_ACK_IDS,
    MAX_RECIPIENTS,
    U32_MAX,
    U64_MAX,
    VARINT32_BYTES,
    VARINT64_BYTES,
    ErrorCode,
    LocalProtocolError,
    Opcode,
    ProtocolError,
    put_varint,
)


class Kind(enum.Enum):
    """What the handshake table distinguishes."""

    HELLO = "HELLO"
    WELCOME = "WELCOME"
    REQUEST = "request"  # any client-to-server message but HELLO
    RESPONSE = "response"  # any server-to-client message but WELCOME and ERROR
    ERROR = "ERROR"


def read_varint(buf: bytearray, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, next_pos), next_pos -1 if it runs past end."""
    value = 0
    shift = 0
    for i in range(max_bytes):
        if pos + i >= end:
            return 0, -1
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i:
                raise ProtocolError(ErrorCode.MALFORMED, "varint is not minimally encoded")
            return value, pos + i + 1
        shift += 7
    raise ProtocolError(ErrorCode.MALFORMED, f"varint longer than {max_bytes} bytes")


def _malformed(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, message)


class FrameReader:
    """Reads the fields of one frame in place; never past ``end``. One per connection,
    re-aimed at each frame with ``reset`` (no object per frame)."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.end = 0

    def reset(self, buf: bytearray, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def _truncated(self, what: str) -> ProtocolError:
        return _malformed(f"{what} runs past the end of the frame")

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self._truncated("a u8 field")
        self.pos = pos + 1
        return self.buf[pos]

    def v32(self) -> int:
        pos = self.pos
        if pos < self.end:
            byte = self.buf[pos]
            if byte < 0x80:  # the common case: one byte
                self.pos = pos + 1
                return byte
        value, nxt = read_varint(self.buf, pos, self.end, VARINT32_BYTES)
        if nxt < 0:
            raise self._truncated("a varint")
        if value > U32_MAX:
            raise _malformed("varint exceeds 2^32-1")
        self.pos = nxt
        return value

    def v64(self) -> int:
        value, nxt = read_varint(self.buf, self.pos, self.end, VARINT64_BYTES)
        if nxt < 0:
            raise self._truncated("a varint")
        if value > U64_MAX:
            raise _malformed("varint exceeds 2^64-1")
        self.pos = nxt
        return value

    def str(self) -> str:
        size = self.v32()
        pos = self.pos
        if size > self.end - pos:
            raise self._truncated("a string")
        self.pos = pos + size
        try:
            return self.buf[pos : pos + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.INVALID_UTF8, f"invalid UTF-8: {exc}") from None

    def strs(self, count: int) -> tuple[str, ...]:
        if count > self.end - self.pos:  # each string takes at least its length byte
            raise self._truncated("a list of strings")
        return tuple([self.str() for _ in range(count)])

    def rest(self) -> bytes:
        pos, self.pos = self.pos, self.end
        return bytes(self.buf[pos : self.end])

    def rest_str(self) -> str:
        pos, self.pos = self.pos, self.end
        # Decode in place (a body can be 64 KiB) and release the view before anything can keep
        # it alive (a traceback would): a live view stops the buffer from resizing.
        view = memoryview(self.buf)[pos : self.end]
        try:
            return str(view, "utf-8")
        except UnicodeDecodeError as exc:
            problem = str(exc)
        finally:
            view.release()
        raise ProtocolError(ErrorCode.INVALID_UTF8, f"invalid UTF-8: {problem}")


# -- decoders: (reader positioned after the request id, request id) -> event ------------------
def _request_id(rid: int) -> int:
    if rid == 0:
        raise _malformed("request id 0 is reserved for the server; requests use 1..2^32-1")
    return rid


def _no_request_id(rid: int, what: str) -> None:
    if rid != 0:
        raise _malformed(f"{what} travels with request id 0")


def _dec_hello(r: FrameReader, rid: int) -> Hello:
    if rid != 0:
        raise ProtocolError(ErrorCode.BAD_HANDSHAKE, "HELLO travels with request id 0")
    if r.end - r.pos < 2 or r.buf[r.pos : r.pos + 2] != MAGIC:
        raise ProtocolError(ErrorCode.BAD_HANDSHAKE, "bad magic: HELLO starts with 'WC'")
    r.pos += 2
    low, high = r.u8(), r.u8()
    if not 1 <= low <= high:
        raise ProtocolError(ErrorCode.BAD_HANDSHAKE, f"bad version range {low}..{high}")
    return Hello(low, high)


def _dec_signup(r: FrameReader, rid: int) -> Signup:
    return Signup(_request_id(rid), r.str(), r.str())


def _dec_login(r: FrameReader, rid: int) -> Login:
    return Login(_request_id(rid), r.str(), r.str())


def _dec_logout(r: FrameReader, rid: int) -> Logout:
    return Logout(_request_id(rid))


def _dec_list_accounts(r: FrameReader, rid: int) -> ListAccounts:
    return ListAccounts(_request_id(rid), r.str(), r.str(), r.v32())


def _dec_send(r: FrameReader, rid: int) -> Send:
    rid = _request_id(rid)
    count = r.v32()
    if not 1 <= count <= MAX_RECIPIENTS:
        raise _malformed(f"SEND names 1..{MAX_RECIPIENTS} recipients, not {count}")
    return Send(rid, r.strs(count), r.rest_str())


def _dec_ack(r: FrameReader, rid: int) -> Ack:
    _no_request_id(rid, "ACK")
    count = r.v32()
    if not 1 <= count <= MAX_ACK_IDS:
        raise _malformed(f"ACK carries 1..{MAX_ACK_IDS} ids, not {count}")
    ids = [r.v64()]
    for _ in range(count - 1):
        delta = r.v64()
        if delta == 0:
            raise _malformed("ACK ids must be strictly increasing (a delta of 0)")
        ids.append(ids[-1] + delta)
    if ids[-1] > U64_MAX:
        raise _malformed("an ACK id exceeds 2^64-1")
    return Ack(tuple(ids))


def _dec_delete_account(r: FrameReader, rid: int) -> DeleteAccount:
    return DeleteAccount(_request_id(rid), r.str())


def _dec_ping(r: FrameReader, rid: int) -> Ping:
    return Ping(_request_id(rid), r.rest())


def _dec_welcome(r: FrameReader, rid: int) -> Welcome:
    _no_request_id(rid, "WELCOME")
    return Welcome(r.u8(), r.v32(), r.v32(), r.v32())


def _dec_signed_up(r: FrameReader, rid: int) -> SignedUp:
    return SignedUp(_request_id(rid), r.v32())


def _dec_logged_in(r: FrameReader, rid: int) -> LoggedIn:
    return LoggedIn(_request_id(rid), r.v32())


def _dec_logged_out(r: FrameReader, rid: int) -> LoggedOut:
    return LoggedOut(_request_id(rid))


def _dec_accounts(r: FrameReader, rid: int) -> Accounts:
    rid = _request_id(rid)
    more = r.u8()
    if more > 1:
        raise _malformed(f"ACCOUNTS 'more' is 0 or 1, not {more}")
    return Accounts(rid, r.strs(r.v32()), bool(more))


def _dec_sent(r: FrameReader, rid: int) -> Sent:
    rid = _request_id(rid)
    message_id, sent_at = r.v64(), r.v64()
    return Sent(rid, message_id, sent_at, r.strs(r.v32()))


def _dec_deleted(r: FrameReader, rid: int) -> Deleted:
    return Deleted(_request_id(rid))


def _dec_pong(r: FrameReader, rid: int) -> Pong:
    return Pong(_request_id(rid), r.rest())


def _dec_deliver(r: FrameReader, rid: int) -> Deliver:
    _no_request_id(rid, "DELIVER")
    return Deliver(r.v64(), r.v64(), r.str(), r.rest_str())


def _dec_error(r: FrameReader, rid: int) -> Error:
    code = r.u8()
    if code == 0:
        raise _malformed("error code 0 is reserved")
    known = code in ErrorCode._value2member_map_
    return Error(rid, ErrorCode(code) if known else code, r.rest_str())


# -- encoders: (event, out) append the request id and the body --------------------------------
def _refuse(message: str, code: ErrorCode = ErrorCode.MALFORMED) -> LocalProtocolError:
    return LocalProtocolError(code, message)


def _put_u8(out: bytearray, value: int, what: str) -> None:
    if not 0 <= value <= 0xFF:
        raise _refuse(f"{what} must fit in a byte: {value}")
    out.append(value)


def _put_v32(out: bytearray, value: int, what: str) -> None:
    if not 0 <= value <= U32_MAX:
        raise _refuse(f"{what} must be in 0..2^32-1: {value}")
    put_varint(out, value)


def _put_v64(out: bytearray, value: int, what: str) -> None:
    if not 0 <= value <= U64_MAX:
        raise _refuse(f"{what} must be in 0..2^64-1: {value}")
    put_varint(out, value)


def _put_rid(out: bytearray, rid: int) -> None:
    if not 1 <= rid <= U32_MAX:
        raise _refuse(f"a request id is 1..2^32-1, not {rid}")
    put_varint(out, rid)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _refuse(f"not encodable as UTF-8: {exc}", ErrorCode.INVALID_UTF8) from None


def _put_str(out: bytearray, text: str) -> None:
    data = _utf8(text)
    put_varint(out, len(data))
    out += data


def _put_strs(out: bytearray, texts: tuple[str, ...]) -> None:
    put_varint(out, len(texts))
    for text in texts:
        _put_str(out, text)


def _enc_hello(e: Hello, out: bytearray) -> None:
    out.append(0)
    out += MAGIC
    _put_u8(out, e.min_version, "min_version")
    _put_u8(out, e.max_version, "max_version")


def _enc_credentials(e: Signup | Login, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_str(out, e.username)
    _put_str(out, e.password)


def _enc_rid_only(e: Logout | LoggedOut | Deleted, out: bytearray) -> None:
    _put_rid(out, e.request_id)


def _enc_list_accounts(e: ListAccounts, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_str(out, e.pattern)
    _put_str(out, e.after)
    _put_v32(out, e.limit, "limit")


def _enc_send(e: Send, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    if not 1 <= len(e.recipients) <= MAX_RECIPIENTS:
        raise _refuse(f"SEND names 1..{MAX_RECIPIENTS} recipients")
    _put_strs(out, e.recipients)
    out += _utf8(e.body)


def _enc_ack(e: Ack, out: bytearray) -> None:
    ids = e.message_ids
    if not 1 <= len(ids) <= MAX_ACK_IDS:
        raise _refuse(f"ACK carries 1..{MAX_ACK_IDS} ids")
    out.append(0)
    put_varint(out, len(ids))
    _put_v64(out, ids[0], "a message id")
    for previous, current in itertools.pairwise(ids):
        if current <= previous:
            raise _refuse("ACK ids must be strictly increasing")
        _put_v64(out, current - previous, "a message id")


def _enc_delete_account(e: DeleteAccount, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_str(out, e.username)


def _enc_ping(e: Ping | Pong, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    out += e.payload


def _enc_welcome(e: Welcome, out: bytearray) -> None:
    out.append(0)
    _put_u8(out, e.version, "version")
    _put_v32(out, e.max_frame, "max_frame")
    _put_v32(out, e.max_body, "max_body")
    _put_v32(out, e.max_recipients, "max_recipients")


def _enc_pending(e: SignedUp | LoggedIn, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_v32(out, e.pending, "pending")


def _enc_accounts(e: Accounts, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    out.append(1 if e.more else 0)
    _put_strs(out, e.usernames)


def _enc_sent(e: Sent, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_v64(out, e.message_id, "message_id")
    _put_v64(out, e.sent_at_ms, "sent_at_ms")
    _put_strs(out, e.unknown_recipients)


def _enc_deliver(e: Deliver, out: bytearray) -> None:
    out.append(0)
    _put_v64(out, e.message_id, "message_id")
    _put_v64(out, e.sent_at_ms, "sent_at_ms")
    _put_str(out, e.sender)
    out += _utf8(e.body)


def _enc_error(e: Error, out: bytearray) -> None:
    _put_v32(out, e.request_id, "request_id")
    if not 1 <= e.code <= 0xFF:
        raise _refuse(f"an error code is 1..255, not {e.code}")
    out.append(e.code)
    out += _utf8(e.message)


# -- the one table: opcode, event class, kind, decoder, encoder -------------------------------
Decoder = Callable[[FrameReader, int], Any]
Encoder = Callable[[Any, bytearray], None]
Spec = tuple[Opcode, type, Kind, Decoder, Encoder]

CLIENT_MESSAGES: tuple[Spec, ...] = (
    (Opcode.HELLO, Hello, Kind.HELLO, _dec_hello, _enc_hello),
    (Opcode.SIGNUP, Signup, Kind.REQUEST, _dec_signup, _enc_credentials),
    (Opcode.LOGIN, Login, Kind.REQUEST, _dec_login, _enc_credentials),
    (Opcode.LOGOUT, Logout, Kind.REQUEST, _dec_logout, _enc_rid_only),
    (Opcode.LIST_ACCOUNTS, ListAccounts, Kind.REQUEST, _dec_list_accounts, _enc_list_accounts),
    (Opcode.SEND, Send, Kind.REQUEST, _dec_send, _enc_send),
    (Opcode.ACK, Ack, Kind.REQUEST, _dec_ack, _enc_ack),
    (Opcode.DELETE_ACCOUNT, DeleteAccount, Kind.REQUEST, _dec_delete_account, _enc_delete_account),
    (Opcode.PING, Ping, Kind.REQUEST, _dec_ping, _enc_ping),
)
SERVER_MESSAGES: tuple[Spec, ...] = (
    (Opcode.WELCOME, Welcome, Kind.WELCOME, _dec_welcome, _enc_welcome),
    (Opcode.SIGNED_UP, SignedUp, Kind.RESPONSE, _dec_signed_up, _enc_pending),
    (Opcode.LOGGED_IN, LoggedIn, Kind.RESPONSE, _dec_logged_in, _enc_pending),
    (Opcode.LOGGED_OUT, LoggedOut, Kind.RESPONSE, _dec_logged_out, _enc_rid_only),
    (Opcode.ACCOUNTS, Accounts, Kind.RESPONSE, _dec_accounts, _enc_accounts),
    (Opcode.SENT, Sent, Kind.RESPONSE, _dec_sent, _enc_sent),
    (Opcode.DELETED, Deleted, Kind.RESPONSE, _dec_deleted, _enc_rid_only),
    (Opcode.PONG, Pong, Kind.RESPONSE, _dec_pong, _enc_ping),
    (Opcode.DELIVER, Deliver, Kind.RESPONSE, _dec_deliver, _enc_deliver),
    (Opcode.ERROR, Error, Kind.ERROR, _dec_error, _enc_error),
)
#: Event class -> opcode, for tools and tests (the bench, the PROTOCOL.md example checker).
_ALL = CLIENT_MESSAGES + SERVER_MESSAGES
OPCODE_OF: dict[type, Opcode] = {cls: opcode for opcode, cls, *_ in _ALL}
KIND_OF_OPCODE: dict[int, Kind] = {opcode: kind for opcode, _, kind, *_ in _ALL}

__all__ = [
    "CLIENT_MESSAGES",
    "KIND_OF_OPCODE",
    "OPCODE_OF",
    "SERVER_MESSAGES",
    "FrameReader",
    "Kind",
    "read_varint",
]
