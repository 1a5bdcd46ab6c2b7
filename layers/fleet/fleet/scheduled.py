"""What the two scheduled fleet functions run: one controller tick over every tier, in their own mode.

The every-minute controller runs it in "scale_out" mode, the five-minute scale-down check in "scale_in"
(fleet.controller says why); each decision is reported as metrics and an audit line (fleet.reporting).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools import Logger

from fleet.controller import Mode, audit_record, run_tick
from fleet.reporting import reporter
from fleet.services import FleetServices


def utc_now() -> datetime:
    """The handlers' clock (the simulator replaces it with simulated time)."""
    return datetime.now(UTC)


def scheduled_tick(services: FleetServices, logger: Logger, *, mode: Mode) -> dict[str, object]:
    now, dry_run = utc_now(), services.settings.dry_run
    results = run_tick(
        services.settings,
        mode=mode,
        now=now,
        reader=services.reader,
        store=services.store,
        actuator=services.actuator,
        report=reporter(logger, dry_run=dry_run, now=now),
    )
    return {"tiers": [audit_record(r, dry_run=dry_run, decided_at=now) for r in results]}
