"""The image check every host runs at boot (host_agent.image, `host-agent check-image`): a manifest that
names another tier, model or vLLM release, or an image that lacks the weights or the programs the units
start, is a reason to fail the bootstrap; a matching image passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host_agent.cli import main
from host_agent.errors import ImageError
from host_agent.image import ExpectedImage, ImageManifest, mismatches, read_manifest

SNAPSHOT = "/var/lib/gpu-host/huggingface/hub/models--Qwen--Qwen2.5-7B-Instruct/snapshots/a09a3545"
MANIFEST = {
    "tier": "silver",
    "model_id": "Qwen/Qwen2.5-7B-Instruct",
    "model_revision": "a09a3545",
    "model_path": SNAPSHOT,
    "vllm_version": "0.11.0",
    "agent_wheel": "gpu_host_agent-0.1.0-py3-none-any.whl",
    "built_at": "2025-01-01T00:00:00Z",
    "parent_image": "ami-0123456789abcdef0",  # extra keys are kept in the file, ignored by the check
}
EXPECTED = ExpectedImage(tier="silver", model_id="Qwen/Qwen2.5-7B-Instruct", vllm_version="0.11.0")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """An image's file system: manifest, weights and the two programs the units run."""
    for path, content in {
        "etc/gpu-host/image.json": json.dumps(MANIFEST),
        f"{SNAPSHOT[1:]}/config.json": "{}",
        f"{SNAPSHOT[1:]}/model-00001-of-00004.safetensors": "w",
        "opt/gpu-host/vllm/bin/vllm": "#!/bin/sh\n",
        "opt/gpu-host/agent/bin/host-agent": "#!/bin/sh\n",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    return tmp_path


def test_a_matching_image_has_no_mismatches(image: Path) -> None:
    manifest = read_manifest(image / "etc/gpu-host/image.json")
    assert manifest.model_revision == "a09a3545"
    assert mismatches(manifest, EXPECTED, image) == []


def test_each_difference_is_its_own_reason(image: Path) -> None:
    manifest = ImageManifest.parse(json.dumps({**MANIFEST, "tier": "gold", "vllm_version": "0.10.2"}))
    assert mismatches(manifest, EXPECTED, image) == [
        "image is for tier gold, this host is silver",
        "image holds vLLM 0.10.2, the stack asks for 0.11.0",
    ]
    other_model = ExpectedImage("silver", "Qwen/Qwen2.5-14B-Instruct-AWQ", "0.11.0")
    assert mismatches(read_manifest(image / "etc/gpu-host/image.json"), other_model, image) == [
        "image holds model Qwen/Qwen2.5-7B-Instruct, the tier serves Qwen/Qwen2.5-14B-Instruct-AWQ"
    ]


def test_missing_weights_and_programs_are_reasons(image: Path) -> None:
    manifest = read_manifest(image / "etc/gpu-host/image.json")
    next((image / SNAPSHOT[1:]).glob("*.safetensors")).unlink()
    (image / "opt/gpu-host/vllm/bin/vllm").unlink()
    assert mismatches(manifest, EXPECTED, image) == [
        f"model snapshot {SNAPSHOT} has no weights",
        "/opt/gpu-host/vllm/bin/vllm is missing",
    ]
    (image / SNAPSHOT[1:] / "config.json").unlink()
    assert f"model snapshot {SNAPSHOT} has no config.json" in mismatches(manifest, EXPECTED, image)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({**MANIFEST, "vllm_version": ""}), "lacks vllm_version"),
        (
            json.dumps({k: v for k, v in MANIFEST.items() if k not in ("tier", "built_at")}),
            "lacks built_at, tier",
        ),
    ],
)
def test_an_unusable_manifest_is_an_image_error(text: str, error: str) -> None:
    with pytest.raises(ImageError, match=error):
        ImageManifest.parse(text)


def test_no_manifest_means_not_a_gpu_host_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a gpu-host image"):
        read_manifest(tmp_path / "image.json")


def _check(image: Path, *extra: str) -> list[str]:
    return ["check-image", "--manifest", str(image / "etc/gpu-host/image.json"), "--root", str(image), *extra]


def test_check_image_reads_what_to_expect_from_the_bootstrap_environment(
    image: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEET_TIER", "silver")
    monkeypatch.setenv("MODEL_ID", "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("VLLM_VERSION", "0.11.0")
    assert main(_check(image)) == 0
    assert capsys.readouterr().out.startswith(
        "image ok: tier silver, Qwen/Qwen2.5-7B-Instruct@a09a3545, vLLM 0.11.0"
    )

    monkeypatch.setenv("VLLM_VERSION", "0.12.0")
    assert main(_check(image)) == 1
    assert capsys.readouterr().err == "image holds vLLM 0.11.0, the stack asks for 0.12.0\n"
    assert main(_check(image, "--vllm-version", "0.11.0")) == 0  # an argument wins over the environment


def test_check_image_without_expectations_or_manifest_fails(
    image: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("FLEET_TIER", "MODEL_ID", "VLLM_VERSION"):
        monkeypatch.delenv(key, raising=False)
    assert main(_check(image, "--tier", "silver")) == 2
    assert "model_id, vllm_version not given" in capsys.readouterr().err
    (image / "etc/gpu-host/image.json").unlink()
    args = _check(image, "--tier", "silver", "--model", "m", "--vllm-version", "0.11.0")
    assert main(args) == 2  # an ImageError: bootstrap.sh records its message as the reason
