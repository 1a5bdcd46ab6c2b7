"""Alarm notifications are delivered: topics CloudWatch can publish to, a subscriber on every severity, Slack."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from local_runtime.template import load_sam_template
from tests.template.alarm_checks import undeliverable_topics


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(load_sam_template()["Resources"])


def _alarm_topics(resources: dict[str, Any]) -> set[str]:
    return {
        action["Ref"]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for action in [*resource["Properties"]["AlarmActions"], *resource["Properties"]["OKActions"]]
    }


def test_every_alarm_publishes_to_a_topic_cloudwatch_can_use(resources: dict[str, Any]) -> None:
    assert _alarm_topics(resources) == {"AlarmTopicCritical", "AlarmTopicWarning"}
    assert undeliverable_topics(resources) == []


def test_an_alarm_topic_on_the_aws_managed_key_is_caught(resources: dict[str, Any]) -> None:
    broken = copy.deepcopy(resources)
    broken["AlarmTopicWarning"]["Properties"]["KmsMasterKeyId"] = "alias/aws/sns"
    problems = undeliverable_topics(broken)
    assert problems and all("AlarmTopicWarning is encrypted with alias/aws/sns" in p for p in problems)


def test_a_key_policy_without_cloudwatch_is_caught(resources: dict[str, Any]) -> None:
    broken = copy.deepcopy(resources)
    statements = broken["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    broken["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"] = [
        s for s in statements if s.get("Principal", {}).get("Service") != "cloudwatch.amazonaws.com"
    ]
    assert any("does not allow cloudwatch.amazonaws.com" in p for p in undeliverable_topics(broken))


def test_a_key_policy_without_the_source_account_condition_is_caught(resources: dict[str, Any]) -> None:
    broken = copy.deepcopy(resources)
    for statement in broken["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]:
        statement.pop("Condition", None)
    assert undeliverable_topics(broken)


def test_an_eventbridge_target_on_the_alarm_topics_needs_events_in_the_key_policy(
    resources: dict[str, Any],
) -> None:
    with_rule = copy.deepcopy(resources)
    with_rule["HostsFailingRule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {"Targets": [{"Id": "page", "Arn": {"Ref": "AlarmTopicCritical"}}]},
    }
    assert any("does not allow events.amazonaws.com" in p for p in undeliverable_topics(with_rule))


def test_an_action_that_is_not_a_topic_of_the_stack_is_caught(resources: dict[str, Any]) -> None:
    broken = copy.deepcopy(resources)
    broken["DocumentsQuarantinedAlarm"]["Properties"]["OKActions"] = ["arn:aws:sns:us-east-1:1:elsewhere"]
    assert any("is not a topic of the stack" in p for p in undeliverable_topics(broken))


def test_the_alarm_key_rotates_and_lets_only_this_account_publish(resources: dict[str, Any]) -> None:
    key = resources["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    service_statements = [s for s in key["KeyPolicy"]["Statement"] if "Service" in s["Principal"]]
    for statement in service_statements:
        assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_every_severity_has_an_email_subscriber_when_an_address_is_given(resources: dict[str, Any]) -> None:
    sam = load_sam_template()
    subscriptions = {
        r["Properties"]["TopicArn"]["Ref"]: r
        for r in resources.values()
        if r["Type"] == "AWS::SNS::Subscription"
    }
    assert set(subscriptions) >= _alarm_topics(resources)
    critical, warning = subscriptions["AlarmTopicCritical"], subscriptions["AlarmTopicWarning"]
    assert critical["Condition"] == "SubscribeAlarmEmail"
    assert critical["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    # One address given covers both severities; a second one takes the warning topic.
    assert warning["Condition"] == "SubscribeWarningAlarmEmail"
    assert sam["Conditions"]["SubscribeWarningAlarmEmail"] == {
        "Fn::Or": [{"Condition": "SubscribeAlarmEmail"}, {"Condition": "HasWarningAlarmEmail"}]
    }
    assert warning["Properties"]["Endpoint"] == {
        "Fn::If": ["HasWarningAlarmEmail", {"Ref": "WarningAlarmEmail"}, {"Ref": "AlarmEmail"}]
    }
    for name in ("AlarmEmail", "WarningAlarmEmail", "AlarmSlackWorkspaceId", "AlarmSlackChannelId"):
        assert sam["Parameters"][name]["Default"] == ""  # empty = none


def test_slack_gets_every_severity_through_a_read_only_chatbot_role(resources: dict[str, Any]) -> None:
    channel = resources["AlarmSlackChannel"]
    role = resources["AlarmChatbotRole"]
    assert channel["Condition"] == role["Condition"] == "NotifySlack"
    assert {t["Ref"] for t in channel["Properties"]["SnsTopicArns"]} == _alarm_topics(resources)
    assert channel["Properties"]["IamRoleArn"] == {"Fn::GetAtt": ["AlarmChatbotRole", "Arn"]}
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "chatbot.amazonaws.com"}
    assert "ManagedPolicyArns" not in role["Properties"]
    actions = [
        action
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in statement["Action"]
    ]
    assert actions and all(a.startswith(("cloudwatch:Describe", "cloudwatch:Get")) for a in actions)
    guardrails = channel["Properties"]["GuardrailPolicies"]
    assert guardrails == [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/CloudWatchReadOnlyAccess"}]
