"""Renders files/cloud-config.yaml into the user data of template.yaml's per-tier launch template, and keeps
the template's copy equal to it.

template.yaml defines the tiers once (`Fn::ForEach::FleetTier`), so there is one user data text for every
tier: the body of a CloudFormation `Fn::Sub` whose variable map gives the tier's own values
(`TIER_VARIABLES`: name, host concurrency, queues, model); every other `${Name}` resolves to the stack's
parameters and resources at deploy time (`SHARED_REFERENCES`). Included scripts and units must not contain
`${` at all, so nothing in them can be taken for a reference (shell variables there are written `$NAME`).

    python -m host_agent.userdata --check template.yaml   # exit 1 when the UserData block is stale
    python -m host_agent.userdata --write template.yaml   # rewrite it
    python -m host_agent.userdata --print                 # the text
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import resources
from pathlib import Path

MAX_USER_DATA_BYTES = 16 * 1024  # EC2's limit before base64
_INCLUDE = re.compile(r"^(?P<indent>[ ]*)\{\{include:(?P<name>[A-Za-z0-9_.-]+)\}\}$", re.MULTILINE)
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_LAUNCH_TEMPLATE = "      ${Tier}LaunchTemplate:"
_HEADER = re.compile(
    r"^            UserData:\n              Fn::Base64: !Sub\n                - \|\n", re.MULTILINE
)
_BLOCK_INDENT = " " * 18

# The Fn::Sub variables template.yaml's launch template sets from the tier (its FleetTierSettings mapping
# entry and its <Tier>... parameters and resources).
TIER_VARIABLES = frozenset(
    {"TierName", "HostConcurrency", "RequestQueueUrl", "DeadLetterQueueUrl", "ModelId", "VllmArgs"}
)
# What the user data may reference besides: the stack's parameters and resources shared by every tier.
SHARED_REFERENCES = frozenset(
    {
        "AWS::Region",
        "InferenceResultsTopic",
        "FleetHostsTable",
        "VllmVersion",
    }
)


class UserDataError(Exception):
    """A source file breaks a rule of the renderer, or template.yaml lacks the UserData block."""


def _source(name: str) -> str:
    return resources.files("host_agent.userdata").joinpath("files", name).read_text()


def render() -> str:
    """The user data text of every tier's hosts, as template.yaml's `Fn::Sub` body."""

    def include(match: re.Match[str]) -> str:
        name, indent = match.group("name"), match.group("indent")
        text = _source(name)
        if "${" in text:
            raise UserDataError(f"{name}: '${{' would be read as a CloudFormation reference; write $NAME")
        return "\n".join(indent + line if line else "" for line in text.rstrip("\n").split("\n"))

    text = _INCLUDE.sub(include, _source("cloud-config.yaml"))
    unknown = set(_REFERENCE.findall(text)) - SHARED_REFERENCES - TIER_VARIABLES
    if unknown:
        raise UserDataError(f"references outside the stack's names: {sorted(unknown)}")
    if len(text.encode()) > MAX_USER_DATA_BYTES:
        raise UserDataError(f"{len(text.encode())} bytes of user data, over EC2's 16 KiB")
    return text.rstrip("\n") + "\n"


def _block_span(template: str) -> tuple[int, int]:
    """Character span of the literal block under the launch template's `UserData: Fn::Base64: !Sub - |`."""
    resource = template.find(_LAUNCH_TEMPLATE + "\n")
    if resource < 0:
        raise UserDataError(f"template has no {_LAUNCH_TEMPLATE.strip()}")
    found = _HEADER.search(template, resource)
    following = re.compile(r"^      \S", re.MULTILINE).search(template, resource + len(_LAUNCH_TEMPLATE) + 1)
    if found is None or (following is not None and found.start() > following.start()):
        raise UserDataError("the launch template has no `UserData: Fn::Base64: !Sub` block")
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


def embedded(template: str) -> str:
    """The user data text template.yaml holds, un-indented."""
    start, end = _block_span(template)
    return "".join(line.removeprefix(_BLOCK_INDENT) for line in template[start:end].splitlines(keepends=True))


def is_stale(template: str) -> bool:
    return embedded(template) != render()


def rewrite(template: str) -> str:
    start, end = _block_span(template)
    return template[:start] + _as_block(render()) + template[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_agent.userdata", description=__doc__.split("\n\n")[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", type=Path, metavar="TEMPLATE")
    action.add_argument("--write", type=Path, metavar="TEMPLATE")
    action.add_argument("--print", action="store_true")
    args = parser.parse_args(argv)
    if args.print:
        sys.stdout.write(render())
        return 0
    path: Path = args.check or args.write
    template = path.read_text()
    stale = is_stale(template)
    if args.check:
        if stale:
            print(f"{path}: UserData out of date; run with --write", file=sys.stderr)
            return 1
        print(f"{path}: UserData current")
        return 0
    if stale:
        path.write_text(rewrite(template))
        print(f"{path}: UserData rewritten")
    else:
        print(f"{path}: UserData already current")
    return 0
