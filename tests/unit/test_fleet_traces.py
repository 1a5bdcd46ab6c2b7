"""Recorded traces and the request mix: the Azure LLM traces, the 4-column CSV form and its converter."""

from __future__ import annotations

import importlib.util
import math
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

from fleet_sim.traces import RECORDED_TRACES, Trace, TraceError, load_trace, parse_trace_csv

REPO = Path(__file__).resolve().parents[2]
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


@pytest.fixture(scope="module")
def converter() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "convert_azure_llm", REPO / "bench" / "traces" / "convert_azure_llm.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["convert_azure_llm"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


# --- the recorded traces -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "minutes"), [("azure-conv", 58), ("azure-code", 57)])
def test_recorded_traces_load_with_their_shape_and_mix(name: str, minutes: int) -> None:
    trace = load_trace(name)
    assert trace.name == name
    assert trace.peak_players == 8000
    assert len(trace.times_s) == minutes and trace.duration_s == minutes * 60.0  # about an hour
    assert trace.times_s == tuple(60.0 * m for m in range(minutes))
    assert all(n.is_integer() for n in trace.players)
    assert trace.prompt_tokens is not None and trace.output_tokens is not None
    assert all(n > 0 for n in trace.prompt_tokens + trace.output_tokens)
    assert trace.mix_at(0) == (trace.prompt_tokens[0], trace.output_tokens[0])
    assert trace.mix_at(trace.duration_s + 60) == (trace.prompt_tokens[-1], trace.output_tokens[-1])


def test_recorded_traces_differ_in_their_request_mix() -> None:
    conv, code = load_trace("azure-conv"), load_trace("azure-code")
    # Code completion: long prompts, short answers; conversation: the other way round.
    assert code.mix_at(0) == (2342.5, 23.5)
    assert conv.mix_at(0) == (900.5, 231.6)
    assert conv.mean_players == pytest.approx(5258.5, abs=0.1)
    assert code.mean_players == pytest.approx(1914.9, abs=0.1)


@pytest.mark.parametrize(
    ("name", "file_name"),
    [("azure-conv", "azure-llm-conv-2023.csv"), ("azure-code", "azure-llm-code-2023.csv")],
)
def test_recorded_files_are_exactly_their_traces_csv(name: str, file_name: str) -> None:
    text = resources.files("fleet_sim").joinpath("data", file_name).read_text(encoding="utf-8")
    assert text.startswith("t_s,players,prompt_tokens,output_tokens\n")
    assert load_trace(name).to_csv() == text


def test_unknown_trace_names_the_recorded_traces() -> None:
    assert set(RECORDED_TRACES) == {"azure-conv", "azure-code"}
    with pytest.raises(TraceError, match=r"not a recorded trace \(azure-conv, azure-code\) and no such file"):
        load_trace("azure-chat")


# --- the request mix ---------------------------------------------------------------------------------------

MIX_CSV = "t_s,players,prompt_tokens,output_tokens\n0,100,512,64\n60,250,1024.5,0\n150,250,1024.5,0\n"


def test_mix_csv_round_trips() -> None:
    trace = parse_trace_csv(MIX_CSV, name="mix")
    assert trace == Trace(
        name="mix",
        times_s=(0.0, 60.0),
        players=(100.0, 250.0),
        duration_s=150.0,
        prompt_tokens=(512.0, 1024.5),
        output_tokens=(64.0, 0.0),
    )
    assert trace.to_csv() == MIX_CSV
    assert parse_trace_csv(trace.to_csv(), name="mix") == trace
    assert [trace.mix_at(t) for t in (-1, 0, 59.9, 60, 149, 500)] == [
        (512, 64),
        (512, 64),
        (512, 64),
        (1024.5, 0),
        (1024.5, 0),
        (1024.5, 0),
    ]


def test_a_trace_without_a_mix_has_none_and_keeps_two_columns() -> None:
    two_columns = "t_s,players\n0,100\n60,250\n120,250\n"
    trace = parse_trace_csv(two_columns, name="plain")
    assert trace.prompt_tokens is None and trace.output_tokens is None
    assert trace.mix_at(0) is None and trace.mix_at(90) is None
    assert trace.to_csv() == two_columns
    assert load_trace("spike").mix_at(0) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t_s,players,prompt_tokens,output_tokens\n0,10,-1,5\n60,10,1,5\n", ":2: negative prompt_tokens -1"),
        (
            "t_s,players,prompt_tokens,output_tokens\n0,10,1,5\n60,10,1,-0.5\n",
            ":3: negative output_tokens -0.5",
        ),
        (
            "t_s,players,prompt_tokens,output_tokens\n0,10,many,5\n60,10,1,5\n",
            "prompt_tokens 'many' is not a number",
        ),
        (
            "t_s,players,prompt_tokens,output_tokens\n0,10,1,nan\n60,10,1,5\n",
            "output_tokens 'nan' is not finite",
        ),
        (
            "t_s,players,prompt_tokens,output_tokens\n0,10,1\n60,10,1,5\n",
            ":2: expected 4 columns (t_s,players,prompt_tokens,output_tokens), got 3",
        ),
        ("t_s,players\n0,10,1,5\n60,10,1,5\n", ":2: expected 2 columns (t_s,players), got 4"),
        (
            "t_s,players,prompt_tokens\n0,10,1\n60,10,1\n",
            ":1: header is 't_s,players,prompt_tokens', expected 't_s,players' or "
            "'t_s,players,prompt_tokens,output_tokens'",
        ),
        ("t_s,players,output_tokens,prompt_tokens\n0,10,1,5\n60,10,1,5\n", ":1: header is"),
    ],
)
def test_a_bad_mix_is_refused_with_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        parse_trace_csv(text, name="bad", source="bad.csv")
    assert str(error.value).startswith("bad.csv:")


