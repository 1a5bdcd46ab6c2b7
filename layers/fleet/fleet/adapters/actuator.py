"""Applies decisions: scale-out sets the desired capacity; scale-in terminates chosen hosts, so each one
leaves through its terminate lifecycle hook and the drain workflow (never a blind desired-count drop).
A Spot-interrupted host is replaced the same way, without lowering the desired capacity."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.config import TierTarget
from fleet.errors import ScalingActionError


class AutoScalingActuator:
    def __init__(self, autoscaling: Any, dynamodb: Any, hosts_table: str) -> None:
        self._autoscaling, self._dynamodb, self._hosts_table = autoscaling, dynamodb, hosts_table

    def scale_out(self, tier: TierTarget, desired: int) -> None:
        try:
            self._autoscaling.set_desired_capacity(
                AutoScalingGroupName=tier.asg_name, DesiredCapacity=desired, HonorCooldown=False
            )
        except (ClientError, BotoCoreError) as exc:
            raise ScalingActionError(f"{tier.name}: set desired {desired}: {exc}") from exc

    def scale_in(self, tier: TierTarget, remove: int) -> list[str]:
        """Terminate `remove` in-service hosts, least busy first; returns their instance ids."""
        try:
            group = self._autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[tier.asg_name])[
                "AutoScalingGroups"
            ][0]
            candidates = [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]
            chosen = sorted(candidates, key=self._in_flight)[:remove]
            for instance_id in chosen:
                self._autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
                )
        except (ClientError, BotoCoreError, IndexError) as exc:
            raise ScalingActionError(f"{tier.name}: scale in by {remove}: {exc}") from exc
        return chosen

    def _in_flight(self, instance_id: str) -> int:
        # Hosts report in-flight requests in the registry (docs/host-contract.md); unknown counts as idle.
        if not self._hosts_table:
            return 0
        item = self._dynamodb.get_item(TableName=self._hosts_table, Key={"instance_id": {"S": instance_id}})
        return int(item.get("Item", {}).get("in_flight", {}).get("N", 0))

    def group_of(self, instance_id: str) -> tuple[str, str] | None:
        try:
            found = self._autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])[
                "AutoScalingInstances"
            ]
        except (ClientError, BotoCoreError) as exc:
            raise ScalingActionError(f"looking up {instance_id}: {exc}") from exc
        return (found[0]["AutoScalingGroupName"], found[0]["LifecycleState"]) if found else None

    def replace(self, instance_id: str) -> None:
        try:
            self._autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
            )
        except (ClientError, BotoCoreError) as exc:
            raise ScalingActionError(f"replacing {instance_id}: {exc}") from exc
