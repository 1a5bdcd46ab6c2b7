"""API Gateway (REST, Lambda proxy) on this machine: request → proxy event, and an HTTP server.

`proxy_event` shapes a request as API Gateway REST delivers it to a proxy integration (the v1 payload that
`sam local start-api` also builds: path still percent-encoded, query parameters decoded, single and
multi-value maps, the matched resource and its path parameters). `LoopbackApi` serves HTTP and answers
each request with what `invoke(event)` returns, so an HTTP client (the storyteller client, the CLI's
`--target aws`, schemathesis, locust) can talk to a handler running in this process; `kb serve` is it on a
port of your choosing. API Gateway's own refusals that moto does not make are made here: a body over its
10 MB payload quota (413), a path outside the stage (403), and, with the deployed routes, a request to an
AWS_IAM method without an Authorization header (403 "Missing Authentication Token"; no signature is
verified, as there are no IAM principals locally).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from botocore.exceptions import ClientError

STAGE = "v1"
# API Gateway's REST payload quota; the handler refuses far less (knowledge.queries.api.MAX_BODY_BYTES).
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
LOCAL_ACCOUNT_ID = "123456789012"
ProxyInvoke = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One resource of the REST API: its path template (`/worlds/{world_id}/events`) and its methods,
    each with its authorization type (`AWS_IAM`, `NONE`, ...) and, for a Lambda proxy integration, the
    function it invokes."""

    template: str
    methods: Mapping[str, str] = field(hash=False)
    functions: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def pattern(self) -> re.Pattern[str]:
        # A path parameter is one whole segment, as API Gateway matches `{name}`.
        parts = re.split(r"(\{\w+\})", self.template)
        return re.compile(
            "^" + "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts) + "$"
        )


_LAMBDA_INTEGRATION = re.compile(r":lambda:path/[^/]+/functions/(?P<function>.+)/invocations$")


class RouteTable:
    """The deployed API's resources, to name the resource and path parameters of a request's event."""

    def __init__(self, resources: Iterable[ApiResource]) -> None:
        self.resources = list(resources)
        self._patterns = [(r, r.pattern) for r in self.resources]

    @classmethod
    def from_rest_api(cls, apigateway: Any, rest_api_id: str) -> RouteTable:
        """The resources of a deployed REST API (moto's, locally) that have methods."""
        items = apigateway.get_resources(restApiId=rest_api_id, limit=500, embed=["methods"])["items"]
        resources = []
        for item in items:
            methods = item.get("resourceMethods") or {}
            functions = {}
            for name, method in methods.items():
                uri = (method.get("methodIntegration") or {}).get("uri") or ""
                found = _LAMBDA_INTEGRATION.search(uri)
                if found:
                    functions[name] = found.group("function")
            if methods:
                authorization = {
                    m: method.get("authorizationType") or "NONE" for m, method in methods.items()
                }
                resources.append(ApiResource(item["path"], authorization, functions))
        return cls(resources)

    def function_of(self, method: str, resource: str) -> str | None:
        """The function the resource's method integrates with, or None (no such method, or not Lambda)."""
        for candidate in self.resources:
            if candidate.template == resource:
                return candidate.functions.get(method.upper())
        return None

    def match(self, path: str) -> tuple[ApiResource, dict[str, str]] | None:
        """(the resource, raw path parameters) of `path`, or None when no resource has it."""
        for resource, pattern in self._patterns:
            found = pattern.match(path)
            if found:
                return resource, found.groupdict()
        return None


def lambda_proxy(routes: RouteTable, default_function: str, lambda_client: Any) -> ProxyInvoke:
    """Invoke the function each method integrates with (`default_function` for a path no resource has),
    through the Lambda API, as API Gateway does; a function error raises (API Gateway answers 502).

    One invocation of a function at a time: locally a function is one execution environment (one module
    in this process), and a Lambda environment serves one request at a time; the handlers rely on it
    (Powertools' resolver keeps the current request on the app). Concurrent requests queue here.
    """
    environments: dict[str, threading.Lock] = {}
    environments_lock = threading.Lock()

    def environment(function: str) -> threading.Lock:
        with environments_lock:
            return environments.setdefault(function, threading.Lock())

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        function = routes.function_of(event["httpMethod"], event["resource"]) or default_function
        try:
            with environment(function):
                reply = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event))
        except ClientError as exc:
            # An event over Lambda's 6 MB (a body under API Gateway's 10 MB can make one): the request's
            # fault, so a 413 as API Gateway reports it, not an integration failure.
            if exc.response.get("Error", {}).get("Code") != "RequestEntityTooLargeException":
                raise
            return {"statusCode": 413, "body": '{"message":"Request Too Long"}', "isBase64Encoded": False}
        payload = json.loads(reply["Payload"].read())
        if reply.get("FunctionError"):
            raise RuntimeError(
                f"{function} failed: {payload.get('errorType')}: {payload.get('errorMessage')}"
            )
        return dict(payload)

    return invoke


