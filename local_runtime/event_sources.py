"""SQS → Lambda event source mappings and SNS → SQS subscriptions of template.yaml, emulated locally.

moto stores the queues and delivers SNS messages to subscribed queues (raw delivery and message attributes
included), but its CloudFormation creates neither the subscriptions nor a faithful poller: its own mapping
invokes the function inside SendMessage, one message at a time, and ignores partial batch responses. Here,
as the Lambda service does for a standard queue:

- every `AWS::SNS::Subscription` with protocol sqs is made through the SNS API, with its attributes;
- `drain()` polls each mapped queue: up to BatchSize messages with their system and message attributes,
  invoked as the Lambda SQS event (through moto's Lambda, so through the in-process handlers);
- a successful invocation deletes its batch, except the `batchItemFailures` it returns when the mapping has
  ReportBatchItemFailures; a function error deletes nothing;
- what was not deleted becomes visible again after the queue's VisibilityTimeout times `retry_delay_scale`
  (0: at once); moto's SQS counts receives and moves a message past maxReceiveCount to the redrive queue.

Not emulated: batching windows, concurrency (one batch at a time, in the caller's thread), and polling in
the background: tests and commands call `drain()` after publishing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

_LAMBDA_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
)


@dataclass(frozen=True)
class Mapping:
    function_name: str
    queue_url: str
    queue_arn: str
    batch_size: int
    report_item_failures: bool
    visibility_timeout: int


@dataclass
class Delivery:
    """One invocation: which messages it carried and what became of them."""

    function_name: str
    message_ids: list[str]
    failed_ids: list[str] = field(default_factory=list)
    errored: bool = False
    response: Any = None


class EventSources:
    def __init__(self, cloud: Any, *, region: str) -> None:
        self._cloud = cloud
        self._region = region
        self.mappings: list[Mapping] = []
        self.deliveries: list[Delivery] = []

    def connect(self) -> None:
        """Subscribe the template's SQS subscriptions and read its event source mappings."""
        import boto3

        self._lambda = boto3.client("lambda", region_name=self._region)
        cloud = self._cloud
        for resource in cloud.template.full["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::SNS::Subscription" and props.get("Protocol") == "sqs":
                attributes = {
                    name: str(props[name]).lower()
                    if isinstance(props[name], bool)
                    else json.dumps(props[name])
                    for name in ("RawMessageDelivery", "FilterPolicy", "RedrivePolicy")
                    if name in props
                }
                cloud.sns.subscribe(
                    TopicArn=cloud.physical_ids[props["TopicArn"]["Ref"]],
                    Protocol="sqs",
                    Endpoint=self._queue_arn(self._queue_url(props["Endpoint"])),
                    Attributes=attributes,
                )
            elif resource["Type"] == "AWS::Lambda::EventSourceMapping" and self._is_queue(
                props["EventSourceArn"]
            ):
                self._add_mapping(props)

    def _is_queue(self, source: Any) -> bool:
        if isinstance(source, dict) and "Fn::GetAtt" in source:
            target = self._cloud.template.full["Resources"][source["Fn::GetAtt"][0]]
            return bool(target["Type"] == "AWS::SQS::Queue")
        return ":sqs:" in str(source)

    def _add_mapping(self, props: dict[str, Any]) -> None:
        if str(props.get("Enabled", True)).lower() == "false":
            return
        queue_url = self._queue_url(props["EventSourceArn"])
        attributes = self._cloud.sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["VisibilityTimeout", "FifoQueue"]
        )["Attributes"]
        batch_size = int(props.get("BatchSize", 10))
        check_sqs_batch_size(
            batch_size,
            batching_window_s=int(props.get("MaximumBatchingWindowInSeconds", 0)),
            fifo=attributes.get("FifoQueue") == "true",
        )
        visibility = attributes["VisibilityTimeout"]
        self.mappings.append(
            Mapping(
                function_name=self._cloud.physical_ids[props["FunctionName"]["Ref"]],
                queue_url=queue_url,
                queue_arn=self._queue_arn(queue_url),
                batch_size=batch_size,
                report_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                visibility_timeout=int(visibility),
            )
        )

    def _queue_url(self, value: Any) -> str:
        """Queue URL of `{"Fn::GetAtt": [queue, "Arn"]}`, `{"Ref": queue}` or a literal ARN."""
        if isinstance(value, dict):
            logical_id = value["Fn::GetAtt"][0] if "Fn::GetAtt" in value else value["Ref"]
            physical = str(self._cloud.physical_ids[logical_id])
            if physical.startswith("https://"):
                return physical
            value = physical
        name = str(value).rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        return str(self._cloud.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def _queue_arn(self, queue_url: str) -> str:
        attributes = self._cloud.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    # ------------------------------------------------------------ polling
    def drain(self, *, max_batches: int = 1000) -> list[Delivery]:
        """Poll every mapping until no queue has a visible message; returns this call's deliveries."""
        delivered: list[Delivery] = []
        while len(delivered) < max_batches:
            round_ = [d for m in self.mappings if (d := self.poll(m)) is not None]
            if not round_:
                return delivered
            delivered.extend(round_)
        raise RuntimeError(f"queues still busy after {max_batches} batches: is a message failing forever?")

    def poll(self, mapping: Mapping) -> Delivery | None:
        """Receive one batch and invoke the function with it; None when the queue has nothing visible."""
        sqs = self._cloud.sqs
        messages = sqs.receive_message(
            QueueUrl=mapping.queue_url,
            MaxNumberOfMessages=min(mapping.batch_size, 10),
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return None
        event = {"Records": [self._record(mapping, m) for m in messages]}
        response = self._lambda.invoke(FunctionName=mapping.function_name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        delivery = Delivery(mapping.function_name, [m["MessageId"] for m in messages], response=payload)
        if "FunctionError" in response:
            delivery.errored = True
            delivery.failed_ids = list(delivery.message_ids)
        elif mapping.report_item_failures and isinstance(payload, dict):
            delivery.failed_ids = [f["itemIdentifier"] for f in payload.get("batchItemFailures") or []]
        for message in messages:
            if message["MessageId"] not in delivery.failed_ids:
                sqs.delete_message(QueueUrl=mapping.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                delay = int(mapping.visibility_timeout * self._cloud.retry_delay_scale)
                sqs.change_message_visibility(
                    QueueUrl=mapping.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=delay,
                )
        self.deliveries.append(delivery)
        return delivery

    def _record(self, mapping: Mapping, message: dict[str, Any]) -> dict[str, Any]:
        """A received message in the shape the Lambda service puts in an SQS event."""
        attributes = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {k: str(attributes[k]) for k in _LAMBDA_ATTRIBUTES if k in attributes},
            "messageAttributes": {
                name: {
                    "dataType": value["DataType"],
                    "stringValue": value.get("StringValue"),
                    "binaryValue": _b64(value.get("BinaryValue")),
                    "stringListValues": [],
                    "binaryListValues": [],
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody")
            or hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": mapping.queue_arn,
            "awsRegion": self._region,
        }


class EventSourceMappingError(ValueError):
    """The template's event source mapping is one that Lambda's CreateEventSourceMapping refuses."""


def check_sqs_batch_size(batch_size: int, *, batching_window_s: int, fifo: bool) -> None:
    """Lambda's rules for an SQS mapping's BatchSize: 1-10 for a FIFO queue; 1-10,000 for a standard one,
    above 10 only with a batching window (MaximumBatchingWindowInSeconds of at least 1)."""
    largest = 10 if fifo or batching_window_s < 1 else 10_000
    if not 1 <= batch_size <= largest:
        kind = (
            "a FIFO queue"
            if fifo
            else "a standard queue" + ("" if batching_window_s else " without a batching window")
        )
        raise EventSourceMappingError(f"BatchSize {batch_size} is outside 1-{largest}, the range for {kind}")


def _b64(value: bytes | None) -> str | None:
    return base64.b64encode(value).decode() if value is not None else None
