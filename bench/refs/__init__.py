"""Reference servers: the floors each transport is read against (a transport's registry entry
names its own, ``Entry.reference``), the lean reference client and the lean load generator.

``tcp_echo``          a minimal length-prefixed echo on asyncio + uvloop, the custom server's loop;
``grpc_echo``         a bare grpc.aio service with one unary Echo(bytes) -> bytes (generic
                      handler, identity serialisation: raw bytes, no protobuf wrapper);
``grpc_stream_echo``  the same on one open bidi stream (grpc-stream's floor);
``ws_echo``           a bare ``websockets`` echo (websocket's floor);
``tcp_floor``         blocking sockets, a thread per connection: the cheapest Python round trip;
``null_chat``         chat.proto served with no chat behind it (protobuf, the session metadata,
                      Chat.Send and ChatStream.Connect answered at once): the gRPC contract's own
                      floor, paired beside grpc's and grpc-stream's echo (not a row of its own);
``null_frames``       custom's and protobuf-tcp's contracts served with no chat behind them
                      (varint frames, the handshake, each body read and each reply written in
                      the protocol's encoding): their own floor, paired beside tcp_echo likewise;
``null_echo``         writes back whatever arrives, unframed: the cheapest responder, against
                      which the load generators' own ceilings are measured;
``lean_custom``       not a server: the leanest blocking client of the custom protocol, the
                      bench's independent check on its own client (bench/latency.py run_lean);
``lean_load``         not a server: the lean pipelined load generator of the transports in the
                      custom protocol's varint frames (custom, protobuf-tcp), which drives their
                      load rows (``engine`` ``lean-frames``, bench/load.py);
``lean_ws``           not a server: the same generator over masked WebSocket frames, which
                      drives the websocket and ws_echo load rows (``engine`` ``lean-ws``);
``lean_population``   not a server: the population scene's lean sessions of custom and
                      protobuf-tcp (bench/population_members.py), one asyncio Protocol each;
``lean_population_ws`` not a server: the same sessions over WebSocket frames (websocket);
``independent``       not a server: clients written from every transport's contract (custom,
                      protobuf-tcp, websocket, gRPC) with stock libraries, measured against the
                      product's in every bench run (bench/latency.py run_independent: issue 8's
                      p50 cross-check and the ladder's figures; also
                      ``python -m bench.refs.independent`` alone);
``independent_aio``   not a server: the asyncio clients beside them, the floor of any asyncio
                      client (the product's ChatClient is read against it);
``hand_frames``       not a server: custom's and protobuf-tcp's frames by hand, for both;
``clients``           not a server: the clients of the reference servers, one shape for all
                      (``connect``, ``echo``, ``close``; ``echo_client(name, address)``).

Each runs as its own process (``python -m bench.refs NAME``) and announces itself on stderr the
way ``wirechat server`` does (``listening: NAME host:port`` then ``ready:``), so the bench starts
it on port 0 and learns the port. The TCP references share one framing: a 4-byte big-endian
length, then that many payload bytes, echoed back unchanged.
"""

from __future__ import annotations

#: Frame header of tcp_echo and tcp_floor: payload length, 4 bytes, big-endian.
HEADER_BYTES = 4

#: Largest payload the echo servers accept; the bench sends 32 B. A bigger length is a broken
#: peer, and the connection is closed rather than buffering it.
MAX_PAYLOAD = 1 << 20

#: gRPC method path of grpc_echo.
GRPC_ECHO_METHOD = "/wirechat.bench.Echo/Echo"

#: The reference that serves each transport's contract with no chat behind it: what a client
#: of the contract measures against it, over the echo, is what the contract itself costs.
CONTRACT_FLOORS = {
    "custom": "null_frames",
    "protobuf-tcp": "null_frames",
    "grpc": "null_chat",
    "grpc-stream": "null_chat",
}
#: What each transport's floor serves, in words (the targets table).
CONTRACT_WORDS = {
    "custom": "the varint frames, the handshake and the positional bodies of PROTOCOL.md, "
    "each read and written, with no chat behind them",
    "protobuf-tcp": "the varint frames and the handshake, chat.proto's messages parsed and "
    "serialised by the protobuf library, with no chat behind them",
    "grpc": "chat.proto on grpcio with no chat behind it: protobuf, the session metadata, "
    "a deadline",
    "grpc-stream": "chat.proto's stream messages on grpcio's open stream, parsed and "
    "serialised by protobuf, with no chat behind them",
}

#: The transports bench/refs/independent.py has a client of (its ``INDEPENDENT``), named here
#: so the bench's plan can tell without importing grpc and websockets.
INDEPENDENT_TRANSPORTS = ("custom", "protobuf-tcp", "websocket", "grpc-stream", "grpc")

__all__ = [
    "CONTRACT_FLOORS",
    "CONTRACT_WORDS",
    "GRPC_ECHO_METHOD",
    "HEADER_BYTES",
    "INDEPENDENT_TRANSPORTS",
    "MAX_PAYLOAD",
]
