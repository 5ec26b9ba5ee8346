"""Rounds (bench/rounds.py): per-round rows become one headline row with an interval, ratios
get intervals of their own over paired rounds, and re-measured byte figures are checked."""

from __future__ import annotations

from typing import Any

import pytest

from bench.rounds import check_sizes, merge_latency, ratio_interval
from bench.stats import histogram_of, median_interval, paired_interval, summarize
from tests.unit.bench_rows import custom_send_row


def round_row(
    round_: int, p50: float, *, transport: str = "custom", n: int = 100
) -> dict[str, Any]:
    """A latency row of one round whose samples all sit at ``p50`` µs."""
    summary = summarize(histogram_of([int(p50 * 1000)] * n))
    return custom_send_row(
        round=round_,
        position=round_ % 3,
        transport=transport,
        **summary,
        server_cpu_us_per_op=p50 / 2,
        client_cpu_us_per_op=p50 / 3,
        other_vcpus=0.3 if round_ == 0 else 0.0,
    )


def test_a_figure_is_the_median_over_rounds_with_its_interval() -> None:
    rows = [round_row(i, p) for i, p in enumerate([100.0, 140.0, 110.0, 120.0, 105.0])]
    (merged,) = merge_latency(rows)
    assert merged["p50_us"] == pytest.approx(110.0, rel=1e-3)  # the median round, not the mean
    assert merged["ci"]["p50_us"] == pytest.approx([100.0, 140.0], rel=1e-3)
    assert merged["ci_coverage"] == pytest.approx(0.9375)  # 5 rounds: the range, 93.75 %
    assert merged["n"] == 500  # every round's samples pooled
    assert merged["server_cpu_us_per_op"] == pytest.approx(55.0, rel=1e-3)
    assert [r["round"] for r in merged["rounds"]] == [0, 1, 2, 3, 4]
    assert merged["rounds"][1]["p50_us"] == pytest.approx(140.0, rel=1e-3)
    assert merged["disturbed_rounds"] == 1
    assert merged["spread"]["p50_us"] > 0.1  # 100..140 µs: unstable by pyperf's rule
    assert merged["min_us"] == pytest.approx(100.0, rel=1e-3)
    assert merged["max_us"] == pytest.approx(140.0, rel=1e-2)


def test_a_round_the_hypervisor_stole_from_counts_as_disturbed() -> None:
    rows = [round_row(i, 100.0) for i in range(1, 4)]
    rows[1]["steal_vcpus"] = 0.4  # no other process, but another guest had the vCPU
    (merged,) = merge_latency(rows)
    assert merged["disturbed_rounds"] == 1


def test_rows_of_different_figures_stay_apart() -> None:
    rows = [round_row(0, 100.0), round_row(0, 50.0, transport="tcp_echo"), round_row(1, 101.0)]
    merged = {r["transport"]: r for r in merge_latency(rows)}
    assert len(merged["custom"]["rounds"]) == 2 and len(merged["tcp_echo"]["rounds"]) == 1
    assert merged["tcp_echo"]["ci"] is None  # one round: no interval


def test_a_ratio_gets_its_own_interval_over_paired_rounds() -> None:
    # The machine slows down in round 2 for both: the ratio stays near 2, while an interval
    # of each figure alone would be wide.
    mine = merge_latency([round_row(i, p) for i, p in enumerate([100.0, 102.0, 200.0, 98.0])])[0]
    echo = merge_latency(
        [round_row(i, p, transport="tcp_echo") for i, p in enumerate([50.0, 51.0, 100.0, 49.0])]
    )[0]
    low, high = ratio_interval(mine, echo, "p50_us") or (0, 0)
    assert 1.9 <= low <= 2.0 <= high <= 2.1
    assert mine["ci"]["p50_us"][1] / mine["ci"]["p50_us"][0] > 1.9  # each alone: wide


def test_without_rounds_there_is_no_ratio_interval() -> None:
    assert ratio_interval({"p50_us": 100.0}, {"p50_us": 50.0}, "p50_us") is None


def test_median_interval_picks_order_statistics_and_says_its_coverage() -> None:
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0, 0.75)
    low, high, coverage = median_interval([float(x) for x in range(1, 21)]) or (0, 0, 0)
    assert (low, high) == (6.0, 15.0) and coverage >= 0.95  # the textbook pair for n = 20
    assert median_interval([1.0]) is None


def test_paired_interval_of_identical_pairs_is_a_point() -> None:
    assert paired_interval([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], lambda a, b: a / b) == (2.0, 2.0)


def size(op: str, c2s: int, *, samples: int = 3) -> dict[str, Any]:
    return {
        "transport": "grpc",
        "op": op,
        "phase": "steady",
        "body_bytes": 32 if op == "send" else None,
        "recipients": 1 if op == "send" else None,
        "text": "ascii" if op == "send" else None,
        "c2s_bytes": c2s,
        "s2c_bytes": 76,
        "samples": samples,
    }


def test_byte_figures_measured_again_agree_or_show_each_round() -> None:
    sizes = [size("send", 147), size("ack", 40), size("logout", 30, samples=0)]
    checks = {0: [size("send", 147), size("ack", 53)], 1: [size("send", 147)]}
    check_sizes(sizes, checks)
    send, ack, logout = sizes
    assert send["rounds_checked"] == 3 and send["rounds_agree"] is True and "rounds" not in send
    assert ack["rounds_agree"] is False
    assert [r["c2s_bytes"] for r in ack["rounds"]] == [40, 53]
    assert "rounds_checked" not in logout  # no undisturbed call: not an exact figure
