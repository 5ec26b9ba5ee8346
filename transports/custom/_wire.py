"""Wire constants of the custom protocol: opcodes, error codes, limits, varints, errors.

Everything here is a number PROTOCOL.md fixes; nothing here knows about events, sessions or
sockets. The events the rest of the code sees live in ``_events``; ``_codec`` translates.
"""

from __future__ import annotations

import enum

from core import limits

MAGIC = b"WC"  # 0x57 0x43, the first two body bytes of HELLO
PROTOCOL_VERSION = 1  # the base version: what HELLO, WELCOME and ERROR look like in every one
#: Versions this implementation speaks, lowest to highest (PROTOCOL.md section 5). Version 2
#: adds history, read state, message deletion and their pushes (sections 6.10-6.13, 7.11-7.17)
#: and a longer DELIVER; a connection that negotiated 1 sees exactly version 1. Version 3 adds
#: account security (sections 6.14-6.15, 7.18): resume tokens in SIGNED_UP/LOGGED_IN, RESUME,
#: CHANGE_PASSWORD, and the password in DELETE_ACCOUNT. Version 4 is version 3 plus one
#: request-level error code, OVERLOADED (busy: the same request may pass in a moment), which an
#: older connection gets as LIMIT_EXCEEDED with its sentence, as before (``_errors``).
SUPPORTED_VERSIONS = (1, 2, 3, 4)
LATEST_VERSION = SUPPORTED_VERSIONS[-1]

# -- limits -------------------------------------------------------------------------------
#: Largest frame (bytes after the length field) a server accepts. The biggest legitimate
#: request is a SEND of a 64 KiB body to 256 recipients with 32-byte names:
#: 1 (opcode) + 5 (request id) + 2 (count) + 256 * (1 + 32) + 65536 = 73 992 bytes.
#: 96 KiB leaves room for non-ASCII names while still letting a server refuse a hostile
#: length before buffering anything (a frame is read whole before it is decoded).
#: For scale: HTTP/2's default SETTINGS_MAX_FRAME_SIZE is 16 KiB, gRPC's default message 4 MiB.
MAX_FRAME = 96 * 1024
#: A server never sends a frame longer than MAX_FRAME + S2C_SLACK: a SENT reply repeats the
#: unknown recipient names of its SEND (at most the whole SEND minus a >= 1-byte body) and adds
#: a message id and a timestamp (at most 10 bytes each), and in version 2 a conversation id
#: (10 more), so it can exceed its request by 29. A page of history or conversations is cut
#: to fit (PROTOCOL.md section 7.12); any other frame is far below MAX_FRAME.
S2C_SLACK = 64
MAX_BODY = limits.MAX_BODY_BYTES
MAX_RECIPIENTS = limits.MAX_RECIPIENTS
MAX_ACK_IDS = limits.MAX_ACK_IDS
#: Ids per DELETE_MESSAGES, and per MESSAGES_GONE push (a longer list of gone ids, e.g. after
#: an account deletion purged many messages, is pushed as several frames).
MAX_DELETE_IDS = limits.MAX_DELETE_IDS
#: Seconds a server waits for a complete HELLO before it closes the connection (slowloris).
HANDSHAKE_TIMEOUT = 10.0

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
VARINT32_BYTES = 5  # ceil(32 / 7)
VARINT64_BYTES = 10  # ceil(64 / 7)


class Opcode(enum.IntEnum):
    """The byte after the length field. Client-to-server below 0x80, server-to-client above."""

    HELLO = 0x01
    SIGNUP = 0x02
    LOGIN = 0x03
    LOGOUT = 0x04
    LIST_ACCOUNTS = 0x05
    SEND = 0x06
    ACK = 0x07
    DELETE_ACCOUNT = 0x08
    PING = 0x09
    # version 2
    LIST_CONVERSATIONS = 0x0A
    READ_HISTORY = 0x0B
    MARK_READ = 0x0C
    DELETE_MESSAGES = 0x0D
    # version 3
    RESUME = 0x0E
    CHANGE_PASSWORD = 0x0F

    WELCOME = 0x81
    SIGNED_UP = 0x82
    LOGGED_IN = 0x83
    LOGGED_OUT = 0x84
    ACCOUNTS = 0x85
    SENT = 0x86
    DELETED = 0x88
    PONG = 0x89
    # version 2
    CONVERSATIONS = 0x8A
    HISTORY = 0x8B
    MARKED_READ = 0x8C
    REMOVED = 0x8D
    # version 3
    PASSWORD_CHANGED = 0x8F

    DELIVER = 0xA0  # (its version 2 layout carries conversation, participants, a flags byte)
    # version 2 pushes
    SENT_COPY = 0xA1
    READ_MARK = 0xA2
    MESSAGES_GONE = 0xA3
    ERROR = 0xFF


