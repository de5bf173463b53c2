"""memory.accessed events per second through the scheduler, embedded and on Kafka.

EMBEDDED: the embedded scheduler (services.scheduler.inproc.EmbeddedScheduler,
the full Scheduler: usage records, namespace summaries, state file) subscribed
to the in-process bus (MemoryEventBus), as ``make run`` wires it. A run
publishes ``--events`` pre-built events (Zipf over ``--cubes`` cubes, one
namespace) and ends when the bus has delivered them all, then ticks once (the
policies and the state file flush). Figures: events/s (first publish → last
delivery, tick excluded) and events per CPU-second of the whole process
(publisher, dispatcher thread and the tick).

ON KAFKA: bench/event_throughput.py's machinery: a private single-node Kafka,
``memgrid serve --service scheduler`` worker process(es) (the faust app, with
its usage/journal/namespace tables and repartition topics), an aiokafka
producer; a run ends when the workers report every event applied. Figures:
end-to-end events/s and events per worker CPU-second; at the end, exact counts
on sampled cubes and the namespace record the worker built.

Medians over ``--runs`` runs.

    python bench/scheduler_throughput.py --events 100000 --runs 3 [--skip-kafka]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from common import median
from event_throughput import Workers, get_json, kafka_and_workers, make_events, one_run

NAMESPACE = "ns_bench"  # the namespace event_throughput.make_events uses


def embedded_run(events: list[Any], data_dir: Path) -> dict[str, float]:
    from services.scheduler.inproc import EmbeddedScheduler
    from services.scheduler.persist import StateFile
    from shared.adapters.bus_memory import MemoryEventBus
    from shared.settings import SchedulerSettings

    bus = MemoryEventBus()
    state = StateFile(data_dir / f"scheduler-{uuid.uuid4().hex[:6]}.db")
    scheduler = EmbeddedScheduler(bus, SchedulerSettings(), state=state).start(ticking=False)
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for event in events:
            bus.publish("memory.accessed", event, key=event.subject)
        bus.flush(timeout_s=600)
        t1 = time.perf_counter()
        scheduler.tick()
        cpu = time.process_time() - cpu0
        space = scheduler.scheduler.spaces.get(NAMESPACE) or {}
        return {
            "rate": len(events) / (t1 - t0),
            "per_cpu_s": len(events) / cpu,
            "applied": scheduler.stats.applied,
            "members": len(space.get("members", {})),
        }
    finally:
        scheduler.close()
        bus.close()


def bench_embedded(args: argparse.Namespace, cubes: list[str], rng: random.Random) -> None:
    from shared.schemas.events import EventEnvelope

    results = []
    with tempfile.TemporaryDirectory(prefix="memgrid-bench-sched-") as tmp:
        for i in range(args.runs):
            raw, _ = make_events(args.events, cubes, rng)
            events = [EventEnvelope.model_validate_json(v) for _, v in raw]
            r = embedded_run(events, Path(tmp))
            results.append(r)
            print(
                f"embedded run {i + 1}: {r['rate']:8.0f} events/s  "
                f"{r['per_cpu_s']:8.0f} events/CPU-s  ({r['applied']} applied, "
                f"{r['members']} cubes in the namespace record)",
                flush=True,
            )
    print(
        f"EMBEDDED median: {median([r['rate'] for r in results]):.0f} events/s, "
        f"{median([r['per_cpu_s'] for r in results]):.0f} events per CPU-second",
        flush=True,
    )


def bench_kafka(args: argparse.Namespace, cubes: list[str], rng: random.Random) -> None:
    with kafka_and_workers(args, "memgrid-bench-sched-kafka-") as (bus_url, workers):
        print(f"kafka {bus_url}; {args.workers} scheduler worker(s)", flush=True)
        warm, total = make_events(min(5000, args.events), cubes, rng)
        one_run(workers, bus_url, warm, 300)
        results = []
        for i in range(args.runs):
            events, sent = make_events(args.events, cubes, rng)
            total.update(sent)
            r = one_run(workers, bus_url, events, 600)
            results.append(r)
            print(
                f"kafka run {i + 1}: e2e {r['e2e_rate']:8.0f} events/s  "
                f"{r['per_cpu_s']:8.0f} events/worker CPU-s  "
                f"latency p50 {r['lat_p50']:6.0f} ms  ({r['seconds']:.1f} s)",
                flush=True,
            )
        print(
            f"ON KAFKA median: {median([r['e2e_rate'] for r in results]):.0f} events/s "
            f"end to end, {median([r['per_cpu_s'] for r in results]):.0f} events per "
            f"worker CPU-second",
            flush=True,
        )
        check_kafka(workers, total, rng)


def check_kafka(workers: Workers, total: Counter[str], rng: random.Random) -> None:
    sample = rng.sample(sorted(total), min(20, len(total)))
    wrong = [c for c in sample if workers.usage(c)["access_count"] != total[c]]
    print(f"exactly-once counts on {len(sample)} sampled cubes: {wrong or 'ok'}")
    # The namespace side lags the cube side by a batch window at most.
    deadline = time.monotonic() + 30
    while True:
        space = get_json(f"{workers.urls()[0]}/spaces/{NAMESPACE}")
        if space["members"] >= len(total) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"namespace record: {space['members']} of {len(total)} cubes summarised")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cubes", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="scheduler processes (Kafka)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--bus", help="kafka://host:port of a running Kafka (default: private)")
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    cubes = [f"cube_{uuid.UUID(int=rng.getrandbits(128)).hex}" for _ in range(args.cubes)]
    print(
        f"{args.runs} runs of {args.events} memory.accessed events over {args.cubes} cubes; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if not args.skip_embedded:
        bench_embedded(args, cubes, rng)
    if not args.skip_kafka:
        bench_kafka(args, cubes, rng)


if __name__ == "__main__":
    main()
