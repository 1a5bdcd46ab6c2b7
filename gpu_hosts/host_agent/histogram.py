"""Cumulative Prometheus histograms and counters between two scrapes: increases, resets, quantiles.

A counter or bucket that went down means the server restarted (its counters began again at zero), so the
increase over the interval is the new value itself, as Prometheus' increase() treats a reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts by upper bound (ascending, the last one +Inf), with count and sum."""

    buckets: tuple[tuple[float, float], ...]
    count: float
    total: float


@dataclass(frozen=True, slots=True)
class Increase:
    value: float
    reset: bool


def counter_increase(previous: float | None, current: float) -> Increase:
    if previous is None:
        return Increase(0.0, False)
    if current < previous:
        return Increase(current, True)
    return Increase(current - previous, False)


def histogram_increase(previous: Histogram | None, current: Histogram) -> tuple[Histogram, bool]:
    """The observations made between two scrapes as a histogram of their own, and whether a reset happened
    (then the current histogram holds exactly the observations since the restart)."""
    if previous is None:
        return Histogram(tuple((b, 0.0) for b, _ in current.buckets), 0.0, 0.0), False
    before = dict(previous.buckets)
    same_layout = len(before) == len(current.buckets) and all(b in before for b, _ in current.buckets)
    reset = (
        not same_layout
        or current.count < previous.count
        or any(count < before[bound] for bound, count in current.buckets)
    )
    if reset:
        return current, True
    return (
        Histogram(
            tuple((bound, count - before[bound]) for bound, count in current.buckets),
            current.count - previous.count,
            current.total - previous.total,
        ),
        False,
    )


def quantile(q: float, histogram: Histogram) -> float | None:
    """Prometheus histogram_quantile: linear interpolation inside the bucket that holds the rank; a rank in
    the +Inf bucket answers the largest finite bound. None when the histogram holds no observation."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    buckets = histogram.buckets
    if not buckets or not math.isinf(buckets[-1][0]):
        return None
    observed = buckets[-1][1]
    if observed <= 0:
        return None
    rank = q * observed
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            if lower_bound == 0.0 and bound <= 0.0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound
