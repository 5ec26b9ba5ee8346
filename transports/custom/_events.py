"""The events of the custom protocol: what a codec user sends and receives.

One frozen, slotted dataclass per message of PROTOCOL.md, with plain Python values (``str``,
``int``, tuples). The opcode and the byte layout are the codec's business (``_codec``);
a request's ``request_id`` is the only wire detail that shows through, because the driver
needs it to pair a response with its request. HELLO, WELCOME, ACK and DELIVER always travel
with request id 0, so they carry no field for it.

Version 2 (PROTOCOL.md sections 6.10-6.13, 7.11-7.17) reuses ``core.types`` values where a
message carries whole ones (a page of ``Delivery``, ``Conversation`` rows): they are plain
values too, and the drivers hand them on unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.types import Conversation, Delivery
from transports.custom._wire import PROTOCOL_VERSION


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: The type of NEED_DATA (for annotations).
NeedData = _Sentinel
#: Returned by ``Connection.next_event()`` when no complete frame is buffered.
NEED_DATA = _Sentinel("NEED_DATA")


# -- client to server ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hello:
    min_version: int = PROTOCOL_VERSION
    max_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Signup:
    request_id: int
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Login:
    request_id: int
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Logout:
    request_id: int


@dataclass(frozen=True, slots=True)
class ListAccounts:
    request_id: int
    pattern: str = "*"
    after: str = ""
    limit: int = 0  # 0 = the server's default page size


@dataclass(frozen=True, slots=True)
class Send:
    request_id: int
    recipients: tuple[str, ...]
    body: str


@dataclass(frozen=True, slots=True)
class Ack:
    message_ids: tuple[int, ...]  # strictly increasing; the codec delta-encodes them


@dataclass(frozen=True, slots=True)
class DeleteAccount:
    request_id: int
    username: str
    password: str = ""  # version 3 only (an older connection carries none)


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: int
    payload: bytes = b""


# -- server to client ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Welcome:
    version: int
    max_frame: int
    max_body: int
    max_recipients: int


@dataclass(frozen=True, slots=True)
class SignedUp:
    request_id: int
    pending: int = 0
    resume_token: str = ""  # version 3 only


@dataclass(frozen=True, slots=True)
class LoggedIn:
    request_id: int
    pending: int
    resume_token: str = ""  # version 3 only
    username: str = ""  # version 3 only: the account logged in (RESUME names no account)


@dataclass(frozen=True, slots=True)
class LoggedOut:
    request_id: int


@dataclass(frozen=True, slots=True)
class Accounts:
    request_id: int
    usernames: tuple[str, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class Sent:
    request_id: int
    message_id: int
    sent_at_ms: int
    unknown_recipients: tuple[str, ...] = ()
    conversation_id: int = 0  # version 2 only (0: nothing stored)


@dataclass(frozen=True, slots=True)
class Deleted:
    request_id: int


@dataclass(frozen=True, slots=True)
class Pong:
    request_id: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Deliver:
    """A pushed message. Version 1 carries the first four fields; version 2 also the rest
    (``participants``: the conversation's other participants as the reader sees them,
    sorted; see ``core.types.Delivery``)."""

    message_id: int
    sent_at_ms: int
    sender: str
    body: str
    participants: tuple[str, ...] = ()
    sender_deleted: bool = False
    conversation_id: int = 0


# -- version 2: client to server --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListConversations:
    request_id: int
    before_id: int = 0  # 0: from the most recent
    limit: int = 0  # 0: the server's default page size


@dataclass(frozen=True, slots=True)
class ReadHistory:
    request_id: int
    conversation_id: int = 0  # 0: name the conversation by its participants
    before_id: int = 0
    limit: int = 0
    participants: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MarkRead:
    request_id: int
    conversation_id: int
    up_to_id: int


@dataclass(frozen=True, slots=True)
class DeleteMessages:
    request_id: int
    message_ids: tuple[int, ...]  # strictly increasing; the codec delta-encodes them
    for_everyone: bool = False


# -- version 2: server to client --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Conversations:
    request_id: int
    conversations: tuple[Conversation, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class History:
    """One page of one conversation: the fields of ``core.types.HistoryPage``."""

    request_id: int
    conversation_id: int
    participants: tuple[str, ...]
    messages: tuple[Delivery, ...]  # newest first
    more: bool
    deleted_participants: tuple[str, ...] = ()
    read_up_to: int = 0


@dataclass(frozen=True, slots=True)
class MarkedRead:
    request_id: int
    conversation_id: int
    up_to_id: int
    unread: int


@dataclass(frozen=True, slots=True)
class Removed:
    request_id: int


@dataclass(frozen=True, slots=True)
class SentCopy:
    """A message this user sent from another connection ("sent by you"); a push."""

    message: Deliver


@dataclass(frozen=True, slots=True)
class ReadMark:
    """Another connection of this user marked a conversation read; a push."""

    conversation_id: int
    up_to_id: int
    unread: int


@dataclass(frozen=True, slots=True)
class MessagesGone:
    """These message ids left this user's history; a push."""

    message_ids: tuple[int, ...]  # strictly increasing


@dataclass(frozen=True, slots=True)
class Error:
    """``code`` is an ErrorCode where known; a plain int for codes of later versions."""

    request_id: int
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side cleanly, on a frame boundary (``receive_data(b"")``)."""


ClientEvent = (
    Hello
    | Signup
    | Login
    | Logout
    | ListAccounts
    | Send
    | Ack
    | DeleteAccount
    | Ping
    | ListConversations
    | ReadHistory
    | MarkRead
    | DeleteMessages
)
ServerEvent = (
    Welcome
    | SignedUp
    | LoggedIn
    | LoggedOut
    | Accounts
    | Sent
    | Deleted
    | Pong
    | Deliver
    | Error
    | Conversations
    | History
    | MarkedRead
    | Removed
    | SentCopy
    | ReadMark
    | MessagesGone
)
Event = ClientEvent | ServerEvent | ConnectionClosed

__all__ = [
    "NEED_DATA",
    "Accounts",
    "Ack",
    "ClientEvent",
    "ConnectionClosed",
    "Conversations",
    "DeleteAccount",
    "DeleteMessages",
    "Deleted",
    "Deliver",
    "Error",
    "Event",
    "Hello",
    "History",
    "ListAccounts",
    "ListConversations",
    "LoggedIn",
    "LoggedOut",
    "Login",
    "Logout",
    "MarkRead",
    "MarkedRead",
    "MessagesGone",
    "NeedData",
    "Ping",
    "Pong",
    "ReadHistory",
    "ReadMark",
    "Removed",
    "Send",
    "Sent",
    "SentCopy",
    "ServerEvent",
    "SignedUp",
    "Signup",
    "Welcome",
]
