"""Latency histograms and the small arithmetic the report is built from.

Latencies are recorded in nanoseconds into an HdrHistogram (3 significant digits, 1 ns .. 60 s)
and reported in microseconds. A summary carries the percentiles the report prints, a spectrum
for the percentile plot, and the encoded histogram itself so a later tool (``bench compare``, a
notebook) can recompute any percentile from results.json without the raw samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

LOWEST_NS = 1
HIGHEST_NS = 60 * 10**9  # a minute: anything slower is a hang, and is clamped here
SIGNIFICANT_DIGITS = 3

#: The four percentiles every latency and load row carries, keyed by their results.json name.
PERCENTILES: dict[str, float] = {
    "p50_us": 50.0,
    "p90_us": 90.0,
    "p99_us": 99.0,
    "p999_us": 99.9,
}

#: Percentiles drawn in the spectrum plot (a log axis in 1/(1-q) spreads the tail out).
SPECTRUM: tuple[float, ...] = (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99)


def new_histogram() -> HdrHistogram:
    """An empty nanosecond histogram with the bench's range and precision."""
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)


def record_ns(hist: HdrHistogram, value_ns: int) -> None:
    """Record one latency, clamped into the histogram's range (never silently dropped)."""
    hist.record_value(min(max(int(value_ns), LOWEST_NS), HIGHEST_NS))


def histogram_of(values_ns: Iterable[int]) -> HdrHistogram:
    """A histogram holding every value (for tests and small sample sets)."""
    hist = new_histogram()
    for value in values_ns:
        record_ns(hist, value)
    return hist


def _us(value_ns: float) -> float:
    return round(value_ns / 1000.0, 2)


def summarize(hist: HdrHistogram, *, with_hist: bool = True) -> dict[str, Any]:
    """``n``, min/mean/max and the PERCENTILES in µs, plus ``spectrum`` and the encoded ``hist``.

    An empty histogram gives ``n == 0`` and None for every figure, so a section that measured
    nothing cannot masquerade as a fast one.
    """
    n = hist.get_total_count()
    out: dict[str, Any] = {"n": n}
    if n == 0:
        out.update({key: None for key in ("min_us", "mean_us", "max_us", *PERCENTILES)})
        out["spectrum"] = []
        return out
    out["min_us"] = _us(hist.get_min_value())
    out["mean_us"] = _us(hist.get_mean_value())
    out["max_us"] = _us(hist.get_max_value())
    for key, pct in PERCENTILES.items():
        out[key] = _us(hist.get_value_at_percentile(pct))
    out["spectrum"] = [[pct, _us(hist.get_value_at_percentile(pct))] for pct in SPECTRUM]
    if with_hist:
        out["hist"] = hist.encode().decode("ascii")
    return out


def decode(encoded: str) -> HdrHistogram:
    """The histogram from a summary's ``hist`` field."""
    return HdrHistogram.decode(encoded.encode("ascii"))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def per_op_us(seconds: float | None, ops: int) -> float | None:
    """CPU (or wall) seconds spread over ``ops`` operations, in µs per operation."""
    if seconds is None or ops <= 0:
        return None
    return round(seconds * 1e6 / ops, 2)


def change_pct(old: float | None, new: float | None) -> float | None:
    """Relative change from old to new in percent (None if undefined)."""
    r = ratio(new, old)
    return None if r is None else (r - 1.0) * 100.0


__all__ = [
    "PERCENTILES",
    "SPECTRUM",
    "change_pct",
    "decode",
    "histogram_of",
    "new_histogram",
    "per_op_us",
    "ratio",
    "record_ns",
    "summarize",
]
