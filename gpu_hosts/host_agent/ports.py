"""What the host agent needs from the outside world, as protocols: adapters/ implements these over boto3,
HTTP and NVML, and fakes/ in memory for the tests; services.py wires the real ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from host_agent.drain import HostState


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class OutgoingResult:
    entry_id: str  # unique within one publish call
    body: str


class RequestQueue(Protocol):
    def receive(self, max_messages: int, wait_s: int, visibility_timeout_s: int) -> list[QueueMessage]: ...

    def delete(self, receipt_handles: Sequence[str]) -> list[str]:
        """Returns the handles that could not be deleted."""
        ...

    def change_visibility(self, receipt_handles: Sequence[str], timeout_s: int) -> list[str]:
        """Returns the handles whose visibility could not be changed."""
        ...

    def dead_letter(self, message: QueueMessage, attributes: Mapping[str, str]) -> None: ...


class ResultSink(Protocol):
    def publish(self, destination: str, results: Sequence[OutgoingResult]) -> list[str]:
        """Publishes to an SNS topic or SQS queue ARN; returns the entry ids that failed."""
        ...


class InferenceServer(Protocol):
    def generate(self, path: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...

    def healthy(self) -> bool: ...


class Registry(Protocol):
    """The host's item in the fleet's host registry (docs/host-contract.md)."""

    def register(self, now: datetime) -> bool: ...

    def heartbeat(self, now: datetime, in_flight: int) -> bool: ...

    def set_state(
        self, state: HostState, now: datetime, in_flight: int, *, drain_requested: bool = False
    ) -> None: ...


class SpotNotices(Protocol):
    def spot_instance_action(self) -> dict[str, object] | None: ...


class MetricsSink(Protocol):
    def put(self, data: list[dict[str, Any]]) -> int: ...
