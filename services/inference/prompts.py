"""Chat messages and memories rendered as a plain completion prompt.

Gemma 3 270M, the default model, is a base model with no chat template, so
memgrid renders every conversation with one documented template
(docs/inference.md#prompt-template) for every backend that takes text:

    Relevant memories:
    - <memory 1>
    - <memory 2>

    System: <system message>
    User: <user message>
    Assistant: <assistant message>
    User: <user message>
    Assistant:

The memory block comes first so that the same memories give the same prompt
prefix whatever the conversation (which is what a KV cache of that text can stand
in for: activation memory is the memory block, encoded once). Generation stops at
``"\\nUser:"`` as well as at the request's stop strings, since a base model would
otherwise write the user's next turn too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.chat_template import ROLE_LABEL, TURN_STOP, render_conversation
from shared.schemas.chat import ChatTurn

__all__ = [
    "MEMORY_HEADER",
    "ROLE_LABEL",
    "TURN_STOP",
    "MemoryBlock",
    "MemoryText",
    "RenderedMemory",
    "render_conversation",
    "render_memories",
    "retrieval_query",
]

MEMORY_HEADER = "Relevant memories:\n"
# A memory cut to fewer tokens than this says too little to be worth its place.
MIN_TRUNCATED_TOKENS = 8


@dataclass(frozen=True)
class MemoryText:
    """A retrieved memory, in rank order."""

    id: str
    version: int
    namespace: str
    text: str
    score: float


@dataclass(frozen=True)
class RenderedMemory:
    memory: MemoryText
    line: str
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class MemoryBlock:
    text: str
    items: tuple[RenderedMemory, ...]
    tokens: int


def render_memories(
    memories: Sequence[MemoryText],
    budget: int,
    count_tokens: Callable[[str], int],
    truncate_to_tokens: Callable[[str, int], str],
) -> MemoryBlock:
    """The memory block within ``budget`` tokens (header included), best first.

    A memory that does not fit whole is cut at a token boundary if at least
    ``MIN_TRUNCATED_TOKENS`` of it fit, and nothing after it is added: lower-ranked
    memories never displace part of a better one.
    """
    if budget <= 0 or not memories:
        return MemoryBlock("", (), 0)
    header_tokens = count_tokens(MEMORY_HEADER)
    left = budget - header_tokens - 1  # the blank line that closes the block
    items: list[RenderedMemory] = []
    for memory in memories:
        text = " ".join(memory.text.split())  # one line per memory
        if not text:
            continue
        line = f"- {text}\n"
        tokens = count_tokens(line)
        if tokens <= left:
            items.append(RenderedMemory(memory, line, tokens, False))
            left -= tokens
            continue
        if left - 1 >= MIN_TRUNCATED_TOKENS:
            cut = truncate_to_tokens(line, left - 1).rstrip("\n") + "\n"
            items.append(RenderedMemory(memory, cut, count_tokens(cut), True))
        break
    if not items:
        return MemoryBlock("", (), 0)
    text = MEMORY_HEADER + "".join(i.line for i in items) + "\n"
    tokens = count_tokens(text)
    # Tokens of pieces need not add up exactly (merges across a boundary): drop
    # from the end until the whole block is within the budget.
    while tokens > budget and items:
        items.pop()
        text = MEMORY_HEADER + "".join(i.line for i in items) + "\n" if items else ""
        tokens = count_tokens(text) if items else 0
    return MemoryBlock(text, tuple(items), tokens)


def retrieval_query(messages: Sequence[ChatTurn], max_chars: int = 2_000) -> str:
    """What memories are retrieved for: the last user message (else the last one)."""
    for m in reversed(messages):
        if m.role == "user" and m.content.strip():
            return m.content.strip()[-max_chars:]
    for m in reversed(messages):
        if m.content.strip():
            return m.content.strip()[-max_chars:]
    return ""
