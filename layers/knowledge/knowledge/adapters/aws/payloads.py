"""State payloads that may outgrow Step Functions' 256 KB limit travel by S3 reference.

A reference is a small JSON object: {"inline": value} when the value is small, else {"s3_key": key}.
Keys are named by the caller (world, content hash, run, step), so each execution writes its own artifacts.
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

    @property
    def bucket(self) -> str:
        return self._objects.bucket

    @staticmethod
    def key(name: str) -> str:
        """The S3 key of the artifact `name`: a reader that knows the name needs no reference."""
        return f"{ARTIFACT_PREFIX}{name}.json"

    def put(self, name: str, value: Any) -> dict[str, Any]:
        encoded = json.dumps(value, separators=(",", ":"))
        if len(encoded) <= self._inline_limit:
            return {"inline": value}
        return self._write(name, encoded)

    def put_in_s3(self, name: str, value: Any) -> dict[str, Any]:
        """Always by reference, however small: for artifacts a later step finds by name, or that a
        Distributed Map's ItemReader reads from S3."""
        return self._write(name, json.dumps(value, separators=(",", ":")))

    def _write(self, name: str, encoded: str) -> dict[str, Any]:
        key = self.key(name)
        self._objects.put(key, encoded.encode(), "application/json")
        return {"s3_key": key, "bytes": len(encoded)}

    def get(self, ref: dict[str, Any]) -> Any:
        if "inline" in ref:
            return ref["inline"]
        if "s3_key" in ref:
            return self._objects.get_json(ref["s3_key"])
        raise DocumentStoreError(f"not a payload reference: {sorted(ref)}")
