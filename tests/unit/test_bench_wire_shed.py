"""measure_sizes measures again when the server sheds one of its requests for load, and
only then: a refusal for load says nothing about bytes, any other error is the answer."""

from __future__ import annotations

import asyncio

import pytest

from bench import wire
from core.errors import LimitExceeded, Overloaded

ROWS = [{"op": "send"}]


def attempts(monkeypatch, *outcomes):
    """Make each measurement raise (or return) the next of ``outcomes``; return their log."""
    seen: list[object] = []
    pending = list(outcomes)

    async def measure(*args):
        outcome = pending.pop(0)
        seen.append(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(wire, "_measure", measure)
    monkeypatch.setattr(wire, "SHED_PAUSE", 0.0)
    return seen


def measure():
    return asyncio.run(wire.measure_sizes("custom", ("127.0.0.1", 1)))


def test_a_shed_request_is_measured_again(monkeypatch) -> None:
    shed = Overloaded("the server is overloaded (requests wait 255 ms); nothing was done")
    seen = attempts(monkeypatch, shed, ROWS)
    assert measure() == ROWS
    assert len(seen) == 2


def test_a_limit_exceeded_is_not_read_for_its_words(monkeypatch) -> None:
    """Every product client raises Overloaded for a refusal for load (custom version 4,
    WebSocket 2.2), so a LimitExceeded is an answer whatever its sentence says."""
    words = LimitExceeded("the server is overloaded (it runs 210 ms behind); nothing was done")
    seen = attempts(monkeypatch, words, ROWS)
    with pytest.raises(LimitExceeded):
        measure()
    assert len(seen) == 1


def test_shedding_is_retried_a_bounded_number_of_times(monkeypatch) -> None:
    sheds = [Overloaded(f"the server is overloaded ({i})") for i in range(wire.SHED_RETRIES + 1)]
    seen = attempts(monkeypatch, *sheds, ROWS)
    with pytest.raises(Overloaded):
        measure()
    assert len(seen) == wire.SHED_RETRIES + 1


def test_other_refusals_are_not_retried(monkeypatch) -> None:
    seen = attempts(monkeypatch, LimitExceeded("the body is longer than 4096 bytes"), ROWS)
    with pytest.raises(LimitExceeded, match="longer"):
        measure()
    assert len(seen) == 1
