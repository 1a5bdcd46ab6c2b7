"""schemathesis against the knowledge API as `kb serve` serves it (the API Gateway-shaped adapter over HTTP,
the deployed handler, the embedded PostgreSQL) with both sample worlds loaded: zero 5xx, and no answer
outside docs/openapi.json, whatever it sends.

A module of its own: its stack lives for the whole module (ingesting the samples once), which no other
test's stack may overlap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from cli.openapi import OPENAPI_PATH
from tests.functional.served_samples import serve_sample_worlds

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
]
# Bounded: at most this many generated cases per operation (about 50 in practice) keep the run to a minute
# or two on 2 CPUs.
MAX_EXAMPLES = 100

schema = schemathesis.openapi.from_path(
    OPENAPI_PATH,
    config=schemathesis.Config.from_dict({"generation": {"max-examples": MAX_EXAMPLES}, "seed": 11}),
)


@pytest.fixture(scope="module")
def served_samples(kb_home: Path, postgres: Any) -> Iterator[str]:
    with serve_sample_worlds(kb_home, f"kb_contract_{os.getpid()}") as url:
        yield url


@schema.parametrize()
def test_the_served_api_keeps_its_openapi_contract(case: Any, served_samples: str) -> None:
    case.call_and_validate(base_url=served_samples, checks=CHECKS)
