"""A module-shaped NVML double that replays recorded readings (one line per sampling moment), the way
nvidia-ml-py's `pynvml` answers: utilisation in percent, memory in bytes, power in milliwatts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace


class NVMLError(Exception):
    pass


@dataclass(frozen=True)
class RecordedReading:
    gpu: float
    mem: float
    mem_used: int
    mem_total: int
    power_mw: int
    temp: int


def load_jsonl(path: Path) -> list[RecordedReading]:
    """nvml-load.jsonl: {"t", "gpu", "mem", "mem_used", "mem_total", "power_mw", "temp"} per line."""
    readings = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            readings.append(
                RecordedReading(
                    row["gpu"], row["mem"], row["mem_used"], row["mem_total"], row["power_mw"], row["temp"]
                )
            )
    return readings


def load_nvidia_smi_csv(path: Path) -> list[RecordedReading]:
    """`nvidia-smi --query-gpu=... --format=csv` (MiB and W) converted to NVML's bytes and mW."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split(",")]

    def number(text: str) -> float:
        return float(text.strip().split()[0])

    readings = []
    for line in lines[1:]:
        row = dict(zip(header, (v.strip() for v in line.split(",")), strict=True))
        readings.append(
            RecordedReading(
                gpu=number(row["utilization.gpu [%]"]),
                mem=number(row["utilization.memory [%]"]),
                mem_used=int(number(row["memory.used [MiB]"]) * 1024 * 1024),
                mem_total=int(number(row["memory.total [MiB]"]) * 1024 * 1024),
                power_mw=int(number(row["power.draw [W]"]) * 1000),
                temp=int(number(row["temperature.gpu"])),
            )
        )
    return readings


class ReplayNvml:
    """Each nvmlDeviceGetUtilizationRates call on device 0 moves to the next recorded moment; the
    other readings of one sampling round come from the same moment. `devices` copies the trace per GPU."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0

    def __init__(
        self, readings: Iterable[RecordedReading], devices: int = 1, fail_init: bool = False
    ) -> None:
        self._readings: Sequence[RecordedReading] = list(readings)
        self._devices = devices
        self._fail_init = fail_init
        self._position = -1
        self.initialised = False

    def _current(self) -> RecordedReading:
        return self._readings[max(self._position, 0) % len(self._readings)]

    def nvmlInit(self) -> None:
        if self._fail_init:
            raise NVMLError("Driver Not Loaded")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        return self._devices

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not self.initialised:
            raise NVMLError("Uninitialized")
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        if handle == 0:
            self._position += 1
        r = self._current()
        return SimpleNamespace(gpu=r.gpu, memory=r.mem)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        r = self._current()
        return SimpleNamespace(used=r.mem_used, total=r.mem_total, free=r.mem_total - r.mem_used)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._current().power_mw

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return self._current().temp
