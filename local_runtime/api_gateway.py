"""API Gateway (REST, Lambda proxy) on this machine: request → proxy event, and a loopback HTTP server.

`proxy_event` shapes a request as API Gateway REST delivers it to a proxy integration (path still
percent-encoded, query parameters decoded, single and multi-value maps). `LoopbackApi` serves HTTP on
127.0.0.1 and answers each request with what `invoke(event)` returns, so an HTTP client (the storyteller
client, the CLI's `--target aws`, locust) can talk to a handler running in this process.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

STAGE = "v1"
ProxyInvoke = Callable[[dict[str, Any]], dict[str, Any]]


def proxy_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    query: Mapping[str, str | list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    stage: str = STAGE,
) -> dict[str, Any]:
    """The REST API proxy event for one request; `path` without the stage, percent-encoded."""
    multi_query = {k: list(v) if isinstance(v, list) else [v] for k, v in (query or {}).items()}
    header_map = dict(headers or {})
    return {
        "resource": path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map or None,
        "multiValueHeaders": {k: [v] for k, v in header_map.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
        "isBase64Encoded": isinstance(body, bytes),
    }


def response_parts(response: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body bytes) of a proxy integration's response."""
    headers = {k: str(v) for k, v in (response.get("headers") or {}).items()}
    for k, values in (response.get("multiValueHeaders") or {}).items():
        headers[k] = ", ".join(str(v) for v in values)
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode("utf-8")
    return int(response["statusCode"]), headers, body


class LoopbackApi:
    """`with LoopbackApi(invoke) as api: api.url` → http://127.0.0.1:<port>/v1 serving `invoke`.

    Requests may arrive on several threads at once (ThreadingHTTPServer), as on API Gateway.
    """

    def __init__(self, invoke: ProxyInvoke, *, stage: str = STAGE) -> None:
        self.invoke = invoke
        self.stage = stage
        self.requests: list[dict[str, Any]] = []  # events as built, for assertions on headers
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.stage}"

    def __enter__(self) -> LoopbackApi:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                prefix = f"/{api.stage}"
                if not parsed.path.startswith(prefix + "/"):
                    self._send(403, {}, b'{"message":"Forbidden"}')  # what API Gateway says off-stage
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                query: dict[str, list[str]] = {}
                for key, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
                    query.setdefault(key, []).append(value)
                text: str | bytes | None = None
                if body is not None:
                    try:
                        text = body.decode("utf-8")
                    except UnicodeDecodeError:
                        text = body  # travels base64-encoded, as API Gateway sends binary bodies
                event = proxy_event(
                    self.command,
                    parsed.path[len(prefix) :],
                    body=text,
                    query=query,
                    headers=dict(self.headers.items()),
                    stage=api.stage,
                )
                api.requests.append(event)
                try:
                    status, headers, payload = response_parts(api.invoke(event))
                except Exception as exc:  # an integration failure is a 502 on API Gateway
                    status, headers = 502, {"Content-Type": "application/json"}
                    payload = json.dumps({"message": f"Internal server error: {type(exc).__name__}"}).encode()
                self._send(status, headers, payload)

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the handler's own logs say what happened

        return Handler
