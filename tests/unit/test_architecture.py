"""The import rules of docs/architecture.md, checked on the source: a module that crosses a line fails here.

Imports are read with `ast` (nothing is imported); an import inside `if TYPE_CHECKING:` counts for the
cycle check but not for the runtime rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Where each top-level package lives.
PACKAGE_ROOTS = {
    "knowledge": REPO / "layers" / "knowledge" / "knowledge",
    "fleet": REPO / "layers" / "fleet" / "fleet",
    "messages": REPO / "layers" / "messages" / "messages",
    "host_agent": REPO / "gpu_hosts" / "host_agent",
    "knowledge_client": REPO / "knowledge_client",
    "local_runtime": REPO / "local_runtime",
    "fleet_sim": REPO / "fleet_sim",
    "cli": REPO / "cli",
}
FIRST_PARTY = frozenset(PACKAGE_ROOTS) | {"tests", "bench"}
# What talks to the outside world: allowed only in adapters and composition roots (services.py).
DRIVERS = frozenset(
    {"boto3", "botocore", "psycopg", "psycopg_pool", "pgvector", "pynvml", "urllib.request", "http.client"}
)
# First-party packages each package may import (besides itself).
ALLOWED = {
    "messages": set(),
    "knowledge": {"messages"},
    "fleet": set(),
    "host_agent": {"messages"},
    "knowledge_client": {"knowledge"},
    "local_runtime": {"knowledge", "fleet", "messages"},
    "fleet_sim": {"fleet", "local_runtime"},
    "cli": {"knowledge", "fleet", "messages", "knowledge_client", "local_runtime", "fleet_sim", "host_agent"},
}
# The value modules adapters may build on; never the domain modules that use the adapters.
ADAPTER_MAY_IMPORT = {
    "knowledge": (
        "knowledge.adapters",
        "knowledge.errors",
        "knowledge.model",
        "knowledge.ports",
        "knowledge.config",
        "knowledge.schema",
        "knowledge.queries.models",
        "knowledge.story_events.model",
    ),
    "fleet": (
        "fleet.adapters",
        "fleet.errors",
        "fleet.config",
        "fleet.policy",
        "fleet.capacity",
        "fleet.ports",
    ),
    "host_agent": (
        "host_agent.adapters",
        "host_agent.errors",
        "host_agent.ports",
        "host_agent.codec",
        "host_agent.drain",
        "host_agent.gpu",
        "host_agent.metric_data",
    ),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    runtime: bool  # False inside `if TYPE_CHECKING:`


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def _imports(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, id(node) not in type_only)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield Import(module, node.module, id(node) not in type_only)
            for alias in node.names:  # `from knowledge.adapters import postgres` names a module too
                yield Import(module, f"{node.module}.{alias.name}", id(node) not in type_only)


def _package_imports() -> list[Import]:
    found: list[Import] = []
    for package, root in PACKAGE_ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            if "_pb2" not in path.name:
                found.extend(_imports(_module_name(package, root, path), path))
    return found


def _handler_imports() -> list[tuple[str, Import]]:
    return [
        (folder.name, imp)
        for folder in sorted((REPO / "functions").iterdir())
        if (folder / "app.py").is_file()
        for imp in _imports(f"functions.{folder.name}", folder / "app.py")
    ]


IMPORTS = _package_imports()
MODULES = {i.module for i in IMPORTS}


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_driver(target: str) -> bool:
    return any(target == d or target.startswith(d + ".") for d in DRIVERS)


def _is_adapter_or_root(module: str) -> bool:
    parts = module.split(".")
    return "adapters" in parts or parts[-1] == "services" or module.startswith("host_agent.fakes")


def test_packages_import_only_what_their_layer_allows() -> None:
    crossings = [
        f"{i.module} imports {i.target}"
        for i in IMPORTS
        if _top(i.target) in FIRST_PARTY
        and _top(i.target) != _top(i.module)
        and _top(i.target) not in ALLOWED[_top(i.module)]
    ]
    assert crossings == []


def test_only_adapters_and_composition_roots_speak_to_aws_databases_and_devices() -> None:
    domain = ("knowledge", "fleet", "host_agent")
    offenders = sorted(
        {
            f"{i.module} imports {i.target}"
            for i in IMPORTS
            if i.runtime
            and _top(i.module) in domain
            and _is_driver(i.target)
            and not _is_adapter_or_root(i.module)
        }
    )
    assert offenders == []


@pytest.mark.parametrize("package", sorted(ADAPTER_MAY_IMPORT))
def test_adapters_build_on_value_modules_only(package: str) -> None:
    allowed = ADAPTER_MAY_IMPORT[package]
    offenders = [
        f"{i.module} imports {i.target}"
        for i in IMPORTS
        if i.module.startswith(f"{package}.adapters")
        and _top(i.target) == package
        and i.target in MODULES
        and not any(i.target == a or i.target.startswith(a + ".") for a in allowed)
    ]
    assert offenders == []


def test_handlers_import_one_domain_and_no_tool() -> None:
    for folder, imp in _handler_imports():
        top = _top(imp.target)
        assert top not in {"cli", "local_runtime", "fleet_sim", "knowledge_client", "host_agent", "tests"}, (
            f"functions/{folder} imports {imp.target}"
        )
    domains: dict[str, set[str]] = {}
    for folder, imp in _handler_imports():
        if _top(imp.target) in {"knowledge", "fleet"}:
            domains.setdefault(folder, set()).add(_top(imp.target))
    assert all(len(d) == 1 for d in domains.values()), domains
    assert domains["fleet_controller"] == {"fleet"} and domains["knowledge_api"] == {"knowledge"}


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.module:
            graph[i.module].add(i.target)
    # A package's __init__ may import its own modules; its modules importing it is not a cycle of code.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycle = [*visiting[visiting.index(module) :], module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        visiting.append(module)
        for target in sorted(graph[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_rules_see_a_crossing() -> None:
    """The checks above are not vacuous: a domain module speaking boto3 is caught."""
    fake = Import("knowledge.ingestion.steps", "boto3", True)
    assert _is_driver(fake.target) and not _is_adapter_or_root(fake.module)
    assert "cli" not in ALLOWED["knowledge"] and len(IMPORTS) > 300
