"""The websocket transport: RFC 6455 through the ``websockets`` library, JSON text messages,
one connection per session (CONTRACT.md is the wire contract).

``start_server`` and ``open_client`` are what the transport registry uses; the codec
(``_messages``) is public for tools, tests and the bench.
"""

from __future__ import annotations

from core.client import ChatClient
from transports._tls import ClientTls
from transports.websocket._client import WebSocketTransport
from transports.websocket._client_codec import encode_request
from transports.websocket._messages import (
    MAX_MESSAGE_BYTES,
    PATH,
    SUBPROTOCOL,
    SUBPROTOCOL_V1,
    SUBPROTOCOL_V2,
    SUBPROTOCOL_V2_2,
    Close,
    decode_request,
)
from transports.websocket._server import WebSocketServer, start_server


def open_client(
    address: tuple[str, int],
    *,
    auto_ack: bool = True,
    subprotocol: str = SUBPROTOCOL_V2_2,
    tls: ClientTls | None = None,
) -> ChatClient:
    """A ChatClient for the wirechat WebSocket server at ``address`` = (host, port).
    ``subprotocol``: the contract version to speak (``SUBPROTOCOL_V1`` has no history
    operations and no notices; ``SUBPROTOCOL_V2_2``, the default, offers ``SUBPROTOCOL_V2``
    too, for a server before 2.2). ``tls``: speak ``wss://``, trusting what it names."""
    transport = WebSocketTransport(address, subprotocol=subprotocol, tls=tls)
    return ChatClient(transport, auto_ack=auto_ack)


__all__ = [
    "MAX_MESSAGE_BYTES",
    "PATH",
    "SUBPROTOCOL",
    "SUBPROTOCOL_V1",
    "SUBPROTOCOL_V2",
    "SUBPROTOCOL_V2_2",
    "Close",
    "WebSocketServer",
    "WebSocketTransport",
    "decode_request",
    "encode_request",
    "open_client",
    "start_server",
]
