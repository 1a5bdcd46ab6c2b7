"""In-memory SQS queue and result sink with SQS' visibility semantics, for the benchmark (so that it
measures the agent, not an emulator) and fast unit tests.

Receiving costs the same whatever the queue holds (visible messages wait in a FIFO, hidden ones in a heap
by the time they reappear) and a waiting receive sleeps until a message can be visible, not in a polling
loop: what the benchmark counts against the agent is then the agent's own work.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from host_agent.ports import OutgoingResult, QueueMessage


@dataclass(slots=True)
class _Stored:
    message_id: str
    body: str
    sent_at: datetime
    receive_count: int = 0
    visible_at: float = 0.0
    handle: str | None = None


@dataclass
class MemoryQueue:
    messages: dict[str, _Stored] = field(default_factory=dict)
    dead_letters: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    receive_calls: int = 0
    delete_calls: int = 0
    visibility_calls: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        # Ids of messages that may be visible (entries go stale when a message is deleted or received
        # again; checked on the way out), and (visible_at, id) of hidden messages.
        self._visible: deque[str] = deque()
        self._hidden: list[tuple[float, str]] = []

    def send(self, body: str) -> str:
        return self.send_many([body])[0]

    def send_many(self, bodies: Sequence[str]) -> list[str]:
        now = datetime.now(UTC)
        with self._lock:
            ids = []
            for body in bodies:
                message_id = f"m-{next(self._ids)}"
                self.messages[message_id] = _Stored(message_id, body, now)
                self._visible.append(message_id)
                ids.append(message_id)
            self._lock.notify_all()
            return ids

    def _reveal(self, now: float) -> float | None:
        """Moves messages whose visibility timeout ran out to the visible FIFO; returns when the next
        hidden one reappears."""
        hidden = self._hidden
        while hidden and hidden[0][0] <= now:
            visible_at, message_id = heapq.heappop(hidden)
            stored = self.messages.get(message_id)
            if stored is not None and stored.visible_at == visible_at:
                self._visible.append(message_id)
        return hidden[0][0] if hidden else None

    def receive(self, max_messages: int, wait_s: int, visibility_timeout_s: int) -> list[QueueMessage]:
        deadline = time.monotonic() + wait_s
        with self._lock:
            self.receive_calls += 1
            while True:
                now = time.monotonic()
                next_reveal = self._reveal(now)
                ready: dict[str, _Stored] = {}
                while self._visible and len(ready) < min(max_messages, 10):
                    message_id = self._visible.popleft()
                    stored = self.messages.get(message_id)
                    if stored is not None and stored.visible_at <= now:
                        ready[message_id] = stored
                if ready or now >= deadline:
                    break
                wake_at = deadline if next_reveal is None else min(deadline, next_reveal)
                self._lock.wait(wake_at - now)
            received = []
            for stored in ready.values():
                stored.receive_count += 1
                stored.visible_at = now + visibility_timeout_s
                heapq.heappush(self._hidden, (stored.visible_at, stored.message_id))
                stored.handle = f"{stored.message_id}#{stored.receive_count}"
                received.append(
                    QueueMessage(
                        stored.message_id, stored.handle, stored.body, stored.receive_count, stored.sent_at
                    )
                )
            return received

    def _by_handle(self, handle: str) -> _Stored | None:
        message_id = handle.split("#", 1)[0]
        stored = self.messages.get(message_id)
        return stored if stored is not None and stored.handle == handle else None

    def delete(self, receipt_handles: Sequence[str]) -> list[str]:
        failed = []
        with self._lock:
            self.delete_calls += 1
            for handle in receipt_handles:
                stored = self._by_handle(handle)
                if stored is None:
                    failed.append(handle)
                    continue
                del self.messages[stored.message_id]
                self.deleted.append(stored.message_id)
            if not self.messages:
                self._lock.notify_all()  # only wait_empty waits for deletes; waking it earlier costs CPU
        return failed

    def change_visibility(self, receipt_handles: Sequence[str], timeout_s: int) -> list[str]:
        failed = []
        with self._lock:
            self.visibility_calls += 1
            now = time.monotonic()
            for handle in receipt_handles:
                stored = self._by_handle(handle)
                if stored is None:
                    failed.append(handle)
                    continue
                stored.visible_at = now + timeout_s
                if timeout_s <= 0:
                    self._visible.append(stored.message_id)
                else:
                    heapq.heappush(self._hidden, (stored.visible_at, stored.message_id))
            self._lock.notify_all()
        return failed

    def dead_letter(self, message: QueueMessage, attributes: Mapping[str, str]) -> None:
        with self._lock:
            self.dead_letters.append((message.body, dict(attributes)))

    def wait_empty(self, timeout_s: float) -> bool:
        """Blocks until every message was deleted (the benchmark's completion check, without polling)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self.messages, timeout_s)

    def __len__(self) -> int:
        with self._lock:
            return len(self.messages)


@dataclass
class MemorySink:
    published: list[tuple[str, str]] = field(default_factory=list)
    calls: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def publish(self, destination: str, results: Sequence[OutgoingResult]) -> list[str]:
        with self._lock:
            self.calls += 1
            self.published.extend((destination, r.body) for r in results)
        return []
