"""The host's lifecycle (docs/host-contract.md): booting → ready → draining → drained, or booting → failed
when the bootstrap fails (written by `host-agent boot-failed`; the launch workflow then abandons the host).

Pure state: the agent feeds it events (vLLM ready, drain asked for, in-flight count) and acts on what it
answers (take work or not, hand back what is left, write the registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HostState(StrEnum):
    BOOTING = "booting"
    READY = "ready"
    DRAINING = "draining"
    DRAINED = "drained"
    FAILED = "failed"


class DrainReason(StrEnum):
    REQUESTED = "drain_requested"  # the drain workflow set it in the registry
    SPOT_NOTICE = "spot_notice"  # IMDSv2 spot/instance-action
    SHUTDOWN = "shutdown"  # SIGTERM from systemd


@dataclass
class Lifecycle:
    grace_s: float  # how long in-flight generations may run once draining begins
    state: HostState = HostState.BOOTING
    drain_reason: DrainReason | None = None
    drain_started_at: float | None = None

    @property
    def draining(self) -> bool:
        return self.state in (HostState.DRAINING, HostState.DRAINED)

    def mark_ready(self) -> bool:
        """True when this changed the state; a host asked to drain before it was ready never becomes ready."""
        if self.state is not HostState.BOOTING:
            return False
        self.state = HostState.READY
        return True

    def request_drain(self, reason: DrainReason, now: float) -> bool:
        if self.draining:
            return False
        self.state = HostState.DRAINING
        self.drain_reason, self.drain_started_at = reason, now
        return True

    def hand_back_due(self, now: float) -> bool:
        """In-flight work still running past the grace period goes back to the queue."""
        return (
            self.state is HostState.DRAINING
            and self.drain_started_at is not None
            and now >= self.drain_started_at + self.grace_s
        )

    def settle(self, in_flight: int) -> bool:
        """DRAINING with nothing in flight is DRAINED; True when this changed the state."""
        if self.state is HostState.DRAINING and in_flight == 0:
            self.state = HostState.DRAINED
            return True
        return False
