"""The custom binary protocol: PROTOCOL.md (the spec), a sans-IO codec, asyncio drivers.

``start_server`` and ``open_client`` are what the transport registry uses; the codec
(``Connection``, the events, the wire constants) is public for tools, tests and the bench.
"""

from transports.custom._client import CustomClient, open_client
from transports.custom._codec import HANDSHAKE, OPCODE_OF, Connection, Kind, Phase, Role
from transports.custom._events import (
    NEED_DATA,
    Accounts,
    Ack,
    ConnectionClosed,
    DeleteAccount,
    Deleted,
    Deliver,
    Error,
    Hello,
    ListAccounts,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Ping,
    Pong,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._server import CustomServer, start_server
from transports.custom._wire import ErrorCode, LocalProtocolError, Opcode, ProtocolError

__all__ = [
    "HANDSHAKE",
    "NEED_DATA",
    "OPCODE_OF",
    "Accounts",
    "Ack",
    "Connection",
    "ConnectionClosed",
    "CustomClient",
    "CustomServer",
    "DeleteAccount",
    "Deleted",
    "Deliver",
    "Error",
    "ErrorCode",
    "Hello",
    "Kind",
    "ListAccounts",
    "LocalProtocolError",
    "LoggedIn",
    "LoggedOut",
    "Login",
    "Logout",
    "Opcode",
    "Phase",
    "Ping",
    "Pong",
    "ProtocolError",
    "Role",
    "Send",
    "Sent",
    "SignedUp",
    "Signup",
    "Welcome",
    "open_client",
    "start_server",
]
