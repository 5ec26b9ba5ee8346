"""Codec micro-benchmarks: the custom codec against protobuf, message by message.

For every message of the chat protocol (the same messages, with the same content, as the
payload-size table of the bench report: bench/payloads.py builds them) this times

    custom encode    Connection.send(event) -> the whole frame's bytes
    custom decode    Connection.receive_data(frame) + next_event() -> the event
    protobuf encode  message.SerializeToString()
    protobuf decode  MessageType.FromString(data)

so the custom side does a little more (it frames, and checks the handshake state) than the
protobuf side (the message body alone; gRPC adds its 5-byte prefix and HTTP/2 framing later).

``make bench-micro`` runs them with ``--benchmark-enable`` (grouped per message, so each table
compares the two codecs directly). In the normal test run pytest-benchmark is disabled and each
runs once as a plain test that checks the round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bench.payloads import _messages
from transports.custom import Connection, Hello, Role, Welcome
from transports.custom._wire import MAX_BODY, MAX_FRAME, MAX_RECIPIENTS, PROTOCOL_VERSION

BODY_SIZES = (32, 4096)


@dataclass(frozen=True)
class Case:
    name: str
    direction: str  # "c2s" (a client sends it) or "s2c"
    event: Any  # the custom protocol's event
    message: Any  # the equivalent protobuf message


def _cases() -> list[Case]:
    cases = []
    for labels, event, message, _ in _messages(BODY_SIZES, (1,)):
        if event is None or message is None:
            continue  # a message only one protocol sends (Subscribe, AckReply): nothing to pit
        name = f"{labels['op']}-{labels['direction']}"
        if labels.get("body_bytes") is not None:
            name += f"-{labels['body_bytes']}B-{labels['text']}"
        cases.append(Case(name, labels["direction"], event, message))
    return cases


CASES = _cases()


def _open_pair() -> tuple[Connection, Connection]:
    """A client and a server codec past the handshake."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    server.receive_data(client.send(Hello()))
    server.next_event()
    client.receive_data(server.send(Welcome(PROTOCOL_VERSION, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)))
    client.next_event()
    return client, server


def _ends(case: Case) -> tuple[Connection, Connection]:
    """(sender, receiver) of the case's direction."""
    client, server = _open_pair()
    return (client, server) if case.direction == "c2s" else (server, client)


params = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])


@params
def test_custom_encode(benchmark: Any, case: Case) -> None:
    benchmark.group = case.name
    sender, receiver = _ends(case)
    frame = benchmark(sender.send, case.event)
    receiver.receive_data(frame)
    assert receiver.next_event() == case.event


@params
def test_custom_decode(benchmark: Any, case: Case) -> None:
    benchmark.group = case.name
    sender, receiver = _ends(case)
    frame = sender.send(case.event)

    def decode() -> Any:
        receiver.receive_data(frame)
        return receiver.next_event()

    assert benchmark(decode) == case.event


@params
def test_protobuf_encode(benchmark: Any, case: Case) -> None:
    benchmark.group = case.name
    data = benchmark(case.message.SerializeToString)
    assert type(case.message).FromString(data) == case.message


@params
def test_protobuf_decode(benchmark: Any, case: Case) -> None:
    benchmark.group = case.name
    data = case.message.SerializeToString()
    assert benchmark(type(case.message).FromString, data) == case.message


def test_every_message_of_the_protocol_is_covered() -> None:
    ops = {case.name.split("-")[0] for case in CASES}
    assert ops == {
        "signup",
        "login",
        "list_accounts",
        "send",
        "deliver",
        "ack",
        "logout",
        "delete_account",
    }
