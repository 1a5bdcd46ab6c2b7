"""A $KB_HOME holding the sample worlds (real MiniLM), a few story events, and a `kb serve` on it.

Used by the `kb` read-command tests and the lore explorer's browser tests: the documents go through
`kb ingest` (the deployed workflow), the story events through the StoryEventsTopic and its queue, and the
server is a real `kb serve` process that the tests reach over HTTP. The fixtures are registered in
tests/functional/conftest.py, so the session's one ingestion serves every module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

# Story events of emberfall: one changes the Queen (a second version of her concept), one adds a concept.
EVENTS = [
    (
        "quests:ash-1",
        datetime(2026, 3, 1, 20, 0, tzinfo=UTC),
        "quest_completed",
        "The heroes carried the tithe ledger to Kharos Keep.",
        [],
    ),
    (
        "court:ash-2",
        datetime(2026, 3, 2, 21, 30, tzinfo=UTC),
        "ruling",
        "Queen Ysolde Varr pardoned the salt smugglers before the Ember Court.",
        [("Queen Ysolde Varr", "character", "Sovereign of Emberfall, who pardoned the salt smugglers.")],
    ),
]


@dataclass(frozen=True)
class Served:
    home: Path
    url: str  # the API's, .../v1
    process: subprocess.Popen[str]

    @property
    def site(self) -> str:
        return self.url.removesuffix("/v1") + "/"


def _publish_events(home: Path) -> None:
    from knowledge.story_events import processing
    from local_runtime.cloud import LocalCloud
    from messages import knowledge_pb2

    with LocalCloud(home) as cloud:
        topic = cloud.physical_ids["StoryEventsTopic"]
        for event_id, occurred_at, kind, summary, concepts in EVENTS:
            message = knowledge_pb2.StoryEvent(
                event_id=event_id, world_id="emberfall", kind=kind, summary=summary, source="tests"
            )
            message.occurred_at.FromDatetime(occurred_at)
            for name, concept_kind, description in concepts:
                message.concepts.add(name=name, kind=concept_kind, description=description)
            body, attributes = processing.encode(message)
            cloud.sns.publish(
                TopicArn=topic,
                Message=body,
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                },
            )
        cloud.event_sources.drain()


def start_server(home: Path) -> Served:
    env = {**os.environ, "KB_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.kb", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(home / "kb-serve.stderr.log").open("a"),  # kept for a failing test's report
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "kb serve: http://127.0.0.1:PORT/v1 (Ctrl-C to stop)"
    if not line.startswith("kb serve: "):
        process.kill()
        process.wait()
        raise AssertionError(f"kb serve did not start: {line!r}")
    return Served(home=home, url=line.split()[2], process=process)


def stop_server(served: Served) -> None:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A $KB_HOME with both sample worlds ingested and the story events stored (once a session: ingesting
    13 documents with the real model takes minutes on two cores). Tests only read it."""
    from cli.kb import main

    home = tmp_path_factory.mktemp("samples-home")
    previous = os.environ.get("KB_HOME")
    os.environ["KB_HOME"] = str(home)
    try:
        for world in ("emberfall", "tidewatch"):
            assert main(["ingest", str(SAMPLES / world), "--world", world, "--json"]) == 0
        _publish_events(home)
        yield home
    finally:
        if previous is None:
            os.environ.pop("KB_HOME", None)
        else:
            os.environ["KB_HOME"] = previous


@pytest.fixture(scope="module")
def served(sample_home: Path) -> Iterator[Served]:
    """`kb serve` on the sample worlds, stopped (SIGTERM) at the end of the module."""
    running = start_server(sample_home)
    yield running
    stop_server(running)
