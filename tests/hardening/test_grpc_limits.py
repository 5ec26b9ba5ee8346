"""Server bounds on the two gRPC transports (issue 14): connection caps per client address,
no-session idle timeouts, message size, and overload answered in words (defect 8).

Each server runs in-process on 127.0.0.1 with small limits in its own Guard; a second client
address (127.0.0.2) is reached through a small relay that connects out from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from core import ChatService
from transports._guard import Guard, ServerLimits
from transports.grpc import start_server
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from transports.grpc._wire import CHANNEL_OPTIONS, ERROR_KEY, SESSION_KEY
from transports.grpc_stream import start_server as start_stream_server

WAIT = 10.0
OTHER_ADDRESS = "127.0.0.2"  # Linux routes all of 127/8 to loopback


def name() -> str:
    return "h" + uuid.uuid4().hex[:12]


@contextlib.asynccontextmanager
async def relay_from(source: str, target: tuple[str, int]) -> AsyncIterator[tuple[str, int]]:
    """A TCP relay on 127.0.0.1 whose connections reach ``target`` from the address ``source``."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target, local_addr=(source, 0))
        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def channel_to(address: tuple[str, int]) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"{address[0]}:{address[1]}", options=CHANNEL_OPTIONS)


def reason(err: grpc.aio.AioRpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(ERROR_KEY)


def open_connect(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    """A grpc-stream Connect call opened on ``channel`` with the bare method (no client
    rules: what a hostile client does). Shared with test_spread_timeouts.py."""
    return channel.stream_stream(
        "/wirechat.v1.ChatStream/Connect",
        request_serializer=pb.ClientMessage.SerializeToString,
        response_deserializer=pb.ServerMessage.FromString,
    )()


# -- per-address cap ---------------------------------------------------------------------------
async def test_grpc_sessions_past_the_per_address_cap_are_refused_in_words(
    service: ChatService,
) -> None:
    guard = Guard(ServerLimits(max_connections_per_address=2))
    server = await start_server(service, "127.0.0.1", 0, guard=guard)
    try:
        async with channel_to(server.address) as channel:
            stub = chat_pb2_grpc.ChatStub(channel)
            for _ in range(2):
                await stub.Signup(
                    pb.SignupRequest(username=name(), password="pw-12345678"), timeout=WAIT
                )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Signup(
                    pb.SignupRequest(username=name(), password="pw-12345678"), timeout=WAIT
                )
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason(refused.value) == "OVERLOADED"
            assert "too many connections from 127.0.0.1" in (refused.value.details() or "")

            async with relay_from(OTHER_ADDRESS, server.address) as relay:
                async with channel_to(relay) as other:
                    reply = await chat_pb2_grpc.ChatStub(other).Signup(
                        pb.SignupRequest(username=name(), password="pw-12345678"), timeout=WAIT
                    )
                    assert reply.session_token  # another address still gets in
            assert guard.from_address("127.0.0.1") == 2
    finally:
        await server.close()
    assert guard.connections == 0  # every admission was given back


async def test_a_grpc_session_that_ends_frees_its_place(service: ChatService) -> None:
    guard = Guard(ServerLimits(max_connections_per_address=1))
    server = await start_server(service, "127.0.0.1", 0, guard=guard)
    try:
        async with channel_to(server.address) as channel:
            stub = chat_pb2_grpc.ChatStub(channel)
            user = name()
            reply = await stub.Signup(pb.SignupRequest(username=user, password="pw-12345678"))
            token = ((SESSION_KEY, reply.session_token),)
            await stub.DeleteAccount(
                pb.DeleteAccountRequest(username=user, password="pw-12345678"), metadata=token
            )
            await stub.Signup(
                pb.SignupRequest(username=name(), password="pw-12345678"), timeout=WAIT
            )
    finally:
        await server.close()


async def test_grpc_stream_connects_past_the_per_address_cap_are_refused_in_words(
    service: ChatService,
) -> None:
    guard = Guard(ServerLimits(max_connections_per_address=1))
    server = await start_stream_server(service, "127.0.0.1", 0, guard=guard)
    try:
        async with channel_to(server.address) as channel:
            first = open_connect(channel)
            await first.wait_for_connection()
            second = open_connect(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await second.read()
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason(refused.value) == "OVERLOADED"
            assert "too many connections from 127.0.0.1" in (refused.value.details() or "")
            async with relay_from(OTHER_ADDRESS, server.address) as relay:
                async with channel_to(relay) as other:
                    third = open_connect(other)
                    await third.write(
                        pb.ClientMessage(
                            request_id=1,
                            signup=pb.SignupRequest(username=name(), password="pw-12345678"),
                        )
                    )
                    reply = await asyncio.wait_for(third.read(), WAIT)
                    assert reply.WhichOneof("message") == "logged_in"
                    third.cancel()
            first.cancel()
    finally:
        await server.close()


# -- idle without a session --------------------------------------------------------------------
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + SETTINGS


def read_until_closed(address: tuple[str, int], seconds: float) -> tuple[bytes, bool]:
    """Open a raw HTTP/2 connection, send the preface and nothing else; what the server sent,
    and whether it closed the connection within ``seconds``."""
    received = b""
    with socket.create_connection(address, timeout=seconds) as sock:
        sock.sendall(PREFACE)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
    return received, False


def frame_types(data: bytes) -> list[int]:
    types, at = [], 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at : at + 3], "big")
        types.append(data[at + 3])
        at += 9 + length
    return types


GOAWAY = 0x7


@pytest.mark.parametrize("transport", ["grpc", "grpc-stream"])
async def test_a_grpc_connection_without_any_rpc_is_closed_when_idle(
    service: ChatService, transport: str
) -> None:
    guard = Guard(ServerLimits(idle_timeout=0.5))
    start = start_server if transport == "grpc" else start_stream_server
    server = await start(service, "127.0.0.1", 0, guard=guard)
    try:
        received, closed = await asyncio.to_thread(read_until_closed, server.address, WAIT)
    finally:
        await server.close()
    assert GOAWAY in frame_types(received)
    assert closed


async def test_a_grpc_stream_without_a_login_is_ended_when_idle(service: ChatService) -> None:
    guard = Guard(ServerLimits(idle_timeout=0.3))
    server = await start_stream_server(service, "127.0.0.1", 0, guard=guard)
    try:
        async with channel_to(server.address) as channel:
            call = open_connect(channel)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async with asyncio.timeout(WAIT):
                    await call.read()
            assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert reason(ended.value) == "DISCONNECTED"
            assert "no login within" in (ended.value.details() or "")
        # (the client reads the status before the server's handler has finished its cleanup)
        for _ in range(int(WAIT / 0.02)):
            if not server.streams:
                break
            await asyncio.sleep(0.02)
        assert not server.streams, "the ended stream is still counted after WAIT"
    finally:
        await server.close()
    assert guard.connections == 0


# -- message size ------------------------------------------------------------------------------
async def test_an_oversized_grpc_request_is_refused_before_it_reaches_the_core(
    service: ChatService,
) -> None:
    server = await start_server(service, "127.0.0.1", 0, guard=Guard())
    try:
        async with grpc.aio.insecure_channel("{}:{}".format(*server.address)) as channel:
            stub = chat_pb2_grpc.ChatStub(channel)
            reply = await stub.Signup(pb.SignupRequest(username=name(), password="pw-12345678"))
            token = ((SESSION_KEY, reply.session_token),)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Send(
                    pb.SendRequest(recipients=["x"], body="a" * 200_000), metadata=token
                )
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in (refused.value.details() or "")
            await stub.ListAccounts(pb.ListAccountsRequest(), metadata=token)  # session lives on
    finally:
        await server.close()


# -- overload (defect 8) -------------------------------------------------------------------------
@pytest.mark.parametrize("shed_lag", [None, 2.0])
async def test_both_grpc_listeners_shed_from_the_servers_shed_lag(
    service: ChatService, shed_lag: float | None
) -> None:
    """``wirechat server --shed-lag`` reaches gRPC's load meter on both listeners: half a
    second behind, a server with the default (0.2 s) refuses some requests that create work,
    one told to wait 2 s refuses none."""
    limits = ServerLimits() if shed_lag is None else ServerLimits(shed_lag=shed_lag)
    guard = Guard(limits)
    unary = await start_server(service, guard=guard)
    stream = await start_stream_server(service, guard=guard)
    try:
        for admission in (unary.servicer.admission, stream.admission):
            admission.meter.note(0.5)  # (no await until the count: the meter cannot resample)
            refused = sum(admission.busy() is not None for _ in range(200))
            assert (refused > 0) == (shed_lag is None), f"{refused} of 200 refused"
    finally:
        await stream.close()
        await unary.close()


BURST = 2_500  # calls queued while the loop stalls: past grpc-core's old silent-drop threshold
CHANNELS = 25  # BURST / 100 streams per connection


def fire_sends(
    address: tuple[str, int],
    token: str,
    recipient: str,
    connected: threading.Event,
    fire: threading.Event,
) -> list[tuple[str, str, str | None, int]]:
    """From a thread (blocking grpc): CHANNELS connections, ``connected`` set once they are
    up, then on ``fire`` BURST Sends at once over them; each outcome as (code, details,
    wirechat-error, message id)."""
    options = [*CHANNEL_OPTIONS]
    channels = [grpc.insecure_channel("{}:{}".format(*address), options=options)]
    channels += [
        grpc.insecure_channel("{}:{}".format(*address), options=options)
        for _ in range(CHANNELS - 1)
    ]
    try:
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=WAIT)
        connected.set()
        assert fire.wait(WAIT), "the test never fired the burst"
        stubs = [chat_pb2_grpc.ChatStub(channel) for channel in channels]
        futures = [
            stubs[i % CHANNELS].Send.future(
                pb.SendRequest(recipients=[recipient], body=f"m{i}"),
                metadata=((SESSION_KEY, token),),
                timeout=60,
            )
            for i in range(BURST)
        ]
        outcomes: list[tuple[str, str, str | None, int]] = []
        for future in futures:
            try:
                reply = future.result()
                outcomes.append(("OK", "", None, reply.message_id))
            except grpc.RpcError as err:
                metadata = dict(err.trailing_metadata() or ())
                outcomes.append((err.code().name, err.details() or "", metadata.get(ERROR_KEY), 0))
        return outcomes
    finally:
        for channel in channels:
            channel.close()


