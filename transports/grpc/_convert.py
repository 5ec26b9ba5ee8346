"""core values <-> chat.proto messages: requests, replies, pages and pushes.

The one place the protobuf transports convert: both gRPC transports (``grpc``: servicer and
client; ``grpc-stream``: server and client) use it for every message, and protobuf-tcp
(``transports.protobuf_tcp._bodies_v2``/``_v3``) for the chat.proto messages whose mapping is
the same there (pages, deliveries, read markers, send and login replies), so that a field
means the same on every protobuf transport and the page rules are written once. The server
side reads values by field name, so protobuf-tcp's events (``Deliver``, ``MarkedRead``,
``Sent``, ...: the same names as the core's types) convert through the same functions.

* A history page's messages and a conversation's last message leave their ``participants``
  and ``conversation_id`` out: they are the page's (or the conversation's), and repeating them
  would cost 5-40 bytes per message. The server leaves them out only when they are equal to
  the page's; the client fills them back in when ``conversation_id`` is 0.
* A page is cut at ``PAGE_BUDGET_BYTES`` of entries (at least one entry), with ``more`` set,
  so that a reply of up to 500 messages of 64 KiB stays below ``MAX_REPLY_BYTES``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core import requests as rq
from core.frozen import builder
from core.types import (
    AccountPage,
    Conversation,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    MessagesDeleted,
    PasswordChanged,
    ReadMarker,
    SendResult,
    SentCopy,
    SessionEvent,
)
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._wire import PAGE_BUDGET_BYTES

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


# -- server side: core -> protobuf ----------------------------------------------------------
def delivery_pb(d: Delivery) -> pb.Delivery:
    """A Delivery with every field (a push: Subscribe, SubscribeEvents, ChatStream)."""
    return pb.Delivery(
        message_id=d.message_id,
        sent_at_ms=d.sent_at_ms,
        sender=d.sender,
        body=d.body,
        participants=d.participants,
        sender_deleted=d.sender_deleted,
        conversation_id=d.conversation_id,
    )


def _in_page(d: Delivery, conversation_id: int, participants: Sequence[str]) -> pb.Delivery:
    """A Delivery inside a page: conversation and participants left out when they are the
    page's (see the module docstring)."""
    if d.conversation_id == conversation_id and tuple(d.participants) == tuple(participants):
        return pb.Delivery(
            message_id=d.message_id,
            sent_at_ms=d.sent_at_ms,
            sender=d.sender,
            body=d.body,
            sender_deleted=d.sender_deleted,
        )
    return delivery_pb(d)


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _fits(entries: Sequence[Any]) -> int:
    """How many of ``entries`` (protobuf messages in a repeated field) fit the page budget:
    at least one."""
    total = 0
    for count, entry in enumerate(entries):
        size = entry.ByteSize()
        total += 1 + _varint_size(size) + size
        if total > PAGE_BUDGET_BYTES and count > 0:
            return count
    return len(entries)


def login_reply(result: LoginResult, session_token: str = "") -> pb.LoginReply:
    """Signup's, Login's and Resume's reply; ``session_token`` empty on grpc-stream (the stream
    is the session). The resume token is the core's (issue 13)."""
    return pb.LoginReply(
        session_token=session_token,
        username=result.username,
        pending=result.pending,
        resume_token=result.resume_token,
    )


def password_changed_reply(changed: PasswordChanged) -> pb.ChangePasswordReply:
    return pb.ChangePasswordReply(
        resume_token=changed.resume_token, sessions_ended=changed.sessions_ended
    )


def accounts_reply(page: AccountPage) -> pb.ListAccountsReply:
    return pb.ListAccountsReply(usernames=page.usernames, more=page.more)


def send_reply(result: SendResult) -> pb.SendReply:
    reply = pb.SendReply()
    fill_send_reply(reply, result)
    return reply


def fill_send_reply(reply: pb.SendReply, result: SendResult) -> None:
    """Set the fields of ``reply`` (empty) from ``result``; ``reply`` may be the ``sent`` of a
    ServerMessage, which this sets (even when every value is 0).

    (On the path of every send, and cheaper than the constructor: a SendReply built with
    keywords and copied into a ServerMessage costs 1.0 us, the same fields set in place
    0.53 us; a SendReply alone 0.35 us with keywords, 0.27 us set field by field. An empty
    repeated field passed to the constructor costs as much as the three scalars together,
    and nearly every send names only known users.)"""
    reply.message_id = result.message_id
    reply.sent_at_ms = result.sent_at_ms
    reply.conversation_id = result.conversation_id
    if result.unknown_recipients:
        reply.unknown_recipients.extend(result.unknown_recipients)


