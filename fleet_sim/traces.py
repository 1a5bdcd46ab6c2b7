"""Player traces: how many players are online over time, the only input the simulator's world needs.

A trace is a step function: `players[i]` players are online from `times_s[i]` until the next row. The
CSV form has the header `t_s,players` and one row per change; the first row is at t_s = 0 and the last
row marks the end of the trace (its t_s is the duration; its player count is the level the trace ends
at). Built-in traces change once a minute, the controller's tick.

A trace may also carry a request mix: the mean prompt and output tokens per request in force from each
row (`prompt_tokens`, `output_tokens`), in CSV as the header `t_s,players,prompt_tokens,output_tokens`.
The recorded traces (`RECORDED_TRACES`, from `fleet_sim/data/`, see its README) have one: public LLM
inference request traces reshaped into players.

A trace may carry a Spot interruption storm (`SpotStorm`): a time window in which the world model
interrupts a large fraction of the Spot hosts (see `model.SpotModel`). CSV traces have none.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

_HEADER: Final = ("t_s", "players")
_MIX_HEADER: Final = (*_HEADER, "prompt_tokens", "output_tokens")
_MINUTE: Final = 60.0
_HOUR: Final = 3600.0


class TraceError(ValueError):
    """A trace file or name that cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotStorm:
    """A Spot interruption storm: `interrupted_fraction` of the Spot hosts that live through the whole
    window [start_s, end_s) get an interruption notice during it (hosts alive for part of it: pro rata,
    see `model.spot_warning_time`)."""

    start_s: float
    end_s: float
    interrupted_fraction: float

    def __post_init__(self) -> None:
        if not (0 <= self.start_s < self.end_s and math.isfinite(self.end_s)):
            raise TraceError(f"spot storm window [{self.start_s}, {self.end_s}) is not a finite window >= 0")
        if not 0 < self.interrupted_fraction < 1:
            raise TraceError(f"spot storm fraction {self.interrupted_fraction} is not in (0, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """Players online over time (a step function) and the trace's length; optionally the request mix."""

    name: str
    times_s: tuple[float, ...]  # strictly increasing, first 0
    players: tuple[float, ...]  # >= 0, one per time
    duration_s: float  # > times_s[-1] is allowed; the last level holds until then
    spot_storm: SpotStorm | None = None
    # The request mix: mean prompt and output tokens per request, one per time; both or neither.
    prompt_tokens: tuple[float, ...] | None = None
    output_tokens: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problem = _shape_problem(self.times_s, self.players)
        if problem is None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            problem = f"duration {self.duration_s} s is not a positive number"
        if problem is None:
            problem = _mix_problem(self.times_s, self.prompt_tokens, self.output_tokens)
        if problem is not None:
            raise TraceError(f"trace {self.name!r}: {problem}")

    def players_at(self, t_s: float) -> float:
        """Players online at `t_s` (the row in force; before 0 the first row, after the end the last)."""
        return self.players[self._row_at(t_s)]

    def mix_at(self, t_s: float) -> tuple[float, float] | None:
        """(mean prompt tokens, mean output tokens) per request at `t_s`, the row in force as in
        `players_at`; None for a trace without a request mix."""
        if self.prompt_tokens is None or self.output_tokens is None:
            return None
        i = self._row_at(t_s)
        return self.prompt_tokens[i], self.output_tokens[i]

    def _row_at(self, t_s: float) -> int:
        return max(bisect.bisect_right(self.times_s, t_s) - 1, 0)

    @property
    def peak_players(self) -> float:
        return max(self.players)

    @property
    def mean_players(self) -> float:
        """Time-weighted mean of players online over [0, duration)."""
        total = 0.0
        for i, (t, n) in enumerate(zip(self.times_s, self.players, strict=True)):
            if t >= self.duration_s:
                break
            end = self.times_s[i + 1] if i + 1 < len(self.times_s) else self.duration_s
            total += n * (min(end, self.duration_s) - t)
        return total / self.duration_s

    def to_csv(self) -> str:
        """The CSV form, with the mix columns if the trace has a mix; `load_trace` reads it back to an
        equal trace (without any spot storm)."""
        columns: list[tuple[float, ...]] = [self.times_s, self.players]
        if self.prompt_tokens is not None and self.output_tokens is not None:
            columns += [self.prompt_tokens, self.output_tokens]
        rows = [list(row) for row in zip(*columns, strict=True)]
        if self.times_s[-1] < self.duration_s:
            rows.append([self.duration_s, *rows[-1][1:]])  # the end marker row: the last level again
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_HEADER if len(columns) == len(_HEADER) else _MIX_HEADER)
        for row in rows:
            writer.writerow([_number_text(value) for value in row])
        return out.getvalue()


