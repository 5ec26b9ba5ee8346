"""Domain errors <-> gRPC statuses: the one table, used by the servicer and the client.

Each row of REASONS is one ErrorReason of chat.proto: the name sent as ``wirechat-error``
trailing metadata, the status code it travels with, the core error the client raises for it,
and, for the reasons that mean "this session has ended", the core CloseReason. Several
reasons share a code (UNAUTHENTICATED covers a failed login, a missing token and an ended
session), so the client decides by the reason and falls back on the code only when the entry
is missing (a status produced by gRPC itself, or by a proxy).

A SessionClosed error has no single reason: the row is chosen by the session's close reason,
so the client learns *why* its session ended (deleted, too slow, shutdown, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import grpc

from core.errors import (
    AlreadyLoggedIn,
    AuthFailed,
    ChatError,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    Overloaded,
    ResumeRefused,
    SessionClosed,
    TooManyAttempts,
    UsernameTaken,
    WeakPassword,
)
from core.types import CloseReason
from transports.grpc._wire import ERROR_KEY

if TYPE_CHECKING:
    from core.session import Session

Code = grpc.StatusCode


class AlreadySubscribed(ChatError):
    """A second Subscribe on a session whose first stream is still open (gRPC only)."""

    def __init__(self, message: str = "this session already has a Subscribe stream") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Reason:
    name: str  # an ErrorReason value name in chat.proto
    code: grpc.StatusCode
    error: type[ChatError]
    ends: CloseReason | None = None  # set when the reason means the session has ended
    trailing_metadata: tuple[tuple[str, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trailing_metadata", ((ERROR_KEY, self.name),))


REASONS: tuple[Reason, ...] = (
    Reason("USERNAME_TAKEN", Code.ALREADY_EXISTS, UsernameTaken),
    Reason("AUTH_FAILED", Code.UNAUTHENTICATED, AuthFailed),
    Reason("NOT_LOGGED_IN", Code.UNAUTHENTICATED, NotLoggedIn),
    Reason("ALREADY_LOGGED_IN", Code.FAILED_PRECONDITION, AlreadyLoggedIn),
    Reason("FORBIDDEN", Code.PERMISSION_DENIED, Forbidden),
    Reason("INVALID_ARGUMENT", Code.INVALID_ARGUMENT, InvalidArgument),
    # Not RESOURCE_EXHAUSTED: that code invites a retry, and the same request never passes.
    Reason("LIMIT_EXCEEDED", Code.INVALID_ARGUMENT, LimitExceeded),
    Reason("ALREADY_SUBSCRIBED", Code.FAILED_PRECONDITION, AlreadySubscribed),
    # The session has ended. An unknown token is reported as a closed session: it either was
    # never issued or belonged to a session that ended (or a server that restarted).
    Reason("UNKNOWN_SESSION", Code.UNAUTHENTICATED, SessionClosed, CloseReason.DISCONNECTED),
    Reason("LOGIN_FAILED", Code.UNAUTHENTICATED, SessionClosed, CloseReason.AUTH_FAILED),
    Reason("ACCOUNT_DELETED", Code.UNAUTHENTICATED, SessionClosed, CloseReason.ACCOUNT_DELETED),
    # UNAUTHENTICATED like every other ended session, not RESOURCE_EXHAUSTED: that code
    # invites a retry, and no call with this token can succeed again (log in afresh).
    Reason("SLOW_CONSUMER", Code.UNAUTHENTICATED, SessionClosed, CloseReason.SLOW_CONSUMER),
    Reason("SHUTDOWN", Code.UNAVAILABLE, SessionClosed, CloseReason.SHUTDOWN),
    Reason("DISCONNECTED", Code.UNAUTHENTICATED, SessionClosed, CloseReason.DISCONNECTED),
    # RESOURCE_EXHAUSTED for these two alone: they invite a retry, and a later one may pass.
    # OVERLOADED: the core's refusal (a search while the loop runs behind, core.pacing) and
    # the transports' own (_limits: load, a full server) alike.
    Reason("OVERLOADED", Code.RESOURCE_EXHAUSTED, Overloaded),
    Reason("TOO_MANY_ATTEMPTS", Code.RESOURCE_EXHAUSTED, TooManyAttempts),
    # Issue 13. A refused Resume ends the session as a failed Login does (its later calls get
    # LOGIN_FAILED); the reason itself says "log in with the password", not "wrong password".
    Reason("RESUME_REFUSED", Code.UNAUTHENTICATED, ResumeRefused),
    Reason("WEAK_PASSWORD", Code.INVALID_ARGUMENT, WeakPassword),
    Reason("PASSWORD_CHANGED", Code.UNAUTHENTICATED, SessionClosed, CloseReason.PASSWORD_CHANGED),
)

BY_NAME: dict[str, Reason] = {reason.name: reason for reason in REASONS}
UNKNOWN_SESSION = BY_NAME["UNKNOWN_SESSION"]
_BY_ERROR: dict[type[ChatError], Reason] = {
    reason.error: reason for reason in REASONS if reason.error is not SessionClosed
}
_BY_CLOSE: dict[CloseReason, Reason] = {
    reason.ends: reason
    for reason in REASONS
    if reason.ends is not None and reason is not UNKNOWN_SESSION
}
# For statuses without our metadata: what the code alone most likely means.
_BY_CODE: dict[grpc.StatusCode, Reason] = {
    Code.ALREADY_EXISTS: BY_NAME["USERNAME_TAKEN"],
    Code.UNAUTHENTICATED: BY_NAME["NOT_LOGGED_IN"],
    Code.FAILED_PRECONDITION: BY_NAME["ALREADY_LOGGED_IN"],
    Code.PERMISSION_DENIED: BY_NAME["FORBIDDEN"],
    Code.INVALID_ARGUMENT: BY_NAME["INVALID_ARGUMENT"],
    # gRPC's own refusal of a message over the size limit on either side (our own
    # RESOURCE_EXHAUSTED statuses always carry their reason).
    Code.RESOURCE_EXHAUSTED: BY_NAME["LIMIT_EXCEEDED"],
}


# -- server side ----------------------------------------------------------------------------
def reason_for(exc: ChatError, session: Session | None) -> Reason:
    """The row for a domain error raised while serving ``session`` (None: no session found)."""
    if isinstance(exc, SessionClosed):
        if session is None or session.close_reason is None:
            return UNKNOWN_SESSION
        return _BY_CLOSE.get(session.close_reason, _BY_CLOSE[CloseReason.DISCONNECTED])
    for cls in type(exc).__mro__:
        reason = _BY_ERROR.get(cls)
        if reason is not None:
            return reason
    raise LookupError(f"no gRPC status for {type(exc).__name__}; add it to REASONS")


def closed_text(session: Session) -> str:
    """The same sentence core's SessionClosed carries."""
    reason = session.close_reason
    return f"session ended: {reason.value}" if reason else "session ended"


