"""Chat completion schemas: OpenAI-compatible, plus memgrid's memory fields.

The interface (``POST /v1/chat``) and the inference service
(``POST /v1/chat/completions``) meet only through these models and HTTP. The
request and response follow OpenAI's chat completions API for the fields listed
here (clients written for it work unchanged); ``memgrid`` in the request says
which memory to draw on, and ``memgrid`` in the response (the first SSE chunk
when streaming) says which memories were used. Unknown fields are refused (422)
rather than silently ignored, so a client never believes an option took effect.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Tier = Literal["plaintext", "activation", "parametric"]
Role = Literal["system", "user", "assistant"]
MAX_STOP = 4  # as OpenAI


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatTurn(_Strict):
    """One message of the conversation (content is text only)."""

    role: Role
    content: str = Field(max_length=1_000_000)
    name: str | None = Field(default=None, min_length=1, max_length=64)


def _plaintext_only() -> list[Tier]:
    return ["plaintext"]


class MemoryOptions(_Strict):
    """What memory to inject. The tenant is never part of the body: it comes from
    the caller's authentication (the interface passes it on in headers)."""

    namespaces: list[str] = Field(default_factory=list, max_length=50)
    tiers: list[Tier] = Field(default_factory=_plaintext_only, max_length=3)
    token_budget: int | None = Field(
        default=None, ge=0, description="tokens of memory text at most (default from settings)"
    )
    top_k: int | None = Field(default=None, ge=1, le=100, description="memories retrieved")
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=4_000,
        description="what to retrieve for; default the last user message",
    )

    @field_validator("tiers")
    @classmethod
    def _unique(cls, v: list[Tier]) -> list[Tier]:
        return list(dict.fromkeys(v))


class ChatCompletionRequest(_Strict):
    model: str | None = Field(default=None, max_length=256, description="ignored if not served")
    messages: list[ChatTurn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    n: int = Field(default=1, ge=1, le=1, description="only 1 is supported")
    user: str | None = Field(default=None, max_length=256, description="session id for usage")
    memgrid: MemoryOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        items = [v] if isinstance(v, str) else v or []
        if len(items) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not 1 <= len(s) <= 256 for s in items):
            raise ValueError("each stop sequence must be 1-256 characters")
        return v

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class UsedMemory(_Strict):
    id: str
    version: int
    namespace: str
    tier: Tier
    score: float
    tokens: int = Field(description="tokens of its text in the prompt")
    truncated: bool = False


class MemoryReport(_Strict):
    """Which memories the answer drew on, and how."""

    memories: list[UsedMemory] = Field(default_factory=list)
    tiers_requested: list[Tier] = Field(default_factory=list)
    tiers_applied: list[Tier] = Field(default_factory=list)
    token_budget: int = 0
    memory_tokens: int = 0
    query_id: str | None = None
    adapter: str | None = Field(
        default=None, description="the LoRA adapter id applied (tier parametric), if any"
    )


class AssistantMessage(_Strict):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(_Strict):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class CompletionUsage(_Strict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(_Strict):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    memgrid: MemoryReport


class ChunkDelta(_Strict):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Strict):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(_Strict):
    """One server-sent event (``data: {...}``); the stream ends with ``data: [DONE]``.
    The first chunk carries the role and ``memgrid``; the last the finish reason
    and ``usage``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    memgrid: MemoryReport | None = None
