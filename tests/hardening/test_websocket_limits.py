"""Server bounds on the WebSocket transport (issue 14): connection caps per client address
(HTTP 503 with a reason), the no-login idle timeout (close 1008), the message size limit.

Each server runs in-process on 127.0.0.1 with small limits in its own Guard; a second client
address is 127.0.0.2 (the connection's ``local_addr``).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core import ChatService
from transports._guard import Guard, ServerLimits
from transports.websocket import start_server
from transports.websocket._messages import MAX_MESSAGE_BYTES, PATH, SUBPROTOCOL

WAIT = 10.0


def dial(address: tuple[str, int], source: str = "127.0.0.1") -> connect:
    return connect(
        f"ws://{address[0]}:{address[1]}{PATH}",
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        local_addr=(source, 0),
        open_timeout=WAIT,
    )


async def test_connections_past_the_per_address_cap_are_refused_with_503_and_a_reason(
    service: ChatService,
) -> None:
    guard = Guard(ServerLimits(max_connections_per_address=2))
    server = await start_server(service, "127.0.0.1", 0, guard=guard)
    held: list[ClientConnection] = []
    try:
        for _ in range(2):
            held.append(await dial(server.address))
        with pytest.raises(InvalidStatus) as refused:
            await dial(server.address)
        response = refused.value.response
        assert response.status_code == 503
        assert "too many connections from 127.0.0.1" in response.body.decode()
        assert int(response.headers["Retry-After"]) > 0
        other = await dial(server.address, source="127.0.0.2")  # another address gets in
        await other.send(
            json.dumps({"id": 1, "op": "signup", "username": "o", "password": "pw-12345678"})
        )
        assert "ok" in json.loads(await asyncio.wait_for(other.recv(), WAIT))
        await other.close()
        await held.pop().close()  # a place frees when a connection ends...
        for _ in range(int(WAIT / 0.02)):
            if guard.from_address("127.0.0.1") < 2:
                break
            await asyncio.sleep(0.02)
        held.append(await dial(server.address))  # ...and the next one gets it
    finally:
        for ws in held:
            await ws.close()
        await server.close()
    for _ in range(int(WAIT / 0.02)):
        if guard.connections == 0:
            break
        await asyncio.sleep(0.02)
    assert guard.connections == 0  # every admission was given back


async def test_a_connection_that_never_logs_in_is_closed_with_1008(service: ChatService) -> None:
    server = await start_server(
        service, "127.0.0.1", 0, guard=Guard(ServerLimits(idle_timeout=0.3))
    )
    try:
        async with dial(server.address) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(WAIT):
                    await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
            assert "no login within" in closed.value.rcvd.reason
    finally:
        await server.close()


async def test_a_logged_in_connection_is_not_closed_for_idling(service: ChatService) -> None:
    server = await start_server(
        service, "127.0.0.1", 0, guard=Guard(ServerLimits(idle_timeout=0.3))
    )
    try:
        async with dial(server.address) as ws:
            await ws.send(
                json.dumps({"id": 1, "op": "signup", "username": "u", "password": "pw-12345678"})
            )
            assert "ok" in json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            await asyncio.sleep(1.0)  # three idle timeouts
            await ws.send(json.dumps({"id": 2, "op": "list_accounts"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["id"] == 2
    finally:
        await server.close()


async def test_an_oversized_message_is_refused_with_1009(service: ChatService) -> None:
    server = await start_server(service, "127.0.0.1", 0, guard=Guard())
    try:
        async with dial(server.address) as ws:
            await ws.send("x" * (MAX_MESSAGE_BYTES + 1))
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(WAIT):
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        await server.close()
