"""Host agent overhead: CPU time the agent itself spends per metrics cycle and per 1,000 proxied requests.

The fake vLLM server runs in its own process, so this process' CPU time (time.process_time, all threads,
user + system) is what the agent costs on a host:
- direct: a plain loop of worker threads calling vLLM's /v1/completions (what any client pays);
- agent, in-memory queue: the worker (decode, call vLLM, encode, publish, acknowledge) over an in-memory
  SQS stand-in, i.e. the agent's own logic.
  Like for like: both use the same VllmClient (one keep-alive connection per thread, JSON in and out) with
  the same concurrency, both are warmed first (threads started, connections open), and neither pays for
  the harness: the stand-in receives in constant time without polling, and completion is awaited on a
  condition rather than checked every few milliseconds. Direct and agent runs alternate `--repeat` times;
  the table shows medians with the range, since the machine may be shared;
- agent, boto3 + moto: the same with real boto3 SQS/SNS clients (request signing, serialisation) against
  moto in this process: an upper bound, since moto's own emulation is counted too (moto's standalone
  server needs moto[server], which the dev environment does not install);
- metrics cycle: scrape /metrics, NVML replay of the H100 capture, build the datums (publishing to a
  no-op sink, and to moto's CloudWatch with boto3).
Overhead per request = (agent - direct) / requests; at 100 requests/s that is the share of one core.
Prints a Markdown table and a JSON line; `--json` prints only the JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from host_agent.adapters.nvml import NvmlGpuReader
from host_agent.adapters.vllm import VllmClient
from host_agent.collector import MetricsCollector
from host_agent.fakes.memory_queue import MemoryQueue, MemorySink
from host_agent.fakes.nvml import ReplayNvml, load_jsonl
from host_agent.metrics_loop import MetricsLoop
from host_agent.ports import RequestQueue, ResultSink
from host_agent.worker import Worker, WorkerSettings
from messages import fleet_pb2

REPO = Path(__file__).resolve().parents[1]
NVML_CAPTURE = REPO / "tests" / "unit" / "data" / "host_agent" / "nvml-load.jsonl"
MODEL = "Qwen/Qwen2.5-3B-Instruct-AWQ"


@contextmanager
def _subprocess_server(args: list[str], url_from: Callable[[subprocess.Popen[str]], str]) -> Iterator[str]:
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield url_from(process)
    finally:
        process.terminate()
        process.wait(10)


def _fake_vllm() -> Any:
    return _subprocess_server(
        [sys.executable, "-m", "host_agent.fakes.vllm_server", "--model", MODEL],
        lambda p: p.stdout.readline().strip() if p.stdout else "",
    )


@contextmanager
def _moto_in_process() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


def _body(n: int) -> str:
    request = fleet_pb2.InferenceRequest(
        request_id=f"bench-{n}",
        tier=fleet_pb2.TIER_GOLD,
        prompt=f"describe the harbour at dusk {n}",
        max_tokens=16,
    )
    request.enqueued_at.GetCurrentTime()
    return base64.b64encode(request.SerializeToString()).decode()


def bench_direct(url: str, requests: int, concurrency: int) -> float:
    client = VllmClient(url)
    payload = {"model": MODEL, "prompt": "describe the harbour at dusk", "max_tokens": 16}
    start = time.process_time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: client.generate("/v1/completions", payload, 30), range(requests)))
    return time.process_time() - start


def _worker(url: str, queue: RequestQueue, sink: ResultSink, concurrency: int, topic: str) -> Worker:
    return Worker(
        queue,
        sink,
        VllmClient(url),
        WorkerSettings(
            tier="gold",
            instance_id="i-bench",
            model_id=MODEL,
            results_topic_arn=topic,
            max_concurrency=concurrency,
            receive_wait_s=1,
        ),
    )


def bench_agent_memory(url: str, requests: int, concurrency: int) -> tuple[float, dict[str, float]]:
    """CPU seconds for `requests` through a warmed worker, and the queue/sink calls per 1,000 requests."""
    queue, sink = MemoryQueue(), MemorySink()
    worker = _worker(url, queue, sink, concurrency, "arn:aws:sns:us-east-1:123456789012:results")
    worker.start()
    warm = 50
    queue.send_many([_body(n) for n in range(warm)])
    if not queue.wait_empty(60):
        raise RuntimeError("the agent did not finish the warm-up requests")
    bodies = [_body(n) for n in range(warm, warm + requests)]
    calls = (queue.receive_calls, queue.delete_calls, sink.calls)
    start = time.process_time()
    queue.send_many(bodies)  # an empty queue filled at once, like the direct loop's pool.map
    finished = queue.wait_empty(600)
    cpu = time.process_time() - start
    worker.close()
    if not finished or len(sink.published) != warm + requests:
        raise RuntimeError(f"{len(sink.published) - warm} of {requests} results published")
    per_1000 = 1000 / requests
    return cpu, {
        "receive_calls_per_1000": (queue.receive_calls - calls[0]) * per_1000,
        "delete_calls_per_1000": (queue.delete_calls - calls[1]) * per_1000,
        "publish_calls_per_1000": (sink.calls - calls[2]) * per_1000,
    }


def bench_agent_boto3(url: str, requests: int, concurrency: int) -> float:
    import boto3

    from host_agent.adapters.results import ResultPublisher
    from host_agent.adapters.sqs import SqsRequestQueue

    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    sqs, sns = session.client("sqs"), session.client("sns")
    queue_url = sqs.create_queue(QueueName="bench-requests")["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName="bench-dlq")["QueueUrl"]
    topic = sns.create_topic(Name="bench-results")["TopicArn"]
    for start in range(0, requests, 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "MessageBody": _body(n)} for n in range(start, min(start + 10, requests))
            ],
        )

    def done() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values()) == 0

    # The completion check itself costs CPU here (a GetQueueAttributes every 10 ms, counted against the agent).
    worker = _worker(
        url, SqsRequestQueue(sqs, queue_url, dlq_url), ResultPublisher(sns, sqs), concurrency, topic
    )
    began = time.process_time()
    worker.start()
    while not done():
        time.sleep(0.01)
    cpu = time.process_time() - began
    worker.close()
    return cpu


def bench_metrics(url: str, cycles: int, with_boto3: bool) -> dict[str, float]:
    class NoSink:
        def put(self, data: list[dict[str, Any]]) -> int:
            return 1

    client = VllmClient(url)
    for _ in range(3):  # a populated page: histograms and counters with values
        client.generate("/v1/completions", {"model": MODEL, "prompt": "warm", "max_tokens": 4}, 30)
    gpus = NvmlGpuReader(ReplayNvml(load_jsonl(NVML_CAPTURE)))
    results: dict[str, float] = {}
    sinks: list[tuple[str, Any]] = [("metrics_cycle_cpu_ms", NoSink())]
    if with_boto3:
        import boto3

        from host_agent.adapters.cloudwatch import CloudWatchMetrics

        cloudwatch = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
        ).client("cloudwatch")
        sinks.append(("metrics_cycle_with_put_cpu_ms", CloudWatchMetrics(cloudwatch, "AiGame/Fleet")))
    for key, sink in sinks:
        loop = MetricsLoop(
            MetricsCollector(client.metrics_text, gpus.read), sink, tier="gold", instance_id="i-bench",
            interval_s=60, gpu_sample_interval_s=5,
        )  # fmt: skip
        loop.cycle()
        start = time.process_time()
        for _ in range(cycles):
            loop.cycle()
        results[key] = (time.process_time() - start) / cycles * 1000
    collector = MetricsCollector(client.metrics_text, gpus.read)
    start = time.process_time()
    for _ in range(cycles * 10):
        collector.sample_gpus()
    results["gpu_sample_cpu_ms"] = (time.process_time() - start) / (cycles * 10) * 1000
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument(
        "--repeat", type=int, default=5, help="alternating direct/agent runs (median reported)"
    )
    parser.add_argument(
        "--with-moto", action="store_true", help="add the boto3 + moto variants (dominated by moto's own CPU)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.requests
    report: dict[str, Any] = {
        "requests": n,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "loadavg_1m_start": os.getloadavg()[0],
    }
    with _fake_vllm() as url:
        bench_direct(url, 50, args.concurrency)  # warm connections and the server
        runs: dict[str, list[float]] = {"direct": [], "agent_memory": [], "overhead_memory": []}
        calls: dict[str, float] = {}
        for _ in range(max(1, args.repeat)):
            direct = bench_direct(url, n, args.concurrency) / n * 1e6
            memory, calls = bench_agent_memory(url, n, args.concurrency)
            runs["direct"].append(direct)
            runs["agent_memory"].append(memory / n * 1e6)
            runs["overhead_memory"].append(memory / n * 1e6 - direct)
        for name, values in runs.items():
            key = f"{name}_cpu_ms_per_1000" if name != "overhead_memory" else "overhead_memory_ms_per_1000"
            report[key] = statistics.median(values)
            report[f"{key}_min"], report[f"{key}_max"] = min(values), max(values)
            report[f"{key}_runs"] = [round(v, 1) for v in values]
        report.update(calls)  # from the last agent run
        direct = statistics.median(runs["direct"]) * n / 1e6
        if not args.with_moto:
            report.update(bench_metrics(url, args.cycles, False))
        else:
            with _moto_in_process():
                boto = bench_agent_boto3(url, n, args.concurrency)
                report["agent_boto3_cpu_ms_per_1000"] = boto / n * 1000 * 1000
                report["overhead_boto3_ms_per_1000"] = (boto - direct) / n * 1000 * 1000
                report.update(bench_metrics(url, args.cycles, True))
    # CPU seconds per second at 100 requests/s = overhead per request * 100; as a share of one core.
    for variant in ("memory", "boto3"):
        if f"overhead_{variant}_ms_per_1000" in report:
            report[f"core_share_at_100rps_{variant}_pct"] = (
                report[f"overhead_{variant}_ms_per_1000"] / 1000 * 100 / 10
            )
    for bound in ("min", "max"):
        report[f"core_share_at_100rps_memory_pct_{bound}"] = (
            report[f"overhead_memory_ms_per_1000_{bound}"] / 100
        )
    report["loadavg_1m_end"] = os.getloadavg()[0]
    cycle_ms = report.get("metrics_cycle_with_put_cpu_ms", report["metrics_cycle_cpu_ms"])
    report["metrics_core_share_pct"] = (cycle_ms / 60 + report["gpu_sample_cpu_ms"] / 5) / 10
    if args.json:
        print(json.dumps(report))
        return 0
    rows = [
        ("direct loop → vLLM", "direct_cpu_ms_per_1000", "CPU ms / 1,000 requests"),
        ("agent, in-memory queue", "agent_memory_cpu_ms_per_1000", "CPU ms / 1,000 requests"),
        ("agent overhead, in-memory", "overhead_memory_ms_per_1000", "CPU ms / 1,000 requests"),
        ("agent, boto3 + moto (upper bound)", "agent_boto3_cpu_ms_per_1000", "CPU ms / 1,000 requests"),
        (
            "agent overhead, boto3 + moto (upper bound)",
            "overhead_boto3_ms_per_1000",
            "CPU ms / 1,000 requests",
        ),
        ("overhead at 100 req/s, in-memory", "core_share_at_100rps_memory_pct", "% of one core"),
        ("SQS receives (in-memory)", "receive_calls_per_1000", "calls / 1,000 requests"),
        ("SQS delete batches (in-memory)", "delete_calls_per_1000", "calls / 1,000 requests"),
        ("result publish batches (in-memory)", "publish_calls_per_1000", "calls / 1,000 requests"),
        (
            "overhead at 100 req/s, boto3 + moto (upper bound)",
            "core_share_at_100rps_boto3_pct",
            "% of one core",
        ),
        ("metrics cycle (no publish)", "metrics_cycle_cpu_ms", "CPU ms / cycle"),
        ("metrics cycle + PutMetricData (moto)", "metrics_cycle_with_put_cpu_ms", "CPU ms / cycle"),
        ("GPU sample (NVML replay)", "gpu_sample_cpu_ms", "CPU ms / sample"),
        ("metrics at 60 s / 5 s sampling", "metrics_core_share_pct", "% of one core"),
    ]
    print(
        f"{args.repeat} alternating runs of {n} requests; 1-minute load average "
        f"{report['loadavg_1m_start']:.2f} → {report['loadavg_1m_end']:.2f} on {os.cpu_count()} CPUs\n"
    )
    print("| measurement | median | range | unit |\n|---|---:|---:|---|")
    for label, key, unit in rows:
        if key in report:
            spread = (
                f"{report[f'{key}_min']:.1f} – {report[f'{key}_max']:.1f}" if f"{key}_min" in report else ""
            )
            print(f"| {label} | {report[key]:.3f} | {spread} | {unit} |")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
