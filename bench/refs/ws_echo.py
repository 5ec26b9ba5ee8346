"""ws_echo: a bare ``websockets`` echo server on asyncio + uvloop, the websocket transport's floor.

It runs the library exactly as the websocket transport's server does (its asyncio
implementation, no permessage-deflate, the same size limit, read queue, write limit and
keepalive), and sends every message straight back as it came (a text message as text, binary
as binary). So ``websocket`` ÷ ``ws_echo`` is what JSON, the chat core and the transport's
driver add to one WebSocket round trip.

Any path and any subprotocol (or none) is accepted: the first subprotocol the client offers is
selected, so a client built for ``wirechat.v1.json`` connects unchanged. Run it with
``python -m bench.refs ws_echo`` (which installs uvloop and announces ``listening:``/``ready:``).
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from transports.websocket import _server as ws_server
from transports.websocket._messages import MAX_MESSAGE_BYTES


async def _echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def _first_offered(ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return offered[0] if offered else None


async def start(host: str, port: int) -> tuple[Server, int]:
    """Listen; returns the server (``close()``, ``await wait_closed()``) and the bound port."""
    server = await serve(
        _echo,
        host,
        port,
        select_subprotocol=_first_offered,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        max_queue=ws_server.MAX_QUEUE,
        write_limit=ws_server.WRITE_LIMIT,
        ping_interval=ws_server.PING_INTERVAL,
        ping_timeout=ws_server.PING_TIMEOUT,
        open_timeout=ws_server.OPEN_TIMEOUT,
        close_timeout=ws_server.CLOSE_TIMEOUT,
        server_header=None,
    )
    return server, server.sockets[0].getsockname()[1]
