"""Plain values that cross the seams between core, transports and clients."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as its recipient sees it."""

    message_id: int  # server-assigned, increasing across the whole server
    sender: str
    body: str
    sent_at_ms: int  # server clock, milliseconds since the Unix epoch
    # Rules 19-21 (added last, with defaults: transports build Delivery positionally).
    #: The conversation's other participants as this user sees it, sorted: the sender (unless
    #: it is you) and the other recipients. Reply to all = send to these (or to yourself if
    #: empty). A 1:1 message from bob carries ("bob",). A live push names live accounts only;
    #: a message read later (backlog, history) may name an account deleted since, whose name
    #: may now be someone else's: HistoryPage/Conversation.deleted_participants say which.
    participants: tuple[str, ...] = ()
    #: The sender's account was deleted: show "<sender> (deleted account)"; the name may
    #: belong to a new account now, which did not send this (Rules 19, 25).
    sender_deleted: bool = False
    conversation_id: int = 0  # 0: not known (a transport that does not carry it yet)


@dataclass(frozen=True, slots=True)
class LoginResult:
    username: str
    pending: int  # messages waiting at login; they are pushed to the session next (Rule 12)
    #: A secret that logs this session's account in again without the password (Resume),
    #: until it expires or is revoked (logout, deletion, password change). "": none issued
    #: (a transport or protocol version that does not carry it).
    resume_token: str = ""


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    """The reply to ChangePassword: this session's new resume token, and how many of the
    user's other live sessions were ended (0 when they were asked to stay)."""

    resume_token: str
    sessions_ended: int


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: int
    sent_at_ms: int
    unknown_recipients: tuple[str, ...] = ()  # ignored names, nothing was stored for them
    conversation_id: int = 0  # the conversation the message went to (0: nothing stored)


@dataclass(frozen=True, slots=True)
class AccountPage:
    usernames: tuple[str, ...]
    more: bool  # True if a next page exists: ask again with after=usernames[-1]


class CloseReason(enum.Enum):
    """Why the server ended a session; transports tell the client before closing."""

    LOGGED_OUT = "logged out"
    AUTH_FAILED = "signup or login failed"
    ACCOUNT_DELETED = "the account was deleted"
    SLOW_CONSUMER = "the client read too slowly; pending messages are kept"
    SHUTDOWN = "the server is shutting down"
    DISCONNECTED = "the connection closed"
    PASSWORD_CHANGED = "the password was changed in another session"


class DeletedSenderPolicy(enum.Enum):
    """What happens to a deleted user's undelivered messages to others (Rule 15)."""

    PURGE = "purge"
    KEEP = "keep"


# -- history and identity (Rules 19-25) -------------------------------------------------------
# Delivery's later fields (participants, sender_deleted, conversation_id) are defined on the
# class above, after the four every transport passes positionally.


@dataclass(frozen=True, slots=True)
class SentCopy:
    """Rule 24: a message this user sent from another session ("sent by you").

    ``message.sender`` is the user; ``message.participants`` are the recipients it was
    stored for. Pushed to the sender's *other* live sessions; never acked, never pending.
    """

    message: Delivery


@dataclass(frozen=True, slots=True)
class ReadMarker:
    """Rule 22: another session of this user marked a conversation read up to an id."""

    conversation_id: int
    up_to_id: int  # every message with id <= this one is read
    unread: int  # the conversation's unread count after the mark


@dataclass(frozen=True, slots=True)
class MessagesDeleted:
    """Rule 23: these message ids are gone from this user's history (forget them)."""

    message_ids: tuple[int, ...]


#: What a session pushes besides deliveries, in order with them (``Session.events()``).
Notice = SentCopy | ReadMarker | MessagesDeleted
SessionEvent = Delivery | SentCopy | ReadMarker | MessagesDeleted


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation as one user sees it (Rule 21).

    ``participants``: the *other* participants' names, sorted (empty: notes to yourself).
    ``deleted_participants``: those of them whose account was deleted since; the name may
    now belong to someone else, who is not in this conversation (Rule 19).
    """

    conversation_id: int
    participants: tuple[str, ...]
    last_message: Delivery
    unread: int  # messages from others with id > read_up_to
    read_up_to: int
    deleted_participants: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConversationPage:
    """Conversations, most recent activity first. ``more``: ask again with
    ``before_id=conversations[-1].last_message.message_id``."""

    conversations: tuple[Conversation, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Messages of one conversation, newest first. ``more``: ask again with
    ``before_id=messages[-1].message_id``. ``conversation_id`` 0: no message yet."""

    conversation_id: int
    participants: tuple[str, ...]
    messages: tuple[Delivery, ...]
    more: bool
    deleted_participants: tuple[str, ...] = ()
    read_up_to: int = 0


@dataclass(frozen=True, slots=True)
class Retention:
    """An optional bound on history (Rule 20). ``None``: no bound of that kind.

    Only history is pruned: a message still pending (unacked) for a user is never dropped
    from that user's history, so retention never loses an undelivered message (Rule 16).
    """

    max_messages_per_user: int | None = None
    max_age_days: float | None = None

    def __post_init__(self) -> None:
        if self.max_messages_per_user is not None and self.max_messages_per_user < 1:
            raise ValueError("a retention limit keeps at least 1 message per user")
        if self.max_age_days is not None and not self.max_age_days > 0:
            raise ValueError("a retention age is a positive number of days")

    @property
    def enabled(self) -> bool:
        return self.max_messages_per_user is not None or self.max_age_days is not None
