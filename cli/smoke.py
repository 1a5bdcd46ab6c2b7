"""Smoke test of a deployed stack: what the release pipeline runs against staging before production.

    python -m cli.smoke --stack ai-game-knowledge-staging [--world emberfall] [--timeout 600] [--json]

Three checks, each through what users and the platform use, with the caller's AWS credentials:
1. the storyteller client (`knowledge_client`, SigV4) searches a known world and builds a context pack; each
   answer must cite the sample document that the question is about (the world holds `samples/<world>`,
   uploaded once per stage: docs/deploy.md);
2. a fresh sample document is uploaded to the documents bucket (stack output DocumentsBucketName) under
   `incoming/smoke-test/`, and searched for until the ingestion workflow has stored it; it is then deleted,
   which the deletion workflow takes out of the knowledge base again;
3. the fleet controller's tick runs here in dry run (`DRY_RUN=true`, as `ControllerDryRun` sets it): the
   stack's tier targets, queues, metrics, groups and controller state are read, every tier is decided, and
   nothing is written or scaled.

Exit status 0 when every check passed, 1 when one failed (each failure says what and where to look), 2 when
the stack cannot be smoke-tested at all (missing, or without the outputs the checks need).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleet.adapters.signals import TierSignalReader
from fleet.adapters.state_store import TierStateStore
from fleet.config import FleetSettings, TierTarget
from fleet.controller import TickResult, audit_record, run_tick
from fleet.errors import FleetError
from knowledge_client import KnowledgeApiError, KnowledgeClient, NotFoundError

# Where smoke documents go; pipeline/roles.yaml lets the deploy role write only here.
SMOKE_WORLD = "smoke-test"
SMOKE_PREFIX = f"incoming/{SMOKE_WORLD}/"


class SmokeError(Exception):
    """A check failed: the stack answers, but not as a working deployment does."""


class StackNotReadyError(SmokeError):
    """The stack cannot be smoke-tested: missing, or without an output the checks need."""


@dataclass(frozen=True, slots=True)
class Probe:
    """A question about a known world and the sample document that answers it."""

    query: str
    situation: str
    document: str  # the file name under samples/<world>/


KNOWN_WORLDS: Mapping[str, Probe] = {
    "emberfall": Probe(
        query="how is the fire tithe collected",
        situation="the heroes must pay the fire tithe before the new moon",
        document="02-the-fire-tithe.md",
    ),
    "tidewatch": Probe(
        query="who guards the lighthouse at night",
        situation="the heroes climb the lighthouse to relight the lamp",
        document="02-the-lighthouse-orders.md",
    ),
}


@dataclass(frozen=True, slots=True)
class StackOutputs:
    stack: str
    api_url: str
    documents_bucket: str
    state_table: str
    hosts_table: str
    api_key_id: str | None = None  # the KnowledgeApiKeyId output, when the stack has ApiKeyRequired=true

    @classmethod
    def read(cls, cloudformation: Any, stack: str) -> StackOutputs:
        try:
            stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
            missing = [name for name in ("KnowledgeApiUrl", "DocumentsBucketName") if name not in outputs]
            if missing:
                raise StackNotReadyError(
                    f"stack {stack!r} has no output {', '.join(missing)} (not this application, or not deployed yet)"
                )
            tables = {
                name: cloudformation.describe_stack_resource(StackName=stack, LogicalResourceId=name)[
                    "StackResourceDetail"
                ]["PhysicalResourceId"]
                for name in ("FleetControllerStateTable", "FleetHostsTable")
            }
        except (ClientError, BotoCoreError) as exc:
            raise StackNotReadyError(f"stack {stack!r} cannot be read: {exc}") from exc
        return cls(
            stack=stack,
            api_url=outputs["KnowledgeApiUrl"],
            documents_bucket=outputs["DocumentsBucketName"],
            state_table=tables["FleetControllerStateTable"],
            hosts_table=tables["FleetHostsTable"],
            api_key_id=outputs.get("KnowledgeApiKeyId"),
        )


def api_key(apigateway: Any, outputs: StackOutputs) -> str | None:
    """The value of the stack's API key, which the API then requires with every request; None without one."""
    if not outputs.api_key_id:
        return None
    try:
        return str(apigateway.get_api_key(apiKey=outputs.api_key_id, includeValue=True)["value"])
    except (ClientError, BotoCoreError) as exc:
        raise StackNotReadyError(f"the stack's API key {outputs.api_key_id} cannot be read: {exc}") from exc


