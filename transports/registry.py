"""Transport registry: name -> module with ``start_server`` and ``open_client``.

Each module provides
    async def start_server(service: ChatService, host: str, port: int) -> server
        ``server.address`` is what open_client needs (``(host, port)`` for wire transports,
        the service itself for loopback); ``await server.close()`` stops it.
    def open_client(address, *, auto_ack: bool = True) -> ChatClient

Modules are imported on first use, so the custom transport never loads grpc. Adding a transport
is one new folder plus one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TRANSPORTS: dict[str, str] = {
    "loopback": "core.loopback",
    "custom": "transports.custom",
    "grpc": "transports.grpc",
}

#: Transports that speak over a socket (everything but the in-process loopback).
WIRE_TRANSPORTS = tuple(name for name in TRANSPORTS if name != "loopback")


def get(name: str) -> ModuleType:
    try:
        return importlib.import_module(TRANSPORTS[name])
    except KeyError:
        raise ValueError(
            f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}"
        ) from None
