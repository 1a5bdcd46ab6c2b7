"""The host agent end to end on moto (SQS, SNS, DynamoDB, CloudWatch) with a fake vLLM and a fake IMDSv2
on loopback: requests in, results out; poison messages dead-lettered with their reason; drains (registry
flag, Spot notice) that lose and duplicate nothing."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from host_agent.adapters.cloudwatch import CloudWatchMetrics
from host_agent.adapters.imds import InstanceMetadata
from host_agent.adapters.registry import HostRegistry
from host_agent.adapters.results import ResultPublisher
from host_agent.adapters.sqs import SqsRequestQueue
from host_agent.adapters.vllm import VllmClient
from host_agent.agent import HostAgent
from host_agent.collector import MetricsCollector
from host_agent.fakes.imds import FakeImds
from host_agent.fakes.nvml import ReplayNvml, load_jsonl
from host_agent.fakes.vllm_server import FakeVllmServer
from host_agent.metrics_loop import MetricsLoop
from host_agent.worker import Worker, WorkerSettings
from messages import fleet_pb2
from tests.unit.test_host_agent_metrics import DATA

REGION = "us-east-1"
MODEL = "Qwen/Qwen2.5-3B-Instruct-AWQ"


@dataclass
class Cloud:
    sqs: Any
    sns: Any
    dynamodb: Any
    cloudwatch: Any
    queue_url: str
    dlq_url: str
    topic_arn: str
    results_url: str
    reply_url: str
    reply_arn: str
    table: str = "fleet-hosts"

    def send(self, request: fleet_pb2.InferenceRequest) -> None:
        self.sqs.send_message(
            QueueUrl=self.queue_url, MessageBody=base64.b64encode(request.SerializeToString()).decode()
        )

    def send_raw(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def drain_queue(self, url: str, attributes: bool = False) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"] if attributes else []
            ).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(message)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def results(self, url: str | None = None) -> list[fleet_pb2.InferenceResult]:
        return [
            fleet_pb2.InferenceResult.FromString(base64.b64decode(m["Body"]))
            for m in self.drain_queue(url or self.results_url)
        ]

    def host_item(self, instance_id: str) -> dict[str, Any]:
        return dict(
            self.dynamodb.get_item(
                TableName=self.table, Key={"instance_id": {"S": instance_id}}, ConsistentRead=True
            ).get("Item", {})
        )

    def queue_depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        sqs, sns = session.client("sqs"), session.client("sns")
        dlq_url = sqs.create_queue(QueueName="gold-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        queue_url = sqs.create_queue(
            QueueName="gold-requests",
            Attributes={
                "VisibilityTimeout": "120",
                "RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "5"}}',
            },
        )["QueueUrl"]
        topic_arn = sns.create_topic(Name="results")["TopicArn"]
        results_url = sqs.create_queue(QueueName="results-subscriber")["QueueUrl"]
        results_arn = sqs.get_queue_attributes(QueueUrl=results_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=results_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        reply_url = sqs.create_queue(QueueName="story-replies")["QueueUrl"]
        reply_arn = sqs.get_queue_attributes(QueueUrl=reply_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        dynamodb = session.client("dynamodb")
        dynamodb.create_table(
            TableName="fleet-hosts",
            AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Cloud(
            sqs,
            sns,
            dynamodb,
            session.client("cloudwatch"),
            queue_url,
            dlq_url,
            topic_arn,
            results_url,
            reply_url,
            reply_arn,
        )


@pytest.fixture
def vllm() -> Iterator[FakeVllmServer]:
    server = FakeVllmServer(MODEL).start()
    yield server
    server.stop()


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds().start()
    yield server
    server.stop()


class RunningAgent:
    def __init__(self, agent: HostAgent, worker: Worker, instance_id: str) -> None:
        self.agent, self.worker, self.instance_id = agent, worker, instance_id
        self.thread = threading.Thread(target=agent.run, name=f"agent-{instance_id}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def start_agent(
    cloud: Cloud,
    vllm: FakeVllmServer,
    instance_id: str = "i-0000000000000000a",
    *,
    concurrency: int = 4,
    visibility_timeout_s: int = 120,
    drain_grace_s: float = 30.0,
    max_receive_count: int = 4,
    imds: FakeImds | None = None,
) -> RunningAgent:
    server = VllmClient(vllm.url)
    worker = Worker(
        SqsRequestQueue(cloud.sqs, cloud.queue_url, cloud.dlq_url),
        ResultPublisher(cloud.sns, cloud.sqs),
        server,
        WorkerSettings(
            tier="gold",
            instance_id=instance_id,
            model_id=MODEL,
            results_topic_arn=cloud.topic_arn,
            max_concurrency=concurrency,
            receive_wait_s=1,
            visibility_timeout_s=visibility_timeout_s,
            max_receive_count=max_receive_count,
            unhealthy_pause_s=0.05,
        ),
    )
    agent = HostAgent(
        model_id=MODEL,
        server=server,
        registry=HostRegistry(cloud.dynamodb, cloud.table, instance_id, "gold"),
        worker=worker,
        metrics=None,
        spot=InstanceMetadata(imds.url) if imds else None,
        heartbeat_interval_s=0.2,
        drain_grace_s=drain_grace_s,
        ready_retry_s=0.1,
        spot_poll_interval_s=0.1,
    )
    return RunningAgent(agent, worker, instance_id)


def request(n: int, **fields: Any) -> fleet_pb2.InferenceRequest:
    message = fleet_pb2.InferenceRequest(
        request_id=f"req-{n}", tier=fleet_pb2.TIER_GOLD, correlation_id=f"c-{n}", max_tokens=8, **fields
    )
    if not message.messages and not message.prompt:
        message.prompt = f"tell me about the lighthouse {n}"
    message.enqueued_at.FromDatetime(datetime.now(UTC))
    return message


def gather(into: list[Any], more: list[Any]) -> int:
    into.extend(more)
    return len(into)


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def collect_results(cloud: Cloud, expected: int, timeout_s: float = 20.0) -> list[fleet_pb2.InferenceResult]:
    found: list[fleet_pb2.InferenceResult] = []

    def enough() -> bool:
        found.extend(cloud.results())
        return len(found) >= expected

    wait_for(enough, timeout_s, f"{expected} results")
    time.sleep(0.3)
    found.extend(cloud.results())  # anything published twice would show up here
    return found


# ---------------------------------------------------------------------- requests in, results out


def test_requests_in_results_out(cloud: Cloud, vllm: FakeVllmServer) -> None:
    for n in range(20):
        cloud.send(request(n))
    chat = request(100, messages=[fleet_pb2.ChatMessage(role="user", content="who guards the gate")])
    cloud.send(chat)
    cloud.send(request(101, reply_to=cloud.reply_arn))
    running = start_agent(cloud, vllm)
    try:
        results = collect_results(cloud, 21)
        wait_for(lambda: cloud.queue_depth() == 0, what="queue emptied")
        item = cloud.host_item(running.instance_id)
        assert item["state"]["S"] == "ready" and "ready_at" in item and item["tier"]["S"] == "gold"
    finally:
        running.stop()
    by_id = {r.request_id: r for r in results}
    assert len(results) == len(by_id) == 21
    first = by_id["req-0"]
    assert first.text.startswith("echo: tell me about the lighthouse 0") and not first.error
    assert first.correlation_id == "c-0" and first.tier == fleet_pb2.TIER_GOLD and first.model == MODEL
    assert first.completion_tokens == 8 and first.prompt_tokens > 0
    assert first.host_instance_id == running.instance_id and first.queue_wait_s >= 0
    assert by_id["req-100"].text == "echo: who guards the gate"
    replies = [
        fleet_pb2.InferenceResult.FromString(base64.b64decode(m["Body"]))
        for m in cloud.drain_queue(cloud.reply_url)
    ]
    assert [r.request_id for r in replies] == ["req-101"]
    assert vllm.state.completions == 22 + 1  # and the ready check's test completion
    item = cloud.host_item(running.instance_id)
    assert (item["state"]["S"], item["in_flight"]["N"]) == ("drained", "0")  # SIGTERM-style stop drains


def test_results_carry_the_protobuf_message_attributes(cloud: Cloud, vllm: FakeVllmServer) -> None:
    cloud.send(request(1))
    running = start_agent(cloud, vllm)
    try:
        found: list[dict[str, Any]] = []
        wait_for(lambda: gather(found, cloud.drain_queue(cloud.results_url, attributes=True)) > 0)
    finally:
        running.stop()
    attributes = found[0]["MessageAttributes"]
    assert attributes["content_type"]["StringValue"] == "application/x-protobuf"
    assert attributes["message_type"]["StringValue"] == "aigame.fleet.v1.InferenceResult"


def test_long_generation_keeps_its_message_invisible(cloud: Cloud, vllm: FakeVllmServer) -> None:
    vllm.state.behaviour.delay_s = 1.8  # longer than the visibility timeout below
    cloud.send(request(7))
    running = start_agent(cloud, vllm, visibility_timeout_s=1, concurrency=2)
    try:
        results = collect_results(cloud, 1)
    finally:
        running.stop()
    assert [r.request_id for r in results] == ["req-7"]
    assert vllm.state.completions == 2  # the ready check and one generation: never redelivered


# ---------------------------------------------------------------------- failures


def test_poison_messages_land_in_the_dead_letter_queue_with_their_reason(
    cloud: Cloud, vllm: FakeVllmServer
) -> None:
    cloud.send_raw("this is not base64!")
    cloud.send_raw(base64.b64encode(b"\xff\xff\xff\xff").decode())
    cloud.send(fleet_pb2.InferenceRequest(prompt="no id"))
    cloud.send(request(3, reply_to="https://example.com/hook"))
    expired = request(4)
    expired.deadline.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
    cloud.send(expired)
    cloud.send(request(5, model="no-such-model"))
    running = start_agent(cloud, vllm)
    try:
        results = collect_results(cloud, 2)
        dead: list[dict[str, Any]] = []
        wait_for(
            lambda: gather(dead, cloud.drain_queue(cloud.dlq_url, attributes=True)) >= 4,
            what="4 dead letters",
        )
        wait_for(lambda: cloud.queue_depth() == 0, what="queue emptied")
    finally:
        running.stop()
    reasons = Counter(m["MessageAttributes"]["failure_reason"]["StringValue"] for m in dead)
    assert reasons == {"undecodable": 2, "invalid_request": 2}
    bodies = {m["Body"] for m in dead}
    assert "this is not base64!" in bodies  # the original body, for a replay after a fix
    assert all(m["MessageAttributes"]["failure_detail"]["StringValue"] for m in dead)
    errors = {r.request_id: r.error for r in results}
    assert "deadline" in errors["req-4"] and "passed before generation" in errors["req-4"]
    assert "rejected by vLLM" in errors["req-5"] and "does not exist" in errors["req-5"]
    assert all(not r.text for r in results)


def test_repeatedly_failing_request_goes_to_the_dead_letter_queue(cloud: Cloud, vllm: FakeVllmServer) -> None:
    running = start_agent(cloud, vllm, max_receive_count=3)
    try:
        wait_for(
            lambda: cloud.host_item(running.instance_id).get("state", {}).get("S") == "ready", what="ready"
        )
        vllm.state.behaviour.fail_status = 500
        cloud.send(request(9))
        dead: list[dict[str, Any]] = []
        wait_for(
            lambda: gather(dead, cloud.drain_queue(cloud.dlq_url, attributes=True)) > 0,
            what="dead letter",
        )
    finally:
        running.stop()
    attributes = dead[0]["MessageAttributes"]
    assert attributes["failure_reason"]["StringValue"] == "repeated_failure"
    assert "HTTP 500" in attributes["failure_detail"]["StringValue"]
    assert attributes["receive_count"]["StringValue"] == "3"
    assert attributes["request_id"]["StringValue"] == "req-9"
    assert cloud.results() == []


# ---------------------------------------------------------------------- drain


def test_drain_during_load_loses_and_duplicates_nothing(cloud: Cloud, vllm: FakeVllmServer) -> None:
    vllm.state.behaviour.delay_s = 0.4
    total = 40
    for n in range(total):
        cloud.send(request(n))
    # Grace shorter than a generation: some in-flight work finishes, the rest is handed back.
    first = start_agent(cloud, vllm, "i-00000000000000001", concurrency=6, drain_grace_s=0.2)
    results: list[fleet_pb2.InferenceResult] = []
    try:
        wait_for(lambda: gather(results, cloud.results()) >= 8, what="first results")
        cloud.dynamodb.update_item(  # what DrainHostStateMachine's MarkDraining does
            TableName=cloud.table,
            Key={"instance_id": {"S": first.instance_id}},
            UpdateExpression="SET drain_requested = :yes, drain_requested_at = :now",
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":now": {"S": datetime.now(UTC).isoformat()}},
        )
        wait_for(lambda: cloud.host_item(first.instance_id)["state"]["S"] == "drained", what="drained")
        item = cloud.host_item(first.instance_id)
        assert item["in_flight"]["N"] == "0"
        received_by_first = first.worker.counters.received
        time.sleep(0.6)  # a drained host takes nothing more
        assert first.worker.counters.received == received_by_first
        second = start_agent(cloud, vllm, "i-00000000000000002", concurrency=6)
        try:
            results.extend(collect_results(cloud, total - len(results), timeout_s=30))
        finally:
            second.stop()
    finally:
        first.stop()
    ids = Counter(r.request_id for r in results)
    assert set(ids) == {f"req-{n}" for n in range(total)}, "lost requests"
    assert max(ids.values()) == 1, f"duplicated: {[k for k, v in ids.items() if v > 1]}"
    assert cloud.queue_depth() == 0 and cloud.drain_queue(cloud.dlq_url) == []


def test_work_past_the_grace_is_handed_back_and_its_late_result_dropped(
    cloud: Cloud, vllm: FakeVllmServer
) -> None:
    vllm.state.behaviour.delay_s = 1.2
    cloud.send(request(1))
    cloud.send(request(2))
    first = start_agent(cloud, vllm, "i-00000000000000003", concurrency=2, drain_grace_s=0.1)
    try:
        wait_for(lambda: first.worker.in_flight == 2, what="both in flight")
        cloud.dynamodb.update_item(
            TableName=cloud.table,
            Key={"instance_id": {"S": first.instance_id}},
            UpdateExpression="SET drain_requested = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )
        wait_for(lambda: cloud.host_item(first.instance_id)["state"]["S"] == "drained", what="drained")
        assert first.worker.counters.handed_back == 2
        vllm.state.behaviour.delay_s = 0.0
        second = start_agent(cloud, vllm, "i-00000000000000004", concurrency=2)
        try:
            results = collect_results(cloud, 2)
            # The first host's generations end after the hand back; their results must not be published.
            wait_for(lambda: first.worker.counters.late_results_discarded == 2, what="late results dropped")
            results.extend(cloud.results())
        finally:
            second.stop()
    finally:
        first.stop()
    assert sorted(r.request_id for r in results) == ["req-1", "req-2"]
    assert {r.host_instance_id for r in results} == {"i-00000000000000004"}


def test_spot_notice_triggers_the_drain(cloud: Cloud, vllm: FakeVllmServer, imds: FakeImds) -> None:
    vllm.state.behaviour.delay_s = 0.3
    running = start_agent(cloud, vllm, imds.instance_id, imds=imds, drain_grace_s=30)
    try:
        wait_for(
            lambda: cloud.host_item(running.instance_id).get("state", {}).get("S") == "ready", what="ready"
        )
        for n in range(6):
            cloud.send(request(n))
        wait_for(lambda: running.worker.in_flight > 0, what="work in flight")
        imds.post_spot_notice()
        wait_for(lambda: cloud.host_item(running.instance_id)["state"]["S"] == "drained", what="drained")
        item = cloud.host_item(running.instance_id)
        assert item["drain_requested"]["BOOL"] is True and item["in_flight"]["N"] == "0"
        assert "/latest/meta-data/spot/instance-action" in imds.requests
        results = cloud.results()
    finally:
        running.stop()
    left = cloud.queue_depth()
    assert len(results) + left == 6 and len({r.request_id for r in results}) == len(results)


def test_a_host_asked_to_drain_before_ready_never_takes_work(cloud: Cloud, vllm: FakeVllmServer) -> None:
    vllm.state.behaviour.healthy = False
    cloud.dynamodb.put_item(
        TableName=cloud.table,
        Item={"instance_id": {"S": "i-0000000000000000c"}, "drain_requested": {"BOOL": True}},
    )
    cloud.send(request(1))
    running = start_agent(cloud, vllm, "i-0000000000000000c")
    try:
        wait_for(
            lambda: cloud.host_item(running.instance_id).get("state", {}).get("S") == "drained",
            what="drained",
        )
    finally:
        running.stop()
    assert cloud.queue_depth() == 1 and "ready_at" not in cloud.host_item(running.instance_id)


# ---------------------------------------------------------------------- metrics


def test_metrics_cycle_publishes_the_contract_names_to_cloudwatch(cloud: Cloud, vllm: FakeVllmServer) -> None:
    from host_agent.adapters.nvml import NvmlGpuReader

    gpus = NvmlGpuReader(ReplayNvml(load_jsonl(DATA / "nvml-load.jsonl")))
    clock = iter(float(t) for t in range(0, 1000, 60))
    loop = MetricsLoop(
        MetricsCollector(VllmClient(vllm.url).metrics_text, gpus.read, clock=lambda: next(clock)),
        CloudWatchMetrics(cloud.cloudwatch, "AiGame/Fleet", batch_size=7),
        tier="gold",
        instance_id="i-0abc",
        interval_s=60,
        gpu_sample_interval_s=5,
    )
    loop.cycle()
    for _ in range(20):
        vllm.state.observe(e2e_s=0.9, ttft_s=0.05, prompt_tokens=10, generation_tokens=60)
    vllm.state.restart()  # counters reset mid-interval: the agent carries on
    vllm.state.observe(e2e_s=1.2, ttft_s=0.05, prompt_tokens=10, generation_tokens=60)
    cycle = loop.cycle()
    assert cycle.published and not cycle.collection.missing
    listed = cloud.cloudwatch.list_metrics(Namespace="AiGame/Fleet")["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert names == {
        "GpuUtilization", "GpuMemoryUtilization", "GpuMemoryUsed", "GpuPowerDraw", "GpuTemperature", "KvCacheUsage",
        "RequestLatencyP95", "TimeToFirstTokenP95", "RunningRequests", "WaitingRequests", "TokensPerSecond",
        "RequestsCompleted",
    }  # fmt: skip
    dimension_sets = {tuple(sorted(d["Name"] for d in m["Dimensions"])) for m in listed}
    assert dimension_sets == {("Tier",), ("InstanceId", "Tier")}
    p95 = next(d for d in cycle.data if d["MetricName"] == "RequestLatencyP95")
    assert 1.0 < p95["Value"] <= 1.5  # only the request after the restart counts
