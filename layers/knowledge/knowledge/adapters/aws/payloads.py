"""State payloads that may outgrow Step Functions' 256 KB limit travel by S3 reference.

A reference is a small JSON object: {"inline": value} when the value is small, else {"s3_key": key}.
Keys are content-addressed by the caller (world, content hash, step), so duplicate executions of the same
upload write identical artifacts instead of racing.
"""

from __future__ import annotations

import json
from typing import Any

from knowledge.adapters.aws.s3 import ObjectStore
from knowledge.errors import DocumentStoreError

ARTIFACT_PREFIX = "artifacts/"


class PayloadStore:
    def __init__(self, objects: ObjectStore, *, inline_limit: int) -> None:
        self._objects = objects
        self._inline_limit = inline_limit

    def put(self, name: str, value: Any) -> dict[str, Any]:
        encoded = json.dumps(value, separators=(",", ":"))
        if len(encoded) <= self._inline_limit:
            return {"inline": value}
        key = f"{ARTIFACT_PREFIX}{name}.json"
        self._objects.put(key, encoded.encode(), "application/json")
        return {"s3_key": key, "bytes": len(encoded)}

    def get(self, ref: dict[str, Any]) -> Any:
        if "inline" in ref:
            return ref["inline"]
        if "s3_key" in ref:
            return self._objects.get_json(ref["s3_key"])
        raise DocumentStoreError(f"not a payload reference: {sorted(ref)}")
