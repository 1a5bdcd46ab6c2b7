"""`kb ingest`, `kb delete` and `kb status` with --target aws: the stack's documents bucket (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from cli.kb import main

STACK = "ai-game-knowledge-dev"
TEMPLATE = {
    "Resources": {"DocumentsBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "kb-docs"}}},
    "Outputs": {"DocumentsBucketName": {"Value": {"Ref": "DocumentsBucket"}}},
}
AWS = ["--target", "aws", "--stack-name", STACK, "--region", "us-east-1"]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName=STACK, TemplateBody=json.dumps(TEMPLATE)
        )
        yield


def test_ingest_status_and_delete_use_the_stack_bucket(
    stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lore = tmp_path / "lore.md"
    lore.write_text("# Ember\n\nThe court.\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["ingest", str(lore), "--world", "emberfall", "--json", *AWS]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["key"], result["status"]) == ("incoming/emberfall/lore.md", "uploaded")
    s3 = boto3.client("s3", region_name="us-east-1")
    assert (
        s3.get_object(Bucket="kb-docs", Key="incoming/emberfall/lore.md")["Body"].read() == lore.read_bytes()
    )
    s3.put_object(Bucket="kb-docs", Key="quarantine/emberfall/bad.md", Body=b"\xff")

    assert main(["status", "--json", *AWS]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"world": "emberfall", "documents": 1, "chunks": None, "quarantined": 1}
    ]

    assert main(["delete", "lore.md", "--world", "emberfall", *AWS]) == 0
    assert "incoming/emberfall/lore.md: deleted" in capsys.readouterr().out
    assert main(["delete", "lore.md", "--world", "emberfall", *AWS]) == 0
    assert "absent" in capsys.readouterr().out
    assert not (tmp_path / "home" / "pg").exists()  # nothing local was started


def test_an_unknown_stack_fails_with_exit_1(stack: None, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["status", "--target", "aws", "--stack-name", "nope", "--region", "us-east-1"]) == 1
    assert "cannot read stack 'nope'" in capsys.readouterr().err
