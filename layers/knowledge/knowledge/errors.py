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
