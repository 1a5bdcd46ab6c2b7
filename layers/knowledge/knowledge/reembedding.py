"""Changing the embedding model without downtime: the steps of statemachines/reembed.asl.json.

    Begin ─▶ ListPending ─▶ (none left? Switch) ─▶ Distributed Map(EmbedGenerationBatch) ─▶ ListPending ...
    Switch (GenerationIncompleteError: ListPending again) ─▶ Retire
    any failure before the switch ─▶ Abandon (the new columns dropped; the old generation never stopped)

Begin adds a column of the new dimension beside every vector column (migration 0011); the passes fill it
batch by batch while searches and ingestion go on with the live one. Each ListPending lists what still
lacks a new vector, so the second and later passes are the catch-up for what was ingested (or changed)
meanwhile. The switch is one transaction that refuses while anything is still missing, then swaps the
columns and records the new model in kb_settings; Retire drops the old vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from knowledge.adapters.aws.payloads import PayloadStore
from knowledge.adapters.postgres import generations
from knowledge.adapters.postgres.database import Database
from knowledge.errors import (
    ConfigurationError,
    EmbeddingError,
    GenerationStalledError,
    GenerationStateError,
)
from knowledge.ports import Embedder

Context = dict[str, Any]
EmbedderFor = Callable[[str, int], Embedder]


def _generation(context: Context) -> Context:
    return dict(context["generation"])


def begin(*, database: Database, target_model: str, target_dimension: int) -> Context:
    """Start a generation of `target_model` (the deployment's next embedding model)."""
    if not target_model or target_dimension < 1:
        raise ConfigurationError(
            "no next embedding model is configured (NEXT_EMBEDDING_MODEL_ID, NEXT_EMBEDDING_DIMENSION)"
        )
    with database.transaction() as conn:
        previous = generations.live_model(conn)
        generation = generations.begin(conn, target_model, target_dimension)
    return {
        "generation": {
            "generation_id": generation.generation_id,
            "model_id": generation.model_id,
            "dimension": generation.dimension,
            "previous_model_id": previous[0],
            "previous_dimension": previous[1],
        },
        "pass": 0,
    }


def _batches(database: Database, batch_size: int) -> Iterator[Context]:
    with database.transaction() as conn:
        for kind in generations.KINDS:
            ids: list[Any] = []
            for key in generations.missing_ids(conn, kind):
                ids.append(key)
                if len(ids) == batch_size:
                    yield {"kind": kind, "ids": ids}
                    ids = []
            if ids:
                yield {"kind": kind, "ids": ids}


def list_pending(context: Context, *, database: Database, payloads: PayloadStore, batch_size: int) -> Context:
    """Write the batches of rows still lacking a new vector as the Map's item list (S3 JSON)."""
    generation = _generation(context)
    pass_number = int(context.get("pass", 0)) + 1
    batches = list(_batches(database, batch_size))
    previous = context.get("items")
    if previous and previous.get("row_count"):
        pending = {(b["kind"], key) for b in batches for key in b["ids"]}
        earlier = payloads.get({"s3_key": previous["manifest_key"]})
        listed = {(b["kind"], key) for b in earlier for key in b["ids"]}
        if listed <= pending:
            raise GenerationStalledError(
                f"pass {pass_number - 1} wrote none of its {len(listed)} rows (its batches failed)"
            )
    manifest = payloads.put_in_s3(f"reembed/{generation['generation_id']}/pass-{pass_number:04d}", batches)
    return {
        "generation": generation,
        "pass": pass_number,
        "items": {
            "bucket": payloads.bucket,
            "manifest_key": manifest["s3_key"],
            "batch_count": len(batches),
            "row_count": sum(len(b["ids"]) for b in batches),
        },
    }


def embed_batch(item: Context, *, database: Database, embedder_for: EmbedderFor) -> Context:
    """One Map iteration: embed one batch with the new model into the new generation's column."""
    generation, batch = item["generation"], item["batch"]
    kind = batch["kind"]
    if kind not in generations.KINDS:
        raise GenerationStateError(f"unknown kind of row {kind!r} in the item list")
    embedder = embedder_for(generation["model_id"], int(generation["dimension"]))
    if (embedder.model_id, embedder.dimension) != (generation["model_id"], int(generation["dimension"])):
        raise ConfigurationError(
            f"generation {generation['generation_id']} is {generation['model_id']} at"
            f" {generation['dimension']} dimensions; the embedder is {embedder.model_id} at {embedder.dimension}"
        )
    with database.transaction() as conn:
        texts = generations.texts(conn, kind, batch["ids"])
    keys = list(texts)
    vectors = embedder.embed([texts[k] for k in keys]) if keys else []
    for vector in vectors:
        if len(vector) != embedder.dimension:
            raise EmbeddingError(
                f"{embedder.model_id} returned {len(vector)} dimensions, not {embedder.dimension}"
            )
    with database.transaction() as conn:
        written = generations.write_vectors(conn, kind, dict(zip(keys, vectors, strict=True)))
    return {"kind": kind, "written": written}


def switch(context: Context, *, database: Database) -> Context:
    """Make the new generation live in one transaction; GenerationIncompleteError while rows are missing."""
    generation = _generation(context)
    with database.transaction() as conn:
        generations.switch(conn, int(generation["generation_id"]))
    return {**context, "generation": generation, "switched": True}


def retire(context: Context, *, database: Database) -> Context:
    generation = _generation(context)
    with database.transaction() as conn:
        generations.retire(conn, int(generation["generation_id"]))
    return {
        "status": "switched",
        "generation_id": generation["generation_id"],
        "model_id": generation["model_id"],
        "dimension": generation["dimension"],
        "previous_model_id": generation["previous_model_id"],
        "passes": context.get("pass", 0),
    }


def abandon(context: Context, *, database: Database) -> Context:
    """Undo a rebuild that failed before its switch: the live generation was never touched."""
    generation = _generation(context)
    with database.transaction() as conn:
        generations.abandon(conn, int(generation["generation_id"]))
    return {
        "status": "abandoned",
        "generation_id": generation["generation_id"],
        "error": context.get("error"),
    }
