"""The search benchmark runs end to end on a tiny corpus and reports the documented JSON keys."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_bench_search_on_a_tiny_corpus(postgres: Any, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_search", REPO / "bench" / "bench_search.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = bench  # client processes pickle its functions by module name
    spec.loader.exec_module(bench)
    argv = ["--chunks", "2000", "--worlds", "4", "--ef-search", "40", "--recall-queries", "20",
            "--clients", "2", "--seconds", "0.3", "--no-baseline", "--json", "--home", str(postgres.data_dir.parent)]  # fmt: skip

    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    for key in ("qps", "recall_at_10", "filtered_recall_at_10", "baseline_qps", "p95_ms", "sweep", "layouts",
                "layout", "load_average", "transaction_path"):  # fmt: skip
        assert key in result
    assert result["layout"] == "partitioned by world"
    assert result["qps"] > 0 and result["p95_ms"] > 0 and result["baseline_qps"] is None
    # A 2,000-chunk graph is searched almost exactly.
    assert result["recall_at_10"] >= 0.9 and result["filtered_recall_at_10"] >= 0.9
    assert set(result["layouts"]) == {"one index, iterative scan", "partitioned by world"}


def test_bench_search_layouts_across_many_worlds(postgres: Any, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_search", REPO / "bench" / "bench_search.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = bench
    spec.loader.exec_module(bench)
    argv = ["--layouts", "--worlds", "30", "--chunks", "1500", "--promote-at", "100", "--recall-queries", "20",
            "--clients", "2", "--seconds", "0.3", "--hold", "0.05", "--repeat", "1", "--json", "--home", str(postgres.data_dir.parent)]  # fmt: skip

    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert result["worlds"] == 30 and result["own_partitions"] >= 1
    layouts = result["layouts"]
    hybrid = layouts.pop("production, hybrid (search_by_vector with the query's words)")
    assert set(layouts) == {"partition per world", "shared + large partitions", "one index",
                            "production (document_chunks, search_by_vector)"}  # fmt: skip
    for measured in layouts.values():
        assert measured["recall_at_10"] >= 0.9 and measured["qps"] > 0 and measured["errors"] == 0
        assert measured["custom_planning_ms"] > 0 and measured["while_creating_worlds"]["worlds_created"] >= 1
    assert hybrid["recall_at_10"] is None and hybrid["qps"] > 0 and hybrid["errors"] == 0
    assert hybrid["while_creating_worlds"]["worlds_created"] >= 1
    # Small worlds are searched exactly: nothing to miss.
    assert (
        layouts["shared + large partitions"]["recall_at_10"]
        >= layouts["partition per world"]["recall_at_10"] - 0.01
    )
