"""What the knowledge API's load test asks, and what counts as an answer: shared by bench/locustfile.py
(under locust) and the test that checks every request against the served sample worlds
(tests/functional/test_load_test.py), so neither can drift from the other or from samples/.

Only the Python standard library: locust's process imports it, and so does pytest's, where locust's gevent
patching must not happen.
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# samconfig.toml's `dev` environment: the stack a load test is pointed at (`sam deploy --config-env dev`).
DEFAULT_STACK_NAME = "ai-game-knowledge-dev"

# A storyteller turn is mostly search and a context pack; now and then a concept's history, its
# relationships and the timeline.
TASK_WEIGHTS: Mapping[str, int] = {"search": 6, "context": 3, "history": 1, "relationships": 1, "timeline": 1}
# The name each route's requests are reported under (paths with their parameters as placeholders).
ROUTE_NAMES: Mapping[str, str] = {
    "search": "POST /search",
    "context": "POST /context",
    "history": "GET /worlds/{w}/concepts/{name}/history",
    "relationships": "GET /concepts/{id}/relationships",
    "timeline": "GET /worlds/{w}/events",
}
SEARCH_K = 10
HYBRID_SHARE = 0.3  # of searches sent with hybrid=true (vector and full text)
CONTEXT_TOKEN_BUDGET = 1500
RELATIONSHIP_DEPTH = 2
TIMELINE_LIMIT = 50


@dataclass(frozen=True, slots=True)
class WorldPlan:
    """One sample world: concepts its documents declare, and questions about them (each names one)."""

    world_id: str
    concepts: tuple[str, ...]
    queries: tuple[str, ...]


WORLDS: tuple[WorldPlan, ...] = (
    WorldPlan(
        "emberfall",
        concepts=(
            "Queen Ysolde Varr",
            "Hearth-Lords",
            "Chancellor Merek Oss",
            "Fire Tithe",
            "Great Kiln",
            "Kharos Keep",
            "Salt Conspiracy",
        ),
        queries=(
            "who rules the Ember Court",
            "how is the Fire Tithe collected",
            "what does the Guild of Kilnkeepers tend",
            "where is Kharos Keep",
            "who was behind the Salt Conspiracy",
            "what happened when Mount Vell erupted",
        ),
    ),
    WorldPlan(
        "tidewatch",
        concepts=(
            "Greylamp",
            "High Keeper Ilse Marrow",
            "Brackwater Clan",
            "Tide Council",
            "Drowned Quarter",
            "Feast of Low Water",
        ),
        queries=(
            "who guards the Greylamp",
            "how does the Tide Council govern",
            "what do the Brackwater Clan smuggle through the Undercanals",
            "why was the Drowned Quarter flooded",
            "what happens at the Feast of Low Water",
            "the night the Greylamp went dark",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request, as sent below the API's base URL (`https://.../v1`)."""

    method: str
    path: str
    name: str  # what it is reported as: ROUTE_NAMES
    body: dict[str, Any] | None = None
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def path_and_query(self) -> str:
        return self.path + ("?" + urllib.parse.urlencode(self.query) if self.query else "")


def search(world: WorldPlan, query: str, *, hybrid: bool) -> PlannedRequest:
    body = {"query": query, "world_id": world.world_id, "k": SEARCH_K, "hybrid": hybrid}
    return PlannedRequest("POST", "/search", ROUTE_NAMES["search"], body)


def context(world: WorldPlan, situation: str) -> PlannedRequest:
    body = {"world_id": world.world_id, "situation": situation, "token_budget": CONTEXT_TOKEN_BUDGET}
    return PlannedRequest("POST", "/context", ROUTE_NAMES["context"], body)


def history(world: WorldPlan, concept: str) -> PlannedRequest:
    path = f"/worlds/{world.world_id}/concepts/{urllib.parse.quote(concept, safe='')}/history"
    return PlannedRequest("GET", path, ROUTE_NAMES["history"])


def relationships(world: WorldPlan, concept_id: int) -> PlannedRequest:
    query = {"world_id": world.world_id, "depth": str(RELATIONSHIP_DEPTH)}
    return PlannedRequest(
        "GET", f"/concepts/{concept_id}/relationships", ROUTE_NAMES["relationships"], query=query
    )


def timeline(world: WorldPlan) -> PlannedRequest:
    query = {"limit": str(TIMELINE_LIMIT)}
    return PlannedRequest("GET", f"/worlds/{world.world_id}/events", ROUTE_NAMES["timeline"], query=query)


def every_request(world: WorldPlan, concept_ids: Mapping[str, int]) -> list[PlannedRequest]:
    """Each request the load test can send for `world` (`concept_ids`: its concepts' ids, from history)."""
    planned = [search(world, q, hybrid=h) for q in world.queries for h in (False, True)]
    planned += [context(world, q) for q in world.queries]
    planned += [history(world, c) for c in world.concepts]
    planned += [relationships(world, concept_ids[c]) for c in world.concepts]
    planned.append(timeline(world))
    return planned


def pick(task: str, world: WorldPlan, rng: random.Random, concept_ids: Mapping[str, int]) -> PlannedRequest:
    """A random request of `task` for `world`; relationships need a known id, else a history is asked."""
    if task == "search":
        return search(world, rng.choice(world.queries), hybrid=rng.random() < HYBRID_SHARE)
    if task == "context":
        return context(world, rng.choice(world.queries))
    if task == "relationships":
        known = [c for c in world.concepts if c in concept_ids]
        if known:
            return relationships(world, concept_ids[rng.choice(known)])
        task = "history"
    if task == "history":
        return history(world, rng.choice(world.concepts))
    if task == "timeline":
        return timeline(world)
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASK_WEIGHTS)}")


def failure_reason(status: int, body: str) -> str | None:
    """None when the answer is the one the plan expects (200); otherwise why the request failed.

    Every world and concept of the plan exists in the sample worlds, so a 404 is a failure like any other
    non-200: a load test that counts it as an answer measures the error path.
    """
    if status == 200:
        return None
    return f"{status}: {body[:200]}"


def selected_worlds(names: str | None) -> tuple[WorldPlan, ...]:
    """The worlds named (comma-separated; None or empty: all), or ValueError for one the plan lacks."""
    if not names:
        return WORLDS
    by_id = {w.world_id: w for w in WORLDS}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_id]
    if unknown:
        raise ValueError(f"no load plan for world(s) {', '.join(unknown)}; the plan has {', '.join(by_id)}")
    return tuple(by_id[n] for n in wanted)


def region_of(url: str, default: str = "us-east-1") -> str:
    """The region of an execute-api URL (`https://<id>.execute-api.<region>.amazonaws.com/v1`)."""
    parts = (urllib.parse.urlsplit(url).hostname or "").split(".")
    if len(parts) > 3 and parts[1] == "execute-api":
        return parts[2]
    return default
