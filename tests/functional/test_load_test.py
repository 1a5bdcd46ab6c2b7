"""The load test against the API as `kb serve` serves it, with both sample worlds ingested: every request
of bench/load_plan.py answers 200 with a well-formed `Server-Timing`, and locust itself, driven by
bench/load_test.py, runs the locustfile with no failure.

A module of its own: its stack lives for the whole module (ingesting the samples once), which no other
test's stack may overlap. The hash embedder stands in for MiniLM: what is checked is which requests find
their world and concept, not ranking.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge.queries.timing import SERVER_TIMING_HEADER, parse_server_timing
from tests.bench_modules import load_bench_module
from tests.functional.served_samples import serve_sample_worlds

plan = load_bench_module("load_plan")
load_test = load_bench_module("load_test")


@pytest.fixture(scope="module")
def served_samples(kb_home: Path, postgres: Any) -> Iterator[str]:
    with serve_sample_worlds(kb_home, f"kb_load_{os.getpid()}") as url:
        yield url


def _send(base_url: str, planned: Any) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(planned.body).encode() if planned.body is not None else None
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=local"}  # kb serve checks presence only
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        base_url + planned.path_and_query, data=data, headers=headers, method=planned.method
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


@pytest.mark.parametrize("world", plan.WORLDS, ids=lambda w: w.world_id)
def test_every_planned_request_answers_200_with_its_timing(world: Any, served_samples: str) -> None:
    concept_ids: dict[str, int] = {}
    for concept in world.concepts:
        status, _, found = _send(served_samples, plan.history(world, concept))
        assert status == 200, (concept, found)
        concept_ids[concept] = found["concept_id"]
    for planned in plan.every_request(world, concept_ids):
        status, headers, found = _send(served_samples, planned)
        assert plan.failure_reason(status, json.dumps(found)) is None, (planned, found)
        timings = parse_server_timing(headers[SERVER_TIMING_HEADER])
        assert set(timings) == {"embed", "tokens", "sql", "handler"}
        # Searches and context packs embed their text; the graph routes only read.
        embeds = planned.name in (plan.ROUTE_NAMES["search"], plan.ROUTE_NAMES["context"])
        assert (timings["embed"] > 0) == embeds, (planned.name, timings)


def test_a_concept_the_corpus_lacks_is_a_404_and_so_a_failure(served_samples: str) -> None:
    status, headers, found = _send(served_samples, plan.history(plan.WORLDS[0], "Ysolde"))
    assert (status, found["code"]) == (404, "concept_not_found")
    assert plan.failure_reason(status, json.dumps(found)) is not None
    assert set(parse_server_timing(headers[SERVER_TIMING_HEADER])) == {"embed", "tokens", "sql", "handler"}


def test_locust_runs_the_locustfile_against_the_served_api_without_failures(
    served_samples: str, tmp_path: Path
) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    results = load_test.run_locust(
        served_samples, users=3, spawn_rate=3, duration_s=4, workdir=tmp_path, env=env
    )
    rows = {r.name: r for r in results}
    total = rows["Aggregated"]
    assert total.requests > 0 and total.failures == 0, results
    assert set(rows) - {"Aggregated"} <= set(plan.ROUTE_NAMES.values())
    # Every answer's Server-Timing was read back: each route seen has its breakdown.
    for row in results:
        assert row.handler_mean_ms is not None and row.sql_mean_ms is not None, row