@dataclass(slots=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Clock:
    """Waiting, injected so a test decides how long a poll lasts."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


# ------------------------------------------------------------------ 1. the storyteller's calls
def check_known_world(client: KnowledgeClient, world: str) -> CheckResult:
    probe = KNOWN_WORLDS.get(world)
    if probe is None:
        raise SmokeError(f"no probe for world {world!r}; known: {', '.join(sorted(KNOWN_WORLDS))}")
    try:
        hits = client.search(probe.query, world_id=world, k=5).hits
        pack = client.context(world, probe.situation, token_budget=800)
    except NotFoundError as exc:
        raise SmokeError(
            f"world {world!r} is not in the knowledge base ({exc.code}): upload samples/{world} to "
            f"incoming/{world}/ once per stage (docs/deploy.md)"
        ) from exc
    except KnowledgeApiError as exc:
        raise SmokeError(f"the knowledge API failed: {exc.status} {exc.code} {exc.message}") from exc
    searched = [h.citation.document_key.rsplit("/", 1)[-1] for h in hits]
    packed = [c.citation.document_key.rsplit("/", 1)[-1] for c in pack.chunks]
    data = {"search": searched, "context": packed, "tokens_used": pack.tokens_used}
    if probe.document not in searched:
        raise SmokeError(f"search {probe.query!r} in {world} did not find {probe.document}: found {searched}")
    if probe.document not in packed or pack.tokens_used > pack.token_budget:
        raise SmokeError(
            f"the context pack for {probe.situation!r} does not cite {probe.document} within its budget: "
            f"{packed}, {pack.tokens_used}/{pack.token_budget} tokens"
        )
    return CheckResult("storyteller", True, f"search and context on {world} cite {probe.document}", data)


# ------------------------------------------------------------------ 2. an ingestion
def smoke_document(run_id: str) -> tuple[str, bytes, str]:
    """The key, body and a sentence only this run's document holds."""
    sentence = f"The harbour bell {run_id} rings thrice when the smoke ships come home."
    body = (
        f"---\ntitle: Smoke test {run_id}\nworld: {SMOKE_WORLD}\n---\n\n"
        f"# The smoke harbour\n\n{sentence}\n\nNothing else happens in this document; it is deleted again.\n"
    )
    return f"{SMOKE_PREFIX}{run_id}.md", body.encode(), sentence


def check_ingestion(
    client: KnowledgeClient,
    s3: Any,
    bucket: str,
    *,
    run_id: str,
    timeout_s: float,
    poll_s: float = 5.0,
    clock: Clock | None = None,
) -> CheckResult:
    clock = clock or Clock()
    key, body, sentence = smoke_document(run_id)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/markdown")
    except (ClientError, BotoCoreError) as exc:
        raise SmokeError(f"upload to s3://{bucket}/{key} refused: {exc}") from exc
    try:
        deadline = clock.now() + timeout_s
        polls = 0
        while True:
            polls += 1
            try:
                hits = client.search(sentence, world_id=SMOKE_WORLD, k=3).hits
            except NotFoundError:
                hits = []  # the world appears with its first document
            except KnowledgeApiError as exc:
                raise SmokeError(f"the knowledge API failed: {exc.status} {exc.code} {exc.message}") from exc
            if any(h.citation.document_key == key for h in hits):
                return CheckResult(
                    "ingestion", True, f"s3://{bucket}/{key} was searchable after {polls} polls", {"key": key}
                )
            if clock.now() >= deadline:
                raise SmokeError(
                    f"s3://{bucket}/{key} was not searchable within {timeout_s:g} s: see the stack's "
                    "IngestionStateMachineArn executions and quarantine/ (docs/runbooks/ingestion-failed.md)"
                )
            clock.sleep(poll_s)
    finally:
        # Whatever happened, the document goes: the deletion workflow removes what it stored.
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            print(f"smoke: could not delete s3://{bucket}/{key}: {exc}", file=sys.stderr)


# ------------------------------------------------------------------ 3. the fleet controller, dry run
class _RefusingActuator:
    """The dry-run tick must not act; if it ever tried, the smoke test fails instead of scaling."""

    def scale_out(self, tier: TierTarget, desired: int) -> None:
        raise SmokeError(f"the dry-run controller tried to scale {tier.name} out to {desired}")

    def scale_in(self, tier: TierTarget, remove: int) -> list[str]:
        raise SmokeError(f"the dry-run controller tried to scale {tier.name} in by {remove}")

    def replace(self, instance_id: str) -> None:
        raise SmokeError(f"the dry-run controller tried to replace {instance_id}")


def tier_targets(ssm: Any, path: str) -> dict[str, str]:
    """The stack's tier-target parameters by tier name, as fleet.adapters.tier_targets reads them."""
    values: dict[str, str] = {}
    try:
        for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True):
            for parameter in page["Parameters"]:
                values[parameter["Name"].rsplit("/", 1)[-1]] = parameter["Value"]
    except (ClientError, BotoCoreError) as exc:
        raise SmokeError(f"tier targets under {path} unreadable: {exc}") from exc
    return values


