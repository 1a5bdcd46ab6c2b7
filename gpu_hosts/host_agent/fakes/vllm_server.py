"""A stand-in for vLLM's OpenAI-compatible server on loopback: /health, /v1/models, /v1/completions,
/v1/chat/completions and a /metrics page in vLLM's own exposition format (V1 engine names, buckets,
`_created` samples, `engine` and `model_name` labels). `restart()` zeroes the counters as a restarted
server does. Used by the tests, the benchmark and `python -m host_agent.fakes.vllm_server` for trying
`host-agent collect --dry-run` without a GPU.
"""

from __future__ import annotations

import argparse
import bisect
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# vLLM's bucket bounds (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
               240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass
class Behaviour:
    """What the next requests see; tests change it between steps."""

    healthy: bool = True
    delay_s: float = 0.0  # wall time a completion takes
    simulated_e2e_s: float = 0.8  # latency recorded in the histograms (independent of delay_s)
    simulated_ttft_s: float = 0.05
    completion_tokens: int = 16
    fail_status: int | None = None  # every completion answers this HTTP status
    legacy_kv_cache_name: bool = False  # vllm:gpu_cache_usage_perc, as before vLLM 0.10
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0


class FakeVllmState:
    def __init__(self, model: str) -> None:
        self.model = model
        self.behaviour = Behaviour()
        self.lock = threading.Lock()
        self.completions = 0
        self.prompts: list[str] = []
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.created = time.time()
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.e2e = _Histogram(E2E_BUCKETS)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.finished = 0

    def restart(self) -> None:
        with self.lock:
            self._reset_counters()

    def observe(
        self, e2e_s: float, ttft_s: float, prompt_tokens: int = 0, generation_tokens: int = 0
    ) -> None:
        with self.lock:
            self.e2e.observe(e2e_s)
            self.ttft.observe(ttft_s)
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += generation_tokens
            self.finished += 1

    def exposition(self) -> str:
        with self.lock:
            b = self.behaviour
            labels = f'engine="0",model_name="{self.model}"'
            kv_name = "vllm:gpu_cache_usage_perc" if b.legacy_kv_cache_name else "vllm:kv_cache_usage_perc"
            lines = [
                "# HELP python_gc_objects_collected_total Objects collected during gc",
                "# TYPE python_gc_objects_collected_total counter",
                'python_gc_objects_collected_total{generation="0"} 12345.0',
                "# HELP vllm:num_requests_running Number of requests in model execution batches.",
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running{{{labels}}} {float(b.running)}",
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting{{{labels}}} {float(b.waiting)}",
                f"# HELP {kv_name} KV-cache usage. 1 means 100 percent usage.",
                f"# TYPE {kv_name} gauge",
                f"{kv_name}{{{labels}}} {b.kv_cache_usage}",
                "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.",
                "# TYPE vllm:prefix_cache_queries_total counter",
                f"vllm:prefix_cache_queries_total{{{labels}}} {float(self.prompt_tokens)}",
            ]
            for name, value, help_text in (
                ("vllm:prompt_tokens", self.prompt_tokens, "Number of prefill tokens processed."),
                ("vllm:generation_tokens", self.generation_tokens, "Number of generation tokens processed."),
            ):
                lines += [
                    f"# HELP {name}_total {help_text}",
                    f"# TYPE {name}_total counter",
                    f"{name}_total{{{labels}}} {float(value)}",
                    f"# HELP {name}_created {help_text}",
                    f"# TYPE {name}_created gauge",
                    f"{name}_created{{{labels}}} {self.created}",
                ]
            lines += [
                "# HELP vllm:request_success_total Count of successfully processed requests.",
                "# TYPE vllm:request_success_total counter",
                f'vllm:request_success_total{{{labels},finished_reason="length"}} {float(self.finished)}',
            ]
            for name, histogram, help_text in (
                (
                    "vllm:time_to_first_token_seconds",
                    self.ttft,
                    "Histogram of time to first token in seconds.",
                ),
                (
                    "vllm:e2e_request_latency_seconds",
                    self.e2e,
                    "Histogram of e2e request latency in seconds.",
                ),
            ):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
                cumulative = 0
                for bound, count in zip((*histogram.bounds, None), histogram.counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound is None else repr(float(bound))
                    lines.append(f'{name}_bucket{{{labels},le="{le}"}} {float(cumulative)}')
                lines += [
                    f"{name}_count{{{labels}}} {float(cumulative)}",
                    f"{name}_sum{{{labels}}} {histogram.total}",
                    f"# HELP {name}_created {help_text}",
                    f"# TYPE {name}_created gauge",
                    f"{name}_created{{{labels}}} {self.created}",
                ]
            return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: FakeVllmServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/health":
            self._send(200 if state.behaviour.healthy else 503, b"")
        elif self.path == "/metrics":
            self._send(200, state.exposition().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif self.path == "/v1/models":
            self._send(
                200, json.dumps({"object": "list", "data": [{"id": state.model, "object": "model"}]}).encode()
            )
        else:
            self._send(404, b'{"detail":"Not Found"}')

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, b'{"error":{"message":"invalid JSON","type":"BadRequestError","code":400}}')
            return
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self._send(404, b'{"detail":"Not Found"}')
            return
        b = state.behaviour
        if b.fail_status is not None:
            self._send(
                b.fail_status,
                json.dumps({"error": {"message": "injected failure", "code": b.fail_status}}).encode(),
            )
            return
        if payload.get("model") != state.model:
            message = f"The model `{payload.get('model')}` does not exist."
            self._send(
                404,
                json.dumps({"error": {"message": message, "type": "NotFoundError", "code": 404}}).encode(),
            )
            return
        if b.delay_s:
            time.sleep(b.delay_s)
        chat = self.path == "/v1/chat/completions"
        prompt = (
            " ".join(m.get("content", "") for m in payload.get("messages", []))
            if chat
            else str(payload.get("prompt", ""))
        )
        prompt_tokens = max(1, len(prompt.split()))
        completion_tokens = min(int(payload.get("max_tokens") or b.completion_tokens), b.completion_tokens)
        text = f"echo: {prompt[:64]}"
        state.observe(b.simulated_e2e_s, b.simulated_ttft_s, prompt_tokens, completion_tokens)
        with state.lock:
            state.completions += 1
            state.prompts.append(prompt)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        body = {
            "id": f"cmpl-{state.completions}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": state.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        self._send(200, json.dumps(body).encode())


class FakeVllmServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: str = "Qwen/Qwen2.5-3B-Instruct-AWQ", port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = FakeVllmState(model)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> FakeVllmServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-vllm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake vLLM server on loopback")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="Qwen/Qwen2.5-3B-Instruct-AWQ")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeVllmServer(args.model, args.port)
    server.state.behaviour.delay_s = args.delay
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
