"""Latency histograms, intervals over rounds, and the small arithmetic the report is built from.

Latencies are recorded in nanoseconds into an HdrHistogram (3 significant digits, 1 ns .. 60 s)
and reported in microseconds. A summary carries the percentiles the report prints, a spectrum
for the percentile plot, and the encoded histogram itself so a later tool (``bench compare``, a
notebook) can recompute any percentile from results.json without the raw samples.

Rounds. The bench measures each latency figure in several rounds (fresh processes each), and a
headline figure is the **median over rounds** with a 95 % interval (Go's benchstat does the
same with runs). Two kinds of interval, both from scipy rather than hand-written:

* a single figure: the distribution-free interval of the median, between two order statistics
  of the rounds chosen with the binomial distribution (``median_interval``). It needs no
  assumption about the shape of the noise; with fewer than 6 rounds no pair of order
  statistics reaches 95 %, so it is the whole range of the rounds and says its real coverage
  (5 rounds: 93.8 %; 3 rounds: 75 %);
* a ratio or a difference of two figures measured in the same rounds (custom ÷ tcp_echo, a
  ladder step): a percentile bootstrap over *paired* rounds (``paired_interval``: round i of
  one with round i of the other, so a disturbance both saw cancels), with a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
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


def _recorded(hist: HdrHistogram) -> tuple[Any, Any]:
    """(bucket indexes with counts, cumulative counts over every bucket) as numpy arrays.

    The hdrh library answers each percentile by walking its ~27,000 buckets in Python (about
    40 ms a percentile, 0.6 s for the mean); reading its counts array once with numpy gives
    the same answers in well under a millisecond."""
    import numpy as np

    counts = np.ctypeslib.as_array(hist.counts).astype(np.int64, copy=False)
    return np.flatnonzero(counts), np.cumsum(counts)


def _value_at(hist: HdrHistogram, cumulative: Any, percentile: float) -> int:
    """Exactly hdrh's ``get_value_at_percentile``: the first bucket whose cumulative count
    reaches the target count, reported as its highest equivalent value (lowest for p0)."""
    import numpy as np

    target = hist.get_target_count_at_percentile(percentile)
    index = min(int(np.searchsorted(cumulative, target, side="left")), len(cumulative) - 1)
    value = hist.get_value_from_index(index)
    if percentile:
        return int(hist.get_highest_equivalent_value(value))
    return int(hist.get_lowest_equivalent_value(value))


def _mean(hist: HdrHistogram, nonzero: Any) -> float:
    """hdrh's ``get_mean_value`` (each bucket at its median equivalent value), over the
    buckets that hold samples only."""
    total = sum(
        int(hist.counts[i]) * hist._hdr_median_equiv_value(hist.get_value_from_index(int(i)))
        for i in nonzero
    )
    return float(total) / hist.get_total_count()


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
    nonzero, cumulative = _recorded(hist)
    out["min_us"] = _us(hist.get_min_value())
    out["mean_us"] = _us(_mean(hist, nonzero))
    out["max_us"] = _us(hist.get_max_value())
    for key, pct in PERCENTILES.items():
        out[key] = _us(_value_at(hist, cumulative, pct))
    out["spectrum"] = [[pct, _us(_value_at(hist, cumulative, pct))] for pct in SPECTRUM]
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


#: Confidence level of every interval the bench prints.
CONFIDENCE = 0.95
#: Seed of every bootstrap, so a report re-rendered from results.json shows the same intervals.
BOOTSTRAP_SEED = 20240601
BOOTSTRAP_RESAMPLES = 2000
#: pyperf's rule: a spread (sample standard deviation over the mean) of 10 % or more means the
#: figure is too unstable to compare without more rounds.
UNSTABLE_SPREAD = 0.10


def _clean(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are present, or None if none is."""
    import numpy as np

    xs = _clean(values)
    return float(np.median(xs)) if xs else None


