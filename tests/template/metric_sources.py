"""Which metrics exist: those the code publishes (read from the code, not restated) and AWS's own."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fleet.config import METRICS_NAMESPACE as FLEET_NAMESPACE
from host_agent.metric_data import UNITS as HOST_AGENT_METRICS
from local_runtime.paths import REPO_ROOT
from tests.template.aws_metrics import AWS_METRICS

KNOWLEDGE_NAMESPACE = "AiGame/Knowledge"


def _controller_metrics() -> set[str]:
    """The decision metrics `fleet.reporting` puts in its `values` dict, one EMF metric each."""
    text = (REPO_ROOT / "layers" / "fleet" / "fleet" / "reporting.py").read_text()
    return set(re.findall(r'"([A-Z][A-Za-z0-9]+)": ', text))


def _workflow_metrics() -> set[str]:
    """What the state machines publish with cloudwatch:putMetricData (the launch workflow's LaunchFailures)."""
    names: set[str] = set()
    for path in (REPO_ROOT / "statemachines").glob("*.asl.json"):
        names |= set(re.findall(r'"MetricName":\s*"([A-Za-z0-9]+)"', path.read_text()))
    return names


def _game_service_metrics() -> set[str]:
    """Published by game services, not by this repository: the contract's "Players online" table."""
    text = (REPO_ROOT / "docs" / "host-contract.md").read_text()
    section = text.split("## Players online", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\| `AiGame/Fleet` \| `([A-Za-z]+)` \|", section))


def _handler_metrics(code_dir: str) -> set[str]:
    """Powertools metric names in a handler: `name="..."` literals and the values of its COUNTERS dict."""
    text = (REPO_ROOT / code_dir / "app.py").read_text()
    names = set(re.findall(r'name="([A-Z][A-Za-z0-9]+)"', text))
    counters = re.search(r"COUNTERS = \{(.*?)\}", text, re.S)
    if counters:
        names |= set(re.findall(r':\s*"([A-Z][A-Za-z0-9]+)"', counters[1]))
    return names


@dataclass(frozen=True)
class EmittedMetrics:
    knowledge: dict[str, set[str]]  # service dimension -> metric names of AiGame/Knowledge
    fleet: set[str]

    def problem(self, namespace: str, name: str, dimensions: dict[str, str]) -> str | None:
        """Why (namespace, name, dimensions) is not a metric anything publishes, or None."""
        if namespace in AWS_METRICS:
            return None if name in AWS_METRICS[namespace][1] else f"{namespace} {name} is not an AWS metric"
        if namespace == FLEET_NAMESPACE:
            return None if name in self.fleet else f"nothing publishes {namespace} {name}"
        if namespace == KNOWLEDGE_NAMESPACE:
            service = dimensions.get("service")
            if service is None:
                emitted = set().union(*self.knowledge.values())
                return None if name in emitted else f"no function publishes {namespace} {name}"
            if name not in self.knowledge.get(service, set()):
                return f"service {service} publishes no {namespace} {name}"
            return None
        return f"unknown namespace {namespace} ({name})"


def emitted_metrics(sam: dict[str, Any]) -> EmittedMetrics:
    knowledge: dict[str, set[str]] = {}
    for resource in sam["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        env = resource["Properties"].get("Environment", {}).get("Variables", {})
        if env.get("POWERTOOLS_METRICS_NAMESPACE") == KNOWLEDGE_NAMESPACE:
            service = env["POWERTOOLS_SERVICE_NAME"]
            knowledge.setdefault(service, set()).update(_handler_metrics(resource["Properties"]["CodeUri"]))
    fleet = set(HOST_AGENT_METRICS) | _controller_metrics() | _workflow_metrics() | _game_service_metrics()
    return EmittedMetrics(knowledge=knowledge, fleet=fleet)


def search_metrics(expression: str) -> list[tuple[str, str]]:
    """(namespace, metric name) of each SEARCH('{Namespace,Dim,...} MetricName="X" ...') in an expression."""
    found = []
    for schema, terms in re.findall(r"SEARCH\(\s*'\{([^}]*)\}([^']*)'", expression):
        name = re.search(r'MetricName=\\?"([A-Za-z0-9]+)\\?"', terms)
        found.append((schema.split(",")[0].strip(), name[1] if name else ""))
    return found


def dashboard_json(body: Any) -> dict[str, Any]:
    """A DashboardBody (Fn::Sub text, or [text, variables]) as JSON, each ${...} standing for a value."""
    text = body["Fn::Sub"] if isinstance(body, dict) else body
    if isinstance(text, list):
        text = text[0]
    return dict(json.loads(re.sub(r"\$\{[^}]+\}", "1", text)))
