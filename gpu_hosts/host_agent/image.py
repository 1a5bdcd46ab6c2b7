"""The image a host boots from (images/template.yaml bakes one per tier) and the check bootstrap.sh runs
before it starts anything: the image must hold this tier's model, the vLLM release the stack names and the
programs the units start. A host that would serve another model or release fails its bootstrap instead.

The manifest (`/etc/gpu-host/image.json`) is written at build time by images/components/gpu-host-manifest.yaml
from what was installed, not from what was asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from host_agent.errors import ImageError

MANIFEST_PATH = Path("/etc/gpu-host/image.json")
# What the launch template's units run; the image must hold both.
VLLM_EXECUTABLE = PurePosixPath("/opt/gpu-host/vllm/bin/vllm")
AGENT_EXECUTABLE = PurePosixPath("/opt/gpu-host/agent/bin/host-agent")
_WEIGHTS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class ImageManifest:
    tier: str
    model_id: str
    model_revision: str  # the Hugging Face commit the snapshot holds
    model_path: str  # the snapshot directory under HF_HOME
    vllm_version: str
    agent_wheel: str
    built_at: str

    @classmethod
    def parse(cls, text: str) -> ImageManifest:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImageError(f"image manifest is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ImageError("image manifest is not a JSON object")
        names = cls.__dataclass_fields__
        missing = sorted(n for n in names if not isinstance(document.get(n), str) or not document[n])
        if missing:
            raise ImageError(f"image manifest lacks {', '.join(missing)}")
        return cls(**{n: document[n] for n in names})


def read_manifest(path: Path = MANIFEST_PATH) -> ImageManifest:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImageError(f"no image manifest at {path} ({exc.strerror}): not a gpu-host image") from exc
    return ImageManifest.parse(text)


@dataclass(frozen=True)
class ExpectedImage:
    """What this host's stack asks for: its tier, the tier's model and the stack's vLLM release."""

    tier: str
    model_id: str
    vllm_version: str


def mismatches(manifest: ImageManifest, expected: ExpectedImage, root: Path = Path("/")) -> list[str]:
    """Why this image cannot serve this host, one line per reason; empty when it can. `root` is where the
    image's file system is (a test's sandbox; `/` on a host)."""

    def on_disk(path: str | PurePosixPath) -> Path:
        return root / PurePosixPath(path).relative_to("/")

    problems = []
    if manifest.tier != expected.tier:
        problems.append(f"image is for tier {manifest.tier}, this host is {expected.tier}")
    if manifest.model_id != expected.model_id:
        problems.append(f"image holds model {manifest.model_id}, the tier serves {expected.model_id}")
    if manifest.vllm_version != expected.vllm_version:
        problems.append(
            f"image holds vLLM {manifest.vllm_version}, the stack asks for {expected.vllm_version}"
        )
    snapshot = on_disk(manifest.model_path)
    if not (snapshot / "config.json").is_file():
        problems.append(f"model snapshot {manifest.model_path} has no config.json")
    elif not any(any(snapshot.glob(pattern)) for pattern in _WEIGHTS):
        problems.append(f"model snapshot {manifest.model_path} has no weights")
    for executable in (VLLM_EXECUTABLE, AGENT_EXECUTABLE):
        if not on_disk(executable).is_file():
            problems.append(f"{executable} is missing")
    return problems
