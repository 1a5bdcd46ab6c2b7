"""GPU host bootstrap: the user data each tier's hosts receive is valid cloud-config, template.yaml holds
exactly the rendered text (once, for every tier), its systemd units verify, bootstrap.sh only configures
(it checks the baked image and starts the units, and any failure is recorded with its reason), and the
agent wheel carries the protobuf package.

cloud-config is checked with `cloud-init schema` when cloud-init is installed (Debian package
cloud-init), and always against the structure the bootstrap relies on (jsonschema). Units are checked
with `systemd-analyze verify` when systemd is present, and always with a strict INI parse.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from host_agent.userdata.render import (
    SHARED_REFERENCES,
    TIER_VARIABLES,
    UserDataError,
    embedded,
    is_stale,
    render,
    rewrite,
)
from local_runtime.template import load_sam_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
# The tiers as template.yaml defines them: logical prefix -> its FleetTierSettings entry.
TIER_SETTINGS: dict[str, dict[str, Any]] = load_sam_template()["Mappings"]["FleetTierSettings"]
TIERS = {settings["Name"]: prefix for prefix, settings in TIER_SETTINGS.items()}
SAMPLE_VALUES = {
    "AWS::Region": "us-east-1",
    "InferenceResultsTopic": "arn:aws:sns:us-east-1:123456789012:results",
    "FleetHostsTable": "fleet-hosts",
    "VllmVersion": "0.11.0",
}
UNITS = (
    "vllm.service",
    "host-agent.service",
    "vllm-health.service",
    "vllm-health.timer",
    "gpu-host-prewarm.service",
)

# What bootstrap.sh and the units rely on, in cloud-init's own terms.
STRUCTURE: dict[str, Any] = {
    "type": "object",
    "required": ["write_files", "runcmd"],
    "properties": {
        "packages": {"type": "array", "items": {"type": "string"}},
        "package_update": {"type": "boolean"},
        "write_files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "content", "permissions"],
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string", "pattern": "^/"},
                    "content": {"type": "string"},
                    "permissions": {"type": "string", "pattern": "^0[0-7]{3}$"},
                },
            },
        },
        "runcmd": {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "string"}}},
    },
}


def _resolved(tier: str) -> str:
    """The text a host of `tier` receives: Fn::Sub with the tier's variables and sample stack names."""
    values = {
        **SAMPLE_VALUES,
        "TierName": tier,
        "HostConcurrency": str(TIER_SETTINGS[TIERS[tier]]["HostConcurrency"]),
        "RequestQueueUrl": f"https://sqs.us-east-1.amazonaws.com/123456789012/{tier}-requests",
        "DeadLetterQueueUrl": f"https://sqs.us-east-1.amazonaws.com/123456789012/{tier}-dlq",
        "ModelId": f"Qwen/{tier}-model",
        "VllmArgs": "--max-model-len 8192 --gpu-memory-utilization 0.9",
    }
    return re.sub(r"\$\{([^}]*)\}", lambda m: values[m.group(1)], render())


def _files(tier: str) -> dict[str, dict[str, str]]:
    document = yaml.safe_load(_resolved(tier))
    return {f["path"]: f for f in document["write_files"]}


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_rendered_user_data_has_the_structure_the_bootstrap_needs(tier: str) -> None:
    text = _resolved(tier)
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    jsonschema.validate(document, STRUCTURE)
    files = _files(tier)
    env = dict(line.split("=", 1) for line in files["/etc/gpu-host/host.env"]["content"].splitlines())
    for key in ("FLEET_TIER", "AWS_REGION", "REQUEST_QUEUE_URL", "DEAD_LETTER_QUEUE_URL", "RESULTS_TOPIC_ARN",
                "HOSTS_TABLE", "METRICS_NAMESPACE", "MODEL_ID"):  # fmt: skip
        assert env[key], key
    assert env["FLEET_TIER"] == tier and env["MODEL_ID"] == f"Qwen/{tier}-model"
    assert env["REQUEST_QUEUE_URL"].endswith(f"{tier}-requests")
    assert {f"/etc/systemd/system/{u}" for u in UNITS} <= set(files)
    assert files["/opt/gpu-host/bootstrap.sh"]["permissions"] == "0755"
    assert document["runcmd"] == [["/opt/gpu-host/bootstrap.sh"]]


