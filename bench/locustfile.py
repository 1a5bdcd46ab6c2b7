"""Load test of a deployed knowledge API (SigV4-signed, as the storyteller services call it).

    pip install locust   # not a project dependency
    KB_API_URL=$(aws cloudformation describe-stacks --stack-name kb-dev \
        --query "Stacks[0].Outputs[?OutputKey=='KnowledgeApiUrl'].OutputValue" --output text) \
    KB_WORLD=emberfall locust -f bench/locustfile.py --host "$KB_API_URL" -u 50 -r 5 -t 5m --headless

Signing uses your AWS credentials (the standard chain); KB_API_KEY adds x-api-key when the stack requires
one. The mix is mostly search, as a storyteller turn is: search and context, now and then history,
relationships and the timeline.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from locust import HttpUser, between, task

WORLD = os.environ.get("KB_WORLD", "emberfall")
CONCEPTS = os.environ.get("KB_CONCEPTS", "Ysolde,Hearth-Lords").split(",")
QUERIES = [
    "who rules the Ember Court",
    "how is the fire tithe collected",
    "what do the kiln guilds trade",
    "where is Kharos Keep",
    "which factions oppose the queen",
]
_session = botocore.session.get_session()


class Storyteller(HttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        credentials = _session.get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign requests with")
        region = (self.host or "").split(".")[2] if ".execute-api." in (self.host or "") else "us-east-1"
        self.signer = SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region)

    def _send(self, method: str, path: str, name: str, body: Any = None, params: str = "") -> None:
        url = f"{self.host}{path}{'?' + params if params else ''}"
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if os.environ.get("KB_API_KEY"):
            headers["x-api-key"] = os.environ["KB_API_KEY"]
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        self.signer.add_auth(request)
        with self.client.request(
            method,
            url,
            data=data or None,
            headers=dict(request.headers.items()),
            name=name,
            catch_response=True,
        ) as response:
            # 404 (a world or concept this corpus lacks) is an answer; only 5xx and 429 are failures here.
            if response.status_code >= 500 or response.status_code == 429:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            else:
                response.success()

    @task(6)
    def search(self) -> None:
        body = {"query": random.choice(QUERIES), "world_id": WORLD, "k": 10, "hybrid": random.random() < 0.3}
        self._send("POST", "/search", "POST /search", body)

    @task(3)
    def context(self) -> None:
        body = {"world_id": WORLD, "situation": random.choice(QUERIES), "token_budget": 1500}
        self._send("POST", "/context", "POST /context", body)

    @task(1)
    def history(self) -> None:
        name = random.choice(CONCEPTS)
        self._send(
            "GET", f"/worlds/{WORLD}/concepts/{name}/history", "GET /worlds/{w}/concepts/{name}/history"
        )

    @task(1)
    def relationships(self) -> None:
        self._send(
            "GET",
            "/concepts/1/relationships",
            "GET /concepts/{id}/relationships",
            params=f"world_id={WORLD}&depth=2",
        )

    @task(1)
    def timeline(self) -> None:
        self._send("GET", f"/worlds/{WORLD}/events", "GET /worlds/{w}/events", params="limit=50")
