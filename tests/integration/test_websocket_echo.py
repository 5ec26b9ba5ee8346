"""bench/refs/ws_echo: the websocket transport's bare reference server, run as the bench runs it
(``python -m bench.refs ws_echo``): it announces its port and echoes every message unchanged."""

from __future__ import annotations

import sys

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from wirechat.launch import ChildProcess

pytestmark = pytest.mark.timeout(60)


async def test_ws_echo_echoes_text_and_binary() -> None:
    with ChildProcess([sys.executable, "-m", "bench.refs", "ws_echo"], label="ws_echo") as echo:
        host, port = echo.addresses["ws_echo"]
        offer = [Subprotocol("wirechat.v1.json")]
        async with connect(f"ws://{host}:{port}/chat", subprotocols=offer) as ws:
            assert ws.subprotocol == "wirechat.v1.json"  # a wirechat client connects unchanged
            message = '{"id":7,"op":"send","to":["bob_12345678"],"body":"' + "x" * 32 + '"}'
            for _ in range(3):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
        async with connect(f"ws://{host}:{port}/") as ws:  # any path, no subprotocol
            await ws.send("ping?")
            assert await ws.recv() == "ping?"
