"""core.frozen.builder as the custom transport uses it: a faster constructor that must be
indistinguishable from the class's own, and ChatClient.send's pre-checks still raised only
when it is awaited."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from core import ChatClient
from core.errors import InvalidArgument, LimitExceeded, NotLoggedIn
from core.frozen import builder
from core.limits import MAX_RECIPIENTS
from core.types import Delivery, SendResult
from transports.custom._events import Send


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (SendResult, (7, 1_700_000_000_000, ("ghost",), 3)),
        (SendResult, (7, 1_700_000_000_000)),  # the defaults are the class's
        (Delivery, (9, "alice", "hi", 5, ("alice",), False, 2)),
        (Send, (1, ("bob",), "hello")),
    ],
)
def test_builds_the_same_frozen_value(cls: type, args: tuple[object, ...]) -> None:
    build: Callable[..., object] = builder(cls)
    assert build is not cls  # these classes get the fast path
    made, expected = build(*args), cls(*args)
    assert type(made) is cls
    assert made == expected and hash(made) == hash(expected) and repr(made) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__(cls.__slots__[0], 0)  # type: ignore[attr-defined]


def test_builds_from_other_arguments_in_one_call() -> None:
    """``builder(cls, params, values)``: the client's request -> event and reply -> result."""

    @dataclass
    class Request:
        recipients: tuple[str, ...]
        body: str

    to_event = builder(Send, "rid, r", ("rid", "r.recipients", "r.body"))
    made = to_event(3, Request(("bob",), "hello"))
    assert type(made) is Send and made == Send(3, ("bob",), "hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__("body", "changed")

    @dataclass(frozen=True)
    class NoSlots:
        a: int
        b: str

    plain = builder(NoSlots, "x", ("x + 1", "str(x)"))  # cannot be copied: calls the class
    assert plain(1) == NoSlots(2, "1")
    with pytest.raises(ValueError, match="one value per field"):
        builder(Send, "rid", ("rid",))


class _Idle:
    """A transport that is never reached: the pre-checks answer first."""

    async def connect(self, events: object) -> None:
        return None

    def request(self, request: object) -> object:
        raise AssertionError(f"the pre-check should have answered {request!r}")

    async def close(self) -> None:
        return None


async def test_send_checks_raise_when_awaited_as_before() -> None:
    client = ChatClient(_Idle())  # type: ignore[arg-type]
    await client.connect()
    pending = client.send([], "hi")  # nothing is raised before the await
    with pytest.raises(NotLoggedIn):
        await pending
    client._logged_in = True  # as after a login (no server here)
    with pytest.raises(InvalidArgument):
        await client.send([], "hi")
    with pytest.raises(LimitExceeded):
        await client.send([f"u{i}" for i in range(MAX_RECIPIENTS + 1)], "hi")
    await client.close()
    with pytest.raises(ConnectionError):
        await client.send(["bob"], "hi")
