"""The chat logic of the inference service: validate, retrieve, render, generate.

:class:`ChatEngine` is plain Python (no Ray, no FastAPI): the Ray Serve
deployment (services.inference.serve) and embedded mode's in-process client
(shared.clients.inference_inproc, wired in services/embedded.py) run the same
code, so embedded and distributed answer alike.

Memory comes from the vault (VaultAPI) with the **caller's** tenant and
principal, so a namespace of another tenant is a 404 from the vault and nothing
of another tenant can reach a prompt. Retrieval publishes no access events; the
memories actually put in the prompt are reported to the vault as
memory.accessed with channel ``inference`` once the model has read the prompt
(its first token came out), see ``AccessReport``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from services.inference.prompts import (
    TURN_STOP,
    MemoryBlock,
    MemoryText,
    render_conversation,
    render_memories,
    retrieval_query,
)
from shared.errors import (
    FieldError,
    MemgridError,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from shared.ports.vault import VaultAPI
from shared.schemas.api import AccessItem, AccessReport, Caller, SearchRequest
from shared.schemas.chat import (
    AssistantMessage,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    ChunkDelta,
    CompletionUsage,
    MemoryReport,
    Tier,
    UsedMemory,
)
from shared.settings import InferenceSettings

if TYPE_CHECKING:
    from services.inference.adapters import ActiveAdapter
    from services.inference.backends.base import KVPrefix, ModelBackend

log = logging.getLogger(__name__)


class ActivationSource(Protocol):
    """Where activation memory (a KV cache of a namespace's hot set) comes from;
    the KV store (services.inference.kv) provides it. None: no cache fits."""

    def prefix_for(self, caller: Caller, namespaces: Sequence[str]) -> KVPrefix | None: ...


class ParametricSource(Protocol):
    """Which LoRA adapter serves a request's namespaces (services.inference.adapters's
    ``AdapterRegistry``), loaded and ready. None: no namespace has one."""

    def adapter_for(self, caller: Caller, namespaces: Sequence[str]) -> ActiveAdapter | None: ...


def tier_unsupported(tier: str, backend: str) -> MemgridError:
    return MemgridError(
        detail=f"the {backend!r} backend cannot inject {tier} memory",
        errors=[FieldError("body.memgrid.tiers", f"{tier!r} is not supported by this model")],
        status=400,
        code="tier_unsupported",
        title="Bad request",
    )


@dataclass
class Prepared:
    """A validated request with its prompt built, ready to generate."""

    id: str
    created: int
    model: str
    prompt: str
    prompt_tokens: int
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    prefix: KVPrefix | None
    report: MemoryReport
    caller: Caller | None
    session_id: str | None
    access: list[AccessItem] = field(default_factory=list)
    adapter: str | None = None  # the backend's slot name of the LoRA adapter applied


class ChatEngine:
    def __init__(
        self,
        settings: InferenceSettings,
        backend: ModelBackend,
        vault: VaultAPI | None,
        activation: ActivationSource | None = None,
        parametric: ParametricSource | None = None,
    ) -> None:
        self._cfg = settings
        self.backend = backend
        self._vault = vault
        self._activation = activation
        self._parametric = parametric
        fp = backend.fingerprint
        self.model = fp.model_id if fp is not None else getattr(backend, "model", backend.name)

    # --- request -> prompt -------------------------------------------------------

    def prepare(self, caller: Caller | None, req: ChatCompletionRequest) -> Prepared:
        """Raises MemgridError (4xx) for anything wrong with the request."""
        serve = self._cfg.serve
        self._check_sizes(req)
        opts = req.memgrid
        namespaces = list(dict.fromkeys(opts.namespaces)) if opts else []
        tiers: list[Tier] = list(opts.tiers) if opts else []
        budget = serve.default_token_budget
        if opts is not None and opts.token_budget is not None:
            budget = opts.token_budget
        if budget > serve.max_token_budget:
            raise ValidationFailed(
                f"token budget above {serve.max_token_budget}",
                [FieldError("body.memgrid.token_budget", f"at most {serve.max_token_budget}")],
            )
        if "activation" in tiers and not self.backend.supports_activation:
            raise tier_unsupported("activation", self.backend.name)
        if "parametric" in tiers and not self.backend.supports_adapters:
            raise tier_unsupported("parametric", self.backend.name)
        if namespaces and caller is None:
            raise Unauthorized("memory needs the caller's tenant (X-Memgrid-Tenant)")

        prefix: KVPrefix | None = None
        used: list[UsedMemory] = []
        access: list[AccessItem] = []
        applied: list[Tier] = []
        adapter: ActiveAdapter | None = None
        if namespaces and caller is not None:
            adapter = self._adapter(caller, namespaces, tiers)
            if adapter is not None:
                applied.append("parametric")
                for ref in adapter.sources:
                    used.append(
                        _used(ref.cube_id, ref.version, adapter.namespace, "parametric", 0.0, 0)
                    )
            # A KV cache holds the base model's keys and values; under an adapter they
            # would be wrong, so with an adapter the memory goes in as plaintext.
            if adapter is None:
                prefix = self._activation_prefix(caller, namespaces, tiers)
            if prefix is not None:
                applied.append("activation")
                for ref in prefix.sources:
                    used.append(_used(ref.cube_id, ref.version, "", "activation", 0.0, 0))
            block = self._plaintext(caller, req, namespaces, tiers, budget, prefix)
            if block.items:
                applied.append("plaintext")
            for rank, item in enumerate(block.items, start=1):
                m = item.memory
                used.append(_used(m.id, m.version, m.namespace, "plaintext", m.score, item.tokens))
                used[-1] = used[-1].model_copy(update={"truncated": item.truncated})
                access.append(AccessItem(cube_id=m.id, version=m.version, rank=rank, score=m.score))
            memory_text = block.text
            memory_tokens = block.tokens
        else:
            memory_text, memory_tokens = "", 0
        for ref in prefix.sources if prefix is not None else ():
            access.append(
                AccessItem(cube_id=ref.cube_id, version=ref.version, rank=len(access) + 1)
            )

        prompt = memory_text + render_conversation(req.messages)
        prompt_tokens = self.backend.count_tokens(prompt) + (prefix.token_count if prefix else 0)
        max_new = req.max_tokens or self._cfg.max_new_tokens
        limit = min(self.backend.context_length, self._cfg.max_context_tokens)
        if prompt_tokens >= limit:
            raise ValidationFailed(
                f"the prompt is {prompt_tokens} tokens; the model reads at most {limit}",
                [FieldError("body.messages", f"at most {limit} tokens with memories")],
            )
        if prompt_tokens + max_new > limit:
            raise ValidationFailed(
                f"prompt ({prompt_tokens} tokens) plus max_tokens exceeds the context of {limit}",
                [FieldError("body.max_tokens", f"at most {limit - prompt_tokens} here")],
            )
        report = MemoryReport(
            memories=used,
            tiers_requested=tiers,
            tiers_applied=applied,
            token_budget=budget,
            memory_tokens=memory_tokens,
            query_id=uuid.uuid4().hex if used else None,
            adapter=adapter.adapter_id if adapter is not None else None,
        )
        return Prepared(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.model,
            prompt=prompt,
            prompt_tokens=prompt_tokens,
            max_new_tokens=max_new,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=[*req.stop_list(), TURN_STOP],
            seed=req.seed,
            prefix=prefix,
            report=report,
            caller=caller,
            session_id=req.user,
            access=access,
            adapter=adapter.slot if adapter is not None else None,
        )

    def _check_sizes(self, req: ChatCompletionRequest) -> None:
        serve = self._cfg.serve
        if len(req.messages) > serve.max_messages:
            raise PayloadTooLarge(
                f"at most {serve.max_messages} messages",
                [FieldError("body.messages", f"at most {serve.max_messages} messages")],
            )
        for i, m in enumerate(req.messages):
            if len(m.content) > serve.max_message_chars:
                raise PayloadTooLarge(
                    f"message {i} is longer than {serve.max_message_chars} characters",
                    [FieldError(f"body.messages.{i}.content", "too long")],
                )

    def _activation_prefix(
        self, caller: Caller, namespaces: list[str], tiers: list[Tier]
    ) -> KVPrefix | None:
        if "activation" not in tiers or self._activation is None:
            return None
        return self._activation.prefix_for(caller, namespaces)

    def _adapter(
        self, caller: Caller, namespaces: list[str], tiers: list[Tier]
    ) -> ActiveAdapter | None:
        if "parametric" not in tiers or self._parametric is None:
            return None
        return self._parametric.adapter_for(caller, namespaces)

    def _plaintext(
        self,
        caller: Caller,
        req: ChatCompletionRequest,
        namespaces: list[str],
        tiers: list[Tier],
        budget: int,
        prefix: KVPrefix | None,
    ) -> MemoryBlock:
        if self._vault is None:
            raise Unavailable("this inference service has no vault configured (MEMGRID_VAULT__URL)")
        query = (req.memgrid.query if req.memgrid else None) or retrieval_query(req.messages)
        if not query:
            for ns in namespaces:  # nothing to retrieve for, but unknown namespaces stay 404
                self._vault.get_namespace(caller, ns)
            return MemoryBlock("", (), 0)
        top_k = (req.memgrid.top_k if req.memgrid else None) or self._cfg.serve.retrieve_top_k
        found = self._vault.search(
            caller,
            SearchRequest(query=query, namespaces=namespaces, top_k=top_k),
            publish_access=False,
        )
        if "plaintext" not in tiers:
            return MemoryBlock("", (), 0)
        cached = {r.cube_id for r in prefix.sources} if prefix is not None else set()
        memories = [
            MemoryText(h.id, h.version, h.namespace, h.text, h.score)
            for h in found.results
            if h.id not in cached
        ]
        return render_memories(
            memories, budget, self.backend.count_tokens, self.backend.truncate_to_tokens
        )

    # --- generation --------------------------------------------------------------

    def start(self, p: Prepared) -> Iterator[str]:
        """The backend's piece generator, primed: its first piece has been produced
        (errors such as an unreachable remote model surface here, before any byte
        of a response is sent), and the memories used have been reported."""
        gen = self.backend.generate(
            p.prompt,
            max_new_tokens=p.max_new_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=p.stop,
            prefix=p.prefix,
            seed=p.seed,
            # Only when set: backends (and fakes) predating parametric memory still work.
            **({"adapter": p.adapter} if p.adapter is not None else {}),
        )
        try:
            first = next(gen)
        except StopIteration:
            first = None
        self._report_access(p)
        return _chain(first, gen)

    def complete(self, p: Prepared) -> ChatCompletionResponse:
        pieces = list(self.start(p))
        text = "".join(pieces)
        completion = self._completion_tokens(len(pieces), text)
        return ChatCompletionResponse(
            id=p.id,
            created=p.created,
            model=p.model,
            choices=[
                Choice(
                    message=AssistantMessage(content=text),
                    finish_reason="length" if completion >= p.max_new_tokens else "stop",
                )
            ],
            usage=_usage(p.prompt_tokens, completion),
            memgrid=p.report,
        )

    def chunks(self, p: Prepared, pieces: Iterator[str]) -> Iterator[ChatCompletionChunk]:
        """The stream of a primed generator: a first chunk with the role and the
        memory report, one per piece, a last one with finish reason and usage."""

        def chunk(
            delta: ChunkDelta, finish: str | None = None, **extra: object
        ) -> ChatCompletionChunk:
            return ChatCompletionChunk.model_validate(
                {
                    "id": p.id,
                    "created": p.created,
                    "model": p.model,
                    "choices": [ChunkChoice(delta=delta, finish_reason=finish)],  # type: ignore[arg-type]
                    **extra,
                }
            )

        yield chunk(ChunkDelta(role="assistant", content=""), memgrid=p.report)
        count, text = 0, []
        try:
            for piece in pieces:
                count += 1
                if piece:
                    text.append(piece)
                    yield chunk(ChunkDelta(content=piece))
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):  # the client went away: stop generating
                close()
        completion = self._completion_tokens(count, "".join(text))
        finish = "length" if completion >= p.max_new_tokens else "stop"
        yield chunk(ChunkDelta(), finish, usage=_usage(p.prompt_tokens, completion))

    def _completion_tokens(self, pieces: int, text: str) -> int:
        """Tokens generated, as well as the port lets us know: backends yield about
        one piece per token, but hold back pieces that end inside a character or
        might start a stop string; re-tokenising the text errs the other way. The
        larger of the two, so that hitting ``max_tokens`` reads as ``length``."""
        return max(pieces, self.backend.count_tokens(text) if text else 0)

    def _report_access(self, p: Prepared) -> None:
        if not p.access or p.caller is None or self._vault is None:
            return
        report = AccessReport(
            query_id=p.report.query_id or p.id, items=p.access, session_id=p.session_id
        )
        try:
            self._vault.record_access(p.caller, report)
        except Exception as exc:  # statistics: never fail an answer for them
            log.warning("memory.accessed (inference) not recorded for %s: %s", p.id, exc)


def _chain(first: str | None, rest: Iterator[str]) -> Iterator[str]:
    try:
        if first is not None:
            yield first
            yield from rest
    finally:
        close = getattr(rest, "close", None)
        if callable(close):
            close()


def _used(
    cube_id: str, version: int, namespace: str, tier: Tier, score: float, tokens: int
) -> UsedMemory:
    return UsedMemory(
        id=cube_id, version=version, namespace=namespace, tier=tier, score=score, tokens=tokens
    )


def _usage(prompt: int, completion: int) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