async def abort(
    context: grpc.aio.ServicerContext, exc: ChatError, session: Session | None
) -> NoReturn:
    """End the rpc with the status for ``exc``: the one place errors become statuses."""
    await abort_with(context, reason_for(exc, session), str(exc))


async def abort_with(context: grpc.aio.ServicerContext, reason: Reason, details: str) -> NoReturn:
    """End the rpc with ``reason``'s code and metadata (raises grpc's AbortError)."""
    await context.abort(reason.code, details, reason.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


# -- client side ----------------------------------------------------------------------------
def reason_of(err: grpc.aio.AioRpcError, *, by_code: bool = True) -> Reason | None:
    """The row a failed call's status stands for, or None if it is no domain error.

    Without a ``wirechat-error`` entry the code alone decides, unless ``by_code`` is False.
    """
    metadata: Iterable[tuple[str, str | bytes]] = err.trailing_metadata() or ()
    for key, value in metadata:
        if key == ERROR_KEY:
            reason = BY_NAME.get(value if isinstance(value, str) else value.decode("ascii"))
            if reason is not None:
                return reason
    return _BY_CODE.get(err.code()) if by_code else None


def error_from(err: grpc.aio.AioRpcError, reason: Reason | None) -> Exception:
    """The exception a ChatClient raises for a failed call.

    Domain errors become core.errors classes; anything else is a transport failure, raised as
    TimeoutError (deadline) or ConnectionError (server gone, cancelled, internal error).
    """
    details = err.details() or ""
    if reason is not None:
        return reason.error(details or reason.name.replace("_", " ").lower())
    code = err.code()
    if code is Code.DEADLINE_EXCEEDED:
        return TimeoutError(f"gRPC deadline exceeded: {details}")
    return ConnectionError(f"gRPC {code.name}: {details}")


__all__ = [
    "BY_NAME",
    "REASONS",
    "AlreadySubscribed",
    "Overloaded",
    "Reason",
    "abort",
    "abort_with",
    "closed_text",
    "error_from",
    "reason_for",
    "reason_of",
]
