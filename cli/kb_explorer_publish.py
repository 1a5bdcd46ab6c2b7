"""`kb explorer publish --stack-name NAME`: put the lore explorer (cli/explorer/) on a deployed stack's site.

A stack deployed with LoreExplorer=true hosts the explorer (template.yaml: the ExplorerBucketName,
ExplorerDistributionId and ExplorerUrl outputs). Publishing uploads every file of cli/explorer/ with its
content type, deletes what the bucket holds that the folder no longer has, and invalidates the
distribution's cache, so viewers get the release at once. `config.js` is the deployment's own (how viewers
get credentials, docs/auth.md): it is written only when the bucket has none yet, pointing at the stack's
API, or replaced by `--config FILE`; a later publish keeps it.

Needs only boto3 (pipeline/deploy.sh runs it as `python -m cli.kb_explorer_publish` after a deploy).
Exit status 0 published, 1 the stack hosts no explorer or an AWS call failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CONFIG", "EXPLORER_DIR", "PublishError", "add_parser", "config_js", "main", "publish"]

EXPLORER_DIR = Path(__file__).resolve().parent / "explorer"
CONFIG = "config.js"
# The page and its configuration are revalidated on every load; the scripts and styles may be cached a
# little (each publish invalidates the distribution's copies anyway).
_REVALIDATE = {"index.html", CONFIG}
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript"}


class PublishError(Exception):
    """The explorer could not be published (exit 1); the message is one plain line."""


def _outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise PublishError(f"cannot read stack {stack_name!r}: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in (stacks[0].get("Outputs", []) if stacks else [])}


def config_js(stack_name: str, api_url: str, region: str) -> str:
    """The first config.js of a stack's explorer: its API, and credentials still to be configured."""
    settings = json.dumps({"apiBase": api_url, "region": region, "apiKey": None}, indent=2)[1:-2]
    return (
        f"// The lore explorer of stack {stack_name}, written by `kb explorer publish` when the site had no\n"
        "// config.js; later publishes keep this file. Replace `credentials` with a function returning the\n"
        "// viewer's temporary AWS credentials {accessKeyId, secretAccessKey, sessionToken}, e.g. from a\n"
        "// Cognito identity pool (docs/auth.md), and set apiKey when the stack has ApiKeyRequired=true.\n"
        "window.EXPLORER_CONFIG = {"
        f"{settings},\n"
        '  credentials: async () => { throw new Error("no viewer credentials configured (config.js)"); },\n'
        "};\n"
    )


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _content_type(name: str) -> str:
    suffix = Path(name).suffix
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def publish(
    stack_name: str,
    *,
    session: Any,
    config: Path | None = None,
    folder: Path = EXPLORER_DIR,
) -> dict[str, Any]:
    """Upload the explorer to the stack's site bucket and invalidate its distribution; what was done."""
    from botocore.exceptions import BotoCoreError, ClientError

    outputs = _outputs(session.client("cloudformation"), stack_name)
    bucket, distribution = outputs.get("ExplorerBucketName"), outputs.get("ExplorerDistributionId")
    if not bucket or not distribution:
        raise PublishError(f"stack {stack_name!r} hosts no lore explorer (deploy it with LoreExplorer=true)")
    s3 = session.client("s3")
    files = _files(folder)
    try:
        if config is not None:
            config_state, config_body = "replaced", config.read_bytes()
        elif _exists(s3, bucket, CONFIG):
            config_state, config_body = "kept", None
        else:
            api_url = outputs.get("KnowledgeApiUrl", "")
            region = api_url.split(".execute-api.")[-1].split(".")[0] if api_url else session.region_name
            config_state, config_body = "written", config_js(stack_name, api_url, region).encode()
        uploaded = []
        for name, path in files.items():
            body = config_body if name == CONFIG else path.read_bytes()
            if body is None:
                continue
            s3.put_object(
                Bucket=bucket,
                Key=name,
                Body=body,
                ContentType=_content_type(name),
                CacheControl="no-cache" if name in _REVALIDATE else "public, max-age=300",
            )
            uploaded.append(name)
        stale = [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])
            if item["Key"] not in files
        ]
        for key in stale:
            s3.delete_object(Bucket=bucket, Key=key)
        invalidation = session.client("cloudfront").create_invalidation(
            DistributionId=distribution,
            InvalidationBatch={
                "Paths": {"Quantity": 1, "Items": ["/*"]},
                "CallerReference": f"kb-explorer-publish-{time.time_ns()}",
            },
        )["Invalidation"]["Id"]
    except (BotoCoreError, ClientError, OSError) as exc:
        raise PublishError(f"cannot publish to s3://{bucket}: {exc}") from None
    return {
        "bucket": bucket,
        "distribution": distribution,
        "url": outputs.get("ExplorerUrl"),
        "uploaded": uploaded,
        "deleted": stale,
        "config": config_state,
        "invalidation": invalidation,
    }


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack-name", required=True, help="the deployed stack (LoreExplorer=true)")
    parser.add_argument("--region", help="the stack's region (default: your AWS configuration)")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="replace the site's config.js with FILE (default: keep it; written for the stack's API if absent)",
    )
    parser.add_argument("--json", action="store_true", help="print what was done as JSON")


def cmd_publish(args: argparse.Namespace) -> int:
    import boto3

    if args.config is not None and not args.config.is_file():
        print(f"kb explorer publish: no such file: {args.config}", file=sys.stderr)
        return 2
    try:
        done = publish(
            args.stack_name, session=boto3.session.Session(region_name=args.region), config=args.config
        )
    except PublishError as exc:
        print(f"kb explorer publish: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(done, indent=2))
    else:
        print(
            f"published {len(done['uploaded'])} files to s3://{done['bucket']} (config.js {done['config']},"
            f" {len(done['deleted'])} stale removed); invalidation {done['invalidation']}: {done['url'] or ''}"
        )
    return 0


def add_parser(sub: Any) -> None:
    """`kb explorer publish`."""
    explorer = sub.add_parser("explorer", help="the lore explorer on a deployed stack")
    explorer_sub = explorer.add_subparsers(dest="explorer", required=True)
    publish_parser = explorer_sub.add_parser(
        "publish", help="upload cli/explorer/ to the stack's site bucket and invalidate its CloudFront cache"
    )
    _add_arguments(publish_parser)
    publish_parser.set_defaults(func=cmd_publish)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.kb_explorer_publish", description=__doc__)
    _add_arguments(parser)
    return cmd_publish(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
