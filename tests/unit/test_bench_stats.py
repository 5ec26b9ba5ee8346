"""Percentile, ratio and per-operation arithmetic of the bench (bench/stats.py)."""

from __future__ import annotations

import pytest

from bench.stats import (
    PERCENTILES,
    change_pct,
    decode,
    histogram_of,
    modes,
    new_histogram,
    per_op_us,
    ratio,
    record_ns,
    summarize,
)


def test_percentiles_of_a_uniform_spread_land_within_hdr_precision() -> None:
    # 1..1000 µs, one sample each: p50 is 500 µs, p99 990 µs, to 3 significant digits.
    summary = summarize(histogram_of(us * 1000 for us in range(1, 1001)))
    assert summary["n"] == 1000
    assert summary["p50_us"] == pytest.approx(500, rel=1e-3)
    assert summary["p90_us"] == pytest.approx(900, rel=1e-3)
    assert summary["p99_us"] == pytest.approx(990, rel=1e-3)
    assert summary["p999_us"] == pytest.approx(999, rel=1e-3)
    assert summary["min_us"] == pytest.approx(1, rel=1e-3)
    assert summary["max_us"] == pytest.approx(1000, rel=1e-3)
    assert summary["mean_us"] == pytest.approx(500.5, rel=1e-3)


def test_a_tail_shows_only_in_the_high_percentiles() -> None:
    values = [100_000] * 990 + [50_000_000] * 10  # 99% at 100 µs, 1% at 50 ms
    summary = summarize(histogram_of(values))
    assert summary["p50_us"] == pytest.approx(100, rel=1e-3)
    assert summary["p90_us"] == pytest.approx(100, rel=1e-3)
    assert summary["p999_us"] == pytest.approx(50_000, rel=1e-3)


def test_spectrum_is_monotonic_and_ends_at_the_tail() -> None:
    summary = summarize(histogram_of(range(1000, 2_000_000, 997)))
    latencies = [us for _, us in summary["spectrum"]]
    assert latencies == sorted(latencies)
    assert summary["spectrum"][3] == [50.0, summary["p50_us"]]


def test_empty_histogram_reports_nothing_rather_than_zero() -> None:
    summary = summarize(new_histogram())
    assert summary["n"] == 0
    assert summary["p50_us"] is None and summary["p999_us"] is None
    assert summary["spectrum"] == []


def test_encoded_histogram_round_trips() -> None:
    hist = histogram_of([1_000, 2_000, 3_000, 250_000])
    again = summarize(decode(summarize(hist)["hist"]))
    assert again["n"] == 4
    assert again["max_us"] == summarize(hist)["max_us"]


def test_out_of_range_values_are_clamped_not_dropped() -> None:
    hist = new_histogram()
    record_ns(hist, 0)
    record_ns(hist, 10**15)  # a hang: clamped to the histogram's one-minute ceiling
    summary = summarize(hist)
    assert summary["n"] == 2
    assert summary["max_us"] == pytest.approx(60e6, rel=1e-3)


def test_ratio_and_change() -> None:
    assert ratio(150.0, 100.0) == 1.5
    assert ratio(None, 100.0) is None
    assert ratio(1.0, 0) is None
    assert change_pct(200.0, 150.0) == pytest.approx(-25.0)
    assert change_pct(None, 1.0) is None


def test_per_op() -> None:
    assert per_op_us(0.5, 1000) == 500.0  # 0.5 s over 1000 calls
    assert per_op_us(0.5, 0) is None
    assert per_op_us(None, 10) is None


def test_the_fast_summary_gives_exactly_what_hdrh_gives() -> None:
    import random

    rng = random.Random(7)
    hist = histogram_of(int(rng.lognormvariate(11.5, 0.6)) for _ in range(5000))
    summary = summarize(hist)
    for key, pct in PERCENTILES.items():
        assert summary[key] == round(hist.get_value_at_percentile(pct) / 1000, 2), key
    assert summary["mean_us"] == round(hist.get_mean_value() / 1000, 2)


def test_two_regimes_show_as_two_modes() -> None:
    import random

    rng = random.Random(3)
    near = [int(rng.gauss(80_000, 4_000)) for _ in range(3000)]
    far = [int(rng.gauss(160_000, 8_000)) for _ in range(2000)]
    found = modes(histogram_of(near + far))
    assert len(found) == 2 and 70 < found[0] < 90 and 145 < found[1] < 175
    assert len(modes(histogram_of(near))) == 1
