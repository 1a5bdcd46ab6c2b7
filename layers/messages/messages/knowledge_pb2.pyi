import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentIngested(_message.Message):
    __slots__ = ("world_id", "document_id", "s3_key", "title", "content_sha256", "chunk_count", "embedding_model", "embedding_dimension", "concepts_changed", "pii_redactions", "replaced_previous_version", "ingested_at", "event_id")
    class PiiRedactionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WORLD_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    S3_KEY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIMENSION_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PII_REDACTIONS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    world_id: str
    document_id: int
    s3_key: str
    title: str
    content_sha256: str
    chunk_count: int
    embedding_model: str
    embedding_dimension: int
    concepts_changed: _containers.RepeatedScalarFieldContainer[str]
    pii_redactions: _containers.ScalarMap[str, int]
    replaced_previous_version: bool
    ingested_at: _timestamp_pb2.Timestamp
    event_id: str
    def __init__(self, world_id: _Optional[str] = ..., document_id: _Optional[int] = ..., s3_key: _Optional[str] = ..., title: _Optional[str] = ..., content_sha256: _Optional[str] = ..., chunk_count: _Optional[int] = ..., embedding_model: _Optional[str] = ..., embedding_dimension: _Optional[int] = ..., concepts_changed: _Optional[_Iterable[str]] = ..., pii_redactions: _Optional[_Mapping[str, int]] = ..., replaced_previous_version: _Optional[bool] = ..., ingested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ...) -> None: ...

class StoryEvent(_message.Message):
    __slots__ = ("event_id", "world_id", "occurred_at", "kind", "summary", "attributes", "concepts", "relations", "source")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORLD_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    world_id: str
    occurred_at: _timestamp_pb2.Timestamp
    kind: str
    summary: str
    attributes: _containers.ScalarMap[str, str]
    concepts: _containers.RepeatedCompositeFieldContainer[ConceptChange]
    relations: _containers.RepeatedCompositeFieldContainer[ConceptRelation]
    source: str
    def __init__(self, event_id: _Optional[str] = ..., world_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., summary: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., concepts: _Optional[_Iterable[_Union[ConceptChange, _Mapping]]] = ..., relations: _Optional[_Iterable[_Union[ConceptRelation, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class ConceptChange(_message.Message):
    __slots__ = ("name", "kind", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    description: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ConceptRelation(_message.Message):
    __slots__ = ("source", "target", "type", "description")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    type: str
    description: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
