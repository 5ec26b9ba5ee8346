"""Version 2 frame bodies of protobuf-tcp: history, read marks, deletion, and their pushes.

Custom protocol version 2's opcodes (custom PROTOCOL.md sections 6.10-6.13, 7.6, 7.9,
7.11-7.17), each carrying the chat.proto message the gRPC transports use for the same thing,
converted by ``transports.grpc._convert`` (pages, deliveries, read markers, SENT) so that a
field means the same on every protobuf transport (and a page's messages leave out the
conversation and participants the page names). The request encoders stay this module's: they
refuse (LocalProtocolError) a value out of range in an event the custom client has already
bounded, where the gRPC conversions clamp it.
Every push has a chat.proto message, so frames.proto gains nothing.

``CLIENT_MESSAGES_V2`` and ``SERVER_MESSAGES_V2`` have the shape of ``_bodies``' tables: version
1's, with SENT and DELIVER carrying their version 2 fields (the same protobuf messages, more of
their fields set), plus the eleven new messages. The custom protocol's checks that a schema
cannot make are made here too: DELETE_MESSAGES and MESSAGES_GONE carry 1..1024 strictly
increasing ids.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, cast

from google.protobuf.message import DecodeError

from core.frozen import builder
from core.types import ConversationPage, HistoryPage
from transports.custom._events import (
    Conversations,
    DeleteMessages,
    Deliver,
    History,
    ListConversations,
    MarkedRead,
    MarkRead,
    MessagesGone,
    ReadHistory,
    ReadMark,
    Removed,
    Sent,
    SentCopy,
)
from transports.custom._messages import FrameReader, Kind
from transports.custom._wire import MAX_DELETE_IDS, U64_MAX, Opcode
from transports.grpc import _convert as convert
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp._bodies import (
    CLIENT_MESSAGES,
    MESSAGE_OF,
    SERVER_MESSAGES,
    Spec,
    _decoder,
    _encoder,
    _malformed,
    _put_rid,
    _refusal,
    _refuse,
    _request_id,
    _rid,
    _unencodable,
    _zero,
    _zero_id,
)

#: The protobuf message of each opcode version 2 adds.
MESSAGE_OF_V2: dict[Opcode, type] = {
    Opcode.LIST_CONVERSATIONS: chat.ListConversationsRequest,
    Opcode.READ_HISTORY: chat.ReadHistoryRequest,
    Opcode.MARK_READ: chat.MarkReadRequest,
    Opcode.DELETE_MESSAGES: chat.DeleteMessagesRequest,
    Opcode.CONVERSATIONS: chat.ListConversationsReply,
    Opcode.HISTORY: chat.ReadHistoryReply,
    Opcode.MARKED_READ: chat.ReadMarker,
    Opcode.REMOVED: chat.DeleteMessagesReply,
    Opcode.SENT_COPY: chat.Delivery,
    Opcode.READ_MARK: chat.ReadMarker,
    Opcode.MESSAGES_GONE: chat.MessagesDeleted,
}
_M = MESSAGE_OF | MESSAGE_OF_V2


# -- checks protobuf cannot make ------------------------------------------------------------
def _ids(ids: Any, what: str) -> tuple[int, ...]:
    if not 1 <= len(ids) <= MAX_DELETE_IDS:
        raise _malformed(f"{what} carries 1..{MAX_DELETE_IDS} ids, not {len(ids)}")
    if any(b <= a for a, b in itertools.pairwise(ids)):
        raise _malformed(f"{what} ids must be strictly increasing")
    return tuple(ids)


def _put_ids(ids: tuple[int, ...], what: str) -> tuple[int, ...]:
    if not 1 <= len(ids) <= MAX_DELETE_IDS:
        raise _refuse(f"{what} carries 1..{MAX_DELETE_IDS} ids")
    if any(b <= a for a, b in itertools.pairwise(ids)) or not 0 <= ids[0] <= ids[-1] <= U64_MAX:
        raise _refuse(f"{what} ids must be strictly increasing, in 0..2^64-1")
    return ids


# -- messages <-> events --------------------------------------------------------------------
def _deliver(m: chat.Delivery) -> Deliver:
    return Deliver(
        m.message_id,
        m.sent_at_ms,
        m.sender,
        m.body,
        tuple(m.participants),
        m.sender_deleted,
        m.conversation_id,
    )


def _history(m: chat.ReadHistoryReply, rid: int) -> History:
    page = convert.history_of(m)
    return History(
        rid,
        page.conversation_id,
        page.participants,
        page.messages,
        page.more,
        page.deleted_participants,
        page.read_up_to,
    )


def _history_pb(e: History) -> chat.ReadHistoryReply:
    page = HistoryPage(
        e.conversation_id,
        e.participants,
        e.messages,
        e.more,
        e.deleted_participants,
        e.read_up_to,
    )
    return convert.history_reply(page)


def _conversations(m: chat.ListConversationsReply, rid: int) -> Conversations:
    page = convert.conversations_of(m)
    return Conversations(rid, page.conversations, page.more)


def _conversations_pb(e: Conversations) -> chat.ListConversationsReply:
    return convert.conversations_reply(ConversationPage(e.conversations, e.more))


_REQUEST, _NO_ID = _request_id, _zero_id

# -- the tables: opcode, event class, kind, decoder, encoder ----------------------------------
_V2_REQUESTS: tuple[Spec, ...] = (
    (
        Opcode.LIST_CONVERSATIONS,
        ListConversations,
        Kind.REQUEST,
        _decoder(
            _M[Opcode.LIST_CONVERSATIONS],
            _REQUEST,
            lambda m, i: ListConversations(i, m.before_id, m.limit),
        ),
        _encoder(
            _rid,
            1,
            lambda e: chat.ListConversationsRequest(before_id=e.before_id, limit=e.limit),
        ),
    ),
    (
        Opcode.READ_HISTORY,
        ReadHistory,
        Kind.REQUEST,
        _decoder(
            _M[Opcode.READ_HISTORY],
            _REQUEST,
            lambda m, i: ReadHistory(
                i, m.conversation_id, m.before_id, m.limit, tuple(m.participants)
            ),
        ),
        _encoder(
            _rid,
            1,
            lambda e: chat.ReadHistoryRequest(
                participants=e.participants,
                before_id=e.before_id,
                limit=e.limit,
                conversation_id=e.conversation_id,
            ),
        ),
    ),
    (
        Opcode.MARK_READ,
        MarkRead,
        Kind.REQUEST,
        _decoder(
            _M[Opcode.MARK_READ], _REQUEST, lambda m, i: MarkRead(i, m.conversation_id, m.up_to_id)
        ),
        _encoder(
            _rid,
            1,
            lambda e: chat.MarkReadRequest(conversation_id=e.conversation_id, up_to_id=e.up_to_id),
        ),
    ),
    (
        Opcode.DELETE_MESSAGES,
        DeleteMessages,
        Kind.REQUEST,
        _decoder(
            _M[Opcode.DELETE_MESSAGES],
            _REQUEST,
            lambda m, i: DeleteMessages(i, _ids(m.message_ids, "DELETE_MESSAGES"), m.for_everyone),
        ),
        _encoder(
            _rid,
            1,
            lambda e: chat.DeleteMessagesRequest(
                message_ids=_put_ids(e.message_ids, "DELETE_MESSAGES"),
                for_everyone=e.for_everyone,
            ),
        ),
    ),
)
_V2_REPLIES: tuple[Spec, ...] = (
    (
        Opcode.CONVERSATIONS,
        Conversations,
        Kind.RESPONSE,
        _decoder(_M[Opcode.CONVERSATIONS], _REQUEST, _conversations),
        _encoder(_rid, 1, _conversations_pb),
    ),
    (
        Opcode.HISTORY,
        History,
        Kind.RESPONSE,
        _decoder(_M[Opcode.HISTORY], _REQUEST, _history),
        _encoder(_rid, 1, _history_pb),
    ),
    (
        Opcode.MARKED_READ,
        MarkedRead,
        Kind.RESPONSE,
        _decoder(
            _M[Opcode.MARKED_READ],
            _REQUEST,
            lambda m, i: MarkedRead(i, m.conversation_id, m.up_to_id, m.unread),
        ),
        _encoder(_rid, 1, convert.marker_pb),
    ),
    (
        Opcode.REMOVED,
        Removed,
        Kind.RESPONSE,
        _decoder(_M[Opcode.REMOVED], _REQUEST, lambda m, i: Removed(i)),
        _encoder(_rid, 1, lambda e: chat.DeleteMessagesReply()),
    ),
    (
        Opcode.SENT_COPY,
        SentCopy,
        Kind.RESPONSE,
        _decoder(_M[Opcode.SENT_COPY], _NO_ID("SENT_COPY"), lambda m, i: SentCopy(_deliver(m))),
        _encoder(_zero, 0, lambda e: convert.delivery_pb(e.message)),
    ),
    (
        Opcode.READ_MARK,
        ReadMark,
        Kind.RESPONSE,
        _decoder(
            _M[Opcode.READ_MARK],
            _NO_ID("READ_MARK"),
            lambda m, i: ReadMark(m.conversation_id, m.up_to_id, m.unread),
        ),
        _encoder(_zero, 0, convert.marker_pb),
    ),
    (
        Opcode.MESSAGES_GONE,
        MessagesGone,
        Kind.RESPONSE,
        _decoder(
            _M[Opcode.MESSAGES_GONE],
            _NO_ID("MESSAGES_GONE"),
            lambda m, i: MessagesGone(_ids(m.message_ids, "MESSAGES_GONE")),
        ),
        _encoder(
            _zero,
            0,
            lambda e: chat.MessagesDeleted(message_ids=_put_ids(e.message_ids, "MESSAGES_GONE")),
        ),
    ),
)


_SendReply = chat.SendReply
#: The method itself: ``reply.SerializeToString`` looks the name up among the message's
#: fields first, then on its type (~300-1,100 instructions, callgrind; timeit 0.45 -> 0.38 us
#: for a whole SENT body).
_serialize_reply = _SendReply.SerializeToString


def _encode_sent(e: Sent, out: bytearray) -> None:
    """SENT, the reply every send takes: ``_encoder``'s steps and ``convert.send_reply``'s
    written out in one function (two Python calls fewer per SENT), the same bytes and the
    same refusals."""
    rid = e.request_id
    if 1 <= rid < 0x80:  # (one-byte ids: every reply's path)
        out.append(rid)
    else:
        _put_rid(out, rid, 1)
    reply = _SendReply()
    try:  # (fields set one by one: cheaper than keywords, see convert.fill_send_reply)
        reply.message_id = e.message_id
        reply.sent_at_ms = e.sent_at_ms
        reply.conversation_id = e.conversation_id
        if e.unknown_recipients:
            reply.unknown_recipients.extend(e.unknown_recipients)
        out += _serialize_reply(reply)
    except (ValueError, TypeError) as exc:  # protobuf's range, type and UTF-8 checks
        raise _unencodable(e, exc) from None


_parse_reply = cast(Callable[[bytes | bytearray], Any], _SendReply.FromString)
#: The Sent event of a parsed reply and its unknown recipients, in one call (core.frozen).
_sent_event: Callable[[int, Any, tuple[str, ...]], Sent] = builder(
    Sent, "rid, m, unknown", ("rid", "m.message_id", "m.sent_at_ms", "unknown", "m.conversation_id")
)


def _decode_sent(r: FrameReader, rid: int) -> Sent:
    """SENT, the reply every send takes (the client's side of the hot path): ``_decoder``'s
    steps written out in one function, the event built straight from the message, and no
    tuple walked out of an empty repeated field (upb ends that walk with an IndexError).
    Callgrind, the client codec's SENT: ~25,900 -> ~16,500 instructions."""
    if rid == 0:
        _request_id(rid)  # (raises)
    body, r.pos = r.buf[r.pos : r.end], r.end
    try:
        reply = _parse_reply(body)
    except DecodeError:
        raise _refusal(_SendReply, body) from None
    unknown = reply.unknown_recipients  # (almost always empty: no tuple to walk it into)
    return _sent_event(rid, reply, tuple(unknown[:]) if unknown else ())


# Version 1 messages whose version 2 events carry more fields: the same protobuf messages.
_V2_LAYOUTS: dict[Opcode, Spec] = {
    Opcode.SENT: (Opcode.SENT, Sent, Kind.RESPONSE, _decode_sent, _encode_sent),
    Opcode.DELIVER: (
        Opcode.DELIVER,
        Deliver,
        Kind.RESPONSE,
        _decoder(_M[Opcode.DELIVER], _NO_ID("DELIVER"), lambda m, i: _deliver(m)),
        _encoder(_zero, 0, convert.delivery_pb),
    ),
}

CLIENT_MESSAGES_V2: tuple[Spec, ...] = (*CLIENT_MESSAGES, *_V2_REQUESTS)
SERVER_MESSAGES_V2: tuple[Spec, ...] = (
    *(_V2_LAYOUTS.get(spec[0], spec) for spec in SERVER_MESSAGES),
    *_V2_REPLIES,
)
#: version -> (client-to-server table, server-to-client table), as custom ``MESSAGES``.
MESSAGES: dict[int, tuple[tuple[Spec, ...], tuple[Spec, ...]]] = {
    1: (CLIENT_MESSAGES, SERVER_MESSAGES),
    2: (CLIENT_MESSAGES_V2, SERVER_MESSAGES_V2),
}

__all__ = ["CLIENT_MESSAGES_V2", "MESSAGES", "MESSAGE_OF_V2", "SERVER_MESSAGES_V2"]
