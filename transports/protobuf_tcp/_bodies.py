"""Frame bodies of protobuf-tcp: one protobuf message per opcode, one decoder and one encoder.

The frame around a body (length, opcode, request id) and the events are the custom protocol's;
only the bytes after the request id differ. ``CLIENT_MESSAGES`` and ``SERVER_MESSAGES`` have the
shape of ``transports.custom._messages``' tables (opcode, event class, kind, decoder, encoder),
so the custom codec's ``Connection`` runs them unchanged (``_codec``). These are version 1's;
``_bodies_v2`` builds version 2's on them (history, read marks, deletion).

Decoding is protobuf's (upb), made strict where the custom protocol is: a body protobuf cannot
parse is MALFORMED, a string field holding ill-formed UTF-8 is INVALID_UTF8 (``_refusal`` tells
the two apart), and the counts and orders the custom protocol checks are checked here too.
Unknown fields are skipped, as protobuf does everywhere. Encoders validate what protobuf would
not (recipient and id counts, request id ranges, error codes) and turn protobuf's own range and
UTF-8 errors into ``LocalProtocolError``.

Two frames are not protobuf (PROTOCOL.md section 3): HELLO keeps the custom layout with the magic
"WP" (``_dec_hello``), and an ERROR sent before WELCOME keeps the custom layout (``_codec``).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any, cast

from google.protobuf import empty_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from core.frozen import builder
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
from transports.custom._messages import FrameReader, Kind
from transports.custom._wire import (
    MAGIC as CUSTOM_MAGIC,
)
from transports.custom._wire import (
    MAX_ACK_IDS,
    MAX_RECIPIENTS,
    U32_MAX,
    U64_MAX,
    ErrorCode,
    LocalProtocolError,
    Opcode,
    ProtocolError,
    put_varint,
)
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp._generated import frames_pb2 as frames

#: ``Send(...)`` at a third of the cost, once per SEND a server reads (core.frozen).
_send_event: Callable[..., Send] = builder(Send)

#: The first two body bytes of a protobuf-tcp HELLO: "WP" (the custom protocol's are "WC").
MAGIC = b"WP"

Decoder = Callable[[FrameReader, int], Any]
Encoder = Callable[[Any, bytearray], None]
Spec = tuple[Opcode, type, Kind, Decoder, Encoder]


# -- request ids (the frame header rules of custom PROTOCOL.md sections 3 and 6) -------------
def _malformed(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, message)


def _request_id(rid: int) -> int:
    if rid == 0:
        raise _malformed("request id 0 is reserved for the server; requests use 1..2^32-1")
    return rid


def _zero_id(what: str) -> Callable[[int], int]:
    def check(rid: int) -> int:
        if rid != 0:
            raise _malformed(f"{what} travels with request id 0")
        return rid

    return check


def _any_id(rid: int) -> int:
    return rid


def _refuse(message: str, code: ErrorCode = ErrorCode.MALFORMED) -> LocalProtocolError:
    return LocalProtocolError(code, message)


def _put_rid(out: bytearray, rid: int, low: int = 1) -> None:
    if not low <= rid <= U32_MAX:
        raise _refuse(f"a request id is {low}..2^32-1, not {rid}")
    put_varint(out, rid)


# -- HELLO: the custom layout, another magic ----------------------------------------------------
def _dec_hello(r: FrameReader, rid: int) -> Hello:
    if rid != 0:
        raise ProtocolError(ErrorCode.BAD_HANDSHAKE, "HELLO travels with request id 0")
    magic = bytes(r.buf[r.pos : min(r.pos + 2, r.end)])
    if magic == CUSTOM_MAGIC:
        raise ProtocolError(
            ErrorCode.BAD_HANDSHAKE,
            "this port speaks wirechat protobuf-tcp (HELLO magic 'WP'), "
            "not the custom protocol ('WC')",
        )
    if magic != MAGIC:
        raise ProtocolError(ErrorCode.BAD_HANDSHAKE, "bad magic: HELLO starts with 'WP'")
    r.pos += 2
    low, high = r.u8(), r.u8()
    if not 1 <= low <= high:
        raise ProtocolError(ErrorCode.BAD_HANDSHAKE, f"bad version range {low}..{high}")
    return Hello(low, high)


def _enc_hello(e: Hello, out: bytearray) -> None:
    if not 1 <= e.min_version <= e.max_version <= 0xFF:
        raise _refuse(f"bad version range {e.min_version}..{e.max_version}")
    out.append(0)
    out += MAGIC
    out.append(e.min_version)
    out.append(e.max_version)


# -- protobuf bodies ----------------------------------------------------------------------------
def _refusal(cls: type[Message], body: bytes | bytearray) -> ProtocolError:
    """Why protobuf refused ``body`` as a ``cls`` (only called once it has).

    upb validates UTF-8 while parsing and reports it as a DecodeError like any other, so look
    again: if the wire format parses as a message with no fields (everything unknown), it is
    sound, and a string field of ``cls`` holding ill-formed UTF-8 is INVALID_UTF8.
    """
    name = cls.DESCRIPTOR.full_name
    body = bytes(body)
    try:
        fields = UnknownFieldSet(empty_pb2.Empty.FromString(body))
    except DecodeError:
        return _malformed(f"the body is not a protobuf message (expected {name})")
    strings = {
        f.number: f.name for f in cls.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING
    }
    for field in fields:  # type: ignore[attr-defined]  # (the stubs lack __iter__)
        if field.field_number in strings and isinstance(field.data, bytes):
            try:
                field.data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return ProtocolError(
                    ErrorCode.INVALID_UTF8,
                    f"invalid UTF-8 in {name}.{strings[field.field_number]}: {exc}",
                )
    return _malformed(f"the body is not a valid {name}")


def _decoder(
    cls: type[Message], check_id: Callable[[int], int], make: Callable[[Any, int], Any]
) -> Decoder:
    """A decoder: check the request id, parse the rest of the frame as ``cls``, build the event."""
    # (upb parses any buffer, so the frame's bytes need no copy to bytes; the stubs say bytes)
    parse = cast(Callable[[bytes | bytearray], Message], cls.FromString)

    def decode(r: FrameReader, rid: int) -> Any:
        rid = check_id(rid)
        body, r.pos = r.buf[r.pos : r.end], r.end
        try:
            message = parse(body)
        except DecodeError:
            raise _refusal(cls, body) from None
        return make(message, rid)

    return decode


def _encoder(rid_of: Callable[[Any], int], low: int, build: Callable[[Any], Message]) -> Encoder:
    """An encoder: the request id (``low``..2^32-1), then the message ``build`` makes."""

    def encode(e: Any, out: bytearray) -> None:
        rid = rid_of(e)
        if low <= rid < 0x80:  # (_put_rid inlined for one-byte ids: every reply's path)
            out.append(rid)
        else:
            _put_rid(out, rid, low)
        try:
            out += build(e).SerializeToString()
        except LocalProtocolError:  # (a ValueError too) from our own checks in ``build``
            raise
        except (ValueError, TypeError) as exc:  # protobuf's range, type and UTF-8 checks
            raise _unencodable(e, exc) from None

    return encode


def _unencodable(e: Any, exc: ValueError | TypeError) -> LocalProtocolError:
    """protobuf's refusal of a value of ``e`` (out of range, of the wrong type, a str that is
    not UTF-8), as the LocalProtocolError an encoder raises."""
    if isinstance(exc, UnicodeEncodeError):
        return _refuse(f"not encodable as UTF-8: {exc}", ErrorCode.INVALID_UTF8)
    return _refuse(f"cannot encode {type(e).__name__}: {exc}")


#: An event's request id: a C getter, not a Python function (a frame less on every reply; the
#: events' request ids are ints already).
_rid: Callable[[Any], int] = operator.attrgetter("request_id")


def _zero(e: Any) -> int:
    return 0


# Checks the custom protocol makes that a protobuf schema cannot (PROTOCOL.md section 4).
def _ack_ids(ids: Any) -> tuple[int, ...]:
    if not 1 <= len(ids) <= MAX_ACK_IDS:
        raise _malformed(f"ACK carries 1..{MAX_ACK_IDS} ids, not {len(ids)}")
    if any(b <= a for a, b in itertools.pairwise(ids)):
        raise _malformed("ACK ids must be strictly increasing")
    return tuple(ids)


def _error_code(code: int) -> int:
    if not 1 <= code <= 0xFF:
        raise _malformed(f"an error code is 1..255, not {code}")
    return ErrorCode(code) if code in ErrorCode._value2member_map_ else code


_parse_send = cast(Callable[[bytes | bytearray], Any], chat.SendRequest.FromString)


def _decode_send(r: FrameReader, rid: int) -> Send:
    """SEND, the decoder every message takes: ``_decoder``'s steps and the recipients' check
    written out in one function (three Python calls fewer per SEND than the generic one)."""
    if rid == 0:
        _request_id(rid)  # (raises)
    body, r.pos = r.buf[r.pos : r.end], r.end
    try:
        message = _parse_send(body)
    except DecodeError:
        raise _refusal(chat.SendRequest, body) from None
    # (a slice copies upb's repeated field in one call; ``tuple(field)`` walks it item by
    # item: ~2,300 instructions less on every SEND, callgrind)
    names = message.recipients[:]
    if not 1 <= len(names) <= MAX_RECIPIENTS:
        raise _malformed(f"SEND names 1..{MAX_RECIPIENTS} recipients, not {len(names)}")
    return _send_event(rid, tuple(names), message.body)


_SendRequest = chat.SendRequest
#: The method itself, not looked up on every message (as ``_bodies_v2._serialize_reply``).
_serialize_send = _SendRequest.SerializeToString
#: recipients -> the SendRequest of only those recipients, serialized by protobuf: a client
#: sends to the same people again and again, so its SEND is built from this and a message of
#: only the body. (Two serialized messages concatenated are the serialization of their merge,
#: and protobuf writes fields in number order, recipients (1) before body (2): the bytes are
#: exactly ``SendRequest(recipients=..., body=...)``'s; tests/unit/test_protobuf_tcp_send_path.py
#: pins that.) Bounded: emptied when it holds ``_RECIPIENT_SETS``, and a field longer than
#: ``_REMEMBERED_BYTES`` (256 names of 64 bytes) is not kept (the codec does not bound names).
_recipients_bytes: dict[tuple[str, ...], bytes] = {}
_RECIPIENT_SETS = 64
_REMEMBERED_BYTES = 256 * 66


def _recipients_field(names: tuple[str, ...]) -> bytes:
    """The serialized SendRequest of only ``names`` (refused: a count out of bounds, and what
    protobuf refuses), remembered in ``_recipients_bytes``."""
    if not 1 <= len(names) <= MAX_RECIPIENTS:
        raise _refuse(f"SEND names 1..{MAX_RECIPIENTS} recipients")
    request = _SendRequest()
    request.recipients.extend(names)
    field = _serialize_send(request)
    # (only a tuple can be a key: a Send from elsewhere may hold a list)
    if type(names) is tuple and len(field) <= _REMEMBERED_BYTES:
        if len(_recipients_bytes) >= _RECIPIENT_SETS:
            _recipients_bytes.clear()
        _recipients_bytes[names] = field
    return field


def _encode_send(e: Send, out: bytearray) -> None:
    """SEND, the request every send takes (the client's side of the hot path): ``_encoder``'s
    steps written out in one function, the recipients' bytes from ``_recipients_bytes`` and a
    message of only the body, filled by assignment rather than keywords (callgrind, the client
    codec's SEND: ~15,200 -> ~10,300 instructions); the same bytes and the same refusals."""
    rid = e.request_id
    if 1 <= rid < 0x80:  # (one-byte ids: every lone request's path)
        out.append(rid)
    else:
        _put_rid(out, rid, 1)
    names = e.recipients
    try:
        field = _recipients_bytes.get(names) if type(names) is tuple else None
        if field is None:
            field = _recipients_field(names)
        request = _SendRequest()
        request.body = e.body
        body = _serialize_send(request)
    except LocalProtocolError:  # (a ValueError too) the recipients' count
        raise
    except (ValueError, TypeError) as exc:  # protobuf's type and UTF-8 checks
        raise _unencodable(e, exc) from None
    out += field
    out += body


def _build_ack(e: Ack) -> Message:
    ids = e.message_ids
    if not 1 <= len(ids) <= MAX_ACK_IDS:
        raise _refuse(f"ACK carries 1..{MAX_ACK_IDS} ids")
    if any(b <= a for a, b in itertools.pairwise(ids)) or not 0 <= ids[0] <= ids[-1] <= U64_MAX:
        raise _refuse("ACK ids must be strictly increasing, in 0..2^64-1")
    return chat.AckRequest(message_ids=ids)


def _build_error(e: Error) -> Message:
    if not 1 <= e.code <= 0xFF:
        raise _refuse(f"an error code is 1..255, not {e.code}")
    return frames.Error(code=e.code, message=e.message)


_REQUEST, _NO_ID = _request_id, _zero_id  # short names for the table below

# -- the tables: opcode, event class, kind, decoder, encoder ----------------------------------
#: The protobuf message of each opcode's body (HELLO has none: custom layout, magic "WP").
MESSAGE_OF: dict[Opcode, type[Message]] = {
    Opcode.SIGNUP: chat.SignupRequest,
    Opcode.LOGIN: chat.LoginRequest,
    Opcode.LOGOUT: chat.LogoutRequest,
    Opcode.LIST_ACCOUNTS: chat.ListAccountsRequest,
    Opcode.SEND: chat.SendRequest,
    Opcode.ACK: chat.AckRequest,
    Opcode.DELETE_ACCOUNT: chat.DeleteAccountRequest,
    Opcode.PING: frames.Ping,
    Opcode.WELCOME: frames.Welcome,
    Opcode.SIGNED_UP: chat.LoginReply,
    Opcode.LOGGED_IN: chat.LoginReply,
    Opcode.LOGGED_OUT: chat.LogoutReply,
    Opcode.ACCOUNTS: chat.ListAccountsReply,
    Opcode.SENT: chat.SendReply,
    Opcode.DELETED: chat.DeleteAccountReply,
    Opcode.PONG: frames.Pong,
    Opcode.DELIVER: chat.Delivery,
    Opcode.ERROR: frames.Error,
}
_M = MESSAGE_OF

CLIENT_MESSAGES: tuple[Spec, ...] = (
    (Opcode.HELLO, Hello, Kind.HELLO, _dec_hello, _enc_hello),
    (
        Opcode.SIGNUP,
        Signup,
        Kind.REQUEST,
        _decoder(_M[Opcode.SIGNUP], _REQUEST, lambda m, i: Signup(i, m.username, m.password)),
        _encoder(_rid, 1, lambda e: chat.SignupRequest(username=e.username, password=e.password)),
    ),
    (
        Opcode.LOGIN,
        Login,
        Kind.REQUEST,
        _decoder(_M[Opcode.LOGIN], _REQUEST, lambda m, i: Login(i, m.username, m.password)),
        _encoder(_rid, 1, lambda e: chat.LoginRequest(username=e.username, password=e.password)),
    ),
    (
        Opcode.LOGOUT,
        Logout,
        Kind.REQUEST,
        _decoder(_M[Opcode.LOGOUT], _REQUEST, lambda m, i: Logout(i)),
        _encoder(_rid, 1, lambda e: chat.LogoutRequest()),
    ),
    (
        Opcode.LIST_ACCOUNTS,
        ListAccounts,
        Kind.REQUEST,
        _decoder(
            _M[Opcode.LIST_ACCOUNTS],
            _REQUEST,
            lambda m, i: ListAccounts(i, m.pattern, m.after, m.limit),
        ),
        _encoder(
            _rid,
            1,
            lambda e: chat.ListAccountsRequest(pattern=e.pattern, after=e.after, limit=e.limit),
        ),
    ),
    (
        Opcode.SEND,
        Send,
        Kind.REQUEST,
        _decode_send,
        _encode_send,
    ),
    (
        Opcode.ACK,
        Ack,
        Kind.REQUEST,
        _decoder(_M[Opcode.ACK], _NO_ID("ACK"), lambda m, i: Ack(_ack_ids(m.message_ids))),
        _encoder(_zero, 0, _build_ack),
    ),
    (
        Opcode.DELETE_ACCOUNT,
        DeleteAccount,
        Kind.REQUEST,
        _decoder(_M[Opcode.DELETE_ACCOUNT], _REQUEST, lambda m, i: DeleteAccount(i, m.username)),
        _encoder(_rid, 1, lambda e: chat.DeleteAccountRequest(username=e.username)),
    ),
    (
        Opcode.PING,
        Ping,
        Kind.REQUEST,
        _decoder(_M[Opcode.PING], _REQUEST, lambda m, i: Ping(i, m.payload)),
        _encoder(_rid, 1, lambda e: frames.Ping(payload=e.payload)),
    ),
)

SERVER_MESSAGES: tuple[Spec, ...] = (
    (
        Opcode.WELCOME,
        Welcome,
        Kind.WELCOME,
        _decoder(
            _M[Opcode.WELCOME],
            _NO_ID("WELCOME"),
            lambda m, i: Welcome(m.version, m.max_frame, m.max_body, m.max_recipients),
        ),
        _encoder(
            _zero,
            0,
            lambda e: frames.Welcome(
                version=e.version,
                max_frame=e.max_frame,
                max_body=e.max_body,
                max_recipients=e.max_recipients,
            ),
        ),
    ),
    (
        Opcode.SIGNED_UP,
        SignedUp,
        Kind.RESPONSE,
        _decoder(_M[Opcode.SIGNED_UP], _REQUEST, lambda m, i: SignedUp(i, m.pending)),
        _encoder(_rid, 1, lambda e: chat.LoginReply(pending=e.pending)),
    ),
    (
        Opcode.LOGGED_IN,
        LoggedIn,
        Kind.RESPONSE,
        _decoder(_M[Opcode.LOGGED_IN], _REQUEST, lambda m, i: LoggedIn(i, m.pending)),
        _encoder(_rid, 1, lambda e: chat.LoginReply(pending=e.pending)),
    ),
    (
        Opcode.LOGGED_OUT,
        LoggedOut,
        Kind.RESPONSE,
        _decoder(_M[Opcode.LOGGED_OUT], _REQUEST, lambda m, i: LoggedOut(i)),
        _encoder(_rid, 1, lambda e: chat.LogoutReply()),
    ),
    (
        Opcode.ACCOUNTS,
        Accounts,
        Kind.RESPONSE,
        _decoder(
            _M[Opcode.ACCOUNTS], _REQUEST, lambda m, i: Accounts(i, tuple(m.usernames), m.more)
        ),
        _encoder(_rid, 1, lambda e: chat.ListAccountsReply(usernames=e.usernames, more=e.more)),
    ),
    (
        Opcode.SENT,
        Sent,
        Kind.RESPONSE,
        _decoder(
            _M[Opcode.SENT],
            _REQUEST,
            lambda m, i: Sent(i, m.message_id, m.sent_at_ms, tuple(m.unknown_recipients)),
        ),
        _encoder(
            _rid,
            1,
            lambda e: chat.SendReply(
                message_id=e.message_id,
                sent_at_ms=e.sent_at_ms,
                unknown_recipients=e.unknown_recipients,
            ),
        ),
    ),
    (
        Opcode.DELETED,
        Deleted,
        Kind.RESPONSE,
        _decoder(_M[Opcode.DELETED], _REQUEST, lambda m, i: Deleted(i)),
        _encoder(_rid, 1, lambda e: chat.DeleteAccountReply()),
    ),
    (
        Opcode.PONG,
        Pong,
        Kind.RESPONSE,
        _decoder(_M[Opcode.PONG], _REQUEST, lambda m, i: Pong(i, m.payload)),
        _encoder(_rid, 1, lambda e: frames.Pong(payload=e.payload)),
    ),
    (
        Opcode.DELIVER,
        Deliver,
        Kind.RESPONSE,
        _decoder(
            _M[Opcode.DELIVER],
            _NO_ID("DELIVER"),
            lambda m, i: Deliver(m.message_id, m.sent_at_ms, m.sender, m.body),
        ),
        _encoder(
            _zero,
            0,
            lambda e: chat.Delivery(
                message_id=e.message_id, sent_at_ms=e.sent_at_ms, sender=e.sender, body=e.body
            ),
        ),
    ),
    (
        Opcode.ERROR,
        Error,
        Kind.ERROR,
        _decoder(_M[Opcode.ERROR], _any_id, lambda m, i: Error(i, _error_code(m.code), m.message)),
        _encoder(_rid, 0, _build_error),
    ),
)

__all__ = ["CLIENT_MESSAGES", "MAGIC", "MESSAGE_OF", "SERVER_MESSAGES"]
