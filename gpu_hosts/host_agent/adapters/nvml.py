"""GPU readings through NVML (the `pynvml` module of nvidia-ml-py, or any module with its functions)."""

from __future__ import annotations

import contextlib
import importlib
import threading
from types import ModuleType
from typing import Any

from host_agent.errors import GpuUnavailableError, HostAgentError
from host_agent.gpu import GpuReading


def load_nvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


class NvmlGpuReader:
    """Initialises NVML lazily and again after a failure (a driver reload must not need an agent restart)."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._handles: list[Any] | None = None
        self._lock = threading.Lock()

    def _init(self) -> list[Any]:
        nvml = self._nvml
        nvml.nvmlInit()
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    def read(self) -> list[GpuReading]:
        nvml = self._nvml
        with self._lock:
            try:
                if self._handles is None:
                    self._handles = self._init()
                readings = []
                for handle in self._handles:
                    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                    readings.append(
                        GpuReading(
                            utilization_percent=float(rates.gpu),
                            memory_utilization_percent=float(rates.memory),
                            memory_used_bytes=float(memory.used),
                            memory_total_bytes=float(memory.total),
                            power_watts=nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # mW
                            temperature_c=float(
                                nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                            ),
                        )
                    )
            except nvml.NVMLError as exc:
                self._handles = None
                raise GpuUnavailableError(f"NVML: {exc}") from exc
        if not readings:
            raise GpuUnavailableError("NVML found no GPU")
        return readings

    def close(self) -> None:
        with self._lock:
            if self._handles is not None:
                with contextlib.suppress(self._nvml.NVMLError):
                    self._nvml.nvmlShutdown()
                self._handles = None


def open_gpu_reader() -> tuple[NvmlGpuReader | None, str | None]:
    """A reader of this host's GPUs, or None and why (no NVML library, no driver, no GPU)."""
    nvml = load_nvml()
    if nvml is None:
        return None, "NVML not available: the pynvml module (nvidia-ml-py) is not installed"
    reader = NvmlGpuReader(nvml)
    try:
        reader.read()
    except HostAgentError as exc:
        return None, f"NVML not available: {exc}"
    return reader, None
