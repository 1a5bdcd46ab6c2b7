"""The controller's memory between ticks in DynamoDB, one item per tier: stabilisation window, panic hold,
the arrival and players history, the learned throughput of each instance type and the launch backoff.

Two scheduled functions write the same item (the controller every minute, the scale-down check every five,
both on the same minute), so a write is conditional on the version it read: a write that would overwrite
the other function's is refused (`StateConflictError`) and the tick decides again from what is stored.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.errors import SignalsUnavailableError, StateConflictError
from fleet.policy import TierState

_NUMBERS = (
    "low_demand_since_s",
    "last_scale_out_s",
    "last_scale_in_s",
    "panic_until_s",
    "arrival_rps",
    "arrival_time_s",
    "arrival_trend",
    "requests_per_player",
    "waiting_since_s",
    "last_waiting_s",
    "launch_failure_time_s",
    "launch_backoff_until_s",
)
_PAIRS = ("arrival_history", "players_history", "required_history")  # lists of [time, value], as JSON text


class TierStateStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._dynamodb, self._table = dynamodb, table

    def load(self, tier: str) -> TierState:
        try:
            item = self._dynamodb.get_item(
                TableName=self._table, Key={"tier": {"S": tier}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise SignalsUnavailableError(f"{tier}: controller state unreadable: {exc}") from exc
        stored = item.get("Item", {})
        # Items written before a field existed simply lack it.
        pairs = {
            name: tuple((float(t), float(v)) for t, v in json.loads(stored[name]["S"]))
            for name in _PAIRS
            if name in stored
        }
        throughput = tuple(
            sorted(
                (name, float(value["N"])) for name, value in stored.get("throughput", {}).get("M", {}).items()
            )
        )
        fields: dict[str, Any] = {f: float(stored[f]["N"]) if f in stored else None for f in _NUMBERS}
        fields |= pairs
        fields["launch_backoff_s"] = float(stored.get("launch_backoff_s", {}).get("N", 0))
        return TierState(**fields, throughput=throughput, version=int(stored.get("version", {}).get("N", 0)))

    def save(self, tier: str, state: TierState, audit: dict[str, Any]) -> None:
        """Write `state` as version `state.version + 1`, only if the stored item is still at `state.version`."""
        item: dict[str, Any] = {
            "tier": {"S": tier},
            "last_decision": {"S": str(audit.get("action", ""))},
            "version": {"N": str(state.version + 1)},
        }
        for field in _NUMBERS:
            value = getattr(state, field)
            if value is not None:
                item[field] = {"N": str(Decimal(str(value)))}
        if state.launch_backoff_s:
            item["launch_backoff_s"] = {"N": str(Decimal(str(state.launch_backoff_s)))}
        for field in _PAIRS:
            item[field] = {"S": json.dumps([list(pair) for pair in getattr(state, field)])}
        if state.throughput:
            item["throughput"] = {"M": {name: {"N": str(Decimal(str(v)))} for name, v in state.throughput}}
        condition = "attribute_not_exists(version)" if state.version == 0 else "version = :read"
        values = {} if state.version == 0 else {":read": {"N": str(state.version)}}
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StateConflictError(f"{tier}: controller state changed since it was read") from exc
            raise SignalsUnavailableError(f"{tier}: controller state not saved: {exc}") from exc
        except BotoCoreError as exc:
            raise SignalsUnavailableError(f"{tier}: controller state not saved: {exc}") from exc
