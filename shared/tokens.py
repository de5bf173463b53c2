"""A cheap token estimate for texts, without a tokenizer.

The vault puts it on memory.created (``token_estimate``) so the scheduler can
fill a KV cache's token budget (docs/scheduler.md); the model's own tokenizer
is not available to the vault, and loading one per write would cost more than
the write itself.
"""

from __future__ import annotations

# UTF-8 bytes per token. English BPE/SentencePiece vocabularies (GPT, Gemma)
# average about 4 characters per token, and ASCII is one byte per character.
# Counting bytes rather than characters keeps the estimate honest for other
# scripts without a table: Cyrillic, Greek and accented Latin take 2 bytes per
# character (≈ 2 characters per token estimated, 2-3 measured), CJK 3 bytes
# (≈ 1.3 characters per token, 1-1.5 measured). Where it errs it errs high,
# which only makes a cache hold a cube fewer, never overflow its budget.
# A whitespace word count x 1.3 would be as good for English but sees a whole
# Chinese or Japanese sentence as one word.
BYTES_PER_TOKEN = 4


def estimate_tokens(text: str | None) -> int:
    """Approximate tokens of ``text``: ⌈UTF-8 bytes / 4⌉; 0 for no text."""
    if not text:
        return 0
    size = len(text.encode("utf-8", "surrogatepass"))
    return -(-size // BYTES_PER_TOKEN)
