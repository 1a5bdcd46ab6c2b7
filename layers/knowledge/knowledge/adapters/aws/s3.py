"""S3 object access for the ingestion steps."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from knowledge.errors import DocumentStoreError, InvalidDocumentError

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class ObjectStore:
    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        """The object's bytes, or None when it no longer exists. Refuses to download oversized objects."""
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
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

    def move(self, source_key: str, target_key: str) -> bool:
        """Copy then delete; False when the source is already gone (a retried or duplicate move)."""
        try:
            self._s3.copy_object(
                Bucket=self.bucket, Key=target_key, CopySource={"Bucket": self.bucket, "Key": source_key}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise DocumentStoreError(f"moving s3://{self.bucket}/{source_key}: {exc}") from exc
        except BotoCoreError as exc:
            raise DocumentStoreError(f"moving s3://{self.bucket}/{source_key}: {exc}") from exc
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=source_key)
        except (ClientError, BotoCoreError) as exc:
            raise DocumentStoreError(f"deleting s3://{self.bucket}/{source_key}: {exc}") from exc
        return True
