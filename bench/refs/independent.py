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

The bench measures them in every run (bench/latency.py ``run_independent``: the rows with
``client: "independent"`` and issue 8's targets "<transport> send p50 within 15% of an
independent client's"). Run alone, this tool starts its own server (memory store) pinned to
vCPU 0, runs on vCPU 1 and runs that same step: blocks of 32-byte sends to an offline
recipient, one by the product's ChatClient, one by the independent client, back to back, which
goes first drawn (half the pairs each way), so the machine's drift falls on both alike. It
prints the medians over blocks of each side's per-block p50 and the median of the per-pair
ratios with its 95 % interval. Run: ``python -m bench.refs.independent [--pairs 10]
[--block 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
from websockets import Subprotocol
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from bench.refs import INDEPENDENT_TRANSPORTS
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

    LIBRARY = "the websockets library's blocking client (JSON text)"

    def __init__(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
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
        self.body = body
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
        self.call({"op": "send", "to": [self.recipient], "body": self.body})

    def close(self) -> None:
        self.stack.close()


class SyncUnary:
    """chat.proto's unary ``Chat`` service through grpcio's synchronous stub."""

    LIBRARY = "grpcio's synchronous stub (unary Send)"

    def __init__(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        self.channel = grpc.insecure_channel(target(address))
        self.stub = chat_pb2_grpc.ChatStub(self.channel)
        reply = self.stub.Signup(chat_pb2.SignupRequest(username=username, password=PASSWORD))
        self.metadata = (("wirechat-session", reply.session_token),)
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=body)

    def send(self) -> None:
        self.stub.Send(self.request, metadata=self.metadata, timeout=10)

    def close(self) -> None:
        self.channel.close()


#: The stream's deadline: a client's whole life in one step is seconds, so this only ends a
#: step whose server stopped answering (a read waits for the next reply without a timeout of
#: its own), long before the worker's job timeout.
STREAM_DEADLINE_S = 120.0


class SyncStream:
    """chat.proto's ``ChatStream.Connect`` through grpcio's synchronous stub: requests from a
    queue, replies read in order (one request in flight)."""

    LIBRARY = "grpcio's synchronous stub (ChatStream.Connect)"

    def __init__(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        self.channel = grpc.insecure_channel(target(address))
        self.requests: queue.SimpleQueue[chat_pb2.ClientMessage | None] = queue.SimpleQueue()
        self.replies: Iterator[chat_pb2.ServerMessage] = chat_pb2_grpc.ChatStreamStub(
            self.channel
        ).Connect(iter(self.requests.get, None), timeout=STREAM_DEADLINE_S)
        self.last_id = 0
        signup = chat_pb2.SignupRequest(username=username, password=PASSWORD)
        self.call(chat_pb2.ClientMessage(signup=signup))
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=body)

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


#: Each transport's independent client (its keys: bench/refs INDEPENDENT_TRANSPORTS).
INDEPENDENT: dict[str, type[BlockingWebSocket | SyncUnary | SyncStream]] = {
    "websocket": BlockingWebSocket,
    "grpc-stream": SyncStream,
    "grpc": SyncUnary,
}


class BareAio:
    """The unary ``Send`` through a bare ``grpc.aio`` stub: what any asyncio gRPC client pays."""

    LIBRARY = "a bare grpc.aio stub (the same unary calls, no ChatClient)"

    async def open(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        self.channel = grpc.aio.insecure_channel(target(address))  # on the running loop
        self.stub = chat_pb2_grpc.ChatStub(self.channel)
        signup = chat_pb2.SignupRequest(username=username, password=PASSWORD)
        reply = await self.stub.Signup(signup)
        self.metadata = (("wirechat-session", reply.session_token),)
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=body)

    async def send(self) -> None:
        await self.stub.Send(self.request, metadata=self.metadata, timeout=10)

    async def close(self) -> None:
        await self.channel.close()


#: The bare asyncio stub beside the pairs, where a transport has one (bench/latency.py).
BARE: dict[str, type[BareAio]] = {"grpc": BareAio}


def compare(name: str, address: Address, server_pid: int, pairs: int, block: int) -> str:
    """One line: the product client's and the independent client's p50 on ``name``, from
    the bench's own step (bench/latency.py ``run_independent``)."""
    from bench.latency import run_independent
    from bench.stats import median
    from bench.targets import paired_ratio

    job = {
        "target": {"transport": name, "address": list(address), "server_pid": server_pid},
        "n": pairs * block,
        "pairs": pairs,
        "warmup": block,
        "prefix": fresh_name("x"),
        "body": BODY,
    }
    (row,) = asyncio.run(run_independent(job))
    got = row["pairs"]
    ratio, ci, _ = paired_ratio(got, "p50_us", "chat", "independent")
    interval = "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    line = (
        f"| {name} | {median(p['chat_p50_us'] for p in got):.1f} "
        f"| {median(p['independent_p50_us'] for p in got):.1f} "
        f"| {ratio:.2f}{interval} |"
    )
    if "bare_p50_us" in got[0]:
        bare_to_sync, _, _ = paired_ratio(got, "p50_us", "bare", "independent")
        to_bare, _, _ = paired_ratio(got, "p50_us", "chat", "bare")
        line += (
            f" bare grpc.aio stub {median(p['bare_p50_us'] for p in got):.1f} µs:"
            f" bare ÷ sync {bare_to_sync:.2f}, product ÷ bare {to_bare:.2f} |"
        )
    else:
        line += " |"
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10, help="pairs of blocks (default 10)")
    parser.add_argument("--block", type=int, default=500, help="sends per block (default 500)")
    parser.add_argument(
        "transports", nargs="*", default=list(INDEPENDENT_TRANSPORTS), help="default: all three"
    )
    args = parser.parse_args(argv)
    unknown = set(args.transports) - set(INDEPENDENT_TRANSPORTS)
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
            "| transport | product client | independent client | product ÷ independent [95 %] | |"
        )
        print("|---|---:|---:|---|---|")
        for name in args.transports:
            line = compare(name, server.addresses[name], server.pid, args.pairs, args.block)
            print(line, flush=True)
    finally:
        os.sched_setaffinity(0, cpus)  # a caller (a test) keeps its vCPUs
        server.stop()


if __name__ == "__main__":
    main()
