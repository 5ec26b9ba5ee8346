"""Disturbed measurements are taken again, within limits, and the quietest one is kept; a
disturbance is other processes' work or the hypervisor's steal, whichever is larger, and a
target resting on a disturbed row says which."""

from __future__ import annotations

import copy
from typing import Any

from bench import targets
from bench.noise import RetryBudget, disturbance, least_disturbed
from tests.unit.test_bench_report import SAMPLE


def rows(*others: float | None) -> list[dict[str, Any]]:
    return [{"op": "send", "other_vcpus": other} for other in others]


class Attempts:
    """Hands out prepared results, one per call, on a fake clock (each call takes 2 s)."""

    def __init__(self, *results: list[dict[str, Any]]) -> None:
        self.results = list(results)
        self.calls = 0
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        self.now += 2.0
        return self.results.pop(0)

    def run(self, retries: int, budget: RetryBudget) -> list[dict[str, Any]]:
        return least_disturbed(
            self, retries=retries, budget=budget, clock=lambda: self.now, pause=self.pauses.append
        )


def test_disturbance_is_the_worst_row() -> None:
    assert disturbance(rows(0.05, 0.6, None)) == 0.6
    assert disturbance(rows(None)) == 0.0
    assert disturbance([]) == 0.0


def test_a_quiet_measurement_is_taken_once() -> None:
    attempts = Attempts(rows(0.02, 0.1))
    budget = RetryBudget(60.0)
    kept = attempts.run(retries=2, budget=budget)
    assert attempts.calls == 1 and budget.spent == 0.0
    assert [row["attempts"] for row in kept] == [1, 1]


def test_a_disturbed_measurement_is_repeated_until_quiet() -> None:
    attempts = Attempts(rows(0.9), rows(0.05), rows(0.0))
    budget = RetryBudget(60.0)
    kept = attempts.run(retries=2, budget=budget)
    assert attempts.calls == 2
    assert kept == [{"op": "send", "other_vcpus": 0.05, "attempts": 2}]
    assert budget.spent == 2.0 and attempts.pauses == [1.0]


def test_the_least_disturbed_attempt_is_kept_when_none_is_quiet() -> None:
    attempts = Attempts(rows(0.6), rows(0.3), rows(0.9))
    kept = attempts.run(retries=2, budget=RetryBudget(60.0))
    assert attempts.calls == 3
    assert kept == [{"op": "send", "other_vcpus": 0.3, "attempts": 3}]


def test_the_run_wide_budget_bounds_the_retries() -> None:
    budget = RetryBudget(3.0)  # room for one more 2-second attempt, not two
    first = Attempts(rows(0.9), rows(0.8))
    first.run(retries=5, budget=budget)
    assert first.calls == 2 and budget.spent == 2.0
    second = Attempts(rows(0.9))
    kept = second.run(retries=5, budget=budget)  # the budget is spent: no retry
    assert second.calls == 1 and kept[0]["attempts"] == 1


def test_no_retries_means_one_attempt() -> None:
    attempts = Attempts(rows(0.9))
    attempts.run(retries=0, budget=RetryBudget(60.0))
    assert attempts.calls == 1


def stolen(*steals: float | None, other: float = 0.02) -> list[dict[str, Any]]:
    return [{"op": "send", "other_vcpus": other, "steal_vcpus": steal} for steal in steals]


def test_steal_disturbs_a_row_as_other_processes_work_does() -> None:
    assert disturbance(stolen(0.4)) == 0.4  # the hypervisor took 0.4 vCPUs: not quiet
    assert disturbance(stolen(0.05, other=0.3)) == 0.3  # the larger of the two
    assert disturbance(stolen(None, 0.1)) == 0.1
    assert disturbance(stolen(0.0, other=0.02)) == 0.02


def test_a_measurement_the_hypervisor_stole_from_is_repeated_until_quiet() -> None:
    attempts = Attempts(stolen(0.5), stolen(0.3), stolen(0.01))
    budget = RetryBudget(60.0)
    kept = attempts.run(retries=2, budget=budget)
    assert attempts.calls == 3
    assert kept == [{"op": "send", "other_vcpus": 0.02, "steal_vcpus": 0.01, "attempts": 3}]


def verdicts_on(transport: str, **figures: float) -> dict[str, dict[str, Any]]:
    """The targets of the sample run with these figures on ``transport``'s round-trip row."""
    results = copy.deepcopy(SAMPLE)
    row = targets.round_trip_row(results, transport)
    assert row is not None
    row.update(figures)
    return {t["name"]: t for t in targets.evaluate_targets(results)}


def test_a_target_resting_on_a_row_the_hypervisor_stole_from_says_so() -> None:
    name = "custom send p50 <= 1.2x tcp_echo p50"
    verdict = verdicts_on("tcp_echo", other_vcpus=0.01, steal_vcpus=0.4)[name]
    assert verdict["disturbed"]
    assert verdict["detail"].endswith("; disturbed: the hypervisor stole 0.40 vCPUs meanwhile")
    both = verdicts_on("tcp_echo", other_vcpus=0.7, steal_vcpus=0.2)[name]["detail"]
    assert both.endswith(
        "disturbed: other processes used 0.70 vCPUs and the hypervisor stole 0.20 vCPUs meanwhile"
    )
    quiet = verdicts_on("tcp_echo", other_vcpus=0.01, steal_vcpus=0.1)[name]
    assert not quiet["disturbed"] and "disturbed" not in quiet["detail"]
