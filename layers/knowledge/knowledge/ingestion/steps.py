"""The ingestion workflow's steps, one function per state of statemachines/ingestion.asl.json.

Each step takes the workflow context (a JSON object the state machine carries from state to state) and
its collaborators as arguments, and returns the new context. Large intermediate results travel through
PayloadStore references so the context stays far below the 256 KB state limit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from knowledge import model, pii
from knowledge.adapters.aws.payloads import PayloadStore
from knowledge.adapters.aws.s3 import ObjectStore
from knowledge.adapters.postgres import documents, partitions
from knowledge.adapters.postgres.database import Database
from knowledge.errors import InvalidDocumentError, WorldParentError
from knowledge.ingestion import chunking, parsing
from knowledge.model import WORLD_ID, Chunk, ConceptSpec, ParsedDocument, RelationshipSpec, Section
from knowledge.ports import Embedder, time_limit

INCOMING_PREFIX = "incoming/"
QUARANTINE_PREFIX = "quarantine/"

Context = dict[str, Any]


def world_and_name(key: str) -> tuple[str, str]:
    """incoming/<world>/<name...> → (world, name); anything else cannot be ingested."""
    if not key.startswith(INCOMING_PREFIX):
        raise InvalidDocumentError("invalid_key", f"{key!r} is not under {INCOMING_PREFIX}<world>/")
    parts = key[len(INCOMING_PREFIX) :].split("/", 1)
    if len(parts) != 2 or not parts[1] or parts[1].endswith("/"):
        raise InvalidDocumentError("invalid_key", f"{key!r} must look like {INCOMING_PREFIX}<world>/<name>")
    world, name = parts
    if not WORLD_ID.match(world):
        raise InvalidDocumentError(
            "invalid_world", f"world {world!r} must be 1-63 lowercase letters, digits or hyphens"
        )
    return world, name


def _artifact_name(document: Context, step: str) -> str:
    # Per run: two runs of one document at once (a duplicated event) never write the same object.
    run = document.get("run_id")
    return f"{document['world_id']}/{document['content_sha256']}/{run + '/' if run else ''}{step}"


# ---------------------------------------------------------------- validate
def validate(
    context: Context,
    *,
    objects: ObjectStore,
    database: Database,
    max_document_bytes: int,
    payloads: PayloadStore | None = None,
    embedding_model: str | None = None,
) -> Context:
    upload = context["upload"]
    world_id, name = world_and_name(upload["key"])
    document: Context = {"world_id": world_id, "name": name, "document_id": None, "chunk_count": 0}
    data = objects.read(upload["key"], max_bytes=max_document_bytes, version_id=upload.get("version_id"))
    if data is None:
        return {**context, "document": {**document, "outcome": "missing"}}
    media_type = parsing.validate_upload(data, upload["key"], max_bytes=max_document_bytes)
    document |= {
        "content_sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "media_type": media_type,
        "run_id": uuid.uuid4().hex[:12],
    }
    with database.transaction() as conn:
        existing = documents.find_document(conn, world_id, upload["key"])
        known = (
            documents.chunk_hashes(conn, world_id, upload["key"])
            if existing is not None and existing.content_sha256 != document["content_sha256"]
            else None
        )
    if existing is None:
        outcome = "new"
    elif existing.content_sha256 == document["content_sha256"]:
        outcome = "unchanged"
        document |= {"document_id": existing.document_id, "chunk_count": existing.chunk_count}
    else:
        outcome = "changed"
        if known is not None and known[1] and payloads is not None and known[0] == embedding_model:
            # What the stored version's chunks embedded, with the model this deployment embeds with:
            # EmbedBatch embeds only the chunks not among them (StoreDocument keeps the others' vectors).
            model, hashes = known
            ref = payloads.put(_artifact_name(document, "known-chunks"), {"model": model, "hashes": hashes})
            document |= {"known_chunks": ref}
    return {**context, "document": {**document, "outcome": outcome}}


# ---------------------------------------------------------------- parse
def parsed_to_json(doc: ParsedDocument) -> dict[str, Any]:
    return dataclasses.asdict(doc)


def parsed_from_json(data: dict[str, Any]) -> ParsedDocument:
    return ParsedDocument(
        title=data["title"],
        media_type=data["media_type"],
        source_text=data["source_text"],
        sections=tuple(Section(**s) for s in data["sections"]),
        world=data.get("world"),
        concepts=tuple(ConceptSpec(**c) for c in data.get("concepts", ())),
        relationships=tuple(RelationshipSpec(**r) for r in data.get("relationships", ())),
        metadata=data.get("metadata", {}),
        parent=data.get("parent"),
    )


def parse(
    context: Context, *, objects: ObjectStore, payloads: PayloadStore, max_document_bytes: int
) -> Context:
    upload, document = context["upload"], context["document"]
    data = objects.read(upload["key"], max_bytes=max_document_bytes, version_id=upload.get("version_id"))
    if data is None:
        return {**context, "document": {**document, "outcome": "missing"}}
    if hashlib.sha256(data).hexdigest() != document["content_sha256"]:
        # Overwritten since validation: the newer upload has its own event and execution.
        document = {**document, "content_sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    parsed = parsing.parse_document(data, upload["key"], max_bytes=max_document_bytes)
    if parsed.world is not None and parsed.world != document["world_id"]:
        raise InvalidDocumentError(
            "world_mismatch",
            f"front matter says world {parsed.world!r} but the file was uploaded under {document['world_id']!r}",
        )
    ref = payloads.put(_artifact_name(document, "parsed"), parsed_to_json(parsed))
    # The title joins the context once scrubbed: state inputs are kept in the execution history.
    return {**context, "document": document, "parsed": ref}


# ---------------------------------------------------------------- scrub
def scrub(context: Context, *, payloads: PayloadStore) -> Context:
    parsed = parsed_from_json(payloads.get(context["parsed"]))
    sections, counts = pii.scrub_sections(parsed.sections)

    def clean(text: str) -> str:
        result = pii.scrub(text)
        for category, n in result.counts.items():
            counts[category] = counts.get(category, 0) + n
        return result.text

    # Every text that is stored goes through the same scrubber; concept names key the concepts and stay.
    cleaned = dataclasses.replace(
        parsed,
        title=clean(parsed.title),
        sections=tuple(sections),
        concepts=tuple(dataclasses.replace(c, description=clean(c.description)) for c in parsed.concepts),
        relationships=tuple(
            dataclasses.replace(r, description=clean(r.description)) for r in parsed.relationships
        ),
        metadata=pii.scrub_value(parsed.metadata, totals=counts),
        source_text="",
    )
    ref = payloads.put(_artifact_name(context["document"], "scrubbed"), parsed_to_json(cleaned))
    document = {**context["document"], "title": cleaned.title, "pii_redactions": dict(counts)}
    return {**context, "document": document, "scrubbed": ref}


# ---------------------------------------------------------------- chunk
def concept_text(concept: ConceptSpec) -> str:
    return f"{concept.name} ({concept.kind}): {concept.description}".strip()


def chunk(
    context: Context,
    *,
    payloads: PayloadStore,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    overlap_tokens: int,
    batch_size: int,
) -> Context:
    document = context["document"]
    parsed = parsed_from_json(payloads.get(context["scrubbed"]))
    chunks = chunking.chunk_sections(
        parsed.sections, max_tokens=max_tokens, overlap_tokens=overlap_tokens, count_tokens=count_tokens
    )
    if not chunks:
        raise InvalidDocumentError("empty", "the document has no text to index")
    batches = []
    for index, start in enumerate(range(0, len(chunks), batch_size)):
        items = [dataclasses.asdict(c) for c in chunks[start : start + batch_size]]
        ref = payloads.put(_artifact_name(document, f"chunks-{index:05d}"), items)
        batches.append({"index": index, "kind": "chunks", "count": len(items), "ref": ref})
    if parsed.concepts:
        texts = [concept_text(c) for c in parsed.concepts]
        ref = payloads.put(_artifact_name(document, "concepts"), [{"text": t} for t in texts])
        batches.append({"index": len(batches), "kind": "concepts", "count": len(texts), "ref": ref})
    # The batch list grows with the document (~1,400 batches for 20 MB of prose): it never travels in the state.
    # EmbedBatches (a Distributed Map) reads it from S3 with its ItemReader, StoreDocument from the same key.
    manifest = payloads.put_in_s3(_artifact_name(document, "batches"), batches)
    return {
        **context,
        "document": {**document, "chunk_count": len(chunks)},
        "chunks": {
            "bucket": payloads.bucket,
            "manifest_key": manifest["s3_key"],
            "batch_count": len(batches),
            "chunk_count": len(chunks),
        },
    }


# ---------------------------------------------------------------- embed (one Map iteration)
def embedding_text(entry: dict[str, Any]) -> str:
    """What is embedded for a chunk or concept entry (knowledge.model.embedding_text)."""
    return model.embedding_text(entry.get("heading") or "", str(entry["text"]))


def _vectors_name(document: Context, batch: Context) -> str:
    return _artifact_name(document, f"vectors-{batch['kind']}-{batch['index']:05d}")


# What EmbedBatch keeps of its time for writing the vectors (32 x 1024 floats as JSON, one S3 put).
_WRITE_VECTORS_RESERVE_S = 5.0


def _known_hashes(document: Context, payloads: PayloadStore) -> frozenset[str]:
    ref = document.get("known_chunks")
    return frozenset(payloads.get(ref)["hashes"]) if ref else frozenset()


def embed_batch(
    item: Context,
    *,
    payloads: PayloadStore,
    embedder: Embedder,
    remaining_ms: Callable[[], int] | None = None,
) -> Context:
    """Embed one batch. A chunk whose content hash the stored version already has (ValidateDocument
    listed them, for the same model) is not embedded again: its vector is null here and StoreDocument
    keeps the stored one. `remaining_ms` (the Lambda context's) bounds the embedder's calls, keeping
    time to write the vectors: a batch that cannot finish fails whole, before the function times out."""
    batch, document = item["batch"], item["document"]
    entries = payloads.get(batch["ref"])
    known = _known_hashes(document, payloads) if batch["kind"] == "chunks" else frozenset()
    texts = [embedding_text(entry) for entry in entries]
    todo = [
        i for i, text in enumerate(texts) if hashlib.sha256(text.encode("utf-8")).hexdigest() not in known
    ]
    with time_limit(remaining_ms, reserve_s=_WRITE_VECTORS_RESERVE_S):
        embedded = embedder.embed([texts[i] for i in todo]) if todo else []
    vectors: list[list[float] | None] = [None] * len(texts)
    for i, vector in zip(todo, embedded, strict=True):
        vectors[i] = list(map(float, vector))
    # Always in S3 under a name StoreDocument derives from the batch: the Map's result is then a few bytes
    # per batch, however many batches a document has.
    payloads.put_in_s3(_vectors_name(document, batch), {"model": embedder.model_id, "vectors": vectors})
    return {"index": batch["index"]}


# ---------------------------------------------------------------- store
def store(context: Context, *, payloads: PayloadStore, database: Database, embedding_model: str) -> Context:
    document, upload = context["document"], context["upload"]
    parsed = parsed_from_json(payloads.get(context["scrubbed"]))
    chunks: list[Chunk] = []
    chunk_vectors: list[Sequence[float] | None] = []
    concept_vectors: list[Sequence[float]] = []
    for batch in payloads.get({"s3_key": context["chunks"]["manifest_key"]}):
        # float32 arrays, not lists of Python floats (24 bytes each): a 50 MB document's 100,000 chunks of
        # 1024 dimensions are 0.4 GB this way, several GB as lists, in a 1769 MB function.
        vectors: list[Sequence[float] | None] = [
            None if v is None else array("f", v)
            for v in payloads.get({"s3_key": payloads.key(_vectors_name(document, batch))})["vectors"]
        ]
        if batch["kind"] == "chunks":
            chunks.extend(Chunk(**c) for c in payloads.get(batch["ref"]))
            chunk_vectors.extend(vectors)
        else:
            concept_vectors.extend(v for v in vectors if v is not None)  # concepts are always embedded
    to_store = documents.DocumentToStore(
        world_id=document["world_id"],
        s3_key=upload["key"],
        title=parsed.title,
        media_type=parsed.media_type,
        content_sha256=document["content_sha256"],
        size_bytes=document["size_bytes"],
        embedding_model=embedding_model,
        chunks=chunks,
        chunk_vectors=chunk_vectors,
        concepts=parsed.concepts,
        concept_vectors=concept_vectors,
        relationships=parsed.relationships,
        pii_redactions=document.get("pii_redactions", {}),
        metadata={**parsed.metadata, "source_event_id": upload.get("event_id")},
        parent_world_id=parsed.parent,
    )
    try:
        with database.transaction() as conn:
            outcome = documents.store_document(conn, to_store)
    except WorldParentError as exc:  # the front matter's parent: the document is quarantined with why
        raise InvalidDocumentError(exc.reason, exc.message) from None
    if outcome.status == "ingested":
        # After the document's commit, in a transaction of its own: a world grown large enough moves to a
        # chunk partition and graph of its own (migration 0010).
        partitions.promote_if_large(database, document["world_id"])
    stored = {
        "document_id": outcome.document_id,
        "chunk_count": outcome.chunk_count,
        "outcome": "unchanged" if outcome.status == "unchanged" else document["outcome"],
        "replaced_previous_version": outcome.replaced_previous_version,
        "concepts_changed": list(outcome.concepts_changed),
    }
    return {**context, "document": {**document, **stored}}


# ---------------------------------------------------------------- quarantine and delete
def failure_reason(error: Context) -> tuple[str, str]:
    """(reason_code, message) from a Step Functions Catch result {"Error": ..., "Cause": ...}."""
    cause = error.get("Cause") or ""
    try:
        message = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        message = cause
    code, sep, detail = str(message).partition(": ")
    if sep and re.fullmatch(r"[a-z][a-z0-9_]*", code):
        return code, detail
    return "invalid_document", str(message) or str(error.get("Error", "unknown error"))


def quarantine(context: Context, *, objects: ObjectStore, database: Database) -> Context:
    upload = context["upload"]
    document = context.get("document") or {}
    reason_code, reason = failure_reason(context.get("error", {}))
    reason = pii.scrub(reason).text  # a reason may quote the document ("not {value!r}"); it is stored
    key = upload["key"]
    relative = key[len(INCOMING_PREFIX) :] if key.startswith(INCOMING_PREFIX) else key
    quarantine_key = f"{QUARANTINE_PREFIX}{relative}"
    try:
        world_id: str | None = world_and_name(key)[0]
    except InvalidDocumentError:
        world_id = None
    with database.transaction() as conn:
        live = documents.find_document(conn, world_id, key) if world_id else None
        # Recorded before the move: a crash in between leaves the object in place with its reason known.
        documents.record_quarantine(
            conn,
            world_id=world_id,
            s3_key=key,
            quarantine_key=quarantine_key,
            reason_code=reason_code,
            reason=reason,
            event_id=upload.get("event_id", ""),
            content_sha256=document.get("content_sha256"),
            size_bytes=document.get("size_bytes") or upload.get("size"),
        )
    version_id = upload.get("version_id")
    objects.copy(key, quarantine_key, version_id=version_id)
    if version_id and version_id != "null":
        # Only the failed version leaves incoming/: the version before it (the live document's, if any)
        # becomes current again, so the key and the stored document keep agreeing. The Object Deleted
        # event this sends finds the key still there, and DeleteDocument keeps the document.
        objects.delete(key, version_id=version_id)
    elif live is None:
        objects.delete(key)
    # An unversioned upload over a live document stays where it is: deleting it would delete the document.
    return {
        "status": "quarantined",
        "key": key,
        "world_id": world_id,
        "document_id": None,
        "chunks": 0,
        "reason_code": reason_code,
        "reason": reason,
        "quarantine_key": quarantine_key,
        "live_document_id": live.document_id if live else None,
    }


def delete(context: Context, *, objects: ObjectStore, database: Database) -> Context:
    """Only a user's delete removes a document: the key has no current object any more.

    An Object Deleted event also comes when one version is removed (a quarantined upload leaving, a
    version deleted by id) while the key keeps a current object; the document then stays.
    """
    key = context["upload"]["key"]
    try:
        world_id = world_and_name(key)[0]
    except InvalidDocumentError:
        return {
            "status": "ignored",
            "key": key,
            "world_id": None,
            "chunks": 0,
            "reason": "not a document key",
        }
    if objects.exists(key):
        return {
            "status": "kept",
            "key": key,
            "world_id": world_id,
            "chunks": 0,
            "reason": "the key still holds a current version",
        }
    with database.transaction() as conn:
        removed = documents.delete_document(conn, world_id, key)
    return {
        "status": "deleted" if removed is not None else "absent",
        "key": key,
        "world_id": world_id,
        "chunks": removed or 0,
        "reason": None,
    }
