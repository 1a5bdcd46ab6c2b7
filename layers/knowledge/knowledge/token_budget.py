"""Token counts a long word cannot cheat, shared by the chunker and the context packs.

WordPiece gives any word over LONG_WORD_CHARS characters one [UNK], so a 300,000-character run would
"cost" one token and fit any budget (and be invisible to the model, and overflow a real tokenizer's
limits). `count_long_words` makes such a word, any run of non-whitespace, cost at least one token per
CHARS_PER_TOKEN characters, what a generation model's byte-pair tokenizer spends on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Final

__all__ = ["CHARS_PER_TOKEN", "LONG_WORD_CHARS", "count_long_words"]

LONG_WORD_CHARS: Final = 100  # WordPiece's max_input_chars_per_word: longer words become one [UNK]
CHARS_PER_TOKEN: Final = 4  # English averages about 4 characters a token
_LONG_WORD: Final = re.compile(rf"\S{{{LONG_WORD_CHARS + 1},}}")


def count_long_words(count_tokens: Callable[[str], int]) -> Callable[[str], int]:
    """`count_tokens`, with each word over LONG_WORD_CHARS costing at least len / CHARS_PER_TOKEN tokens."""

    def count(text: str) -> int:
        tokens = count_tokens(text)
        if len(text) > LONG_WORD_CHARS:
            for word in _LONG_WORD.findall(text):
                tokens += max(0, math.ceil(len(word) / CHARS_PER_TOKEN) - count_tokens(word))
        return tokens

    return count
