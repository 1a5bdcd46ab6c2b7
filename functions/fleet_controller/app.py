"""Placeholder until the fleet controller lands."""

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"status": "not implemented"}