def conversations_reply(page: ConversationPage) -> pb.ListConversationsReply:
    entries = [
        pb.Conversation(
            conversation_id=c.conversation_id,
            participants=c.participants,
            last_message=_in_page(c.last_message, c.conversation_id, c.participants),
            unread=c.unread,
            read_up_to=c.read_up_to,
            deleted_participants=c.deleted_participants,
        )
        for c in page.conversations
    ]
    keep = _fits(entries)
    return pb.ListConversationsReply(
        conversations=entries[:keep], more=page.more or keep < len(entries)
    )


def history_reply(page: HistoryPage) -> pb.ReadHistoryReply:
    messages = [_in_page(m, page.conversation_id, page.participants) for m in page.messages]
    keep = _fits(messages)
    return pb.ReadHistoryReply(
        conversation_id=page.conversation_id,
        participants=page.participants,
        messages=messages[:keep],
        more=page.more or keep < len(messages),
        deleted_participants=page.deleted_participants,
        read_up_to=page.read_up_to,
    )


def marker_pb(marker: ReadMarker) -> pb.ReadMarker:
    return pb.ReadMarker(
        conversation_id=marker.conversation_id, up_to_id=marker.up_to_id, unread=marker.unread
    )


def gone_pb(notice: MessagesDeleted) -> pb.MessagesDeleted:
    return pb.MessagesDeleted(message_ids=notice.message_ids)


def push_arm(event: SessionEvent) -> tuple[str, Any]:
    """The push arm (SessionEvent's and ServerMessage's share the names) and its message."""
    if isinstance(event, Delivery):
        return "delivery", delivery_pb(event)
    if isinstance(event, SentCopy):
        return "sent_copy", delivery_pb(event.message)
    if isinstance(event, ReadMarker):
        return "read_marker", marker_pb(event)
    return "gone", gone_pb(event)


def session_event_pb(event: SessionEvent) -> pb.SessionEvent:
    arm, message = push_arm(event)
    return pb.SessionEvent(**{arm: message})


# -- client side: protobuf -> core ----------------------------------------------------------
def delivery_of(
    m: pb.Delivery, participants: Sequence[str] = (), conversation_id: int = 0
) -> Delivery:
    """A core Delivery; ``participants``/``conversation_id``: the page's, used when the
    message leaves them out (its conversation_id is 0)."""
    if m.conversation_id:
        participants, conversation_id = tuple(m.participants), m.conversation_id
    return Delivery(
        m.message_id,
        m.sender,
        m.body,
        m.sent_at_ms,
        tuple(participants),
        m.sender_deleted,
        conversation_id,
    )


def login_of(m: pb.LoginReply) -> LoginResult:
    """A LoginReply's result (a server from before issue 13 sends no resume token: "")."""
    return LoginResult(m.username, m.pending, m.resume_token)


def password_changed_of(m: pb.ChangePasswordReply) -> PasswordChanged:
    return PasswordChanged(m.resume_token, m.sessions_ended)


def accounts_of(m: pb.ListAccountsReply) -> AccountPage:
    return AccountPage(tuple(m.usernames), m.more)


#: A SendReply's SendResult, the reply to every Send on both gRPC transports: built at a
#: third of its __init__'s cost (core.frozen), an empty repeated field (the usual case) read
#: once and never copied (~2,500 of ~9,000 instructions).
sent_of: Callable[[pb.SendReply], SendResult] = builder(
    SendResult,
    "m",
    (
        "m.message_id",
        "m.sent_at_ms",
        "tuple(u) if (u := m.unknown_recipients) else ()",
        "m.conversation_id",
    ),
)


def conversations_of(m: pb.ListConversationsReply) -> ConversationPage:
    return ConversationPage(
        tuple(
            Conversation(
                c.conversation_id,
                tuple(c.participants),
                delivery_of(c.last_message, tuple(c.participants), c.conversation_id),
                c.unread,
                c.read_up_to,
                tuple(c.deleted_participants),
            )
            for c in m.conversations
        ),
        m.more,
    )


def history_of(m: pb.ReadHistoryReply) -> HistoryPage:
    participants = tuple(m.participants)
    return HistoryPage(
        m.conversation_id,
        participants,
        tuple(delivery_of(d, participants, m.conversation_id) for d in m.messages),
        m.more,
        tuple(m.deleted_participants),
        m.read_up_to,
    )