def median_interval(
    values: Iterable[float | None], confidence: float = CONFIDENCE
) -> tuple[float, float, float] | None:
    """(low, high, coverage) of the distribution-free interval of the median of ``values``.

    The interval runs from the k-th smallest to the k-th largest value, k the largest for
    which the chance that the true median lies between them is at least ``confidence``
    (binomial with p = 1/2). With too few values for that, it is the whole range, and
    ``coverage`` says how sure it really is. None for fewer than two values.
    """
    from scipy.stats import binom  # type: ignore[import-untyped]

    xs = sorted(_clean(values))
    n = len(xs)
    if n < 2:
        return None
    k = 1
    while k + 1 <= n // 2 and 1 - 2 * binom.cdf(k, n, 0.5) >= confidence:
        k += 1  # P(x_(k+1) <= median <= x_(n-k)) = 1 - 2 P(Bin(n, 1/2) <= k)
    coverage = 1 - 2 * binom.cdf(k - 1, n, 0.5)
    return xs[k - 1], xs[n - k], round(float(coverage), 4)


def paired_interval(
    a: Sequence[float],
    b: Sequence[float],
    combine: Callable[[Any, Any], Any],
    confidence: float = CONFIDENCE,
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of ``combine(median(a), median(b))`` over paired rounds.

    ``a[i]`` and ``b[i]`` come from the same round; resampling picks rounds, so both members
    of a pair stay together. ``combine`` works on numpy arrays (``operator.truediv``,
    ``operator.sub``). None for fewer than two pairs.
    """
    import numpy as np
    from scipy.stats import bootstrap

    if len(a) != len(b) or len(a) < 2:
        return None
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.all(x == x[0]) and np.all(y == y[0]):
        value = float(combine(x[0], y[0]))
        return value, value

    def statistic(u: Any, v: Any, axis: int = -1) -> Any:
        return combine(np.median(u, axis=axis), np.median(v, axis=axis))

    with np.errstate(divide="ignore", invalid="ignore"):
        result = bootstrap(
            (x, y),
            statistic,
            paired=True,
            vectorized=True,
            method="percentile",
            confidence_level=confidence,
            n_resamples=BOOTSTRAP_RESAMPLES,
            random_state=np.random.default_rng(BOOTSTRAP_SEED),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def spread(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation over the mean (pyperf's stability figure); None if < 2."""
    import numpy as np

    xs = _clean(values)
    if len(xs) < 2:
        return None
    mean = float(np.mean(xs))
    return None if mean == 0 else float(np.std(xs, ddof=1)) / abs(mean)


def modes(hist: HdrHistogram, *, bins_per_decade: int = 24, prominence: float = 0.2) -> list[float]:
    """The modes (µs) of a latency histogram: peaks of its density on a log axis (p0.5 to
    p99.5, lightly smoothed) that stand out by at least ``prominence`` of the highest peak
    (``scipy.signal.find_peaks``). Two or more: the samples come from more than one regime
    (e.g. wake-ups on another vCPU vs on the same one), and a median hides it."""
    import numpy as np
    from scipy.signal import find_peaks  # type: ignore[import-untyped]

    if hist.get_total_count() < 50:
        return []
    nonzero, cumulative = _recorded(hist)
    low = max(_value_at(hist, cumulative, 0.5), 1)
    high = _value_at(hist, cumulative, 99.5)
    if high <= low * 1.2:
        return []
    edges = np.logspace(
        math.log10(low), math.log10(high), int(bins_per_decade * math.log10(high / low)) + 2
    )
    counts = np.zeros(len(edges) - 1)
    for index in nonzero:
        value = hist.get_value_from_index(int(index))
        i = int(np.searchsorted(edges, value, side="right")) - 1
        if 0 <= i < len(counts):
            counts[i] += int(hist.counts[index])
    smooth = np.convolve(np.pad(counts, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    if smooth.max() <= 0:
        return []
    padded = np.concatenate(([0.0], smooth, [0.0]))  # a peak at either end counts too
    peaks, _ = find_peaks(padded, prominence=prominence * smooth.max())
    centres = np.sqrt(edges[:-1] * edges[1:])
    return [round(float(centres[p - 1]) / 1000.0, 1) for p in peaks]


__all__ = [
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "PERCENTILES",
    "SPECTRUM",
    "change_pct",
    "decode",
    "histogram_of",
    "median",
    "median_interval",
    "modes",
    "new_histogram",
    "paired_interval",
    "per_op_us",
    "ratio",
    "record_ns",
    "spread",
    "summarize",
]
