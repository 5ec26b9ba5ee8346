"""The requests a client sends, as values: the vocabulary between ``ChatClient`` and a
transport's client side (``core.client.ClientTransport``).

Each request type names the result its reply carries (``Request[R]``), so
``await transport.request(Send(...))`` is typed ``SendResult``. A transport maps each type to
its own wire message in one place and back; the rules about what a reply does to the client
(log in, end the session, ...) are ``ChatClient``'s, not the transport's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from core.types import (
    AccountPage,
    ConversationPage,
    HistoryPage,
    LoginResult,
    PasswordChanged,
    ReadMarker,
    SendResult,
)

R = TypeVar("R", covariant=True)


# Requests are plain (not frozen) slotted dataclasses: a frozen dataclass's __init__ goes through
# object.__setattr__ per field, which measured 2.3x slower, on the hot path of every call. They
# are values all the same: nothing mutates a request after building it.


class Request(Generic[R]):
    """Base of every request. ``needs_session``: the service refuses it before a login."""

    __slots__ = ()
    needs_session: ClassVar[bool] = True
    #: A reply to this request changes the session (log in or out, end it).
    changes_session: ClassVar[bool] = False


@dataclass(slots=True)
class Signup(Request[LoginResult]):
    username: str
    password: str
    needs_session: ClassVar[bool] = False
    changes_session: ClassVar[bool] = True


@dataclass(slots=True)
class Login(Request[LoginResult]):
    username: str
    password: str
    needs_session: ClassVar[bool] = False
    changes_session: ClassVar[bool] = True


@dataclass(slots=True)
class Logout(Request[None]):
    changes_session: ClassVar[bool] = True


@dataclass(slots=True)
class ListAccounts(Request[AccountPage]):
    pattern: str = "*"
    after: str = ""
    limit: int = 0  # 0: the server's default page size


@dataclass(slots=True)
class Send(Request[SendResult]):
    recipients: tuple[str, ...]
    body: str


@dataclass(slots=True)
class Ack(Request[None]):
    """Fire-and-forget on transports whose protocol has no success reply for it."""

    message_ids: tuple[int, ...]


@dataclass(slots=True)
class DeleteAccount(Request[None]):
    """Delete the logged-in account: its own name, and its password again (issue 13)."""

    username: str
    password: str = ""  # "": refused (AuthFailed), as an old client that sends none
    changes_session: ClassVar[bool] = True


# -- account security (issue 13) ------------------------------------------------------------


@dataclass(slots=True)
class Resume(Request[LoginResult]):
    """Log in again with the resume token of an earlier login, without the password."""

    token: str
    needs_session: ClassVar[bool] = False
    changes_session: ClassVar[bool] = True


@dataclass(slots=True)
class ChangePassword(Request[PasswordChanged]):
    """Change the logged-in account's password; by default end its other sessions and
    revoke every resume token. This session stays, with a new token."""

    old_password: str
    new_password: str
    end_other_sessions: bool = True
    changes_session: ClassVar[bool] = True  # the reply replaces the client's resume token


# -- history and identity (Rules 19-25) -----------------------------------------------------


@dataclass(slots=True)
class ListConversations(Request[ConversationPage]):
    """The caller's conversations, most recent first; page on with before_id."""

    before_id: int = 0  # 0: from the most recent
    limit: int = 0  # 0: the server's default page size


@dataclass(slots=True)
class ReadHistory(Request[HistoryPage]):
    """One conversation, newest first: by its id, or by its other participants' names
    (not both; neither = notes to yourself)."""

    participants: tuple[str, ...] = ()
    before_id: int = 0  # 0: from the newest
    limit: int = 0  # 0: the server's default page size
    conversation_id: int = 0


@dataclass(slots=True)
class MarkRead(Request[ReadMarker]):
    conversation_id: int
    up_to_id: int


@dataclass(slots=True)
class DeleteMessages(Request[None]):
    message_ids: tuple[int, ...]
    for_everyone: bool = False  # only the sender may; else from the caller's history only


__all__ = [
    "Ack",
    "ChangePassword",
    "DeleteAccount",
    "DeleteMessages",
    "ListAccounts",
    "ListConversations",
    "Login",
    "Logout",
    "MarkRead",
    "ReadHistory",
    "Request",
    "Resume",
    "Send",
    "Signup",
]
