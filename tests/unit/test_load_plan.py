"""The load test's plan against the sample worlds and the stack names, and how bench/load_test.py reads
locust's results. Served end to end in tests/functional/test_load_test.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from knowledge.ingestion.parsing import parse_document
from tests.bench_modules import load_bench_module

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"


plan = load_bench_module("load_plan")
load_test = load_bench_module("load_test")


def _declared_concepts(world: str) -> set[str]:
    names: set[str] = set()
    for path in sorted((SAMPLES / world).iterdir()):
        parsed = parse_document(path.read_bytes(), f"incoming/{world}/{path.name}")
        assert parsed.world in (None, world), path
        names |= {c.name for c in parsed.concepts}
    return names


def test_every_world_of_the_plan_is_a_sample_world() -> None:
    assert {w.world_id for w in plan.WORLDS} == {p.name for p in SAMPLES.iterdir() if p.is_dir()}


@pytest.mark.parametrize("world", plan.WORLDS, ids=lambda w: w.world_id)
def test_every_concept_and_query_of_the_plan_is_in_the_world_s_documents(world: Any) -> None:
    declared = _declared_concepts(world.world_id)
    concepts, queries = world.concepts, world.queries
    assert set(concepts) <= declared, set(concepts) - declared
    assert concepts and queries
    # A question is about the world: it names one of the concepts its documents declare.
    for query in queries:
        assert any(name.lower() in query.lower() for name in declared), query


def test_only_a_200_is_an_answer() -> None:
    assert plan.failure_reason(200, "{}") is None
    for status in (404, 403, 422, 429, 500, 503):
        reason = plan.failure_reason(status, '{"code": "concept_not_found"}')
        assert reason is not None and reason.startswith(f"{status}:")


def test_requests_are_world_scoped_and_percent_encode_concept_names() -> None:
    ember = plan.selected_worlds("emberfall")[0]
    asked = plan.history(ember, "Queen Ysolde Varr")
    assert asked.path == "/worlds/emberfall/concepts/Queen%20Ysolde%20Varr/history"
    graph = plan.relationships(ember, 7)
    assert graph.path_and_query == "/concepts/7/relationships?world_id=emberfall&depth=2"
    planned = plan.every_request(ember, dict.fromkeys(ember.concepts, 1))
    assert {p.name for p in planned} == set(plan.ROUTE_NAMES.values())
    bodies = [p.body for p in planned if p.body is not None]
    assert bodies and all(b["world_id"] == "emberfall" for b in bodies)


def test_relationships_wait_for_a_concept_id_learnt_from_a_history() -> None:
    import random

    ember = plan.WORLDS[0]
    rng = random.Random(3)
    assert plan.pick("relationships", ember, rng, {}).name == plan.ROUTE_NAMES["history"]
    known = {"Hearth-Lords": 12}
    assert plan.pick("relationships", ember, rng, known).path == "/concepts/12/relationships"
    with pytest.raises(ValueError, match="unknown task"):
        plan.pick("dance", ember, rng, known)
    with pytest.raises(ValueError, match="no load plan for world"):
        plan.selected_worlds("emberfall,atlantis")


def test_the_stack_names_are_samconfig_s() -> None:
    samconfig = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))
    stacks = {
        env["global"]["parameters"]["stack_name"] for env in samconfig.values() if isinstance(env, dict)
    }
    assert plan.DEFAULT_STACK_NAME in stacks
    locustfile = (REPO / "bench" / "locustfile.py").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"--stack-name[ =]([A-Za-z][\w-]*)", locustfile + readme)
    assert plan.DEFAULT_STACK_NAME in locustfile
    assert named and set(named) <= stacks | {"NAME"}, set(named) - stacks


STATS_CSV = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,\
98%,99%,99.9%,99.99%,100%
POST,POST /search,120,0,41,45.2,20,160,900,12.0,0.0,41,46,50,55,70,90,120,150,160,160,160
GET,GET /worlds/{w}/events,10,1,9,9.5,5,20,100,1.0,0.1,9,10,11,12,15,18,20,20,20,20,20
,Aggregated,130,1,38,42.4,5,160,840,13.0,0.1,38,44,49,52,68,88,118,148,160,160,160
"""


def test_the_stats_csv_and_timings_become_one_row_per_route(tmp_path: Path) -> None:
    csv_path = tmp_path / "locust_stats.csv"
    csv_path.write_text(STATS_CSV, encoding="utf-8")
    timings = [
        {"name": "POST /search", "client_ms": 40.0, "embed": 20.0, "sql": 5.0, "handler": 30.0},
        {"name": "POST /search", "client_ms": 50.0, "embed": 30.0, "sql": 7.0, "handler": 40.0},
        {"name": "GET /worlds/{w}/events", "client_ms": 9.0, "embed": 0.0, "sql": 2.0, "handler": 4.0},
    ]
    rows = {r.name: r for r in load_test.route_results(load_test.read_stats_csv(csv_path), timings)}
    assert list(rows) == ["POST /search", "GET /worlds/{w}/events", "Aggregated"]
    search = rows["POST /search"]
    assert (search.requests, search.failures, search.p50_ms, search.p95_ms, search.p99_ms) == (
        120,
        0,
        41,
        90,
        150,
    )
    assert (search.embed_mean_ms, search.sql_mean_ms, search.handler_mean_ms) == (25.0, 6.0, 35.0)
    assert rows["Aggregated"].client_mean_ms == pytest.approx(33.0)

    other = load_test.route_results(load_test.read_stats_csv(csv_path), timings[:1])
    mean = {r.name: r for r in load_test.mean_over_runs([list(rows.values()), other])}
    assert mean["POST /search"].requests == 240
    assert mean["POST /search"].embed_mean_ms == pytest.approx(22.5)
    table = load_test.markdown_table(list(mean.values()))
    assert table.splitlines()[0].startswith("| route | requests | failures |")
    assert "| POST /search | 240 | 0 |" in table
