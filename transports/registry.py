"""The transport registry: the one place that knows which transports exist.

Each transport is one folder (a package) and one :class:`Entry` below. Everything else (the
``wirechat server`` listeners and flags, the console and web clients, the conformance fixture,
the bench's steps, byte counters, tables and plots, the Makefile) iterates over ``ENTRIES``.

An entry holds what can be known without importing the transport (so ``wirechat --help`` never
loads grpc); :meth:`Entry.load` imports its package, which must provide :class:`Transport`.
Adding a transport is one new folder plus one entry here; nothing else changes (a test adds a
throwaway sixth transport to a scratch copy and checks the CLI, the conformance suite and the
bench pick it up).

The ladder (DESIGN.md, "The transport ladder"): the wire transports are listed in ladder order,
each changing one thing from the rung before it, which ``Entry.isolates`` names. The bench's
"where the cost goes" table and plot read the steps from here.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from core.client import ChatClient
    from core.service import ChatService
    from transports._guard import Guard
    from transports._tls import ClientTls, ServerTls


class Listener(Protocol):
    """What ``start_server`` returns: ``address`` is what ``open_client`` takes
    (``(host, port)`` for a wire transport); ``await close()`` stops it."""

    address: Any

    async def close(self) -> None: ...


class WireAccount(Protocol):
    """One direction of one connection, as the bench's counting relay sees it: it is fed the
    bytes in order, splits them into whole frames and classifies every byte (payload,
    framing, headers, control). ``pending`` is the bytes of a frame not yet complete."""

    @property
    def pending(self) -> int: ...

    def receive_data(self, data: bytes) -> None: ...


class Transport(Protocol):
    """What a transport's package provides (module-level functions)."""

    def start_server(
        self,
        service: ChatService,
        host: str,
        port: int,
        *,
        guard: Guard | None = None,
        tls: ServerTls | None = None,
    ) -> Awaitable[Listener]:
        """Listen on (host, port) (port 0: any) and serve ``service``, counting connections
        and buffered bytes against ``guard`` (one per server process; None: a private one);
        over TLS with ``tls`` (transports/_tls.py; the in-process loopback ignores it)."""
        ...

    def open_client(
        self, address: Any, *, auto_ack: bool = True, tls: ClientTls | None = None
    ) -> ChatClient:
        """A ChatClient for a server of this transport at ``address`` (not yet connected);
        over TLS, trusting what ``tls`` names, when given."""
        ...


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # on the command line, in test ids, in results.json
    label: str  # in tables and plot legends
    package: str  # the importable package implementing Transport
    summary: str  # one line for --help and the README
    wire: bool = True  # False: in-process, no socket (loopback)
    default_port: int | None = None  # what `make server` and the clients use by default
    on_ladder: bool = False  # a rung of the ladder (in ENTRIES order); else it stands beside it
    isolates: str = ""  # what this rung changes from the previous one on the ladder
    reference: str | None = None  # the bench's bare reference row read as this one's floor
    contract: str = ""  # where the wire contract is documented, relative to the repository
    #: "module:callable" of the bench's byte counters for one connection: ``factory()`` returns
    #: the (client-to-server, server-to-client) WireAccount pair (they may share state: gRPC's
    #: flow-control attribution needs both directions). It lives beside its transport.
    wire_account: str = ""

    def load(self) -> Transport:
        return cast(Transport, importlib.import_module(self.package))

    def wire_account_factory(self) -> Callable[..., WireAccount]:
        """The bench's byte counter class/function for this transport (imports it)."""
        module, _, attr = self.wire_account.partition(":")
        if not module or not attr:
            raise ValueError(f"transport {self.name!r} has no byte counter for the bench")
        return cast("Callable[..., WireAccount]", getattr(importlib.import_module(module), attr))


ENTRIES: tuple[Entry, ...] = (
    Entry(
        "loopback",
        "loopback (no wire)",
        "core.loopback",
        "in-process calls of the chat core; the zero-wire baseline",
        wire=False,
    ),
    Entry(
        "custom",
        "custom binary",
        "transports.custom",
        "hand-designed positional binary frames on TCP",
        on_ladder=True,
        default_port=7000,
        isolates="",
        reference="tcp_echo",
        contract="transports/custom/PROTOCOL.md",
        wire_account="transports.custom._bytes:accounts",
    ),
    Entry(
        "protobuf-tcp",
        "protobuf on TCP",
        "transports.protobuf_tcp",
        "chat.proto messages in the custom protocol's varint frames on TCP",
        on_ladder=True,
        default_port=7002,
        isolates="encoding: chat.proto protobuf instead of positional fields",
        reference="tcp_echo",
        contract="transports/protobuf_tcp/PROTOCOL.md",
        wire_account="transports.protobuf_tcp._bytes:accounts",
    ),
    Entry(
        "grpc-stream",
        "gRPC bidi stream",
        "transports.grpc_stream",
        "one gRPC bidirectional stream per session for every command and push",
        on_ladder=True,
        default_port=7003,
        isolates="HTTP/2 and the gRPC runtime: DATA frames, flow control, grpcio",
        reference="grpc_stream_echo",
        contract="transports/grpc/chat.proto",
        wire_account="transports.grpc._bytes:accounts",
    ),
    Entry(
        "grpc",
        "gRPC unary",
        "transports.grpc",
        "one gRPC unary call per command, session token in metadata, a stream for pushes",
        on_ladder=True,
        default_port=7001,
        isolates="one call per command: HEADERS, metadata and trailers on every request",
        reference="grpc_echo",
        contract="transports/grpc/chat.proto",
        wire_account="transports.grpc._bytes:accounts",
    ),
    Entry(
        "websocket",
        "WebSocket + JSON",
        "transports.websocket",
        "RFC 6455 WebSocket, JSON text messages, one connection per session",
        default_port=7004,
        isolates="beside the ladder: what a browser-facing chat would pick",
        reference="ws_echo",
        contract="transports/websocket/CONTRACT.md",
        wire_account="transports.websocket._bytes:accounts",
    ),
)

BY_NAME: dict[str, Entry] = {entry.name: entry for entry in ENTRIES}
#: Every transport's name, loopback first; the wire transports in ladder order.
TRANSPORTS: tuple[str, ...] = tuple(BY_NAME)
#: Transports that speak over a socket (everything but the in-process loopback).
WIRE_TRANSPORTS: tuple[str, ...] = tuple(e.name for e in BY_NAME.values() if e.wire)
#: The rungs of the ladder, in order (websocket stands beside it).
LADDER: tuple[str, ...] = tuple(e.name for e in ENTRIES if e.on_ladder)


def entry(name: str) -> Entry:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}"
        ) from None


def get(name: str) -> Transport:
    """The transport's implementation (imports it on first use)."""
    return entry(name).load()


__all__ = [
    "BY_NAME",
    "ENTRIES",
    "LADDER",
    "TRANSPORTS",
    "WIRE_TRANSPORTS",
    "Entry",
    "Listener",
    "Transport",
    "WireAccount",
    "entry",
    "get",
]
