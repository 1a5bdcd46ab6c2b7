"""Auto Scaling instance refreshes for moto, which has none (StartInstanceRefresh is not implemented).

StartInstanceRefresh, DescribeInstanceRefreshes and CancelInstanceRefresh are added to moto's Auto Scaling
API. A refresh runs on its own thread, as the service runs it beside the caller, and replaces the group's
instances in batches that keep the group at or above MinHealthyPercentage of its desired capacity:

- with MaxHealthyPercentage above 100 it launches first (up to the maximum, at least one instance), waits
  for the new instances to pass their launch hook and InstanceWarmup, then terminates as many old ones;
- with MaxHealthyPercentage 100 it terminates first, as many as MinHealthyPercentage allows (at least one),
  then launches their replacements.

Every new instance goes through the group's launch lifecycle hook (Pending:Wait, the "EC2 Instance-launch
Lifecycle Action" event to the deployed rules, InService at CONTINUE; ABANDON terminates it and fails the
refresh), and every old one through the terminate hook (local_runtime.lifecycle), so the drain and launch
workflows run as in AWS. SkipMatching skips instances already on the desired launch template version;
CheckpointPercentages pause the refresh for CheckpointDelay; AlarmSpecification fails it when a named alarm
is in ALARM; AutoRollback then replaces what was deployed with the configuration the group had before (only
with a DesiredConfiguration on a numbered version, as AWS requires). A second StartInstanceRefresh while one
is active is refused with AWS's error, InstanceRefreshInProgress.

moto records no launch template version per instance (it reports the group's default version for all), so
the version each instance was launched with is kept here and reported by DescribeAutoScalingInstances and
DescribeAutoScalingGroups. moto counts only InService instances towards desired capacity; AWS counts
pending ones too, and so does this, so a launch that waits on its hook is not launched twice.

Step Functions names an AWS SDK integration's error `<Service>.<ErrorCode>Exception` in PascalCase
(AutoScaling.InstanceRefreshInProgressException); moto names it after botocore's class in the resource's
lower-case service name, which no Retry could match: `sdk_error_names()` makes it AWS's.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from local_runtime.lifecycle import LAUNCHING, LifecycleEmulator, PendingAction

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
DEFAULT_CHECKPOINT_DELAY_S = 3600
DEFAULT_WARMUP_S = 300
# PascalCase service names of Step Functions' AWS SDK errors, for the services the state machines call.
SERVICE_ERROR_NAMES = {"autoscaling": "AutoScaling", "cloudwatch": "CloudWatch"}


class RefreshFailedError(Exception):
    """The refresh cannot go on (a launch abandoned, an alarm in ALARM, cancelled)."""


@dataclass(frozen=True)
class Batch:
    launch_first: bool
    size: int


def plan_batch(desired: int, remaining: int, min_healthy_pct: int, max_healthy_pct: int) -> Batch:
    """How many instances the next step replaces, and in which order, so that at least
    ceil(desired x MinHealthyPercentage) stay healthy and at most floor(desired x MaxHealthyPercentage) run
    (launch-first steps add at least one instance over desired, as AWS does)."""
    floor_healthy = math.ceil(desired * min_healthy_pct / 100)
    if max_healthy_pct > 100:
        extra = max(1, desired * max_healthy_pct // 100 - desired)
        return Batch(launch_first=True, size=max(1, min(remaining, extra)))
    return Batch(launch_first=False, size=max(1, min(remaining, desired - floor_healthy)))


@dataclass
class Refresh:
    refresh_id: str
    group: str
    preferences: dict[str, Any]
    desired_configuration: dict[str, Any]
    target_version: str
    previous_version: str
    status: str = "Pending"
    status_reason: str = ""
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    end_time: datetime | None = None
    to_update: int = 0
    replaced: int = 0
    # For tests: the group's healthy count after every step of the refresh, and what it replaced.
    healthy_history: list[int] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def describe(self) -> dict[str, Any]:
        percentage = 100 if self.to_update == 0 else min(100, 100 * self.replaced // self.to_update)
        described: dict[str, Any] = {
            "InstanceRefreshId": self.refresh_id,
            "AutoScalingGroupName": self.group,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": percentage if self.status != "Pending" else 0,
            "InstancesToUpdate": max(0, self.to_update - self.replaced),
            "Preferences": self.preferences,
            "Strategy": "Rolling",
        }
        if self.status_reason:
            described["StatusReason"] = self.status_reason
        if self.end_time is not None:
            described["EndTime"] = self.end_time
        if self.desired_configuration:
            described["DesiredConfiguration"] = self.desired_configuration
        return described


class InstanceRefreshInProgressError(Exception):
    pass


@dataclass
class InstanceRefreshEmulator:
    lifecycle: LifecycleEmulator
    sleep_scale: Callable[[], float]  # the runtime's wait scale, read at each wait
    refreshes: list[Refresh] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # instance id -> launch template version
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _launches: dict[str, tuple[threading.Event, list[str]]] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------ moto patches
    def patches(self) -> Iterator[Any]:
        from moto.autoscaling.exceptions import AutoscalingClientError
        from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState
        from moto.autoscaling.responses import AutoScalingResponse
        from moto.core.responses import ActionResult

        emulator = self

        class InProgress(AutoscalingClientError):
            code = "InstanceRefreshInProgress"

        class ActiveRefreshNotFound(AutoscalingClientError):
            code = "ActiveInstanceRefreshNotFound"

        def start_instance_refresh(response: Any) -> Any:
            params = response._get_params()
            try:
                refresh = emulator.start(
                    response.autoscaling_backend,
                    params["AutoScalingGroupName"],
                    params.get("Preferences") or {},
                    params.get("DesiredConfiguration") or {},
                )
            except InstanceRefreshInProgressError as exc:
                raise InProgress(str(exc)) from None
            except ValueError as exc:
                raise AutoscalingClientError("ValidationError", str(exc)) from None
            return ActionResult({"InstanceRefreshId": refresh.refresh_id})

        def describe_instance_refreshes(response: Any) -> Any:
            group = response._get_param("AutoScalingGroupName")
            wanted = set(response._get_params().get("InstanceRefreshIds") or [])
            with emulator._lock:
                found = [
                    r.describe()
                    for r in reversed(emulator.refreshes)
                    if r.group == group and (not wanted or r.refresh_id in wanted)
                ]
            return ActionResult({"InstanceRefreshes": found})

        def cancel_instance_refresh(response: Any) -> Any:
            group = response._get_param("AutoScalingGroupName")
            refresh = emulator.active(group)
            if refresh is None:
                raise ActiveRefreshNotFound(f"No in progress or pending Instance Refresh found for {group}.")
            refresh.status = "Cancelling"
            refresh.cancel.set()
            return ActionResult({"InstanceRefreshId": refresh.refresh_id})

        original_replace = FakeAutoScalingGroup.replace_autoscaling_group_instances

        def replace_instances(group: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
            before = {s.instance.id for s in group.instance_states}
            original_replace(group, count_needed, propagated_tags)
            version = emulator.group_version(group)
            for state in group.instance_states:
                if state.instance.id not in before:
                    emulator.versions[state.instance.id] = version

        def active_instances(group: Any) -> list[Any]:
            return [s for s in group.instance_states if s.lifecycle_state in ("InService", "Pending:Wait")]

        original_launch_template: Any = InstanceState.launch_template  # a property

        def launch_template(state: Any) -> Any:
            template = original_launch_template.fget(state)
            if template is not None and state.instance.id in emulator.versions:
                template = {**template, "Version": emulator.versions[state.instance.id]}
            return template

        self.lifecycle.listeners.append(self._on_lifecycle_complete)
        yield mock.patch.object(
            AutoScalingResponse, "start_instance_refresh", start_instance_refresh, create=True
        )
        yield mock.patch.object(
            AutoScalingResponse, "describe_instance_refreshes", describe_instance_refreshes, create=True
        )
        yield mock.patch.object(
            AutoScalingResponse, "cancel_instance_refresh", cancel_instance_refresh, create=True
        )
        yield mock.patch.object(
            FakeAutoScalingGroup, "replace_autoscaling_group_instances", replace_instances
        )
        yield mock.patch.object(FakeAutoScalingGroup, "active_instances", active_instances)
        yield mock.patch.object(InstanceState, "launch_template", property(launch_template))
        yield sdk_error_names()

    def close(self) -> None:
        """Stop every refresh still running (the runtime's exit): no thread outlives the runtime."""
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=30)

    # ------------------------------------------------------------ API
    def active(self, group: str) -> Refresh | None:
        with self._lock:
            return next((r for r in self.refreshes if r.group == group and r.active), None)

    def start(
        self, backend: Any, group_name: str, preferences: dict[str, Any], desired: dict[str, Any]
    ) -> Refresh:
        group = backend.autoscaling_groups.get(group_name)
        if group is None:
            raise ValueError(f"AutoScalingGroup name not found - {group_name}")
        preferences = _typed_preferences(preferences)
        previous = self.group_version(group)
        target = previous
        if desired:
            spec = (desired.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get(
                "LaunchTemplateSpecification"
            ) or desired.get("LaunchTemplate", {})
            target = self._resolve(group, str(spec.get("Version", "$Default")))
        if preferences.get("AutoRollback"):
            version = group.launch_template_version
            if not desired or not str(version).isdigit():
                raise ValueError(
                    "AutoRollback requires a DesiredConfiguration and a group on a numbered launch template"
                    " version (not $Latest or $Default)"
                )
        with self._lock:
            if any(r.group == group_name and r.active for r in self.refreshes):
                raise InstanceRefreshInProgressError(
                    f"An Instance Refresh is already in progress and blocks the execution of this Instance"
                    f" Refresh for {group_name}."
                )
            refresh = Refresh(str(uuid.uuid4()), group_name, preferences, desired, target, previous)
            self.refreshes.append(refresh)
        thread = threading.Thread(
            target=self._run, args=(backend, refresh), name=f"instance-refresh-{group_name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return refresh

    # ------------------------------------------------------------ the refresh
    def _run(self, backend: Any, refresh: Refresh) -> None:
        group = backend.autoscaling_groups[refresh.group]
        try:
            refresh.status = "InProgress"
            self._replace(backend, group, refresh, refresh.target_version)
            if refresh.desired_configuration:
                self._set_group_version(group, refresh.target_version)
                self._apply_desired_policy(group, refresh.desired_configuration)
            refresh.status = "Successful"
        except RefreshFailedError as exc:
            refresh.status_reason = str(exc)
            if refresh.cancel.is_set() and not self._stop.is_set():
                refresh.status = "Cancelled"
            elif refresh.preferences.get("AutoRollback") and not self._stop.is_set():
                self._roll_back(backend, group, refresh)
            else:
                refresh.status = "Failed"
        except Exception as exc:  # a fault of the emulation itself: reported, never a refresh stuck running
            refresh.status, refresh.status_reason = "Failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            refresh.end_time = datetime.now(UTC)
            refresh.done.set()

    def _roll_back(self, backend: Any, group: Any, refresh: Refresh) -> None:
        refresh.status = "RollbackInProgress"
        refresh.cancel.clear()
        try:
            self._set_group_version(group, refresh.previous_version)
            self._replace(backend, group, refresh, refresh.previous_version, rollback=True)
            refresh.status = "RollbackSuccessful"
        except RefreshFailedError as exc:
            refresh.status = "RollbackFailed"
            refresh.status_reason = f"{refresh.status_reason}; rollback: {exc}"

    def _replace(
        self, backend: Any, group: Any, refresh: Refresh, version: str, *, rollback: bool = False
    ) -> None:
        prefs = refresh.preferences
        skip_matching = bool(prefs.get("SkipMatching", True)) or rollback
        old = [
            s.instance.id
            for s in group.instance_states
            if s.lifecycle_state == "InService"
            and not (skip_matching and self.versions.get(s.instance.id) == version)
        ]
        if not rollback:
            refresh.to_update = len(old)
        checkpoints = [] if rollback else sorted(int(p) for p in prefs.get("CheckpointPercentages") or [])
        desired = int(group.desired_capacity or 0)
        self._record(group, refresh)
        while old:
            self._check(refresh, rollback=rollback)
            batch = plan_batch(
                desired,
                len(old),
                int(prefs.get("MinHealthyPercentage", 90)),
                int(prefs.get("MaxHealthyPercentage", 100)),
            )
            leaving, old = old[: batch.size], old[batch.size :]
            if batch.launch_first:
                self._launch(backend, group, refresh, len(leaving), version)
                self._retire(backend, group, refresh, leaving)
            else:
                self._retire(backend, group, refresh, leaving)
                self._launch(backend, group, refresh, len(leaving), version)
            if not rollback:
                refresh.replaced += len(leaving)
                done = 100 * refresh.replaced // max(1, refresh.to_update)
                while checkpoints and done >= checkpoints[0]:
                    reached = checkpoints.pop(0)
                    if reached < 100 and old:
                        refresh.checkpoints.append(reached)
                        refresh.status_reason = f"Waiting for checkpoint at {reached}% to pass"
                        self._wait(float(prefs.get("CheckpointDelay", DEFAULT_CHECKPOINT_DELAY_S)), refresh)
                        refresh.status_reason = ""

    def _launch(self, backend: Any, group: Any, refresh: Refresh, count: int, version: str) -> None:
        """Launch `count` instances on `version` through the launch hook; return once they are healthy."""
        hook = _hook(backend, group.name, LAUNCHING)
        before = {s.instance.id for s in group.instance_states}
        group.desired_capacity = int(group.desired_capacity or 0) + count
        saved = group.launch_template_version
        group.launch_template_version = version  # moto launches from the group's version
        try:
            group.replace_autoscaling_group_instances(count, group.get_propagated_tags())
        finally:
            group.launch_template_version = saved
        new = [s for s in group.instance_states if s.instance.id not in before]
        for state in new:
            self.versions[state.instance.id] = version
            refresh.launched.append(state.instance.id)
        if hook is not None:
            waits = []
            for state in new:
                state.lifecycle_state = "Pending:Wait"
                launch: tuple[threading.Event, list[str]] = (threading.Event(), [])
                event = self.lifecycle.launch_event(group.name, state.instance.id, hook=hook.name)
                self._launches[event["detail"]["LifecycleActionToken"]] = launch
                waits.append((state, launch))
                self.lifecycle.deliver(event)
            for state, (completed, result) in waits:
                # The hook's own timeout ends an action nobody completes, with its default result.
                if not self._wait_for(completed, float(hook.heartbeat_timeout)):
                    result.append(hook.default_result)
                if result[0] != "CONTINUE":
                    state.lifecycle_state = "Terminating"
                    backend.terminate_instance(state.instance.id, should_decrement=True)
                    raise RefreshFailedError(
                        f"Instance {state.instance.id} failed its launch lifecycle hook ({result[0]})"
                    )
                state.lifecycle_state = "InService"
        self._wait(float(refresh.preferences.get("InstanceWarmup", DEFAULT_WARMUP_S)), refresh)
        self._record(group, refresh)

    def _retire(self, backend: Any, group: Any, refresh: Refresh, instance_ids: list[str]) -> None:
        """Terminate through the terminate hook (the drain workflow); return once the instances are gone."""
        for instance_id in instance_ids:
            backend.terminate_instance(instance_id, should_decrement=True)
            refresh.retired.append(instance_id)
        self._record(group, refresh)
        while any(s.instance.id in instance_ids for s in group.instance_states):
            if self._stop.wait(0.02):
                raise RefreshFailedError("the runtime stopped")
        self._record(group, refresh)

    def _check(self, refresh: Refresh, *, rollback: bool) -> None:
        if self._stop.is_set():
            raise RefreshFailedError("the runtime stopped")
        if refresh.cancel.is_set():
            raise RefreshFailedError("Cancelled by the user")
        if rollback:
            return
        alarms = (refresh.preferences.get("AlarmSpecification") or {}).get("Alarms") or []
        in_alarm = _alarms_in_alarm(list(alarms), self.lifecycle.region)
        if in_alarm:
            raise RefreshFailedError(f"CloudWatch alarms in ALARM state: {', '.join(in_alarm)}")

    def _wait(self, seconds: float, refresh: Refresh) -> None:
        if self._stop.wait(seconds * self.sleep_scale()):
            raise RefreshFailedError("the runtime stopped")

    def _wait_for(self, event: threading.Event, seconds: float) -> bool:
        deadline = seconds * self.sleep_scale()
        waited = 0.0
        while not event.wait(0.02):
            waited += 0.02
            if self._stop.is_set():
                raise RefreshFailedError("the runtime stopped")
            if waited >= deadline:
                return False
        return True

    def _record(self, group: Any, refresh: Refresh) -> None:
        healthy = sum(1 for s in group.instance_states if s.lifecycle_state == "InService")
        refresh.healthy_history.append(healthy)

    def _on_lifecycle_complete(self, action: PendingAction, result: str) -> None:
        finished = self._launches.pop(action.token, None)
        if finished is not None:
            finished[1].append(result)
            finished[0].set()

    # ------------------------------------------------------------ launch template versions
    def group_version(self, group: Any) -> str:
        return self._resolve(group, str(getattr(group, "launch_template_version", "") or "$Default"))

    @staticmethod
    def _resolve(group: Any, version: str) -> str:
        template = getattr(group, "ec2_launch_template", None)
        if template is None:
            return version
        if version == "$Latest":
            return str(template.latest_version_number)
        if version == "$Default":
            return str(template.default_version_number)
        return version

    @staticmethod
    def _apply_desired_policy(group: Any, desired: dict[str, Any]) -> None:
        """A successful refresh sets the group to its desired configuration ("updates the settings of the
        Auto Scaling group to reflect the new desired configuration"). Read strictly: the instance types and
        the On-Demand/Spot split the desired mixed instances policy leaves out are gone afterwards, so a
        workflow that names only the launch template loses them here, as it may on AWS."""
        desired_policy = desired.get("MixedInstancesPolicy")
        policy = group.mixed_instances_policy
        if not desired_policy or policy is None:
            return
        overrides = (desired_policy.get("LaunchTemplate") or {}).get("Overrides")
        if overrides:
            policy["LaunchTemplate"]["Overrides"] = [dict(o) for o in overrides]
        else:
            policy["LaunchTemplate"].pop("Overrides", None)
        policy["InstancesDistribution"] = dict(desired_policy.get("InstancesDistribution") or {})

    @staticmethod
    def _set_group_version(group: Any, version: str) -> None:
        group.launch_template_version = version
        policy = group.mixed_instances_policy or {}
        spec = policy.get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
        if spec is not None:
            spec["Version"] = version


def _typed_preferences(preferences: dict[str, Any]) -> dict[str, Any]:
    """The query protocol's strings as the API's types."""
    typed = dict(preferences)
    for name in ("MinHealthyPercentage", "MaxHealthyPercentage", "InstanceWarmup", "CheckpointDelay"):
        if name in typed:
            typed[name] = int(typed[name])
    for name in ("SkipMatching", "AutoRollback"):
        if name in typed and isinstance(typed[name], str):
            typed[name] = typed[name].lower() == "true"
    if "CheckpointPercentages" in typed:
        typed["CheckpointPercentages"] = [int(p) for p in typed["CheckpointPercentages"]]
    return typed


def _hook(backend: Any, group: str, transition: str) -> Any:
    return next(
        (
            h
            for h in backend.lifecycle_hooks.values()
            if h.auto_scaling_group_name == group and h.lifecycle_transition == transition
        ),
        None,
    )


def _alarms_in_alarm(names: list[str], region: str) -> list[str]:
    if not names:
        return []
    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name=region)
    alarms = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    return sorted(a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM")


def sdk_error_names() -> Any:
    """A patch of moto's AWS SDK task: a service error is named as Step Functions names it,
    `<Service>.<ErrorCode>` with the Exception suffix (docs: Step Functions, AWS SDK service integrations)."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk,
    )

    original_service = StateTaskServiceAwsSdk._normalise_service_error_name
    original_exception = StateTaskServiceAwsSdk._normalise_exception_name

    def service_name(service: str) -> str:
        return SERVICE_ERROR_NAMES.get(service.lower()) or original_service(service)

    def exception_name(service: str, ex: Exception) -> str:
        if not isinstance(ex, ClientError) or service not in SERVICE_ERROR_NAMES.values():
            return str(original_exception(service, ex))
        code = str(ex.response.get("Error", {}).get("Code") or type(ex).__name__)
        return f"{service}.{code}" + ("" if code.endswith("Exception") else "Exception")

    return _patch_all(
        mock.patch.object(
            StateTaskServiceAwsSdk, "_normalise_service_error_name", staticmethod(service_name)
        ),
        mock.patch.object(StateTaskServiceAwsSdk, "_normalise_exception_name", staticmethod(exception_name)),
    )


class _patch_all:  # used like mock.patch
    def __init__(self, *patches: Any) -> None:
        self.patches = patches

    def __enter__(self) -> None:
        for patch in self.patches:
            patch.__enter__()

    def __exit__(self, *exc: object) -> None:
        for patch in reversed(self.patches):
            patch.__exit__(*exc)