async def test_overload_is_answered_with_resource_exhausted_and_nothing_acknowledged_is_lost(
    service: ChatService,
) -> None:
    """A burst of Sends that arrives while the loop is stalled (as under overload) queues in
    grpc-core. Before: past 1,000 queued calls grpc-core killed some with a bare CANCELLED.
    Now: each is served, or refused with RESOURCE_EXHAUSTED (OVERLOADED) and a sentence; every
    acknowledged message reaches its recipient."""
    server = await start_server(service, "127.0.0.1", 0, guard=Guard())
    try:
        async with channel_to(server.address) as channel:
            stub = chat_pb2_grpc.ChatStub(channel)
            sender = await stub.Signup(pb.SignupRequest(username=name(), password="pw-12345678"))
            recipient = name()
            await stub.Signup(pb.SignupRequest(username=recipient, password="pw-12345678"))
        connected, fire = threading.Event(), threading.Event()
        burst = asyncio.create_task(
            asyncio.to_thread(
                fire_sends, server.address, sender.session_token, recipient, connected, fire
            )
        )
        await asyncio.to_thread(connected.wait, WAIT)
        # The burst is fired while the loop stands still, so all of it queues in grpc-core.
        # (Fired before the stall, calls made while the thread was still making the rest were
        # served at once by the free loop: on a loaded machine, every one of them, once.)
        fire.set()
        time.sleep(2.0)  # noqa: ASYNC251 - stall the loop on purpose: the burst queues in grpc-core
        outcomes = await asyncio.wait_for(burst, 120)
    finally:
        await server.close()
    codes = {code for code, *_ in outcomes}
    assert codes <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    refused = [o for o in outcomes if o[0] == "RESOURCE_EXHAUSTED"]
    assert refused, f"the stall should have been noticed: all {len(outcomes)} sends were served"
    assert all(why == "OVERLOADED" and "overloaded" in text for _, text, why, _ in refused)
    acknowledged = {message_id for code, _, _, message_id in outcomes if code == "OK"}
    again = service.open_session()
    result = await service.login(again, recipient, "pw-12345678")
    assert result.pending == len(acknowledged)  # each acknowledged send is stored, none lost


