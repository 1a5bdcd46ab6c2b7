"""One metrics interval: GPU samples and vLLM scrapes in, CloudWatch metric values out, plus what is
missing. A missing GPU or an unreachable vLLM costs only its own metrics, never the cycle."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from host_agent.errors import GpuUnavailableError, VllmUnavailableError
from host_agent.gpu import GpuReading, GpuSummary, summarize
from host_agent.metric_data import MetricValue, gpu_values, vllm_values
from host_agent.vllm_metrics import VllmInterval, VllmSnapshot, interval_between, snapshot_from_exposition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collection:
    values: list[MetricValue]
    missing: list[str] = field(default_factory=list)  # "source: reason", for logs and --dry-run
    gpu: GpuSummary | None = None
    vllm: VllmSnapshot | None = None
    interval: VllmInterval | None = None


class MetricsCollector:
    def __init__(
        self,
        fetch_vllm_metrics: Callable[[], str],
        read_gpus: Callable[[], list[GpuReading]] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_vllm_metrics = fetch_vllm_metrics
        self._read_gpus = read_gpus
        self._clock = clock
        self._lock = threading.Lock()
        self._gpu_samples: list[list[GpuReading]] = []
        self._gpu_error: str | None = None if read_gpus else "NVML not available"
        self._previous: VllmSnapshot | None = None

    def sample_gpus(self) -> None:
        """Called every few seconds between collections."""
        if self._read_gpus is None:
            return
        try:
            readings = self._read_gpus()
        except GpuUnavailableError as exc:
            with self._lock:
                self._gpu_error = str(exc)
            return
        with self._lock:
            self._gpu_samples.append(readings)
            self._gpu_error = None if readings else "no GPU found"

    def collect(self) -> Collection:
        self.sample_gpus()
        with self._lock:
            samples, self._gpu_samples = self._gpu_samples, []
            gpu_error = self._gpu_error
        missing: list[str] = []
        gpu = summarize(samples)
        if gpu is None:
            missing.append(f"gpu: {gpu_error or 'no reading'}")
        snapshot: VllmSnapshot | None = None
        interval: VllmInterval | None = None
        try:
            text = self._fetch_vllm_metrics()
            snapshot = snapshot_from_exposition(text, self._clock())
        except VllmUnavailableError as exc:
            missing.append(f"vllm: {exc}")
            # The next answer starts a new baseline: a rate across the gap would mix two server lives.
            self._previous = None
        if snapshot is not None:
            interval = interval_between(self._previous, snapshot)
            self._previous = snapshot
            if interval.restarted:
                log.warning("vLLM counters went back: server restarted, interval counted from zero")
            if snapshot.kv_cache_usage is None:
                missing.append("vllm: no KV-cache usage gauge")
            if snapshot.e2e_latency is None:
                missing.append("vllm: no end-to-end latency histogram")
        return Collection(gpu_values(gpu) + vllm_values(snapshot, interval), missing, gpu, snapshot, interval)
