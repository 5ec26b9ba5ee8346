"""wirechat over gRPC: ``chat.proto`` is the contract, served by ``grpc.aio``.

    server = await start_server(service, "127.0.0.1", 0)   # server.address == (host, port)
    client = open_client(server.address)                    # core.ChatClient(GrpcTransport(...))

The names below are loaded on first use (PEP 562), so importing this package, or running
``python -m transports.grpc.codegen``, does not import grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transports.grpc.client import GrpcTransport, open_client
    from transports.grpc.servicer import GrpcServer, start_server

__all__ = ["GrpcServer", "GrpcTransport", "open_client", "start_server"]

_HOMES = {
    "GrpcTransport": "transports.grpc.client",
    "open_client": "transports.grpc.client",
    "GrpcServer": "transports.grpc.servicer",
    "start_server": "transports.grpc.servicer",
}


def __getattr__(name: str) -> Any:
    try:
        home = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value
