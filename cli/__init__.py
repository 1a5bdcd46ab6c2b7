"""The command-line tools: `kb` (the knowledge base) and `fleet` (the GPU fleet), on the local runtime or,
with `--target aws`, on a deployed stack; and `python -m cli.openapi` (docs/openapi.json)."""
