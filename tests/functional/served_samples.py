"""The knowledge API as `kb serve` serves it, on a local stack with both sample worlds ingested (the hash
embedder: these tests check which requests find their world and concept, not ranking)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import boto3

from local_runtime.api_gateway import LoopbackApi, RouteTable, lambda_proxy
from local_runtime.cloud import REGION, LocalCloud
from tests.functional.conftest import SAMPLES, Workflow


@contextlib.contextmanager
def serve_sample_worlds(kb_home: Path, database: str) -> Iterator[str]:
    """Yield the base URL of the served API; the stack stops on exit."""
    with LocalCloud(
        kb_home, embedding_provider="hash", retry_delay_scale=0, mirror_s3=False, database=database
    ) as cloud:
        workflow = Workflow(cloud)
        for world in ("emberfall", "tidewatch"):
            for path in sorted((SAMPLES / world).iterdir()):
                outcomes = workflow.upload(f"incoming/{world}/{path.name}", path.read_bytes())
                assert [o["status"] for o in outcomes] == ["ingested"], (path, outcomes)
        routes = RouteTable.from_rest_api(
            boto3.client("apigateway", region_name=REGION), cloud.physical_ids["KnowledgeApi"]
        )
        invoke = lambda_proxy(
            routes, cloud.functions["KnowledgeApiFunction"], boto3.client("lambda", region_name=REGION)
        )
        with LoopbackApi(invoke, routes=routes) as server:
            yield server.url
