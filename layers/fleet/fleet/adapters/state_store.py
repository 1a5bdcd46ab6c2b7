"""The controller's memory between ticks (stabilisation window, panic hold) in DynamoDB, one item per tier."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.errors import SignalsUnavailableError
from fleet.policy import TierState

_FIELDS = (
    "low_demand_since_s",
    "last_scale_out_s",
    "last_scale_in_s",
    "panic_until_s",
    "arrival_rps",
    "arrival_time_s",
    "arrival_trend",
)


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
        return TierState(**{f: float(stored[f]["N"]) if f in stored else None for f in _FIELDS})

    def save(self, tier: str, state: TierState, audit: dict[str, Any]) -> None:
        item: dict[str, Any] = {"tier": {"S": tier}, "last_decision": {"S": str(audit.get("action", ""))}}
        for field in _FIELDS:
            value = getattr(state, field)
            if value is not None:
                item[field] = {"N": str(Decimal(str(value)))}
        try:
            self._dynamodb.put_item(TableName=self._table, Item=item)
        except (ClientError, BotoCoreError) as exc:
            raise SignalsUnavailableError(f"{tier}: controller state not saved: {exc}") from exc