@pytest.mark.skipif(
    shutil.which("cloud-init") is None, reason="cloud-init not installed (apt-get install cloud-init)"
)
@pytest.mark.parametrize("tier", sorted(TIERS))
def test_rendered_user_data_passes_cloud_inits_schema(tier: str, tmp_path: Path) -> None:
    path = tmp_path / f"{tier}.yaml"
    path.write_text(_resolved(tier))
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_template_user_data_equals_the_renderer_output() -> None:
    template = TEMPLATE.read_text()
    assert not is_stale(template), "run: .venv/bin/python -m host_agent.userdata --write template.yaml"


def test_every_tier_launch_template_gets_the_rendered_text_and_its_own_values() -> None:
    resources = load_sam_template()["Resources"]
    for prefix in TIERS.values():
        user_data = resources[f"{prefix}LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
        text, variables = user_data["Fn::Base64"]["Fn::Sub"]
        assert text == render()
        assert set(variables) == TIER_VARIABLES
        assert variables["TierName"] == {"Fn::FindInMap": ["FleetTierSettings", prefix, "Name"]}
        assert variables["RequestQueueUrl"] == {"Ref": f"{prefix}RequestQueue"}
        assert variables["ModelId"] == {"Ref": f"{prefix}ModelId"}


def test_rewrite_repairs_a_stale_block_and_nothing_else() -> None:
    template = TEMPLATE.read_text()
    stale = template.replace("HF_HOME=/var/lib/gpu-host/huggingface", "HF_HOME=/tmp", 1)
    assert is_stale(stale)
    assert rewrite(stale) == template
    assert embedded(rewrite(stale)) == render()


def test_scripts_may_not_hold_substitution_syntax(monkeypatch: pytest.MonkeyPatch) -> None:
    import host_agent.userdata.render as module

    original = module._source
    monkeypatch.setattr(
        module, "_source", lambda name: original(name) + ("echo ${HOME}\n" if name == "bootstrap.sh" else "")
    )
    with pytest.raises(UserDataError, match="CloudFormation reference"):
        render()


def test_user_data_references_only_stack_names() -> None:
    names = set(re.findall(r"\$\{([^}]*)\}", render()))
    assert "ModelId" in names and names <= SHARED_REFERENCES | TIER_VARIABLES
    assert not any(n.startswith(tuple(TIERS.values())) for n in names)  # no tier's own resource by name


def test_shell_scripts_parse() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for name in ("/opt/gpu-host/bootstrap.sh", "/opt/gpu-host/vllm-health.sh", "/opt/gpu-host/prewarm.sh"):
        result = subprocess.run(
            [bash, "-n"], input=_files("gold")[name]["content"], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def _strict_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_units_parse_with_their_required_keys() -> None:
    files = _files("silver")
    units = {u: _strict_ini(files[f"/etc/systemd/system/{u}"]["content"]) for u in UNITS}
    vllm, agent = units["vllm.service"], units["host-agent.service"]
    assert vllm["Service"]["Restart"] == "always" and vllm["Service"]["ExecStart"].startswith(
        "/opt/gpu-host/vllm/bin/vllm serve $VLLM_MODEL"
    )
    assert agent["Service"]["ExecStart"] == "/opt/gpu-host/agent/bin/host-agent run"
    assert agent["Service"]["EnvironmentFile"] == "/etc/gpu-host/host.env"
    assert "vllm.service" in agent["Unit"]["After"]  # stops before vLLM: the drain still has a server
    assert int(agent["Service"]["TimeoutStopSec"]) > 90
    assert units["vllm-health.timer"]["Timer"]["OnUnitActiveSec"] == "30s"
    for unit in ("vllm.service", "host-agent.service", "vllm-health.timer"):
        assert "WantedBy" in units[unit]["Install"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    files = _files("bronze")
    for unit in UNITS:
        (unit_dir / unit).write_text(files[f"/etc/systemd/system/{unit}"]["content"])
    for executable in (
        "opt/gpu-host/vllm/bin/vllm",
        "opt/gpu-host/agent/bin/host-agent",
        "opt/gpu-host/vllm-health.sh",
        "opt/gpu-host/prewarm.sh",
    ):
        path = root / executable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", *(str(unit_dir / u) for u in UNITS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # parse warnings leave rc 0; none are allowed


def test_agent_wheel_carries_the_protobuf_package_and_the_console_script(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, str(REPO / "gpu_hosts" / "build_wheel.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    wheel = Path(build.stdout.strip())
    names = zipfile.ZipFile(wheel).namelist()
    assert "messages/fleet_pb2.py" in names and "host_agent/cli.py" in names
    assert not any(n.startswith(("host_agent/fakes/", "host_agent/userdata/")) for n in names)
    entry_points = zipfile.ZipFile(wheel).read("gpu_host_agent-0.1.0.dist-info/entry_points.txt").decode()
    assert "host-agent = host_agent.cli:main" in entry_points
    images = (REPO / "images" / "template.yaml").read_text()
    default_key = re.search(r"HostAgentWheelKey:\n(?:    .*\n)*?    Default: (\S+)", images)
    assert default_key and wheel.name == Path(default_key[1]).name  # the image template's default key


# ---------------------------------------------------------------- bootstrap.sh: configure, never install

INSTALLERS = ("pip install", "uv venv", "uv pip", "apt-get", "snapshot_download", "s3://", "huggingface-cli")


def test_the_user_data_installs_and_downloads_nothing() -> None:
    text = render()
    document = yaml.safe_load(_resolved("gold"))
    assert "packages" not in document and "package_update" not in document  # no apt at boot
    assert [i for i in INSTALLERS if i in text] == []
    vllm_env = _files("gold")["/etc/gpu-host/vllm.env"]["content"]
    assert "HF_HUB_OFFLINE=1" in vllm_env.splitlines()  # the weights are on the image: never the network
    assert len(text.encode()) < 12 * 1024  # well under EC2's 16 KiB


class Sandbox:
    """A host's file system under a temporary root, with the rendered user data written into it, a host agent
    that runs the real `check-image` (and records `boot-failed`), and stubs of systemctl, curl and python3
    that record their calls. bootstrap.sh reads GPU_HOST_ROOT for exactly this."""

    def __init__(self, root: Path, tier: str = "gold") -> None:
        self.root, self.tier = root, tier
        self.bin = root / "stub-bin"
        for path, spec in _files(tier).items():
            self.write(path, spec["content"], int(spec["permissions"], 8))
        (root / "var/log").mkdir(parents=True)
        self.model = f"Qwen/{tier}-model"
        snapshot = f"/var/lib/gpu-host/huggingface/hub/models--Qwen--{tier}-model/snapshots/0123abcd"
        self.write(f"{snapshot}/config.json", "{}")
        self.write(f"{snapshot}/model.safetensors", "weights")
        self.write("/opt/gpu-host/vllm/bin/vllm", "#!/bin/sh\n", 0o755)
        self.write(
            "/opt/gpu-host/agent/bin/host-agent",
            "#!/bin/sh\n"
            'for a in "$@"; do [ "$a" = boot-failed ] && { printf "%s\\n" "$@" > "$GPU_HOST_ROOT/boot-failed.args"; exit 0; }; done\n'
            f'exec {sys.executable} -m host_agent "$@"\n',
            0o755,
        )
        self.manifest = {
            "tier": tier,
            "model_id": self.model,
            "model_revision": "0123abcd",
            "model_path": snapshot,
            "vllm_version": SAMPLE_VALUES["VllmVersion"],
            "agent_wheel": "gpu_host_agent-0.1.0-py3-none-any.whl",
            "built_at": "2025-01-01T00:00:00Z",
        }
        self.write_manifest()
        for stub, body in {
            "systemctl": 'echo "$*" >> "$GPU_HOST_ROOT/systemctl.log"\n'
            'case "$*" in "enable --now"*) exit "$(cat "$GPU_HOST_ROOT/enable.rc" 2>/dev/null || echo 0)";; esac\n',
            "curl": 'case "$*" in *api/token*) echo token;; *instance-id*) echo i-0123456789abcdef0;; esac\n',
            "python3": 'printf "%s\\n" "$@" > "$GPU_HOST_ROOT/python3.args"; cat > "$GPU_HOST_ROOT/python3.stdin"\n',
        }.items():
            self.write(f"/stub-bin/{stub}", "#!/bin/sh\n" + body, 0o755)

    def write(self, path: str, content: str, mode: int = 0o644) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)

    def write_manifest(self, **changes: str) -> None:
        self.write("/etc/gpu-host/image.json", json.dumps({**self.manifest, **changes}))

    def run(self) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "GPU_HOST_ROOT": str(self.root),
            "HOME": str(self.root),
        }
        script = self.root / "opt/gpu-host/bootstrap.sh"
        return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)

    def read(self, name: str) -> str:
        path = self.root / name
        return path.read_text() if path.exists() else ""

    def recorded_reason(self) -> str:
        args = self.read("boot-failed.args").splitlines()
        assert args[-3:-1] == ["boot-failed", "--reason"], args
        return args[-1]


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "host"
    root.mkdir()
    return Sandbox(root)


def test_bootstrap_on_a_matching_image_starts_the_units_and_reports_nothing(sandbox: Sandbox) -> None:
    result = sandbox.run()
    assert result.returncode == 0, result.stdout + result.stderr
    calls = sandbox.read("systemctl.log").splitlines()
    assert calls == [
        "daemon-reload",
        "start --no-block gpu-host-prewarm.service",
        "enable --now vllm.service vllm-health.timer host-agent.service",
    ]
    assert sandbox.read("boot-failed.args") == ""
    assert "image ok: tier gold, Qwen/gold-model@0123abcd" in sandbox.read("var/log/gpu-host-bootstrap.log")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"vllm_version": "0.10.2"}, "image holds vLLM 0.10.2, the stack asks for 0.11.0"),
        ({"model_id": "Qwen/other"}, "image holds model Qwen/other, the tier serves Qwen/gold-model"),
        ({"tier": "silver"}, "image is for tier silver, this host is gold"),
    ],
)
def test_bootstrap_on_a_mismatching_image_fails_with_the_reason_and_starts_nothing(
    sandbox: Sandbox, changes: dict[str, str], expected: str
) -> None:
    sandbox.write_manifest(**changes)
    result = sandbox.run()
    assert result.returncode == 1
    reason = sandbox.recorded_reason()
    assert reason.startswith("bootstrap failed while checking the image: ") and expected in reason
    calls = sandbox.read("systemctl.log")
    assert "enable" not in calls and "stop host-agent.service vllm.service" in calls


