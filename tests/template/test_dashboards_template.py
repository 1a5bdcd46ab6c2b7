"""The dashboards exist as code and every widget shows a metric that the code or AWS really publishes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from local_runtime.template import load_sam_template
from tests.template.metric_sources import EmittedMetrics, dashboard_json, emitted_metrics, search_metrics

TIERS = ("Gold", "Silver", "Bronze")


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_sam_template()


def _dashboards(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: dashboard_json(resource["Properties"]["DashboardBody"])
        for logical_id, resource in sam["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Dashboard"
    }


def widget_metrics(widget: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(namespace, name, dimensions) of each metric row, CloudWatch's "." and "..." shorthands expanded."""
    previous: list[Any] = []
    for row in widget.get("properties", {}).get("metrics", []):
        items = [item for item in row if not isinstance(item, dict)]
        options = [item for item in row if isinstance(item, dict)]
        if not items and options and "expression" in options[0]:
            for namespace, name in search_metrics(options[0]["expression"]):
                yield namespace, name, {}
            continue
        if items and items[0] == "...":
            rest = items[1:]
            items = previous[: len(previous) - len(rest)] + rest
        else:
            items = [previous[i] if item == "." else item for i, item in enumerate(items)]
        previous = items
        dimensions = dict(zip(items[2::2], items[3::2], strict=True))
        yield items[0], items[1], dimensions


def problems(sam: dict[str, Any], emitted: EmittedMetrics) -> list[str]:
    found = []
    for logical_id, body in _dashboards(sam).items():
        for widget in body["widgets"]:
            for namespace, name, dimensions in widget_metrics(widget):
                problem = emitted.problem(namespace, name, dimensions)
                if problem:
                    found.append(f"{logical_id} '{widget['properties'].get('title')}': {problem}")
    return found


def test_every_widget_metric_is_published_by_the_code_or_aws(sam: dict[str, Any]) -> None:
    assert problems(sam, emitted_metrics(sam)) == []


def test_a_widget_on_a_metric_nobody_publishes_is_caught(sam: dict[str, Any]) -> None:
    broken = copy.deepcopy(sam)
    body = broken["Resources"]["KnowledgeDashboard"]["Properties"]["DashboardBody"]
    body["Fn::Sub"][0] = body["Fn::Sub"][0].replace('"DocumentsQuarantined"', '"DocumentsRejected"')
    body = broken["Resources"]["GoldDashboard"]["Properties"]["DashboardBody"]
    body["Fn::Sub"][0] = body["Fn::Sub"][0].replace('"GroupPendingInstances"', '"GroupBootingInstances"')
    found = problems(broken, emitted_metrics(sam))
    assert any(
        "service knowledge-ingestion publishes no AiGame/Knowledge DocumentsRejected" in p for p in found
    )
    assert any("AWS/AutoScaling GroupBootingInstances is not an AWS metric" in p for p in found)


def test_a_search_on_a_metric_the_host_agent_does_not_publish_is_caught(sam: dict[str, Any]) -> None:
    broken = copy.deepcopy(sam)
    body = broken["Resources"]["SilverDashboard"]["Properties"]["DashboardBody"]
    body["Fn::Sub"][0] = body["Fn::Sub"][0].replace('\\"KvCacheUsage\\"', '\\"KvCacheHitRate\\"')
    assert any(
        "nothing publishes AiGame/Fleet KvCacheHitRate" in p for p in problems(broken, emitted_metrics(sam))
    )


def _names(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(ns, name) for widget in body["widgets"] for ns, name, _ in widget_metrics(widget)}


def _titles(body: dict[str, Any]) -> str:
    return " | ".join(str(w["properties"].get("title", "")) for w in body["widgets"])


