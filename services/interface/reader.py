"""MemReader: turns a MemoryCreate request into cube drafts, with no LLM.

Text form: one draft, the text as given (semantic type ``fact`` unless the
request names one, origin ``user_input``, the request's event time, TTL, tags
and metadata).

Messages form: one draft per message, in order.

- text: ``"<name>: <content>"`` (name falls back to the role), with every relative
  date expression followed by its absolute date in brackets
  (``"I went yesterday [2023-05-07]"``; see services.interface.dates);
- semantic type ``message`` (unless the request names one), sources = [message id];
- metadata: the request's metadata, then ``speaker``, ``role``, ``timestamp``
  (ISO 8601, when the message has one), ``content`` (the raw content) and
  ``resolved_dates`` (``[{"text", "date", "granularity"}]``, when any);
- event time: the message timestamp (else the request's ``event_time``), or, when
  exactly one relative expression resolves, that date at 00:00 UTC;
- embedding text: the previous ``context_window`` messages' texts and this one,
  one per line, so that a reply ("yes, twice!") is embedded with its question.

Relative dates resolve against the calendar date of the message timestamp in the
timezone it was written in. Messages without a timestamp (and no request
event_time) keep their expressions unresolved: memgrid never guesses "now".
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from services.interface.dates import annotate, find_relative_dates
from shared.schemas.api import ChatMessage, CubeDraft, MemoryCreate
from shared.schemas.memcube import Origin, SemanticType


class MemReader:
    """Stateless; one instance per app. ``read`` is pure and safe to call from threads."""

    def __init__(self, context_window: int = 1) -> None:
        if context_window < 0:
            raise ValueError("context_window must be >= 0")
        self.context_window = context_window

    def read(self, req: MemoryCreate) -> list[CubeDraft]:
        if req.messages is not None:
            return self.read_messages(req)
        if req.text is None:
            raise ValueError("MemoryCreate needs text or messages")
        return [
            CubeDraft(
                text=req.text,
                semantic_type=req.semantic_type or SemanticType.fact,
                origin=Origin.user_input,
                event_time=req.event_time,
                tags=list(req.tags),
                metadata=dict(req.metadata),
                ttl_seconds=req.ttl_seconds,
            )
        ]

    def read_messages(self, req: MemoryCreate) -> list[CubeDraft]:
        messages = req.messages or []
        semantic_type = req.semantic_type or SemanticType.message
        window = self.context_window
        texts: list[str] = []
        drafts: list[CubeDraft] = []
        for msg in messages:
            text, metadata, event_time = self._read_one(msg, req)
            context = texts[-window:] if window else []
            texts.append(text)
            drafts.append(
                CubeDraft(
                    text=text,
                    semantic_type=semantic_type,
                    origin=Origin.user_input,
                    event_time=event_time,
                    tags=list(req.tags),
                    sources=[msg.id],
                    metadata=metadata,
                    ttl_seconds=req.ttl_seconds,
                    embedding_text="\n".join([*context, text]) if context else None,
                )
            )
        return drafts

    @staticmethod
    def _read_one(
        msg: ChatMessage, req: MemoryCreate
    ) -> tuple[str, dict[str, object], datetime | None]:
        speaker = msg.name or msg.role
        when = msg.timestamp or req.event_time
        metadata: dict[str, object] = dict(req.metadata)
        metadata["speaker"] = speaker
        metadata["role"] = msg.role
        if msg.timestamp is not None:
            metadata["timestamp"] = msg.timestamp.isoformat()
        metadata["content"] = msg.content
        content = msg.content
        event_time = when
        if when is not None:
            resolved = find_relative_dates(content, when.date())
            if resolved:
                content = annotate(content, resolved)
                metadata["resolved_dates"] = [r.as_dict() for r in resolved]
                if len(resolved) == 1:
                    event_time = _utc_midnight(resolved[0].date)
        return f"{speaker}: {content}", metadata, event_time


def _utc_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0, 0), tzinfo=UTC)
