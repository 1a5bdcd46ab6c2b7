import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_GOLD: _ClassVar[Tier]
    TIER_SILVER: _ClassVar[Tier]
    TIER_BRONZE: _ClassVar[Tier]
TIER_UNSPECIFIED: Tier
TIER_GOLD: Tier
TIER_SILVER: Tier
TIER_BRONZE: Tier

class InferenceRequest(_message.Message):
    __slots__ = ("request_id", "tier", "model", "prompt", "messages", "max_tokens", "temperature", "top_p", "stop", "reply_to", "correlation_id", "enqueued_at", "deadline")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tier: Tier
    model: str
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    max_tokens: int
    temperature: float
    top_p: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    reply_to: str
    correlation_id: str
    enqueued_at: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., model: _Optional[str] = ..., prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., reply_to: _Optional[str] = ..., correlation_id: _Optional[str] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class InferenceResult(_message.Message):
    __slots__ = ("request_id", "correlation_id", "tier", "model", "text", "finish_reason", "prompt_tokens", "completion_tokens", "queue_wait_s", "generation_s", "host_instance_id", "error", "completed_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_S_FIELD_NUMBER: _ClassVar[int]
    GENERATION_S_FIELD_NUMBER: _ClassVar[int]
    HOST_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    correlation_id: str
    tier: Tier
    model: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    queue_wait_s: float
    generation_s: float
    host_instance_id: str
    error: str
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., model: _Optional[str] = ..., text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., queue_wait_s: _Optional[float] = ..., generation_s: _Optional[float] = ..., host_instance_id: _Optional[str] = ..., error: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScalingDecision(_message.Message):
    __slots__ = ("tier", "decided_at", "action", "previous_desired", "desired", "required_hosts", "in_service", "pending", "draining", "backlog", "oldest_age_s", "gpu_utilization", "kv_cache_usage", "latency_p95_s", "panic", "dry_run", "reasons")
    TIER_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DESIRED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_HOSTS_FIELD_NUMBER: _ClassVar[int]
    IN_SERVICE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_USAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_S_FIELD_NUMBER: _ClassVar[int]
    PANIC_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    tier: Tier
    decided_at: _timestamp_pb2.Timestamp
    action: str
    previous_desired: int
    desired: int
    required_hosts: int
    in_service: int
    pending: int
    draining: int
    backlog: int
    oldest_age_s: float
    gpu_utilization: float
    kv_cache_usage: float
    latency_p95_s: float
    panic: bool
    dry_run: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tier: _Optional[_Union[Tier, str]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., previous_desired: _Optional[int] = ..., desired: _Optional[int] = ..., required_hosts: _Optional[int] = ..., in_service: _Optional[int] = ..., pending: _Optional[int] = ..., draining: _Optional[int] = ..., backlog: _Optional[int] = ..., oldest_age_s: _Optional[float] = ..., gpu_utilization: _Optional[float] = ..., kv_cache_usage: _Optional[float] = ..., latency_p95_s: _Optional[float] = ..., panic: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...
