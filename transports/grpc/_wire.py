"""What both ends of the gRPC transport must agree on, besides chat.proto itself.

Each constant is documented in chat.proto's header; a test checks the two agree.
"""

from __future__ import annotations

from core import limits

#: Request metadata carrying the session token (lowercase ASCII, as HTTP/2 requires). It costs
#: 41 bytes on *every* call, not just the first: grpc-core never puts custom metadata in its
#: HPACK dynamic table, so it sends the entry as a literal without indexing, with neither
#: string Huffman-coded (1 + 1 + 16 bytes of key, 1 + 22 of token). Measured on grpcio 1.85:
#: a steady-state request's HEADERS frame is 17 bytes without the entry and 58 bytes with it.
SESSION_KEY = "wirechat-session"

#: Trailing metadata of a failed call: the name of an ErrorReason value in chat.proto.
ERROR_KEY = "wirechat-error"

#: Random bytes in a session token (128 bits); sent as 22 characters of unpadded base64url.
TOKEN_BYTES = 16

# The largest gRPC message either side accepts. The biggest valid request is a Send with a
# maximal body and MAX_RECIPIENTS recipients of maximal length; every string field costs a
# one-byte tag plus a varint length (3 bytes up to 2**21). Responses are smaller (a Delivery
# carries one body and one name). The 1 KiB of headroom lets a body a little over the limit
# reach the core, which refuses it with a clear LIMIT_EXCEEDED rather than gRPC's bare
# "message larger than max". grpc's default limit (4 MiB) would make a hostile client's
# oversized request cost the server 50 times more memory before it is refused.
_STRING_FIELD = 1 + 3
LARGEST_REQUEST_BYTES = (limits.MAX_BODY_BYTES + _STRING_FIELD) + limits.MAX_RECIPIENTS * (
    1 + 1 + limits.MAX_USERNAME_CHARS
)
MAX_MESSAGE_BYTES = LARGEST_REQUEST_BYTES + 1024

#: The largest reply the server sends: gRPC's default receive limit, so that a client with
#: default settings reads every reply. Only history and conversation pages get near it.
MAX_REPLY_BYTES = 4 * 1024 * 1024

#: A history or conversation page holds messages up to this many bytes (always at least one),
#: then stops early with ``more`` set. One entry is at most ~75 KB (a maximal body and 256
#: names) and a page's own fields at most ~18 KB, so a page stays far below MAX_REPLY_BYTES.
PAGE_BUDGET_BYTES = 1024 * 1024

#: A session with no open Subscribe stream and no rpc for this long is closed (seconds). Such
#: sessions exist when a client logs in and never subscribes, or logs out and goes away; the
#: stream is what tells us a subscribed client is still there. The sweep runs four times per
#: period, so expiry happens between 1 and 1.25 periods after the last call.
IDLE_TIMEOUT = 300.0

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    # Requests are small (MAX_MESSAGE_BYTES); replies may be history pages (MAX_REPLY_BYTES).
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_REPLY_BYTES),
    # Fail on a port someone else holds instead of silently sharing it (grpc's Linux default).
    ("grpc.so_reuseport", 0),
    # Ping idle connections so that a client that vanished without closing its socket (a
    # dead host, a dropped network) is noticed: its stream is cancelled and its session
    # closed within keepalive_time + keepalive_timeout. Loopback bench runs send one 17-byte
    # ping per minute per idle connection at most.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_REPLY_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # grpc shares one TCP connection between channels to the same target by default; a
    # ChatClient is one client (a device), so it gets a connection of its own, like a
    # custom-protocol client.
    ("grpc.use_local_subchannel_pool", 1),
)
