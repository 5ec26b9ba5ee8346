"""The events of the custom protocol: what a codec user sends and receives.

One frozen, slotted dataclass per message of PROTOCOL.md, with plain Python values (``str``,
``int``, tuples). The opcode and the byte layout are the codec's business (``_codec``);
a request's ``request_id`` is the only wire detail that shows through, because the driver
needs it to pair a response with its request. HELLO, WELCOME, ACK and DELIVER always travel
with request id 0, so they carry no field for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from transports.custom._wire import PROTOCOL_VERSION


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


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


@dataclass(frozen=True, slots=True)
class LoggedIn:
    request_id: int
    pending: int


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


@dataclass(frozen=True, slots=True)
class Deleted:
    request_id: int


@dataclass(frozen=True, slots=True)
class Pong:
    request_id: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Deliver:
    message_id: int
    sent_at_ms: int
    sender: str
    body: str


@dataclass(frozen=True, slots=True)
class Error:
    """``code`` is an ErrorCode where known; a plain int for codes of later versions."""

    request_id: int
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side cleanly, on a frame boundary (``receive_data(b"")``)."""


ClientEvent = Hello | Signup | Login | Logout | ListAccounts | Send | Ack | DeleteAccount | Ping
ServerEvent = (
    Welcome | SignedUp | LoggedIn | LoggedOut | Accounts | Sent | Deleted | Pong | Deliver | Error
)
Event = ClientEvent | ServerEvent | ConnectionClosed

__all__ = [
    "NEED_DATA",
    "Accounts",
    "Ack",
    "ClientEvent",
    "ConnectionClosed",
    "DeleteAccount",
    "Deleted",
    "Deliver",
    "Error",
    "Event",
    "Hello",
    "ListAccounts",
    "LoggedIn",
    "LoggedOut",
    "Login",
    "Logout",
    "Ping",
    "Pong",
    "Send",
    "Sent",
    "ServerEvent",
    "SignedUp",
    "Signup",
    "Welcome",
]
