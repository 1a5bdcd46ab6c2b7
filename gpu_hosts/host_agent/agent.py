"""The host agent service: registry lifecycle (booting → ready → draining → drained), heartbeats, the
worker, the metrics loop and the Spot notice watcher, wired together."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from host_agent.codec import COMPLETIONS_PATH
from host_agent.drain import DrainReason, HostState, Lifecycle
from host_agent.errors import (
    InstanceMetadataError,
    RegistryError,
    VllmRequestRejectedError,
    VllmUnavailableError,
)
from host_agent.metrics_loop import MetricsLoop
from host_agent.ports import InferenceServer, Registry, SpotNotices
from host_agent.worker import Worker

log = logging.getLogger(__name__)


def check_ready(server: InferenceServer, model_id: str, timeout_s: float = 60.0) -> tuple[bool, str]:
    """vLLM answers /health and completes one token with the tier's model (the weights are loaded)."""
    if not server.healthy():
        return False, "vLLM /health does not answer 200"
    try:
        server.generate(COMPLETIONS_PATH, {"model": model_id, "prompt": "ping", "max_tokens": 1}, timeout_s)
    except (VllmUnavailableError, VllmRequestRejectedError) as exc:
        return False, f"test completion with {model_id} failed: {exc}"
    return True, "ready"


class HostAgent:
    def __init__(
        self,
        *,
        model_id: str,
        server: InferenceServer,
        registry: Registry,
        worker: Worker,
        metrics: MetricsLoop | None,
        spot: SpotNotices | None,
        heartbeat_interval_s: float = 10.0,
        drain_grace_s: float = 90.0,
        ready_retry_s: float = 5.0,
        spot_poll_interval_s: float = 5.0,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model_id, self._server, self._registry = model_id, server, registry
        self._worker, self._metrics, self._spot = worker, metrics, spot
        self._heartbeat_s, self._ready_retry_s = heartbeat_interval_s, ready_retry_s
        self._spot_poll_s = spot_poll_interval_s
        self._wall_clock, self._clock = wall_clock, clock
        self.lifecycle = Lifecycle(grace_s=drain_grace_s)
        self._drain_requests: list[DrainReason] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()

    # ------------------------------------------------------------------ events from other threads

    def request_drain(self, reason: DrainReason) -> None:
        with self._lock:
            self._drain_requests.append(reason)
        self._wake.set()

    def stop(self) -> None:
        """Ends run() once draining settled (SIGTERM asks for a drain first)."""
        self._stop.set()
        self._wake.set()

    # ------------------------------------------------------------------ service

    def run(self) -> HostState:
        threads = []
        if self._metrics is not None:
            threads.append(
                threading.Thread(target=self._metrics.run, args=(self._stop,), name="metrics", daemon=True)
            )
        if self._spot is not None:
            threads.append(threading.Thread(target=self._watch_spot, name="spot", daemon=True))
        for thread in threads:
            thread.start()
        try:
            if self._registry.register(self._wall_clock()):
                self.request_drain(DrainReason.REQUESTED)
        except RegistryError as exc:
            log.error("registry not written at start: %s", exc)
        try:
            self._wait_until_ready()
            self._serve()
        finally:
            self._stop.set()
            self._worker.close()
            for thread in threads:
                thread.join(5.0)
        return self.lifecycle.state

    def _wait_until_ready(self) -> None:
        next_heartbeat = self._clock()
        while not self._stop.is_set():
            next_heartbeat = self._tick_heartbeat(next_heartbeat)
            if self._apply_drain_requests():
                return
            ready, why = check_ready(self._server, self._model_id)
            if ready:
                self.lifecycle.mark_ready()
                self._write_state(HostState.READY)
                log.info("vLLM ready with %s; taking work", self._model_id)
                self._worker.start()
                return
            log.info("not ready yet: %s", why)
            self._wake.wait(self._ready_retry_s)
            self._wake.clear()

    def _serve(self) -> None:
        next_heartbeat = self._clock()
        while True:
            next_heartbeat = self._tick_heartbeat(next_heartbeat)
            self._apply_drain_requests()
            if self._stop.is_set() and not self.lifecycle.draining:
                self.request_drain(DrainReason.SHUTDOWN)
                continue
            if self.lifecycle.hand_back_due(self._clock()):
                handed = self._worker.hand_back_all()
                if handed:
                    log.warning("drain grace over: %d in-flight requests handed back", handed)
            if not self._worker.receiving and self.lifecycle.settle(self._worker.in_flight):
                self._write_state(HostState.DRAINED)
                log.info("drained (%s)", self.lifecycle.drain_reason)
            if self._stop.is_set() and self.lifecycle.state is HostState.DRAINED:
                return
            self._wake.wait(min(0.5, max(0.0, next_heartbeat - self._clock())))
            self._wake.clear()

    def _apply_drain_requests(self) -> bool:
        with self._lock:
            reasons, self._drain_requests = self._drain_requests, []
        for reason in reasons:
            if self.lifecycle.request_drain(reason, self._clock()):
                log.warning("draining: %s", reason)
                self._worker.stop_receiving()
                # The host sets drain_requested itself only for a Spot notice (docs/host-contract.md).
                self._write_state(HostState.DRAINING, drain_requested=reason is DrainReason.SPOT_NOTICE)
        return self.lifecycle.draining

    def _tick_heartbeat(self, due: float) -> float:
        now = self._clock()
        if now < due:
            return due
        try:
            if self._registry.heartbeat(self._wall_clock(), self._worker.in_flight):
                with self._lock:
                    if not self.lifecycle.draining:
                        self._drain_requests.append(DrainReason.REQUESTED)
        except RegistryError as exc:
            log.warning("heartbeat not written: %s", exc)
        return now + self._heartbeat_s

    def _write_state(self, state: HostState, *, drain_requested: bool = False) -> None:
        in_flight = 0 if state is HostState.DRAINED else self._worker.in_flight
        for attempt in range(1, 6):
            try:
                self._registry.set_state(
                    state, self._wall_clock(), in_flight, drain_requested=drain_requested
                )
                return
            except RegistryError as exc:
                log.warning("state %s not written (attempt %d): %s", state, attempt, exc)
                if self._stop.wait(min(2.0**attempt, 10.0)):
                    break

    def _watch_spot(self) -> None:
        assert self._spot is not None
        while not self._stop.wait(self._spot_poll_s):
            try:
                notice = self._spot.spot_instance_action()
            except InstanceMetadataError as exc:
                log.debug("spot notice not read: %s", exc)
                continue
            if notice is not None:
                log.warning("Spot interruption notice: %s", notice)
                self.request_drain(DrainReason.SPOT_NOTICE)
                return
