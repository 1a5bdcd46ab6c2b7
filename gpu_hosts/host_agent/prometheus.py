"""Prometheus text exposition format (what vLLM's /metrics serves), reduced to the samples asked for."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass

_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str) -> str | None:
        return next((v for k, v in self.labels if k == key), None)


def _unescape(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], value) if "\\" in value else value


def _value(text: str) -> float:
    lowered = text.lower()
    if lowered in {"+inf", "inf"}:
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)  # float() reads "NaN" too


def parse_samples(text: str, names: Collection[str] | None = None) -> list[Sample]:
    """Samples whose name is in `names` (all when None); comments and malformed lines are skipped, since
    one odd line from a newer server must not cost the whole scrape."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            close = line.rfind("}")
            if close == -1:
                continue
            label_text, rest = line[brace + 1 : close], line[close + 1 :]
        else:
            if space == -1:
                continue
            name, label_text, rest = line[:space], "", line[space:]
        if names is not None and name not in names:
            continue
        fields = rest.split()
        if not fields:
            continue
        try:
            value = _value(fields[0])
        except ValueError:
            continue
        labels = tuple((m.group(1), _unescape(m.group(2))) for m in _LABEL.finditer(label_text))
        samples.append(Sample(name, labels, value))
    return samples