def test_bootstrap_on_an_image_without_weights_fails(sandbox: Sandbox) -> None:
    (sandbox.root / sandbox.manifest["model_path"].lstrip("/") / "model.safetensors").unlink()
    assert sandbox.run().returncode == 1
    assert "has no weights" in sandbox.recorded_reason()


def test_bootstrap_on_a_plain_ami_records_the_failure_without_the_agent(sandbox: Sandbox) -> None:
    """No manifest and no agent (the Deep Learning AMI itself): the AMI's own python3 and boto3 record it."""
    (sandbox.root / "etc/gpu-host/image.json").unlink()
    shutil.rmtree(sandbox.root / "opt/gpu-host/agent")
    result = sandbox.run()
    assert result.returncode == 1
    args = sandbox.read("python3.args").splitlines()
    assert args[:2] == ["-", "i-0123456789abcdef0"]
    assert (
        args[2].startswith("bootstrap failed while checking the image: no ")
        and "not a gpu-host image" in args[2]
    )
    assert "import boto3" in sandbox.read("python3.stdin")


def test_an_unexpected_error_is_trapped_and_recorded_with_its_step(sandbox: Sandbox) -> None:
    (sandbox.root / "enable.rc").write_text("3")
    assert sandbox.run().returncode == 1
    assert re.fullmatch(
        r"bootstrap failed while starting the units: exit status 3 at line \d+", sandbox.recorded_reason()
    )
