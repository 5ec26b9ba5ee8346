"""The client channel both gRPC transports open (``grpc`` and ``grpc-stream``): its target
string, and the wait until it is connected, with a sentence naming what answers instead
when the port does not speak HTTP/2 (``transports._wrong_port``)."""

from __future__ import annotations

import grpc

from transports import _wrong_port
from transports._tls import ClientTls


def target(host: str, port: int) -> str:
    """A gRPC target for ``(host, port)`` (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def wait_ready(
    channel: grpc.aio.Channel, address: tuple[str, int], tls: ClientTls | None, protocol: str
) -> None:
    """Wait until ``channel`` is connected. ConnectionRefusedError if nothing listens at
    ``address``, :class:`~transports._wrong_port.WrongPort` if something other than
    ``protocol`` (e.g. "the grpc-stream protocol") does; the caller bounds the wait."""
    state = channel.get_state(try_to_connect=True)
    while state is not grpc.ChannelConnectivity.READY:
        if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            # refused, or the port speaks something else than HTTP/2: say which
            found = await _wrong_port.probe(*address, tls=tls)
            message = _wrong_port.explain(address, protocol, found, tls=tls is not None)
            if found == "refused":
                raise ConnectionRefusedError(message)
            raise _wrong_port.WrongPort(message)
        if state is grpc.ChannelConnectivity.SHUTDOWN:
            raise ConnectionError("channel closed while connecting")
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)


__all__ = ["target", "wait_ready"]
