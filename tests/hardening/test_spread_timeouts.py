"""Issue 14: on WebSocket and grpc-stream too, connections opened in one burst do not all time
out in one burst. Each connection's no-login timeout is its own, the setting give or take
``ServerLimits.timeout_spread`` (custom's is covered in test_mass_events.py): the hostile
scene's flood opened ~16,000 connections in its first seconds, and 60 s later a server that
ended them together stalled the canary for seconds.

Twenty connections that never log in, opened together against a 1 s timeout spread by 25 %:
their closes are spread over the 0.75-1.25 s window (before: all within one timer turn or
one sweep). In-process on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest
from test_grpc_limits import open_connect  # (a sibling module: tests/hardening is on sys.path)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core import ChatService
from transports._guard import Guard, ServerLimits
from transports.grpc._wire import CHANNEL_OPTIONS
from transports.grpc_stream import start_server as start_stream_server
from transports.websocket import start_server as start_ws_server
from transports.websocket._messages import PATH, SUBPROTOCOL

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
COUNT = 20
LIMITS = ServerLimits(idle_timeout=1.0, timeout_spread=0.25)
#: Closes of 20 connections drawn uniformly over a 0.5 s window span less than this with a
#: probability of about 1e-6; unspread they span a few milliseconds (one sweep on grpc-stream).
MIN_SPAN_S = 0.15


async def _websocket_closed_at(address: tuple[str, int]) -> float:
    async with connect(
        f"ws://{address[0]}:{address[1]}{PATH}",
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        open_timeout=WAIT,
    ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        return time.monotonic()


async def _stream_ended_at(channel: grpc.aio.Channel) -> float:
    call = open_connect(channel)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async with asyncio.timeout(WAIT):
            await call.read()
    assert "no login within" in (ended.value.details() or "")
    return time.monotonic()


async def test_websocket_connections_opened_together_time_out_spread_over_time(
    service: ChatService,
) -> None:
    server = await start_ws_server(service, "127.0.0.1", 0, guard=Guard(LIMITS))
    try:
        closes = await asyncio.gather(*(_websocket_closed_at(server.address) for _ in range(COUNT)))
    finally:
        await server.close()
    span = max(closes) - min(closes)
    assert span >= MIN_SPAN_S, f"{COUNT} idle connections all closed within {span:.3f} s"


async def test_grpc_streams_opened_together_are_ended_spread_over_time(
    service: ChatService,
) -> None:
    server = await start_stream_server(service, "127.0.0.1", 0, guard=Guard(LIMITS))
    try:
        host, port = server.address
        async with contextlib.AsyncExitStack() as stack:
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"{host}:{port}", options=CHANNEL_OPTIONS)
            )
            closes = await asyncio.gather(*(_stream_ended_at(channel) for _ in range(COUNT)))
    finally:
        await server.close()
    span = max(closes) - min(closes)
    assert span >= MIN_SPAN_S, f"{COUNT} idle streams all ended within {span:.3f} s"
