"""Every route of docs/openapi.json has a request and a response example, and each validates against the
route's own models (so an example cannot drift from the API)."""

from __future__ import annotations

import json
import urllib.parse

import pydantic
import pytest

from cli.openapi import OPENAPI_PATH
from cli.openapi_examples import EXAMPLES
from knowledge.queries import models, worlds
from knowledge.story_events.erasure_model import PlayerErasure, PlayerErasureRequest

DOCUMENT = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method != "parameters"
]
# route -> (how its parameters or body validate, its 200 model)
MODELS: dict[str, tuple[type[pydantic.BaseModel] | None, type[pydantic.BaseModel]]] = {
    "POST /search": (models.SearchRequest, models.SearchResponse),
    "POST /context": (models.ContextRequest, models.ContextPack),
    "GET /worlds": (None, models.WorldList),
    "GET /worlds/{world_id}/concepts": (models.ConceptListRequest, models.ConceptList),
    "GET /worlds/{world_id}/concepts/{name}/history": (models.ConceptHistoryRequest, models.ConceptHistory),
    "GET /concepts/{concept_id}/relationships": (models.RelationshipsRequest, models.ConceptGraph),
    "GET /worlds/{world_id}/events": (models.TimelineRequest, models.Timeline),
    "DELETE /worlds/{world_id}/players/{player_id}": (PlayerErasureRequest, PlayerErasure),
    "PUT /worlds/{world_id}": (worlds.WorldSettings, worlds.World),
}


def test_every_route_has_examples_and_every_example_a_route() -> None:
    assert sorted(EXAMPLES) == sorted(OPERATIONS) == sorted(MODELS)


@pytest.mark.parametrize("route", sorted(MODELS))
def test_examples_validate_against_the_route_models_and_are_in_the_document(route: str) -> None:
    method, path = route.split(" ", 1)
    example, (request_model, response_model) = EXAMPLES[route], MODELS[route]
    response_model.model_validate(example["response"])
    if request_model is not None:
        given = example.get("request") or {
            k: urllib.parse.unquote(v) if isinstance(v, str) else v for k, v in example["parameters"].items()
        }
        request_model.model_validate(given)
    operation = DOCUMENT["paths"][path][method.lower()]
    assert operation["responses"]["200"]["content"]["application/json"]["example"] == example["response"]
    if "request" in example:
        assert operation["requestBody"]["content"]["application/json"]["example"] == example["request"]
    documented = {p["name"] for p in operation.get("parameters", []) if "example" in p}
    # Every path parameter has one; query parameters where they combine (since or cursor, not both).
    assert {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"} <= documented
    assert documented == set(example.get("parameters", {}))
