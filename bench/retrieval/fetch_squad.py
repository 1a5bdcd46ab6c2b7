"""Fetch a slice of SQuAD 2.0's train split and convert it into the retrieval set in bench/retrieval/squad/.

Documents are the slice's articles, one Markdown file each (`# Title`, then one paragraph per block,
separated by blank lines); queries are answerable questions, each with its gold paragraph (the
character span of that paragraph in its document) and its answers. A search hit counts when the
returned chunk overlaps the gold paragraph and contains one of the answers (`knowledge.evaluation`).

    .venv/bin/python bench/retrieval/fetch_squad.py                      # from --url (needs the internet)
    .venv/bin/python bench/retrieval/fetch_squad.py --source train.json  # from a local copy

Only the train split is used: SQuAD's dev and test articles stay unseen for independent checks. The
question sample is seeded, so the same source always gives the same files.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import unicodedata
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v2.0.json"
OUT = Path(__file__).resolve().parent / "squad"
WORLD = "squad"


def _slug(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60]


def _load(source: str | None, url: str) -> dict[str, Any]:
    if source:
        return dict(json.loads(Path(source).read_text(encoding="utf-8")))
    with urllib.request.urlopen(url, timeout=120) as response:
        return dict(json.loads(response.read().decode("utf-8")))


def convert(data: dict[str, Any], *, articles: int, questions: int, seed: int, out: Path) -> dict[str, int]:
    """Write `articles` documents and a sample of `questions` answerable questions under `out`."""
    docs_dir = out / "docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    for old in docs_dir.glob("*.md"):
        old.unlink()
    candidates: list[dict[str, Any]] = []
    paragraphs = 0
    for article in data["data"][:articles]:
        title = article["title"].replace("_", " ")
        name = f"{_slug(title)}.md"
        text = f"# {title}\n\n"
        for paragraph in article["paragraphs"]:
            context = " ".join(paragraph["context"].split())  # one line, single spaces
            start = len(text)
            text += context + "\n\n"
            paragraphs += 1
            for qa in paragraph["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                answers = sorted({" ".join(a["text"].split()) for a in qa["answers"]})
                candidates.append(
                    {
                        "id": qa["id"],
                        "q": " ".join(qa["question"].split()),
                        "world": WORLD,
                        "document": name,
                        "start": start,
                        "end": start + len(context),
                        "answers": answers,
                    }
                )
        (docs_dir / name).write_text(text, encoding="utf-8")
    sample = random.Random(seed).sample(candidates, min(questions, len(candidates)))
    sample.sort(key=lambda q: (q["document"], q["start"], q["id"]))
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in sample:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    return {"articles": min(articles, len(data["data"])), "paragraphs": paragraphs, "questions": len(sample)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a local copy of train-v2.0.json (else --url is fetched)")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--articles", type=int, default=10, help="the first N articles of the train split")
    parser.add_argument("--questions", type=int, default=600)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    data = _load(args.source, args.url)
    if data.get("version") != "v2.0":
        print(f"not SQuAD 2.0: version {data.get('version')!r}", file=sys.stderr)
        return 1
    counts = convert(data, articles=args.articles, questions=args.questions, seed=args.seed, out=args.out)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
