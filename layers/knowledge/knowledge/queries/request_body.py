"""Strict JSON for request bodies: RFC 8259 JSON only, and bounded before anything walks it.

Python's `json` accepts `NaN` and `Infinity` (not JSON), turns `1e400` into infinity, raises a bare
ValueError on an integer literal over 4,300 digits, and recurses once per nesting level, as pydantic then
does again. A request of this API nests at most four levels (body, filters, metadata, value) and never
needs a number wider than a 64-bit integer, so anything beyond these bounds is refused as malformed, with
where and why, before a parser or validator could fail on it.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

__all__ = ["MAX_INTEGER_DIGITS", "MAX_NESTING", "MalformedJsonError", "nesting_depth", "parse_json"]

MAX_NESTING = 32
MAX_INTEGER_DIGITS = 20  # -9223372036854775808 has 19 digits and a sign

# Escapes go first, so a string is then just quote, non-quotes, quote: every pattern here is linear, even on
# an unterminated string full of escaped quotes.
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING_OR_NOT_BRACKET = re.compile(r'"[^"]*"|[^\[\]{}"]+')
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class MalformedJsonError(json.JSONDecodeError):
    """The body is not JSON this API reads; `msg` says why without quoting the body.

    A JSONDecodeError, so a resolver that maps those to 400 maps this one too.
    """

    def __init__(self, msg: str, doc: str = "", pos: int = 0) -> None:
        super().__init__(msg, doc, pos)


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting of `text`, counting brackets outside strings, without parsing it."""
    brackets = _STRING_OR_NOT_BRACKET.sub("", _ESCAPE.sub("", text))
    return max(accumulate(_DEPTH_STEP.get(c, 0) for c in brackets), default=0)


def _reject_constant(name: str) -> Any:
    raise MalformedJsonError(f"{name} is not a JSON number")


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise MalformedJsonError(f"an integer literal has more than {MAX_INTEGER_DIGITS} digits")
    return int(literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise MalformedJsonError("a number is out of the range of a 64-bit float")
    return value


def parse_json(text: str | bytes | bytearray) -> Any:
    """The value of a JSON document; raises MalformedJsonError (what is wrong, and where) otherwise."""
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJsonError(f"it is not UTF-8 (byte {exc.start})") from None
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        raise MalformedJsonError(f"it nests {depth} levels deep; at most {MAX_NESTING} are read")
    try:
        return json.loads(
            text, parse_constant=_reject_constant, parse_int=_bounded_int, parse_float=_finite_float
        )
    except MalformedJsonError:
        raise
    except json.JSONDecodeError as exc:
        raise MalformedJsonError(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # belt and braces: the bounds above should prevent both
        raise MalformedJsonError(f"it cannot be read ({type(exc).__name__})") from None
