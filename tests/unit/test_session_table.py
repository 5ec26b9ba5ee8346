"""The session lifecycle table: every (state, event) pair either moves as listed or raises."""

from __future__ import annotations

import itertools

import pytest

from core.session import TRANSITIONS, Event, InvalidTransition, Session, State


@pytest.mark.parametrize("state,event", list(itertools.product(State, Event)))
def test_every_pair_is_either_a_listed_transition_or_an_error(state, event):
    session = Session()
    session.state = state
    if (state, event) in TRANSITIONS:
        assert session.fire(event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidTransition):
            session.fire(event)
        assert session.state is state  # a refused event changes nothing


def test_closed_is_final():
    assert {after for (before, _), after in TRANSITIONS.items() if before is State.CLOSED} == {
        State.CLOSED
    }
