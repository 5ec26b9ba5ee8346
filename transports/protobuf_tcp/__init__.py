"""protobuf-tcp: chat.proto's messages in the custom protocol's varint frames on raw TCP.

The second rung of the transport ladder (DESIGN.md): everything is the custom transport's (its
asyncio drivers, framing, request ids, pushes on the same connection, session rules) except the
frame bodies, which are protobuf messages (``_bodies``, PROTOCOL.md beside this file). So the
step from ``custom`` to ``protobuf-tcp`` in the bench has one cause: the body encoding.

    server = await start_server(service, "127.0.0.1", 0)   # server.address == (host, port)
    client = open_client(server.address)                    # a core.ChatClient
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transports import custom
from transports._guard import Guard
from transports._tls import ClientTls, ServerTls
from transports.protobuf_tcp._bodies import MAGIC, MESSAGE_OF
from transports.protobuf_tcp._bodies_v2 import MESSAGE_OF_V2
from transports.protobuf_tcp._bodies_v3 import MESSAGE_OF_V3
from transports.protobuf_tcp._codec import Connection, Phase, Role

if TYPE_CHECKING:
    from core.client import ChatClient
    from core.service import ChatService


async def start_server(
    service: ChatService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    guard: Guard | None = None,
    tls: ServerTls | None = None,
) -> custom.CustomServer:
    """Listen on (host, port) (port 0: any) and serve ``service`` over protobuf-tcp
    (over TLS with ``tls``)."""
    return await custom.start_server(service, host, port, codec=Connection, guard=guard, tls=tls)


def open_client(
    address: tuple[str, int], *, auto_ack: bool = True, tls: ClientTls | None = None
) -> ChatClient:
    """A ChatClient for a protobuf-tcp server at (host, port); call connect() or use
    ``async with``. ``tls``: speak TLS, trusting what it names."""
    return custom.open_client(address, auto_ack=auto_ack, codec=Connection, tls=tls)


__all__ = [
    "MAGIC",
    "MESSAGE_OF",
    "MESSAGE_OF_V2",
    "MESSAGE_OF_V3",
    "Connection",
    "Phase",
    "Role",
    "open_client",
    "start_server",
]
