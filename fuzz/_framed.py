"""The connection states a framed codec (custom, protobuf-tcp) is fuzzed in, built by walking
the handshake with the codec itself, and the seed mapping of PROTOCOL.md examples to them."""

from __future__ import annotations

from typing import Any

from _harness import Scenario

from transports.custom._events import Hello, Welcome
from transports.custom._wire import MAX_BODY, MAX_FRAME, MAX_RECIPIENTS

FRESH_SERVER, SERVER_V1, SERVER_V2, CLIENT_V1, CLIENT_V2, CLIENT_GREETED = range(6)


def scenarios(connection: Any, role: Any) -> list[Scenario]:
    """The six states, for the codec class ``connection`` and its ``Role`` enum."""

    def pair(version: int) -> tuple[Any, Any]:
        client, server = connection(role.CLIENT), connection(role.SERVER)
        server.receive_data(client.send(Hello(1, version)))
        server.next_event()
        client.receive_data(server.send(Welcome(version, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)))
        client.next_event()
        return client, server

    def greeted() -> Any:
        client = connection(role.CLIENT)
        client.send(Hello(1, 2))
        return client

    return [
        Scenario("fresh server", lambda: connection(role.SERVER)),
        Scenario("server, version 1", lambda: pair(1)[1]),
        Scenario("server, version 2", lambda: pair(2)[1]),
        Scenario("client, version 1", lambda: pair(1)[0]),
        Scenario("client, version 2", lambda: pair(2)[0]),
        Scenario("client after HELLO", greeted),
    ]


def scenario_of(words: list[str]) -> int:
    """Which state a PROTOCOL.md example (its info words) arrives in."""
    v2 = words[-1] == "v2"
    if words[0] == "c2s":
        if "HELLO" in words or "first" in words:
            return FRESH_SERVER
        return SERVER_V2 if v2 else SERVER_V1
    if "WELCOME" in words:
        return CLIENT_GREETED
    return CLIENT_V2 if v2 else CLIENT_V1
