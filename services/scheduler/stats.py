"""Counters and a latency window of a running usage processor (for /stats and benches)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.scheduler.usage import BatchResult


class UsageStats:
    """Counters and a latency window of a running processor (for /stats and benches).

    Latency is the time from an event's publication (the Kafka record's
    timestamp) to the end of the batch that applied it.
    """

    def __init__(self, window: int = 100_000) -> None:
        self.received = 0
        self.applied = 0
        self.duplicates = 0
        self.ignored = 0
        self.dead_lettered = 0
        self.batches = 0
        self.first_at: float | None = None  # wall clock of the first batch
        self.last_at: float | None = None
        self._latency_ms: deque[float] = deque(maxlen=window)

    def record(self, result: BatchResult, received: int, now: float) -> None:
        self.received += received
        self.applied += result.applied
        self.duplicates += result.duplicates
        self.ignored += result.ignored
        self.batches += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now

    def observe_latency(self, published_at: Sequence[float], now: float) -> None:
        self._latency_ms.extend((now - t) * 1000.0 for t in published_at)

    def reset_latency(self) -> None:
        self._latency_ms.clear()

    def percentile(self, q: float) -> float | None:
        if not self._latency_ms:
            return None
        ordered = sorted(self._latency_ms)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]

    def as_dict(self, *, latency: bool = True) -> dict[str, Any]:
        """Counters, and latency percentiles if ``latency`` (that sorts the window:
        pollers that only watch progress should leave it out)."""
        body: dict[str, Any] = {
            "received": self.received,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "first_batch_at": self.first_at,
            "last_batch_at": self.last_at,
        }
        if latency:
            body["latency_ms"] = {
                "p50": self.percentile(50),
                "p99": self.percentile(99),
                "window": len(self._latency_ms),
            }
        return body
