"""CloudWatch percentile statistics for moto, which stores every value but answers pNN with None (and its
GetMetricData then fails): the fleet controller reads the median of its hosts' P95s (`p50`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)")


def percentile(values: list[float], stat: str) -> float | None:
    """Nearest-rank percentile `stat` ("p50", "p99.9") of the values; None when there are none."""
    match = _PERCENTILE.fullmatch(stat)
    if match is None:
        raise ValueError(f"{stat!r} is not a percentile statistic")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(float(match[1]) / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def percentile_statistics() -> Iterator[Any]:
    """The patch that lets moto's Statistics answer percentile statistics (for an ExitStack)."""
    from moto.cloudwatch.models import Statistics

    original: Callable[[Any, str], Any] = Statistics.get_statistics_for_type

    def get_statistics_for_type(statistics: Any, stat: str) -> Any:
        if _PERCENTILE.fullmatch(stat) is None:
            return original(statistics, stat)
        return percentile(list(statistics.metric_single_values_list), stat)

    yield mock.patch.object(Statistics, "get_statistics_for_type", get_statistics_for_type)
