"""Auto Scaling lifecycle hooks for moto, which stores hooks but never waits on them.

With a terminate hook on the group, TerminateInstanceInAutoScalingGroup now puts the instance in
`Terminating:Wait` and emits the "EC2 Instance-terminate Lifecycle Action" event to the deployed
EventBridge rules, as Auto Scaling does; the instance leaves only when CompleteLifecycleAction is called
(or, in AWS, when the heartbeat times out). CompleteLifecycleAction and RecordLifecycleActionHeartbeat,
which moto lacks, are added and recorded for tests. moto drops a hook's NotificationMetadata, so the
runtime records it here (`hook_metadata`) and each event carries it, as in AWS. Launch hooks are not
emulated for scaling: moto starts instances InService, so tests deliver launch events themselves
(`launch_event`); an instance refresh's launches wait on the hook (local_runtime.instance_refresh).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


@dataclass
class PendingAction:
    token: str
    group: str
    hook: str
    instance_id: str
    transition: str
    should_decrement: bool
    heartbeats: int = 0


@dataclass
class LifecycleEmulator:
    deliver: Callable[[dict[str, Any]], Any]  # the runtime's EventBridge delivery
    account: str
    region: str
    pending: dict[str, PendingAction] = field(default_factory=dict)
    completed: list[tuple[str, str, str]] = field(default_factory=list)  # (instance, transition, result)
    hook_metadata: dict[tuple[str, str], str] = field(default_factory=dict)  # (group, hook) -> metadata
    # Called with each completed action and its result (the instance refresh waits on its launches).
    listeners: list[Callable[[PendingAction, str], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def patches(self) -> Iterator[Any]:
        from moto.autoscaling.models import AutoScalingBackend
        from moto.autoscaling.responses import AutoScalingResponse
        from moto.core.responses import EmptyResult

        emulator = self
        original_terminate = AutoScalingBackend.terminate_instance

        def terminate_instance(backend: Any, instance_id: str, should_decrement: bool) -> Any:
            state = next(
                s
                for g in backend.autoscaling_groups.values()
                for s in g.instance_states
                if s.instance.id == instance_id
            )
            group = state.instance.autoscaling_group
            hook = next(
                (
                    h
                    for h in backend.lifecycle_hooks.values()
                    if h.auto_scaling_group_name == group.name and h.lifecycle_transition == TERMINATING
                ),
                None,
            )
            if hook is None or state.lifecycle_state.startswith("Terminating"):
                return original_terminate(backend, instance_id, should_decrement)
            state.lifecycle_state = "Terminating:Wait"
            original_size = group.desired_capacity
            if should_decrement:
                group.desired_capacity -= 1  # at once, as in AWS; the instance stays until the hook completes
            else:
                # AWS launches the replacement now, while the leaving instance waits on its hook.
                group.set_desired_capacity(group.desired_capacity + 1)
                group.desired_capacity -= 1
            action = PendingAction(str(uuid.uuid4()), group.name, hook.name, instance_id, TERMINATING, False)
            with emulator._lock:
                emulator.pending[action.token] = action
            emulator.deliver(emulator.event(action))
            from moto.autoscaling.models import TerminateInstanceActivity

            return TerminateInstanceActivity(state.instance, original_size)

        def complete_lifecycle_action(response: Any) -> Any:
            token = response._get_param("LifecycleActionToken")
            result = response._get_param("LifecycleActionResult")
            with emulator._lock:
                action = emulator.pending.pop(token, None)
                if action is not None:
                    emulator.completed.append((action.instance_id, action.transition, result))
            if action is not None and action.transition == TERMINATING:
                original_terminate(response.autoscaling_backend, action.instance_id, action.should_decrement)
            if action is not None:
                for listener in emulator.listeners:
                    listener(action, result)
            return EmptyResult()

        def record_lifecycle_action_heartbeat(response: Any) -> Any:
            with emulator._lock:
                action = emulator.pending.get(response._get_param("LifecycleActionToken"))
                if action is not None:
                    action.heartbeats += 1
            return EmptyResult()

        yield mock.patch.object(AutoScalingBackend, "terminate_instance", terminate_instance)
        yield mock.patch.object(
            AutoScalingResponse, "complete_lifecycle_action", complete_lifecycle_action, create=True
        )
        yield mock.patch.object(
            AutoScalingResponse,
            "record_lifecycle_action_heartbeat",
            record_lifecycle_action_heartbeat,
            create=True,
        )

    def launch_event(self, group: str, instance_id: str, hook: str = "host-ready") -> dict[str, Any]:
        """Register a pending launch action and return its event (for the caller to deliver)."""
        action = PendingAction(str(uuid.uuid4()), group, hook, instance_id, LAUNCHING, False)
        with self._lock:
            self.pending[action.token] = action
        return self.event(action)

    def event(self, action: PendingAction) -> dict[str, Any]:
        kind = "terminate" if action.transition == TERMINATING else "launch"
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": f"EC2 Instance-{kind} Lifecycle Action",
            "source": "aws.autoscaling",
            "account": self.account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [],
            "detail": {
                "LifecycleActionToken": action.token,
                "AutoScalingGroupName": action.group,
                "LifecycleHookName": action.hook,
                "EC2InstanceId": action.instance_id,
                "LifecycleTransition": action.transition,
                "NotificationMetadata": self.hook_metadata.get((action.group, action.hook), ""),
            },
        }
