"""Write (or check) docs/openapi.json, the knowledge API's schema as its resolver describes it, with the
examples of cli/openapi_examples.py.

python -m cli.openapi           # regenerate
python -m cli.openapi --check   # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli.openapi_examples import with_examples
from knowledge.queries.api import openapi_json
from local_runtime.paths import REPO_ROOT

OPENAPI_PATH = REPO_ROOT / "docs" / "openapi.json"
REGENERATE = "python -m cli.openapi"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openapi", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    generated = with_examples(openapi_json())  # with a request and response example for every route
    if args.check:
        current = OPENAPI_PATH.read_text(encoding="utf-8") if OPENAPI_PATH.exists() else ""
        if current != generated:
            print(f"{OPENAPI_PATH} is stale: run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    OPENAPI_PATH.write_text(generated, encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
