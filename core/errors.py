"""The domain's errors. They carry no transport knowledge: each transport maps them to its own
wire codes in exactly one place (the custom codec's error table, the gRPC servicer's
status mapping)."""

from __future__ import annotations

import math


class ChatError(Exception):
    """Base of every error a client can cause. ``str(err)`` is a sentence for a person."""


class InvalidArgument(ChatError):
    """A field is malformed: a bad username, an empty body, invalid glob, duplicate recipients."""


class LimitExceeded(InvalidArgument):
    """A field is well-formed but larger than a limit in core.limits (body, recipients, ...)."""


class UsernameTaken(ChatError):
    """Signup with a name that already has an account."""


class AuthFailed(ChatError):
    """Login with a wrong password *or* an unknown user: one error for both (Rule 3)."""

    def __init__(self, message: str = "wrong username or password") -> None:
        super().__init__(message)


class ResumeRefused(AuthFailed):
    """Resume with a token that is unknown, expired or revoked (logout, deletion, password
    change). Like a failed login it ends the session (Rule 4)."""

    def __init__(
        self,
        message: str = "that session can no longer be resumed (expired, logged out or the"
        " password changed); log in with your password",
    ) -> None:
        super().__init__(message)


class WeakPassword(InvalidArgument):
    """A new password (signup, change password) that is too short or too common
    (core.password_policy). Existing passwords still log in."""


class NotLoggedIn(ChatError):
    """A request that needs a session came from an anonymous or ended one."""

    def __init__(self, message: str = "log in first") -> None:
        super().__init__(message)


class AlreadyLoggedIn(ChatError):
    """Signup or login on a connection whose session is already logged in."""

    def __init__(self, message: str = "this session is already logged in; log out first") -> None:
        super().__init__(message)


class Forbidden(ChatError):
    """The caller asked to act on another user's account (Rule 14)."""


class SessionClosed(ChatError):
    """The session was ended by the server (account deleted, too slow, shutdown)."""


class Overloaded(ChatError):
    """The server refused to start work it has no room for right now: its event loop runs
    behind (an account search, core.pacing), or a transport's own caps (gRPC's load, a full
    server). Nothing was done, and the same request may pass later: try again in a moment.
    Each transport maps it to its own busy answer, in its one error table."""


class TooManyAttempts(ChatError):
    """Login refused at once, without checking the password, because the account has had too
    many attempts (core.throttle). Says the same for every name, existing or not (Rule 3).
    ``retry_after``: seconds after which trying again may be answered (at least 1)."""

    def __init__(self, message: str = "", retry_after: float = 1.0) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            message
            or "too many login attempts for this account right now;"
            f" try again in {self.retry_after} s"
        )


__all__ = [
    "AlreadyLoggedIn",
    "AuthFailed",
    "ChatError",
    "Forbidden",
    "InvalidArgument",
    "LimitExceeded",
    "NotLoggedIn",
    "Overloaded",
    "ResumeRefused",
    "SessionClosed",
    "TooManyAttempts",
    "UsernameTaken",
    "WeakPassword",
]
