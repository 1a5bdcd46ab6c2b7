"""The few errors the knowledge domain speaks in.

Adapters translate boto3/psycopg exceptions into these. The class names double as Step Functions error
names (a raised exception's class name becomes the ASL error), so `Retry`/`Catch` in
`statemachines/ingestion.asl.json` match on them: keep names and ASL in step.
"""

from __future__ import annotations


class KnowledgeError(Exception):
    """Base of every error the knowledge domain raises on purpose."""


class InvalidDocumentError(KnowledgeError):
    """The uploaded object can never be ingested as it is: it is quarantined with this reason."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class DatabaseUnavailableError(KnowledgeError):
    """PostgreSQL could not be reached or dropped the connection; retrying later is expected to succeed."""


class EmbeddingThrottledError(KnowledgeError):
    """The embedding service throttled us or is briefly unavailable; retry with backoff."""


class EmbeddingError(KnowledgeError):
    """The embedding service rejected the request for a reason retrying will not fix."""


class DocumentStoreError(KnowledgeError):
    """The object store failed in a way that is not the document's fault."""


class ConfigurationError(KnowledgeError):
    """The function's environment does not describe a usable deployment."""


class UnknownWorldError(KnowledgeError):
    """A query named a world the knowledge base does not hold (the API answers 404)."""

    def __init__(self, world_id: str) -> None:
        super().__init__(f"unknown world {world_id!r}")
        self.world_id = world_id


class ConceptNotFoundError(KnowledgeError):
    """A query named a concept its world does not hold (the API answers 404)."""

    def __init__(self, world_id: str, concept: str | int) -> None:
        super().__init__(f"no concept {concept!r} in world {world_id!r}")
        self.world_id = world_id
        self.concept = concept


class DeadLetterUnavailableError(KnowledgeError):
    """The dead-letter queue refused a poison message; the record is retried rather than lost."""


class InvalidQueryFileError(KnowledgeError):
    """A `kb search --batch` or `kb eval` file has a line that is not a valid query (the line is named)."""


class ChunkVectorsGoneError(KnowledgeError):
    """A re-upload meant to keep stored vectors of unchanged chunks, but they were replaced meanwhile (a
    newer version of the document was stored first): this run fails, the stored version stays."""


class WorldParentError(KnowledgeError):
    """A world's parent cannot be set as asked: `reason` is unknown_parent, cycle or too_deep (the API
    answers 409 for a cycle, 422 otherwise; ingestion quarantines the document)."""

    def __init__(self, world_id: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.world_id = world_id
        self.reason = reason
        self.message = message


class GenerationStateError(KnowledgeError):
    """A re-embedding step does not fit the generation's state: the model is live already, another
    rebuild is under way, or the generation was switched or abandoned meanwhile."""


class GenerationIncompleteError(KnowledgeError):
    """The switch found rows written during the rebuild without a new-generation vector: the workflow
    runs another catch-up pass and switches again."""


class GenerationStalledError(KnowledgeError):
    """A catch-up pass found every row of the previous pass still without a new vector: that pass wrote
    nothing (its batches failed), so another would loop forever; the rebuild is abandoned instead."""


class EmbeddingModelMismatchError(KnowledgeError):
    """The store's live vectors are of another model (or dimension) than this deployment embeds with.

    A deployment fault, never the caller's: the API answers 503 `embedding_model_mismatch` and searches
    nothing rather than compare vectors of two models."""

    def __init__(self, *, store_model: str, store_dimension: int, embedders: list[tuple[str, int]]) -> None:
        offered = ", ".join(f"{m} ({d})" for m, d in embedders) or "none"
        super().__init__(
            f"the knowledge base's live vectors are {store_dimension}-dimensional {store_model}; this "
            f"deployment embeds with {offered}"
        )
        self.store_model = store_model
        self.store_dimension = store_dimension


class RerankError(KnowledgeError):
    """The rerank model failed or rejected the request (`transient`: retrying may succeed)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class RerankUnavailableError(KnowledgeError):
    """A search asked for the second stage where the deployment configures no rerank model."""
