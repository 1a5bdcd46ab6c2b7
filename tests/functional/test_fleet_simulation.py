"""The trace simulation driving the deployed controller functions (template.yaml on moto), and that the fast
in-memory path decides as they do."""

from __future__ import annotations

from typing import Any

import pytest

from fleet_sim import FleetPolicy, Trace, simulate
from fleet_sim.deployed import (
    CONTROLLER,
    SCALE_DOWN,
    DeployedController,
    DeployedControllerError,
    schedule_period_s,
)

# 50 minutes: a quiet start, a jump that needs a scale-out, and a fall followed by the 15 minutes of low
# demand the scale-down check waits for.
JUMP = Trace(name="jump", times_s=(0.0, 600.0, 1200.0), players=(600, 3000, 600), duration_s=3000.0)


@pytest.fixture(scope="module")
def deployed_run() -> tuple[DeployedController, Any]:
    controller = DeployedController()
    results = simulate(JUMP, {"deployed": controller, "policy": FleetPolicy}, seed=1)
    return controller, results


def test_the_schedules_come_from_the_template(deployed_run: tuple[DeployedController, Any]) -> None:
    cfn = deployed_run[0].cloud.template.cfn
    assert schedule_period_s(cfn, CONTROLLER) == 60.0
    assert schedule_period_s(cfn, SCALE_DOWN) == 300.0
    with pytest.raises(DeployedControllerError, match="no rate"):
        schedule_period_s(cfn, "NoSuchFunction")


def test_the_deployed_functions_run_on_their_schedules(deployed_run: tuple[DeployedController, Any]) -> None:
    controller, _ = deployed_run
    functions = [name for name, _ in controller.audit]
    # Every simulated minute the controller; on every fifth minute (0, 5, ... 45) the scale-down check too.
    assert functions.count(CONTROLLER) == 50
    assert functions.count(SCALE_DOWN) == 10
    tiers = {record["tier"] for _, payload in controller.audit for record in payload["tiers"]}
    assert tiers == {"gold", "silver", "bronze"}


def test_the_deployed_controller_scales_with_the_simulated_demand(
    deployed_run: tuple[DeployedController, Any],
) -> None:
    controller, results = deployed_run
    gold = results["deployed"].tiers["gold"].series
    assert max(gold.desired) > gold.desired[0]  # the jump was seen through moto's SQS and CloudWatch
    assert gold.desired[-1] < max(gold.desired)  # and the fall through the scale-down check
    applied = {record["applied"] for _, payload in controller.audit for record in payload["tiers"]}
    assert {"scale_out", "scale_in"} <= applied
    assert results["deployed"].scale_ins_with_queue == 0


def test_the_in_memory_path_decides_like_the_deployed_functions(
    deployed_run: tuple[DeployedController, Any],
) -> None:
    _, results = deployed_run
    deployed, in_memory = results["deployed"], results["policy"]
    # Not identical: the deployed functions read 1-minute CloudWatch datapoints by their period start.
    assert deployed.gpu_hours == pytest.approx(in_memory.gpu_hours, rel=0.15)
    assert abs(deployed.scale_actions - in_memory.scale_actions) <= 3
    assert abs(deployed.slo_violation_minutes - in_memory.slo_violation_minutes) <= 5
