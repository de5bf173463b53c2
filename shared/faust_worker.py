"""Running a faust app built by shared.streams as a service process.

``run_worker`` blocks in a faust Worker until SIGTERM/SIGINT (a clean stop:
agents finish their batch, the changelog is flushed and offsets committed).

faust is imported by the caller's module; this one only when a function runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import Any, NoReturn

from shared.metrics import DEAD_LETTERED
from shared.schemas.events import EventEnvelope
from shared.settings import Settings

log = logging.getLogger(__name__)

# faust's log levels are named differently from memgrid's.
_FAUST_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}


def shorten_fetch_wait(max_wait_ms: int) -> None:
    """Sets the broker long-poll wait of faust's Kafka consumers in this process.

    faust-streaming 0.15 creates its aiokafka consumer with a fixed
    ``fetch_max_wait_ms=1500``. aiokafka sends one fetch per broker at a time,
    so while a fetch for partitions that are caught up waits out those 1.5 s, a
    partition with a backlog that has just been drained cannot fetch more:
    measured here, a backlog was read at ~6,500 events/s with 1.5 s and
    ~10,500/s with 50 ms. Works on the consumer object before it starts; does
    nothing if faust's internals differ from the version this was written for.
    """
    try:
        from faust.transport.drivers import aiokafka as driver
    except ImportError:  # pragma: no cover - faust not installed
        return
    thread_cls: Any = getattr(driver, "AIOKafkaConsumerThread", None)
    create = getattr(thread_cls, "_create_worker_consumer", None)
    if create is None:
        log.warning("faust internals changed; fetch_max_wait_ms stays at faust's default")
        return
    original = getattr(create, "__wrapped_create__", create)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if hasattr(consumer, "_fetch_max_wait_ms"):
            consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    create_worker_consumer.__wrapped_create__ = original  # type: ignore[attr-defined]
    thread_cls._create_worker_consumer = create_worker_consumer


def drain_producer_buffer_before_commit() -> None:
    """Makes faust's producer-buffer ``flush`` wait until the buffer is empty.

    faust commits a batch's offsets right after ``producer.flush()``, which first
    drains the buffer of table changelog writes. faust-streaming 0.15's
    ``ProducerBuffer.flush`` gives up after 0.1 s without progress (a busy loop
    or a thread holding the GIL is enough), so offsets could be committed while
    the changelog writes of those events were still buffered: a kill -9 then
    lost them (undercounted usage). Here flush retries until the buffer is
    empty; a producer that cannot send keeps the commit waiting instead, which
    is at-least-once. Does nothing if faust's internals differ.
    """
    try:
        from faust.transport.producer import ProducerBuffer
    except ImportError:  # pragma: no cover - faust not installed
        return
    if getattr(ProducerBuffer.flush, "__memgrid_drains__", False):
        return
    if not hasattr(ProducerBuffer, "flush_atmost") or not hasattr(ProducerBuffer, "size"):
        log.warning("faust internals changed; its producer buffer flush is left as it is")
        return

    send_one = ProducerBuffer._send_pending

    # The buffer's size leaves out the message its sender task has taken but not
    # yet handed to the Kafka client; flush waits for that one too.
    async def send_pending(self: Any, fut: Any) -> None:
        self.memgrid_in_flight = getattr(self, "memgrid_in_flight", 0) + 1
        try:
            await send_one(self, fut)
        finally:
            self.memgrid_in_flight -= 1

    async def flush(self: Any) -> None:
        while self.size or getattr(self, "memgrid_in_flight", 0):
            if self.size:
                await self.flush_atmost(None)  # raises if the producer stopped meanwhile
            else:
                await asyncio.sleep(0.005)

    flush.__memgrid_drains__ = True  # type: ignore[attr-defined]
    ProducerBuffer._send_pending = send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]


async def send_dead_letter(
    topic: Any,
    event: Any,
    error: BaseException,
    *,
    group: str,
    envelope: EventEnvelope | None = None,
    attempts: int = 0,
) -> None:
    """Publishes the dead letter of faust ``event`` (its raw value if ``envelope`` is
    None) on ``topic`` and waits for the broker's ack, retrying while Kafka is
    unreachable: the failed message must not be acknowledged before its letter
    is stored, and a Kafka restart must not stop the worker."""
    from shared.streams import dead_letter_of  # imports faust: only in a faust worker

    msg = event.message
    letter = dead_letter_of(event, group, error, attempts, envelope)
    log.error(
        "%s: dead-lettering %s[%d]@%d: %s", group, msg.topic, msg.partition, msg.offset, error
    )
    value = letter.model_dump_json().encode()
    pause = 0.5
    while True:
        try:
            await (await topic.send(key=msg.key, value=value))
            DEAD_LETTERED.labels(group, msg.topic).inc()
            return
        except Exception as exc:  # aiokafka's errors; the letter must get out
            log.warning(
                "%s: dead letter not stored yet (%r); retrying in %.1f s", group, exc, pause
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)


def abort_worker(reason: BaseException, code: int = 70) -> NoReturn:
    """Ends the process at once after a processing bug.

    faust's own crash path stops the worker's services in order, and in
    faust-streaming 0.15 that can hang for good (seen here: stuck stopping the
    consumer, deaf to SIGTERM), leaving a live process that processes nothing.
    Exiting is safe for at-least-once processing: whatever was not committed
    is delivered again to the restarted worker. 70 is EX_SOFTWARE.
    """
    log.critical("stream processor failed, exiting with %d: %r", code, reason, exc_info=reason)
    logging.shutdown()
    os._exit(code)


def tune_gc() -> None:
    """Makes the cyclic garbage collector cheaper for a stream processor.

    faust allocates several objects per message, so the collector runs often,
    and each full collection walks every object of the app. Freezing what
    exists after start-up takes those out of every later collection, and a
    larger first-generation threshold runs collections less often: measured
    on the scheduler, 6,200 -> 7,200 events per CPU-second.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_worker(app: Any, settings: Settings, *, fetch_max_wait_ms: int | None = None) -> None:
    """Runs ``app`` until the process is asked to stop; raises SystemExit with the
    worker's exit code (non-zero after a crash, so a supervisor restarts it)."""
    import faust

    from shared.logging_setup import reapply

    if fetch_max_wait_ms is not None:
        shorten_fetch_wait(fetch_max_wait_ms)
    drain_producer_buffer_before_commit()
    tune_gc()
    # faust runs every message through several asyncio callbacks and queue
    # hand-offs, so the loop's own overhead is a large share of a busy
    # processor: uvloop measured 7,430 -> 8,390 events per CPU-second.
    import mode.loop

    mode.loop.use("uvloop")

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # faust draws a terminal spinner unless the level is below WARN, and
            # to feed it sets the root logger to DEBUG: every debug record of
            # faust and aiokafka is then built (measured: ~5% of the CPU of a
            # busy processor) and escape codes land in the log file.
            self.spinner = None
            super().on_setup_root_logger(logger, level)
            # faust has just configured the root logger its way: memgrid's
            # format (text or JSON, shared.logging_setup) again.
            reapply()

    worker = Worker(
        app,
        loglevel=_FAUST_LEVELS[settings.log_level],
        quiet=True,  # no banner: the output goes to a log file
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
