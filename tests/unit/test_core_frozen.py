"""core.frozen.builder: a faster constructor that must be indistinguishable from the class's
own, default factories included (the server builds StoredMessage and SendResult with it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from core.frozen import builder
from core.store import StoredMessage
from core.types import Delivery, SendResult


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (SendResult, (7, 1_700_000_000_000, ("ghost",), 3)),
        (SendResult, (7, 1_700_000_000_000)),  # the defaults are the class's
        (StoredMessage, (5, 2, {"bob": 3}, {3: 9})),
        (StoredMessage, (5, 2, {"bob": 3})),  # seqs: a new dict from its default factory
        (Delivery, (9, "alice", "hi", 5, ("alice",), False, 2)),
    ],
)
def test_builds_the_same_frozen_value(cls: type, args: tuple[object, ...]) -> None:
    build: Callable[..., object] = builder(cls)
    assert build is not cls  # these classes get the fast path
    made, expected = build(*args), cls(*args)
    assert type(made) is cls
    assert made == expected and repr(made) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__(cls.__slots__[0], 0)  # type: ignore[attr-defined]


def test_a_default_factory_makes_a_new_value_each_time() -> None:
    build = builder(StoredMessage)
    first, second = build(1, 1, {}), build(2, 1, {})
    assert first.seqs == {} and first.seqs is not second.seqs


def test_classes_it_cannot_copy_exactly_get_their_own_constructor() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int = field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("negative")

    for cls in (NoSlots, KeywordOnly, PostInit, int):
        assert builder(cls) is cls