@pytest.mark.parametrize(
    ("prompt_tokens", "output_tokens", "message"),
    [
        ((1.0, 2.0), None, "a request mix needs both prompt_tokens and output_tokens"),
        (None, (1.0, 2.0), "a request mix needs both prompt_tokens and output_tokens"),
        ((1.0,), (1.0, 2.0), r"needs one prompt_tokens value per time \(2\), got 1"),
        ((1.0, 2.0), (1.0, 2.0, 3.0), r"needs one output_tokens value per time \(2\), got 3"),
        ((1.0, -2.0), (1.0, 2.0), "prompt_tokens must be finite and >= 0"),
        ((1.0, 2.0), (math.inf, 2.0), "output_tokens must be finite and >= 0"),
    ],
)
def test_trace_validates_its_mix(
    prompt_tokens: tuple[float, ...] | None, output_tokens: tuple[float, ...] | None, message: str
) -> None:
    with pytest.raises(TraceError, match=f"trace 'x': {message}"):
        Trace(
            name="x",
            times_s=(0.0, 60.0),
            players=(1.0, 2.0),
            duration_s=120.0,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
        )


# --- the converter -----------------------------------------------------------------------------------------

# Minutes count from the first request (18:15:46.68059): minute 1 starts at 18:16:46.68059 exactly. The
# request at 3 min after the first is past the last whole minute and dropped. The 7th fractional digit
# is truncated, as in the source files.
FAKE_CONV = [
    "2023-11-16 18:15:46.6805900,100,10",
    "2023-11-16 18:16:46.6805900,100,10",
    "2023-11-16 18:16:50.0000000,200,20",
    "2023-11-16 18:17:46.6805899,301,31",
    "2023-11-16 18:18:00.0000000,10,1",
    "2023-11-16 18:18:10.1234567,15,2",
    "2023-11-16 18:18:46.6805900,9999,9999",
]
# No request in minute 1: players 0, the mix of minute 0 carried on.
FAKE_CODE = [
    "2023-11-16 18:00:00.0000000,4000,4",
    "2023-11-16 18:00:59.9999999,2001,7",
    "2023-11-16 18:02:30.0000000,333,3",
    "2023-11-16 18:03:00.0000000,1,1",
]
EXPECTED_CONV = (
    "t_s,players,prompt_tokens,output_tokens\n"
    "0,2667,100,10\n"
    "60,8000,200.3,20.3\n"
    "120,5333,12.5,1.5\n"
    "180,5333,12.5,1.5\n"
)
EXPECTED_CODE = (
    "t_s,players,prompt_tokens,output_tokens\n"
    "0,8000,3000.5,5.5\n"
    "60,0,3000.5,5.5\n"
    "120,4000,333,3\n"
    "180,4000,333,3\n"
)


def write_azure_csv(path: Path, rows: list[str]) -> None:
    path.write_bytes("\r\n".join([AZURE_HEADER, *rows]).encode())  # CRLF, no final newline, as published


def test_converter_bins_and_scales_a_small_input_exactly(
    converter: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = tmp_path / "source", tmp_path / "out"
    (source / "data").mkdir(parents=True)
    write_azure_csv(source / "data" / "AzureLLMInferenceTrace_conv.csv", FAKE_CONV)
    write_azure_csv(source / "AzureLLMInferenceTrace_code.csv", FAKE_CODE)  # a flat folder works too

    assert converter.main(["--source", str(source), "--out", str(out)]) == 0

    assert (out / "azure-llm-conv-2023.csv").read_text(encoding="utf-8") == EXPECTED_CONV
    assert (out / "azure-llm-code-2023.csv").read_text(encoding="utf-8") == EXPECTED_CODE
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2  # no commit line: not a git directory
    assert printed[0] == (
        f"{out / 'azure-llm-conv-2023.csv'}: 3 minutes + end row, 180 s, 6 requests (1 after the last whole "
        "minute dropped), peak 8000 players, mean 5333.3 players, mean 121.0 prompt and 12.3 output tokens "
        "per request"
    )
    assert "3 requests (1 after the last whole minute dropped), peak 8000 players, mean 4000.0" in printed[1]
    loaded = load_trace(out / "azure-llm-code-2023.csv")
    assert loaded.mix_at(60) == (3000.5, 5.5) and loaded.players_at(60) == 0


def test_converter_reports_a_missing_source_file(
    converter: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_azure_csv(tmp_path / "AzureLLMInferenceTrace_conv.csv", FAKE_CONV)
    assert converter.main(["--source", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("convert_azure_llm: error: ")
    assert "no data/AzureLLMInferenceTrace_code.csv" in error


def test_converter_refuses_a_file_without_the_azure_columns(converter: ModuleType) -> None:
    with pytest.raises(converter.ConversionError, match="expected the columns"):
        converter.parse_requests("time,tokens\n1,2\n", "x.csv")
