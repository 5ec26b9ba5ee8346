"""Version 2 message bodies (PROTOCOL.md sections 6.10-6.13, 7.6, 7.9, 7.11-7.17).

The four history requests and their responses, the three pushes, and the longer layouts of
SENT and DELIVER. Same shape as ``_messages``: one decoder and one encoder per message, pure
functions; ``_messages`` puts them in the version 2 tables.

Where version 2 saves bytes (section 11): DELIVER sends the sender once even when it is also a
participant (flag SENDER_IS_PARTICIPANT); HISTORY names senders by an index into a per-page
table and sends ids and timestamps as differences from the previous message.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable

from core.frozen import builder
from core.types import Conversation, Delivery
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
from transports.custom._fields import (
    FrameReader,
    RisingVarint,
    _malformed,
    _no_request_id,
    _put_rid,
    _put_str,
    _put_strs,
    _put_v32,
    _put_v64,
    _refuse,
    _request_id,
    _utf8,
)
from transports.custom._wire import MAX_DELETE_IDS, U32_MAX, U64_MAX, put_varint

#: DELIVER/SENT_COPY flags (section 7.9). Other bits are reserved: MALFORMED if set.
SENDER_DELETED = 0x01
SENDER_IS_PARTICIPANT = 0x02
_S64_MIN, _S64_MAX = -(2**63), 2**63 - 1
#: The message ids and timestamps of SENT and DELIVER: values that rise slowly (_fields).
_MESSAGE_IDS, _CLOCK = RisingVarint(), RisingVarint()


def _flag(r: FrameReader, what: str, allowed: int) -> int:
    flags = r.u8()
    if flags & ~allowed:
        raise _malformed(f"{what}: reserved flag bits set (0x{flags:02X})")
    return flags


def _bool(r: FrameReader, what: str) -> bool:
    value = r.u8()
    if value > 1:
        raise _malformed(f"{what} is 0 or 1, not {value}")
    return bool(value)


def _count(r: FrameReader, what: str, minimum: int = 0, maximum: int = U32_MAX) -> int:
    count = r.v32()
    if not minimum <= count <= maximum:
        raise _malformed(f"{what} holds {minimum}..{maximum} items, not {count}")
    if count > r.end - r.pos:  # every item takes at least one byte
        raise r._truncated(what)
    return count


def _strs(r: FrameReader) -> tuple[str, ...]:
    return r.texts(r.v32())


def _zigzag(r: FrameReader) -> int:
    """An ``s64`` (section 2): a zigzag-encoded signed varint."""
    z = r.v64()
    return (z >> 1) ^ -(z & 1)


def _put_s64(out: bytearray, value: int, what: str) -> None:
    if not _S64_MIN <= value <= _S64_MAX:
        raise _refuse(f"{what} must be in -2^63..2^63-1: {value}")
    put_varint(out, (value << 1) ^ (value >> 63))


def _ids(r: FrameReader, what: str) -> tuple[int, ...]:
    """count (1..MAX_DELETE_IDS), then strictly increasing ids: the first, then deltas."""
    count = _count(r, what, 1, MAX_DELETE_IDS)
    ids = [r.v64()]
    for _ in range(count - 1):
        delta = r.v64()
        if delta == 0:
            raise _malformed(f"{what}: ids must be strictly increasing (a delta of 0)")
        ids.append(ids[-1] + delta)
    if ids[-1] > U64_MAX:
        raise _malformed(f"{what}: an id exceeds 2^64-1")
    return tuple(ids)


def _put_ids(out: bytearray, ids: tuple[int, ...], what: str) -> None:
    if not 1 <= len(ids) <= MAX_DELETE_IDS:
        raise _refuse(f"{what} carries 1..{MAX_DELETE_IDS} ids")
    put_varint(out, len(ids))
    _put_v64(out, ids[0], "a message id")
    for previous, current in itertools.pairwise(ids):
        if current <= previous:
            raise _refuse(f"{what} ids must be strictly increasing")
        _put_v64(out, current - previous, "a message id")


def _dec_list_conversations(r: FrameReader, rid: int) -> ListConversations:
    return ListConversations(_request_id(rid), r.v64(), r.v32())


def _enc_list_conversations(e: ListConversations, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_v64(out, e.before_id, "before_id")
    _put_v32(out, e.limit, "limit")


def _dec_read_history(r: FrameReader, rid: int) -> ReadHistory:
    rid = _request_id(rid)
    conversation_id, before_id, limit = r.v64(), r.v64(), r.v32()
    return ReadHistory(rid, conversation_id, before_id, limit, _strs(r))


def _enc_read_history(e: ReadHistory, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_v64(out, e.conversation_id, "conversation_id")
    _put_v64(out, e.before_id, "before_id")
    _put_v32(out, e.limit, "limit")
    _put_strs(out, e.participants)


def _dec_mark_read(r: FrameReader, rid: int) -> MarkRead:
    return MarkRead(_request_id(rid), r.v64(), r.v64())


def _enc_mark_read(e: MarkRead, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_v64(out, e.conversation_id, "conversation_id")
    _put_v64(out, e.up_to_id, "up_to_id")


def _dec_delete_messages(r: FrameReader, rid: int) -> DeleteMessages:
    rid = _request_id(rid)
    for_everyone = _bool(r, "DELETE_MESSAGES 'for_everyone'")
    return DeleteMessages(rid, _ids(r, "DELETE_MESSAGES"), for_everyone)


def _enc_delete_messages(e: DeleteMessages, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    out.append(1 if e.for_everyone else 0)
    _put_ids(out, e.message_ids, "DELETE_MESSAGES")


def _dec_message(r: FrameReader) -> Deliver:
    """DELIVER's version 2 fields (also SENT_COPY's)."""
    message_id, sent_at_ms, conversation_id = r.v64(), r.v64(), r.v64()
    flags = _flag(r, "DELIVER", SENDER_DELETED | SENDER_IS_PARTICIPANT)
    sender = r.text()
    participants = _strs(r)
    if flags & SENDER_IS_PARTICIPANT:
        others = list(participants)
        bisect.insort(others, sender)
        participants = tuple(others)
    return Deliver(
        message_id,
        sent_at_ms,
        sender,
        r.rest_text(),
        participants,
        bool(flags & SENDER_DELETED),
        conversation_id,
    )


def _enc_message(e: Deliver, out: bytearray) -> None:
    message_id, sent_at = e.message_id, e.sent_at_ms
    if not (0 <= message_id <= U64_MAX and 0 <= sent_at <= U64_MAX):
        _put_v64(out, message_id, "message_id")  # (raises the error of the field)
        _put_v64(out, sent_at, "sent_at_ms")
    _MESSAGE_IDS.put(out, message_id)
    _CLOCK.put(out, sent_at)
    _put_v64(out, e.conversation_id, "conversation_id")
    flags = SENDER_DELETED if e.sender_deleted else 0
    others = e.participants
    if e.sender in others:  # (a 1:1 message then costs one byte of list, not the name again)
        flags |= SENDER_IS_PARTICIPANT
        i = others.index(e.sender)
        others = others[:i] + others[i + 1 :]
    out.append(flags)
    _put_str(out, e.sender)
    _put_strs(out, others)
    out += _utf8(e.body)


#: Sent built without its dataclass __init__ (core.frozen): the reply to every SEND.
_sent: Callable[..., Sent] = builder(Sent)


#: The last multi-byte varint read for each of SENT's three u64 fields (message_id, sent_at_ms,
#: conversation_id): its bytes after the first, and its value less its low 7 bits. Read on the
#: client, for the reply to every send (issue 8: a six-byte varint read seven bits at a time
#: costs thousands of instructions; see RisingVarint for the writer's side). These values rise
#: slowly, so their bytes after the first mostly repeat: when they do, only the first byte is
#: new. A tail is kept only from a varint ``FrameReader.v64`` accepted (minimal, at most ten
#: bytes, at most 2^64-1), and any first byte before it keeps all three true, so a matching
#: varint is as valid as that one was. Each entry is replaced as one tuple (safe to share).
_sent_tails: list[tuple[bytes, int]] = [(b"", 0), (b"", 0), (b"", 0)]


def _dec_sent_v2(r: FrameReader, rid: int) -> Sent:
    rid = _request_id(rid)
    buf, pos, end = r.buf, r.pos, r.end
    fields = []
    for i in (0, 1, 2):  # message_id, sent_at_ms, conversation_id (u64 varints)
        if pos < end:
            first = buf[pos]
            if first < 0x80:
                fields.append(first)
                pos += 1
                continue
            tail, high = _sent_tails[i]
            after = pos + 1 + len(tail)
            if tail and after <= end and buf[pos + 1 : after] == tail:
                fields.append((first & 0x7F) | high)
                pos = after
                continue
        r.pos = pos  # anything else: the field reader (and its errors)
        value = r.v64()
        if r.pos - pos > 1:
            _sent_tails[i] = (bytes(buf[pos + 1 : r.pos]), value & ~0x7F)
        fields.append(value)
        pos = r.pos
    message_id, sent_at, conversation_id = fields
    if pos < end and buf[pos] == 0:  # no unknown recipients: the usual case
        r.pos = pos + 1
        return _sent(rid, message_id, sent_at, (), conversation_id)
    r.pos = pos
    unknown = r.v32()
    return _sent(rid, message_id, sent_at, r.texts(unknown) if unknown else (), conversation_id)


def _enc_sent_v2(e: Sent, out: bytearray) -> None:
    # The reply to every SEND, written out: one call where the field writers took eleven.
    rid, message_id, sent_at, conversation_id = (
        e.request_id,
        e.message_id,
        e.sent_at_ms,
        e.conversation_id,
    )
    if not (
        1 <= rid <= U32_MAX
        and 0 <= message_id <= U64_MAX
        and 0 <= sent_at <= U64_MAX
        and 0 <= conversation_id <= U64_MAX
    ):
        _put_rid(out, rid)  # (each raises the LocalProtocolError of its field)
        _put_v64(out, message_id, "message_id")
        _put_v64(out, sent_at, "sent_at_ms")
        _put_v64(out, conversation_id, "conversation_id")
    if rid < 0x80:
        out.append(rid)
    else:
        put_varint(out, rid)
    # (RisingVarint.put written out for the usual case: both values share the high bytes of
    # the last ones. A loop over the two fields built three tuples per SENT.)
    ids, clock = _MESSAGE_IDS.last, _CLOCK.last
    if message_id >> 7 == ids[0] and sent_at >> 7 == clock[0]:
        out.append((message_id & 0x7F) | 0x80)
        out += ids[1]
        out.append((sent_at & 0x7F) | 0x80)
        out += clock[1]
    else:
        _MESSAGE_IDS.put(out, message_id)
        _CLOCK.put(out, sent_at)
    if conversation_id < 0x80:
        out.append(conversation_id)
    else:
        put_varint(out, conversation_id)
    if e.unknown_recipients:
        _put_strs(out, e.unknown_recipients)
    else:
        out.append(0)


def _dec_deliver_v2(r: FrameReader, rid: int) -> Deliver:
    _no_request_id(rid, "DELIVER")
    return _dec_message(r)


def _enc_deliver_v2(e: Deliver, out: bytearray) -> None:
    out.append(0)
    _enc_message(e, out)


def _dec_sent_copy(r: FrameReader, rid: int) -> SentCopy:
    _no_request_id(rid, "SENT_COPY")
    return SentCopy(_dec_message(r))


def _enc_sent_copy(e: SentCopy, out: bytearray) -> None:
    out.append(0)
    _enc_message(e.message, out)


def _dec_conversations(r: FrameReader, rid: int) -> Conversations:
    rid = _request_id(rid)
    more = _bool(r, "CONVERSATIONS 'more'")
    found = []
    for _ in range(_count(r, "CONVERSATIONS")):
        conversation_id, unread, read_up_to = r.v64(), r.v32(), r.v64()
        participants, deleted = _strs(r), _strs(r)
        message_id, sent_at_ms = r.v64(), r.v64()
        flags = _flag(r, "a last message", SENDER_DELETED)
        sender, body = r.text(), r.text()
        last = Delivery(
            message_id,
            sender,
            body,
            sent_at_ms,
            participants,
            bool(flags & SENDER_DELETED),
            conversation_id,
        )
        found.append(Conversation(conversation_id, participants, last, unread, read_up_to, deleted))
    return Conversations(rid, tuple(found), more)


def _enc_conversations(e: Conversations, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    out.append(1 if e.more else 0)
    put_varint(out, len(e.conversations))
    for c in e.conversations:
        last = c.last_message
        _put_v64(out, c.conversation_id, "conversation_id")
        _put_v32(out, c.unread, "unread")
        _put_v64(out, c.read_up_to, "read_up_to")
        _put_strs(out, c.participants)
        _put_strs(out, c.deleted_participants)
        _put_v64(out, last.message_id, "message_id")
        _put_v64(out, last.sent_at_ms, "sent_at_ms")
        out.append(SENDER_DELETED if last.sender_deleted else 0)
        _put_str(out, last.sender)
        _put_str(out, last.body)


def _dec_history(r: FrameReader, rid: int) -> History:
    rid = _request_id(rid)
    conversation_id, read_up_to = r.v64(), r.v64()
    more = _bool(r, "HISTORY 'more'")
    participants, deleted = _strs(r), _strs(r)
    senders = []
    for _ in range(_count(r, "HISTORY senders")):
        flags = _flag(r, "a HISTORY sender", SENDER_DELETED)
        senders.append((r.text(), bool(flags & SENDER_DELETED)))
    messages: list[Delivery] = []
    message_id = sent_at_ms = 0
    for i in range(_count(r, "HISTORY messages")):
        if i == 0:
            message_id, sent_at_ms = r.v64(), r.v64()
        else:
            delta = r.v64()
            if not 0 < delta < message_id:
                raise _malformed("HISTORY ids must be strictly decreasing and above 0")
            message_id -= delta
            sent_at_ms += _zigzag(r)
            if not 0 <= sent_at_ms <= U64_MAX:
                raise _malformed("a HISTORY timestamp is out of range")
        index = r.v32()
        if index >= len(senders):
            raise _malformed(f"sender {index} of a HISTORY message is not in its table")
        sender, sender_deleted = senders[index]
        messages.append(
            Delivery(
                message_id,
                sender,
                r.text(),
                sent_at_ms,
                participants,
                sender_deleted,
                conversation_id,
            )
        )
    return History(rid, conversation_id, participants, tuple(messages), more, deleted, read_up_to)


def _enc_history(e: History, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_v64(out, e.conversation_id, "conversation_id")
    _put_v64(out, e.read_up_to, "read_up_to")
    out.append(1 if e.more else 0)
    _put_strs(out, e.participants)
    _put_strs(out, e.deleted_participants)
    table: dict[tuple[str, bool], int] = {}  # (name, deleted) -> index, in order of first use
    for m in e.messages:
        table.setdefault((m.sender, m.sender_deleted), len(table))
    put_varint(out, len(table))
    for name, deleted in table:
        out.append(SENDER_DELETED if deleted else 0)
        _put_str(out, name)
    put_varint(out, len(e.messages))
    previous: Delivery | None = None
    for m in e.messages:
        if previous is None:
            _put_v64(out, m.message_id, "message_id")
            _put_v64(out, m.sent_at_ms, "sent_at_ms")
        else:
            if not 0 < m.message_id < previous.message_id:
                raise _refuse("HISTORY messages go newest first, ids strictly decreasing")
            if not 0 <= m.sent_at_ms <= U64_MAX:
                raise _refuse(f"sent_at_ms must be in 0..2^64-1: {m.sent_at_ms}")
            put_varint(out, previous.message_id - m.message_id)
            _put_s64(out, m.sent_at_ms - previous.sent_at_ms, "a timestamp difference")
        put_varint(out, table[(m.sender, m.sender_deleted)])
        _put_str(out, m.body)
        previous = m


def _dec_marked_read(r: FrameReader, rid: int) -> MarkedRead:
    return MarkedRead(_request_id(rid), r.v64(), r.v64(), r.v32())


def _enc_marked_read(e: MarkedRead, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _enc_mark(e, out)


def _enc_mark(e: MarkedRead | ReadMark, out: bytearray) -> None:
    _put_v64(out, e.conversation_id, "conversation_id")
    _put_v64(out, e.up_to_id, "up_to_id")
    _put_v32(out, e.unread, "unread")


def _dec_removed(r: FrameReader, rid: int) -> Removed:
    return Removed(_request_id(rid))


def _dec_read_mark(r: FrameReader, rid: int) -> ReadMark:
    _no_request_id(rid, "READ_MARK")
    return ReadMark(r.v64(), r.v64(), r.v32())


def _enc_read_mark(e: ReadMark, out: bytearray) -> None:
    out.append(0)
    _enc_mark(e, out)


def _dec_messages_gone(r: FrameReader, rid: int) -> MessagesGone:
    _no_request_id(rid, "MESSAGES_GONE")
    return MessagesGone(_ids(r, "MESSAGES_GONE"))


def _enc_messages_gone(e: MessagesGone, out: bytearray) -> None:
    out.append(0)
    _put_ids(out, e.message_ids, "MESSAGES_GONE")


__all__ = ["SENDER_DELETED", "SENDER_IS_PARTICIPANT"]
