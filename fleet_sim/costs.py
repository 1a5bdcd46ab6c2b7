"""What the platform costs besides the GPU hosts (the knowledge base and monitoring), and the commitment
discounts the report weighs for the On-Demand base: published us-east-1 prices with their sources, and the
usage parameters the estimate assumes, each stated (`fleet report`, docs/cost-report.md).

Prices are list prices of the AWS pricing pages named beside them (us-east-1, Linux, no free tier). Usage
figures marked "assumption:" are estimates to be replaced by the bill and CloudWatch's own numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

HOURS_PER_MONTH: Final = 730.0  # AWS pricing's month: 365 x 24 / 12
SECONDS_PER_MONTH: Final = HOURS_PER_MONTH * 3600.0

# --- published prices (us-east-1) -------------------------------------------------------------------------

# Amazon Aurora pricing (aws.amazon.com/rds/aurora/pricing): Serverless v2, Aurora Standard.
AURORA_USD_PER_ACU_HOUR: Final = 0.12
AURORA_STORAGE_USD_PER_GB_MONTH: Final = 0.10
AURORA_IO_USD_PER_MILLION: Final = 0.20
# AWS Lambda pricing (aws.amazon.com/lambda/pricing): Arm (Graviton) duration and requests.
LAMBDA_ARM_USD_PER_GB_SECOND: Final = 0.0000133334
LAMBDA_USD_PER_MILLION_REQUESTS: Final = 0.20
# Amazon API Gateway pricing (aws.amazon.com/api-gateway/pricing): REST APIs, first 333 million a month.
API_GATEWAY_REST_USD_PER_MILLION: Final = 3.50
# Amazon Bedrock pricing (aws.amazon.com/bedrock/pricing): Titan Text Embeddings V2, per 1,000 input tokens.
TITAN_EMBED_V2_USD_PER_1K_TOKENS: Final = 0.00002
# Amazon CloudWatch pricing (aws.amazon.com/cloudwatch/pricing): custom metrics (first 10,000, prorated by
# the hour), standard-resolution alarms per alarm metric, dashboards beyond the first three, Logs ingestion
# and storage, GetMetricData per 1,000 metrics requested, PutMetricData per 1,000 requests.
CLOUDWATCH_METRIC_USD_PER_MONTH: Final = 0.30
CLOUDWATCH_ALARM_USD_PER_MONTH: Final = 0.10
CLOUDWATCH_DASHBOARD_USD_PER_MONTH: Final = 3.00
CLOUDWATCH_FREE_DASHBOARDS: Final = 3
CLOUDWATCH_LOGS_INGEST_USD_PER_GB: Final = 0.50
CLOUDWATCH_LOGS_STORAGE_USD_PER_GB_MONTH: Final = 0.03
CLOUDWATCH_GET_METRIC_DATA_USD_PER_1K_METRICS: Final = 0.01
CLOUDWATCH_PUT_METRIC_DATA_USD_PER_1K_REQUESTS: Final = 0.01
# AWS Secrets Manager pricing (aws.amazon.com/secrets-manager/pricing) and AWS PrivateLink pricing
# (aws.amazon.com/privatelink/pricing): an interface endpoint per Availability Zone and hour.
SECRET_USD_PER_MONTH: Final = 0.40
INTERFACE_ENDPOINT_USD_PER_AZ_HOUR: Final = 0.01

# --- commitments for the On-Demand base ------------------------------------------------------------------

# assumption: discounts off On-Demand for the g5/g6/g6e families in us-east-1, 1-year term, no upfront, as
# listed on the Savings Plans pricing page (aws.amazon.com/savingsplans/compute-pricing) and the EC2
# Reserved Instances pricing page (aws.amazon.com/ec2/pricing/reserved-instances/pricing); they differ a
# little by type and move over time: check the current rate for the exact type before buying.
COMMITMENTS: Final = (
    ("EC2 Instance Savings Plan, 1 year, no upfront", 0.37),
    ("Compute Savings Plan, 1 year, no upfront", 0.28),
    ("Standard Reserved Instance, 1 year, no upfront", 0.37),
)

# --- usage parameters ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformUsage:
    """What the knowledge base and monitoring are assumed to do per player online; every figure here is an
    assumption to be replaced by measurements."""

    # The storyteller asks the knowledge API for a context pack or a search about once per story
    # generation, not per NPC line: a quarter of the players' gold requests.
    kb_queries_per_player_minute: float = 0.25
    kb_api_memory_gb: float = 1.0  # template.yaml: KnowledgeApiFunction MemorySize 1024
    kb_api_duration_s: float = 0.12  # warm: query embedding call + one SQL search
    query_tokens: float = 40.0  # a storyteller query, in Titan tokens
    story_events_per_player_minute: float = 0.05  # events game services publish, each embedded once
    story_event_tokens: float = 120.0
    story_event_lambda_gb_s: float = 0.2  # per event: decode, scrub, embed, store
    # Aurora Serverless v2: the cluster's minimum (template.yaml AuroraMinCapacity 0.5) for a writer and a
    # reader, plus one ACU per this many queries/s (HNSW search of a few thousand chunks, warm cache).
    aurora_instances: int = 2
    aurora_min_acu: float = 0.5
    aurora_queries_per_acu_second: float = 150.0
    aurora_storage_gb: float = 20.0
    aurora_io_per_query: float = 2.0
    secrets: int = 5  # master + the three job roles + the fleet's
    interface_endpoints: int = 5  # template.yaml's interface endpoints (CreateVpcEndpoints=true)
    availability_zones: int = 2
    # Monitoring: what template.yaml creates with its defaults (tests/template/test_cost_inputs.py keeps these
    # in step): CloudWatch bills an alarm per metric it reads, so a metric-math alarm counts each of its metrics.
    alarms: int = 93
    dashboards: int = 6
    # Tier-level custom metrics (AiGame/Fleet, per tier and instance type, the knowledge base's) plus the
    # per-host ones (InstanceId dimension: GPU, KV cache, latency, completions), billed while a host lives.
    fixed_metrics: int = 80
    metrics_per_host: int = 6
    # The fleet controller's GetMetricData every minute: metrics requested per tick, plus one per host.
    controller_metrics_per_tick: int = 30
    put_metric_requests_per_host_minute: float = 1.0
    log_kb_per_api_request: float = 1.0
    fixed_log_gb_month: float = 5.0  # controllers, workflows, ingestion
    log_retention_months: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CostLine:
    """One line of the estimate: its group, what it is, US dollars a month, and how it was computed."""

    group: str  # "knowledge base" or "monitoring"
    item: str
    usd_per_month: float
    basis: str


def platform_costs(players: float, mean_hosts: float, usage: PlatformUsage | None = None) -> list[CostLine]:
    """The knowledge base's and monitoring's monthly cost with `players` online on average and `mean_hosts`
    GPU hosts running on average (the fleet simulation's figure)."""
    if players < 0 or mean_hosts < 0:
        raise ValueError("players and mean_hosts must be >= 0")
    u = usage or PlatformUsage()
    minutes = HOURS_PER_MONTH * 60.0
    queries = players * u.kb_queries_per_player_minute * minutes
    events = players * u.story_events_per_player_minute * minutes
    qps = queries / SECONDS_PER_MONTH
    acu = max(u.aurora_min_acu, qps / u.aurora_queries_per_acu_second)
    api_gb_s = queries * u.kb_api_memory_gb * u.kb_api_duration_s
    tokens = queries * u.query_tokens + events * u.story_event_tokens
    lines = [
        CostLine(
            group="knowledge base",
            item="Aurora Serverless v2 capacity",
            usd_per_month=u.aurora_instances * acu * HOURS_PER_MONTH * AURORA_USD_PER_ACU_HOUR,
            basis=f"{u.aurora_instances} instances x {acu:.2f} ACU x 730 h x ${AURORA_USD_PER_ACU_HOUR}/ACU-h "
            f"({qps:.1f} queries/s)",
        ),
        CostLine(
            group="knowledge base",
            item="Aurora storage and I/O",
            usd_per_month=u.aurora_storage_gb * AURORA_STORAGE_USD_PER_GB_MONTH
            + queries * u.aurora_io_per_query / 1e6 * AURORA_IO_USD_PER_MILLION,
            basis=f"{u.aurora_storage_gb:g} GB x ${AURORA_STORAGE_USD_PER_GB_MONTH}/GB-month + "
            f"{u.aurora_io_per_query:g} I/O per query x ${AURORA_IO_USD_PER_MILLION}/million",
        ),
        CostLine(
            group="knowledge base",
            item="Lambda (knowledge API, story events)",
            usd_per_month=(api_gb_s + events * u.story_event_lambda_gb_s) * LAMBDA_ARM_USD_PER_GB_SECOND
            + (queries + events) / 1e6 * LAMBDA_USD_PER_MILLION_REQUESTS,
            basis=f"{queries / 1e6:.2f} M queries x {u.kb_api_memory_gb:g} GB x {u.kb_api_duration_s:g} s + "
            f"{events / 1e6:.2f} M events x {u.story_event_lambda_gb_s:g} GB-s, arm64",
        ),
        CostLine(
            group="knowledge base",
            item="API Gateway (REST)",
            usd_per_month=queries / 1e6 * API_GATEWAY_REST_USD_PER_MILLION,
            basis=f"{queries / 1e6:.2f} M requests x ${API_GATEWAY_REST_USD_PER_MILLION}/million",
        ),
        CostLine(
            group="knowledge base",
            item="Bedrock Titan Text Embeddings V2",
            usd_per_month=tokens / 1000.0 * TITAN_EMBED_V2_USD_PER_1K_TOKENS,
            basis=f"{tokens / 1e6:.1f} M tokens (queries x {u.query_tokens:g}, events x "
            f"{u.story_event_tokens:g}) x ${TITAN_EMBED_V2_USD_PER_1K_TOKENS}/1k tokens",
        ),
        CostLine(
            group="knowledge base",
            item="Secrets Manager and interface endpoints",
            usd_per_month=u.secrets * SECRET_USD_PER_MONTH
            + u.interface_endpoints
            * u.availability_zones
            * HOURS_PER_MONTH
            * INTERFACE_ENDPOINT_USD_PER_AZ_HOUR,
            basis=f"{u.secrets} secrets x ${SECRET_USD_PER_MONTH} + {u.interface_endpoints} endpoints x "
            f"{u.availability_zones} AZ x 730 h x ${INTERFACE_ENDPOINT_USD_PER_AZ_HOUR}",
        ),
    ]
    metrics = u.fixed_metrics + u.metrics_per_host * mean_hosts
    ticks = minutes
    metrics_requested = ticks * (u.controller_metrics_per_tick + mean_hosts)
    put_requests = mean_hosts * u.put_metric_requests_per_host_minute * minutes
    log_gb = queries * u.log_kb_per_api_request / 1e6 + u.fixed_log_gb_month
    paid_dashboards = max(u.dashboards - CLOUDWATCH_FREE_DASHBOARDS, 0)
    lines += [
        CostLine(
            group="monitoring",
            item="CloudWatch custom metrics",
            usd_per_month=metrics * CLOUDWATCH_METRIC_USD_PER_MONTH,
            basis=f"{u.fixed_metrics} + {u.metrics_per_host} per host x {mean_hosts:.1f} hosts "
            f"x ${CLOUDWATCH_METRIC_USD_PER_MONTH}/metric-month",
        ),
        CostLine(
            group="monitoring",
            item="CloudWatch alarms and dashboards",
            usd_per_month=u.alarms * CLOUDWATCH_ALARM_USD_PER_MONTH
            + paid_dashboards * CLOUDWATCH_DASHBOARD_USD_PER_MONTH,
            basis=f"{u.alarms} alarm metrics x ${CLOUDWATCH_ALARM_USD_PER_MONTH} + {paid_dashboards} dashboards "
            f"beyond {CLOUDWATCH_FREE_DASHBOARDS} free x ${CLOUDWATCH_DASHBOARD_USD_PER_MONTH:.2f}",
        ),
        CostLine(
            group="monitoring",
            item="CloudWatch API (GetMetricData, PutMetricData)",
            usd_per_month=metrics_requested / 1000.0 * CLOUDWATCH_GET_METRIC_DATA_USD_PER_1K_METRICS
            + put_requests / 1000.0 * CLOUDWATCH_PUT_METRIC_DATA_USD_PER_1K_REQUESTS,
            basis=f"controller: {metrics_requested / 1e6:.2f} M metrics requested; hosts: "
            f"{put_requests / 1e6:.2f} M PutMetricData requests",
        ),
        CostLine(
            group="monitoring",
            item="CloudWatch Logs",
            usd_per_month=log_gb
            * (
                CLOUDWATCH_LOGS_INGEST_USD_PER_GB
                + u.log_retention_months * CLOUDWATCH_LOGS_STORAGE_USD_PER_GB_MONTH
            ),
            basis=f"{log_gb:.1f} GB ingested x ${CLOUDWATCH_LOGS_INGEST_USD_PER_GB}/GB, kept "
            f"{u.log_retention_months:g} month",
        ),
    ]
    if any(not math.isfinite(line.usd_per_month) for line in lines):
        raise ValueError("usage parameters give a non-finite cost")
    return lines


__all__ = ["COMMITMENTS", "CostLine", "PlatformUsage", "platform_costs"]
