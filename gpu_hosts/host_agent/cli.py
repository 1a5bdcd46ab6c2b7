"""`host-agent`: run (the systemd service), collect (one metrics cycle, optionally dry), ready-check, and
the two commands bootstrap.sh runs: check-image (does the image hold this tier's model and vLLM?) and
boot-failed (record the failure and its reason so the launch workflow abandons the host at once)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from host_agent.adapters.nvml import open_gpu_reader
from host_agent.adapters.vllm import VllmClient
from host_agent.agent import check_ready
from host_agent.collector import MetricsCollector
from host_agent.config import HOST_ENV_FILE, load_config
from host_agent.errors import ConfigurationError, HostAgentError
from host_agent.image import MANIFEST_PATH, ExpectedImage, mismatches, read_manifest
from host_agent.metrics_loop import Cycle, MetricsLoop
from host_agent.ports import MetricsSink

log = logging.getLogger("host_agent")


# ---------------------------------------------------------------------- run


def _run(args: argparse.Namespace) -> int:
    from host_agent.drain import DrainReason
    from host_agent.services import build_agent

    config = load_config(args.env_file)
    agent = build_agent(config)

    def on_signal(signum: int, _frame: object) -> None:
        log.warning("signal %d: draining, then stopping", signum)
        agent.request_drain(DrainReason.SHUTDOWN)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("host agent starting: tier %s, model %s", config.tier, config.model_id)
    state = agent.run()
    log.info("host agent stopped in state %s", state)
    return 0


# ---------------------------------------------------------------------- collect


def _print_cycle(cycle: Cycle, as_json: bool, notes: list[str]) -> None:
    missing = notes + cycle.collection.missing
    if as_json:
        document = {
            "published": cycle.published,
            "missing": missing,
            "metric_data": [{**d, "Timestamp": d["Timestamp"].isoformat()} for d in cycle.data],
        }
        print(json.dumps(document, indent=2))
        return
    for note in missing:
        print(f"missing: {note}", file=sys.stderr)
    print(f"{'metric':<22} {'value':>16} {'unit':<13} dimensions")
    for datum in cycle.data:
        dimensions = ",".join(f"{d['Name']}={d['Value']}" for d in datum["Dimensions"])
        print(f"{datum['MetricName']:<22} {datum['Value']:>16.4f} {datum['Unit']:<13} {dimensions}")
    print(f"{len(cycle.data)} datums, {'published' if cycle.published else 'not published (dry run)'}")


def _collect(args: argparse.Namespace) -> int:
    sink: MetricsSink | None = None
    notes: list[str] = []
    if args.dry_run:
        tier = args.tier or os.environ.get("FLEET_TIER", "unknown")
        host_id = args.instance_id or os.environ.get("INSTANCE_ID", "local")
        vllm_url = args.vllm_url or os.environ.get("VLLM_URL", "http://127.0.0.1:8000")
        namespace, high_resolution = "AiGame/Fleet", False
    else:
        from host_agent.adapters.cloudwatch import CloudWatchMetrics
        from host_agent.services import boto3_session, instance_id

        config = load_config(args.env_file)
        tier, host_id = config.tier, args.instance_id or instance_id(config)
        vllm_url = args.vllm_url or config.vllm_url
        namespace, high_resolution = config.metrics_namespace, config.high_resolution_metrics
        sink = CloudWatchMetrics(boto3_session(config).client("cloudwatch"), namespace)
    gpus, why = open_gpu_reader()
    if why:
        notes.append(why)
    collector = MetricsCollector(VllmClient(vllm_url).metrics_text, gpus.read if gpus else None)
    loop = MetricsLoop(
        collector,
        sink,
        tier=tier,
        instance_id=host_id,
        interval_s=max(args.window, 0.001),
        gpu_sample_interval_s=1.0,
        high_resolution=high_resolution,
    )
    if args.window > 0:
        # P95 and tokens/s need two scrapes: one now, one after the window, GPU samples each second between.
        collector.collect()
        deadline = time.monotonic() + args.window
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            collector.sample_gpus()
    cycle = loop.cycle()
    _print_cycle(cycle, args.json, notes)
    return 0


# ---------------------------------------------------------------------- ready-check


def _ready_check(args: argparse.Namespace) -> int:
    model = args.model or os.environ.get("MODEL_ID")
    vllm_url = args.vllm_url or os.environ.get("VLLM_URL", "http://127.0.0.1:8000")
    if not model:
        try:
            model = load_config(args.env_file).model_id
        except ConfigurationError as exc:
            print(f"no model to check: {exc}", file=sys.stderr)
            return 2
    ready, why = check_ready(VllmClient(vllm_url), model, timeout_s=args.timeout)
    print(why)
    return 0 if ready else 1


# ---------------------------------------------------------------------- check-image, boot-failed


def _check_image(args: argparse.Namespace) -> int:
    expected = {
        "tier": args.tier or os.environ.get("FLEET_TIER", ""),
        "model_id": args.model or os.environ.get("MODEL_ID", ""),
        "vllm_version": args.vllm_version or os.environ.get("VLLM_VERSION", ""),
    }
    unknown = [name for name, value in expected.items() if not value]
    if unknown:
        print(f"nothing to check the image against: {', '.join(unknown)} not given", file=sys.stderr)
        return 2
    manifest = read_manifest(args.manifest)
    problems = mismatches(manifest, ExpectedImage(**expected), args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(
        f"image ok: tier {manifest.tier}, {manifest.model_id}@{manifest.model_revision[:12]}, "
        f"vLLM {manifest.vllm_version}, {manifest.agent_wheel} (built {manifest.built_at})"
    )
    return 0


def _boot_failed(args: argparse.Namespace) -> int:
    from host_agent.adapters.registry import HostRegistry
    from host_agent.services import boto3_session, instance_id

    config = load_config(args.env_file)
    host_id = instance_id(config)
    registry = HostRegistry(
        boto3_session(config).client("dynamodb"), config.hosts_table, host_id, config.tier
    )
    registry.mark_failed(args.reason, datetime.now(UTC))
    print(f"{host_id}: bootstrap failure recorded in {config.hosts_table}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="host-agent", description=__doc__)
    parser.add_argument("--env-file", type=Path, default=HOST_ENV_FILE, help="default: %(default)s")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="the service: worker, heartbeats, metrics, drain")
    collect = commands.add_parser("collect", help="one metrics cycle")
    collect.add_argument("--once", action="store_true", required=True, help="one cycle, then exit")
    collect.add_argument("--dry-run", action="store_true", help="print the metric data, call no AWS API")
    collect.add_argument("--vllm-url", help="default: VLLM_URL or http://127.0.0.1:8000")
    collect.add_argument("--json", action="store_true", help="machine-readable output")
    collect.add_argument(
        "--window", type=float, default=5.0, help="seconds between the two scrapes P95 and tokens/s need"
    )
    collect.add_argument("--tier", help="dry run: the Tier dimension (default FLEET_TIER)")
    collect.add_argument("--instance-id", help="the InstanceId dimension (default: IMDSv2, or 'local' dry)")
    ready = commands.add_parser("ready-check", help="exit 0 when vLLM is healthy and the model answers")
    ready.add_argument("--vllm-url")
    ready.add_argument("--model", help="default: MODEL_ID")
    ready.add_argument("--timeout", type=float, default=60.0)
    image = commands.add_parser(
        "check-image", help="exit 0 when the image holds this tier's model, vLLM release and programs"
    )
    image.add_argument("--manifest", type=Path, default=MANIFEST_PATH, help="default: %(default)s")
    image.add_argument("--tier", help="default: FLEET_TIER")
    image.add_argument("--model", help="default: MODEL_ID")
    image.add_argument("--vllm-version", help="default: VLLM_VERSION")
    image.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)  # tests' sandbox
    failed = commands.add_parser(
        "boot-failed", help="record a failed bootstrap and its reason in the host registry"
    )
    failed.add_argument("--reason", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(levelname)s %(threadName)s %(name)s: %(message)s"
    )
    handlers = {
        "run": _run,
        "collect": _collect,
        "ready-check": _ready_check,
        "check-image": _check_image,
        "boot-failed": _boot_failed,
    }
    try:
        return handlers[args.command](args)
    except HostAgentError as exc:
        log.error("%s", exc)
        return 2
