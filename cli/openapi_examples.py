"""A request and a response example for every route of docs/openapi.json, from the sample worlds.

`cli.openapi` writes them into the document (each parameter's `example`, the request body's and the 200
response's); tests/unit/test_openapi_examples.py checks that every route has them and that each one
validates against the route's own request and response models.
"""

from __future__ import annotations

import copy
import json
from typing import Any

__all__ = ["EXAMPLES", "with_examples"]

_CITATION = {
    "document_key": "incoming/emberfall/02-the-fire-tithe.md",
    "title": "The Fire Tithe",
    "heading": "The Fire Tithe › How the Tithe Is Collected",
    "start": 412,
    "end": 1180,
}
_TEXT = (
    "Each autumn the tithe-wardens of the Ember Court row from hearth to hearth and take one coal in ten,"
    " carried back to Kharos Keep in iron braziers."
)
_EVENT = {
    "event_id": "court:ash-2",
    "occurred_at": "2026-03-02T21:30:00Z",
    "kind": "ruling",
    "summary": "Queen Ysolde Varr pardoned the salt smugglers before the Ember Court.",
    "concept_ids": [2],
    "payload": {},
    "tokens": 17,
}

# "METHOD /path" -> parameters (name -> example), request body, 200 response.
EXAMPLES: dict[str, dict[str, Any]] = {
    "POST /search": {
        "request": {
            "query": "how is the fire tithe collected",
            "world_id": "emberfall",
            "k": 3,
            "hybrid": True,
        },
        "response": {
            "world_id": "emberfall",
            "hybrid": True,
            "hits": [
                {
                    "rank": 1,
                    "chunk_id": 57,
                    "score": 0.912,
                    "similarity": 0.688,
                    "text": _TEXT,
                    "citation": _CITATION,
                }
            ],
        },
    },
    "POST /context": {
        "request": {
            "world_id": "emberfall",
            "situation": "the heroes bring the fire tithe to the Ember Court",
            "token_budget": 600,
        },
        "response": {
            "world_id": "emberfall",
            "token_budget": 600,
            "tokens_used": 212,
            "tokenizer": "sentence-transformers/all-MiniLM-L6-v2",
            "chunks": [
                {"chunk_id": 57, "similarity": 0.641, "tokens": 38, "text": _TEXT, "citation": _CITATION}
            ],
            "concepts": [
                {
                    "concept_id": 1,
                    "name": "Ember Court",
                    "kind": "faction",
                    "description": "The ruling council of Emberfall, seated in Kharos Keep on Ashmantle.",
                    "version": 1,
                    "source_document_key": "incoming/emberfall/01-the-ember-court.md",
                    "updated_at": "2026-03-01T19:02:11Z",
                    "tokens": 21,
                }
            ],
            "events": [_EVENT],
            "dropped_duplicates": 0,
        },
    },
    "GET /worlds": {
        "response": {
            "worlds": [
                {
                    "world_id": "emberfall",
                    "name": "emberfall",
                    "documents": 7,
                    "concepts": 41,
                    "events": 2,
                    "parent": None,
                },
                {
                    "world_id": "tidewatch",
                    "name": "tidewatch",
                    "documents": 6,
                    "concepts": 33,
                    "events": 0,
                    "parent": None,
                },
            ],
            "truncated": False,
        }
    },
    "GET /worlds/{world_id}/concepts": {
        "parameters": {"world_id": "emberfall", "prefix": "queen", "limit": 20},
        "response": {
            "world_id": "emberfall",
            "concepts": [
                {
                    "concept_id": 2,
                    "name": "Queen Ysolde Varr",
                    "kind": "character",
                    "current_version": 2,
                    "relationships": 3,
                }
            ],
            "truncated": False,
        },
    },
    "GET /worlds/{world_id}/concepts/{name}/history": {
        "parameters": {"world_id": "emberfall", "name": "Queen%20Ysolde%20Varr"},
        "response": {
            "concept_id": 2,
            "world_id": "emberfall",
            "name": "Queen Ysolde Varr",
            "kind": "character",
            "current_version": 2,
            "versions": [
                {
                    "version": 1,
                    "description": "Sovereign of Emberfall and keeper of the Cinder Throne.",
                    "created_at": "2026-03-01T19:02:11Z",
                    "source_document_key": "incoming/emberfall/01-the-ember-court.md",
                    "source_document_title": "The Ember Court",
                    "source_event_id": None,
                },
                {
                    "version": 2,
                    "description": "Sovereign of Emberfall, who pardoned the salt smugglers.",
                    "created_at": "2026-03-02T21:30:04Z",
                    "source_document_key": None,
                    "source_document_title": None,
                    "source_event_id": "court:ash-2",
                },
            ],
        },
    },
    "GET /concepts/{concept_id}/relationships": {
        "parameters": {
            "concept_id": 1,
            "world_id": "emberfall",
            "depth": 1,
            "type": "rules",
            "direction": "both",
        },
        "response": {
            "root": {"concept_id": 1, "name": "Ember Court", "kind": "faction", "depth": 0},
            "nodes": [
                {"concept_id": 1, "name": "Ember Court", "kind": "faction", "depth": 0},
                {"concept_id": 2, "name": "Queen Ysolde Varr", "kind": "character", "depth": 1},
            ],
            "edges": [
                {
                    "relationship_id": 1,
                    "source_concept_id": 2,
                    "target_concept_id": 1,
                    "type": "rules",
                    "description": "She presides over every sitting of the Court.",
                    "depth": 1,
                }
            ],
            "truncated": False,
        },
    },
    "GET /worlds/{world_id}/events": {
        "parameters": {"world_id": "emberfall", "since": "2026-03-02T00:00:00Z", "limit": 50},
        "response": {"world_id": "emberfall", "events": [_EVENT], "next_cursor": None},
    },
    "PUT /worlds/{world_id}": {
        "parameters": {"world_id": "emberfall-exiles"},
        "request": {"name": "Emberfall: the Exiles", "parent": "emberfall"},
        "response": {
            "world_id": "emberfall-exiles",
            "name": "Emberfall: the Exiles",
            "parent": "emberfall",
            "lineage": ["emberfall-exiles", "emberfall"],
        },
    },
    "DELETE /worlds/{world_id}/players/{player_id}": {
        "parameters": {"world_id": "emberfall", "player_id": "player-7f3c2a91"},
        "response": {
            "world_id": "emberfall",
            "player_ref": "sha256:3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "events_erased": 4,
            "concept_versions_erased": 1,
            "concepts_reverted": 1,
            "concepts_removed": 0,
            "erased_at": "2026-03-03T09:00:00Z",
        },
    },
}


def with_examples(document_json: str) -> str:
    """The OpenAPI document (as `openapi_json` writes it) with every route's examples written in."""
    document = copy.deepcopy(json.loads(document_json))
    for route, example in EXAMPLES.items():
        method, path = route.split(" ", 1)
        operation = document["paths"][path][method.lower()]
        for parameter in operation.get("parameters", []):
            if parameter["name"] in example.get("parameters", {}):
                parameter["example"] = example["parameters"][parameter["name"]]
        if "request" in example:
            operation["requestBody"]["content"]["application/json"]["example"] = example["request"]
        operation["responses"]["200"]["content"]["application/json"]["example"] = example["response"]
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
