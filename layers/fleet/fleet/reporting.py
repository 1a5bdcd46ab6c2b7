"""Each decision as CloudWatch metrics (EMF, dimension Tier) and one structured audit log line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aws_lambda_powertools import Logger, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from fleet.config import METRICS_NAMESPACE
from fleet.controller import TickResult, audit_record


def reporter(logger: Logger, *, dry_run: bool, now: datetime) -> Callable[[TickResult], None]:
    def report(result: TickResult) -> None:
        logger.info(
            "scaling decision", extra={"decision": audit_record(result, dry_run=dry_run, decided_at=now)}
        )
        values: dict[str, float] = {"ControllerErrors": 1.0 if result.error else 0.0}
        if result.decision is not None and result.signals is not None:
            d = result.decision
            values |= {
                "DesiredCapacity": d.desired,
                "RequiredHosts": d.required_hosts,
                "BacklogPerReadyHost": d.backlog_per_ready_host,
                "BootingHosts": result.signals.pending,
                "InServiceHosts": result.signals.in_service,
                "ScaleOut": 1.0 if result.applied == "scale_out" else 0.0,
                "ScaleIn": 1.0 if result.applied == "scale_in" else 0.0,
                "CapacityAtMax": 1.0 if d.capacity_at_max else 0.0,
                "Panic": 1.0 if d.panic else 0.0,
            }
        for name, value in values.items():
            with single_metric(
                name=name, unit=MetricUnit.Count, value=value, namespace=METRICS_NAMESPACE
            ) as m:
                m.add_dimension(name="Tier", value=result.tier)

    return report
