"""LocalCloud: the stack of template.yaml deployed into moto, wired to the embedded PostgreSQL.

    with LocalCloud(home) as cloud:
        cloud.s3.put_object(Bucket=cloud.bucket, Key="incoming/emberfall/court.md", Body=...)
        # -> moto emits the S3 EventBridge event -> the template's rule -> the state machine runs

Seams, each the narrowest available (facts in ../shared/notes/local-runtime.md):
- `LambdaFunction._invoke_lambda` → InProcessLambdas (handlers run here, not in Docker);
- `moto.s3.notifications._send_event_bridge_message` → real-shaped S3 events matched against the
  template's EventBridge rules (moto's own delivery has no Step Functions target);
- `S3Backend.delete_object` in a versioned bucket → the Object Deleted event S3 sends for every delete
  (a delete marker created, or one version removed), which moto sends only when a key's last version goes;
- the bucket's VersioningConfiguration and LifecycleConfiguration, which moto's CloudFormation ignores,
  are applied through the S3 API (lifecycle rules are validated there, not run);
- `CommonStateField._eval_state_input` → a state's input over 256 KB fails with States.DataLimitExceeded (moto
  checks state outputs and task results only), and a Map iteration's States.* error reaches the Map as
  itself (moto turns it into States.Runtime); the Lambda limits are in local_runtime.lambdas;
- moto's CloudFormation writes state machines into the Step Functions backend the executor reads;
- the ASL retrier's sleep is scaled by `retry_delay_scale` (tests use 0);
- Auto Scaling instance refreshes, which moto lacks, run through the lifecycle hooks
  (local_runtime.instance_refresh);
- `moto.ec2.models.instances.Instance.terminate` gives the instance's private addresses back to its subnet
  (moto frees them only when the object is garbage-collected, which a kept terminated instance never is).
S3 objects are mirrored to $KB_HOME/s3 so uploads, quarantine and deletions persist across commands.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from knowledge.adapters.postgres.database import Database
from knowledge.adapters.postgres.migrations import apply_migrations
from knowledge.schema.deploy import check_digest
from local_runtime.event_sources import EventSources
from local_runtime.lambdas import InProcessLambdas
from local_runtime.paths import kb_home
from local_runtime.postgres import DATABASE, EmbeddedPostgres, start_embedded_postgres
from local_runtime.template import CODE_BUCKET, LocalTemplate, substitute_definition, translate

REGION = "us-east-1"
STACK_NAME = "kb-local"
LOCAL_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
VPC_CIDR = "10.42.0.0/16"
SUBNET_CIDRS = ("10.42.0.0/18", "10.42.64.0/18")  # one per AZ, us-east-1a and us-east-1b

# What differs from AWS, on purpose (everything else comes from the template): the embedding model, for the
# functions whose template environment names one, and no X-Ray daemon for any function.
LOCAL_EMBEDDING_ENVIRONMENT = {
    "EMBEDDING_PROVIDER": "local-minilm",
    "EMBEDDING_MODEL_ID": LOCAL_MODEL_ID,
    "EMBEDDING_DIMENSION": "384",
}
# The embedded server listens on a Unix socket without TLS: no certificate to verify (AWS: verify-full).
LOCAL_RUNTIME_ENVIRONMENT = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
    "DB_SSLMODE": "disable",
}
_MIRRORED_PREFIXES = ("incoming/", "quarantine/")


class _ScaledSleep:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def sleep(self, seconds: float) -> None:
        if self.scale > 0:
            time.sleep(seconds * self.scale)


class LocalCloud:
    def __init__(
        self,
        home: Path | None = None,
        *,
        embedding_provider: str = "local-minilm",
        retry_delay_scale: float = 1.0,
        wait_scale: float = 1.0,
        stage: str = "dev",
        environment_overrides: dict[str, str] | None = None,
        mirror_s3: bool = True,
        database: str = DATABASE,
        emf_metrics: bool = True,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.home = home or kb_home()
        # Stack parameters a caller sets, as `sam deploy --parameter-overrides` would (the runtime's own win).
        self.parameter_overrides = dict(parameters or {})
        self.retry_delay_scale = retry_delay_scale
        self.wait_scale = wait_scale
        self.stage = stage
        self.mirror_s3 = mirror_s3
        self.database_name = database
        self.embedding_environment = {**LOCAL_EMBEDDING_ENVIRONMENT, "EMBEDDING_PROVIDER": embedding_provider}
        if embedding_provider == "hash":
            self.embedding_environment["EMBEDDING_MODEL_ID"] = "hash-384"
        # Set for every function: a test's deliberate change of a setting.
        self.environment_overrides = {**LOCAL_RUNTIME_ENVIRONMENT, **(environment_overrides or {})}
        # emf_metrics=False leaves the handlers' EMF records in their logs only (the fleet simulation, which
        # records decisions itself, would otherwise put ten datapoints per tier and tick into moto).
        self.lambdas = InProcessLambdas(
            {}, log_dir=self.home / "logs", metric_sink=self._put_emf if emf_metrics else None
        )
        self._exit = contextlib.ExitStack()
        self._started: list[list[str]] = []
        self._started_lock = threading.Lock()
        self._suppress_events = False
        # Set while the delete seam runs moto's own delete, which would send a second, partial event.
        self._moto_delete_events = threading.local()
        self.postgres: EmbeddedPostgres
        self.template: LocalTemplate
        self.outputs: dict[str, str] = {}
        self.functions: dict[str, str] = {}  # logical id -> physical name
        self.state_machine_aliases: dict[str, str] = {}  # alias ARN -> state machine ARN
        self.stack_id = ""

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCloud:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.mirror_s3 and exc[0] is None:
                self._save_objects()
        finally:
            self._close_function_pools()
            self._exit.close()

    def _close_function_pools(self) -> None:
        for module in self.lambdas.loaded_modules():
            services = getattr(module, "services", None)
            if services is not None and "database" in vars(services):
                services.database.close()

    def _start(self) -> None:
        from moto import mock_aws

        self.postgres = start_embedded_postgres(self.home / "pg", self.database_name)
        self._exit.enter_context(_patched_environment(_fake_credentials()))
        self._exit.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        self._install_seams()
        self.lambdas.install_stdout_router()
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self._deploy()
        self.database = Database(lambda: self.postgres.conninfo(self.database_name))
        self._exit.callback(self.database.close)
        # CloudFormation would not re-run the migrator for migrations the template's digest does not name.
        check_digest(self.template.full["Resources"]["DatabaseMigration"]["Properties"])
        with self.database.schema_connection() as conn:
            apply_migrations(
                conn,
                embedding_model=self.embedding_environment["EMBEDDING_MODEL_ID"],
                embedding_dimension=int(self.embedding_environment["EMBEDDING_DIMENSION"]),
            )
        if self.mirror_s3:
            self._load_objects()

    def _install_seams(self) -> None:
        from unittest import mock

        import moto.s3.notifications as s3_notifications
        import moto.stepfunctions.models as sfn_models
        from moto.awslambda.models import LambdaFunction
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        cloud = self

        def invoke(function: Any, event: Any = None) -> tuple[str, bool, str]:
            # A function keeps the template's environment: only the variables it has are made local.
            template = function.environment_vars
            local = {k: v for k, v in cloud.embedding_environment.items() if k in template}
            environment = {**template, **local, **cloud.environment_overrides}
            return cloud.lambdas.invoke(
                function.function_name,
                function.handler,
                environment,
                event,
                arn=function.function_arn,
                timeout_s=int(function.timeout),
                memory_mb=int(function.memory_size),
            )

        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )

        from local_runtime.cloudwatch import percentile_statistics
        from local_runtime.lifecycle import LifecycleEmulator

        self.lifecycle = LifecycleEmulator(
            deliver=self.deliver_event, account=DEFAULT_ACCOUNT_ID, region=REGION
        )
        from local_runtime.instance_refresh import InstanceRefreshEmulator

        # Its warm-up, checkpoint and hook waits shrink with the Wait states (wait_scale).
        self.instance_refresh = InstanceRefreshEmulator(self.lifecycle, sleep_scale=lambda: cloud.wait_scale)
        original_wait = WaitFunction._wait_interval

        def scaled_wait(function: Any, env: Any, wait_seconds: int) -> None:
            # Wait states sleep for real in moto; tests shrink them (0.01 turns 10 s into 0.1 s).
            if cloud.wait_scale > 0 and wait_seconds > 0:
                env.program_state_event.wait(wait_seconds * cloud.wait_scale)

        patches = [
            *self.lifecycle.patches(),
            *self.instance_refresh.patches(),
            mock.patch.object(
                WaitFunction, "_wait_interval", scaled_wait if self.wait_scale != 1.0 else original_wait
            ),
            mock.patch.object(LambdaFunction, "_invoke_lambda", invoke),
            mock.patch.object(s3_notifications, "_send_event_bridge_message", self._on_s3_event),
            self._versioned_delete_events(),
            _state_input_size_quota(),
            _map_iterations_keep_states_errors(),
            _distributed_map_tolerated_failures(),
            mock.patch.object(sfn_models, "stepfunctions_backends", stepfunctions_parser_backends),
            mock.patch.object(retrier_decl, "time", _ScaledSleep(self.retry_delay_scale)),
            _release_addresses_on_termination(),
            *percentile_statistics(),
        ]
        for patch in patches:
            self._exit.enter_context(patch)
        self._exit.callback(self.instance_refresh.close)  # refreshes stop before the patches go

    def _deploy(self) -> None:
        ec2 = boto3.client("ec2", region_name=REGION)
        # A /18 per AZ (16,379 instance addresses each): moto launches every group's instances into the first
        # subnet of its VPCZoneIdentifier, so one subnet holds all the fleet's hosts, and a day-long simulation
        # launches and replaces thousands.
        vpc = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{az}")["Subnet"][
                "SubnetId"
            ]
            for cidr, az in zip(SUBNET_CIDRS, "ab", strict=True)
        ]
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secret_arn = secrets.create_secret(
            Name=f"{STACK_NAME}/database", SecretString=json.dumps(self.postgres.secret(self.database_name))
        )["ARN"]
        parameters = {
            **self.parameter_overrides,
            "Stage": self.stage,
            "VpcId": vpc,
            "PrivateSubnetIds": ",".join(subnets),
            "CreateVpcEndpoints": "false",
            "LoreExplorer": "false",  # `kb serve` serves the explorer itself; CloudFront is not emulated
            "ExistingDatabaseSecretArn": secret_arn,
            "ExistingDatabaseHost": self.postgres.socket_dir,
            "DatabaseName": self.database_name,
        }
        parameters.update(self._publish_gpu_images(ec2))
        self.template = translate(parameters)
        self.s3.create_bucket(Bucket=CODE_BUCKET)
        for key, body in self.template.code_zips.items():
            self.s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=body)
        cfn = boto3.client("cloudformation", region_name=REGION)
        # moto splits a list parameter's value only when it is passed, never its default (a Fn::Select on
        # the default then picks characters: instance type "g"), so list defaults are passed as values.
        passed = {
            **{
                name: str(slot["Default"])
                for name, slot in self.template.cfn.get("Parameters", {}).items()
                if "Default" in slot and str(slot.get("Type", "")).startswith(("CommaDelimitedList", "List<"))
            },
            **parameters,
        }
        cfn.create_stack(
            StackName=STACK_NAME,
            TemplateBody=json.dumps(self.template.cfn),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in passed.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        resources = {
            r["LogicalResourceId"]: r
            for page in cfn.get_paginator("list_stack_resources").paginate(StackName=STACK_NAME)
            for r in page["StackResourceSummaries"]
        }
        self.stack_id = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]["StackId"]
        missing = sorted(set(self.template.cfn["Resources"]) - set(resources))
        if missing:
            raise RuntimeError(f"moto's CloudFormation did not create: {', '.join(missing)}")
        self.physical_ids = {k: r["PhysicalResourceId"] for k, r in resources.items()}
        for logical_id, folder in self.template.code_dirs.items():
            name = self.physical_ids[logical_id]
            self.functions[logical_id] = name
            self.lambdas.register(name, folder)
        self._create_aliases()
        self._put_lifecycle_hooks()
        self.bucket = self.physical_ids["DocumentsBucket"]
        bucket_props = self.template.cfn["Resources"]["DocumentsBucket"]["Properties"]
        if "EventBridgeConfiguration" in bucket_props.get("NotificationConfiguration", {}):
            self.s3.put_bucket_notification_configuration(
                Bucket=self.bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        if "VersioningConfiguration" in bucket_props:
            self.s3.put_bucket_versioning(
                Bucket=self.bucket,
                VersioningConfiguration={"Status": bucket_props["VersioningConfiguration"]["Status"]},
            )
        if "LifecycleConfiguration" in bucket_props:
            rules: Any = [_lifecycle_rule(r) for r in bucket_props["LifecycleConfiguration"]["Rules"]]
            self.s3.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
            )
        for logical_id, (text, substitutions) in self.template.definitions.items():
            self.sfn.update_state_machine(
                stateMachineArn=self.physical_ids[logical_id],
                definition=substitute_definition(text, substitutions, self._resolve),
            )
        self.state_machine_arn = self.physical_ids["IngestionStateMachine"]
        self.topic_arn = self.physical_ids["DocumentIngestedTopic"]
        # SNS → SQS subscriptions and SQS → Lambda mappings; `cloud.event_sources.drain()` delivers.
        self.event_sources = EventSources(self, region=REGION)
        self.event_sources.connect()

    def _resolve(self, value: Any) -> str:
        """The intrinsics DefinitionSubstitutions use: Ref, and GetAtt <function>.Arn."""
        if isinstance(value, str):
            return value
        if "Ref" in value:
            target = self.template.full["Resources"].get(value["Ref"], {})
            if target.get("Type") == "AWS::CloudWatch::Alarm":  # not created locally: its name
                name = target["Properties"].get("AlarmName", value["Ref"])
                sub = name.get("Fn::Sub", "") if isinstance(name, dict) else name
                if isinstance(sub, str) and "${" not in sub.replace("${AWS::StackName}", ""):
                    return sub.replace("${AWS::StackName}", STACK_NAME)
            return str(self.physical_ids[value["Ref"]])
        if "Fn::GetAtt" in value:
            target, attribute = value["Fn::GetAtt"]
            resource_type = self.template.cfn["Resources"][target]["Type"]
            if resource_type == "AWS::Lambda::Function" and attribute == "Arn":
                return f"arn:aws:lambda:{REGION}:123456789012:function:{self.physical_ids[target]}"
        raise NotImplementedError(f"DefinitionSubstitutions value not resolvable locally: {value}")

    def _create_aliases(self) -> None:
        """The template's aliases, which moto's CloudFormation does not create: each function's `live` alias on
        the version the stack published (moto's Lambda invokes the alias with the same handler), and each
        state machine alias as a name for its state machine (moto has no state machine versions)."""
        from local_runtime.template import alias_arns

        lambdas = boto3.client("lambda", region_name=REGION)
        for logical_id, (kind, target, name) in alias_arns(self.template.full["Resources"]).items():
            if target not in self.physical_ids:
                continue  # its function's condition is false here
            if kind == "lambda":
                versions = lambdas.list_versions_by_function(FunctionName=self.physical_ids[target])[
                    "Versions"
                ]
                published = max(int(v["Version"]) for v in versions if v["Version"] != "$LATEST")
                alias = lambdas.create_alias(
                    FunctionName=self.physical_ids[target], Name=name, FunctionVersion=str(published)
                )
                self.physical_ids[logical_id] = alias["AliasArn"]
            else:
                self.physical_ids[logical_id] = f"{self.physical_ids[target]}:{name}"
                self.state_machine_aliases[self.physical_ids[logical_id]] = self.physical_ids[target]

    def _put_lifecycle_hooks(self) -> None:
        """moto's CloudFormation ignores an ASG's LifecycleHookSpecificationList: create the hooks by API."""
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        for logical_id, resource in self.template.cfn["Resources"].items():
            if resource["Type"] != "AWS::AutoScaling::AutoScalingGroup":
                continue
            for hook in resource["Properties"].get("LifecycleHookSpecificationList", []):
                group = self.physical_ids[logical_id]
                if hook.get("NotificationMetadata") == {"Ref": "AWS::StackId"}:
                    hook = {**hook, "NotificationMetadata": self.stack_id}
                self.lifecycle.hook_metadata[(group, hook["LifecycleHookName"])] = hook.get(
                    "NotificationMetadata", ""
                )
                autoscaling.put_lifecycle_hook(AutoScalingGroupName=group, **hook)

    def _publish_gpu_images(self, ec2: Any) -> dict[str, str]:
        """The <Tier>HostImage parameters: one SSM parameter per tier (of the FleetTiers default) holding an
        AMI, as the image pipelines of images/template.yaml write them; any moto AMI stands in for the image."""
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ssm = boto3.client("ssm", region_name=REGION)
        names = {}
        for tier in ("Gold", "Silver", "Bronze"):
            names[f"{tier}HostImage"] = name = f"/{STACK_NAME}/gpu-host/images/{tier.lower()}"
            ssm.put_parameter(Name=name, Value=image, Type="String", Overwrite=True)
        return names

    # ------------------------------------------------------------ events
    def _on_s3_event(self, account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        if self._suppress_events or getattr(self._moto_delete_events, "suppressed", False):
            return
        if not event_name.startswith(("s3:ObjectCreated", "s3:ObjectRemoved")):
            return  # restore, tagging, ACL events: no rule of ours listens to them
        created = event_name.startswith("s3:ObjectCreated")
        self._send_s3_event(
            account_id,
            bucket,
            key.name,
            created=created,
            key=key if created else None,
            deletion_type=None if created else "Permanently Deleted",
        )

    def _versioned_delete_events(self) -> Any:
        """A patch of moto's `delete_object` that sends S3's Object Deleted event for every delete in a
        versioned bucket: "Delete Marker Created" for a plain delete, "Permanently Deleted" for a version."""
        from unittest import mock

        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import S3Backend

        original = S3Backend.delete_object
        cloud = self

        def delete_object(
            backend: Any, bucket_name: str, key_name: str, version_id: str | None = None, bypass: bool = False
        ) -> Any:
            bucket = backend.get_bucket(bucket_name)
            if not bucket.is_versioned:
                return original(backend, bucket_name, key_name, version_id=version_id, bypass=bypass)
            cloud._moto_delete_events.suppressed = True
            try:
                success, meta = original(backend, bucket_name, key_name, version_id=version_id, bypass=bypass)
            finally:
                cloud._moto_delete_events.suppressed = False
            if success and not cloud._suppress_events and bucket.notification_configuration is not None:
                cloud._send_s3_event(
                    getattr(backend, "account_id", DEFAULT_ACCOUNT_ID),
                    bucket,
                    key_name,
                    created=False,
                    version_id=meta.get("version-id"),
                    deletion_type="Permanently Deleted" if version_id else "Delete Marker Created",
                )
            return success, meta

        return mock.patch.object(S3Backend, "delete_object", delete_object)

    def _send_s3_event(
        self,
        account_id: str,
        bucket: Any,
        key_name: str,
        *,
        created: bool,
        key: Any = None,
        version_id: str | None = None,
        deletion_type: str | None = None,
    ) -> None:
        from moto.events.models import events_backends
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        detail_object: dict[str, Any] = {"key": key_name, "sequencer": f"{time.time_ns():020X}"}
        if version_id is not None:
            detail_object["version-id"] = version_id
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created" if created else "Object Deleted",
            "source": "aws.s3",
            "account": account_id,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": bucket.region_name,
            "resources": [f"arn:aws:s3:::{bucket.name}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": detail_object,
                "request-id": uuid.uuid4().hex[:16].upper(),
                "requester": account_id,
                "reason": "PutObject" if created else "DeleteObject",
                **({} if deletion_type is None else {"deletion-type": deletion_type}),
            },
        }
        events_backend = events_backends[account_id][bucket.region_name]
        if not any(rule.event_pattern.matches_event(event) for rule in _enabled_rules(events_backend)):
            # Nobody listens (artifacts/, quarantine/): do not read the object. moto closes an overwritten
            # object's buffer, so reading its ETag races with a concurrent put of the same key.
            return
        if created:
            detail_object |= {"size": key.size, "etag": key.etag.replace('"', "")}
            if bucket.is_versioned:
                # S3 names the version in every event of a versioned bucket ("null": written unversioned).
                detail_object["version-id"] = key.version_id
        self.deliver_event(event, events_backend, stepfunctions_parser_backends)

    def deliver_event(
        self, event: dict[str, Any], events_backend: Any = None, sfn_backends: Any = None
    ) -> list[str]:
        """Match an event against the deployed EventBridge rules and start their Step Functions targets."""
        if events_backend is None:
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.events.models import events_backends

            events_backend = events_backends[DEFAULT_ACCOUNT_ID][REGION]
        if sfn_backends is None:
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends as sfn_backends
        started = []
        for rule in _enabled_rules(events_backend):
            if rule.event_pattern.matches_event(event):
                started += self._start_targets(rule, event, sfn_backends)
        with self._started_lock:
            for collector in self._started:
                collector.extend(started)
        return started

    def _start_targets(self, rule: Any, event: dict[str, Any], sfn_backends: Any) -> list[str]:
        started = []
        for target in rule.targets:
            arn = target["Arn"]
            if ":states:" not in arn:
                continue
            arn = self.state_machine_aliases.get(arn, arn)  # an alias runs its state machine's definition
            account, region = arn.split(":")[4], arn.split(":")[3]
            try:
                execution = sfn_backends[account][region].start_execution(
                    state_machine_arn=arn, name=str(uuid.uuid4()), execution_input=json.dumps(event)
                )
            except Exception as exc:
                self._dead_letter(target, event, exc)
                continue
            started.append(execution.execution_arn)
        return started

    def _dead_letter(self, target: dict[str, Any], event: dict[str, Any], exc: Exception) -> None:
        queue_arn = target.get("DeadLetterConfig", {}).get("Arn")
        if not queue_arn:
            raise exc
        queue_url = self.sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        self.sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=json.dumps(event),
            MessageAttributes={
                "ERROR_CODE": {"DataType": "String", "StringValue": type(exc).__name__},
                "ERROR_MESSAGE": {"DataType": "String", "StringValue": str(exc)[:1000]},
                "RULE_ARN": {"DataType": "String", "StringValue": target.get("RuleArn", "")},
            },
        )

    @contextlib.contextmanager
    def capture_executions(self) -> Iterator[list[str]]:
        """Collect the execution ARNs that events started while the block runs."""
        collected: list[str] = []
        with self._started_lock:
            self._started.append(collected)
        try:
            yield collected
        finally:
            with self._started_lock:
                self._started.remove(collected)

    def wait(self, execution_arn: str, timeout_s: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            description = self.sfn.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                return dict(description)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout_s} s")
            time.sleep(0.05)

    # ------------------------------------------------------------ the knowledge API (API Gateway → Lambda)
    def api_request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str | list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Invoke KnowledgeApiFunction through moto's Lambda with the proxy event API Gateway would send.

        `body` is sent as JSON unless it is already str/bytes; returns the proxy response
        (statusCode, headers, body). A handler crash raises, as API Gateway would answer 502.
        """
        from local_runtime.api_gateway import proxy_event

        text = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
        event = proxy_event(
            method,
            path,
            body=text,
            query=query,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return self.invoke_api(event)

    def invoke_api(self, event: dict[str, Any]) -> dict[str, Any]:
        client = boto3.client("lambda", region_name=REGION)
        reply = client.invoke(FunctionName=self.functions["KnowledgeApiFunction"], Payload=json.dumps(event))
        payload = json.loads(reply["Payload"].read())
        if reply.get("FunctionError"):
            raise RuntimeError(
                f"KnowledgeApiFunction failed: {payload.get('errorType')}: {payload.get('errorMessage')}"
            )
        return dict(payload)

    # ------------------------------------------------------------ metrics (EMF, as CloudWatch extracts it)
    def _put_emf(self, record: dict[str, Any]) -> None:
        for directive in record["_aws"].get("CloudWatchMetrics", []):
            for dimension_set in directive.get("Dimensions", [[]]):
                dimensions = [{"Name": d, "Value": str(record[d])} for d in dimension_set if d in record]
                data: list[Any] = []
                for metric in directive.get("Metrics", []):
                    values: Any = record.get(metric["Name"], [])
                    for value in values if isinstance(values, list) else [values]:
                        data.append(
                            {
                                "MetricName": metric["Name"],
                                "Dimensions": dimensions,
                                "Value": float(value),
                                "Unit": metric.get("Unit", "None"),
                            }
                        )
                if data:
                    self.cloudwatch.put_metric_data(Namespace=directive["Namespace"], MetricData=data)

    def metric_sum(self, namespace: str, name: str, dimensions: dict[str, str]) -> float:
        now = datetime.now(UTC)
        stats = self.cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=name,
            Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
            StartTime=datetime.fromtimestamp(now.timestamp() - 3600, UTC),
            EndTime=datetime.fromtimestamp(now.timestamp() + 60, UTC),
            Period=3600,
            Statistics=["Sum"],
        )
        return float(sum(p.get("Sum", 0.0) for p in stats["Datapoints"]))

    # ------------------------------------------------------------ S3 persistence
    def _mirror_dir(self) -> Path:
        return self.home / "s3"

    def _load_objects(self) -> None:
        root = self._mirror_dir()
        if not root.exists():
            return
        self._suppress_events = True
        try:
            for path in root.rglob("*"):
                if path.is_file():
                    self.s3.put_object(
                        Bucket=self.bucket, Key=path.relative_to(root).as_posix(), Body=path.read_bytes()
                    )
        finally:
            self._suppress_events = False

    def _save_objects(self) -> None:
        import shutil

        root = self._mirror_dir()
        staging = root.with_name("s3.new")
        shutil.rmtree(staging, ignore_errors=True)
        for prefix in _MIRRORED_PREFIXES:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    target = staging / item["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read())
        shutil.rmtree(root, ignore_errors=True)
        if staging.exists():
            staging.rename(root)


def _release_addresses_on_termination() -> Any:
    """A patch of moto's `Instance.terminate` that gives the instance's private addresses back to its subnet.

    moto frees them only in `Instance.__del__`, and its EC2 backend keeps terminated instances (they are
    described, as in AWS), so that never runs: every launch takes a new address until the subnet is spent
    (`StopIteration` in `Subnet.get_available_subnet_ip`). AWS releases them with the primary network
    interface at termination; so does this, for addresses the instance still holds.
    """
    from unittest import mock

    from moto.ec2.exceptions import InvalidSubnetIdError
    from moto.ec2.models.instances import Instance

    original_terminate = Instance.terminate

    def terminate(instance: Any) -> Any:
        state = original_terminate(instance)
        if instance.subnet_id:
            with contextlib.suppress(InvalidSubnetIdError):  # a deleted subnet has no addresses to free
                subnet = instance.ec2_backend.get_subnet(instance.subnet_id)
                for address in instance._private_ips:
                    # Only its own: an address freed before may already be another instance's.
                    if subnet._subnet_ips.get(address) is instance:
                        subnet.del_subnet_ip(address)
        # Emptied so that `__del__` cannot free an address a later instance holds by then.
        instance._private_ips.clear()
        return state

    return mock.patch.object(Instance, "terminate", terminate)


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule as the PutBucketLifecycleConfiguration API spells it."""
    api: dict[str, Any] = {
        "ID": rule["Id"],
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = bool(rule["ExpiredObjectDeleteMarker"])
    if expiration:
        api["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return api


def _states_failure(
    env: Any, error: Any, cause: str, event_type: Any, details_key: str, details: Any
) -> Exception:
    """The FailureEventException moto raises for a States.* error, carrying only the one event detail its own
    failures set (EventDetails is a TypedDict of every kind of detail)."""
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName

    event_details: Any = {details_key: details(error=error.to_name(), cause=cause)}
    return FailureEventException(
        failure_event=FailureEvent(
            env=env, error_name=StatesErrorName(typ=error), event_type=event_type, event_details=event_details
        )
    )


def _state_input_size_quota() -> Any:
    """A patch of moto's `CommonStateField._eval_state_input`: Step Functions refuses a state input over 256 KB (a Map
    item after ItemSelector, an execution input), which moto checks only for outputs and task results."""
    from unittest import mock

    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.quotas import is_within_size_quota

    original = CommonStateField._eval_state_input

    def eval_state_input(state: Any, env: Any) -> None:
        original(state, env)
        if is_within_size_quota(env.stack[-1]):
            return
        cause = f"The state '{state.name}' has an input with a size exceeding the maximum number of bytes service limit."
        raise _states_failure(
            env,
            StatesErrorNameType.StatesStatesDataLimitExceeded,
            cause,
            HistoryEventType.ExecutionFailed,
            "executionFailedEventDetails",
            ExecutionFailedEventDetails,
        )

    return mock.patch.object(CommonStateField, "_eval_state_input", eval_state_input)


def _map_iterations_keep_states_errors() -> Any:
    """A patch of moto's Map iteration worker, which names an iteration's failure with CustomErrorName: for a
    States.* error (States.DataLimitExceeded in an item, States.Timeout) that raises, and the Map fails
    with States.Runtime instead of the iteration's error, as Step Functions reports it."""
    from unittest import mock

    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker

    def error_name(error_name: str | None) -> Any:
        if error_name is not None and error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name=error_name)

    return mock.patch.object(iteration_worker, "CustomErrorName", error_name)


