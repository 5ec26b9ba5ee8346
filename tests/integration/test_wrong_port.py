"""Every client transport pointed at every other transport's port (a real server serving them
all) says what is wrong in a person's words: what that port speaks, and which --transport
would fit. And a port where nothing listens says so."""

from __future__ import annotations

import asyncio
import socket

import pytest

from transports import registry
from transports._wrong_port import WrongPort
from wirechat.launch import ServerProcess

PAIRS = [
    (client, server)
    for client in registry.WIRE_TRANSPORTS
    for server in registry.WIRE_TRANSPORTS
    if client != server
]


async def _connect_and_login(transport: str, address: tuple[str, int]) -> None:
    client = registry.get(transport).open_client(address)
    try:
        async with asyncio.timeout(20):
            await client.connect()
            await client.login("nobody", "no password")  # gRPC (unary) learns at the first call
    finally:
        await client.close()


@pytest.mark.parametrize(("client", "server"), PAIRS, ids=[f"{c}-at-{s}" for c, s in PAIRS])
async def test_a_client_at_another_transports_port_is_told_which_transport_fits(
    client: str, server: str, wire_server: ServerProcess
) -> None:
    with pytest.raises(WrongPort) as caught:
        await _connect_and_login(client, wire_server.addresses[server])
    message = str(caught.value)
    assert f"--transport {server}" in message, message
    host, port = wire_server.addresses[server]
    assert f"{host}:{port}" in message
    for jargon in ("ProtocolError", "MALFORMED", "Errno", "UNIMPLEMENTED"):
        assert jargon not in message, message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("client", registry.WIRE_TRANSPORTS)
async def test_nobody_listening_is_a_refused_connection(client: str) -> None:
    """The UIs put ConnectionRefusedError in words (ui.web.gateway.unreachable, the console);
    the gRPC clients, which cannot see the refusal themselves, raise it too."""
    with pytest.raises(ConnectionRefusedError):
        await _connect_and_login(client, ("127.0.0.1", _closed_port()))


async def test_a_slow_welcome_is_taken_as_it_comes_not_after_the_probe() -> None:
    """A server whose WELCOME comes late (its accept queue behind a flood of connects, issue
    14) is probed after SILENT_AFTER seconds of silence, but its WELCOME, when it comes, goes
    on at once: the probe (up to four connections of ~0.4 s each) no longer holds it up."""
    from transports.custom import Connection, Role, Welcome
    from transports.custom._events import Hello
    from transports.custom._wire import MAX_FRAME

    probe_connected = asyncio.Event()
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections > 1:  # the probe's: silent, held until it gives up
            probe_connected.set()
            await reader.read()
            writer.close()
            return
        codec = Connection(Role.SERVER)
        codec.receive_data(await reader.read(64))
        hello = codec.next_event()
        assert isinstance(hello, Hello)
        await probe_connected.wait()  # late: the client is probing by now
        writer.write(codec.send(Welcome(hello.max_version, MAX_FRAME, 65536, 256)))
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    client = registry.get("custom").open_client(address)
    try:
        async with asyncio.timeout(20):
            await client.connect()
        # (the probe's first connection let the WELCOME go; its next comes after 0.4 s of
        # silence, so on a slow machine one more may have started: never all four)
        assert connections <= 3, f"{connections - 1} probe connections before the WELCOME"
    finally:
        await client.close()
        server.close()