# -- slow consumers: time without progress, not a count ------------------------------------------
STINGY_CLIENT = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384))
STALL = 0.5
FEW = 200  # 1 kB messages: far below the core's queue bounds, far above an HTTP/2 window


async def send_few(service: ChatService, victim: str) -> None:
    sender = service.open_session()
    await service.signup(sender, name(), "pw-12345678")
    for _ in range(FEW):
        await service.send(sender, [victim], "x" * 1000)
        await asyncio.sleep(0)


async def until_gone(service: ChatService, victim: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if service.live_sessions(victim) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{victim}'s session was never ended")


async def test_a_grpc_subscriber_that_stops_reading_is_cut_off_after_the_stall_timeout(
    service: ChatService,
) -> None:
    guard = Guard(ServerLimits(stall_timeout=STALL))
    server = await start_server(service, "127.0.0.1", 0, guard=guard)
    victim = name()
    try:
        async with grpc.aio.insecure_channel(
            "{}:{}".format(*server.address), options=STINGY_CLIENT
        ) as channel:
            stub = chat_pb2_grpc.ChatStub(channel)
            reply = await stub.Signup(pb.SignupRequest(username=victim, password="pw-12345678"))
            token = ((SESSION_KEY, reply.session_token),)
            stream = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=token)
            await stream.wait_for_connection()  # and never read it
            await send_few(service, victim)
            await until_gone(service, victim)
            with pytest.raises(grpc.aio.AioRpcError) as later:
                await stub.ListAccounts(pb.ListAccountsRequest(), metadata=token)
            assert later.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert reason(later.value) == "SLOW_CONSUMER"
            stream.cancel()
    finally:
        await server.close()
    again = service.open_session()
    assert (await service.login(again, victim, "pw-12345678")).pending == FEW  # nothing lost
    assert guard.connections == 0


async def test_a_grpc_stream_that_stops_reading_is_cut_off_after_the_stall_timeout(
    service: ChatService,
) -> None:
    guard = Guard(ServerLimits(stall_timeout=STALL))
    server = await start_stream_server(service, "127.0.0.1", 0, guard=guard)
    victim = name()
    try:
        async with grpc.aio.insecure_channel(
            "{}:{}".format(*server.address), options=STINGY_CLIENT
        ) as channel:
            call = open_connect(channel)
            signup = pb.SignupRequest(username=victim, password="pw-12345678")
            await call.write(pb.ClientMessage(request_id=1, signup=signup))
            assert (await asyncio.wait_for(call.read(), WAIT)).WhichOneof("message") == "logged_in"
            await send_few(service, victim)  # and never read again
            await until_gone(service, victim)
            assert not server.streams or all(s.session.closed for s in server.streams)
            call.cancel()
    finally:
        await server.close()
    again = service.open_session()
    assert (await service.login(again, victim, "pw-12345678")).pending == FEW  # nothing lost
    assert guard.connections == 0
