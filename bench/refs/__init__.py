"""Reference servers: the floors each transport is read against.

``tcp_echo``   a minimal length-prefixed echo on asyncio + uvloop, the custom server's loop;
``grpc_echo``  a bare grpc.aio service with one unary Echo(bytes) -> bytes (generic handler,
               identity serialisation: the payload crosses as raw bytes, no protobuf wrapper);
``tcp_floor``  blocking sockets, a thread per connection: the cheapest Python round trip.

Each runs as its own process (``python -m bench.refs NAME``) and announces itself on stderr the
way ``wirechat server`` does (``listening: NAME host:port`` then ``ready:``), so the bench starts
it on port 0 and learns the port. The TCP references share one framing: a 4-byte big-endian
length, then that many payload bytes, echoed back unchanged.
"""

from __future__ import annotations

REFS: tuple[str, ...] = ("tcp_echo", "grpc_echo", "tcp_floor")

#: Frame header of tcp_echo and tcp_floor: payload length, 4 bytes, big-endian.
HEADER_BYTES = 4

#: Largest payload the echo servers accept; the bench sends 32 B. A bigger length is a broken
#: peer, and the connection is closed rather than buffering it.
MAX_PAYLOAD = 1 << 20

#: gRPC method path of grpc_echo.
GRPC_ECHO_METHOD = "/wirechat.bench.Echo/Echo"

__all__ = ["GRPC_ECHO_METHOD", "HEADER_BYTES", "MAX_PAYLOAD", "REFS"]
