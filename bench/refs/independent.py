"""independent: `send` p50 by clients written from the contracts alone, beside the product's.

Issue 8 asks that every p50 the bench reports be within 15 % of what an independent client
measures against the same server in the same session. These are such clients, one for every
transport, each what a stranger would write from the transport's contract with a stock
library, blocking (no event loop in the way):

* ``custom``: a blocking socket and a few lines of framing from transports/custom/PROTOCOL.md
  (none of the product's codec: bench/refs/lean_custom.py, which uses it, is the client-CPU
  reference of issue 8 instead);
* ``protobuf-tcp``: a blocking socket and the ``protobuf`` library, chat.proto's messages in
  the varint frames of transports/protobuf_tcp/PROTOCOL.md (a few lines of framing);
* ``websocket``: the ``websockets`` library's *blocking* client, JSON text from
  transports/websocket/CONTRACT.md;
* ``grpc-stream``: grpcio's *synchronous* stub on ``ChatStream.Connect``, a request iterator
  fed from a queue (transports/grpc/chat.proto);
* ``grpc``: grpcio's synchronous stub, unary ``Send`` with the ``wirechat-session`` metadata.

Beside each, an asyncio client of the same transport written the same way
(bench/refs/independent_aio.py: custom and protobuf-tcp under a bare asyncio Protocol, the
``websockets`` asyncio client, ``grpc.aio`` stubs): what *any* asyncio client pays. The
product's ChatClient is an asyncio client, so its target is read against that one; the
blocking clients time the ladder (bench/ladder.py), since what an event loop adds to every
client alike is not a cost of the protocol.

The bench measures them in every run (bench/latency.py ``run_independent``: the rows with
``client: "independent"`` and issue 8's targets "<transport> send p50 within 15% of an
independent asyncio client's"). Run alone, this tool starts its own server (memory store) pinned to
vCPU 0, runs on vCPU 1 and runs that same step: blocks of 32-byte sends to an offline
recipient, one by the product's ChatClient, one by the independent client, back to back, which
goes first drawn (half the pairs each way), so the machine's drift falls on both alike, and a
block of the asyncio client beside each pair. It prints the medians over blocks of each side's
per-block p50 and the median of the per-pair ratios with its 95 % interval. Run:
``python -m bench.refs.independent [--pairs 10] [--block 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import uvloop
from websockets import Subprotocol
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from bench.refs import INDEPENDENT_TRANSPORTS, hand_frames
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


class BlockingFrames:
    """custom's and protobuf-tcp's varint frames (bench/refs/hand_frames.py) through a
    blocking socket; one request in flight, so its request id is always 1 (the lowest free
    one, as the product's client picks, so the frames are byte for byte the product's). Each
    SEND is encoded, and its SENT decoded, per call, as any client would."""

    LIBRARY = ""
    PROTOCOL = ""

    def __init__(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        self.bodies = hand_frames.BODIES[self.PROTOCOL]
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hand_frames.FrameReader()
        self.sock.sendall(self.bodies.hello())
        self.expect(hand_frames.WELCOME, 0)
        signup = self.bodies.signup(username, PASSWORD)
        self.sock.sendall(hand_frames.frame(hand_frames.SIGNUP, 1, signup))
        self.expect(hand_frames.SIGNED_UP, 1)
        self.recipient, self.body = recipient, body

    def expect(self, opcode: int, request_id: int) -> bytes:
        """Read frames until the one answering ``request_id`` (pushes, id 0, are skipped)."""
        while True:
            got = self.reader.next()
            if got is None:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed the connection")
                self.reader.feed(data)
                continue
            kind, rid, body = got
            if kind == hand_frames.ERROR:
                raise RuntimeError(f"the server refused (ERROR frame body {body!r})")
            if kind == opcode and rid == request_id:
                return body

    def send(self) -> int:
        """One SEND and its SENT's message id."""
        body = self.bodies.send(self.recipient, self.body)
        self.sock.sendall(hand_frames.frame(hand_frames.SEND, 1, body))
        return self.bodies.sent_id(self.expect(hand_frames.SENT, 1))

    def close(self) -> None:
        self.sock.close()


class BlockingCustom(BlockingFrames):
    """transports/custom/PROTOCOL.md by hand: positional bodies."""

    LIBRARY = "a blocking socket and a few lines of framing (PROTOCOL.md by hand)"
    PROTOCOL = "custom"


class BlockingProtobufTcp(BlockingFrames):
    """transports/protobuf_tcp/PROTOCOL.md: the same frames, chat.proto messages as bodies."""

    LIBRARY = "a blocking socket and the protobuf library (chat.proto in varint frames)"
    PROTOCOL = "protobuf-tcp"


#: Each transport's independent client (its keys: bench/refs INDEPENDENT_TRANSPORTS).
INDEPENDENT: dict[str, type[BlockingFrames | BlockingWebSocket | SyncUnary | SyncStream]] = {
    "custom": BlockingCustom,
    "protobuf-tcp": BlockingProtobufTcp,
    "websocket": BlockingWebSocket,
    "grpc-stream": SyncStream,
    "grpc": SyncUnary,
}


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
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the bench's worker
        (row,) = runner.run(run_independent(job))
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
            f" bare asyncio client {median(p['bare_p50_us'] for p in got):.1f} µs:"
            f" bare ÷ independent {bare_to_sync:.2f}, product ÷ bare {to_bare:.2f} |"
        )
    else:
        line += " |"
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10, help="pairs of blocks (default 10)")
    parser.add_argument("--block", type=int, default=500, help="sends per block (default 500)")
    parser.add_argument(
        "transports", nargs="*", default=list(INDEPENDENT_TRANSPORTS), help="default: all of them"
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
