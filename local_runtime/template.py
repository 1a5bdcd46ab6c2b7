"""template.yaml → the CloudFormation template moto deploys, so local names and wiring come from the real one.

moto's CloudFormation runs neither of the template's transforms, so both run here, in CloudFormation's
order: AWS::LanguageExtensions (`Fn::ForEach`, expanded by sam-cli's own processors, as `sam build` does)
and then the SAM transform (samtranslator, with a managed-policy loader that needs no AWS call). Code and layer folders are zipped into a local code bucket, and each state
machine's DefinitionUri file is inlined as `Fn::Sub` with its DefinitionSubstitutions, which is what the
deployed machine receives too.

Resource types fall in three groups, and a type in none of them fails the deploy (never a silent skip):
- created by moto's CloudFormation (MOTO_CREATED);
- provided by this runtime instead (LOCALLY_PROVIDED): the database and its secret, the migration resource;
- not emulated (NOT_EMULATED): checked by cfn-lint and the template tests only, with the reason.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from samcli.lib.cfn_language_extensions.api import create_default_intrinsic_resolver
from samcli.lib.cfn_language_extensions.models import ResolutionMode, TemplateProcessingContext
from samcli.lib.cfn_language_extensions.pipeline import ProcessingPipeline
from samcli.lib.cfn_language_extensions.processors import ForEachProcessor, TemplateParsingProcessor
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from local_runtime.paths import TEMPLATE_PATH

# samtranslator records usage metrics for its own telemetry and warns on stderr that nobody published them.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
# ... and that its feature toggles have no configuration (none is needed without AppConfig).
logging.getLogger("samtranslator.feature_toggle.feature_toggle").setLevel(logging.ERROR)

CODE_BUCKET = "local-lambda-code"

MOTO_CREATED = frozenset(
    {
        "AWS::S3::Bucket",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Lambda::Version",  # each function's published version, behind its `live` alias
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::Permission",
        "AWS::StepFunctions::StateMachine",
        "AWS::Events::Rule",
        "AWS::Logs::LogGroup",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::VPCEndpoint",
        "AWS::DynamoDB::Table",
        "AWS::EC2::LaunchTemplate",
        "AWS::AutoScaling::AutoScalingGroup",
        "AWS::IAM::InstanceProfile",
        "AWS::CloudWatch::Dashboard",
        "AWS::SSM::Parameter",  # the fleet's tier targets, read by the fleet functions at cold start
        "AWS::IAM::Policy",  # recorded only: moto does not enforce IAM
        # Created, so the alarm topics' KmsMasterKeyId resolves; moto records key policies without enforcing them.
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        # The knowledge API's resources and methods; requests reach its function through LocalCloud.api_request.
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Resource",
        "AWS::ApiGateway::Method",
        "AWS::ApiGateway::Deployment",
    }
)

LOCALLY_PROVIDED = {
    "AWS::RDS::DBCluster": "the embedded PostgreSQL server under $KB_HOME",
    "AWS::RDS::DBInstance": "the embedded PostgreSQL server under $KB_HOME",
    "AWS::RDS::DBSubnetGroup": "the embedded PostgreSQL server needs no subnets",
    "Custom::DatabaseMigration": "migrations applied in-process with the same knowledge.migrations code",
    "AWS::Lambda::EventSourceMapping": "SQS queues polled by local_runtime.event_sources (batches, partial"
    " failures, redrive)",
    "AWS::RDS::DBProxy": "the functions reach the embedded PostgreSQL server directly, through their own pool",
    "AWS::RDS::DBProxyTargetGroup": "the functions reach the embedded PostgreSQL server directly",
    "AWS::Lambda::Alias": "created through moto's Lambda API once the stack exists (moto's CloudFormation has"
    " no alias), on the version the stack published; callers invoke the alias, which runs the same handler",
    "AWS::StepFunctions::StateMachineVersion": "moto has no state machine versions: the version is the state"
    " machine as deployed (an execution keeps its definition, as a version's would)",
    "AWS::StepFunctions::StateMachineAlias": "LocalCloud starts an alias's executions on its state machine",
    "AWS::SecretsManager::Secret": "the database secret is written into moto by LocalCloud (the embedded server"
    " trusts local connections, so the job roles need no password there)",
}

NOT_EMULATED = {
    "AWS::SecretsManager::RotationSchedule": "rotation is Secrets Manager's schedule; the rotation steps and"
    " the reconnect with a rotated password are tested on the embedded server (tests/functional)",
    "AWS::CodeDeploy::Application": "traffic shifting and its rollback on alarm are CodeDeploy's; locally each"
    " alias points at the published version at once (what AllAtOnce does)",
    "AWS::CodeDeploy::DeploymentGroup": "traffic shifting and its rollback on alarm are CodeDeploy's",
    "AWS::CloudWatch::Alarm": "moto never evaluates alarms; tests check each alarm watches an emitted metric",
    "AWS::Backup::BackupVault": "AWS Backup has no local counterpart; `kb backup` / `kb restore` dump and"
    " restore the embedded database",
    "AWS::Backup::BackupPlan": "AWS Backup has no local counterpart (docs/dr.md)",
    "AWS::Backup::BackupSelection": "AWS Backup has no local counterpart (docs/dr.md)",
    "AWS::Chatbot::SlackChannelConfiguration": "Slack delivery of the alarm topics has no local counterpart",
    "AWS::S3::BucketPolicy": "moto does not enforce bucket policies",
    "AWS::SQS::QueuePolicy": "moto does not enforce queue policies",
    "AWS::SNS::Subscription": "e-mail delivery has no local counterpart; SQS subscriptions are made by"
    " local_runtime.event_sources",
    "AWS::EC2::SecurityGroupIngress": "network rules have no local effect",
    "AWS::ApiGateway::Stage": "LocalCloud.api_request invokes the API function as the v1 stage would; stage"
    " throttling and tracing are API Gateway's",
    "AWS::ApiGateway::UsagePlan": "API keys and per-key throttling are enforced by API Gateway only",
    "AWS::ApiGateway::ApiKey": "API keys are enforced by API Gateway only",
    "AWS::ApiGateway::UsagePlanKey": "API keys are enforced by API Gateway only",
    "AWS::ApiGateway::GatewayResponse": "API Gateway's own answers (403 unsigned, 429 throttled) and their CORS"
    " header are API Gateway's; the function's answers carry the origin locally too",
    # The lore explorer's hosting (LoreExplorer=true): locally `kb serve` serves cli/explorer/ at /.
    "AWS::CloudFront::Distribution": "the lore explorer is served by `kb serve` at / locally",
    "AWS::CloudFront::OriginAccessControl": "the lore explorer is served by `kb serve` at / locally",
    "AWS::CloudFront::ResponseHeadersPolicy": "the lore explorer is served by `kb serve` at / locally",
}


class UnsupportedResourceError(RuntimeError):
    """template.yaml uses a resource type the local runtime cannot create or account for."""


@dataclass
class LocalTemplate:
    cfn: dict[str, Any]  # what moto's CloudFormation deploys
    full: dict[str, Any]  # the whole translated template, for checks
    code_dirs: dict[str, Path]  # Lambda function logical id -> code folder
    code_zips: dict[str, bytes] = field(default_factory=dict)  # S3 key -> zip
    parameters: dict[str, str] = field(default_factory=dict)
    # state machine logical id -> (ASL text with ${...}, DefinitionSubstitutions as intrinsics)
    definitions: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"


def load_sam_template(path: Path = TEMPLATE_PATH, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The SAM template as the SAM transform receives it: `Fn::ForEach` loops expanded."""
    return expand_language_extensions(dict(yaml_parse(path.read_text())), parameters or {})


