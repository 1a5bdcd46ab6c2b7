"""`kb ingest --target aws --wait`: upload to a deployed stack and follow each upload's workflow to its end.

Each file is put as `incoming/<world>/<name>` in the stack's documents bucket (as `kb ingest --target aws`
does); its S3 event starts an execution of the stack's ingestion state machine through the EventBridge rule,
which names executions itself. So the execution of an upload is found by what it was started with: the
executions of the `IngestionStateMachineArn` output started since the upload are described, and the one
whose input event names the uploaded key and the version S3 gave the object is that upload's (a later
upload of the same name by someone else has another version). Each is then followed until it ends:
`ingested` or `unchanged` (stored), `quarantined` with the workflow's reason, or `failed` with the
execution's error and cause. One still running (or never found) when `--timeout` runs out is `timeout`.
Exit status 1 when any upload failed or timed out.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from cli.kb_explore import OperationFailedError

__all__ = ["DEFAULT_TIMEOUT_S", "add_arguments", "ingest_and_wait", "stack_value"]

DEFAULT_TIMEOUT_S = 900.0
# Executions are listed back to this long before the first upload: S3's clock (the upload's Date header)
# and Step Functions' may differ by a little, and an event reaches the rule after the upload.
_CLOCK_MARGIN = timedelta(minutes=2)
_POLL_S = 2.0


@dataclass
class _Upload:
    path: Path
    key: str
    version_id: str | None
    execution_arn: str | None = None
    result: dict[str, Any] | None = field(default=None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`kb ingest`'s --wait and --timeout."""
    parser.add_argument(
        "--wait",
        action="store_true",
        help="with --target aws: follow each upload's ingestion execution to its end and print its outcome"
        " (ingested, unchanged, quarantined with the reason, failed); a local ingest always waits",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"with --wait: give up on executions still running after this long (default {DEFAULT_TIMEOUT_S:g});"
        " they are reported as timeout and the exit status is 1",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError("between 0 and 86400 seconds")
    return value


def _session(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.session.Session(region_name=args.region)


def stack_value(cloudformation: Any, stack_name: str, output: str, logical_id: str) -> str:
    """The stack's output, or the physical id of the resource it names when the stack has no such output
    (a stack deployed from a template without outputs); OperationFailedError when neither is there."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailedError(f"cannot read stack {stack_name!r}: {exc}") from None
    for item in stacks[0].get("Outputs", []) if stacks else []:
        if item.get("OutputKey") == output:
            return str(item["OutputValue"])
    try:
        resource = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
        return str(resource["StackResourceDetail"]["PhysicalResourceId"])
    except (BotoCoreError, ClientError, KeyError):
        raise OperationFailedError(f"stack {stack_name!r} has no {output} output") from None


def _server_time(response: dict[str, Any]) -> datetime:
    """When S3 took the object, by its own clock (the response's Date header); this machine's otherwise."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date) if date else datetime.now(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def _started_for(description: dict[str, Any]) -> tuple[str, str | None] | None:
    """(key, version id) of the upload an execution was started for; None for any other execution (a
    deletion's, a Distributed Map batch's)."""
    try:
        event = json.loads(description.get("input") or "{}")
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("detail-type") != "Object Created":
        return None
    detail = event.get("detail", {}).get("object", {})
    key = detail.get("key")
    if not isinstance(key, str):
        return None
    return key, detail.get("version-id")


def _outcome(upload: _Upload, description: dict[str, Any]) -> dict[str, Any]:
    base = {"path": str(upload.path), "key": upload.key, "execution": description["executionArn"]}
    if description["status"] != "SUCCEEDED":
        cause = (
            f"{description.get('error') or description['status'].lower()}: {description.get('cause') or ''}"
        )
        return {**base, "status": "failed", "chunks": 0, "reason": cause.strip(": ")}
    output = json.loads(description.get("output") or "{}")
    return {
        **base,
        "status": output.get("status", "unknown"),
        "chunks": int(output.get("chunks") or 0),
        "reason": output.get("reason"),
    }


class _Follower:
    """Finds each upload's execution among the state machine's and polls it until it ends."""

    def __init__(self, sfn: Any, state_machine_arn: str, since: datetime) -> None:
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn
        self.since = since - _CLOCK_MARGIN
        self.seen: set[str] = set()  # executions already described and matched to nothing waiting

    def find(self, waiting: dict[tuple[str, str | None], _Upload]) -> None:
        """Match executions started since the first upload to the uploads still without one."""
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn)
        for page in pages:
            recent = [e for e in page.get("executions", []) if _as_utc(e["startDate"]) >= self.since]
            if not recent:
                return  # listed newest first: the pages after this one are older still
            for execution in recent:
                arn = execution["executionArn"]
                if arn in self.seen:
                    continue
                self.seen.add(arn)
                started_for = _started_for(self.sfn.describe_execution(executionArn=arn))
                if started_for is None:
                    continue
                key, version = started_for
                # S3 events may carry the key URL-encoded (a space as "+"): either spelling names it.
                keys = (key, urllib.parse.unquote_plus(key))
                upload = next(
                    (waiting[(k, v)] for k in keys for v in (version, None) if (k, v) in waiting), None
                )
                if upload is not None and upload.execution_arn is None:
                    upload.execution_arn = arn

    def ended(self, upload: _Upload) -> dict[str, Any] | None:
        assert upload.execution_arn is not None
        description = self.sfn.describe_execution(executionArn=upload.execution_arn)
        return None if description["status"] == "RUNNING" else _outcome(upload, description)


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def ingest_and_wait(
    args: argparse.Namespace,
    files: Sequence[Path],
    *,
    session: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Upload every file, then follow each upload's execution; one result per file, in the given order."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not args.stack_name:
        raise SystemExit(f"kb {args.command}: --target aws needs --stack-name")
    session = session or _session(args)
    cloudformation = session.client("cloudformation")
    bucket = stack_value(cloudformation, args.stack_name, "DocumentsBucketName", "DocumentsBucket")
    machine = stack_value(
        cloudformation, args.stack_name, "IngestionStateMachineArn", "IngestionStateMachine"
    )
    s3 = session.client("s3")
    uploads: list[_Upload] = []
    first: datetime | None = None
    for path in files:
        upload = _Upload(path, f"incoming/{args.world}/{path.name}", None)
        uploads.append(upload)
        try:
            response = s3.put_object(Bucket=bucket, Key=upload.key, Body=path.read_bytes())
        except (BotoCoreError, ClientError) as exc:
            upload.result = {
                "path": str(path),
                "key": upload.key,
                "execution": None,
                "status": "failed",
                "chunks": 0,
                "reason": f"upload failed: {exc}",
            }
            continue
        upload.version_id = response.get("VersionId")
        first = first or _server_time(response)

    follower = _Follower(session.client("stepfunctions"), machine, first or datetime.now(UTC))
    deadline = clock() + float(getattr(args, "timeout", DEFAULT_TIMEOUT_S))
    try:
        while True:
            pending = [u for u in uploads if u.result is None]
            unmatched = {(u.key, u.version_id): u for u in pending if u.execution_arn is None}
            if unmatched:
                follower.find(unmatched)
            for upload in pending:
                if upload.execution_arn is not None:
                    upload.result = follower.ended(upload)
            if all(u.result is not None for u in uploads) or clock() >= deadline:
                break
            sleep(_POLL_S)
    except (BotoCoreError, ClientError) as exc:
        raise OperationFailedError(f"cannot follow the ingestion executions of {machine}: {exc}") from None
    return [u.result or _timed_out(u, args) for u in uploads]


def _timed_out(upload: _Upload, args: argparse.Namespace) -> dict[str, Any]:
    timeout = getattr(args, "timeout", DEFAULT_TIMEOUT_S)
    reason = (
        f"still running after {timeout:g} s"
        if upload.execution_arn
        else f"no ingestion execution started for the upload within {timeout:g} s"
    )
    return {
        "path": str(upload.path),
        "key": upload.key,
        "execution": upload.execution_arn,
        "status": "timeout",
        "chunks": 0,
        "reason": reason,
    }
