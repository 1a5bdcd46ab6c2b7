"""vLLM's Prometheus metrics → one snapshot per scrape → the interval's values (P95s, tokens/s).

Names are vLLM's own (V1 engine). `vllm:kv_cache_usage_perc` replaced `vllm:gpu_cache_usage_perc`; both
are read, the newer one preferred. Every series carries `model_name` (and `engine` with several engines):
gauges and counters are summed over the series, histograms bucket by bucket, KV-cache usage takes the
fullest engine since that one refuses work first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from host_agent.histogram import Histogram, counter_increase, histogram_increase, quantile
from host_agent.prometheus import Sample, parse_samples

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
KV_CACHE_USAGE_LEGACY = "vllm:gpu_cache_usage_perc"
TIME_TO_FIRST_TOKEN = "vllm:time_to_first_token_seconds"
E2E_LATENCY = "vllm:e2e_request_latency_seconds"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"

_HISTOGRAMS = (TIME_TO_FIRST_TOKEN, E2E_LATENCY)
WANTED = frozenset(
    {RUNNING, WAITING, KV_CACHE_USAGE, KV_CACHE_USAGE_LEGACY, PROMPT_TOKENS, GENERATION_TOKENS}
    | {f"{h}{suffix}" for h in _HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")}
)


@dataclass(frozen=True, slots=True)
class VllmSnapshot:
    taken_at: float  # monotonic seconds
    running: float | None
    waiting: float | None
    kv_cache_usage: float | None  # fraction 0..1
    time_to_first_token: Histogram | None
    e2e_latency: Histogram | None
    prompt_tokens: float | None
    generation_tokens: float | None


@dataclass(frozen=True, slots=True)
class VllmInterval:
    """What happened between two snapshots; None where the interval says nothing (no request finished)."""

    latency_p95_s: float | None
    time_to_first_token_p95_s: float | None
    tokens_per_second: float | None
    restarted: bool
    # Requests that finished in the interval (0 when none did: an idle host says so); None: unknown.
    requests_completed: float | None = None


def _sum(samples: list[Sample]) -> float | None:
    return math.fsum(s.value for s in samples) if samples else None


def _histogram(by_name: dict[str, list[Sample]], name: str) -> Histogram | None:
    buckets: dict[float, float] = defaultdict(float)
    for sample in by_name.get(f"{name}_bucket", []):
        bound = sample.label("le")
        if bound is None:
            continue
        try:
            buckets[float(bound)] += sample.value
        except ValueError:
            continue
    if math.inf not in buckets:
        return None
    return Histogram(
        tuple(sorted(buckets.items())),
        _sum(by_name.get(f"{name}_count", [])) or buckets[math.inf],
        _sum(by_name.get(f"{name}_sum", [])) or 0.0,
    )


def snapshot_from_exposition(text: str, taken_at: float) -> VllmSnapshot:
    by_name: dict[str, list[Sample]] = defaultdict(list)
    for sample in parse_samples(text, WANTED):
        by_name[sample.name].append(sample)
    kv = by_name.get(KV_CACHE_USAGE) or by_name.get(KV_CACHE_USAGE_LEGACY) or []
    return VllmSnapshot(
        taken_at=taken_at,
        running=_sum(by_name.get(RUNNING, [])),
        waiting=_sum(by_name.get(WAITING, [])),
        kv_cache_usage=max((s.value for s in kv), default=None),
        time_to_first_token=_histogram(by_name, TIME_TO_FIRST_TOKEN),
        e2e_latency=_histogram(by_name, E2E_LATENCY),
        prompt_tokens=_sum(by_name.get(PROMPT_TOKENS, [])),
        generation_tokens=_sum(by_name.get(GENERATION_TOKENS, [])),
    )


def _p95(previous: Histogram | None, current: Histogram | None) -> tuple[float | None, float | None, bool]:
    """P95 of the interval's observations, how many there were, and whether the server restarted."""
    if current is None or previous is None:
        return None, None, False
    observed, reset = histogram_increase(previous, current)
    return quantile(0.95, observed), observed.count, reset


def interval_between(previous: VllmSnapshot | None, current: VllmSnapshot) -> VllmInterval:
    """The first scrape (or one after a gap in vLLM's answers) has nothing to compare with: no P95, no rate."""
    if previous is None:
        return VllmInterval(None, None, None, False)
    latency, completed, latency_reset = _p95(previous.e2e_latency, current.e2e_latency)
    ttft, _, ttft_reset = _p95(previous.time_to_first_token, current.time_to_first_token)
    tokens_per_second = None
    tokens_reset = False
    elapsed = current.taken_at - previous.taken_at
    if current.generation_tokens is not None and elapsed > 0:
        generated = counter_increase(previous.generation_tokens, current.generation_tokens)
        if previous.generation_tokens is not None:
            tokens_per_second, tokens_reset = generated.value / elapsed, generated.reset
    return VllmInterval(
        latency,
        ttft,
        tokens_per_second,
        latency_reset or ttft_reset or tokens_reset,
        requests_completed=completed,
    )
