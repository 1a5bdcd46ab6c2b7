"""The cost report's monitoring and network lines count what template.yaml really creates."""

from __future__ import annotations

from fleet_sim.costs import PlatformUsage
from local_runtime.template import translate

PARAMETERS = {"VpcId": "vpc-12345678", "PrivateSubnetIds": "subnet-1111aaaa,subnet-2222bbbb"}


def test_the_usage_defaults_are_the_templates_alarms_dashboards_and_endpoints() -> None:
    resources = translate(PARAMETERS).full["Resources"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    # Billed per metric an alarm reads: a metric-math alarm counts each MetricStat.
    alarm_metrics = sum(
        sum(1 for m in a["Metrics"] if "MetricStat" in m) if "Metrics" in a else 1 for a in alarms
    )
    dashboards = sum(1 for r in resources.values() if r["Type"] == "AWS::CloudWatch::Dashboard")
    endpoints = sum(
        1
        for r in resources.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"].get("VpcEndpointType") == "Interface"
    )
    usage = PlatformUsage()
    assert (usage.alarms, usage.dashboards, usage.interface_endpoints) == (
        alarm_metrics,
        dashboards,
        endpoints,
    )
