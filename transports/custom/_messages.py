"""Message bodies of the custom protocol: one decoder and one encoder per opcode, the tables.

Pure functions with no connection state: a decoder reads the fields after the request id from
a ``FrameReader`` and returns an event; an encoder appends the request id and the fields of an
event to a bytearray. The tables tie each opcode to its event class, its kind (what the
handshake table needs to know) and its two coders, one pair of tables per protocol version
(``MESSAGES``): version 2 (its coders are in ``_history``) adds eleven messages and grows the
layouts of SENT and DELIVER; version 3 (``_security``) adds RESUME, CHANGE_PASSWORD and
PASSWORD_CHANGED and grows SIGNED_UP, LOGGED_IN and DELETE_ACCOUNT; version 4 (an error code
only, ``_errors``) has version 3's tables. Layouts are PROTOCOL.md
sections 6-7; the field readers and writers are ``_fields``.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from typing import Any

from core.frozen import builder
from transports.custom._events import (
    Accounts,
    Ack,
    Conversations,
    DeleteAccount,
    Deleted,
    DeleteMessages,
    Deliver,
    Error,
    Hello,
    History,
    ListAccounts,
    ListConversations,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    MarkedRead,
    MarkRead,
    MessagesGone,
    Ping,
    Pong,
    ReadHistory,
    ReadMark,
    Removed,
    Send,
    Sent,
    SentCopy,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._fields import (
    _COPY_UP_TO,
    FrameReader,
    _malformed,
    _no_request_id,
    _not_utf8,
    _put_rid,
    _put_str,
    _put_strs,
    _put_u8,
    _put_v32,
    _put_v64,
    _refuse,
    _request_id,
    _utf8,
    _zero_request_id,
    read_varint,
)
from transports.custom._history import (
    SENDER_DELETED,
    SENDER_IS_PARTICIPANT,
    _dec_conversations,
    _dec_delete_messages,
    _dec_deliver_v2,
    _dec_history,
    _dec_list_conversations,
    _dec_mark_read,
    _dec_marked_read,
    _dec_messages_gone,
    _dec_read_history,
    _dec_read_mark,
    _dec_removed,
    _dec_sent_copy,
    _dec_sent_v2,
    _enc_conversations,
    _enc_delete_messages,
    _enc_deliver_v2,
    _enc_history,
    _enc_list_conversations,
    _enc_mark_read,
    _enc_marked_read,
    _enc_messages_gone,
    _enc_read_history,
    _enc_read_mark,
    _enc_sent_copy,
    _enc_sent_v2,
)
from transports.custom._security import (
    ChangePassword,
    PasswordChanged,
    Resume,
    _dec_change_password,
    _dec_delete_account_v3,
    _dec_logged_in_v3,
    _dec_password_changed,
    _dec_resume,
    _dec_signed_up_v3,
    _enc_change_password,
    _enc_delete_account_v3,
    _enc_logged_in_v3,
    _enc_password_changed,
    _enc_resume,
    _enc_signed_up_v3,
)
from transports.custom._wire import (
    MAGIC,
    MAX_ACK_IDS,
    MAX_RECIPIENTS,
    U64_MAX,
    ErrorCode,
    Opcode,
    ProtocolError,
    put_varint,
)

#: ``Send(...)`` at a third of the cost, once per SEND a server reads (core.frozen).
_send_event: Callable[..., Send] = builder(Send)


class Kind(enum.Enum):
    """What the handshake table distinguishes."""

    HELLO = "HELLO"
    WELCOME = "WELCOME"
    REQUEST = "request"  # any client-to-server message but HELLO
    RESPONSE = "response"  # any server-to-client message but WELCOME and ERROR
    ERROR = "ERROR"


# -- decoders: (reader positioned after the request id, request id) -> event ------------------
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
    return Signup(_request_id(rid), r.text(), r.text())


def _dec_login(r: FrameReader, rid: int) -> Login:
    return Login(_request_id(rid), r.text(), r.text())


def _dec_logout(r: FrameReader, rid: int) -> Logout:
    return Logout(_request_id(rid))


def _dec_list_accounts(r: FrameReader, rid: int) -> ListAccounts:
    return ListAccounts(_request_id(rid), r.text(), r.text(), r.v32())


def _dec_send(r: FrameReader, rid: int) -> Send:
    # The hottest decoder: each Python call here costs about as much as a field's work.
    if rid == 0:
        raise _zero_request_id()
    buf, pos, end = r.buf, r.pos, r.end
    if pos < end and buf[pos] == 1:  # (most messages: one recipient, no list to build)
        name_at = pos + 2
        if name_at < end:
            body_at = name_at + buf[pos + 1]
            if body_at <= end and end - body_at <= _COPY_UP_TO and buf[pos + 1] < 0x80:
                # (r.text() and r.rest_text() written out, for a short name and body: two
                # Python calls fewer on every SEND a server reads)
                r.pos = end
                try:
                    name = buf[name_at:body_at].decode("utf-8")
                    return _send_event(rid, (name,), buf[body_at:end].decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise _not_utf8(exc) from None
        r.pos = pos + 1
        return _send_event(rid, (r.text(),), r.rest_text())
    count = r.v32()
    if not 1 <= count <= MAX_RECIPIENTS:
        raise _malformed(f"SEND names 1..{MAX_RECIPIENTS} recipients, not {count}")
    return _send_event(rid, r.texts(count), r.rest_text())


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
    return DeleteAccount(_request_id(rid), r.text())


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
    return Accounts(rid, r.texts(r.v32()), bool(more))


def _dec_sent(r: FrameReader, rid: int) -> Sent:
    rid = _request_id(rid)
    message_id, sent_at = r.v64(), r.v64()
    return Sent(rid, message_id, sent_at, r.texts(r.v32()))


def _dec_deleted(r: FrameReader, rid: int) -> Deleted:
    return Deleted(_request_id(rid))


def _dec_pong(r: FrameReader, rid: int) -> Pong:
    return Pong(_request_id(rid), r.rest())


def _dec_deliver(r: FrameReader, rid: int) -> Deliver:
    _no_request_id(rid, "DELIVER")
    return Deliver(r.v64(), r.v64(), r.text(), r.rest_text())


def _dec_error(r: FrameReader, rid: int) -> Error:
    code = r.u8()
    if code == 0:
        raise _malformed("error code 0 is reserved")
    known = code in ErrorCode._value2member_map_
    return Error(rid, ErrorCode(code) if known else code, r.rest_text())


# -- encoders: (event, out) append the request id and the body --------------------------------
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


#: The recipients of the last SEND written and their bytes (the count, then each name), kept
#: because a user mostly writes to the same people again (issue 8: the client's CPU per send;
#: the names cost ~350 ns a send to write). Replaced as one tuple, only after they were written
#: without a refusal, so any SEND to the same names is written as that one was.
_last_recipients: tuple[tuple[str, ...] | None, bytes] = (None, b"")


def _enc_send(e: Send, out: bytearray) -> None:
    global _last_recipients
    rid, recipients = e.request_id, e.recipients
    last, names = _last_recipients
    if recipients == last and 0 < rid < 0x80:
        out.append(rid)
        out += names
        out += _utf8(e.body)
        return
    _put_rid(out, rid)
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise _refuse(f"SEND names 1..{MAX_RECIPIENTS} recipients")
    start = len(out)
    _put_strs(out, recipients)
    _last_recipients = (recipients, bytes(out[start:]))
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


# -- the tables: opcode, event class, kind, decoder, encoder; one pair per version ------------
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
# Version 2: every version 1 message (same layouts) but SENT and DELIVER, which grow, plus
# four requests, their four responses and three pushes.
_V2_REQUESTS: tuple[Spec, ...] = (
    (Opcode.LIST_CONVERSATIONS, ListConversations, Kind.REQUEST, _dec_list_conversations,
     _enc_list_conversations),
    (Opcode.READ_HISTORY, ReadHistory, Kind.REQUEST, _dec_read_history, _enc_read_history),
    (Opcode.MARK_READ, MarkRead, Kind.REQUEST, _dec_mark_read, _enc_mark_read),
    (Opcode.DELETE_MESSAGES, DeleteMessages, Kind.REQUEST, _dec_delete_messages,
     _enc_delete_messages),
)  # fmt: skip
_V2_REPLIES: tuple[Spec, ...] = (
    (Opcode.CONVERSATIONS, Conversations, Kind.RESPONSE, _dec_conversations, _enc_conversations),
    (Opcode.HISTORY, History, Kind.RESPONSE, _dec_history, _enc_history),
    (Opcode.MARKED_READ, MarkedRead, Kind.RESPONSE, _dec_marked_read, _enc_marked_read),
    (Opcode.REMOVED, Removed, Kind.RESPONSE, _dec_removed, _enc_rid_only),
    (Opcode.SENT_COPY, SentCopy, Kind.RESPONSE, _dec_sent_copy, _enc_sent_copy),
    (Opcode.READ_MARK, ReadMark, Kind.RESPONSE, _dec_read_mark, _enc_read_mark),
    (Opcode.MESSAGES_GONE, MessagesGone, Kind.RESPONSE, _dec_messages_gone, _enc_messages_gone),
)
_V2_LAYOUTS: dict[Opcode, Spec] = {  # version 1 messages whose layout grows in version 2
    Opcode.SENT: (Opcode.SENT, Sent, Kind.RESPONSE, _dec_sent_v2, _enc_sent_v2),
    Opcode.DELIVER: (Opcode.DELIVER, Deliver, Kind.RESPONSE, _dec_deliver_v2, _enc_deliver_v2),
}
CLIENT_MESSAGES_V2: tuple[Spec, ...] = (*CLIENT_MESSAGES, *_V2_REQUESTS)
SERVER_MESSAGES_V2: tuple[Spec, ...] = (
    *(_V2_LAYOUTS.get(spec[0], spec) for spec in SERVER_MESSAGES),
    *_V2_REPLIES,
)
# Version 3: every version 2 message, SIGNED_UP and LOGGED_IN with the resume token and
# DELETE_ACCOUNT with the password, plus RESUME, CHANGE_PASSWORD and PASSWORD_CHANGED.
_V3_LAYOUTS: dict[Opcode, Spec] = {
    Opcode.DELETE_ACCOUNT: (Opcode.DELETE_ACCOUNT, DeleteAccount, Kind.REQUEST,
                            _dec_delete_account_v3, _enc_delete_account_v3),
    Opcode.SIGNED_UP: (Opcode.SIGNED_UP, SignedUp, Kind.RESPONSE, _dec_signed_up_v3,
                       _enc_signed_up_v3),
    Opcode.LOGGED_IN: (Opcode.LOGGED_IN, LoggedIn, Kind.RESPONSE, _dec_logged_in_v3,
                       _enc_logged_in_v3),
}  # fmt: skip
CLIENT_MESSAGES_V3: tuple[Spec, ...] = (
    *(_V3_LAYOUTS.get(spec[0], spec) for spec in CLIENT_MESSAGES_V2),
    (Opcode.RESUME, Resume, Kind.REQUEST, _dec_resume, _enc_resume),
    (Opcode.CHANGE_PASSWORD, ChangePassword, Kind.REQUEST, _dec_change_password,
     _enc_change_password),
)  # fmt: skip
SERVER_MESSAGES_V3: tuple[Spec, ...] = (
    *(_V3_LAYOUTS.get(spec[0], spec) for spec in SERVER_MESSAGES_V2),
    (Opcode.PASSWORD_CHANGED, PasswordChanged, Kind.RESPONSE, _dec_password_changed,
     _enc_password_changed),
)  # fmt: skip
#: version -> (client-to-server table, server-to-client table).
MESSAGES: dict[int, tuple[tuple[Spec, ...], tuple[Spec, ...]]] = {
    1: (CLIENT_MESSAGES, SERVER_MESSAGES),
    2: (CLIENT_MESSAGES_V2, SERVER_MESSAGES_V2),
    3: (CLIENT_MESSAGES_V3, SERVER_MESSAGES_V3),
    4: (CLIENT_MESSAGES_V3, SERVER_MESSAGES_V3),  # (version 4 adds an error code, no message)
}
#: Event class -> opcode, for tools and tests (the bench, the PROTOCOL.md example checker).
_ALL = CLIENT_MESSAGES_V3 + SERVER_MESSAGES_V3
OPCODE_OF: dict[type, Opcode] = {cls: opcode for opcode, cls, *_ in _ALL}
KIND_OF_OPCODE: dict[int, Kind] = {opcode: kind for opcode, _, kind, *_ in _ALL}

__all__ = [
    "CLIENT_MESSAGES",
    "CLIENT_MESSAGES_V2",
    "CLIENT_MESSAGES_V3",
    "KIND_OF_OPCODE",
    "MESSAGES",
    "OPCODE_OF",
    "SENDER_DELETED",
    "SENDER_IS_PARTICIPANT",
    "SERVER_MESSAGES",
    "SERVER_MESSAGES_V2",
    "SERVER_MESSAGES_V3",
    "FrameReader",
    "Kind",
    "read_varint",
]