def load_trace(name_or_path: str | Path) -> Trace:
    """A built-in or recorded trace by name (`BUILTIN_TRACES`, `RECORDED_TRACES`), or a CSV file (see the
    module docstring); `TraceError` if none of these."""
    if isinstance(name_or_path, str):
        if name_or_path in BUILTIN_TRACES:
            return BUILTIN_TRACES[name_or_path]()
        if name_or_path in RECORDED_TRACES:
            return RECORDED_TRACES[name_or_path]()
    path = Path(name_or_path)
    if not path.is_file():
        raise TraceError(
            f"unknown trace {str(name_or_path)!r}: not a built-in ({', '.join(BUILTIN_TRACES)}), "
            f"not a recorded trace ({', '.join(RECORDED_TRACES)}) and no such file"
        )
    return parse_trace_csv(path.read_text(encoding="utf-8"), name=path.stem, source=str(path))


def parse_trace_csv(text: str, *, name: str, source: str = "<csv>") -> Trace:
    """Parse the CSV form (see the module docstring). Errors name the source and line."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise TraceError(f"{source}: empty file, expected the header 't_s,players'")
    header = tuple(cell.strip().lower() for cell in rows[0])
    if header not in (_HEADER, _MIX_HEADER):
        raise TraceError(
            f"{source}:1: header is {','.join(rows[0])!r}, expected {','.join(_HEADER)!r} "
            f"or {','.join(_MIX_HEADER)!r}"
        )
    columns: list[list[float]] = [[] for _ in header]  # t_s, players[, prompt_tokens, output_tokens]
    times = columns[0]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise TraceError(
                f"{source}:{line}: expected {len(header)} columns ({','.join(header)}), got {len(row)}"
            )
        values = [
            _parse_number(cell, f"{source}:{line}: {what}") for what, cell in zip(header, row, strict=True)
        ]
        t = values[0]
        for what, value in zip(header[1:], values[1:], strict=True):
            if value < 0:
                raise TraceError(f"{source}:{line}: negative {what} {value:g}")
        if times and t <= times[-1]:
            raise TraceError(f"{source}:{line}: time {t:g} s is not after the previous row's {times[-1]:g} s")
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    if len(times) < 2:
        raise TraceError(
            f"{source}: needs at least two rows (the start and the end marker), got {len(times)}"
        )
    if times[0] != 0:
        raise TraceError(f"{source}:2: the first row must be at t_s 0, got {times[0]:g}")
    # The last row is the end marker: the trace's duration, not a new level (nor a new mix).
    levels = [tuple(column[:-1]) for column in columns]
    prompt_tokens, output_tokens = levels[2:] if header == _MIX_HEADER else (None, None)
    return Trace(
        name=name,
        times_s=levels[0],
        players=levels[1],
        duration_s=times[-1],
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )


# --- built-in traces ---------------------------------------------------------------------------------------


def ramp_10k() -> Trace:
    """100 -> 10,000 players linearly over 2 h (a launch-day ramp), then a 30 min hold."""
    ramp_minutes = 120
    times = [m * _MINUTE for m in range(ramp_minutes + 1)]
    players = [round(100 + (10_000 - 100) * m / ramp_minutes) for m in range(ramp_minutes + 1)]
    return Trace(name="ramp-10k", times_s=tuple(times), players=tuple(players), duration_s=150 * _MINUTE)


def spike() -> Trace:
    """1,000 players for 1 h, a jump to 6,000 for 20 min (an event or a streamer), back to 1,000 for 1 h 40
    min: long enough after the spike for scale-in to show."""
    return Trace(
        name="spike",
        times_s=(0.0, 60 * _MINUTE, 80 * _MINUTE),
        players=(1_000, 6_000, 1_000),
        duration_s=3 * _HOUR,
    )


def diurnal() -> Trace:
    """24 h from midnight: trough 800 players at 05:00, peak 8,000 at 21:00, a half-cosine rising over the
    16 h from trough to peak and falling over the 8 h back (evening-heavy play). One level per minute."""
    trough, peak = 800.0, 8_000.0
    trough_h, peak_h = 5.0, 21.0
    times, players = [], []
    for m in range(24 * 60):
        h = m / 60
        if trough_h <= h < peak_h:
            phase = (h - trough_h) / (peak_h - trough_h)  # 0 at the trough, 1 at the peak
        else:
            phase = 1 - ((h - peak_h) % 24) / (24 - (peak_h - trough_h))  # 1 at the peak, 0 at the trough
        times.append(m * _MINUTE)
        players.append(round(trough + (peak - trough) * (1 - math.cos(math.pi * phase)) / 2))
    return Trace(name="diurnal", times_s=tuple(times), players=tuple(players), duration_s=24 * _HOUR)


def spot_storm() -> Trace:
    """~4,000 players for 3 h (a gentle +-5 % wobble with a 40 min period) with a Spot interruption storm
    from 1 h 15 min to 1 h 30 min in which 60 % of the Spot hosts get an interruption notice (assumption:
    a capacity crunch in the instance pool, as seen around large GPU demand shifts)."""
    times = [m * _MINUTE for m in range(180)]
    players = [round(4_000 * (1 + 0.05 * math.sin(2 * math.pi * m / 40))) for m in range(180)]
    storm = SpotStorm(start_s=75 * _MINUTE, end_s=90 * _MINUTE, interrupted_fraction=0.6)
    return Trace(
        name="spot-storm",
        times_s=tuple(times),
        players=tuple(players),
        duration_s=3 * _HOUR,
        spot_storm=storm,
    )


BUILTIN_TRACES: Final[dict[str, Callable[[], Trace]]] = {
    "ramp-10k": ramp_10k,
    "spike": spike,
    "diurnal": diurnal,
    "spot-storm": spot_storm,
}


# --- recorded traces ---------------------------------------------------------------------------------------
# Kept apart from the synthetic built-ins so that `fleet bench` and the published tables stay the same.


def azure_conv() -> Trace:
    """Azure LLM inference, conversation service, 2023-11-16, ~1 h: requests per minute scaled to a
    peak of 8,000 players, with the minute's mean prompt and output tokens (fleet_sim/data/README.md)."""
    return _packaged_trace("azure-conv", "azure-llm-conv-2023.csv")


