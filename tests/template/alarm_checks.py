"""What the alerting tests check, as functions over a template's resources, so that each check is also
shown failing on a template that breaks it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Who publishes to a topic an alarm or a rule target names, and so must be allowed to use its key.
PUBLISHERS = {
    "AWS::CloudWatch::Alarm": "cloudwatch.amazonaws.com",
    "AWS::Events::Rule": "events.amazonaws.com",
}
KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")


def _logical_id(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def alarm_actions(props: dict[str, Any]) -> list[Any]:
    return [*props.get("AlarmActions", []), *props.get("OKActions", [])]


def published_topics(resources: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(publisher resource, its service principal, the topic reference) for every alarm action and rule target."""
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            for action in alarm_actions(props):
                yield logical_id, PUBLISHERS[resource["Type"]], action
        elif resource["Type"] == "AWS::Events::Rule":
            for target in props.get("Targets", []):
                topic = _logical_id(target["Arn"])
                if topic and resources.get(topic, {}).get("Type") == "AWS::SNS::Topic":
                    yield logical_id, PUBLISHERS[resource["Type"]], target["Arn"]


def _allows(statement: dict[str, Any], service: str) -> bool:
    principals = _as_list(statement.get("Principal", {}).get("Service", []))
    actions = set(_as_list(statement.get("Action", [])))
    conditions = statement.get("Condition", {})
    source_account = any("aws:SourceAccount" in block for block in conditions.values())
    # Only CloudWatch's alarm deliveries are documented to carry aws:SourceAccount to KMS; a statement for
    # EventBridge that required it could refuse every publish, so it is not asked of one.
    return (
        statement.get("Effect") == "Allow"
        and service in principals
        and (set(KEY_ACTIONS) <= actions or "kms:*" in actions)
        and (source_account or service != "cloudwatch.amazonaws.com")
    )


def undeliverable_topics(resources: dict[str, Any]) -> list[str]:
    """Every publish that AWS would drop: to something that is not a topic of the stack, to a topic encrypted
    with an AWS managed key (no one can grant CloudWatch or EventBridge its use), or with a customer managed
    key whose policy does not let the publisher's service use it for this account."""
    problems = []
    for publisher, service, reference in published_topics(resources):
        topic_id = _logical_id(reference)
        topic = resources.get(topic_id or "", {})
        if topic.get("Type") != "AWS::SNS::Topic":
            problems.append(f"{publisher}: {reference} is not a topic of the stack")
            continue
        key = topic.get("Properties", {}).get("KmsMasterKeyId")
        if key is None:
            continue
        key_id = _logical_id(key)
        if key_id is None:
            problems.append(f"{publisher}: {topic_id} is encrypted with {key}, which {service} cannot use")
            continue
        key_resource = resources.get(key_id, {})
        if key_resource.get("Type") != "AWS::KMS::Key":
            problems.append(f"{publisher}: {topic_id}'s key {key_id} is not a key of the stack")
            continue
        statements = key_resource["Properties"]["KeyPolicy"]["Statement"]
        if not any(_allows(statement, service) for statement in statements):
            problems.append(
                f"{publisher}: the policy of {key_id} ({topic_id}'s key) does not allow {service}"
            )
    return problems