def expand_language_extensions(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """What the AWS::LanguageExtensions transform does to this template before the SAM transform.

    Only the loops are expanded (by sam-cli's ForEach processor, its collections resolved from the
    parameters); every other intrinsic stays for CloudFormation, here moto, to resolve at deploy. A
    reference built from the loop identifier (`Ref: !Sub "${Tier}RequestQueue"`) becomes a plain one.
    """
    transforms = template.get("Transform", [])
    transforms = [transforms] if isinstance(transforms, str) else list(transforms)
    if LANGUAGE_EXTENSIONS not in transforms:
        return template
    context = TemplateProcessingContext(
        fragment=copy.deepcopy(template),
        parameter_values=dict(parameters),
        resolution_mode=ResolutionMode.PARTIAL,
    )
    loops = ForEachProcessor(intrinsic_resolver=create_default_intrinsic_resolver(context))
    expanded: dict[str, Any] = ProcessingPipeline([TemplateParsingProcessor(), loops]).process_template(
        context
    )
    remaining = [name for name in transforms if name != LANGUAGE_EXTENSIONS]
    expanded["Transform"] = remaining[0] if len(remaining) == 1 else remaining
    return dict(_plain_references(expanded))


def _plain_references(node: Any) -> Any:
    """A `Fn::Sub` the loop left with nothing to substitute is its text, so `{"Ref": {"Fn::Sub": "Name"}}`
    becomes `{"Ref": "Name"}` (and Fn::GetAtt alike), as CloudFormation reads them."""
    if isinstance(node, list):
        return [_plain_references(item) for item in node]
    if not isinstance(node, dict):
        return node
    if _literal_sub(node) is not None:
        return _literal_sub(node)
    node = {key: _plain_references(value) for key, value in node.items()}
    return node


def _literal_sub(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("Fn::Sub"), str):
        text: str = value["Fn::Sub"]
        return text if "${" not in text else None
    return None


def translate(
    parameters: dict[str, str], *, path: Path = TEMPLATE_PATH, region: str = "us-east-1"
) -> LocalTemplate:
    sam = load_sam_template(path, parameters)
    base = path.parent
    code_dirs: dict[str, Path] = {}
    zips: dict[str, bytes] = {}
    definitions: dict[str, str] = {}
    for logical_id, resource in sam["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            folder = (base / props["CodeUri"]).resolve()
            code_dirs[logical_id] = folder
            key = f"{logical_id}.zip"
            zips[key] = _zip_folder(folder)
            props["CodeUri"] = f"s3://{CODE_BUCKET}/{key}"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            key = f"{logical_id}.zip"
            zips[key] = _zip_folder((base / props["ContentUri"]).resolve())
            props["ContentUri"] = f"s3://{CODE_BUCKET}/{key}"
        elif resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            definitions[logical_id] = (base / props.pop("DefinitionUri")).read_text()
            props["Definition"] = {"StartAt": "Placeholder", "States": {"Placeholder": {"Type": "Succeed"}}}

    # An explicit session: samtranslator would otherwise ask the environment for a region.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    full = translator.translate(sam, parameter_values=dict(parameters), get_managed_policy_map=dict)
    full = _resolve_conditions(full, parameters)
    check_supported(full["Resources"])
    # A function whose Condition is false (CreateDatabase locally) is neither deployed nor registered.
    code_dirs = {
        logical_id: folder for logical_id, folder in code_dirs.items() if logical_id in full["Resources"]
    }
    cfn = copy.deepcopy(full)
    asl: dict[str, tuple[str, dict[str, Any]]] = {}
    for logical_id, text in definitions.items():
        # Step Functions substitutes ${Name} itself at deploy; moto's Fn::Sub would also collapse "$$" (the
        # context object prefix), so the runtime applies the substitutions after the stack exists.
        props = cfn["Resources"][logical_id]["Properties"]
        asl[logical_id] = (text, props.pop("DefinitionSubstitutions", {}))
        props["DefinitionString"] = json.dumps(
            {"StartAt": "NotYetSubstituted", "States": {"NotYetSubstituted": {"Type": "Fail"}}}
        )
        full_props = full["Resources"][logical_id]["Properties"]
        full_props["DefinitionString"] = {"Fn::Sub": [text, full_props.pop("DefinitionSubstitutions", {})]}
    cfn = _alias_references_resolvable(cfn)
    for logical_id in [k for k, r in cfn["Resources"].items() if r["Type"] not in MOTO_CREATED]:
        del cfn["Resources"][logical_id]
    for resource in cfn["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            # Layers are imported from the repository in-process; moto would only record them.
            resource["Properties"].pop("Layers", None)
            resource["Properties"].pop("VpcConfig", None)
        elif resource["Type"] == "AWS::ApiGateway::Method":
            # moto's CloudFormation reads IntegrationHttpMethod and Uri even of a MOCK integration (a CORS
            # preflight), which API Gateway answers itself and has neither.
            integration = resource["Properties"].get("Integration", {})
            if integration.get("Type") == "MOCK":
                integration.setdefault("IntegrationHttpMethod", "POST")
                integration.setdefault("Uri", "")
    cfn.pop("Outputs", None)
    for name, spec in cfn.get("Parameters", {}).items():
        # moto resolves an SSM-typed parameter's Default even when a value is given: point it at the value.
        if spec.get("Type", "").startswith("AWS::SSM::Parameter::") and name in parameters:
            spec["Default"] = parameters[name]
    return LocalTemplate(
        cfn=cfn, full=full, code_dirs=code_dirs, code_zips=zips, parameters=dict(parameters), definitions=asl
    )


def alias_arns(resources: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Each alias of the template: logical id -> (kind "lambda" or "states", target logical id, alias name)."""
    found: dict[str, tuple[str, str, str]] = {}
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Alias":
            found[logical_id] = ("lambda", props["FunctionName"]["Ref"], props["Name"])
        elif resource["Type"] == "AWS::StepFunctions::StateMachineAlias":
            routing = props.get("DeploymentPreference") or props["RoutingConfiguration"][0]
            version = resources[routing["StateMachineVersionArn"]["Ref"]]
            found[logical_id] = ("states", version["Properties"]["StateMachineArn"]["Ref"], props["Name"])
    return found


def _alias_references_resolvable(cfn: dict[str, Any]) -> dict[str, Any]:
    """moto's CloudFormation creates no alias: a reference to one becomes the alias ARN built from its target's
    (`<function ARN>:live`, `<state machine ARN>:live`), which the runtime creates or maps after the deploy."""
    aliases = alias_arns(cfn["Resources"])

    def replacement(logical_id: str) -> tuple[Any, str]:
        kind, target, name = aliases[logical_id]
        if kind == "lambda":
            return {"Fn::Join": [":", [{"Fn::GetAtt": [target, "Arn"]}, name]]}, f"${{{target}.Arn}}:{name}"
        return {"Fn::Join": [":", [{"Ref": target}, name]]}, f"${{{target}}}:{name}"

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"} and node["Ref"] in aliases:
            return replacement(node["Ref"])[0]
        if "Fn::Sub" in node:
            sub = node["Fn::Sub"]
            text, variables = (sub[0], sub[1]) if isinstance(sub, list) else (sub, None)
            for logical_id in aliases:
                text = text.replace("${" + logical_id + "}", replacement(logical_id)[1])
            return {"Fn::Sub": [text, rewrite(variables)] if variables is not None else text}
        return {key: rewrite(value) for key, value in node.items()}

    def permission(resource: dict[str, Any]) -> dict[str, Any]:
        # moto checks a permission's function exists, and the alias does not yet: on the function (moto
        # records permissions without enforcing them).
        target = resource["Properties"]["FunctionName"]
        if isinstance(target, dict) and target.get("Ref") in aliases:
            resource = copy.deepcopy(resource)
            resource["Properties"]["FunctionName"] = {"Ref": aliases[target["Ref"]][1]}
        return resource

    cfn["Resources"] = {
        k: r if k in aliases else rewrite(permission(r) if r["Type"] == "AWS::Lambda::Permission" else r)
        for k, r in cfn["Resources"].items()
    }
    return cfn


def substitute_definition(text: str, substitutions: dict[str, Any], resolve: Any) -> str:
    """Apply DefinitionSubstitutions as Step Functions does: each ${Name} replaced by its resolved value."""
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", str(resolve(value)))
    return text


def check_supported(resources: dict[str, Any]) -> None:
    unknown = sorted(
        {r["Type"] for r in resources.values()} - MOTO_CREATED - set(LOCALLY_PROVIDED) - set(NOT_EMULATED)
    )
    if unknown:
        raise UnsupportedResourceError(
            f"the local runtime cannot create {', '.join(unknown)}: add a moto model, a local provider or an "
            "explicit NOT_EMULATED entry with its reason"
        )


# ---------------------------------------------------------------- conditions
def _resolve_conditions(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """Evaluate Conditions with the given parameters; drop resources whose condition is false.

    moto evaluates conditions too, but resources it skips would then look like silent skips; resolving them
    here keeps the resource accounting exact.
    """
    values = {
        name: str(parameters.get(name, spec.get("Default", "")))
        for name, spec in template.get("Parameters", {}).items()
    }
    conditions = template.get("Conditions", {})
    cache: dict[str, bool] = {}

    def evaluate(expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Ref":
                value = values.get(arg, arg)
                return value
            if fn == "Fn::Equals":
                return str(evaluate(arg[0])) == str(evaluate(arg[1]))
            if fn == "Fn::Not":
                return not evaluate(arg[0])
            if fn == "Fn::And":
                return all(evaluate(a) for a in arg)
            if fn == "Fn::Or":
                return any(evaluate(a) for a in arg)
            if fn == "Condition":
                return condition(arg)
            if fn == "Fn::Join":
                parts = evaluate(arg[1])
                return arg[0].join(
                    str(p) for p in (parts if isinstance(parts, list) else str(parts).split(","))
                )
        return expr

    def condition(name: str) -> bool:
        if name not in cache:
            cache[name] = bool(evaluate(conditions[name]))
        return cache[name]

    resources = template["Resources"]
    for logical_id in list(resources):
        name = resources[logical_id].get("Condition")
        if name and not condition(name):
            del resources[logical_id]
    return template
