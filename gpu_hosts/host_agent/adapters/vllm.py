"""The local vLLM server over HTTP (OpenAI-compatible API, /health, /metrics), one keep-alive connection
per thread so a proxied request costs no TCP handshake."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from host_agent.errors import VllmRequestRejectedError, VllmUnavailableError


class VllmClient:
    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"vLLM URL must be http://host[:port]: {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._local = threading.local()

    def _request(self, method: str, path: str, body: bytes | None, timeout_s: float) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
                self._local.conn = conn
            try:
                if conn.sock is not None:
                    conn.sock.settimeout(timeout_s)
                else:
                    conn.timeout = timeout_s
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # A kept-alive connection the server closed meanwhile: retry once on a fresh one.
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise VllmUnavailableError(f"{method} {path}: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else str(exc)
                raise VllmUnavailableError(f"{method} {path}: {kind}") from exc
        raise AssertionError("unreachable")

    def healthy(self) -> bool:
        try:
            status, _ = self._request("GET", "/health", None, self._timeout_s)
        except VllmUnavailableError:
            return False
        return status == 200

    def metrics_text(self) -> str:
        status, body = self._request("GET", "/metrics", None, self._timeout_s)
        if status != 200:
            raise VllmUnavailableError(f"GET /metrics: HTTP {status}")
        return body.decode("utf-8", errors="replace")

    def generate(self, path: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        status, body = self._request("POST", path, json.dumps(payload).encode(), timeout_s)
        if status >= 500:
            raise VllmUnavailableError(f"POST {path}: HTTP {status}: {body[:300]!r}")
        if status >= 400:
            raise VllmRequestRejectedError(f"HTTP {status}: {_error_message(body)}")
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise VllmUnavailableError(f"POST {path}: answer is not JSON: {exc}") from exc
        if not isinstance(decoded, dict):
            raise VllmUnavailableError(f"POST {path}: answer is not a JSON object")
        return decoded

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _error_message(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", errors="replace")
    if isinstance(decoded, dict):
        error = decoded.get("error", decoded)
        if isinstance(error, dict):
            return str(error.get("message", error))[:300]
        return str(decoded.get("message", error))[:300]
    return str(decoded)[:300]
