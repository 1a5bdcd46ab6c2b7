"""The host's own item in FleetHostsTable (key instance_id): state, in_flight, heartbeat, drain flag, and
the reason of a failed bootstrap.

Only UpdateItem, so a field the drain workflow set (drain_requested, drain_requested_at) is never
overwritten by the host's own writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from host_agent.drain import HostState
from host_agent.errors import RegistryError

_TTL = timedelta(days=1)
# A reason is for a person reading the item and the launch workflow's output; a long one is cut here.
MAX_REASON_CHARS = 1000


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class HostRegistry:
    def __init__(self, dynamodb: Any, table: str, instance_id: str, tier: str) -> None:
        self._dynamodb, self._table = dynamodb, table
        self._instance_id, self._tier = instance_id, tier

    def _update(
        self, expression: str, values: dict[str, Any], names: dict[str, str] | None = None
    ) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"instance_id": {"S": self._instance_id}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if names:
            arguments["ExpressionAttributeNames"] = names
        try:
            return dict(self._dynamodb.update_item(**arguments).get("Attributes", {}))
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"{self._table}/{self._instance_id}: {exc}") from exc

    def _beat(self, now: datetime, in_flight: int) -> dict[str, Any]:
        return {
            ":tier": {"S": self._tier},
            ":now": {"S": _iso(now)},
            ":expires": {"N": str(int((now + _TTL).timestamp()))},
            ":in_flight": {"N": str(in_flight)},
        }

    def register(self, now: datetime) -> bool:
        """Writes state=booting; answers whether a drain was already asked for (an agent restart mid-drain)."""
        item = self._update(
            "SET tier = :tier, #state = :state, in_flight = :in_flight, heartbeat_at = :now,"
            " expires_at = :expires, drain_requested = if_not_exists(drain_requested, :no)",
            {**self._beat(now, 0), ":state": {"S": HostState.BOOTING.value}, ":no": {"BOOL": False}},
            {"#state": "state"},
        )
        return bool(item.get("drain_requested", {}).get("BOOL", False))

    def heartbeat(self, now: datetime, in_flight: int) -> bool:
        """Refreshes heartbeat_at and in_flight; answers whether the drain workflow asked for a drain."""
        item = self._update(
            "SET tier = :tier, in_flight = :in_flight, heartbeat_at = :now, expires_at = :expires",
            self._beat(now, in_flight),
        )
        return bool(item.get("drain_requested", {}).get("BOOL", False))

    def set_state(
        self, state: HostState, now: datetime, in_flight: int, *, drain_requested: bool = False
    ) -> None:
        expression = "SET #state = :state, in_flight = :in_flight, heartbeat_at = :now, expires_at = :expires, tier = :tier"
        values = {**self._beat(now, in_flight), ":state": {"S": state.value}}
        if state is HostState.READY:
            expression += ", ready_at = :now"
        if drain_requested:
            expression += ", drain_requested = :yes"
            values[":yes"] = {"BOOL": True}
        self._update(expression, values, {"#state": "state"})

    def mark_failed(self, reason: str, now: datetime) -> None:
        """Writes state=failed with the reason: the launch workflow abandons the host at its next poll."""
        values = {
            **self._beat(now, 0),
            ":state": {"S": HostState.FAILED.value},
            ":reason": {"S": reason.strip()[:MAX_REASON_CHARS] or "no reason given"},
        }
        self._update(
            "SET tier = :tier, #state = :state, in_flight = :in_flight, heartbeat_at = :now,"
            " expires_at = :expires, failure_reason = :reason, failed_at = :now",
            values,
            {"#state": "state"},
        )
