"""The durable share, paired (bench/durable_scene.py): how its blocks become pairs, how the
target reads them, and what a run without them still reads."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench import durable_scene, targets
from tests.unit.test_bench_report import SAMPLE


def block(per_s: float, cpu_us: float, other: float = 0.0) -> dict[str, Any]:
    """A lean generator's closed-loop row, as bench/load.py writes it (the fields used)."""
    return {
        "achieved_per_s": per_s,
        "server_cpu_us_per_op": cpu_us,
        "p99_us": 4000.0,
        "other_vcpus": other,
        "steal_vcpus": 0.0,
        "attempts": 1,
    }


def pairs(ratios: list[float], memory: float = 100_000.0) -> list[dict[str, Any]]:
    out = []
    for i, share in enumerate(ratios):
        order = durable_scene.STORES if i % 2 == 0 else durable_scene.STORES[::-1]
        blocks = {"memory": block(memory, 9.0), "sqlite": block(memory * share, 13.0)}
        out.append(durable_scene.pair(i, order, {s: blocks[s] for s in order}))
    return out


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in targets.evaluate_targets(results) if t["name"] == targets.SQLITE_NAME)


def test_a_pair_keeps_each_stores_figures_and_which_went_first() -> None:
    [entry] = pairs([0.75])
    assert entry["round"] == 0 and entry["first"] == "memory"
    assert entry["memory_per_s"] == 100_000.0 and entry["sqlite_per_s"] == 75_000.0
    assert entry["memory_cpu_us"] == 9.0 and entry["sqlite_cpu_us"] == 13.0
    assert pairs([0.7, 0.7])[1]["first"] == "sqlite"  # odd rounds start with SQLite


def test_the_target_is_the_median_of_the_per_pair_ratios() -> None:
    results = copy.deepcopy(SAMPLE)  # its load steps alone would read 18k / 30k = 0.6
    results["durable"] = pairs([0.74, 0.78, 0.76, 0.80, 0.75, 0.77, 0.79, 0.73, 0.81])
    found = verdict(results)
    assert found["value"] == pytest.approx(0.77)
    assert found["ci"] is not None and 0.7 < found["ci"][0] <= 0.77 <= found["ci"][1]
    assert found["status"] == "PASS"
    assert "9 pairs" in found["detail"] and "both servers running at once" in found["detail"]


def test_pairs_below_the_limit_miss_and_straddling_ones_are_not_settled() -> None:
    results = copy.deepcopy(SAMPLE)
    results["durable"] = pairs([0.6, 0.62, 0.61, 0.63, 0.6, 0.64, 0.62, 0.61, 0.6])
    assert verdict(results)["status"] == "MISS"
    results["durable"] = pairs([0.66, 0.74, 0.68, 0.72, 0.69, 0.71, 0.73, 0.67, 0.7])
    assert verdict(results)["status"] == targets.UNSETTLED


def test_a_disturbed_block_is_said() -> None:
    results = copy.deepcopy(SAMPLE)
    results["durable"] = pairs([0.75] * 9)
    results["durable"][4]["sqlite_other_vcpus"] = 0.8
    assert verdict(results)["disturbed"]


def test_a_run_without_pairs_reads_the_load_steps() -> None:
    found = verdict(copy.deepcopy(SAMPLE))
    assert found["value"] == pytest.approx(0.6)  # 18k / 30k: the best step of each store
    assert "highest achieved rate" in found["detail"]


def test_the_report_lists_every_pair() -> None:
    text = durable_scene.section({"durable": pairs([0.7, 0.8, 0.75])})
    assert text.startswith("## The durable share, paired")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "sqlite" in line]
    assert len(rows) == 1  # round 2 went SQLite first
    assert "| 0.80 |" in text and "75,000" in text
    assert durable_scene.section({}) == ""
