"""IMDSv2 on loopback: token by PUT, instance-id, type and life cycle, and a Spot instance-action notice that tests post."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: FakeImds
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
            self._send(400)
            return
        self._send(200, self.server.token)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != self.server.token:
            self._send(401)
            return
        self.server.requests.append(self.path)
        if self.path == "/latest/meta-data/instance-id":
            self._send(200, self.server.instance_id)
        elif self.path == "/latest/meta-data/instance-type":
            self._send(200, self.server.instance_type)
        elif self.path == "/latest/meta-data/instance-life-cycle":
            self._send(200, self.server.life_cycle)
        elif self.path == "/latest/meta-data/spot/instance-action" and self.server.spot_notice is not None:
            self._send(200, json.dumps(self.server.spot_notice))
        else:
            self._send(404)


class FakeImds(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, instance_id: str = "i-0123456789abcdef0") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.instance_id = instance_id
        self.instance_type = "g5.xlarge"
        self.life_cycle = "on-demand"  # or "spot"
        self.token = secrets.token_hex(16)
        self.spot_notice: dict[str, str] | None = None
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def post_spot_notice(self, action: str = "terminate", time: str = "2026-11-27T16:00:00Z") -> None:
        self.spot_notice = {"action": action, "time": time}

    def rotate_token(self) -> None:
        self.token = secrets.token_hex(16)

    def start(self) -> FakeImds:
        threading.Thread(target=self.serve_forever, name="fake-imds", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
