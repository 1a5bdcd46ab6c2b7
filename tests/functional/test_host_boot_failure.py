"""A failed bootstrap is recorded the same way whoever records it: `host-agent boot-failed` (the agent's
registry adapter) or, on an image without the agent, the Deep Learning AMI's python3 and boto3 running the
writer embedded in bootstrap.sh. The launch workflow reads what both leave (tests/functional/
test_fleet_controller.py drives that part)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from host_agent.adapters.registry import MAX_REASON_CHARS, HostRegistry
from tests.unit.test_host_agent_userdata import _files


def _fallback_writer() -> str:
    bootstrap = _files("gold")["/opt/gpu-host/bootstrap.sh"]["content"]
    found = re.search(r"<<'PY'\n(.*?)\nPY\n", bootstrap, re.DOTALL)
    assert found
    return found[1]


def test_the_fallback_writes_the_item_the_agent_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both writers of a failed bootstrap (host-agent boot-failed, and the AMI's python3 when the agent is
    missing) leave the same attributes, which the launch workflow reads."""
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1",
                       "HOSTS_TABLE": "hosts", "FLEET_TIER": "gold"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="hosts",
            KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        monkeypatch.setattr(sys, "argv", ["-", "i-fallback", "no manifest"])
        exec(compile(_fallback_writer(), "bootstrap.sh fallback", "exec"), {"__name__": "__main__"})
        HostRegistry(dynamodb, "hosts", "i-agent", "gold").mark_failed("no manifest", datetime.now(UTC))
        items = [
            dynamodb.get_item(TableName="hosts", Key={"instance_id": {"S": i}})["Item"]
            for i in ("i-fallback", "i-agent")
        ]
    fallback, agent = ({k: v for k, v in item.items() if k != "instance_id"} for item in items)
    assert set(fallback) == set(agent)
    assert fallback["state"] == agent["state"] == {"S": "failed"}
    assert fallback["failure_reason"] == agent["failure_reason"] == {"S": "no manifest"}


def test_a_long_reason_is_cut_and_an_empty_one_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="hosts",
            KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        registry = HostRegistry(dynamodb, "hosts", "i-1", "bronze")
        registry.mark_failed("x" * 5000, datetime.now(UTC))
        item = dynamodb.get_item(TableName="hosts", Key={"instance_id": {"S": "i-1"}})["Item"]
        assert len(item["failure_reason"]["S"]) == MAX_REASON_CHARS and item["tier"] == {"S": "bronze"}
        assert (
            item["in_flight"] == {"N": "0"} and int(item["expires_at"]["N"]) > datetime.now(UTC).timestamp()
        )
        registry.mark_failed("  ", datetime.now(UTC))
        item = dynamodb.get_item(TableName="hosts", Key={"instance_id": {"S": "i-1"}})["Item"]
        assert item["failure_reason"] == {"S": "no reason given"}
