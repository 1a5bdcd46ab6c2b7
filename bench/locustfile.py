"""Load test of the knowledge API, SigV4-signed as the storyteller services call it.

`bench/load_test.py` runs it (against `kb serve` with the sample worlds, or a deployed stack with
`--host`/`--stack-name`) and reports the table; by hand, against the `dev` stack of samconfig.toml:

    KB_API_URL=$(aws cloudformation describe-stacks --stack-name ai-game-knowledge-dev \
        --query "Stacks[0].Outputs[?OutputKey=='KnowledgeApiUrl'].OutputValue" --output text)
    .venv/bin/locust -f bench/locustfile.py --host "$KB_API_URL" -u 50 -r 5 -t 5m --headless

What it asks is bench/load_plan.py: the sample worlds' own concepts and questions (the stack must have
samples/ ingested), mostly search and context packs. Any answer but 200 is a failure (a 404 means the plan
and the corpus disagree). Signing uses the standard AWS credential chain; KB_API_KEY adds x-api-key when
the stack requires one; KB_WORLDS=emberfall limits the worlds. With KB_TIMINGS_FILE, each answer's
`Server-Timing` (query embedding, token counting, SQL, handler; `knowledge.queries.timing`) is written there as JSON lines
when the run ends, with the latency the client saw.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.parse
from typing import Any

import botocore.session
import load_plan
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from locust import HttpUser, between, events, task

from knowledge.queries.timing import SERVER_TIMING_HEADER, parse_server_timing

WORLDS = load_plan.selected_worlds(os.environ.get("KB_WORLDS"))
_session = botocore.session.get_session()
# Concept ids learnt from history answers, per world: what the relationships route is asked about.
_concept_ids: dict[str, dict[str, int]] = {w.world_id: {} for w in WORLDS}
_timings: list[dict[str, Any]] = []


class Storyteller(HttpUser):
    # Task methods are `ask_*`: a task named `context` would replace locust's own `User.context()`, which
    # every request calls.
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        credentials = _session.get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign requests with")
        region = load_plan.region_of(self.host or "", _session.get_config_variable("region") or "us-east-1")
        self.signer = SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region)
        self.rng = random.Random()

    def _send(self, task_name: str) -> None:
        world = self.rng.choice(WORLDS)
        planned = load_plan.pick(task_name, world, self.rng, _concept_ids[world.world_id])
        url = f"{(self.host or '').rstrip('/')}{planned.path_and_query}"
        data = json.dumps(planned.body).encode() if planned.body is not None else b""
        headers = {"Content-Type": "application/json"} if planned.body is not None else {}
        if os.environ.get("KB_API_KEY"):
            headers["x-api-key"] = os.environ["KB_API_KEY"]
        request = AWSRequest(method=planned.method, url=url, data=data, headers=headers)
        self.signer.add_auth(request)
        started = time.perf_counter()
        with self.client.request(
            planned.method,
            url,
            data=data or None,
            headers=dict(request.headers.items()),
            name=planned.name,
            catch_response=True,
        ) as response:
            client_ms = (time.perf_counter() - started) * 1000.0
            reason = load_plan.failure_reason(response.status_code, response.text or "")
            if reason is not None:
                response.failure(reason)
                return
            response.success()
            _record(planned, world.world_id, response, client_ms)

    @task(load_plan.TASK_WEIGHTS["search"])
    def ask_search(self) -> None:
        self._send("search")

    @task(load_plan.TASK_WEIGHTS["context"])
    def ask_context(self) -> None:
        self._send("context")

    @task(load_plan.TASK_WEIGHTS["history"])
    def ask_history(self) -> None:
        self._send("history")

    @task(load_plan.TASK_WEIGHTS["relationships"])
    def ask_relationships(self) -> None:
        self._send("relationships")

    @task(load_plan.TASK_WEIGHTS["timeline"])
    def ask_timeline(self) -> None:
        self._send("timeline")


def _record(planned: load_plan.PlannedRequest, world_id: str, response: Any, client_ms: float) -> None:
    if planned.name == load_plan.ROUTE_NAMES["history"]:
        found = response.json()
        _concept_ids[world_id][found["name"]] = int(found["concept_id"])
        # The plan's spelling may differ in case from the stored name: keep the one asked too.
        asked = planned.path.split("/")[4]
        _concept_ids[world_id][urllib.parse.unquote(asked)] = int(found["concept_id"])
    header = response.headers.get(SERVER_TIMING_HEADER)
    if header and os.environ.get("KB_TIMINGS_FILE"):
        _timings.append({"name": planned.name, "client_ms": client_ms, **parse_server_timing(header)})


@events.quitting.add_listener
def _write_timings(environment: Any, **_: Any) -> None:
    path = os.environ.get("KB_TIMINGS_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(t) + "\n" for t in _timings)
