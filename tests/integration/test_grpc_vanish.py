"""A gRPC client that vanishes mid-stream (SIGKILL: no goodbye, no cancel frame from its code)
while others keep chatting. Its messages stay pending, and the server closes its session."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from core import ChatClient, ChatService, HashCost, SqliteStore
from tests.conftest import suite_guard
from transports.grpc import GrpcServer, open_client, start_server
from wirechat.launch import ServerProcess

WAIT = 10.0
REPO = Path(__file__).resolve().parents[2]

# The vanishing client: generated stubs and blocking grpc. It signs up, subscribes, sends
# itself a message, reads it back from the stream (so it is mid-stream), says so, and waits
# to be killed. It never acks, so that message must stay pending.
GHOST = """
import sys, time, grpc
from transports.grpc._generated import chat_pb2 as pb, chat_pb2_grpc
target, me = sys.argv[1], sys.argv[2]
stub = chat_pb2_grpc.ChatStub(grpc.insecure_channel(target))
token = stub.Signup(pb.SignupRequest(username=me, password="pw-secret-1"), timeout=30).session_token
metadata = (("wirechat-session", token),)
stream = stub.Subscribe(pb.SubscribeRequest(), metadata=metadata)
stub.Send(pb.SendRequest(recipients=[me], body="to myself"), metadata=metadata, timeout=30)
print("mid-stream", next(stream).message_id, flush=True)
time.sleep(120)
"""


def name() -> str:
    return "v" + uuid.uuid4().hex[:12]


async def spawn_ghost(
    address: tuple[str, int], username: str
) -> tuple[asyncio.subprocess.Process, int]:
    """Start the ghost, wait until it is mid-stream; returns it and the id it read."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", GHOST, f"{address[0]}:{address[1]}", username,
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
        assert line.startswith("mid-stream"), f"ghost did not start: {line!r}"
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, int(line.split()[1])


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def kill9(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()  # SIGKILL: the process gets no chance to cancel or close anything
    await proc.wait()


async def chat_round(a: ChatClient, b: ChatClient, b_name: str, text: str) -> None:
    sent = await a.send([b_name], text)
    got = await b.next_message(WAIT)
    assert (got.message_id, got.body) == (sent.message_id, text)


async def pair(address: tuple[str, int]) -> tuple[ChatClient, ChatClient, str, str]:
    alice, bob = name(), name()
    a, b = open_client(address), open_client(address)
    await a.connect()
    await b.connect()
    await a.signup(alice, "pw-secret-1")
    await b.signup(bob, "pw-secret-1")
    return a, b, alice, bob


# -- against a real server process --------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(["grpc"], tmp_path / "db.sqlite").start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_vanished_client_keeps_its_messages_and_others_chat_on(
    server: ServerProcess,
) -> None:
    address = server.addresses["grpc"]
    ghost = name()
    a, b, alice, bob = await pair(address)
    try:
        await chat_round(a, b, bob, "before")
        proc, read_id = await spawn_ghost(address, ghost)
        try:
            await chat_round(b, a, alice, "while it is there")
        finally:
            await kill9(proc)
        await chat_round(a, b, bob, "after it vanished")
        missed = [(await a.send([ghost], f"missed {i}")).message_id for i in range(2)]
        await chat_round(b, a, alice, "still going")

        async with open_client(address) as back:  # Rule 11: unacked means pending
            assert (await back.login(ghost, "pw-secret-1")).pending == 3
            got = [(await back.next_message(WAIT)).message_id for _ in range(3)]
            assert got == [read_id, *missed]
    finally:
        await a.close()
        await b.close()
    assert server.proc is not None and server.proc.poll() is None
    assert not [line for line in server.log_lines if "Traceback" in line or "ERROR" in line]


# -- in-process, where the server's session table can be seen -----------------------------------
@pytest.fixture
async def in_process() -> AsyncIterator[tuple[ChatService, GrpcServer]]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    try:
        yield service, server
    finally:
        await server.close()
        await service.store.close()


async def test_a_vanished_clients_session_is_closed(
    in_process: tuple[ChatService, GrpcServer],
) -> None:
    service, server = in_process
    ghost = name()
    a, b, alice, bob = await pair(server.address)
    try:
        proc, _ = await spawn_ghost(server.address, ghost)
        try:
            assert service.live_sessions(ghost) == 1
        finally:
            await kill9(proc)
        await chat_round(a, b, bob, "meanwhile")
        # The kernel closes the dead process's socket; grpc cancels its stream; we close.
        await until(lambda: service.live_sessions(ghost) == 0, "the ghost's session to close")
        server.sessions.sweep()
        assert len(server.sessions) == 2  # alice and bob; the ghost's token is forgotten
        await chat_round(b, a, alice, "and after")
    finally:
        await a.close()
        await b.close()


async def test_closing_a_client_closes_its_session(
    in_process: tuple[ChatService, GrpcServer],
) -> None:
    service, server = in_process
    a, b, _, bob = await pair(server.address)
    await b.close()
    await until(lambda: service.live_sessions(bob) == 0, "bob's session to close")
    await a.send([bob], "for later")
    async with open_client(server.address) as again:
        assert (await again.login(bob, "pw-secret-1")).pending == 1
    await a.close()
