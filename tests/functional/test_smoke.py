"""The release pipeline's smoke test (`python -m cli.smoke`) against the local runtime's deployment of
template.yaml: the storyteller client over HTTP, a real ingestion and deletion, the fleet controller's tick
in dry run against moto's queues, metrics, groups and tables; and each way it fails."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials

from cli import smoke
from local_runtime.api_gateway import LoopbackApi
from local_runtime.cloud import REGION, STACK_NAME
from tests.functional.conftest import SAMPLES, Workflow

pytestmark = pytest.mark.slow
SEEDED = ("01-the-ember-court.md", "02-the-fire-tithe.md", "03-the-fire-tending-guilds.md")
CLIENT_OPTIONS = {
    "credentials": Credentials("testing", "testing"),
    "opener": urllib.request.build_opener(urllib.request.ProxyHandler({})),
}


class _StackWithOutputs:
    """moto's CloudFormation client, with the stack's Outputs: the local runtime creates the stack without
    them (moto cannot resolve every one), so the two the smoke test reads are resolved here from the
    template's own Outputs and the stack's physical ids, as CloudFormation would."""

    def __init__(self, workflow: Workflow, api_url: str) -> None:
        self._client = boto3.client("cloudformation", region_name=REGION)
        cloud = workflow.cloud
        bucket = cloud.template.full["Outputs"]["DocumentsBucketName"]["Value"]
        self.outputs = [
            {"OutputKey": "DocumentsBucketName", "OutputValue": cloud.physical_ids[bucket["Ref"]]},
            {"OutputKey": "KnowledgeApiUrl", "OutputValue": api_url},
        ]

    def describe_stacks(self, **kwargs: Any) -> dict[str, Any]:
        answer: dict[str, Any] = dict(self._client.describe_stacks(**kwargs))
        if kwargs.get("StackName") == STACK_NAME:
            answer["Stacks"] = [{**answer["Stacks"][0], "Outputs": self.outputs}]
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture(scope="module")
def deployed(kb_home: Any, postgres: Any) -> Iterator[tuple[Workflow, dict[str, Any], LoopbackApi]]:
    """The stack with part of emberfall ingested (one MiniLM ingestion for the module), its API on HTTP."""
    from local_runtime.cloud import LocalCloud

    cloud = LocalCloud(kb_home, retry_delay_scale=0, mirror_s3=False, database="kb_smoke").__enter__()
    try:
        workflow = Workflow(cloud)
        for name in SEEDED:
            [outcome] = workflow.upload(
                f"incoming/emberfall/{name}", (SAMPLES / "emberfall" / name).read_bytes()
            )
            assert outcome["status"] == "ingested", outcome
        with LoopbackApi(cloud.invoke_api) as server:
            names = ("s3", "ssm", "sqs", "cloudwatch", "autoscaling", "dynamodb", "apigateway")
            clients: dict[str, Any] = {n: boto3.client(n, region_name=REGION) for n in names}  # type: ignore[call-overload]
            clients["cloudformation"] = _StackWithOutputs(workflow, server.url)
            yield workflow, clients, server
    finally:
        cloud.__exit__(None, None, None)


def _smoke(clients: dict[str, Any], *args: str) -> int:
    return smoke.main(
        ["--stack", STACK_NAME, "--region", REGION, "--json", *args],
        clients=clients,
        client_options=CLIENT_OPTIONS,
        poll_s=0.2,
    )


def test_the_smoke_test_passes_on_a_working_deployment_and_leaves_nothing_behind(
    deployed: tuple[Workflow, dict[str, Any], LoopbackApi], capsys: pytest.CaptureFixture[str]
) -> None:
    workflow, clients, _ = deployed
    with workflow.cloud.capture_executions() as started:
        assert _smoke(clients, "--timeout", "300") == 0
    results = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert [r["passed"] for r in results.values()] == [True, True, True], results
    assert "02-the-fire-tithe.md" in results["storyteller"]["data"]["search"]
    assert results["ingestion"]["data"]["key"].startswith(smoke.SMOKE_PREFIX)
    # The controller decided every tier in dry run: nothing was applied, nothing stored.
    tiers = results["fleet"]["data"]["tiers"]
    assert sorted(t["tier"] for t in tiers) == ["bronze", "gold", "silver"]
    assert all(t["dry_run"] and t["applied"] in ("none", "dry_run") for t in tiers), tiers
    state_table = workflow.cloud.physical_ids["FleetControllerStateTable"]
    assert boto3.client("dynamodb", region_name=REGION).scan(TableName=state_table)["Count"] == 0
    # The smoke document went through ingestion and then deletion: neither S3 nor the database keeps it.
    for arn in started:
        assert workflow.cloud.wait(arn, timeout_s=300)["status"] == "SUCCEEDED"
    assert workflow.keys(smoke.SMOKE_PREFIX) == []
    assert (
        workflow.rows("SELECT s3_key FROM narrative_documents WHERE world_id = %s", smoke.SMOKE_WORLD) == []
    )


def test_a_missing_or_foreign_stack_cannot_be_smoke_tested(
    deployed: tuple[Workflow, dict[str, Any], LoopbackApi], capsys: pytest.CaptureFixture[str]
) -> None:
    _, clients, _ = deployed
    assert smoke.main(["--stack", "no-such-stack"], clients=clients, client_options=CLIENT_OPTIONS) == 2
    assert "cannot be read" in capsys.readouterr().err
    # Another stack of the account: no outputs of this application.
    clients["cloudformation"].create_stack(
        StackName="not-the-application",
        TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}),
    )
    assert smoke.main(["--stack", "not-the-application"], clients=clients, client_options=CLIENT_OPTIONS) == 2
    assert "has no output KnowledgeApiUrl, DocumentsBucketName" in capsys.readouterr().err


def test_a_world_that_was_never_seeded_fails_with_how_to_seed_it(
    deployed: tuple[Workflow, dict[str, Any], LoopbackApi], capsys: pytest.CaptureFixture[str]
) -> None:
    _, clients, _ = deployed
    outputs = smoke.StackOutputs.read(clients["cloudformation"], STACK_NAME)
    client = smoke.KnowledgeClient(outputs.api_url, region=REGION, **CLIENT_OPTIONS)  # type: ignore[arg-type]
    with pytest.raises(
        smoke.SmokeError, match=r"'tidewatch' is not in the knowledge base.*samples/tidewatch"
    ):
        smoke.check_known_world(client, "tidewatch")
    with pytest.raises(smoke.SmokeError, match="no probe for world"):
        smoke.check_known_world(client, "atlantis")


def test_a_document_that_never_becomes_searchable_fails_and_is_removed(
    deployed: tuple[Workflow, dict[str, Any], LoopbackApi],
) -> None:
    _, clients, _ = deployed
    outputs = smoke.StackOutputs.read(clients["cloudformation"], STACK_NAME)
    client = smoke.KnowledgeClient(outputs.api_url, region=REGION, **CLIENT_OPTIONS)  # type: ignore[arg-type]
    s3 = clients["s3"]
    s3.create_bucket(Bucket="not-wired-to-ingestion")  # no rule listens: nothing is ever ingested
    ticks = iter(range(1000))
    clock = smoke.Clock(now=lambda: float(next(ticks)), sleep=lambda s: None)
    with pytest.raises(smoke.SmokeError, match=r"not searchable within 3 s.*ingestion-failed.md"):
        smoke.check_ingestion(client, s3, "not-wired-to-ingestion", run_id="late", timeout_s=3, clock=clock)
    assert s3.list_objects_v2(Bucket="not-wired-to-ingestion").get("KeyCount") == 0
    with pytest.raises(smoke.SmokeError, match="refused"):
        smoke.check_ingestion(client, s3, "no-such-bucket", run_id="x", timeout_s=3, clock=clock)


def test_a_broken_tier_target_fails_the_fleet_check_and_changes_nothing(
    deployed: tuple[Workflow, dict[str, Any], LoopbackApi],
) -> None:
    _, clients, _ = deployed
    outputs = smoke.StackOutputs.read(clients["cloudformation"], STACK_NAME)
    ssm = clients["ssm"]
    name = f"/{STACK_NAME}/fleet/tiers/gold"
    good = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    ssm.put_parameter(Name=name, Value="{not json", Overwrite=True)
    try:
        with pytest.raises(smoke.SmokeError, match="configuration is broken"):
            smoke.check_fleet_dry_run(outputs, clients)
    finally:
        ssm.put_parameter(Name=name, Value=good, Overwrite=True)
    assert smoke.check_fleet_dry_run(outputs, clients).passed


def test_the_stacks_api_key_goes_with_every_request_when_the_api_requires_one(
    deployed: tuple[Workflow, dict[str, Any], LoopbackApi],
) -> None:
    _, clients, server = deployed
    outputs = smoke.StackOutputs.read(clients["cloudformation"], STACK_NAME)
    assert outputs.api_key_id is None and smoke.api_key(clients["apigateway"], outputs) is None
    key = clients["apigateway"].create_api_key(name="storytellers", value="k" * 40, enabled=True)
    with_key = dataclasses.replace(outputs, api_key_id=key["id"])
    value = smoke.api_key(clients["apigateway"], with_key)
    client = smoke.KnowledgeClient(outputs.api_url, region=REGION, api_key=value, **CLIENT_OPTIONS)  # type: ignore[arg-type]
    assert smoke.check_known_world(client, "emberfall").passed
    headers = {name.lower(): value for name, value in server.requests[-1]["headers"].items()}
    assert headers["x-api-key"] == "k" * 40
    with pytest.raises(smoke.StackNotReadyError, match="cannot be read"):
        smoke.api_key(clients["apigateway"], dataclasses.replace(outputs, api_key_id="nosuchkey"))


def test_the_dry_run_actuator_refuses_every_action() -> None:
    tier = smoke.TierTarget("gold", "https://queue", "group", 0, 4)
    actuator = smoke._RefusingActuator()
    for act in (lambda: actuator.scale_out(tier, 3), lambda: actuator.scale_in(tier, 1)):
        with pytest.raises(smoke.SmokeError, match="tried to scale gold"):
            act()
    with pytest.raises(smoke.SmokeError, match="tried to replace i-1"):
        actuator.replace("i-1")
