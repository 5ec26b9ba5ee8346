"""Interference from other processes and other guests: how to tell a disturbed measurement, and
measure again.

Every timing row carries ``other_vcpus``: the work (in vCPUs) that processes other than the
server and the client did while it was measured, and ``steal_vcpus``: the time (in vCPUs) the
hypervisor gave other guests while ours wanted to run (bench.endpoints.CpuMeter). On a 2-vCPU
machine with both of ours pinned, either above NOISY_VCPUS took CPU time from the measurement,
and a wake-up-driven transport suffers far more from that than a CPU-bound one, so a busy
machine (or host) does not just add noise, it biases the comparison. Rows from before steal was
recorded lack it: their other processes' work alone decides.

A disturbed job is run again, up to ``retries`` more times while a run-wide time budget lasts,
and the least disturbed attempt is kept (its rows say how many attempts there were). The
budget keeps a machine that never goes quiet from stretching the run past its time limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.config import NOISY_VCPUS

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]

#: Pause before measuring again, to let a burst of someone else's work pass.
PAUSE_S = 1.0


#: A timing row's figures of work that was not ours while it was measured (vCPUs): other
#: processes' CPU time, the hypervisor's steal. Each is held to NOISY_VCPUS.
INTERFERENCE = ("other_vcpus", "steal_vcpus")


def worst(rows: Sequence[dict[str, Any]], field: str) -> float:
    """The largest ``field`` of these rows; 0 where none was measured."""
    return max((row.get(field) or 0.0 for row in rows), default=0.0)


def disturbance(rows: Sequence[dict[str, Any]]) -> float:
    """The most work not ours (vCPUs) any row of a job saw: other processes' or stolen by the
    hypervisor, whichever is larger; 0 if none was measured."""
    return max(worst(rows, field) for field in INTERFERENCE)


def disturbed(row: dict[str, Any]) -> bool:
    """Work not ours (other processes' or the hypervisor's steal) above NOISY_VCPUS while the
    row was measured."""
    return disturbance([row]) > NOISY_VCPUS


@dataclass
class RetryBudget:
    """Seconds the whole run may spend measuring disturbed jobs again."""

    seconds: float
    spent: float = 0.0

    def allows(self, cost: float) -> bool:
        return self.spent + cost <= self.seconds


def least_disturbed(
    attempt: Callable[[], Rows],
    *,
    retries: int,
    budget: RetryBudget,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> Rows:
    """Run ``attempt`` until its rows are quiet, retries run out or the budget does.

    Returns the rows of the least disturbed attempt, each with ``attempts`` = attempts made.
    A retry is only started if the budget covers another attempt as long as the last one.
    """
    best: Rows | None = None
    made = 0
    while True:
        started = clock()
        rows = attempt()
        made += 1
        if best is None or disturbance(rows) < disturbance(best):
            best = rows
        cost = clock() - started
        if disturbance(best) <= NOISY_VCPUS or made > retries or not budget.allows(cost):
            break
        budget.spent += cost
        log.info(
            "disturbed (%.2f vCPUs of other work or steal); measuring again", disturbance(rows)
        )
        pause(PAUSE_S)
    for row in best:
        row["attempts"] = made
    return best


__all__ = [
    "INTERFERENCE",
    "PAUSE_S",
    "RetryBudget",
    "disturbance",
    "disturbed",
    "least_disturbed",
    "worst",
]
