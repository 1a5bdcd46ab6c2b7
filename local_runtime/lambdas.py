"""Lambda functions invoked in-process: moto's Lambda runs code in Docker, which does not exist here.

moto funnels every invocation (Step Functions `lambda:invoke` tasks, event source mappings, Invoke) through
`LambdaFunction._invoke_lambda`; routing that one method here runs the real handler module from the
function's CodeUri folder, with the function's environment as moto resolved it from the template. A raised
exception returns `{"errorType": <class name>, ...}` as Lambda does, so ASL Retry/Catch match its name.

The Lambda service's limits hold here too, so a test fails where AWS would: a request payload over 6 MB is
refused (RequestEntityTooLargeException), a response over 6 MB becomes Function.ResponseSizeTooLarge, and
a handler that ran past the function's timeout (from the template) becomes Sandbox.Timedout. A handler is
not stopped at its timeout (a thread cannot be killed): its result is discarded when it returns, as AWS
would have ended it; what it wrote meanwhile stays written.

What a handler prints is captured per invocation (thread-local: Map iterations run on threads), written to
$KB_HOME/logs/<function>.log, and its CloudWatch embedded-metric-format records are put into moto's
CloudWatch, as the Lambda service does with EMF in AWS.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

_import_lock = threading.Lock()

# Lambda quotas (docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): 6 MB each way for a
# synchronous invocation; the service's response limit and message say 6291556 bytes.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
MAX_RESPONSE_BYTES = 6_291_556


def _request_too_large(size: int) -> Exception:
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(
        "RequestEntityTooLargeException",
        f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the InvokeFunction operation",
    )
    error.code = 413
    return error


class _ThreadRoutedStdout(io.TextIOBase):
    """sys.stdout replacement: writes from an invocation's thread go to that invocation's buffer."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", None)
        return (buffer or self.real).write(text)

    def flush(self) -> None:
        self.real.flush()


# One router per process: Powertools loggers are process-global (keyed by service name) and keep the stream
# they were created with, so every runtime instance must route through the same object.
_ROUTER = _ThreadRoutedStdout(sys.stdout)


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class InProcessLambdas:
    def __init__(
        self,
        code_dirs: dict[str, Path],
        *,
        log_dir: Path,
        metric_sink: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._code_dirs = code_dirs  # physical function name -> folder
        self._modules: dict[str, ModuleType] = {}
        self._log_dir = log_dir
        self._metric_sink = metric_sink
        self.invocations: list[tuple[str, str]] = []  # (function name, outcome), for tests and traces
        self.durations: dict[str, float] = {}  # function name -> seconds spent in its handler
        self._stdout = _ROUTER
        # What timeouts are measured with; a test replaces it to make a handler "run" past its timeout.
        self.clock: Callable[[], float] = time.monotonic
        log_dir.mkdir(parents=True, exist_ok=True)

    def install_stdout_router(self) -> None:
        # Re-checked on every invocation: test runners swap sys.stdout between their phases.
        with _import_lock:
            if sys.stdout is not self._stdout:
                if not isinstance(sys.stdout, _ThreadRoutedStdout):
                    self._stdout.real = sys.stdout
                sys.stdout = self._stdout

    def loaded_modules(self) -> list[ModuleType]:
        with _import_lock:
            return list(self._modules.values())

    def register(self, function_name: str, folder: Path) -> None:
        self._code_dirs[function_name] = folder

    def module(self, function_name: str, handler: str, environment: dict[str, str]) -> ModuleType:
        with _import_lock:
            if function_name in self._modules:
                return self._modules[function_name]
            folder = self._code_dirs[function_name]
            module_name, _ = handler.rsplit(".", 1)
            spec = importlib.util.spec_from_file_location(
                f"local_lambda_{function_name.replace('-', '_')}", folder / f"{module_name}.py"
            )
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            # Handlers read their configuration once, at import: give them their function's environment then.
            saved = dict(os.environ)
            os.environ.update({k: str(v) for k, v in environment.items()})
            try:
                spec.loader.exec_module(module)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            self._modules[function_name] = module
            return module

    def invoke(
        self,
        function_name: str,
        handler: str,
        environment: dict[str, str],
        event: Any,
        *,
        arn: str = "",
        timeout_s: int = 60,
        memory_mb: int = 512,
    ) -> tuple[str, bool, str]:
        request = event if isinstance(event, str | bytes) else json.dumps(event or {})
        request_bytes = len(request.encode() if isinstance(request, str) else request)
        if request_bytes > MAX_REQUEST_BYTES:
            raise _request_too_large(request_bytes)
        payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
        buffer = io.StringIO()
        self.install_stdout_router()
        self._stdout.local.buffer = buffer
        errored = False
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        began = self.clock()
        try:
            module = self.module(function_name, handler, environment)
            function = getattr(module, handler.rsplit(".", 1)[1])
            began = self.clock()  # the handler's run: a cold start's import is the init phase, timed apart
            context = FakeLambdaContext(
                function_name=function_name,
                memory_limit_in_mb=memory_mb,
                invoked_function_arn=arn,
                aws_request_id=request_id,
                deadline=time.monotonic() + timeout_s,
            )
            result = json.dumps(function(payload, context))
        except Exception as exc:
            errored = True
            result = json.dumps(
                {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "stackTrace": traceback.format_exception(exc),
                }
            )
        finally:
            self._stdout.local.buffer = None
        if self.clock() - began > timeout_s:
            errored = True
            result = json.dumps(
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds",
                }
            )
        elif len(result.encode()) > MAX_RESPONSE_BYTES:
            errored = True
            result = json.dumps(
                {
                    "errorType": "Function.ResponseSizeTooLarge",
                    "errorMessage": "Response payload size exceeded maximum allowed payload size "
                    f"({MAX_RESPONSE_BYTES} bytes).",
                }
            )
        logs = buffer.getvalue()
        self.invocations.append((function_name, "error" if errored else "ok"))
        self.durations[function_name] = self.durations.get(function_name, 0.0) + time.perf_counter() - started
        self._record(function_name, logs)
        return result, errored, logs

    def _record(self, function_name: str, logs: str) -> None:
        with open(self._log_dir / f"{function_name}.log", "a", encoding="utf-8") as log:
            log.write(logs)
        if self._metric_sink is None:
            return
        for line in logs.splitlines():
            if '"_aws"' in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "_aws" in record:
                    self._metric_sink(record)
