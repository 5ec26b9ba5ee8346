"""The issue-8 lean-client targets read from paired blocks (bench/latency.py run_lean):
ChatClient and the lean client alternating in one process, the figure the median of the
per-pair ratios with its interval; an old results.json without pairs is read the old way."""

from __future__ import annotations

from typing import Any

import pytest

from bench import targets
from bench.latency import LEAN_PAIRS, _sum_cpu, lean_blocks
from bench.rounds import merge_latency
from bench.stats import median_interval
from tests.unit.bench_rows import custom_send_row

P50_NAME = "custom send p50 within 15% of a lean client's"
CPU_NAME = "custom client CPU per send <= 1.3x a lean client's"


def send_row(p50: float, cpu: float, **kw: Any) -> dict[str, Any]:
    fields = {"n": 1000, "p50_us": p50, "client_cpu_us_per_op": cpu, "server_cpu_us_per_op": 40.0}
    return custom_send_row(**{**fields, **kw})


def pair(
    lean_p50: float, chat_p50: float, lean_cpu: float, chat_cpu: float, round_: int = 0
) -> dict[str, Any]:
    return {
        "round": round_,
        "first": "lean",
        "n": 250,
        "lean_p50_us": lean_p50,
        "chat_p50_us": chat_p50,
        "lean_cpu_us": lean_cpu,
        "chat_cpu_us": chat_cpu,
    }