class ErrorCode(enum.IntEnum):
    """The code byte of an ERROR frame. The range tells what follows (see ``closes``)."""

    # 0x01-0x0F connection level: the stream can no longer be trusted; the server closes.
    MALFORMED = 0x01
    FRAME_TOO_LARGE = 0x02
    UNSUPPORTED_VERSION = 0x03
    UNKNOWN_OPCODE = 0x04
    BAD_HANDSHAKE = 0x05
    INVALID_UTF8 = 0x06
    # 0x10-0x1F request level: the answer to one request; the connection stays open unless
    # the session rules say otherwise (a failed SIGNUP/LOGIN ends the session).
    INVALID_ARGUMENT = 0x10
    LIMIT_EXCEEDED = 0x11
    USERNAME_TAKEN = 0x12
    AUTH_FAILED = 0x13
    NOT_LOGGED_IN = 0x14
    ALREADY_LOGGED_IN = 0x15
    FORBIDDEN = 0x16
    SESSION_CLOSED = 0x17
    TOO_MANY_ATTEMPTS = 0x18  # LOGIN refused at once: too many attempts on the account
    RESUME_REFUSED = 0x19  # version 3: RESUME with a token unknown, expired or revoked
    WEAK_PASSWORD = 0x1A  # version 3: a new password too short or too common
    OVERLOADED = 0x1B  # version 4: refused for load alone, nothing done; try again in a moment
    # 0x20-0xFF session end: pushed with request id 0, then the server closes.
    ACCOUNT_DELETED = 0x20
    SLOW_CONSUMER = 0x21
    SHUTDOWN = 0x22
    # Server limits (docs/LIMITS.md): in the session-end range, so every client closes.
    SERVER_BUSY = 0x23  # no room for this connection (connection caps, byte budgets)
    TIMED_OUT = 0x24  # no login within the idle timeout; a frame left incomplete too long
    PASSWORD_CHANGED = 0x25  # the password was changed in another session (version 3)
    INTERNAL = 0x7F


def closes(code: int) -> bool:
    """True if an ERROR with this code is always followed by the server closing.

    Decided by range, so a client also classifies codes added by later versions.
    """
    return not 0x10 <= code <= 0x1F


class ProtocolError(Exception):
    """The peer sent bytes that break PROTOCOL.md. The receiving side is unusable afterwards;
    a server answers with ``ERROR(code)`` on request id 0 and closes."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.name}, {self.message!r})"


class LocalProtocolError(ValueError):
    """We were asked to send something PROTOCOL.md cannot express (a bug or bad input of ours).

    ``code`` names the rule that would have been broken, e.g. FRAME_TOO_LARGE.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def put_varint(out: bytearray, value: int) -> None:
    """Append ``value`` as a minimal unsigned LEB128 varint (the caller checks the range)."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint_size(value: int) -> int:
    """Bytes ``put_varint`` writes for ``value``."""
    return max(1, (value.bit_length() + 6) // 7)


__all__ = [
    "HANDSHAKE_TIMEOUT",
    "LATEST_VERSION",
    "MAGIC",
    "MAX_ACK_IDS",
    "MAX_BODY",
    "MAX_DELETE_IDS",
    "MAX_FRAME",
    "MAX_RECIPIENTS",
    "PROTOCOL_VERSION",
    "S2C_SLACK",
    "SUPPORTED_VERSIONS",
    "U32_MAX",
    "U64_MAX",
    "ErrorCode",
    "LocalProtocolError",
    "Opcode",
    "ProtocolError",
    "closes",
    "put_varint",
    "varint_size",
]