def test_the_platform_dashboard_shows_health_errors_latency_percentiles_and_players(
    sam: dict[str, Any],
) -> None:
    body = _dashboards(sam)["PlatformDashboard"]
    assert any(w["type"] == "alarm" and w["properties"]["alarms"] for w in body["widgets"])
    names = _names(body)
    assert {("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "Latency"), ("AWS/Lambda", "Errors")} <= names
    assert ("AiGame/Fleet", "PlayersOnline") in names
    stats = {
        row[-1].get("stat")
        for widget in body["widgets"]
        for row in widget["properties"].get("metrics", [])
        if isinstance(row[-1], dict)
    }
    assert {"p50", "p95", "p99"} <= stats


def test_the_knowledge_dashboard_shows_ingestion_quarantine_api_and_database(sam: dict[str, Any]) -> None:
    names = _names(_dashboards(sam)["KnowledgeDashboard"])
    assert {
        ("AiGame/Knowledge", "DocumentsIngested"),
        ("AiGame/Knowledge", "DocumentsQuarantinedByReason"),
        ("AWS/ApiGateway", "Latency"),
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/RDS", "DatabaseConnections"),
        ("AWS/RDS", "ACUUtilization"),
    } <= names


def test_each_tier_dashboard_shows_gpu_per_instance_hosts_by_state_and_decisions(sam: dict[str, Any]) -> None:
    dashboards = _dashboards(sam)
    for tier in TIERS:
        body = dashboards[f"{tier}Dashboard"]
        expressions = " ".join(
            row[0]["expression"]
            for widget in body["widgets"]
            for row in widget["properties"].get("metrics", [])
            if isinstance(row[0], dict)
        )
        for metric in ("GpuUtilization", "GpuMemoryUtilization", "KvCacheUsage"):
            assert f'{{AiGame/Fleet,InstanceId,Tier}} MetricName="{metric}"' in expressions
        names = _names(body)
        for state in ("GroupInServiceInstances", "GroupPendingInstances", "GroupTerminatingInstances"):
            assert ("AWS/AutoScaling", state) in names
        assert {("AiGame/Fleet", "ScaleOut"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible")} <= names
        assert "reasons" in _titles(body)  # the audit log's decisions, with their reasons
    group = sam["Resources"]["GoldAutoScalingGroup"]["Properties"]["MetricsCollection"][0]
    assert {"GroupInServiceInstances", "GroupPendingInstances", "GroupTerminatingInstances"} <= set(
        group["Metrics"]
    )


def test_the_cost_dashboard_shows_gpu_hours_by_tier_and_purchase_option(sam: dict[str, Any]) -> None:
    body = _dashboards(sam)["CostDashboard"]
    names = _names(body)
    assert ("AWS/AutoScaling", "GroupInServiceInstances") in names
    classes = {
        dims.get("Class")
        for widget in body["widgets"]
        for ns, _, dims in widget_metrics(widget)
        if ns == "AWS/Usage"
    }
    assert classes == {"G/OnDemand", "G/Spot"}
    # Per tier and purchase option, from what each host reports of itself (AWS has no such metric).
    assert ("AiGame/Fleet", "HostHours") in names
    expressions = [
        row[0]["expression"]
        for widget in body["widgets"]
        for row in widget.get("properties", {}).get("metrics", [])
        if row and isinstance(row[0], dict) and "expression" in row[0]
    ]
    assert any('{AiGame/Fleet,PurchaseOption,Tier} MetricName="HostHours"' in e for e in expressions)


def test_the_health_widget_names_alarms_of_the_stack_and_the_api_stage_is_the_deployed_one(
    sam: dict[str, Any],
) -> None:
    resources = sam["Resources"]
    named = {
        r["Properties"]["AlarmName"]["Fn::Sub"].replace("${AWS::StackName}", "1")
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "AlarmName" in r["Properties"]
    }
    health = next(w for w in _dashboards(sam)["PlatformDashboard"]["widgets"] if w["type"] == "alarm")
    assert health["properties"]["alarms"] and set(health["properties"]["alarms"]) <= named
    stage = resources["KnowledgeApiStage"]["Properties"]["StageName"]
    for dashboard in ("PlatformDashboard", "KnowledgeDashboard"):
        variables = resources[dashboard]["Properties"]["DashboardBody"]["Fn::Sub"][1]
        assert variables["ApiStage"] == stage
