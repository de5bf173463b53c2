"""faust's producer-buffer flush must not return while changelog writes are
still buffered: faust commits the batch's offsets right after it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from shared.faust_worker import drain_producer_buffer_before_commit

pytestmark = pytest.mark.unit


def test_flush_waits_for_a_slow_producer() -> None:
    from faust.transport.producer import ProducerBuffer

    drain_producer_buffer_before_commit()
    drain_producer_buffer_before_commit()  # idempotent

    async def scenario() -> tuple[int, int]:
        sent: list[Any] = []
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]

        async def publish_message(fut: Any, wait: bool = False) -> None:
            await asyncio.sleep(0.25)  # longer than faust's 0.1 s patience
            sent.append(fut)

        channel = SimpleNamespace(publish_message=publish_message)
        await buffer.start()
        for _ in range(3):
            buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel)))  # type: ignore[arg-type]
        await buffer.flush()
        left = buffer.size
        await buffer.stop()
        return left, len(sent)

    left, sent = asyncio.run(scenario())
    assert (left, sent) == (0, 3)
