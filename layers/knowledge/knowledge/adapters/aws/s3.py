"""S3 object access for the ingestion steps.

The documents bucket is versioned: an upload is one version of its key, and the steps read the version
their event names, so a newer upload of the same key (its own event, its own execution) never changes what
an execution is working on.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from knowledge.errors import DocumentStoreError, InvalidDocumentError

_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}


def _version(version_id: str | None) -> dict[str, str]:
    # "null" is the version id S3 gives objects written while versioning was off: the plain key reads it.
    return {"VersionId": version_id} if version_id and version_id != "null" else {}


class ObjectStore:
    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    def read(self, key: str, *, max_bytes: int, version_id: str | None = None) -> bytes | None:
        """The object's bytes (of `version_id` when given), or None when it no longer exists.

        Refuses to download oversized objects.
        """
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key, **_version(version_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise DocumentStoreError(f"reading s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise DocumentStoreError(f"reading s3://{self.bucket}/{key}: {exc}") from exc
        size = int(response.get("ContentLength", 0))
        if size > max_bytes:
            response["Body"].close()
            raise InvalidDocumentError("too_large", f"{size} bytes exceeds the limit of {max_bytes} bytes")
        try:
            data: bytes = response["Body"].read()
        except BotoCoreError as exc:
            raise DocumentStoreError(f"reading s3://{self.bucket}/{key}: {exc}") from exc
        return data

    def exists(self, key: str) -> bool:
        """Whether the key has a current object (False after a delete, or when a delete marker is on top)."""
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise DocumentStoreError(f"checking s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise DocumentStoreError(f"checking s3://{self.bucket}/{key}: {exc}") from exc
        return True

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise DocumentStoreError(f"writing s3://{self.bucket}/{key}: {exc}") from exc

    def get_json(self, key: str) -> Any:
        data = self.read(key, max_bytes=2**40)
        if data is None:
            raise DocumentStoreError(f"workflow artifact s3://{self.bucket}/{key} is missing")
        return json.loads(data)

    def copy(self, source_key: str, target_key: str, *, version_id: str | None = None) -> bool:
        """Copy one version of an object; False when it is already gone (a retried or duplicate copy)."""
        source = {"Bucket": self.bucket, "Key": source_key, **_version(version_id)}
        try:
            self._s3.copy_object(Bucket=self.bucket, Key=target_key, CopySource=source)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise DocumentStoreError(f"copying s3://{self.bucket}/{source_key}: {exc}") from exc
        except BotoCoreError as exc:
            raise DocumentStoreError(f"copying s3://{self.bucket}/{source_key}: {exc}") from exc
        return True

    def delete(self, key: str, *, version_id: str | None = None) -> None:
        """Delete the key (a delete marker in a versioned bucket), or remove exactly one version of it.

        Removing one version leaves the key's other versions as they were: when it was the current one,
        the version before it becomes current again.
        """
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key, **_version(version_id))
        except (ClientError, BotoCoreError) as exc:
            raise DocumentStoreError(f"deleting s3://{self.bucket}/{key}: {exc}") from exc
