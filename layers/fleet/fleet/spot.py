"""Spot two-minute warning: replace the host at once and let it drain through its lifecycle hook.

Terminating it in its Auto Scaling Group without decrementing the desired capacity makes the group
launch the replacement now (not after the reclaim), and the terminate hook starts the drain workflow,
which hands the host's in-flight work back within the two minutes.
"""

from __future__ import annotations

from typing import Any

from fleet.ports import HostReplacer


def replace_interrupted_host(
    instance_id: str, *, hosts: HostReplacer, fleet_groups: set[str]
) -> dict[str, Any]:
    found = hosts.group_of(instance_id)
    if found is None or found[0] not in fleet_groups:
        return {"instance_id": instance_id, "action": "ignored", "reason": "not a fleet host"}
    group, lifecycle_state = found
    if lifecycle_state.startswith("Terminating"):
        return {"instance_id": instance_id, "action": "ignored", "reason": "already leaving"}
    hosts.replace(instance_id)
    return {"instance_id": instance_id, "action": "replacing", "group": group}
