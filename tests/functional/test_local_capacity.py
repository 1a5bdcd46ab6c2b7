"""The local stack at fleet scale, and how the deployed fleet simulation fails.

moto gives a terminated instance's private address back to the subnet (the local runtime's seam), so a
simulation's launches and replacements never exhaust it; and when the deployed controller fails, `fleet
simulate` says so in one line on stderr and exits 1.
"""

from __future__ import annotations

import ipaddress
import time
import types
from typing import Any

import boto3
import pytest

from cli.fleet import main
from local_runtime.cloud import REGION, SUBNET_CIDRS, LocalCloud
from local_runtime.lambdas import InProcessLambdas

# Two /24 subnets held 502 instance addresses, and moto launches a group into the first one only.
OLD_POOL = 2 * 251
# moto rounds the mixed instances policy's on-demand/Spot split down: a few hosts under this at once.
DESIRED = 200
ROUNDS = 5
INTERRUPTED = 40  # hosts EC2 terminates each round; the group launches their replacements


def _ec2_instances() -> dict[str, Any]:
    """moto's EC2 instances by id, terminated ones included. Read from the backend: moto's DescribeInstances
    scans every tag of the account for each instance, about a minute per call over a thousand instances."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    return {i.id: i for reservation in backend.reservations.values() for i in reservation.instances}


def _in_group(autoscaling: Any, group: str) -> dict[str, str]:
    """The group's instances (Auto Scaling API), each running: id -> private address."""
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    ids = [i["InstanceId"] for i in described["AutoScalingGroups"][0]["Instances"]]
    instances = _ec2_instances()
    assert {instances[i].state for i in ids} <= {"running"}
    return {i: instances[i].private_ip for i in ids}


def _launched(group: str) -> int:
    """Every instance the group ever launched, terminated ones included."""
    return sum(
        1
        for instance in _ec2_instances().values()
        if getattr(instance, "autoscaling_group", None) is not None
        and instance.autoscaling_group.name == group
    )


@pytest.fixture
def cloud(make_cloud: Any) -> LocalCloud:
    cloud: LocalCloud = make_cloud(embedding_provider="hash").cloud
    return cloud


def test_launches_and_replacements_reuse_the_terminated_instances_addresses(cloud: LocalCloud) -> None:
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    group = cloud.physical_ids["GoldAutoScalingGroup"]
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    subnets = ec2.describe_subnets(SubnetIds=described[0]["VPCZoneIdentifier"].split(","))["Subnets"]
    assert [(s["CidrBlock"], s["AvailabilityZone"]) for s in subnets] == [
        (SUBNET_CIDRS[0], f"{REGION}a"),
        (SUBNET_CIDRS[1], f"{REGION}b"),
    ]
    first_subnet = ipaddress.ip_network(SUBNET_CIDRS[0])  # where moto launches all of a group's instances
    expected_launches = len(_in_group(autoscaling, group))  # the group's minimum, launched with the stack
    peak = 0
    addresses: set[str] = set()
    started = time.monotonic()
    for _ in range(ROUNDS):
        before = len(_in_group(autoscaling, group))
        autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=DESIRED)
        running = _in_group(autoscaling, group)
        # Spot-like interruptions: EC2 terminates some hosts, and the group replaces each at once.
        ec2.terminate_instances(InstanceIds=sorted(running)[:INTERRUPTED])
        replaced = _in_group(autoscaling, group)
        expected_launches += len(running) - before + INTERRUPTED
        assert len(replaced) == len(running)
        assert len(set(replaced.values())) == len(replaced)  # no address is held twice
        assert all(ipaddress.ip_address(a) in first_subnet for a in replaced.values())
        peak = max(peak, len(replaced))
        addresses |= set(running.values()) | set(replaced.values())
        autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
        assert _in_group(autoscaling, group) == {}
    elapsed = time.monotonic() - started

    assert _launched(group) == expected_launches
    assert expected_launches > 2 * OLD_POOL  # far more than the old subnets could ever have addressed
    # Every launch but the first round's took an address a terminated instance had given back.
    assert peak > DESIRED * 0.9 and len(addresses) <= peak
    assert elapsed < 60, f"{expected_launches} launches took {elapsed:.0f} s"


# --- a failing deployed controller, as `fleet simulate` reports it ------------------------------------------


def _fail_the_controller_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """FleetControllerFunction's handler raises what moto raises when a subnet has no address left."""
    original = InProcessLambdas.module

    def module(lambdas: InProcessLambdas, function_name: str, handler: str, environment: Any) -> Any:
        loaded = original(lambdas, function_name, handler, environment)
        if "FleetControllerFunction" not in function_name:
            return loaded

        def fail(event: Any, context: Any) -> Any:
            raise StopIteration

        return types.SimpleNamespace(**{handler.rsplit(".", 1)[1]: fail})

    monkeypatch.setattr(InProcessLambdas, "module", module)


def _fail_writing_the_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto fails while the simulated gold group is mirrored onto its Auto Scaling group."""
    from fleet_sim.deployed import DeployedController

    original = DeployedController._write_world

    def write_world(controller: DeployedController, tier: str, obs: Any) -> None:
        if tier == "gold":
            raise StopIteration
        original(controller, tier, obs)

    monkeypatch.setattr(DeployedController, "_write_world", write_world)


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (
            _fail_the_controller_handler,
            "fleet: FleetControllerFunction failed at simulated minute 0: StopIteration",
        ),
        (
            _fail_writing_the_world,
            "fleet: writing the simulated gold tier into moto at simulated minute 0: StopIteration",
        ),
    ],
    ids=["handler-error", "moto-error"],
)
def test_simulate_reports_a_failing_deployed_controller_in_one_line(
    break_it: Any, expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    break_it(monkeypatch)
    capsys.readouterr()
    assert main(["simulate", "--trace", "spike", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.err == expected + "\n"
    assert captured.out == ""


def test_bench_reports_a_trace_error_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cli.fleet
    from fleet_sim import TraceError

    def run(*args: Any) -> Any:
        raise TraceError("trace diurnal-1000: players must be >= 0\n(row 3)")

    monkeypatch.setattr(cli.fleet, "run", run)
    assert main(["bench", "--controller", "policy"]) == 1
    assert capsys.readouterr().err == "fleet: trace diurnal-1000: players must be >= 0 (row 3)\n"


def test_an_unexpected_error_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.fleet

    def run(*args: Any) -> Any:
        raise KeyError("gold")

    monkeypatch.setattr(cli.fleet, "run", run)
    with pytest.raises(KeyError):
        main(["simulate", "--trace", "spike", "--controller", "policy"])
