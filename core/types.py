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


@dataclass(frozen=True, slots=True)
class LoginResult:
    username: str
    pending: int  # messages waiting at login; they are pushed to the session next (Rule 12)


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: int
    sent_at_ms: int
    unknown_recipients: tuple[str, ...] = ()  # ignored names, nothing was stored for them


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


class DeletedSenderPolicy(enum.Enum):
    """What happens to a deleted user's undelivered messages to others (Rule 15)."""

    PURGE = "purge"
    KEEP = "keep"
