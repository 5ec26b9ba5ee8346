"""null_chat: a chat.proto server that does no chat: the gRPC contract's own floor.

grpc_echo and grpc_stream_echo answer raw bytes: gRPC's cost with nothing of the contract in
it. This server speaks chat.proto as the contract asks a client to (transports/grpc/chat.proto):
the generated messages, parsed and serialised by protobuf, and on ``Chat`` the session token in
``wirechat-session`` metadata, looked up on every call. It does nothing else: ``Signup`` hands
out a token without storing an account, ``Send`` answers a SendReply with the next id and
stores nothing, ``ChatStream.Connect`` answers each ClientMessage in order on its stream. No
wirechat code runs here (only the messages generated from chat.proto), so what a client
measures against it, against the echo beside it, is what the contract costs on grpcio before
a server does any work: the part of the gap to the echo no server implementation can remove
(bench/latency.py run_independent pairs it with the echo and ChatClient, bench/targets.py
reports it beside issue 10's floor target).

Only what the bench's stock-library clients call is served (bench/refs/independent_aio.py
AioUnary and AioStream: Signup, Send; a stream's signup and send); anything else is
UNIMPLEMENTED, as grpc answers a method no handler has.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import AsyncIterator

import grpc

from transports.grpc._generated import chat_pb2 as pb

#: The metadata key chat.proto names for the session token.
SESSION_KEY = "wirechat-session"


class NullChat:
    """The handlers, sharing one id counter and the tokens handed out (bench/grpc_split.py
    builds its split server on them too)."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.tokens: set[str] = set()

    async def signup(
        self, request: pb.SignupRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoginReply:
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return pb.LoginReply(session_token=token)

    async def send(
        self, request: pb.SendRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendReply:
        token = next((v for k, v in context.invocation_metadata() if k == SESSION_KEY), None)
        if token not in self.tokens:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no session")
        return pb.SendReply(message_id=next(self.ids), sent_at_ms=time.time_ns() // 1_000_000)

    async def connect(
        self, requests: AsyncIterator[pb.ClientMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ServerMessage]:
        async for message in requests:
            kind = message.WhichOneof("request")
            if kind == "send":
                reply = pb.SendReply(
                    message_id=next(self.ids), sent_at_ms=time.time_ns() // 1_000_000
                )
                yield pb.ServerMessage(request_id=message.request_id, sent=reply)
            elif kind in ("signup", "login"):
                yield pb.ServerMessage(request_id=message.request_id, logged_in=pb.LoginReply())
            else:
                error = pb.StreamError(message=f"null_chat does not serve {kind}")
                yield pb.ServerMessage(request_id=message.request_id, error=error)


async def start(host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server and the bound port."""
    chat = NullChat()
    unary = grpc.method_handlers_generic_handler(
        "wirechat.v1.Chat",
        {
            "Signup": grpc.unary_unary_rpc_method_handler(
                chat.signup, pb.SignupRequest.FromString, pb.LoginReply.SerializeToString
            ),
            "Send": grpc.unary_unary_rpc_method_handler(
                chat.send, pb.SendRequest.FromString, pb.SendReply.SerializeToString
            ),
        },
    )
    stream = grpc.method_handlers_generic_handler(
        "wirechat.v1.ChatStream",
        {
            "Connect": grpc.stream_stream_rpc_method_handler(
                chat.connect, pb.ClientMessage.FromString, pb.ServerMessage.SerializeToString
            ),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((unary, stream))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
