"""Composition root of the host agent: the AWS clients, NVML and vLLM adapters, wired into the agent.

The only module besides `adapters/` that builds clients; `host_agent.cli` parses arguments and calls it.
"""

from __future__ import annotations

import logging
from typing import Any

from host_agent.adapters.cloudwatch import CloudWatchMetrics
from host_agent.adapters.imds import InstanceMetadata
from host_agent.adapters.nvml import open_gpu_reader
from host_agent.adapters.registry import HostRegistry
from host_agent.adapters.results import ResultPublisher
from host_agent.adapters.sqs import SqsRequestQueue
from host_agent.adapters.vllm import VllmClient
from host_agent.agent import HostAgent
from host_agent.collector import MetricsCollector
from host_agent.config import AgentConfig
from host_agent.errors import InstanceMetadataError
from host_agent.metrics_loop import MetricsLoop
from host_agent.worker import Worker, WorkerSettings

log = logging.getLogger("host_agent")


def boto3_session(config: AgentConfig) -> Any:
    import boto3  # imported here: `collect --dry-run` and `ready-check` work without AWS libraries set up

    return boto3.session.Session(region_name=config.region)


def instance_id(config: AgentConfig) -> str:
    if config.instance_id:
        return config.instance_id
    return InstanceMetadata(config.imds_endpoint).instance_id()


def instance_type(config: AgentConfig) -> str | None:
    """The host's EC2 instance type (a metric dimension: the controller learns each type's throughput); a
    host that cannot tell still publishes everything else."""
    if config.instance_type:
        return config.instance_type
    try:
        return InstanceMetadata(config.imds_endpoint).instance_type()
    except InstanceMetadataError as exc:
        log.warning("instance type unknown (%s): metrics without the InstanceType dimension", exc)
        return None


def purchase_option(config: AgentConfig) -> str | None:
    """On-Demand or Spot, for the cost dashboard's host-hours; unknown (no IMDS) publishes none."""
    try:
        return InstanceMetadata(config.imds_endpoint).purchase_option()
    except InstanceMetadataError as exc:
        log.warning("purchase option unknown (%s): no HostHours metric", exc)
        return None


def build_agent(config: AgentConfig) -> HostAgent:
    """The service `host-agent run` starts: worker, metrics loop, registry and Spot watcher of this host."""
    session = boto3_session(config)
    host_id = instance_id(config)
    sqs = session.client("sqs")
    server = VllmClient(config.vllm_url)
    worker = Worker(
        SqsRequestQueue(sqs, config.request_queue_url, config.dead_letter_queue_url),
        ResultPublisher(session.client("sns"), sqs),
        server,
        WorkerSettings(
            tier=config.tier,
            instance_id=host_id,
            model_id=config.model_id,
            results_topic_arn=config.results_topic_arn,
            max_concurrency=config.max_concurrency,
            receive_wait_s=config.receive_wait_s,
            visibility_timeout_s=config.visibility_timeout_s,
            max_receive_count=config.max_receive_count,
            generation_timeout_s=config.generation_timeout_s,
        ),
    )
    gpus, why = open_gpu_reader()
    if why:
        log.warning("%s; GPU metrics will be missing", why)
    metrics = MetricsLoop(
        MetricsCollector(VllmClient(config.vllm_url).metrics_text, gpus.read if gpus else None),
        CloudWatchMetrics(session.client("cloudwatch"), config.metrics_namespace),
        tier=config.tier,
        instance_id=host_id,
        interval_s=config.metrics_interval_s,
        gpu_sample_interval_s=config.gpu_sample_interval_s,
        high_resolution=config.high_resolution_metrics,
        instance_type=instance_type(config),
        purchase_option=purchase_option(config),
    )
    agent = HostAgent(
        model_id=config.model_id,
        server=server,
        registry=HostRegistry(session.client("dynamodb"), config.hosts_table, host_id, config.tier),
        worker=worker,
        metrics=metrics,
        spot=InstanceMetadata(config.imds_endpoint),
        heartbeat_interval_s=config.heartbeat_interval_s,
        drain_grace_s=config.drain_grace_s,
        spot_poll_interval_s=config.spot_poll_interval_s,
    )
    return agent
