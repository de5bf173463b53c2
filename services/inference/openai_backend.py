"""A remote OpenAI-compatible model as a ModelBackend: plaintext memory only.

It serves ``inference.backend = "openai"`` (registered in
services.inference.backends): any server speaking OpenAI's chat completions
(OpenAI, vLLM, llama.cpp, Ollama) at ``inference.openai_base_url``. Memgrid's
rendered prompt (memory block and transcript, services.inference.prompts) is
sent as one user message, streamed back, and cut locally at the stop strings
(OpenAI takes at most four, and memgrid adds its own turn stop).

What it cannot do, it says so: there are no weights to check (``fingerprint``
None), so no KV cache (activation) and no LoRA adapter (parametric) can be used
with it; requests for those tiers get 400 ``tier_unsupported``
(services.inference.chat). Its tokenizer is not known here either: token counts
are shared.tokens' estimate (UTF-8 bytes / 4, erring high), so a memory budget
is kept approximately, never exceeded by much.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from shared.clients.openai_http import openai_client
from shared.errors import FieldError, MemgridError, Unavailable
from shared.settings import Settings
from shared.tokens import BYTES_PER_TOKEN, estimate_tokens


def _unsupported(tier: str) -> MemgridError:
    return MemgridError(
        detail=f"the remote OpenAI-compatible backend cannot use {tier} memory",
        errors=[FieldError("body.memgrid.tiers", f"{tier!r} is not supported by this model")],
        status=400,
        code="tier_unsupported",
        title="Bad request",
    )


class OpenAIBackend:
    name = "openai"
    fingerprint = None
    supports_activation = False
    supports_adapters = False

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        timeout_s: float = 60.0,
        context_length: int = 8_192,
        client: httpx.Client | None = None,
    ) -> None:
        """``client`` lets tests pass one with a mock transport."""
        self.model = model
        self.context_length = context_length
        self._http = client or openai_client(base_url, api_key, timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend:
        cfg = settings.inference
        return cls(
            cfg.openai_base_url,
            cfg.openai_model,
            cfg.openai_api_key.get_secret_value(),
            timeout_s=cfg.timeout_s,
            context_length=cfg.max_context_tokens,
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def truncate_to_tokens(self, text: str, budget: int) -> str:
        limit = max(budget, 0) * BYTES_PER_TOKEN
        data = text.encode("utf-8", "surrogatepass")
        if len(data) <= limit:
            return text
        cut = data[:limit].decode("utf-8", "ignore")  # never half a character
        space = cut.rfind(" ")
        return cut[:space] if space > len(cut) // 2 else cut  # prefer a word boundary

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        prefix: Any = None,
        seed: int | None = None,
        adapter: str | None = None,
    ) -> Iterator[str]:
        if prefix is not None:
            raise _unsupported("activation")
        if adapter is not None:
            raise _unsupported("parametric")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stream": True,
        }
        if seed is not None:
            body["seed"] = seed
        return self._stream(body, list(stop))

    def _stream(self, body: dict[str, Any], stop: list[str]) -> Iterator[str]:
        request = self._http.build_request("POST", "/chat/completions", json=body)
        try:
            r = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise Unavailable(f"remote model unreachable: {type(exc).__name__}") from exc
        try:
            if r.status_code >= 400:
                r.read()
                raise _remote_error(r)
            held = ""  # text not yet yielded: it might be the start of a stop string
            keep = max((len(s) for s in stop), default=1) - 1
            for piece in _deltas(r):
                held += piece
                hit = min((i for i in (held.find(s) for s in stop) if i >= 0), default=-1)
                if hit >= 0:
                    yield held[:hit]
                    return
                if len(held) > keep:
                    out, held = held[: len(held) - keep], held[len(held) - keep :]
                    yield out
                else:
                    yield ""
            if held:
                yield held
        except httpx.TransportError as exc:
            raise Unavailable(f"remote model failed mid-answer: {type(exc).__name__}") from exc
        finally:
            r.close()

    def build_prefix(self, text: str, *, sources: Sequence[Any] = ()) -> Any:
        raise _unsupported("activation")

    def next_token_logits(
        self, prompt: str, *, prefix: Any = None, adapter: str | None = None
    ) -> Any:
        raise MemgridError(
            "the remote backend does not expose logits", status=400, code="tier_unsupported"
        )

    def close(self) -> None:
        self._http.close()


def _deltas(r: httpx.Response) -> Iterator[str]:
    """The content pieces of an OpenAI SSE stream (one per token, as servers send)."""
    for line in r.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
            choices = event.get("choices") or [{}]
            content = (choices[0].get("delta") or {}).get("content")
        except (ValueError, AttributeError, IndexError):
            continue  # keep-alives and vendor extras
        if content is not None:
            yield str(content)


def _remote_error(r: httpx.Response) -> MemgridError:
    """A 400 from the remote model is about the request (too long, bad value); the
    rest (auth, quota, its own failures) is the deployment's problem: 503."""
    try:
        message = str(r.json().get("error", {}).get("message", r.reason_phrase))
    except (ValueError, AttributeError):
        message = r.reason_phrase
    if r.status_code == 400:
        return MemgridError(
            f"the remote model refused the request: {message}",
            status=400,
            code="bad_request",
            title="Bad request",
        )
    return Unavailable(f"remote model answered {r.status_code}: {message}")
