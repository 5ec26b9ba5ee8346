"""Message sizes without the transport: the custom codec's body against protobuf's bytes.

For the same logical message (same names, body, ids, timestamp) this module encodes the
custom protocol's frame with its codec and the gRPC message with ``SerializeToString()``, so
the report can split gRPC's cost per operation into what protobuf costs and what HTTP/2 costs
(the wire rows of ``bench/wire.py`` give the totals; ``grpc c2s_payload`` there equals
``protobuf_bytes`` here for the same message).

Row keys (one row per message: an op, a direction, and for send/deliver a body size, text kind
and recipient count)
    op, direction ("c2s" | "s2c"), body_bytes, recipients, text  -- as in bench/wire.py
    text_bytes        UTF-8 bytes of every string field (names, password, pattern, body): the
                      application's own bytes, which any encoding must carry.
    custom_message    the custom protocol's message (opcode name), or None if it sends none
                      (ACK has no reply: it is fire-and-forget).
    custom_bytes      its body: the positional fields after the request id (bench/wire.py's
                      "payload" for the custom protocol).
    custom_frame_bytes  the whole frame: length varint + opcode + request id varint + body.
    protobuf_message  the gRPC message type, or None if gRPC sends none.
    protobuf_bytes    ``len(message.SerializeToString())`` (bench/wire.py's "payload" for gRPC;
                      0 for an empty message such as LogoutRequest, which is still sent).
    grpc_message_bytes  protobuf_bytes + the 5-byte gRPC message prefix.

Fixed values (so both encodings carry the same content): usernames of 12 characters, a
16-byte password, request id 1 (a fresh connection's first request), message id 1000 (a
2-byte varint in both encodings, as in the wire bench's steady rows: message ids 128..16383),
timestamp 1764000000000 ms (6 bytes), a 22-character session token in gRPC's LoginReply
(the custom protocol keeps the session in the connection instead).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from bench.config import QUICK_SIZES, RECIPIENT_COUNTS, SIZES

#: The password every bench account uses (16 bytes).
PASSWORD = "wirechat-bench-1"
MESSAGE_ID = 1_000
SENT_AT_MS = 1_764_000_000_000
SESSION_TOKEN = "A" * 22  # secrets.token_urlsafe(16) is 22 characters
REQUEST_ID = 1
LIST_MATCHES = 10  # names a list_accounts page returns in the bench scenario

_ASCII = "The quick brown fox jumps over the lazy dog. "
# Cyrillic (2 bytes), CJK (3 bytes) and emoji (4 bytes), no ASCII: a body of these is the
# non-ASCII case at the same byte size.
_NON_ASCII = "Привет😀мир中文🙂ёж"


def username(tag: str, role: str, index: int) -> str:
    """A bench account name: ``wc`` + 6-character tag + role letter + 3 digits = 12 chars."""
    name = f"wc{tag}{role}{index:03d}"
    if len(name) != 12:
        raise ValueError(f"bench usernames are 12 characters: {name!r}")
    return name


def make_body(size: int, text: str) -> str:
    """A message body of exactly ``size`` UTF-8 bytes; ``text`` is "ascii" or "utf8".

    "utf8" bodies are Cyrillic, CJK and emoji; up to 3 trailing bytes may be filled with
    2-byte Cyrillic or, for an odd leftover, one ASCII letter, to hit the size exactly.
    """
    if text == "ascii":
        repeats = size // len(_ASCII) + 1
        return (_ASCII * repeats)[:size]
    if text != "utf8":
        raise ValueError(f"text is 'ascii' or 'utf8', not {text!r}")
    if size < 2:
        raise ValueError("a non-ASCII body needs at least 2 bytes")
    parts: list[str] = []
    left = size
    for char in itertools.cycle(_NON_ASCII):
        width = len(char.encode())
        if left - width < 2 and left - width != 0:
            break  # keep at least 2 bytes, or exactly 0, for the tail below
        parts.append(char)
        left -= width
        if not left:
            break
    while left >= 2:
        parts.append("ж")
        left -= 2
    parts.append("x" * left)
    body = "".join(parts)
    assert len(body.encode()) == size
    return body


# -- encoders -----------------------------------------------------------------------------------
class _CustomEncoder:
    """A client and a server codec past the handshake, to encode messages in either direction."""

    def __init__(self) -> None:
        from transports.custom import Connection, Hello, Role, Welcome
        from transports.custom._wire import MAX_BODY, MAX_FRAME, MAX_RECIPIENTS, PROTOCOL_VERSION

        self.client = Connection(Role.CLIENT)
        self.server = Connection(Role.SERVER)
        self.server.receive_data(self.client.send(Hello()))
        self.server.next_event()
        welcome = Welcome(PROTOCOL_VERSION, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
        self.client.receive_data(self.server.send(welcome))
        self.client.next_event()

    def sizes(self, direction: str, event: Any) -> tuple[str, int, int]:
        """(opcode name, body bytes, frame bytes) of ``event`` sent in ``direction``."""
        from transports.custom import OPCODE_OF
        from transports.custom._wire import varint_size

        frame = (self.client if direction == "c2s" else self.server).send(event)
        length_size = next(i for i, byte in enumerate(frame) if byte < 0x80) + 1
        envelope = length_size + 1 + varint_size(getattr(event, "request_id", 0))
        return OPCODE_OF[type(event)].name, len(frame) - envelope, len(frame)


def _utf8_len(*texts: str | Iterable[str]) -> int:
    total = 0
    for text in texts:
        if isinstance(text, str):
            total += len(text.encode())
        else:
            total += sum(len(t.encode()) for t in text)
    return total


def messages(
    sizes: Iterable[int], recipient_counts: Iterable[int]
) -> Iterable[tuple[dict[str, Any], Any, Any, int]]:
    """(labels, custom event or None, protobuf message or None, text bytes) per message: the
    messages of the wire scenario, with the fixed content described in the module docstring.
    (Also used by tests/bench_micro to time both codecs on the same messages.)"""
    import transports.custom as ev
    from transports.grpc._generated import chat_pb2 as pb

    tag = "0a1b2c"
    user = username(tag, "s", 0)
    pattern = f"wc{tag}r00?"
    listed = [username(tag, "r", i) for i in range(LIST_MATCHES)]
    rid = REQUEST_ID

    def labels(op: str, direction: str, **extra: Any) -> dict[str, Any]:
        return {
            "op": op,
            "direction": direction,
            "body_bytes": None,
            "recipients": None,
            "text": None,
        } | extra

    credentials = (user, PASSWORD)
    yield (
        labels("signup", "c2s"),
        ev.Signup(rid, *credentials),
        pb.SignupRequest(username=user, password=PASSWORD),
        _utf8_len(*credentials),
    )
    yield (
        labels("signup", "s2c"),
        ev.SignedUp(rid, 0),
        pb.LoginReply(session_token=SESSION_TOKEN, username=user, pending=0),
        0,
    )
    yield (
        labels("login", "c2s"),
        ev.Login(rid, *credentials),
        pb.LoginRequest(username=user, password=PASSWORD),
        _utf8_len(*credentials),
    )
    yield (
        labels("login", "s2c"),
        ev.LoggedIn(rid, 0),
        pb.LoginReply(session_token=SESSION_TOKEN, username=user, pending=0),
        0,
    )
    yield labels("login", "c2s", note="Subscribe"), None, pb.SubscribeRequest(), 0
    yield (
        labels("list_accounts", "c2s"),
        ev.ListAccounts(rid, pattern, "", 0),
        pb.ListAccountsRequest(pattern=pattern),
        _utf8_len(pattern),
    )
    yield (
        labels("list_accounts", "s2c"),
        ev.Accounts(rid, tuple(listed), False),
        pb.ListAccountsReply(usernames=listed, more=False),
        _utf8_len(listed),
    )
    points = [(size, text, 1) for text in ("ascii", "utf8") for size in sizes]
    points += [(32, "ascii", n) for n in recipient_counts if n != 1]
    for size, text, count in points:
        if text == "utf8" and size < 2:
            continue
        body = make_body(size, text)
        names = [username(tag, "r", i) for i in range(count)]
        tags = {"body_bytes": size, "recipients": count, "text": text}
        yield (
            labels("send", "c2s", **tags),
            ev.Send(rid, tuple(names), body),
            pb.SendRequest(recipients=names, body=body),
            _utf8_len(names, body),
        )
        yield (
            labels("send", "s2c", **tags),
            ev.Sent(rid, MESSAGE_ID, SENT_AT_MS),
            pb.SendReply(message_id=MESSAGE_ID, sent_at_ms=SENT_AT_MS),
            0,
        )
        yield (
            labels("deliver", "s2c", **tags),
            ev.Deliver(MESSAGE_ID, SENT_AT_MS, user, body),
            pb.Delivery(message_id=MESSAGE_ID, sent_at_ms=SENT_AT_MS, sender=user, body=body),
            _utf8_len(user, body),
        )
    yield (labels("ack", "c2s"), ev.Ack((MESSAGE_ID,)), pb.AckRequest(message_ids=[MESSAGE_ID]), 0)
    yield labels("ack", "s2c"), None, pb.AckReply(), 0
    yield labels("logout", "c2s"), ev.Logout(rid), pb.LogoutRequest(), 0
    yield labels("logout", "s2c"), ev.LoggedOut(rid), pb.LogoutReply(), 0
    yield (
        labels("delete_account", "c2s"),
        ev.DeleteAccount(rid, user),
        pb.DeleteAccountRequest(username=user),
        _utf8_len(user),
    )
    yield labels("delete_account", "s2c"), ev.Deleted(rid), pb.DeleteAccountReply(), 0


def payload_sizes(
    sizes: Iterable[int] = SIZES,
    recipient_counts: Iterable[int] = RECIPIENT_COUNTS,
) -> list[dict[str, Any]]:
    """Custom-codec body vs protobuf bytes for every message of the wire scenario, for bodies
    of ``sizes`` bytes. See the module docstring for keys."""
    chosen = tuple(sizes)
    encoder = _CustomEncoder()
    rows = []
    for labels, event, message, text_bytes in messages(chosen, recipient_counts):
        row = dict(labels)
        row.setdefault("note", None)
        row["text_bytes"] = text_bytes
        if event is None:
            row |= {"custom_message": None, "custom_bytes": None, "custom_frame_bytes": None}
        else:
            name, body, frame = encoder.sizes(labels["direction"], event)
            row |= {"custom_message": name, "custom_bytes": body, "custom_frame_bytes": frame}
        if message is None:
            row |= {"protobuf_message": None, "protobuf_bytes": None, "grpc_message_bytes": None}
        else:
            size = len(message.SerializeToString())
            row |= {
                "protobuf_message": type(message).__name__,
                "protobuf_bytes": size,
                "grpc_message_bytes": size + 5,
            }
        rows.append(row)
    return rows


_messages = messages  # the name tests/bench_micro imported first

__all__ = [
    "MESSAGE_ID",
    "PASSWORD",
    "QUICK_SIZES",
    "SENT_AT_MS",
    "SIZES",
    "make_body",
    "messages",
    "payload_sizes",
    "username",
]
