"""Wire formats: base64 protobuf InferenceRequest in, OpenAI-compatible vLLM calls, base64 protobuf
InferenceResult out. No I/O here."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from host_agent.errors import PoisonMessageError
from messages import fleet_pb2

CONTENT_TYPE = "application/x-protobuf"
RESULT_MESSAGE_TYPE = "aigame.fleet.v1.InferenceResult"
RESULT_ATTRIBUTES = {
    "content_type": {"DataType": "String", "StringValue": CONTENT_TYPE},
    "message_type": {"DataType": "String", "StringValue": RESULT_MESSAGE_TYPE},
}
TIER_NUMBERS = {"gold": fleet_pb2.TIER_GOLD, "silver": fleet_pb2.TIER_SILVER, "bronze": fleet_pb2.TIER_BRONZE}
COMPLETIONS_PATH = "/v1/completions"
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str


def decode_request(body: str) -> fleet_pb2.InferenceRequest:
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PoisonMessageError("undecodable", f"body is not base64: {exc}") from exc
    request = fleet_pb2.InferenceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise PoisonMessageError("undecodable", f"body is not an InferenceRequest: {exc}") from exc
    if not request.request_id:
        raise PoisonMessageError("invalid_request", "request_id is empty")
    if not request.prompt and not request.messages:
        raise PoisonMessageError("invalid_request", "neither prompt nor messages given")
    if request.reply_to and not is_result_destination(request.reply_to):
        raise PoisonMessageError(
            "invalid_request", f"reply_to is not an SNS topic or SQS queue ARN: {request.reply_to!r}"
        )
    return request


def is_result_destination(arn: str) -> bool:
    parts = arn.split(":")
    return len(parts) == 6 and parts[0] == "arn" and parts[2] in ("sns", "sqs") and all(parts[3:])


def encode_result(result: fleet_pb2.InferenceResult) -> str:
    return base64.b64encode(result.SerializeToString()).decode("ascii")


def deadline_of(request: fleet_pb2.InferenceRequest) -> datetime | None:
    return timestamp_to_datetime(request.deadline) if request.HasField("deadline") else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# protobuf's Timestamp.ToDatetime/FromDatetime are pure Python and cost several microseconds each; these
# do the same exact arithmetic (microsecond precision, naive datetimes read as UTC) with timedelta.
def timestamp_to_datetime(timestamp: Timestamp) -> datetime:
    return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=timestamp.nanos // 1000)


def set_timestamp(timestamp: Timestamp, moment: datetime) -> None:
    delta = (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)) - _EPOCH
    timestamp.seconds = delta.days * 86400 + delta.seconds
    timestamp.nanos = delta.microseconds * 1000


def vllm_call(request: fleet_pb2.InferenceRequest, default_model: str) -> tuple[str, dict[str, Any]]:
    """(path, JSON body). Zero max_tokens, temperature and top_p mean "the server's default" (proto3 cannot
    tell an unset number from zero; greedy decoding is asked for with a tiny temperature)."""
    payload: dict[str, Any] = {"model": request.model or default_model}
    if request.max_tokens > 0:
        payload["max_tokens"] = request.max_tokens
    if request.temperature > 0:
        payload["temperature"] = request.temperature
    if request.top_p > 0:
        payload["top_p"] = request.top_p
    if request.stop:
        payload["stop"] = list(request.stop)
    if request.messages:
        payload["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        return CHAT_COMPLETIONS_PATH, payload
    payload["prompt"] = request.prompt
    return COMPLETIONS_PATH, payload


def parse_generation(path: str, body: dict[str, Any]) -> Generation:
    choice = (body.get("choices") or [{}])[0]
    if path == CHAT_COMPLETIONS_PATH:
        text = (choice.get("message") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    usage = body.get("usage") or {}
    return Generation(
        text=text,
        finish_reason=choice.get("finish_reason") or "",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        model=body.get("model") or "",
    )


def build_result(
    request: fleet_pb2.InferenceRequest,
    *,
    tier: str,
    instance_id: str,
    model: str,
    completed_at: datetime,
    queue_wait_s: float,
    generation_s: float = 0.0,
    generation: Generation | None = None,
    error: str = "",
) -> fleet_pb2.InferenceResult:
    result = fleet_pb2.InferenceResult(
        request_id=request.request_id,
        correlation_id=request.correlation_id,
        tier=TIER_NUMBERS[tier],
        model=(generation.model if generation and generation.model else model),
        queue_wait_s=max(queue_wait_s, 0.0),
        generation_s=generation_s,
        host_instance_id=instance_id,
        error=error,
    )
    if generation is not None and not error:
        result.text = generation.text
        result.finish_reason = generation.finish_reason
        result.prompt_tokens = generation.prompt_tokens
        result.completion_tokens = generation.completion_tokens
    set_timestamp(result.completed_at, completed_at)
    return result