def proxy_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    query: Mapping[str, str | list[str]] | None = None,
    headers: Mapping[str, str | list[str]] | None = None,
    stage: str = STAGE,
    resource: str | None = None,
    path_parameters: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The REST API proxy event for one request; `path` without the stage, percent-encoded.

    A header given as a list was sent that many times: `headers` keeps the last, `multiValueHeaders` all.
    Without `resource`, the path stands for it (a handler test that needs no template).
    """
    multi_query = {k: list(v) if isinstance(v, list) else [v] for k, v in (query or {}).items()}
    multi_headers = {k: list(v) if isinstance(v, list) else [v] for k, v in (headers or {}).items()}
    now = datetime.now(UTC)
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": "local",
            "resourcePath": resource or path,
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "stage": stage,
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "extendedRequestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "domainName": "localhost",
            "identity": {"sourceIp": source_ip},
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

    Requests may arrive on several threads at once (ThreadingHTTPServer), as on API Gateway. With
    `routes`, each event names its resource and path parameters as API Gateway's would; a path no resource
    has still reaches the handler (as behind a `{proxy+}` resource), so its own 404 and 405 answer it.
    """

    def __init__(
        self,
        invoke: ProxyInvoke,
        *,
        stage: str = STAGE,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: RouteTable | None = None,
    ) -> None:
        self.invoke = invoke
        self.stage = stage
        self.routes = routes
        self.requests: list[dict[str, Any]] = []  # events as built, for assertions on headers
        # Files served beside the API (`kb serve`'s lore explorer): target -> (status, headers, body), or
        # None for a target it does not serve. Asked first, for GET and HEAD only.
        self.static: Callable[[str], tuple[int, dict[str, str], bytes] | None] | None = None
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-api", daemon=True)

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
        self.close()

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def event_for(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None, client: str
    ) -> dict[str, Any] | tuple[int, bytes]:
        """The proxy event for a request to `target` (path and query), or API Gateway's own refusal of it
        (status, body): off-stage, or without a signature where the method is AWS_IAM."""
        parsed = urllib.parse.urlsplit(target)
        prefix = f"/{self.stage}"
        if not parsed.path.startswith(prefix + "/"):
            return 403, b'{"message":"Forbidden"}'
        path = parsed.path[len(prefix) :]
        matched = self.routes.match(path) if self.routes is not None else None
        signed = any(key.lower() == "authorization" and value for key, value in headers)
        if matched is not None and matched[0].methods.get(method.upper()) == "AWS_IAM" and not signed:
            # The signature itself is not checked here: there are no IAM principals locally.
            return 403, b'{"message":"Missing Authentication Token"}'

        query: dict[str, list[str]] = {}
        for key, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        multi_headers: dict[str, list[str]] = {}
        for key, value in headers:
            multi_headers.setdefault(key, []).append(value)
        text: str | bytes | None = None
        if body is not None:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body  # travels base64-encoded, as API Gateway sends binary bodies
        return proxy_event(
            method,
            path,
            body=text,
            query=query,
            headers=multi_headers,
            stage=self.stage,
            resource=matched[0].template if matched is not None else None,
            path_parameters=matched[1] if matched is not None else None,
            source_ip=client,
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                served = api.static(self.path) if api.static and self.command in ("GET", "HEAD") else None
                if served is not None:
                    self._send(*served)
                    return
                body, refusal = self._read_body()
                if refusal is not None:
                    self._send(*refusal)
                    return
                event = api.event_for(
                    self.command, self.path, list(self.headers.items()), body, self.client_address[0]
                )
                if isinstance(event, tuple):
                    self._send(event[0], {}, event[1])
                    return
                api.requests.append(event)
                try:
                    status, headers, payload = response_parts(api.invoke(event))
                except Exception as exc:  # an integration failure is a 502 on API Gateway
                    status, headers = 502, {"Content-Type": "application/json"}
                    payload = json.dumps({"message": f"Internal server error: {type(exc).__name__}"}).encode()
                headers.setdefault("x-amzn-RequestId", event["requestContext"]["requestId"])
                self._send(status, headers, payload)

            def _read_body(self) -> tuple[bytes | None, tuple[int, dict[str, str], bytes] | None]:
                length_header = self.headers.get("Content-Length")
                if length_header is None:
                    if self.headers.get("Transfer-Encoding"):
                        return None, (411, {}, b'{"message":"Length Required"}')
                    return None, None
                try:
                    length = int(length_header)
                    if length < 0:
                        raise ValueError(length_header)
                except ValueError:
                    return None, (400, {}, b'{"message":"Bad Request"}')
                if length > MAX_PAYLOAD_BYTES:
                    self.close_connection = True  # the body is never read
                    return None, (413, {}, b'{"message":"Request Too Long"}')
                return (self.rfile.read(length) if length else None), None

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def __getattr__(self, name: str) -> Any:
                # Every method (TRACE, QUERY, ...) reaches the handler, whose 405 lists those a path has;
                # http.server would otherwise answer 501 itself.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the handler's own logs say what happened

        return Handler
