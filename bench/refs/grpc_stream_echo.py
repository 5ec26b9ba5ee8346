"""grpc_stream_echo: a bare grpc.aio server with one bidi-streaming ``EchoStream``.

The reference row of the grpc-stream transport: every message the client writes on the open
stream is written back unchanged, so a round trip is one DATA message each way on an HTTP/2
stream that is already open, with nothing of ours in it. A generic handler with no
(de)serialisers hands the handler raw bytes and sends the bytes it writes (no protobuf, no
chat.proto). The handler reads and writes with ``context.read()``/``context.write()``, as the
grpc-stream server does. The client side is ``channel.stream_stream(METHOD)()`` and
``call.write(payload)`` / ``call.read()`` (bench/refs/clients.py).

    python -m bench.refs grpc_stream_echo [--host H] [--port P]
    python -m bench.refs.grpc_stream_echo [--host H] [--port P]
"""

from __future__ import annotations

import sys

import grpc

#: gRPC method path of the echo stream.
METHOD = "/wirechat.bench.Echo/EchoStream"
SERVICE, NAME = METHOD.strip("/").split("/")


async def _echo_stream(requests: object, context: grpc.aio.ServicerContext) -> None:
    read, write = context.read, context.write
    while True:
        payload = await read()
        if payload is grpc.aio.EOF:
            return  # the client half-closed: end with OK
        await write(payload)


async def start(host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server (stop it with ``await server.stop(None)``) and the
    bound port."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {NAME: grpc.stream_stream_rpc_method_handler(_echo_stream)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound


if __name__ == "__main__":
    from bench.refs.__main__ import main

    sys.exit(main(["grpc_stream_echo", *sys.argv[1:]]))