def _distributed_map_tolerated_failures() -> Any:
    """A patch of moto's Distributed Map run, which counts a failed, timed-out or aborted child and still
    succeeds: Step Functions fails the Map state with States.ExceedToleratedFailureThreshold once more items
    fail than ToleratedFailureCount / ToleratedFailurePercentage allow (none by default)."""
    from unittest import mock

    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )

    original = DistributedIterationComponent._map_run

    def map_run(component: Any, env: Any, eval_input: Any) -> None:
        original(component, env, eval_input)
        items = eval_input.map_run_record.item_counter
        total = items.total.get()
        failed = items.failed.get() + items.timed_out.get() + items.aborted.get()
        allowed_count = int(eval_input.tolerated_failure_count or 0)
        allowed_percentage = float(eval_input.tolerated_failure_percentage or 0.0)
        if failed == 0 or failed <= allowed_count or (total and 100.0 * failed / total <= allowed_percentage):
            return
        cause = f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed."
        raise _states_failure(
            env,
            StatesErrorNameType.StatesExceedToleratedFailureThreshold,
            cause,
            HistoryEventType.MapRunFailed,
            "mapRunFailedEventDetails",
            MapRunFailedEventDetails,
        )

    return mock.patch.object(DistributedIterationComponent, "_map_run", map_run)


def _enabled_rules(events_backend: Any) -> list[Any]:
    """Enabled rules with an event pattern (a schedule rule has none, and moto's empty pattern matches all)."""
    return [
        r
        for bus in events_backend.event_buses.values()
        for r in bus.rules.values()
        if r.state == "ENABLED" and not r.scheduled_expression
    ]


def _fake_credentials() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


@contextlib.contextmanager
def _patched_environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
