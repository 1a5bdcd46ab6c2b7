"""The SQS worker: requests from the tier's queue through the local vLLM to the results destination.

Guarantees (docs/host-contract.md):
- a message is deleted only after its result was published (or it was sent to the dead-letter queue);
- at most `max_concurrency` messages are held at once, and their visibility is extended while they run;
- on drain, receiving stops within one poll; whatever is handed back is made visible at once and its
  late result, if any, is discarded so that the host that takes it over is the only one to publish.

Threads: `max_concurrency` + 1 generation threads and one visibility keeper, and no thread per role in
between: a thread that finishes a request publishes and acknowledges it (in batches of up to ten with
whatever other threads finished meanwhile, so under load one SNS and one SQS call carry several
requests), then polls the queue for the capacity that freed and runs the first message it receives,
leaving the rest to idle threads; one thread polls at a time. Each hand-off between threads costs a
wake-up, and at a GPU host's request rates those wake-ups were most of the agent's CPU time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from host_agent.codec import (
    build_result,
    deadline_of,
    decode_request,
    encode_result,
    parse_generation,
    timestamp_to_datetime,
    vllm_call,
)
from host_agent.errors import (
    PoisonMessageError,
    QueueError,
    VllmRequestRejectedError,
    VllmUnavailableError,
)
from host_agent.ports import InferenceServer, OutgoingResult, QueueMessage, RequestQueue, ResultSink
from messages import fleet_pb2

log = logging.getLogger(__name__)

_OUTBOX_BATCH = 10
_REMEMBERED_RESULTS = 10_000


@dataclass(frozen=True)
class WorkerSettings:
    tier: str
    instance_id: str
    model_id: str
    results_topic_arn: str
    max_concurrency: int = 8
    receive_wait_s: int = 20
    visibility_timeout_s: int = 120
    max_receive_count: int = 4
    generation_timeout_s: float = 300.0
    unhealthy_pause_s: float = 2.0


class Stage(Enum):
    RUNNING = "running"  # held by a generation worker; may be handed back
    PUBLISHING = "publishing"  # its result is in the outbox; finishes normally
    HANDED_BACK = "handed_back"  # made visible again; any late result is discarded


@dataclass(slots=True)
class InFlight:
    message: QueueMessage
    visible_until: float
    stage: Stage = Stage.RUNNING
    request_id: str = ""


@dataclass(slots=True)
class _Completion:
    record: InFlight
    destination: str
    body: str


@dataclass
class WorkerCounters:
    received: int = 0
    published: int = 0
    dead_lettered: int = 0
    handed_back: int = 0
    duplicates: int = 0
    late_results_discarded: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        requests: RequestQueue,
        results: ResultSink,
        server: InferenceServer,
        settings: WorkerSettings,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._requests, self._results, self._server = requests, results, server
        self._settings = settings
        self._wall_clock, self._clock = wall_clock, clock
        self._lock = threading.Lock()
        # Generation threads with nothing to do wait on _work_ready; wait_idle waits on _idle.
        self._work_ready = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._in_flight: dict[str, InFlight] = {}
        self._published: OrderedDict[str, None] = OrderedDict()
        self._ready: deque[InFlight] = deque()  # received, not yet taken by a generation thread
        self._receiver_busy = False  # one generation thread at a time polls the queue
        # Completions waiting to be published; _outbox_busy is True while a thread is publishing them.
        self._outbox_lock = threading.Lock()
        self._outbox: deque[_Completion] = deque()
        self._outbox_busy = False
        self._receiving = threading.Event()
        self._stopped = threading.Event()
        self._server_healthy = threading.Event()
        self._server_healthy.set()
        self._threads: list[threading.Thread] = []
        self.counters = WorkerCounters()

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._receiving.set()
        # One thread more than the concurrency: a thread publishing a batch for others or polling the
        # queue never leaves a received message waiting for a thread.
        for n in range(self._settings.max_concurrency + 1):
            self._threads.append(
                threading.Thread(target=self._generate_loop, name=f"generate-{n}", daemon=True)
            )
        self._threads.append(threading.Thread(target=self._visibility_loop, name="visibility", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop_receiving(self) -> None:
        self._receiving.clear()
        with self._lock:
            self._work_ready.notify_all()

    @property
    def receiving(self) -> bool:
        return self._receiving.is_set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = self._clock() + timeout_s
        with self._lock:
            while self._in_flight:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.5))
        return True

    def hand_back_all(self) -> int:
        """Every message still generating or waiting for a thread goes back to the queue now (visibility 0)."""
        with self._lock:
            records = [r for r in self._in_flight.values() if r.stage is Stage.RUNNING]
            for record in records:
                record.stage = Stage.HANDED_BACK
        self._hand_back(records)
        return len(records)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stops every thread; call after the in-flight work was finished or handed back. Messages received
        but not started are handed back; threads still generating or polling get timeout_s in all to end."""
        self.stop_receiving()
        self._stopped.set()
        with self._lock:
            waiting = [r for r in self._ready if r.stage is Stage.RUNNING]
            self._ready.clear()
            for record in waiting:
                record.stage = Stage.HANDED_BACK
            self._work_ready.notify_all()
        self._hand_back(waiting)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ receiving and generation

    def _generate_loop(self) -> None:
        while (record := self._take_work()) is not None:
            self._process_safely(record)

    def _take_work(self) -> InFlight | None:
        """The next received message, polling the queue itself when none is waiting, no other thread polls
        and there is capacity. A thread that just finished a request thus usually receives and runs the
        next one itself: no wake-up of a receiver thread and no hand-off to a generation thread."""
        settings = self._settings
        while True:
            with self._lock:
                while True:
                    if self._stopped.is_set():
                        return None
                    if self._ready:
                        record = self._ready.popleft()
                        if record.stage is Stage.HANDED_BACK:
                            continue  # handed back by a drain while it waited
                        self._wake_poller_locked()
                        return record
                    capacity = settings.max_concurrency - len(self._in_flight)
                    if not self._receiver_busy and capacity > 0 and self._receiving.is_set():
                        self._receiver_busy = True
                        break
                    self._work_ready.wait()
            records: list[InFlight] = []
            try:
                records = self._receive(capacity)
            finally:
                with self._lock:
                    self._receiver_busy = False
                    if records:
                        self._ready.extend(records[1:])
                        if len(records) > 1:
                            self._work_ready.notify(len(records) - 1)
                        self._wake_poller_locked()
            if records:
                return records[0]

    def _wake_poller_locked(self) -> None:
        """Called, holding the lock, by a thread about to generate: if there is capacity and nobody polls
        the queue, an idle thread takes that over."""
        if (
            not self._receiver_busy
            and len(self._in_flight) < self._settings.max_concurrency
            and self._receiving.is_set()
        ):
            self._work_ready.notify()

    def _receive(self, capacity: int) -> list[InFlight]:
        settings = self._settings
        if not self._server_healthy.is_set():
            if self._server.healthy():
                self._server_healthy.set()
            else:
                self._stopped.wait(settings.unhealthy_pause_s)
                return []
        try:
            messages = self._requests.receive(
                capacity, settings.receive_wait_s, settings.visibility_timeout_s
            )
        except QueueError as exc:
            self._count_error("receive")
            log.warning("receive failed: %s", exc)
            self._stopped.wait(1.0)
            return []
        except Exception:  # the polling thread is a generation thread: keep it, and keep polling
            self._count_error("receive")
            log.exception("receive failed unexpectedly")
            self._stopped.wait(1.0)
            return []
        if not messages:
            return []
        if not self._receiving.is_set():
            # Drain began during the long poll: these were never started, so they go straight back.
            self._change_visibility([m.receipt_handle for m in messages], 0)
            self.counters.handed_back += len(messages)
            return []
        now = self._clock()
        records = [InFlight(message, now + settings.visibility_timeout_s) for message in messages]
        with self._lock:
            for record in records:
                self._in_flight[record.message.receipt_handle] = record
            self.counters.received += len(messages)
        return records

    def _process_safely(self, record: InFlight) -> None:
        try:
            self._process(record)
        except Exception:  # one bad request must not take a generation thread down with it
            log.exception("unexpected failure on message %s; handing it back", record.message.message_id)
            self._count_error("unexpected")
            self._release_and_hand_back(record)

    def _process(self, record: InFlight) -> None:
        settings = self._settings
        message = record.message
        try:
            request = decode_request(message.body)
        except PoisonMessageError as exc:
            self._dead_letter(record, exc.reason, exc.detail)
            return
        record.request_id = request.request_id
        with self._lock:
            already_published = request.request_id in self._published
        if already_published:
            # A redelivery of a request whose result this host already published (its delete was lost).
            self.counters.duplicates += 1
            self._finish([record], delete=True, wake=False)
            return
        started = self._wall_clock()
        enqueued = timestamp_to_datetime(request.enqueued_at) if request.HasField("enqueued_at") else None
        queue_wait_s = (started - (enqueued or message.sent_at or started)).total_seconds()
        deadline = deadline_of(request)

        def result(**fields: object) -> fleet_pb2.InferenceResult:
            return build_result(
                request,
                tier=settings.tier,
                instance_id=settings.instance_id,
                model=request.model or settings.model_id,
                completed_at=self._wall_clock(),
                queue_wait_s=queue_wait_s,
                **fields,  # type: ignore[arg-type]
            )

        if deadline is not None and started >= deadline:
            self._complete(
                record, request, result(error=f"deadline {deadline.isoformat()} passed before generation")
            )
            return
        path, payload = vllm_call(request, settings.model_id)
        timeout_s = settings.generation_timeout_s
        if deadline is not None:
            timeout_s = max(0.001, min(timeout_s, (deadline - started).total_seconds()))
        begun = self._clock()
        try:
            answer = self._server.generate(path, payload, timeout_s)
        except VllmRequestRejectedError as exc:
            self._complete(
                record, request, result(error=f"rejected by vLLM: {exc}", generation_s=self._clock() - begun)
            )
            return
        except VllmUnavailableError as exc:
            if deadline is not None and self._wall_clock() >= deadline:
                self._complete(
                    record,
                    request,
                    result(error=f"deadline {deadline.isoformat()} passed during generation: {exc}"),
                )
            elif message.receive_count >= settings.max_receive_count:
                self._dead_letter(record, "repeated_failure", f"attempt {message.receive_count}: {exc}")
            else:
                log.warning("vLLM failed on %s, handing it back: %s", request.request_id, exc)
                self._count_error("vllm_unavailable")
                self._server_healthy.clear()
                self._release_and_hand_back(record)
            return
        generation = parse_generation(path, answer)
        self._complete(record, request, result(generation=generation, generation_s=self._clock() - begun))

    def _complete(
        self, record: InFlight, request: fleet_pb2.InferenceRequest, result: fleet_pb2.InferenceResult
    ) -> None:
        with self._lock:
            if record.stage is Stage.HANDED_BACK:
                # Handed back during drain; the host that took it over publishes its result.
                self.counters.late_results_discarded += 1
                return
            record.stage = Stage.PUBLISHING
        destination = request.reply_to or self._settings.results_topic_arn
        self._send_to_outbox(_Completion(record, destination, encode_result(result)))

    def _dead_letter(self, record: InFlight, reason: str, detail: str) -> None:
        message = record.message
        attributes = {
            "failure_reason": reason,
            "failure_detail": detail,
            "source_queue_tier": self._settings.tier,
            "receive_count": str(message.receive_count),
            "host_instance_id": self._settings.instance_id,
            "original_message_id": message.message_id,
        }
        if record.request_id:
            attributes["request_id"] = record.request_id
        with self._lock:
            if record.stage is Stage.HANDED_BACK:
                return
            record.stage = Stage.PUBLISHING
        try:
            self._requests.dead_letter(message, attributes)
        except QueueError as exc:
            log.error("dead-letter send failed for %s, handing it back: %s", message.message_id, exc)
            self._count_error("dead_letter")
            self._release_and_hand_back(record)
            return
        log.warning("message %s dead-lettered: %s: %s", message.message_id, reason, detail)
        self.counters.dead_lettered += 1
        self._finish([record], delete=True, wake=False)

    # ------------------------------------------------------------------ acknowledging

    def _send_to_outbox(self, completion: _Completion) -> None:
        """Queues the completion; if no thread is publishing, this one publishes until the outbox is empty
        (its own result first, then whatever other threads queued while it was publishing)."""
        with self._outbox_lock:
            self._outbox.append(completion)
            if self._outbox_busy:
                return
            self._outbox_busy = True
        try:
            first = True
            while True:
                with self._outbox_lock:
                    if not self._outbox:
                        self._outbox_busy = False
                        return  # to _take_work, which uses the capacity the batches freed
                    batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), _OUTBOX_BATCH))]
                if not first:
                    with self._lock:  # more to publish first: another thread uses the capacity freed so far
                        self._wake_poller_locked()
                first = False
                self._publish_safely(batch)
        except BaseException:
            with self._outbox_lock:
                self._outbox_busy = False  # the next completion takes over what is left
            raise

    def _publish_safely(self, batch: list[_Completion]) -> None:
        try:
            self._publish(batch)
        except Exception:  # a failing sink must not strand the other threads' results in the outbox
            log.exception("publishing %d results failed; their messages go back to the queue", len(batch))
            self._count_error("unexpected", len(batch))
            with self._lock:
                records = [c.record for c in batch if c.record.message.receipt_handle in self._in_flight]
            self._finish(records, delete=False, wake=False)

    def _publish(self, batch: list[_Completion]) -> None:
        by_destination: dict[str, list[tuple[str, _Completion]]] = {}
        for index, completion in enumerate(batch):
            by_destination.setdefault(completion.destination, []).append((str(index), completion))
        published: list[InFlight] = []
        unpublished: list[InFlight] = []
        for destination, entries in by_destination.items():
            failed = set(self._results.publish(destination, [OutgoingResult(i, c.body) for i, c in entries]))
            for entry_id, completion in entries:
                (unpublished if entry_id in failed else published).append(completion.record)
        if unpublished:
            log.warning("%d results not published; their messages go back to the queue", len(unpublished))
            self._count_error("publish", len(unpublished))
            self._finish(unpublished, delete=False, wake=False)
        if published:
            with self._lock:
                for record in published:
                    self._published[record.request_id] = None
                while len(self._published) > _REMEMBERED_RESULTS:
                    self._published.popitem(last=False)
            self.counters.published += len(published)
            self._finish(published, delete=True, wake=False)

    def _finish(self, records: list[InFlight], *, delete: bool, wake: bool = True) -> None:
        """Acknowledges (delete) or hands back (visibility 0), then forgets the records. wake=False: the
        caller is a generation thread going straight back to _take_work, which polls for the capacity
        freed here itself (waking another thread for it would cost a wake-up for nothing)."""
        handles = [r.message.receipt_handle for r in records]
        if delete:
            failed = self._requests.delete(handles)
            if failed:
                # The message comes back after its visibility timeout; this host remembers the request and
                # deletes the redelivery without publishing twice.
                log.warning("%d deletes failed after publishing", len(failed))
                self._count_error("delete", len(failed))
        else:
            self._change_visibility(handles, 0)
            self.counters.handed_back += len(handles)
        with self._lock:
            for handle in handles:
                self._in_flight.pop(handle, None)
            if not self._in_flight:
                self._idle.notify_all()
            if wake:
                self._wake_poller_locked()

    def _release_and_hand_back(self, record: InFlight) -> None:
        """From the record's generation thread (which then takes new work itself)."""
        with self._lock:
            if record.stage is Stage.HANDED_BACK:
                return
            record.stage = Stage.HANDED_BACK
        self._hand_back([record], wake=False)

    def _hand_back(self, records: list[InFlight], *, wake: bool = True) -> None:
        if records:
            self._finish(records, delete=False, wake=wake)

    def _change_visibility(self, handles: list[str], timeout_s: int) -> None:
        failed = self._requests.change_visibility(handles, timeout_s)
        if failed:
            self._count_error("visibility", len(failed))
            log.warning("visibility change to %ds failed for %d messages", timeout_s, len(failed))

    # ------------------------------------------------------------------ visibility

    def _visibility_loop(self) -> None:
        """Extends the visibility of messages whose generation outlives half their timeout."""
        timeout_s = self._settings.visibility_timeout_s
        period = max(0.05, min(10.0, timeout_s / 4))
        while not self._stopped.wait(period):
            now = self._clock()
            with self._lock:
                due = [
                    r
                    for r in self._in_flight.values()
                    if r.stage is not Stage.HANDED_BACK and r.visible_until - now < timeout_s / 2
                ]
            if not due:
                continue
            failed = set(self._requests.change_visibility([r.message.receipt_handle for r in due], timeout_s))
            with self._lock:
                for record in due:
                    if record.message.receipt_handle not in failed:
                        record.visible_until = now + timeout_s

    def _count_error(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.counters.errors[kind] = self.counters.errors.get(kind, 0) + n
