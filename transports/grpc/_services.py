"""How both gRPC servers (``grpc`` and ``grpc-stream``) register their services: as generic
handlers only, never as grpc.aio "registered methods".

Why. grpc.aio's server loop keeps one outstanding request-call future per registered method
plus one for everything else, and takes each call with ``asyncio.wait`` over all of them:
every call pays a Python ``wait`` (a set, an ``iscoroutine`` check, a done-callback added and
removed per future) whose cost grows with the number of registered methods. The generated
``add_*_to_server`` functions register every method of their service, so wirechat.v1.Chat
(15 methods), health (2) and reflection (1) made it 19 futures per call. Measured on the unary
``Send`` (grpcio 1.85.3, callgrind, 300 calls, memory store): 566.7k instructions per call
with them, 456.6k with generic handlers only (-19 %); server CPU per send -10 us (A/B,
interleaved). grpc_echo, the floor, registers nothing.

What changes for a caller: nothing on the wire. Inside, grpc-core queues every call that
waits for the loop in one queue (the unregistered one) instead of one queue per method, so
calls are taken in arrival order whatever their method, and ``grpc.server.max_pending_requests``
bounds them all together (``_limits.PENDING_CALLS``).
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc


class _GenericOnly:
    """A grpc.aio server as a generated ``add_*_to_server`` function sees it: its handlers are
    added as generic handlers, its method registrations dropped (module docstring)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass


def add_service(server: grpc.aio.Server, service: str, handlers: dict[str, Any]) -> None:
    """Serve ``handlers`` (method name -> grpc method handler) as ``service``."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


async def add_health_and_reflection(
    server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, service: str
) -> None:
    """The standard health service (SERVING for "" and ``service``) and server reflection
    (``service``, health and reflection itself), registered after ``service``: a call finds
    its handler in the first generic handler that knows it, so the chat service's own calls
    are matched first."""
    generic = _GenericOnly(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, generic)
    for name in ("", service):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    names = (service, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), generic
    )


__all__ = ["add_health_and_reflection", "add_service"]
