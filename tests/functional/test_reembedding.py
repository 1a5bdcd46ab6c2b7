"""Changing the embedding model without downtime: the deployed statemachines/reembed.asl.json, run by
moto's executor on the embedded PostgreSQL, moves a knowledge base from all-MiniLM-L6-v2 (384 dimensions)
to WordLlama (256), while the API keeps answering and an upload arrives mid-rebuild."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from typing import Any

import pytest

from knowledge import reembedding
from knowledge.embedding.minilm import MINILM_DIMENSION, MINILM_MODEL_ID
from knowledge.embedding.wordllama import WORDLLAMA_DIMENSION, WORDLLAMA_MODEL_ID
from knowledge.errors import EmbeddingError, GenerationIncompleteError
from tests.functional.conftest import SAMPLES, Workflow

_runs = itertools.count()
NEXT = {"NextEmbeddingModelId": WORDLLAMA_MODEL_ID, "NextEmbeddingDimension": str(WORDLLAMA_DIMENSION)}
COURT = SAMPLES / "emberfall" / "01-the-ember-court.md"
TITHE = SAMPLES / "emberfall" / "02-the-fire-tithe.md"
LATE = SAMPLES / "emberfall" / "06-the-salt-conspiracy.md"


def _search(workflow: Workflow, query: str) -> tuple[int, dict[str, Any]]:
    reply = workflow.cloud.api_request("POST", "/search", {"query": query, "world_id": "emberfall", "k": 5})
    return int(reply["statusCode"]), json.loads(reply["body"])


def _settings(workflow: Workflow) -> tuple[str, int]:
    ((model, dimension),) = workflow.rows("SELECT embedding_model, embedding_dimension FROM kb_settings")
    return str(model), int(dimension)


def _chunk_dimensions(workflow: Workflow) -> set[int]:
    return {r[0] for r in workflow.rows("SELECT vector_dims(embedding) FROM document_chunks")}


def _rebuild(workflow: Workflow) -> dict[str, Any]:
    cloud = workflow.cloud
    arn = cloud.sfn.start_execution(
        stateMachineArn=cloud.physical_ids["ReembedStateMachine"], name=f"rebuild-{next(_runs)}"
    )["executionArn"]
    return cloud.wait(arn, timeout_s=600)


def _api_module(workflow: Workflow) -> Any:
    cloud = workflow.cloud
    return cloud.lambdas.module(cloud.functions["KnowledgeApiFunction"], "app.handler", {})


@pytest.fixture
def rebuilt(make_cloud: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two documents ingested with MiniLM, then a rebuild during which the API searches and a third
    document is uploaded (and ingested with the old model)."""
    workflow: Workflow = make_cloud(parameters=NEXT)
    for path in (COURT, TITHE):
        (result,) = workflow.upload(f"incoming/emberfall/{path.name}", path.read_bytes())
        assert result["status"] == "ingested"
    before = _search(workflow, "Who rules the Ember Court?")
    during: list[Any] = []
    original = reembedding.embed_batch
    first = threading.Lock()

    def embed_batch_with_traffic(item: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Map iterations run concurrently: the first to arrive makes the traffic, once.
        if first.acquire(blocking=False):
            # The rebuild has begun: searches read the old generation and an upload is stored beside it.
            during.append(_search(workflow, "Who rules the Ember Court?"))
            during.append(_settings(workflow))
            during.append(workflow.upload(f"incoming/emberfall/{LATE.name}", LATE.read_bytes()))
        return original(item, **kwargs)

    monkeypatch.setattr(reembedding, "embed_batch", embed_batch_with_traffic)
    execution = _rebuild(workflow)
    return {"workflow": workflow, "before": before, "during": during, "execution": execution}


def test_a_rebuild_switches_to_the_new_model_and_searches_answer_throughout(rebuilt: dict[str, Any]) -> None:
    workflow: Workflow = rebuilt["workflow"]
    execution = rebuilt["execution"]
    assert execution["status"] == "SUCCEEDED", (execution.get("error"), execution.get("cause"))
    output = json.loads(execution["output"])
    assert output["status"] == "switched" and output["model_id"] == WORDLLAMA_MODEL_ID
    assert output["previous_model_id"] == MINILM_MODEL_ID
    # The upload mid-rebuild was caught up by a later pass (the first listed only the first two documents).
    assert output["passes"] >= 3

    status, found = rebuilt["before"]
    assert status == 200 and found["hits"]
    search_during, settings_during, uploads_during = rebuilt["during"]
    assert search_during[0] == 200 and search_during[1]["hits"]
    assert settings_during == (MINILM_MODEL_ID, MINILM_DIMENSION)
    assert [r["status"] for r in uploads_during] == ["ingested"]

    assert _settings(workflow) == (WORDLLAMA_MODEL_ID, WORDLLAMA_DIMENSION)
    assert _chunk_dimensions(workflow) == {WORDLLAMA_DIMENSION}
    # Nothing ingested during the rebuild was lost: all three documents, every chunk with a new vector.
    keys = {r[0] for r in workflow.rows("SELECT s3_key FROM narrative_documents")}
    assert keys == {f"incoming/emberfall/{p.name}" for p in (COURT, TITHE, LATE)}
    assert workflow.rows("SELECT count(*) FROM document_chunks WHERE embedding IS NULL") == [(0,)]
    for table in ("narrative_documents", "narrative_concepts", "concept_versions"):
        dims = {
            r[0]
            for r in workflow.rows(f"SELECT vector_dims(embedding) FROM {table} WHERE embedding IS NOT NULL")
        }
        assert dims == {WORDLLAMA_DIMENSION}, table
    assert {r[0] for r in workflow.rows("SELECT embedding_model FROM narrative_documents")} == {
        WORDLLAMA_MODEL_ID
    }
    # The old vectors are retired: no column of theirs is left.
    assert workflow.rows(
        "SELECT count(*) FROM information_schema.columns WHERE column_name IN ('embedding_retired', 'embedding_next')"
    ) == [(0,)]
    assert workflow.rows("SELECT status FROM embedding_generations") == [("live",)]

    # After the switch the API embeds with the new model: the late document is found by its own words.
    status, found = _search(workflow, "the salt conspiracy")
    assert status == 200 and found["hits"]
    assert any(h["citation"]["document_key"].endswith(LATE.name) for h in found["hits"])
    reply = workflow.cloud.api_request(
        "POST", "/context", {"world_id": "emberfall", "situation": "the queen's court", "token_budget": 200}
    )
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["chunks"]


def test_a_second_rebuild_to_the_live_model_fails_at_once_and_changes_nothing(
    rebuilt: dict[str, Any],
) -> None:
    workflow: Workflow = rebuilt["workflow"]
    chunks = workflow.rows("SELECT chunk_id FROM document_chunks ORDER BY chunk_id")

    execution = _rebuild(workflow)

    assert execution["status"] == "FAILED" and execution["error"] == "GenerationStateError"
    assert "already embeds" in execution["cause"]
    assert _settings(workflow) == (WORDLLAMA_MODEL_ID, WORDLLAMA_DIMENSION)
    assert workflow.rows("SELECT chunk_id FROM document_chunks ORDER BY chunk_id") == chunks
    assert _search(workflow, "Who rules the Ember Court?")[0] == 200

    # The API as a stack without NextEmbeddingModelId would run it: MiniLM only, against WordLlama vectors.
    services = _api_module(workflow).services
    services.settings = dataclasses.replace(services.settings, next_embedding_model_id="")
    services.__dict__.pop("embedder", None)

    status, body = _search(workflow, "Who rules the Ember Court?")

    assert status == 503 and body["code"] == "embedding_model_mismatch"
    assert WORDLLAMA_MODEL_ID in body["message"] and MINILM_MODEL_ID in body["message"]


def _embedder_for(model_id: str, dimension: int) -> Any:
    from knowledge.services import embedder_from_settings, provider_for_model

    return embedder_from_settings(
        provider_for_model(model_id, "local-minilm"), dimension=dimension, model_id=model_id
    )


def _fill(workflow: Workflow, state: dict[str, Any]) -> dict[str, Any]:
    """One ListPending and its batches, as the workflow runs them; returns the listing."""
    cloud = workflow.cloud
    from knowledge.adapters.aws.payloads import PayloadStore
    from knowledge.adapters.aws.s3 import ObjectStore

    payloads = PayloadStore(ObjectStore(cloud.s3, cloud.bucket), inline_limit=8 * 1024)
    listed = reembedding.list_pending(state, database=cloud.database, payloads=payloads, batch_size=16)
    for batch in payloads.get({"s3_key": listed["items"]["manifest_key"]}):
        item = {"generation": listed["generation"], "batch": batch}
        reembedding.embed_batch(item, database=cloud.database, embedder_for=_embedder_for)
    return listed


def test_the_switch_refuses_while_a_row_changed_since_its_listing_lacks_a_new_vector(make_cloud: Any) -> None:
    workflow: Workflow = make_cloud(parameters=NEXT)
    workflow.upload(f"incoming/emberfall/{COURT.name}", COURT.read_bytes())
    database = workflow.cloud.database
    state = reembedding.begin(database=database, target_model=WORDLLAMA_MODEL_ID, target_dimension=256)
    # The new generation's vectors are kept in the row like the live ones (migration 0012).
    assert set(
        workflow.rows(
            "SELECT attstorage FROM pg_attribute WHERE attname = 'embedding_next' AND attnum > 0 AND NOT attisdropped"
        )
    ) == {("m",)}
    state = _fill(workflow, state)
    # The live model rewrites a concept meanwhile (a story event's new description): its new-generation
    # vector no longer says what the concept says, so it is dropped and the switch must wait for it.
    with database.transaction() as conn:
        conn.execute(
            "UPDATE narrative_concepts SET description = 'deposed', embedding = l2_normalize(embedding"
            " + (SELECT embedding FROM narrative_concepts ORDER BY concept_id DESC LIMIT 1))"
            " WHERE concept_id = (SELECT min(concept_id) FROM narrative_concepts)"
        )

    with pytest.raises(GenerationIncompleteError, match="1 rows"):
        reembedding.switch(state, database=database)
    assert _settings(workflow) == (MINILM_MODEL_ID, MINILM_DIMENSION)
    assert _search(workflow, "Who rules the Ember Court?")[0] == 200

    catch_up = _fill(workflow, state)
    assert catch_up["items"]["row_count"] == 1
    reembedding.switch(catch_up, database=database)
    assert _settings(workflow) == (WORDLLAMA_MODEL_ID, WORDLLAMA_DIMENSION)
    # Until the retire step the old vectors stay beside the new ones.
    assert workflow.rows("SELECT count(*) FROM document_chunks WHERE embedding_retired IS NULL") == [(0,)]
    reembedding.retire(catch_up, database=database)
    status, found = _search(workflow, "Who rules the Ember Court?")
    assert status == 200 and found["hits"]


def test_a_failed_rebuild_is_abandoned_and_the_live_generation_keeps_serving(
    make_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow: Workflow = make_cloud(parameters=NEXT)
    workflow.upload(f"incoming/emberfall/{COURT.name}", COURT.read_bytes())

    def rejected(item: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise EmbeddingError("the model rejected the text")

    monkeypatch.setattr(reembedding, "embed_batch", rejected)
    execution = _rebuild(workflow)

    assert execution["status"] == "FAILED" and execution["error"] == "ReembeddingAbandoned"
    assert _settings(workflow) == (MINILM_MODEL_ID, MINILM_DIMENSION)
    assert _chunk_dimensions(workflow) == {MINILM_DIMENSION}
    assert workflow.rows(
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'embedding_next'"
    ) == [(0,)]
    assert workflow.rows("SELECT status FROM embedding_generations") == [("abandoned",)]
    status, found = _search(workflow, "Who rules the Ember Court?")
    assert status == 200 and found["hits"]
    # A new rebuild may begin after an abandoned one.
    monkeypatch.undo()
    assert _rebuild(workflow)["status"] == "SUCCEEDED"
    assert _settings(workflow) == (WORDLLAMA_MODEL_ID, WORDLLAMA_DIMENSION)