def marker_of(m: pb.ReadMarker) -> ReadMarker:
    return ReadMarker(m.conversation_id, m.up_to_id, m.unread)


def push_of(arm: str | None, m: Any) -> SessionEvent | None:
    """The core event for a push arm (of SessionEvent or ServerMessage); None: not a push
    this client knows (a newer server's), to be ignored."""
    if arm == "delivery":
        return delivery_of(m)
    if arm == "sent_copy":
        return SentCopy(delivery_of(m))
    if arm == "read_marker":
        return marker_of(m)
    if arm == "gone":
        return MessagesDeleted(tuple(m.message_ids))
    return None


# -- client side: requests -> protobuf ------------------------------------------------------
# ``notices``: grpc-stream's logins ask for notices too (LoginRequest.notices); the unary
# transport gets them from SubscribeEvents instead.
def signup_pb(r: rq.Signup, *, notices: bool = False) -> pb.SignupRequest:
    return pb.SignupRequest(username=r.username, password=r.password, notices=notices)


def login_pb(r: rq.Login, *, notices: bool = False) -> pb.LoginRequest:
    return pb.LoginRequest(username=r.username, password=r.password, notices=notices)


def resume_pb(r: rq.Resume, *, notices: bool = False) -> pb.ResumeRequest:
    return pb.ResumeRequest(resume_token=r.token, notices=notices)


def send_pb(r: rq.Send) -> pb.SendRequest:
    return pb.SendRequest(recipients=r.recipients, body=r.body)


def ack_pb(r: rq.Ack) -> pb.AckRequest:
    return pb.AckRequest(message_ids=r.message_ids)


def delete_account_pb(r: rq.DeleteAccount) -> pb.DeleteAccountRequest:
    return pb.DeleteAccountRequest(username=r.username, password=r.password)


def change_password_pb(r: rq.ChangePassword) -> pb.ChangePasswordRequest:
    return pb.ChangePasswordRequest(
        old_password=r.old_password,
        new_password=r.new_password,
        end_other_sessions=r.end_other_sessions,
    )


# Cursors beyond uint64 mean "from the newest" to the core, as 0 does; page sizes beyond
# uint32 "as many as you give" (the server's cap decides). Ids that do not fit raise
# ValueError, which each transport reports as InvalidArgument.
def list_accounts_pb(r: rq.ListAccounts) -> pb.ListAccountsRequest:
    return pb.ListAccountsRequest(pattern=r.pattern, after=r.after, limit=min(r.limit, U32_MAX))


def list_conversations_pb(r: rq.ListConversations) -> pb.ListConversationsRequest:
    return pb.ListConversationsRequest(
        before_id=r.before_id if r.before_id <= U64_MAX else 0, limit=min(r.limit, U32_MAX)
    )


def read_history_pb(r: rq.ReadHistory) -> pb.ReadHistoryRequest:
    return pb.ReadHistoryRequest(
        participants=r.participants,
        before_id=r.before_id if r.before_id <= U64_MAX else 0,
        limit=min(r.limit, U32_MAX),
        conversation_id=r.conversation_id,
    )


def mark_read_pb(r: rq.MarkRead) -> pb.MarkReadRequest:
    return pb.MarkReadRequest(conversation_id=r.conversation_id, up_to_id=min(r.up_to_id, U64_MAX))


def delete_messages_pb(r: rq.DeleteMessages) -> pb.DeleteMessagesRequest:
    return pb.DeleteMessagesRequest(message_ids=r.message_ids, for_everyone=r.for_everyone)


__all__ = [
    "U32_MAX",
    "U64_MAX",
    "accounts_of",
    "accounts_reply",
    "ack_pb",
    "change_password_pb",
    "conversations_of",
    "conversations_reply",
    "delete_account_pb",
    "delete_messages_pb",
    "delivery_of",
    "delivery_pb",
    "fill_send_reply",
    "history_of",
    "history_reply",
    "list_accounts_pb",
    "list_conversations_pb",
    "login_of",
    "login_pb",
    "login_reply",
    "mark_read_pb",
    "marker_of",
    "marker_pb",
    "password_changed_of",
    "password_changed_reply",
    "push_arm",
    "push_of",
    "read_history_pb",
    "resume_pb",
    "send_pb",
    "send_reply",
    "sent_of",
    "session_event_pb",
    "signup_pb",
]