def check_fleet_dry_run(outputs: StackOutputs, clients: Mapping[str, Any]) -> CheckResult:
    environment = {
        "FLEET_TIERS_PATH": f"/{outputs.stack}/fleet/tiers/",
        "CONTROLLER_STATE_TABLE": outputs.state_table,
        "HOSTS_TABLE": outputs.hosts_table,
        "DRY_RUN": "true",
    }
    try:
        settings = FleetSettings.from_env(
            environment, read_tier_targets=lambda path: tier_targets(clients["ssm"], path)
        )
    except FleetError as exc:
        raise SmokeError(f"the fleet controller's configuration is broken: {exc}") from exc
    if not settings.dry_run:  # what makes this check safe against a live fleet
        raise SmokeError("the fleet check must run in dry run")
    now = datetime.now(UTC)
    results: list[TickResult] = run_tick(
        settings,
        mode="scale_out",
        now=now,
        reader=TierSignalReader(clients["sqs"], clients["cloudwatch"], clients["autoscaling"]),
        store=TierStateStore(clients["dynamodb"], settings.state_table),
        actuator=_RefusingActuator(),
        report=lambda result: None,
    )
    records = [audit_record(r, dry_run=True, decided_at=now) for r in results]
    failed = [f"{r.tier}: {r.error}" for r in results if r.applied == "error"]
    if failed:
        raise SmokeError(f"the fleet controller could not decide: {'; '.join(failed)}")
    decided = ", ".join(f"{r.tier} {r.decision.action if r.decision else '-'}" for r in results)
    return CheckResult("fleet", True, f"dry-run decisions: {decided}", {"tiers": records})


# ------------------------------------------------------------------ all of it
def run_smoke(
    outputs: StackOutputs,
    client: KnowledgeClient,
    clients: Mapping[str, Any],
    *,
    world: str,
    timeout_s: float,
    run_id: str | None = None,
    poll_s: float = 5.0,
    clock: Clock | None = None,
) -> list[CheckResult]:
    """Every check, each independent of the others' outcome; a failed one is reported, not raised."""
    run_id = run_id or f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("storyteller", lambda: check_known_world(client, world)),
        (
            "ingestion",
            lambda: check_ingestion(
                client,
                clients["s3"],
                outputs.documents_bucket,
                run_id=run_id,
                timeout_s=timeout_s,
                poll_s=poll_s,
                clock=clock,
            ),
        ),
        ("fleet", lambda: check_fleet_dry_run(outputs, clients)),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(check())
        except SmokeError as exc:
            results.append(CheckResult(name, False, str(exc)))
    return results


def aws_clients(region: str | None) -> dict[str, Any]:
    import boto3

    session = boto3.session.Session(region_name=region)
    names = ("cloudformation", "s3", "ssm", "sqs", "cloudwatch", "autoscaling", "dynamodb", "apigateway")
    return {name: session.client(name) for name in names}  # type: ignore[call-overload]


def main(
    argv: Sequence[str] | None = None,
    *,
    clients: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    poll_s: float = 5.0,
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli.smoke", description="Smoke test of a deployed stack."
    )
    parser.add_argument("--stack", required=True, help="the deployed stack's name")
    parser.add_argument("--world", default="emberfall", choices=sorted(KNOWN_WORLDS), help="a known world")
    parser.add_argument("--region", default=None, help="the stack's region (default: the AWS configuration)")
    parser.add_argument(
        "--api-url", default=None, help="the API's URL instead of the stack's KnowledgeApiUrl"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the ingestion")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    clients = clients if clients is not None else aws_clients(args.region)
    try:
        outputs = StackOutputs.read(clients["cloudformation"], args.stack)
        key = api_key(clients["apigateway"], outputs)
    except StackNotReadyError as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 2
    api_url = args.api_url or outputs.api_url
    client = KnowledgeClient(api_url, region=args.region, api_key=key, **dict(client_options or {}))
    results = run_smoke(
        outputs, client, clients, world=args.world, timeout_s=args.timeout, poll_s=poll_s, clock=clock
    )
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2, default=str))
    else:
        for result in results:
            print(f"{'PASS' if result.passed else 'FAIL'}  {result.name:<12} {result.detail}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
