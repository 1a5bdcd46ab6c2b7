"""Host agent metrics: Prometheus parsing, P95 from bucket deltas, counter resets, NVML replays of a real
H100, CloudWatch datum building, and a collector that survives missing sources."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from host_agent.adapters.nvml import NvmlGpuReader
from host_agent.adapters.vllm import VllmClient
from host_agent.collector import MetricsCollector
from host_agent.errors import GpuUnavailableError, VllmUnavailableError
from host_agent.fakes.nvml import ReplayNvml, load_jsonl, load_nvidia_smi_csv
from host_agent.fakes.vllm_server import FakeVllmServer
from host_agent.gpu import GpuReading, summarize
from host_agent.histogram import Histogram, counter_increase, histogram_increase, quantile
from host_agent.metric_data import UNITS, MetricValue, batches, build_metric_data
from host_agent.prometheus import parse_samples
from host_agent.vllm_metrics import interval_between, snapshot_from_exposition

DATA = Path(__file__).parent / "data" / "host_agent"
INF = math.inf


def _histogram(*cumulative: tuple[float, float]) -> Histogram:
    return Histogram(tuple(cumulative), cumulative[-1][1], 0.0)


# ---------------------------------------------------------------------- exposition format


def test_parser_reads_labels_escapes_and_special_values() -> None:
    text = "\n".join(
        [
            "# HELP vllm:num_requests_running Number of requests.",
            "# TYPE vllm:num_requests_running gauge",
            'vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-3B-Instruct-AWQ"} 3.0',
            'odd{path="a\\"b,c\\\\d"} +Inf 1700000000000',
            "no_labels 2.5e3",
            "broken{le=",
            "not_a_number{} abc",
        ]
    )
    samples = parse_samples(text)
    assert [(s.name, s.value) for s in samples] == [
        ("vllm:num_requests_running", 3.0),
        ("odd", INF),
        ("no_labels", 2500.0),
    ]
    assert samples[0].label("model_name") == "Qwen/Qwen2.5-3B-Instruct-AWQ"
    assert samples[1].label("path") == 'a"b,c\\d'
    assert parse_samples(text, {"no_labels"})[0].value == 2500.0


# ---------------------------------------------------------------------- histograms and counters


def test_p95_interpolates_inside_the_bucket_holding_the_rank() -> None:
    # 100 observations: 50 ≤ 0.5 s, 40 in (0.5, 1], 10 in (1, 2.5]; rank 95 is in (1, 2.5], half way.
    observed = _histogram((0.5, 50), (1.0, 90), (2.5, 100), (INF, 100))
    assert quantile(0.95, observed) == pytest.approx(1.75)
    assert quantile(0.5, observed) == pytest.approx(0.5)


def test_p95_in_the_inf_bucket_answers_the_largest_finite_bound() -> None:
    assert quantile(0.95, _histogram((1.0, 1), (5.0, 2), (INF, 40))) == 5.0


def test_an_empty_interval_has_no_p95() -> None:
    assert quantile(0.95, _histogram((1.0, 0), (INF, 0))) is None


def test_interval_p95_comes_from_bucket_deltas_not_from_totals() -> None:
    # Before: 1000 fast requests. During the interval: 10 slow ones. A P95 of the totals would say "fast".
    before = _histogram((0.3, 1000), (1.0, 1000), (10.0, 1000), (INF, 1000))
    after = _histogram((0.3, 1000), (1.0, 1000), (10.0, 1010), (INF, 1010))
    observed, reset = histogram_increase(before, after)
    assert not reset
    assert observed.buckets[-1][1] == 10
    assert quantile(0.95, observed) == pytest.approx(1.0 + 9.0 * 0.95)
    assert quantile(0.95, after) == pytest.approx(0.3 * 0.95 * 1010 / 1000)


def test_a_histogram_that_went_down_is_a_restart_counted_from_zero() -> None:
    before = _histogram((1.0, 500), (INF, 600))
    after = _histogram((1.0, 3), (INF, 4))
    observed, reset = histogram_increase(before, after)
    assert reset and observed == after


def test_counter_reset_counts_the_new_value() -> None:
    assert counter_increase(None, 10).value == 0
    assert counter_increase(10, 25).value == 15
    restarted = counter_increase(1000, 40)
    assert restarted.reset and restarted.value == 40


# ---------------------------------------------------------------------- vLLM snapshots over HTTP


@pytest.fixture
def vllm() -> Iterator[FakeVllmServer]:
    server = FakeVllmServer().start()
    yield server
    server.stop()


def test_snapshot_reads_vllm_names_from_its_real_exposition(vllm: FakeVllmServer) -> None:
    state = vllm.state
    state.behaviour.running, state.behaviour.waiting, state.behaviour.kv_cache_usage = 5, 2, 0.375
    text = VllmClient(vllm.url).metrics_text()
    assert "vllm:e2e_request_latency_seconds_bucket" in text and "_created" in text
    snapshot = snapshot_from_exposition(text, taken_at=0.0)
    assert (snapshot.running, snapshot.waiting, snapshot.kv_cache_usage) == (5, 2, 0.375)
    assert snapshot.e2e_latency is not None and snapshot.e2e_latency.buckets[-1][0] == INF
    assert snapshot.prompt_tokens == 0 and snapshot.generation_tokens == 0


def test_legacy_kv_cache_gauge_is_read_too(vllm: FakeVllmServer) -> None:
    vllm.state.behaviour.legacy_kv_cache_name = True
    vllm.state.behaviour.kv_cache_usage = 0.5
    text = VllmClient(vllm.url).metrics_text()
    assert "vllm:gpu_cache_usage_perc" in text and "vllm:kv_cache_usage_perc" not in text
    assert snapshot_from_exposition(text, 0.0).kv_cache_usage == 0.5


def test_interval_values_and_a_restart_between_scrapes(vllm: FakeVllmServer) -> None:
    client, state = VllmClient(vllm.url), vllm.state
    for _ in range(95):
        state.observe(e2e_s=0.4, ttft_s=0.03, prompt_tokens=10, generation_tokens=20)
    first = snapshot_from_exposition(client.metrics_text(), taken_at=100.0)
    for _ in range(19):
        state.observe(e2e_s=0.9, ttft_s=0.07, prompt_tokens=10, generation_tokens=50)
    state.observe(e2e_s=12.0, ttft_s=3.0, prompt_tokens=10, generation_tokens=50)
    second = snapshot_from_exposition(client.metrics_text(), taken_at=110.0)
    interval = interval_between(first, second)
    assert not interval.restarted
    # 20 requests in the interval: 19 in (0.8, 1.0], 1 in (10, 15]; rank 19 is the top of (0.8, 1.0].
    assert interval.latency_p95_s == pytest.approx(1.0)
    assert interval.time_to_first_token_p95_s == pytest.approx(0.08)
    assert interval.tokens_per_second == pytest.approx(20 * 50 / 10.0)
    assert interval.requests_completed == 20
    # An interval in which nothing finished says so: 0 completed (an idle host), and no P95.
    quiet = interval_between(second, snapshot_from_exposition(client.metrics_text(), taken_at=115.0))
    assert quiet.requests_completed == 0 and quiet.latency_p95_s is None

    state.restart()  # vLLM restarted: every counter begins again
    for _ in range(4):
        state.observe(e2e_s=2.2, ttft_s=0.2, generation_tokens=30)
    third = snapshot_from_exposition(client.metrics_text(), taken_at=120.0)
    after_restart = interval_between(second, third)
    assert after_restart.restarted
    assert after_restart.latency_p95_s is not None and 2.0 < after_restart.latency_p95_s <= 2.5
    assert after_restart.tokens_per_second == pytest.approx(4 * 30 / 10.0)


def test_first_scrape_has_no_rates_or_percentiles(vllm: FakeVllmServer) -> None:
    vllm.state.observe(1.0, 0.1, 1, 1)
    interval = interval_between(None, snapshot_from_exposition(VllmClient(vllm.url).metrics_text(), 0.0))
    assert (interval.latency_p95_s, interval.tokens_per_second) == (None, None)


# ---------------------------------------------------------------------- NVML replays (real H100)


def _sample_all(reader: NvmlGpuReader, n: int) -> list[list[GpuReading]]:
    return [reader.read() for _ in range(n)]


def test_idle_h100_replay() -> None:
    idle = load_nvidia_smi_csv(DATA / "query-idle.csv")
    summary = summarize(_sample_all(NvmlGpuReader(ReplayNvml(idle)), 3))
    assert summary is not None
    assert summary.utilization_percent == 0 and summary.memory_utilization_percent == 0
    assert summary.power_watts == pytest.approx(101.97)
    assert summary.temperature_c == 36 and summary.memory_used_bytes == 0


def test_loaded_h100_replay_averages_the_bursts() -> None:
    recorded = load_jsonl(DATA / "nvml-load.jsonl")
    samples = _sample_all(NvmlGpuReader(ReplayNvml(recorded)), len(recorded))
    summary = summarize(samples)
    assert summary is not None
    # 3 s busy / 1 s idle bursts: the interval's mean, not whichever moment a single read caught.
    assert summary.utilization_percent == pytest.approx(sum(r.gpu for r in recorded) / len(recorded))
    assert 40 < summary.utilization_percent < 80
    assert summary.power_watts == pytest.approx(sum(r.power_mw for r in recorded) / len(recorded) / 1000)
    assert summary.temperature_c == max(r.temp for r in recorded)
    assert summary.memory_used_bytes == recorded[-1].mem_used


def test_query_csv_under_load_agrees_with_nvml_units() -> None:
    rows = load_nvidia_smi_csv(DATA / "query-load.csv")
    assert max(r.gpu for r in rows) > 90
    assert all(r.mem_total == 81559 * 1024 * 1024 for r in rows)


def test_four_gpus_fold_into_one_host_value() -> None:
    recorded = load_jsonl(DATA / "nvml-load.jsonl")
    one = summarize(_sample_all(NvmlGpuReader(ReplayNvml(recorded, devices=1)), 10))
    four = summarize(_sample_all(NvmlGpuReader(ReplayNvml(recorded, devices=4)), 10))
    assert one is not None and four is not None and four.devices == 4
    assert four.utilization_percent == pytest.approx(one.utilization_percent)
    assert four.power_watts == pytest.approx(4 * one.power_watts)
    assert four.memory_used_bytes == 4 * one.memory_used_bytes


def test_nvml_failure_is_a_domain_error() -> None:
    with pytest.raises(GpuUnavailableError, match="Driver Not Loaded"):
        NvmlGpuReader(ReplayNvml([], fail_init=True)).read()


# ---------------------------------------------------------------------- datum building


def test_each_value_is_published_per_tier_and_per_instance() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    data = build_metric_data(
        [MetricValue("GpuUtilization", 55.2), MetricValue("RequestLatencyP95", math.nan)],
        tier="gold",
        instance_id="i-0abc",
        timestamp=at,
        high_resolution=True,
    )
    assert [d["Dimensions"] for d in data] == [
        [{"Name": "Tier", "Value": "gold"}],
        [{"Name": "Tier", "Value": "gold"}, {"Name": "InstanceId", "Value": "i-0abc"}],
    ]
    assert all(d["Unit"] == "Percent" and d["StorageResolution"] == 1 and d["Timestamp"] == at for d in data)
    typed = build_metric_data(
        [MetricValue("RequestsCompleted", 0.0)],
        tier="gold",
        instance_id="i-0abc",
        timestamp=at,
        instance_type="g6.xlarge",
    )
    assert typed[-1]["Dimensions"] == [
        {"Name": "Tier", "Value": "gold"},
        {"Name": "InstanceType", "Value": "g6.xlarge"},
    ]
    assert [d["Value"] for d in typed] == [0.0, 0.0, 0.0] and typed[0]["Unit"] == "Count"


def test_units_are_cloudwatch_units_for_every_contract_metric() -> None:
    contract = (Path(__file__).parents[2] / "docs" / "host-contract.md").read_text()
    valid = {"Seconds", "Bytes", "Percent", "Count", "Count/Second", "None"}
    for name, unit in UNITS.items():
        assert f"`{name}`" in contract, name
        assert unit in valid


def test_batches_split_at_the_limit() -> None:
    data = [{"n": i} for i in range(25)]
    assert [len(b) for b in batches(data, 10)] == [10, 10, 5]


# ---------------------------------------------------------------------- the collector


def test_collector_publishes_what_it_has_when_vllm_is_down() -> None:
    recorded = load_jsonl(DATA / "nvml-load.jsonl")

    def unreachable() -> str:
        raise VllmUnavailableError("GET /metrics: connection refused")

    collection = MetricsCollector(unreachable, NvmlGpuReader(ReplayNvml(recorded)).read).collect()
    assert {v.name for v in collection.values} == {
        "GpuUtilization",
        "GpuMemoryUtilization",
        "GpuMemoryUsed",
        "GpuPowerDraw",
        "GpuTemperature",
    }
    assert collection.missing == ["vllm: GET /metrics: connection refused"]


def test_collector_without_nvml_still_reports_vllm(vllm: FakeVllmServer) -> None:
    clock = iter([0.0, 10.0])
    collector = MetricsCollector(VllmClient(vllm.url).metrics_text, None, clock=lambda: next(clock))
    collector.collect()
    vllm.state.observe(0.9, 0.05, 5, 100)
    collection = collector.collect()
    names = {v.name for v in collection.values}
    assert {"KvCacheUsage", "RunningRequests", "RequestLatencyP95", "TokensPerSecond"} <= names
    assert not any(n.startswith("Gpu") for n in names)
    assert collection.missing == ["gpu: NVML not available"]


def test_dry_run_prints_metric_data_without_nvml(
    vllm: FakeVllmServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from host_agent import cli

    vllm.state.behaviour.kv_cache_usage = 0.25
    code = cli.main(
        [
            "collect",
            "--once",
            "--dry-run",
            "--vllm-url",
            vllm.url,
            "--json",
            "--window",
            "0",
            "--tier",
            "gold",
        ]
    )
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["published"] is False
    assert any("NVML" in note for note in document["missing"])
    kv = [d for d in document["metric_data"] if d["MetricName"] == "KvCacheUsage"]
    assert [d["Value"] for d in kv] == [25.0, 25.0]


def test_each_interval_publishes_the_hosts_share_of_an_hour_by_purchase_option() -> None:
    from host_agent.metrics_loop import MetricsLoop

    def unreachable() -> str:
        raise VllmUnavailableError("GET /metrics: connection refused")

    def loop(purchase_option: str | None) -> MetricsLoop:
        return MetricsLoop(
            MetricsCollector(unreachable, None),
            None,
            tier="gold",
            instance_id="i-0abc",
            interval_s=60,
            gpu_sample_interval_s=5,
            purchase_option=purchase_option,
        )

    # Even with every source missing: the host is billed for the interval all the same.
    (datum,) = loop("Spot").cycle().data
    assert datum["MetricName"] == "HostHours" and datum["Unit"] == UNITS["HostHours"]
    assert datum["Dimensions"] == [
        {"Name": "Tier", "Value": "gold"},
        {"Name": "PurchaseOption", "Value": "Spot"},
    ]
    assert datum["Value"] == pytest.approx(60 / 3600)
    assert loop(None).cycle().data == []  # a host that cannot tell publishes none rather than guess
