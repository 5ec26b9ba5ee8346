"""grpc_echo: a bare grpc.aio server with one unary ``Echo(bytes) -> bytes``.

No generated code: a generic handler with no (de)serialisers hands the request bytes to the
handler and sends the returned bytes as the response message, so this is gRPC's cost with
nothing of ours in it. The client side is ``channel.unary_unary(GRPC_ECHO_METHOD)``.
"""

from __future__ import annotations

import grpc

from bench.refs import GRPC_ECHO_METHOD

SERVICE, METHOD = GRPC_ECHO_METHOD.strip("/").split("/")


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def start(host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server and the bound port."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
