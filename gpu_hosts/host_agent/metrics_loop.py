"""Samples GPUs every few seconds and publishes the interval's metrics to CloudWatch every interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from host_agent.collector import Collection, MetricsCollector
from host_agent.errors import MetricsPublishError
from host_agent.metric_data import build_metric_data, host_hours_datum
from host_agent.ports import MetricsSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cycle:
    collection: Collection
    data: list[dict[str, Any]]
    published: bool


class MetricsLoop:
    def __init__(
        self,
        collector: MetricsCollector,
        sink: MetricsSink | None,
        *,
        tier: str,
        instance_id: str,
        interval_s: float,
        gpu_sample_interval_s: float,
        high_resolution: bool = False,
        instance_type: str | None = None,
        purchase_option: str | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collector, self._sink = collector, sink
        self._tier, self._instance_id, self._instance_type = tier, instance_id, instance_type
        self._purchase_option = purchase_option
        self._interval_s, self._sample_s = interval_s, min(gpu_sample_interval_s, interval_s)
        self._high_resolution = high_resolution
        self._wall_clock, self._clock = wall_clock, clock
        self._reported_missing: frozenset[str] = frozenset()

    def cycle(self) -> Cycle:
        """One collection; published unless there is no sink (dry run). Never raises for a missing source."""
        collection = self._collector.collect()
        timestamp = self._wall_clock()
        data = build_metric_data(
            collection.values,
            tier=self._tier,
            instance_id=self._instance_id,
            timestamp=timestamp,
            high_resolution=self._high_resolution,
            instance_type=self._instance_type,
        )
        if self._purchase_option:
            # Billed whatever its GPU or vLLM report: the host exists for the whole interval.
            data.append(
                host_hours_datum(
                    tier=self._tier,
                    purchase_option=self._purchase_option,
                    hours=self._interval_s / 3600.0,
                    timestamp=timestamp,
                    high_resolution=self._high_resolution,
                )
            )
        missing = frozenset(collection.missing)
        if missing != self._reported_missing:
            # Logged when it changes, not every minute: the journal stays readable during a long outage.
            if missing:
                log.warning("metrics published without: %s", "; ".join(sorted(missing)))
            else:
                log.info("all metric sources answer again")
            self._reported_missing = missing
        published = False
        if self._sink is not None and data:
            try:
                self._sink.put(data)
                published = True
            except MetricsPublishError as exc:
                log.warning("metrics for this interval dropped: %s", exc)
        return Cycle(collection, data, published)

    def run(self, stop: threading.Event) -> None:
        self._collector.collect()  # baseline: the first interval's P95 and rates need a previous scrape
        next_publish = self._clock() + self._interval_s
        while True:
            wait = min(self._sample_s, max(0.0, next_publish - self._clock()))
            if stop.wait(wait):
                return
            if self._clock() >= next_publish:
                try:
                    self.cycle()
                except Exception:  # a metrics bug must not stop the worker's host from serving
                    log.exception("metrics cycle failed")
                next_publish += self._interval_s
                if next_publish <= self._clock():  # fell behind (suspended host): skip, do not burst
                    next_publish = self._clock() + self._interval_s
            else:
                self._collector.sample_gpus()
