"""independent: `send` p50 by clients written from the contracts alone, beside the product's.

Issue 8 asks that every p50 the bench reports be within 15 % of what an independent client
measures against the same server in the same session. For ``custom`` the bench does that
itself (bench/refs/lean_custom.py, the targets table). This tool does it for the transports
whose contract a stranger would implement with a stock library:

* ``websocket``: the ``websockets`` library's *blocking* client, JSON text from
  transports/websocket/CONTRACT.md;
* ``grpc-stream``: grpcio's *synchronous* stub on ``ChatStream.Connect``, a request iterator
  fed from a queue (transports/grpc/chat.proto);
* ``grpc``: grpcio's synchronous stub, unary ``Send`` with the ``wirechat-session`` metadata;
  and, to split the gap, a *bare* ``grpc.aio`` stub (the same calls, no ChatClient).

It starts its own server (memory store) pinned to vCPU 0, runs on vCPU 1, and alternates
blocks of 32-byte sends to an offline recipient: one block by the product's ChatClient, one
by the independent client, the order flipping each pair, so the machine's drift falls on
both alike. It prints the medians over blocks of each side's per-block p50 and the median of
the per-pair ratios. Run: ``python -m bench.refs.independent [--pairs 10] [--block 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from websockets import Subprotocol
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from core.client import ChatClient
from transports import registry
from transports.grpc._generated import chat_pb2, chat_pb2_grpc
from wirechat.launch import ServerProcess

BODY = "x" * 32
PASSWORD = "correct horse 1"
Address = tuple[str, int]


def target(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def fresh_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class BlockingWebSocket:
    """CONTRACT.md's JSON over the ``websockets`` blocking client: one request at a time."""

    def __init__(self, address: Address, username: str, recipient: str) -> None:
        host, port = address
        self.stack = contextlib.ExitStack()
        self.ws: ClientConnection = self.stack.enter_context(
            ws_connect(
                f"ws://{host}:{port}/chat",
                subprotocols=[Subprotocol("wirechat.v2.json")],
                compression=None,
            )
        )
        self.last_id = 0
        self.recipient = recipient
        self.call({"op": "signup", "username": username, "password": PASSWORD})

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self.last_id += 1
        request["id"] = self.last_id
        self.ws.send(json.dumps(request, separators=(",", ":")))
        while True:  # pushes (none here: the recipient is offline) would come between replies
            reply: dict[str, Any] = json.loads(self.ws.recv(timeout=10))
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"websocket refused {request['op']}: {reply['error']}")
                return reply

    def send(self) -> None:
        self.call({"op": "send", "to": [self.recipient], "body": BODY})

    def close(self) -> None:
        self.stack.close()


class SyncUnary:
    """chat.proto's unary ``Chat`` service through grpcio's synchronous stub."""

    def __init__(self, address: Address, username: str, recipient: str) -> None:
        self.channel = grpc.insecure_channel(target(address))
        self.stub = chat_pb2_grpc.ChatStub(self.channel)
        reply = self.stub.Signup(chat_pb2.SignupRequest(username=username, password=PASSWORD))
        self.metadata = (("wirechat-session", reply.session_token),)
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=BODY)

    def send(self) -> None:
        self.stub.Send(self.request, metadata=self.metadata, timeout=10)

    def close(self) -> None:
        self.channel.close()


class SyncStream:
    """chat.proto's ``ChatStream.Connect`` through grpcio's synchronous stub: requests from a
    queue, replies read in order (one request in flight)."""

    def __init__(self, address: Address, username: str, recipient: str) -> None:
        self.channel = grpc.insecure_channel(target(address))
        self.requests: queue.SimpleQueue[chat_pb2.ClientMessage | None] = queue.SimpleQueue()
        self.replies: Iterator[chat_pb2.ServerMessage] = chat_pb2_grpc.ChatStreamStub(
            self.channel
        ).Connect(iter(self.requests.get, None))
        self.last_id = 0
        signup = chat_pb2.SignupRequest(username=username, password=PASSWORD)
        self.call(chat_pb2.ClientMessage(signup=signup))
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=BODY)

    def call(self, message: chat_pb2.ClientMessage) -> chat_pb2.ServerMessage:
        self.last_id += 1
        message.request_id = self.last_id
        self.requests.put(message)
        for reply in self.replies:
            if reply.request_id == self.last_id:
                if reply.WhichOneof("message") == "error":
                    raise RuntimeError(f"grpc-stream refused: {reply.error}")
                return reply
        raise RuntimeError("the stream ended")

    def send(self) -> None:
        self.call(chat_pb2.ClientMessage(send=self.request))

    def close(self) -> None:
        self.requests.put(None)
        self.channel.close()


INDEPENDENT: dict[str, type[BlockingWebSocket | SyncUnary | SyncStream]] = {
    "websocket": BlockingWebSocket,
    "grpc-stream": SyncStream,
    "grpc": SyncUnary,
}


