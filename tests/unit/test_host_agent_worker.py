"""The worker's guarantees over the in-memory queue and an in-process stand-in for vLLM: publish before
acknowledge, dead letters, bounded concurrency, batching, drain hand-back, visibility extension, and a
failing result sink."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from host_agent.errors import VllmUnavailableError
from host_agent.fakes.memory_queue import MemoryQueue, MemorySink
from host_agent.ports import OutgoingResult, RequestQueue, ResultSink
from host_agent.worker import Worker, WorkerSettings
from messages import fleet_pb2

MODEL = "Qwen/Qwen2.5-3B-Instruct-AWQ"
TOPIC = "arn:aws:sns:us-east-1:123456789012:results"


def body(n: int, **fields: Any) -> str:
    request = fleet_pb2.InferenceRequest(request_id=f"req-{n}", prompt=f"prompt {n}", max_tokens=4, **fields)
    request.enqueued_at.GetCurrentTime()
    return base64.b64encode(request.SerializeToString()).decode()


def result_of(encoded: str) -> fleet_pb2.InferenceResult:
    return fleet_pb2.InferenceResult.FromString(base64.b64decode(encoded))


class StubServer:
    """Answers like vLLM's /v1/completions after `delay_s`; records the peak concurrency."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()
        self.fail = False
        self._lock = threading.Lock()
        self.running = self.peak = self.calls = 0

    def generate(self, path: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.release.wait(10)
            if self.fail:
                raise VllmUnavailableError("HTTP 500")
            return {
                "model": payload["model"],
                "choices": [{"text": f"echo: {payload['prompt']}", "finish_reason": "length"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 4},
            }
        finally:
            with self._lock:
                self.running -= 1

    def healthy(self) -> bool:
        return True


class RecordingQueue(MemoryQueue):
    """Logs deletes in `events` (shared with RecordingSink) and the most messages held at once."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        super().__init__()
        self.events = events
        self.held = self.peak_held = 0

    def receive(self, max_messages: int, wait_s: int, visibility_timeout_s: int) -> list[Any]:
        received = super().receive(max_messages, wait_s, visibility_timeout_s)
        with self._lock:
            self.held += len(received)
            self.peak_held = max(self.peak_held, self.held)
        return received

    def delete(self, receipt_handles: Sequence[str]) -> list[str]:
        with self._lock:
            self.events.extend(("delete", h.split("#")[0]) for h in receipt_handles)
            self.held -= len(receipt_handles)
        return super().delete(receipt_handles)

    def change_visibility(self, receipt_handles: Sequence[str], timeout_s: int) -> list[str]:
        if timeout_s == 0:
            with self._lock:
                self.held -= len(receipt_handles)
        return super().change_visibility(receipt_handles, timeout_s)


class RecordingSink(MemorySink):
    def __init__(self, events: list[tuple[str, str]], ids: dict[str, str], delay_s: float = 0.0) -> None:
        super().__init__()
        self.events, self.ids, self.delay_s = events, ids, delay_s
        self.batch_sizes: list[int] = []
        self.raise_next = 0
        self.reject_next = 0

    def publish(self, destination: str, results: Sequence[OutgoingResult]) -> list[str]:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.raise_next:
            self.raise_next -= 1
            raise RuntimeError("sink broke")
        if self.reject_next:
            self.reject_next -= 1
            return [r.entry_id for r in results]
        self.batch_sizes.append(len(results))
        for r in results:
            request_id = result_of(r.body).request_id
            self.events.append(("publish", self.ids.get(request_id, request_id)))
        return super().publish(destination, results)


@contextmanager
def running(queue: RequestQueue, sink: ResultSink, server: StubServer, **settings: Any) -> Iterator[Worker]:
    worker = Worker(
        queue,
        sink,
        server,
        WorkerSettings(
            tier="gold",
            instance_id="i-test",
            model_id=MODEL,
            results_topic_arn=TOPIC,
            receive_wait_s=1,
            **{"max_concurrency": 4, **settings},
        ),
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.close(5)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def setup(
    n: int, *, sink_delay_s: float = 0.0
) -> tuple[RecordingQueue, RecordingSink, list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []
    queue = RecordingQueue(events)
    ids = dict(zip((f"req-{i}" for i in range(n)), queue.send_many([body(i) for i in range(n)]), strict=True))
    return queue, RecordingSink(events, ids, sink_delay_s), events


def test_every_message_is_deleted_only_after_its_result_was_published() -> None:
    queue, sink, events = setup(60)
    server = StubServer(delay_s=0.002)
    with running(queue, sink, server):
        assert queue.wait_empty(10)
    published = [m for kind, m in events if kind == "publish"]
    assert sorted(published) == sorted(queue.deleted) and len(set(published)) == 60
    for message_id in published:
        assert events.index(("publish", message_id)) < events.index(("delete", message_id))
    results = [result_of(b) for _, b in sink.published]
    assert all(r.text.startswith("echo: prompt") and r.completion_tokens == 4 for r in results)
    assert {d for d, _ in sink.published} == {TOPIC}


def test_concurrency_stays_within_the_limit_and_busy_outboxes_batch() -> None:
    queue, sink, _ = setup(80, sink_delay_s=0.02)
    server = StubServer(delay_s=0.005)
    with running(queue, sink, server, max_concurrency=6):
        assert queue.wait_empty(20)
    assert server.peak <= 6 and queue.peak_held <= 6
    assert max(sink.batch_sizes) <= 10 and sum(sink.batch_sizes) == 80
    assert len(sink.batch_sizes) < 80  # results that finish during a publish share the next call


def test_poison_goes_to_the_dead_letter_queue_and_is_deleted() -> None:
    queue, sink, _ = setup(0)
    queue.send("not base64!")
    queue.send(body(1, reply_to="https://example.com/hook"))
    queue.send(body(2))
    with running(queue, sink, StubServer()) as worker:
        assert queue.wait_empty(10)
        assert worker.counters.dead_lettered == 2
    reasons = sorted(a["failure_reason"] for _, a in queue.dead_letters)
    assert reasons == ["invalid_request", "undecodable"]
    assert "not base64!" in [b for b, _ in queue.dead_letters]
    assert [result_of(b).request_id for _, b in sink.published] == ["req-2"]


def test_unpublished_results_go_back_to_the_queue_and_a_broken_sink_strands_nothing() -> None:
    queue, sink, events = setup(2)
    sink.reject_next, sink.raise_next = 1, 1
    with running(queue, sink, StubServer(), max_concurrency=1, visibility_timeout_s=1) as worker:
        assert queue.wait_empty(10)
        assert worker.counters.errors.get("publish") == 1 and worker.counters.errors.get("unexpected") == 1
    # Each failed publish made its message visible again at once; nothing was deleted unpublished.
    assert sorted(m for kind, m in events if kind == "publish") == sorted(queue.deleted)
    assert sorted(result_of(b).request_id for _, b in sink.published) == ["req-0", "req-1"]


def test_drain_hands_back_running_work_and_drops_its_late_results() -> None:
    queue, sink, _ = setup(5)
    server = StubServer()
    server.release.clear()
    with running(queue, sink, server, max_concurrency=3) as worker:
        wait_for(lambda: server.running == 3)
        worker.stop_receiving()
        assert worker.hand_back_all() == 3
        assert worker.in_flight == 0 and worker.wait_idle(1)
        server.release.set()
        wait_for(lambda: worker.counters.late_results_discarded == 3)
        assert worker.counters.received == 3
    assert sink.published == [] and queue.deleted == []
    assert len(queue.receive(10, 0, 30)) == 5  # all of them visible again for another host


def test_vllm_failures_hand_back_until_the_receive_limit_then_dead_letter() -> None:
    queue, sink, _ = setup(1)
    server = StubServer()
    server.fail = True
    with running(queue, sink, server, max_receive_count=3, unhealthy_pause_s=0.01):
        assert queue.wait_empty(10)
    assert server.calls == 3 and sink.published == []
    assert [a["failure_reason"] for _, a in queue.dead_letters] == ["repeated_failure"]


def test_long_generations_keep_their_messages_invisible() -> None:
    queue, sink, _ = setup(2)
    server = StubServer(delay_s=1.5)
    with running(queue, sink, server, visibility_timeout_s=1) as worker:
        assert queue.wait_empty(10)
        assert worker.counters.received == 2
    assert server.calls == 2 and queue.visibility_calls >= 1  # extended, never redelivered


def test_closing_hands_back_what_was_received_but_not_started() -> None:
    queue, sink, _ = setup(0)
    server = StubServer()
    server.release.clear()
    worker = Worker(
        queue,
        sink,
        server,
        WorkerSettings("gold", "i-test", MODEL, TOPIC, max_concurrency=2, receive_wait_s=1),
    )
    worker.start()
    queue.send_many([body(n) for n in range(2)])
    wait_for(lambda: server.running == 2)
    worker.stop_receiving()
    worker.hand_back_all()
    server.release.set()
    worker.close(5)
    assert worker.in_flight == 0 and sink.published == []


def test_memory_queue_visibility() -> None:
    queue = MemoryQueue()
    first, second = queue.send_many(["a", "b"])
    got = queue.receive(1, 0, 60)
    assert [m.message_id for m in got] == [first]
    assert [m.message_id for m in queue.receive(10, 0, 0)] == [second]  # visible again at once
    assert [m.message_id for m in queue.receive(10, 0, 60)] == [second]
    assert queue.receive(10, 0, 60) == []
    assert queue.change_visibility([got[0].receipt_handle], 0) == []
    again = queue.receive(10, 0, 60)
    assert [(m.message_id, m.receive_count) for m in again] == [(first, 2)]
    assert queue.delete([got[0].receipt_handle]) == [got[0].receipt_handle]  # a stale handle
    assert queue.delete([again[0].receipt_handle]) == []
    assert not queue.wait_empty(0.01) and len(queue) == 1
    started = time.monotonic()
    assert queue.receive(10, 1, 60) == []  # waits the long poll out
    assert time.monotonic() - started >= 0.9