def azure_code() -> Trace:
    """Azure LLM inference, code completion service, 2023-11-16, ~1 h, converted like `azure_conv`."""
    return _packaged_trace("azure-code", "azure-llm-code-2023.csv")


RECORDED_TRACES: Final[dict[str, Callable[[], Trace]]] = {
    "azure-conv": azure_conv,
    "azure-code": azure_code,
}


def _packaged_trace(name: str, file_name: str) -> Trace:
    data = resources.files("fleet_sim").joinpath("data", file_name)
    return parse_trace_csv(data.read_text(encoding="utf-8"), name=name, source=f"fleet_sim/data/{file_name}")


# --- helpers -----------------------------------------------------------------------------------------------


def _shape_problem(times: tuple[float, ...], players: tuple[float, ...]) -> str | None:
    if not times or len(times) != len(players):
        return "needs one player count per time and at least one row"
    if times[0] != 0:
        return f"the first time must be 0, got {times[0]:g}"
    if any(not math.isfinite(t) for t in times) or any(b <= a for a, b in itertools.pairwise(times)):
        return "times must be finite and strictly increasing"
    if any(not (math.isfinite(n) and n >= 0) for n in players):
        return "player counts must be finite and >= 0"
    return None


def _mix_problem(
    times: tuple[float, ...], prompt_tokens: tuple[float, ...] | None, output_tokens: tuple[float, ...] | None
) -> str | None:
    if prompt_tokens is None and output_tokens is None:
        return None
    if prompt_tokens is None or output_tokens is None:
        return "a request mix needs both prompt_tokens and output_tokens"
    for what, column in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if len(column) != len(times):
            return f"needs one {what} value per time ({len(times)}), got {len(column)}"
        if any(not (math.isfinite(n) and n >= 0) for n in column):
            return f"{what} must be finite and >= 0"
    return None


def _parse_number(cell: str, what: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise TraceError(f"{what} {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{what} {cell.strip()!r} is not finite")
    return value


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
