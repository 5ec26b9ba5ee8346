"""The bench's byte counter for protobuf-tcp (registry entry ``protobuf-tcp``).

protobuf-tcp carries chat.proto's messages in the custom protocol's frames (length varint |
opcode | request id varint | body, the same opcodes), so its counter is the custom one
(``transports/custom/_bytes.py``) with protobuf-tcp's own codec checking every frame.

Breakdown: payload = the protobuf body (HELLO's keeps the custom positional layout);
framing = length varint, opcode and request id varint; control = whole HELLO, WELCOME, PING,
PONG frames and ERROR frames on request id 0; headers = 0.
"""

from __future__ import annotations

from transports.custom._bytes import CustomWireAccount
from transports.protobuf_tcp._codec import Connection


class ProtobufTcpWireAccount(CustomWireAccount):
    """One direction of a protobuf-tcp connection, each frame decoded by its codec."""

    codec = Connection


def accounts() -> tuple[ProtobufTcpWireAccount, ProtobufTcpWireAccount]:
    """The (client-to-server, server-to-client) counters of one protobuf-tcp connection."""
    return (
        ProtobufTcpWireAccount(client_to_server=True),
        ProtobufTcpWireAccount(client_to_server=False),
    )


__all__ = ["ProtobufTcpWireAccount", "accounts"]