class BareAio:
    """The unary ``Send`` through a bare ``grpc.aio`` stub: what any asyncio gRPC client pays."""

    async def open(self, address: Address, username: str, recipient: str) -> None:
        self.channel = grpc.aio.insecure_channel(target(address))  # on the running loop
        self.stub = chat_pb2_grpc.ChatStub(self.channel)
        signup = chat_pb2.SignupRequest(username=username, password=PASSWORD)
        reply = await self.stub.Signup(signup)
        self.metadata = (("wirechat-session", reply.session_token),)
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=BODY)

    async def send(self) -> None:
        await self.stub.Send(self.request, metadata=self.metadata, timeout=10)


def timed_block(send: Callable[[], None], size: int) -> float:
    """The p50 of ``size`` calls, in seconds."""
    took = []
    for _ in range(size):
        start = time.perf_counter()
        send()
        took.append(time.perf_counter() - start)
    return statistics.median(took)


async def timed_block_async(send: Callable[[], Awaitable[object]], size: int) -> float:
    took = []
    for _ in range(size):
        start = time.perf_counter()
        await send()
        took.append(time.perf_counter() - start)
    return statistics.median(took)


def compare(name: str, address: Address, pairs: int, block: int) -> str:
    """One line: the product client's and the independent client's p50 on ``name``."""
    loop = asyncio.new_event_loop()
    entry = registry.get(name)
    recipient = fresh_name("r")

    async def offline_recipient() -> None:
        client = entry.open_client(address)
        await client.connect()
        await client.signup(recipient, PASSWORD)
        await client.logout()
        await client.close()

    async def product_client() -> ChatClient:
        client = entry.open_client(address)
        await client.connect()
        await client.signup(fresh_name("p"), PASSWORD)
        return client

    loop.run_until_complete(offline_recipient())
    product = loop.run_until_complete(product_client())
    independent = INDEPENDENT[name](address, fresh_name("i"), recipient)
    sides: dict[str, Callable[[], float]] = {
        "product": lambda: loop.run_until_complete(
            timed_block_async(lambda: product.send([recipient], BODY), block)
        ),
        "independent": lambda: timed_block(independent.send, block),
    }
    bare: BareAio | None = None
    if name == "grpc":
        bare = BareAio()
        loop.run_until_complete(bare.open(address, fresh_name("b"), recipient))
        aio = bare
        sides["bare aio"] = lambda: loop.run_until_complete(timed_block_async(aio.send, block))
    try:
        for measure in sides.values():  # warm-up: connections, caches, the JIT-less paths
            measure()
        p50s: dict[str, list[float]] = {side: [] for side in sides}
        for i in range(pairs):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                p50s[side].append(sides[side]())
    finally:
        independent.close()
        loop.run_until_complete(product.close())
        if bare is not None:
            loop.run_until_complete(bare.channel.close())
        loop.close()
    ratios = [p / q for p, q in zip(p50s["product"], p50s["independent"], strict=True)]
    line = (
        f"| {name} | {statistics.median(p50s['product']) * 1e6:.1f} "
        f"| {statistics.median(p50s['independent']) * 1e6:.1f} "
        f"| {statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |"
    )
    if "bare aio" in p50s:
        to_bare = [p / q for p, q in zip(p50s["product"], p50s["bare aio"], strict=True)]
        bare_to_sync = [p / q for p, q in zip(p50s["bare aio"], p50s["independent"], strict=True)]
        line += (
            f" bare grpc.aio stub {statistics.median(p50s['bare aio']) * 1e6:.1f} µs:"
            f" bare ÷ sync {statistics.median(bare_to_sync):.2f},"
            f" product ÷ bare {statistics.median(to_bare):.2f}"
        )
    else:
        line += " |"
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10, help="pairs of blocks (default 10)")
    parser.add_argument("--block", type=int, default=500, help="sends per block (default 500)")
    parser.add_argument(
        "transports", nargs="*", default=list(INDEPENDENT), help="default: all three"
    )
    args = parser.parse_args(argv)
    unknown = set(args.transports) - set(INDEPENDENT)
    if unknown:
        parser.error(f"no independent client for {', '.join(sorted(unknown))}")
    server = ServerProcess(args.transports, ":memory:", cpu=0).start()
    cpus = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {1} if (os.cpu_count() or 1) > 1 else {0})
        print(
            f"`send` p50 in µs (32 B body, offline recipient, {args.pairs} pairs of"
            f" {args.block} sends, memory store; server on vCPU 0, clients on vCPU 1)\n"
        )
        print(
            "| transport | product client | independent client"
            " | product ÷ independent [min, max] | |"
        )
        print("|---|---:|---:|---|---|")
        for name in args.transports:
            print(compare(name, server.addresses[name], args.pairs, args.block), flush=True)
    finally:
        os.sched_setaffinity(0, cpus)  # a caller (a test) keeps its vCPUs
        server.stop()


if __name__ == "__main__":
    main()
