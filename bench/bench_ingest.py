"""End-to-end ingestion throughput on the local runtime vs the embedder alone, in one run.

Ingests the sample corpus (samples/, both worlds) through the deployed wiring (S3 event → rule → state
machine → in-process handlers → embedded PostgreSQL) with the real local model, then embeds exactly the
chunks that were stored with the same model alone. The pipeline's overhead over the embedder is
(pipeline - embedder) / pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from knowledge.embedding.minilm import MiniLmEmbedder
from knowledge.ingestion.parsing import parse_document
from knowledge.ingestion.steps import concept_text, embedding_text
from local_runtime.cloud import LocalCloud

REPO = Path(__file__).resolve().parent.parent


def run(home: Path) -> dict[str, Any]:
    files = [
        (world, p)
        for world in ("emberfall", "tidewatch")
        for p in sorted((REPO / "samples" / world).iterdir())
    ]
    MiniLmEmbedder().warm_up()  # both sides start with a loaded model
    with LocalCloud(home, retry_delay_scale=0, mirror_s3=False) as cloud:
        started_at = time.perf_counter()
        arns = []
        for world, path in files:
            with cloud.capture_executions() as started:
                cloud.s3.put_object(
                    Bucket=cloud.bucket, Key=f"incoming/{world}/{path.name}", Body=path.read_bytes()
                )
            arns.extend(started)
        outputs = [json.loads(cloud.wait(arn)["output"]) for arn in arns]
        pipeline_s = time.perf_counter() - started_at
        handler_s = {name.split("-")[2]: round(t, 2) for name, t in cloud.lambdas.durations.items()}
        with cloud.database.transaction() as conn:
            texts = [
                embedding_text({"heading": r[0], "text": r[1]})
                for r in conn.execute("SELECT heading, content FROM document_chunks ORDER BY chunk_id")
            ]
            concepts = conn.execute("SELECT count(*) FROM narrative_concepts").fetchone()[0]  # type: ignore[index]
    # The pipeline also embeds each document's front-matter concepts: embed the same texts.
    concept_texts = [
        concept_text(c) for _, path in files for c in parse_document(path.read_bytes(), path.name).concepts
    ]
    assert all(o["status"] == "ingested" for o in outputs), outputs
    embedder = MiniLmEmbedder()
    started_at = time.perf_counter()
    for start in range(0, len(texts), 32):
        embedder.embed(texts[start : start + 32])
    for start in range(0, len(concept_texts), 32):
        embedder.embed(concept_texts[start : start + 32])
    embedder_s = time.perf_counter() - started_at
    return {
        "documents": len(files),
        "chunks": len(texts),
        "concepts": concepts,
        "pipeline_s": pipeline_s,
        "embedder_alone_s": embedder_s,
        "chunks_per_s": len(texts) / pipeline_s,
        "overhead": (pipeline_s - embedder_s) / pipeline_s,
        "handler_seconds": handler_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as home:
        result = run(Path(home))
    if not args.json:
        print(f"\nEnd-to-end ingestion of {result['documents']} documents ({result['chunks']} chunks)\n")
        print("| path | seconds | chunks/s |")
        print("|---|---:|---:|")
        print(
            f"| pipeline (S3 → Step Functions → handlers → PostgreSQL) | {result['pipeline_s']:.2f} |"
            f" {result['chunks_per_s']:.1f} |"
        )
        print(
            f"| embedder alone, same texts | {result['embedder_alone_s']:.2f} |"
            f" {result['chunks'] / result['embedder_alone_s']:.1f} |"
        )
        print(f"\npipeline overhead over the embedder: {result['overhead']:.0%}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
