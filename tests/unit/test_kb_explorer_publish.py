"""`kb explorer publish`: cli/explorer/ onto a stack's site bucket, its config.js kept, its cache invalidated
(moto's S3, CloudFront and CloudFormation)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cli.kb import main
from cli.kb_explorer_publish import EXPLORER_DIR

STACK = "ai-game-knowledge-dev"
API_URL = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/v1"
REGION = "us-east-1"


def _distribution() -> str:
    cloudfront = boto3.client("cloudfront", region_name=REGION)
    config = {
        "CallerReference": "explorer",
        "Comment": "explorer",
        "Enabled": True,
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "files",
                    "DomainName": "site.s3.amazonaws.com",
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "files",
            "ViewerProtocolPolicy": "https-only",
            "MinTTL": 0,
        },
    }
    return str(cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"])


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        distribution = _distribution()
        template = {
            "Resources": {
                "ExplorerBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "site"}}
            },
            "Outputs": {
                "ExplorerBucketName": {"Value": {"Ref": "ExplorerBucket"}},
                "ExplorerDistributionId": {"Value": distribution},
                "ExplorerUrl": {"Value": "https://d111111abcdef8.cloudfront.net/"},
                "KnowledgeApiUrl": {"Value": API_URL},
            },
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=STACK, TemplateBody=json.dumps(template)
        )
        yield {"distribution": distribution, "s3": boto3.client("s3", region_name=REGION)}


def _publish(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    capsys.readouterr()
    status = main(["explorer", "publish", "--stack-name", STACK, "--region", REGION, "--json", *extra])
    out = capsys.readouterr().out
    return status, json.loads(out) if status == 0 else out


def _body(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket="site", Key=key)["Body"].read())


def test_publish_uploads_the_explorer_writes_its_config_and_invalidates_the_cache(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = site["s3"]
    s3.put_object(Bucket="site", Key="old-release.js", Body=b"// gone")

    status, done = _publish(capsys)

    assert status == 0
    files = sorted(p.name for p in EXPLORER_DIR.iterdir() if p.is_file())
    assert sorted(done["uploaded"]) == files and done["deleted"] == ["old-release.js"]
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="site")["Contents"])
    assert listed == files
    assert _body(s3, "explorer.js") == (EXPLORER_DIR / "explorer.js").read_bytes()
    page = s3.head_object(Bucket="site", Key="index.html")
    assert page["ContentType"] == "text/html; charset=utf-8" and page["CacheControl"] == "no-cache"
    assert s3.head_object(Bucket="site", Key="explorer.js")["ContentType"] == "text/javascript"
    assert s3.head_object(Bucket="site", Key="explorer.css")["ContentType"].startswith("text/css")
    # The first config.js points at the stack's API; viewers' credentials are left to configure.
    config = _body(s3, "config.js").decode()
    assert f'"apiBase": "{API_URL}"' in config and '"region": "eu-west-1"' in config
    assert "no viewer credentials configured" in config and done["config"] == "written"
    cloudfront = boto3.client("cloudfront", region_name=REGION)
    invalidations = cloudfront.list_invalidations(DistributionId=site["distribution"])["InvalidationList"]
    assert [i["Id"] for i in invalidations["Items"]] == [done["invalidation"]]


def test_a_later_publish_keeps_the_sites_config_unless_one_is_given(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    s3 = site["s3"]
    assert _publish(capsys)[0] == 0
    configured = b"window.EXPLORER_CONFIG = { apiBase: 'x', credentials: async () => fromPool() };\n"
    s3.put_object(Bucket="site", Key="config.js", Body=configured)

    status, done = _publish(capsys)
    assert (status, done["config"]) == (0, "kept") and "config.js" not in done["uploaded"]
    assert _body(s3, "config.js") == configured

    replacement = tmp_path / "config.js"
    replacement.write_text("window.EXPLORER_CONFIG = {};\n", encoding="utf-8")
    status, done = _publish(capsys, "--config", str(replacement))
    assert (status, done["config"]) == (0, "replaced")
    assert _body(s3, "config.js") == replacement.read_bytes()


def test_a_stack_without_the_explorer_fails_with_exit_1(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="plain",
        TemplateBody=json.dumps({"Resources": {"B": {"Type": "AWS::S3::Bucket"}}}),
    )
    capsys.readouterr()
    assert main(["explorer", "publish", "--stack-name", "plain", "--region", REGION]) == 1
    assert "hosts no lore explorer (deploy it with LoreExplorer=true)" in capsys.readouterr().err
    assert main(["explorer", "publish", "--stack-name", "nope", "--region", REGION]) == 1
    assert "cannot read stack 'nope'" in capsys.readouterr().err
