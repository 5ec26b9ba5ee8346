"""A group commit that fails on demand: the SQLite writer's staging raises for any group holding
a send whose body is POISON, as a disk I/O error would, so the writer rolls that group back
(the pipelined-send tests of custom and websocket check what the client then sees)."""

from __future__ import annotations

from typing import Any

import pytest

from core.sqlite_send import SendStager

POISON = "poison"


def fail_groups_with_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on (for the test), a group holding a send of body POISON fails to commit."""
    staged = SendStager.__call__

    def failing(self: SendStager, db: Any, sends: list[Any]) -> list[Any]:
        if any(send[1] == POISON for send in sends):
            raise RuntimeError("disk I/O error")  # what the writer rolls a group back for
        return staged(self, db, sends)

    monkeypatch.setattr(SendStager, "__call__", failing)
