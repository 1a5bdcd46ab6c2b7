"""`kb ingest`, `kb delete` and `kb status` with `--target aws`: the deployed stack's documents bucket.

An upload to `incoming/<world>/<name>` starts the stack's ingestion workflow, as `aws s3 cp` would; the
workflow runs in AWS, so these commands report what was sent (`uploaded`, `deleted`), not its outcome:
`kb status --target aws` then counts what the bucket holds per world (documents under `incoming/`,
uploads moved to `quarantine/`). The bucket is the stack's `DocumentsBucketName` output.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.kb_explore import OperationFailedError

__all__ = ["delete_document", "documents_bucket", "status", "upload"]


def _session(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.session.Session(region_name=args.region)


def documents_bucket(args: argparse.Namespace, *, cloudformation: Any = None) -> str:
    """The stack's DocumentsBucketName output; OperationFailedError when the stack or output is missing."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not args.stack_name:
        raise SystemExit(f"kb {args.command}: --target aws needs --stack-name")
    cloudformation = cloudformation or _session(args).client("cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=args.stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailedError(f"cannot read stack {args.stack_name!r}: {exc}") from None
    for output in stacks[0].get("Outputs", []) if stacks else []:
        if output.get("OutputKey") == "DocumentsBucketName":
            return str(output["OutputValue"])
    raise OperationFailedError(f"stack {args.stack_name!r} has no DocumentsBucketName output")


def upload(args: argparse.Namespace, files: Sequence[Path], *, s3: Any = None) -> list[dict[str, Any]]:
    """Put each file as incoming/<world>/<name>; one result per file, as `kb ingest --json` prints."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = documents_bucket(args)
    s3 = s3 or _session(args).client("s3")
    results: list[dict[str, Any]] = []
    for path in files:
        key = f"incoming/{args.world}/{path.name}"
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            outcome = {"status": "uploaded", "reason": None}
        except (BotoCoreError, ClientError) as exc:
            outcome = {"status": "failed", "reason": str(exc)}
        results.append({"path": str(path), "key": key, "chunks": 0, **outcome})
    return results


def delete_document(args: argparse.Namespace, *, s3: Any = None) -> str:
    """Delete incoming/<world>/<name>: the workflow removes the document. Returns the key's status."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = documents_bucket(args)
    s3 = s3 or _session(args).client("s3")
    key = f"incoming/{args.world}/{args.name}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return "absent"
        raise OperationFailedError(f"{key}: {exc}") from None
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailedError(f"{key}: {exc}") from None
    return "deleted"


def status(args: argparse.Namespace, *, s3: Any = None) -> list[dict[str, Any]]:
    """Documents and quarantined uploads per world, counted in the bucket (chunks are not known there)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = documents_bucket(args)
    s3 = s3 or _session(args).client("s3")
    counts: dict[str, Counter[str]] = {"incoming/": Counter(), "quarantine/": Counter()}
    try:
        for prefix, counter in counts.items():
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    parts = item["Key"].split("/")
                    if len(parts) >= 3:
                        counter[parts[1]] += 1
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailedError(f"cannot list s3://{bucket}: {exc}") from None
    worlds = sorted(set(counts["incoming/"]) | set(counts["quarantine/"]))
    return [
        {
            "world": w,
            "documents": counts["incoming/"][w],
            "chunks": None,
            "quarantined": counts["quarantine/"][w],
        }
        for w in worlds
    ]
