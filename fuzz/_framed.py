"""The connection states a framed codec (custom, protobuf-tcp) is fuzzed in, built by walking
the handshake with the codec itself, and the seed mapping of PROTOCOL.md examples to them.

A state per protocol version on each side, since each version has message tables of its own
(version 2 grows SENT and DELIVER, version 3 SIGNED_UP, LOGGED_IN and DELETE_ACCOUNT, version 4
adds the error code OVERLOADED): an example tagged ``v3`` is fed to a version 3 connection, where
its layout is the one that decodes.
"""

from __future__ import annotations

import re
from typing import Any

from _harness import Scenario

from transports.custom._events import Hello, Welcome
from transports.custom._wire import MAX_BODY, MAX_FRAME, MAX_RECIPIENTS, SUPPORTED_VERSIONS

#: The versions a connection is fuzzed at after its handshake (the codec's own list).
VERSIONS = SUPPORTED_VERSIONS
FRESH_SERVER = 0
#: A client that has sent HELLO, offering every version, and waits for WELCOME.
CLIENT_GREETED = 2 * len(VERSIONS) + 1
_VERSION_TAG = re.compile(r"v(\d+)")


def server_state(version: int) -> int:
    """The scenario index of a server after the handshake of ``version``."""
    return VERSIONS.index(version) + 1


def client_state(version: int) -> int:
    """The scenario index of a client after the handshake of ``version``."""
    return len(VERSIONS) + VERSIONS.index(version) + 1


def scenarios(connection: Any, role: Any) -> list[Scenario]:
    """Every state, in index order, for the codec class ``connection`` and its ``Role`` enum."""

    def pair(version: int) -> tuple[Any, Any]:
        client, server = connection(role.CLIENT), connection(role.SERVER)
        server.receive_data(client.send(Hello(1, version)))
        server.next_event()
        client.receive_data(server.send(Welcome(version, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)))
        client.next_event()
        return client, server

    def greeted() -> Any:
        client = connection(role.CLIENT)
        client.send(Hello(VERSIONS[0], VERSIONS[-1]))
        return client

    def server(version: int) -> Scenario:
        return Scenario(f"server, version {version}", lambda: pair(version)[1])

    def client(version: int) -> Scenario:
        return Scenario(f"client, version {version}", lambda: pair(version)[0])

    return [
        Scenario("fresh server", lambda: connection(role.SERVER)),
        *(server(v) for v in VERSIONS),
        *(client(v) for v in VERSIONS),
        Scenario("client after HELLO", greeted),
    ]


def scenario_of(words: list[str]) -> int:
    """Which state a PROTOCOL.md example (its info words) arrives in: its version is its last
    word's ``vN`` tag, else 1."""
    tag = _VERSION_TAG.fullmatch(words[-1])
    version = int(tag[1]) if tag and int(tag[1]) in VERSIONS else VERSIONS[0]
    if words[0] == "c2s":
        if "HELLO" in words or "first" in words:
            return FRESH_SERVER
        return server_state(version)
    if "WELCOME" in words:
        return CLIENT_GREETED
    return client_state(version)
