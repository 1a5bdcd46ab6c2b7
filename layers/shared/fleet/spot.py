"""Spot two-minute warning: replace the host at once and let it drain through its lifecycle hook.

Terminating it in its Auto Scaling Group without decrementing the desired capacity makes the group
launch the replacement now (not after the reclaim), and the terminate hook starts the drain workflow,
which hands the host's in-flight work back within the two minutes.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.errors import ScalingActionError


def replace_interrupted_host(instance_id: str, *, autoscaling: Any, fleet_groups: set[str]) -> dict[str, Any]:
    try:
        found = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
    except (ClientError, BotoCoreError) as exc:
        raise ScalingActionError(f"looking up {instance_id}: {exc}") from exc
    if not found or found[0]["AutoScalingGroupName"] not in fleet_groups:
        return {"instance_id": instance_id, "action": "ignored", "reason": "not a fleet host"}
    if found[0]["LifecycleState"].startswith("Terminating"):
        return {"instance_id": instance_id, "action": "ignored", "reason": "already leaving"}
    try:
        autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
        )
    except (ClientError, BotoCoreError) as exc:
        raise ScalingActionError(f"replacing {instance_id}: {exc}") from exc
    return {"instance_id": instance_id, "action": "replacing", "group": found[0]["AutoScalingGroupName"]}
