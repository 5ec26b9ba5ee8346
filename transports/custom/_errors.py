"""The one translation between the chat domain and the custom protocol's error codes.

``WIRE_ERRORS`` is read in both directions: the server turns a ``core.errors`` exception (or
the ``CloseReason`` of a session the service ended) into a code, and the client turns the code
back into the same exception class, so a caller of ChatClient sees identical exceptions
whichever transport it uses (``error_for_local`` likewise for a request the client cannot even
encode). Nothing else in the transport names an error class.
"""

from __future__ import annotations

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
from transports.custom._wire import ErrorCode, LocalProtocolError

WIRE_ERRORS: tuple[tuple[ErrorCode, type[ChatError] | CloseReason], ...] = (
    # request level: the reply to one request
    (ErrorCode.INVALID_ARGUMENT, InvalidArgument),
    (ErrorCode.LIMIT_EXCEEDED, LimitExceeded),
    (ErrorCode.USERNAME_TAKEN, UsernameTaken),
    (ErrorCode.AUTH_FAILED, AuthFailed),
    (ErrorCode.NOT_LOGGED_IN, NotLoggedIn),
    (ErrorCode.ALREADY_LOGGED_IN, AlreadyLoggedIn),
    (ErrorCode.FORBIDDEN, Forbidden),
    (ErrorCode.SESSION_CLOSED, SessionClosed),
    (ErrorCode.TOO_MANY_ATTEMPTS, TooManyAttempts),
    (ErrorCode.RESUME_REFUSED, ResumeRefused),  # version 3
    (ErrorCode.WEAK_PASSWORD, WeakPassword),  # version 3
    (ErrorCode.OVERLOADED, Overloaded),  # version 4
    # session end: pushed with request id 0, then the server closes
    (ErrorCode.ACCOUNT_DELETED, CloseReason.ACCOUNT_DELETED),
    (ErrorCode.SLOW_CONSUMER, CloseReason.SLOW_CONSUMER),
    (ErrorCode.SHUTDOWN, CloseReason.SHUTDOWN),
    (ErrorCode.PASSWORD_CHANGED, CloseReason.PASSWORD_CHANGED),  # sent to every version
)
#: Request-level codes a connection of an older version does not know: it gets the code of
#: the error's base class instead (WeakPassword -> INVALID_ARGUMENT), or the code ``SENT_AS``
#: names, so an old client sees exactly the codes of its version (PROTOCOL.md section 5).
SINCE_VERSION = {
    ErrorCode.RESUME_REFUSED: 3,
    ErrorCode.WEAK_PASSWORD: 3,
    ErrorCode.OVERLOADED: 4,
}
#: What a connection older than ``SINCE_VERSION`` of a code gets instead, when the error's base
#: class has no code (Overloaded is a plain ChatError). Overloaded (a search while the loop runs
#: behind, core.pacing) was a request-level LIMIT_EXCEEDED with its sentence before version 4,
#: and stays so for versions 1-3, byte for byte; the session goes on either way (SERVER_BUSY
#: would end the connection, PROTOCOL.md section 10).
SENT_AS: dict[ErrorCode, ErrorCode] = {ErrorCode.OVERLOADED: ErrorCode.LIMIT_EXCEEDED}

_CODE_OF_ERROR = {e: code for code, e in WIRE_ERRORS if isinstance(e, type)}
_ERROR_OF_CODE = {code: e for code, e in WIRE_ERRORS if isinstance(e, type)}
_CODE_OF_REASON = {r: code for code, r in WIRE_ERRORS if isinstance(r, CloseReason)}
_REASON_OF_CODE = {code: r for code, r in WIRE_ERRORS if isinstance(r, CloseReason)}


def code_for_error(exc: BaseException, version: int | None = None) -> ErrorCode:
    """The code of a domain error; the most specific class wins (LimitExceeded before
    InvalidArgument) among the codes of ``version`` (None: the latest), a code too new for it
    standing in as ``SENT_AS`` says. Anything that is not a ChatError is a bug of ours:
    INTERNAL."""
    for cls in type(exc).__mro__:
        code = _CODE_OF_ERROR.get(cls)
        if code is None:
            continue
        if version is None or SINCE_VERSION.get(code, 1) <= version:
            return code
        if code in SENT_AS:
            return SENT_AS[code]
    return ErrorCode.INTERNAL


def error_for_code(code: int, message: str) -> Exception:
    """The exception a client raises for an ERROR reply.

    Request-level codes become their core.errors class (an unknown one a plain ChatError);
    codes after which the server closes become ConnectionError.
    """
    cls = _ERROR_OF_CODE.get(code)  # type: ignore[call-overload]
    if cls is not None:
        return cls(message) if message else cls()
    if 0x10 <= code <= 0x1F:
        return ChatError(message or f"error 0x{code:02X}")
    return ConnectionError(f"server closed the connection: {describe(code)}: {message}")


def error_for_local(exc: LocalProtocolError) -> ChatError:
    """What the server would have said about a request the client cannot even encode."""
    if exc.code is ErrorCode.FRAME_TOO_LARGE:
        return LimitExceeded(f"the message does not fit in one frame: {exc}")
    if exc.code is ErrorCode.UNKNOWN_OPCODE:  # e.g. history on a version 1 connection
        return ChatError(str(exc))
    return InvalidArgument(str(exc))


def code_for_close(reason: CloseReason | None) -> ErrorCode | None:
    """The session-end code the server pushes when the service ended a session, or None when
    the end needs no notice (the client logged out, its login failed, it disconnected)."""
    return _CODE_OF_REASON.get(reason) if reason is not None else None


def reason_for_code(code: int) -> CloseReason | None:
    """The CloseReason a session-end code stands for, or None."""
    return _REASON_OF_CODE.get(code)  # type: ignore[call-overload]


def describe(code: int) -> str:
    """``MALFORMED`` for a known code, ``0x42`` otherwise."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:02X}"


__all__ = [
    "SENT_AS",
    "SINCE_VERSION",
    "WIRE_ERRORS",
    "code_for_close",
    "code_for_error",
    "describe",
    "error_for_code",
    "error_for_local",
    "reason_for_code",
]
