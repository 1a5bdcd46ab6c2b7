"""Renders files/cloud-config.yaml for each tier and keeps template.yaml's launch template UserData equal
to it.

The output is the body of a CloudFormation `Fn::Sub`: `${Name}` references resolve to the stack's
parameters and resources at deploy time. Included scripts and units must not contain `${` at all, so
nothing in them can be taken for a reference (shell variables there are written `$NAME`).

    python -m host_agent.userdata --check template.yaml   # exit 1 when a UserData block is stale
    python -m host_agent.userdata --write template.yaml   # rewrite the three blocks
    python -m host_agent.userdata --print gold            # one tier's text
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MAX_USER_DATA_BYTES = 16 * 1024  # EC2's limit before base64
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
_INCLUDE = re.compile(r"^(?P<indent>[ ]*)\{\{include:(?P<name>[A-Za-z0-9_.-]+)\}\}$", re.MULTILINE)
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_BLOCK_INDENT = " " * 12


@dataclass(frozen=True)
class TierUserData:
    tier: str
    logical_prefix: str  # Gold → GoldRequestQueue, GoldModelId, GoldLaunchTemplate ...
    max_concurrency: int

    @property
    def launch_template(self) -> str:
        return f"{self.logical_prefix}LaunchTemplate"

    def placeholders(self) -> dict[str, str]:
        p = self.logical_prefix
        return {
            "tier": self.tier,
            "request_queue_url": f"${{{p}RequestQueue}}",
            "dead_letter_queue_url": f"${{{p}RequestDeadLetterQueue}}",
            "model_id": f"${{{p}ModelId}}",
            "vllm_args": f"${{{p}VllmArgs}}",
            "max_concurrency": str(self.max_concurrency),
        }


# Concurrency per host: small fast model on gold, fewer long generations on the larger models.
TIERS = (
    TierUserData("gold", "Gold", 16),
    TierUserData("silver", "Silver", 8),
    TierUserData("bronze", "Bronze", 4),
)
# What the user data may reference: the stack's parameters and resources it was written for.
SHARED_REFERENCES = frozenset(
    {
        "AWS::Region",
        "InferenceResultsTopic",
        "FleetHostsTable",
        "VllmVersion",
        "HostAgentArtifactsBucket",
        "HostAgentWheelKey",
    }
)


class UserDataError(Exception):
    """A source file breaks a rule of the renderer, or template.yaml lacks a UserData block."""


def _source(name: str) -> str:
    return resources.files("host_agent.userdata").joinpath("files", name).read_text()


def allowed_references(spec: TierUserData) -> frozenset[str]:
    p = spec.logical_prefix
    return SHARED_REFERENCES | {
        f"{p}RequestQueue",
        f"{p}RequestDeadLetterQueue",
        f"{p}ModelId",
        f"{p}VllmArgs",
    }


def render(tier: str) -> str:
    spec = next((t for t in TIERS if t.tier == tier), None)
    if spec is None:
        raise UserDataError(f"unknown tier {tier!r}")

    def include(match: re.Match[str]) -> str:
        name, indent = match.group("name"), match.group("indent")
        text = _source(name)
        if "${" in text:
            raise UserDataError(f"{name}: '${{' would be read as a CloudFormation reference; write $NAME")
        return "\n".join(indent + line if line else "" for line in text.rstrip("\n").split("\n"))

    text = _INCLUDE.sub(include, _source("cloud-config.yaml"))
    values = spec.placeholders()

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise UserDataError(f"cloud-config.yaml: unknown placeholder {match.group(0)}")
        return values[match.group(1)]

    text = _PLACEHOLDER.sub(fill, text)
    unknown = set(_REFERENCE.findall(text)) - allowed_references(spec)
    if unknown:
        raise UserDataError(f"{tier}: references outside the stack's names: {sorted(unknown)}")
    if len(text.encode()) > MAX_USER_DATA_BYTES:
        raise UserDataError(f"{tier}: {len(text.encode())} bytes of user data, over EC2's 16 KiB")
    return text.rstrip("\n") + "\n"


def _block_span(template: str, spec: TierUserData) -> tuple[int, int]:
    """Character span of the literal block under `<Tier>LaunchTemplate: ... UserData: Fn::Base64: !Sub |`."""
    resource = re.search(rf"^  {spec.launch_template}:\n", template, re.MULTILINE)
    if resource is None:
        raise UserDataError(f"template has no {spec.launch_template}")
    header = re.compile(r"^        UserData:\n          Fn::Base64: !Sub \|\n", re.MULTILINE)
    found = header.search(template, resource.end())
    following = re.compile(r"^  \S", re.MULTILINE).search(template, resource.end())
    if found is None or (following is not None and found.start() > following.start()):
        raise UserDataError(f"{spec.launch_template} has no `UserData: Fn::Base64: !Sub |` block")
    end = found.end()
    for line in template[found.end() :].splitlines(keepends=True):
        if line.strip() and not line.startswith(_BLOCK_INDENT):
            break
        end += len(line)
    # Trailing blank lines belong to what follows, not to the block.
    while template[found.end() : end].endswith("\n\n"):
        end -= 1
    return found.end(), end


def _as_block(text: str) -> str:
    return "".join(_BLOCK_INDENT + line if line.strip() else "\n" for line in text.splitlines(keepends=True))


def embedded(template: str, tier: str) -> str:
    """The user data text template.yaml holds for a tier, un-indented."""
    spec = next(t for t in TIERS if t.tier == tier)
    start, end = _block_span(template, spec)
    return "".join(line.removeprefix(_BLOCK_INDENT) for line in template[start:end].splitlines(keepends=True))


def stale_tiers(template: str) -> list[str]:
    return [t.tier for t in TIERS if embedded(template, t.tier) != render(t.tier)]


def rewrite(template: str) -> str:
    for spec in TIERS:
        start, end = _block_span(template, spec)
        template = template[:start] + _as_block(render(spec.tier)) + template[end:]
    return template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_agent.userdata", description=__doc__.split("\n\n")[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", type=Path, metavar="TEMPLATE")
    action.add_argument("--write", type=Path, metavar="TEMPLATE")
    action.add_argument("--print", choices=[t.tier for t in TIERS], metavar="TIER")
    args = parser.parse_args(argv)
    if args.print:
        sys.stdout.write(render(args.print))
        return 0
    path: Path = args.check or args.write
    template = path.read_text()
    stale = stale_tiers(template)
    if args.check:
        if stale:
            print(f"{path}: UserData out of date for {', '.join(stale)}; run with --write", file=sys.stderr)
            return 1
        print(f"{path}: UserData current for every tier")
        return 0
    if stale:
        path.write_text(rewrite(template))
        print(f"{path}: UserData rewritten for {', '.join(stale)}")
    else:
        print(f"{path}: UserData already current")
    return 0
