"""Convert the Azure LLM inference traces of 2023 into the fleet simulator's recorded traces.

Source: github.com/Azure/AzurePublicDataset, `data/AzureLLMInferenceTrace_conv.csv` and
`data/AzureLLMInferenceTrace_code.csv` (CC-BY 4.0), one row per request: TIMESTAMP, ContextTokens,
GeneratedTokens. Each becomes a trace CSV `t_s,players,prompt_tokens,output_tokens` (fleet_sim/traces.py):

- minutes are counted from the first request; only whole minutes are kept (the requests after the last
  whole minute, under a minute's worth, are dropped: a partial bin would read as a dip in demand);
- players(minute) = 8000 x requests(minute) / max over minutes of requests(minute), rounded half up to
  whole players: the shape of the demand only, at the peak the other built-in traces reach;
- prompt_tokens, output_tokens: the mean ContextTokens and GeneratedTokens of the minute's requests,
  rounded to 0.1; a minute without requests (the code trace has several) keeps the previous minute's mix,
  so that the mix is always one a request could have (the first minute always has a request);
- one row per minute at t_s = 0, 60, ..., then the end row at the trace's length.

`--source` is either a git directory of the repository (the files are read from `--rev`, default HEAD)
or a folder holding the two CSV files (directly or under `data/`). The output is deterministic.

    python bench/traces/convert_azure_llm.py --source DIR --out fleet_sim/data
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from fleet_sim.traces import Trace

PEAK_PLAYERS: Final = 8000
MINUTE: Final = timedelta(minutes=1)
# Source file in the repository -> (trace CSV written under --out, trace name in the simulator).
SOURCES: Final = {
    "data/AzureLLMInferenceTrace_conv.csv": ("azure-llm-conv-2023.csv", "azure-conv"),
    "data/AzureLLMInferenceTrace_code.csv": ("azure-llm-code-2023.csv", "azure-code"),
}
COLUMNS: Final = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


class ConversionError(Exception):
    """An input that cannot be converted; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Request:
    time: datetime
    context_tokens: int
    generated_tokens: int


@dataclass(frozen=True, slots=True)
class Conversion:
    trace: Trace
    requests_kept: int
    requests_dropped: int  # after the last whole minute
    mean_prompt_tokens: float  # per kept request
    mean_output_tokens: float


def read_source(source: Path, repo_path: str, rev: str) -> tuple[str, str]:
    """(text of `repo_path`, where it came from): from a folder if it holds the file, else from git."""
    for candidate in (source / repo_path, source / Path(repo_path).name):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8-sig"), str(candidate)
    try:
        shown = subprocess.run(
            ["git", f"--git-dir={source}", "show", f"{rev}:{repo_path}"],
            capture_output=True,
            check=True,
        )
    except OSError as exc:
        raise ConversionError(f"{source}: no {repo_path} in the folder, and git cannot run: {exc}") from None
    except subprocess.CalledProcessError as exc:
        why = exc.stderr.decode(errors="replace").strip()
        raise ConversionError(f"{source}: no {repo_path} in the folder nor at {rev} in git: {why}") from None
    return shown.stdout.decode("utf-8-sig"), f"{source} {rev}:{repo_path}"


def source_commit(source: Path, rev: str) -> str | None:
    """The commit id `rev` names when `source` is a git directory; None for a plain folder."""
    try:
        shown = subprocess.run(
            ["git", f"--git-dir={source}", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # no git: a plain folder is still fine
        return None
    return shown.stdout.strip() if shown.returncode == 0 else None


def parse_requests(text: str, where: str) -> list[Request]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or any(column not in reader.fieldnames for column in COLUMNS):
        raise ConversionError(f"{where}: header is {reader.fieldnames}, expected the columns {COLUMNS}")
    requests = []
    for line, row in enumerate(reader, start=2):
        try:
            # fromisoformat reads the 7-digit fractions and truncates them to microseconds.
            request = Request(
                time=datetime.fromisoformat(row["TIMESTAMP"].strip()),
                context_tokens=int(row["ContextTokens"]),
                generated_tokens=int(row["GeneratedTokens"]),
            )
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"{where}:{line}: {exc}") from None
        if request.context_tokens < 0 or request.generated_tokens < 0:
            raise ConversionError(f"{where}:{line}: negative token count")
        requests.append(request)
    if not requests:
        raise ConversionError(f"{where}: no requests")
    return requests


def convert(requests: Sequence[Request], name: str, where: str) -> Conversion:
    start = min(r.time for r in requests)
    minutes = (max(r.time for r in requests) - start) // MINUTE  # whole minutes only
    if minutes < 1:
        raise ConversionError(f"{where}: spans less than a whole minute")
    counts = [0] * minutes
    prompt_sums = [0] * minutes
    output_sums = [0] * minutes
    for r in requests:
        minute = (r.time - start) // MINUTE
        if minute < minutes:
            counts[minute] += 1
            prompt_sums[minute] += r.context_tokens
            output_sums[minute] += r.generated_tokens
    peak = max(counts)
    kept = sum(counts)
    prompt_tokens: list[float] = []
    output_tokens: list[float] = []
    for n, prompt_sum, output_sum in zip(counts, prompt_sums, output_sums, strict=True):
        if n:
            prompt_tokens.append(round(prompt_sum / n, 1))
            output_tokens.append(round(output_sum / n, 1))
        else:  # minute 0 holds the first request, so there is always a previous minute
            prompt_tokens.append(prompt_tokens[-1])
            output_tokens.append(output_tokens[-1])
    trace = Trace(
        name=name,
        times_s=tuple(60.0 * m for m in range(minutes)),
        # Integer arithmetic: round half up, with no float error at the halves.
        players=tuple(float((2 * PEAK_PLAYERS * n + peak) // (2 * peak)) for n in counts),
        duration_s=60.0 * minutes,
        prompt_tokens=tuple(prompt_tokens),
        output_tokens=tuple(output_tokens),
    )
    return Conversion(
        trace=trace,
        requests_kept=kept,
        requests_dropped=len(requests) - kept,
        mean_prompt_tokens=sum(prompt_sums) / kept,
        mean_output_tokens=sum(output_sums) / kept,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help="git directory of Azure/AzurePublicDataset, or a folder holding the two CSV files",
    )
    parser.add_argument("--out", type=Path, default=Path("fleet_sim/data"), help="folder for the trace CSVs")
    parser.add_argument("--rev", default="HEAD", help="git revision to read (a git --source only)")
    args = parser.parse_args(argv)

    try:
        commit = source_commit(args.source, args.rev)
        if commit is not None:
            print(f"source: {args.source} at commit {commit}")
        args.out.mkdir(parents=True, exist_ok=True)
        for repo_path, (file_name, name) in SOURCES.items():
            text, where = read_source(args.source, repo_path, args.rev)
            result = convert(parse_requests(text, where), name, where)
            out = args.out / file_name
            out.write_text(result.trace.to_csv(), encoding="utf-8")
            trace = result.trace
            print(
                f"{out}: {len(trace.times_s)} minutes + end row, {trace.duration_s:g} s, "
                f"{result.requests_kept} requests ({result.requests_dropped} after the last whole minute "
                f"dropped), peak {trace.peak_players:g} players, mean {trace.mean_players:.1f} players, "
                f"mean {result.mean_prompt_tokens:.1f} prompt and {result.mean_output_tokens:.1f} output "
                "tokens per request"
            )
    except (ConversionError, OSError) as exc:
        print(f"convert_azure_llm: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