def results(pairs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The product's send row far from the lean row (different moments of the run), and
    the lean row, with or without the pairs measured in one process."""
    lean = send_row(100.0, 50.0, client="lean")
    if pairs is not None:
        lean["pairs"] = pairs
    return {"meta": {}, "latency": [send_row(150.0, 80.0), lean]}


def verdicts(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in targets.evaluate_targets(res)}


#: Ten pairs over two rounds: ChatClient's CPU 1.1-1.2x the lean client's in every pair
#: (while the unpaired rows say 1.6x), its p50 1.02-1.10x.
PAIRS = [
    pair(100.0 + i, (100.0 + i) * (1.02 + 0.008 * i), 50.0, 50.0 * (1.10 + 0.01 * i), i // 5)
    for i in range(10)
]


def test_the_lean_targets_come_from_the_pairs_when_the_row_has_them() -> None:
    found = verdicts(results(PAIRS))
    cpu, p50 = found[CPU_NAME], found[P50_NAME]
    cpu_ratios = sorted(p["chat_cpu_us"] / p["lean_cpu_us"] for p in PAIRS)
    p50_ratios = sorted(p["chat_p50_us"] / p["lean_p50_us"] for p in PAIRS)
    # the figure: the median of the per-pair ratios, not 80 / 50 of the two rows
    assert cpu["value"] == pytest.approx((cpu_ratios[4] + cpu_ratios[5]) / 2, abs=1e-3)
    assert p50["value"] == pytest.approx((p50_ratios[4] + p50_ratios[5]) / 2, abs=1e-3)
    # its interval: the distribution-free interval of that median over the pairs
    low, high, _ = median_interval(cpu_ratios)  # type: ignore[misc]
    assert cpu["ci"] == [pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4)]
    assert cpu_ratios[0] <= cpu["ci"][0] < cpu["ci"][1] <= cpu_ratios[-1]
    assert cpu["status"] == "PASS" and p50["status"] == "PASS"  # whole intervals within
    for target in (cpu, p50):
        assert "paired blocks in one process, 10 pairs (2 rounds)" in target["detail"]
        assert target["limit"] in (1.3, 0.15)  # the limits did not move


def test_the_bare_asyncio_client_splits_the_ratio_without_moving_it() -> None:
    # ChatClient 1.4x the lean client: the bare asyncio client 1.2x of it, ChatClient 1.4/1.2
    # of the bare one; the target's value is still ChatClient ÷ lean
    with_bare = [
        {**pair(100.0, 110.0, 50.0, 70.0), "bare_p50_us": 105.0, "bare_cpu_us": 60.0}
        for _ in range(8)
    ]
    found = verdicts(results(with_bare))
    cpu, p50 = found[CPU_NAME], found[P50_NAME]
    assert cpu["value"] == pytest.approx(1.4, abs=1e-3)
    assert "reads 1.20x the lean one (the event loop's share)" in cpu["detail"]
    assert "ChatClient 1.17x the bare one (its own)" in cpu["detail"]
    assert "reads 1.05x the lean one" in p50["detail"]
    # pairs from before the bare client: no such clause
    assert "bare" not in verdicts(results([pair(100.0, 110.0, 50.0, 70.0)] * 8))[CPU_NAME]["detail"]


def test_pairs_straddling_the_limit_leave_the_target_not_settled() -> None:
    straddling = [pair(100.0, 105.0, 50.0, 50.0 * r) for r in (1.1, 1.2, 1.25, 1.35, 1.4, 1.5)]
    found = verdicts(results(straddling))
    assert found[CPU_NAME]["status"] == targets.UNSETTLED
    assert found[CPU_NAME]["value"] == pytest.approx(1.3, abs=1e-3)


def test_few_pairs_say_how_much_their_interval_covers() -> None:
    few = [pair(100.0, 104.0 + i, 50.0, 55.0 + i) for i in range(4)]
    detail = verdicts(results(few))[CPU_NAME]["detail"]
    assert "4 pairs (1 round)" in detail and "interval covers 87.5%" in detail


def test_without_pairs_the_rows_are_read_against_each_other_as_before() -> None:
    found = verdicts(results(None))
    assert found[CPU_NAME]["value"] == pytest.approx(80.0 / 50.0, abs=1e-3)
    assert found[P50_NAME]["value"] == pytest.approx(150.0 / 100.0, abs=1e-3)
    assert found[CPU_NAME]["status"] == "MISS"
    assert "pairs" not in found[CPU_NAME]["detail"]
    assert "pairs" not in found[P50_NAME]["detail"]


def test_no_lean_row_no_lean_target() -> None:
    res = {"meta": {}, "latency": [send_row(150.0, 80.0)]}
    found = verdicts(res)
    assert found[CPU_NAME]["status"] == "n/a"  # the ChatClient row alone judges nothing


def test_merging_rounds_keeps_every_rounds_pairs_tagged_with_its_round() -> None:
    rows = [
        send_row(100.0 + r, 50.0, client="lean", round=r, pairs=[pair(1, 2, 3, 4, 99)] * 2)
        for r in range(3)
    ]
    (merged,) = merge_latency(rows)
    assert [p["round"] for p in merged["pairs"]] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("n", [1, 2, 15, 99, 200, 2000, 2001, 10_000])
def test_a_rounds_sends_are_split_into_even_blocks(n: int) -> None:
    sizes = lean_blocks(n)
    assert sum(sizes) == n  # the lean row keeps the round's count of sends
    assert max(sizes) - min(sizes) <= 1
    assert 1 <= len(sizes) <= LEAN_PAIRS
    assert len(sizes) >= min(2, n)  # two pairs at least, for an interval within one round


def test_blocks_cpu_adds_up_and_other_work_is_weighted_by_wall_time() -> None:
    a: dict[str, float | None] = {
        "wall_s": 1.0,
        "server_cpu_s": 0.2,
        "client_cpu_s": 0.3,
        "other_vcpus": 0.0,
    }
    b: dict[str, float | None] = {
        "wall_s": 3.0,
        "server_cpu_s": 0.4,
        "client_cpu_s": 0.5,
        "other_vcpus": 0.4,
    }
    total = _sum_cpu([a, b])
    assert total["client_cpu_s"] == pytest.approx(0.8)
    assert total["server_cpu_s"] == pytest.approx(0.6)
    assert total["other_vcpus"] == pytest.approx(0.3)


async def paired_step_row(step: Any, transport: str) -> dict[str, Any]:
    """The row of a paired-blocks step (bench/latency.py run_lean, run_independent), small: 2
    pairs of 10 sends, against a real server of ``transport`` (memory store)."""
    from wirechat.launch import ServerProcess

    server = ServerProcess([transport], ":memory:").start()
    try:
        target = {
            "kind": "chat",
            "transport": transport,
            "address": list(server.addresses[transport]),
            "server_pid": server.pid,
        }
        job = {"target": target, "n": 20, "warmup": 2, "prefix": "lp", "body": "x" * 32}
        (row,) = await step(job)
    finally:
        server.stop()
    return dict(row)


def assert_three_way_pairs(row: dict[str, Any], ref: str) -> None:
    """Two pairs of 10, one each way, the reference client's block and ChatClient's back to
    back, a bare client's block beside them; every block measured."""
    assert row["op"] == "send" and row["n"] == 20
    assert [p["n"] for p in row["pairs"]] == [10, 10]
    assert {p["first"] for p in row["pairs"]} == {ref, "chat"}  # one pair each way
    for p in row["pairs"]:
        assert sorted(p["order"]) == sorted(["bare", "chat", ref])
        assert p["order"].index(ref) - p["order"].index("chat") in (-1, 1)  # back to back
        for who in (ref, "chat", "bare"):
            assert p[f"{who}_p50_us"] > 0 and p[f"{who}_cpu_us"] > 0


async def test_the_lean_step_pairs_three_clients_against_a_real_server() -> None:
    # the step itself, small: 2 pairs of 10 sends, each beside a block of the bare client
    from bench.latency import run_lean

    row = await paired_step_row(run_lean, "custom")
    assert row["client"] == "lean"
    assert_three_way_pairs(row, "lean")
