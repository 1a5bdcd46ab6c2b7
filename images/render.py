"""Copies the component documents of images/components/ into images/template.yaml, and checks the copies.

Each `AWS::ImageBuilder::Component` in the template names its document in `Metadata: Source:`; its `Data: |`
block must be that document, verbatim (CloudFormation cannot read a file of the repository, and a component
read from S3 could differ from the one reviewed here).

    python images/render.py --check    # exit 1 when a copy is stale
    python images/render.py --write    # rewrite the copies
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "images" / "template.yaml"
_DATA_INDENT = " " * 8
# A component resource, its Source, and the literal block under its `Data: |` (everything indented deeper).
_COMPONENT = re.compile(
    r"^  (?P<name>\w+):\n    Type: AWS::ImageBuilder::Component\n"
    r"(?P<head>(?:    .*\n|\n)*?)      Data: \|\n(?P<data>(?:(?:        .*)?\n)*)",
    re.MULTILINE,
)
_SOURCE = re.compile(r"^      Source: (?P<path>\S+)$", re.MULTILINE)


class ComponentCopyError(Exception):
    """A component resource names no Source, or a Source that does not exist."""


def _blocks(template: str) -> list[tuple[re.Match[str], Path]]:
    found = []
    for match in _COMPONENT.finditer(template):
        source = _SOURCE.search(match["head"])
        if source is None:
            raise ComponentCopyError(f"{match['name']}: no Metadata Source naming its document")
        path = REPO / source["path"]
        if not path.is_file():
            raise ComponentCopyError(f"{match['name']}: {source['path']} does not exist")
        found.append((match, path))
    return found


def _as_block(text: str) -> str:
    return "".join(_DATA_INDENT + line if line.strip() else "\n" for line in text.splitlines(keepends=True))


def embedded(template: str) -> dict[str, str]:
    """Component logical id -> the document its Data holds, un-indented."""
    return {
        match["name"]: "".join(line.removeprefix(_DATA_INDENT) for line in match["data"].splitlines(True))
        for match, _ in _blocks(template)
    }


def sources(template: str) -> dict[str, Path]:
    return {match["name"]: path for match, path in _blocks(template)}


def stale(template: str) -> list[str]:
    copies = embedded(template)
    return sorted(
        name
        for name, path in sources(template).items()
        if copies[name].rstrip("\n") != path.read_text().rstrip("\n")
    )


def rewrite(template: str) -> str:
    # From the last block back, so earlier spans stay where they are.
    for match, path in reversed(_blocks(template)):
        block = _as_block(path.read_text().rstrip("\n") + "\n")
        # A blank line between resources belongs to what follows, not to the block.
        trailing = match["data"][len(match["data"].rstrip("\n")) + 1 :]
        template = template[: match.start("data")] + block + trailing + template[match.end("data") :]
    return template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true")
    action.add_argument("--write", action="store_true")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    args = parser.parse_args(argv)
    text = args.template.read_text()
    outdated = stale(text)
    if args.check:
        if outdated:
            print(f"{args.template}: stale component copies {outdated}; run with --write", file=sys.stderr)
            return 1
        print(f"{args.template}: component copies current")
        return 0
    if outdated:
        args.template.write_text(rewrite(text))
        print(f"{args.template}: rewrote {', '.join(outdated)}")
    else:
        print(f"{args.template}: component copies already current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
