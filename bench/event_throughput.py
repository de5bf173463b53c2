"""End-to-end event throughput through the scheduler's faust processor.

produce memory.accessed on Kafka → scheduler worker(s) (``memgrid serve --service
scheduler``, separate processes) → effect: the usage table updated. Each run
publishes ``--events`` events over ``--cubes`` cubes (Zipf-like popularity, as
search hits are) with an aiokafka producer as fast as it can (or at ``--rate``), while the
scheduler consumes; a run ends when the workers report every event applied.

Per run it prints:
  produce/s   events/s the producer achieved (acks=all)
  e2e/s       events / (last event applied - first event sent): the figure the
              >= 10,000/s target is about
  lag p99     events published but not yet applied, sampled every 50 ms
  lat p50/p99 per event, Kafka record timestamp -> end of the batch that
              applied it (the processor's own measurement)
  events/CPU-s  events per CPU-second the workers used: what one dedicated
              core would sustain, whatever else shares the machine
and the medians over the runs. At the end it checks the counts of a sample of
cubes against what was sent (each event counted exactly once).

By default it starts a private single-node Kafka on free ports through
infra/local (installed in infra's cache) and stops it afterwards, so it never
writes into anybody's topics; ``--bus kafka://host:port`` uses a running one.

    python bench/event_throughput.py --events 100000 --runs 5 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import ROOT, median, percentile

INFRA = ROOT / "infra" / "local" / "memgrid_infra.py"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class PrivateKafka:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "MGINFRA_DATA_DIR": str(data_dir),
            "MGINFRA_KAFKA_PORT": str(self.port),
            "MGINFRA_KAFKA_CONTROLLER_PORT": str(free_port()),
        }

    def run(self, action: str) -> None:
        subprocess.run(
            [sys.executable, str(INFRA), action, "kafka"], env=self.env, check=True, timeout=600
        )

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"


class Workers:
    """``n`` scheduler processes in one consumer group (one app id)."""

    def __init__(self, n: int, bus_url: str, data_dir: Path, batch_size: int) -> None:
        self.app_id = f"bench-scheduler-{uuid.uuid4().hex[:8]}"
        self.ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [data_dir / f"worker{i}.log" for i in range(n)]
        for i, port in enumerate(self.ports):
            env = {k: v for k, v in os.environ.items() if not k.startswith("MEMGRID_")}
            env.update(
                {
                    "MEMGRID_BUS__URL": bus_url,
                    "MEMGRID_DATA_DIR": str(data_dir / f"worker{i}"),
                    "MEMGRID_SCHEDULER__APP_ID": self.app_id,
                    "MEMGRID_SCHEDULER__WEB_PORT": str(port),
                    "MEMGRID_SCHEDULER__BATCH_SIZE": str(batch_size),
                    "MEMGRID_LOG_LEVEL": "warning",
                }
            )
            with open(self.logs[i], "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "services.cli", "serve", "--service", "scheduler"],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        for url, proc, log in zip(self.urls(), self.procs, self.logs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"scheduler worker exited:\n{log.read_text()[-3000:]}")
                try:
                    if get_json(url + "/readyz", 2)["status"] == "ready":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"scheduler worker not ready:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)

    def stats(self, *, latency: bool = True, reset: bool = False) -> list[dict[str, Any]]:
        query = "?reset=latency" if reset else ("" if latency else "?latency=0")
        return [get_json(f"{url}/stats/usage{query}") for url in self.urls()]

    def applied(self) -> tuple[int, float]:
        """Events applied or found duplicate so far, and the latest batch time."""
        stats = self.stats(latency=False)  # cheap: polled every 50 ms
        done = sum(s["applied"] + s["duplicates"] for s in stats)
        last = max((s["last_batch_at"] or 0.0) for s in stats)
        return done, last

    def cpu_seconds(self) -> float:
        """User + system CPU time the workers have used so far."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for proc in self.procs:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def usage(self, cube: str) -> dict[str, Any]:
        result: dict[str, Any] = get_json(f"{self.urls()[0]}/usage/{cube}")
        return result

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def make_events(
    n: int, cubes: list[str], rng: random.Random
) -> tuple[list[tuple[bytes, bytes]], Counter[str]]:
    """Serialised memory.accessed events (key, value), built before the clock starts."""
    from shared.schemas.events import MemoryAccessed, make_event

    weights = [1.0 / (rank + 1) for rank in range(len(cubes))]  # Zipf, s = 1
    picks = rng.choices(cubes, weights=weights, k=n)
    sent: Counter[str] = Counter(picks)
    out = []
    for i, cube in enumerate(picks):
        data = MemoryAccessed(
            cube_id=cube,
            version=1,
            channel="search",
            query_id=f"q{i // 10}",
            rank=i % 10 + 1,
            score=0.5,
            principal=f"p{i % 7}",
            session_id=f"s{i % 13}",
        )
        event = make_event(data, source="/bench", tenant="t_bench", namespace="ns_bench")
        out.append((cube.encode(), event.model_dump_json().encode()))
    return out, sent


async def produce(
    bus_url: str, events: list[tuple[bytes, bytes]], progress: list[int], rate: float
) -> tuple[float, float]:
    """Sends every event (acks=all), at ``rate`` events/s if > 0; returns (first
    send, last ack) wall times. ``progress[0]`` counts the events handed over."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bus_url.split("://", 1)[1],
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    try:
        t0 = time.time()
        step = max(1, int(rate / 200)) if rate > 0 else 0
        for i, (key, value) in enumerate(events):
            if step and i % step == 0:
                ahead = t0 + i / rate - time.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.send("memory.accessed", key=key, value=value)
            progress[0] += 1
        await producer.flush()
        return t0, time.time()
    finally:
        await producer.stop()


def one_run(
    workers: Workers,
    bus_url: str,
    events: list[tuple[bytes, bytes]],
    timeout_s: float,
    rate: float = 0.0,
) -> dict[str, float]:
    import threading

    base, _ = workers.applied()
    workers.stats(reset=True)
    cpu0 = workers.cpu_seconds()
    n = len(events)
    produced: dict[str, float] = {}
    progress = [0]

    def run_producer() -> None:
        produced["t0"], produced["t1"] = asyncio.run(produce(bus_url, events, progress, rate))

    thread = threading.Thread(target=run_producer)
    thread.start()
    lag: list[float] = []
    start = time.time()
    while True:
        done, last_batch = workers.applied()
        done -= base
        # Consumer lag: events handed to the producer but not applied yet.
        lag.append(max(0, progress[0] - done))
        if done >= n:
            break
        if time.time() - start > timeout_s:
            raise SystemExit(f"only {done} of {n} events applied after {timeout_s:.0f} s")
        time.sleep(0.05)
    thread.join()
    cpu = workers.cpu_seconds() - cpu0
    stats = workers.stats()
    lat = [s["latency_ms"] for s in stats if s["latency_ms"]["p99"] is not None]
    return {
        "produce_rate": n / (produced["t1"] - produced["t0"]),
        "e2e_rate": n / (last_batch - produced["t0"]),
        "lag_p99": percentile(lag, 99),
        "lat_p50": max(x["p50"] for x in lat),
        "lat_p99": max(x["p99"] for x in lat),
        "seconds": last_batch - produced["t0"],
        "per_cpu_s": n / cpu,
    }


@contextmanager
def kafka_and_workers(args: argparse.Namespace, prefix: str) -> Iterator[tuple[str, Workers]]:
    """``--bus``'s Kafka or a private one, and ``--workers`` scheduler processes
    ready to consume; both stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        tmp_path = Path(tmp)
        kafka = None if args.bus else PrivateKafka(tmp_path / "infra")
        if kafka is not None:
            kafka.run("up")
        bus_url = args.bus or kafka.url  # type: ignore[union-attr]
        workers = Workers(args.workers, bus_url, tmp_path, args.batch_size)
        try:
            workers.wait_ready()
            yield bus_url, workers
        finally:
            workers.stop()
            if kafka is not None:
                kafka.run("down")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cubes", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="scheduler processes")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--bus", help="kafka://host:port of a running Kafka (default: private)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events/s to produce at (0: as fast as possible)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    cubes = [f"cube_{uuid.uuid4().hex}" for _ in range(args.cubes)]
    with kafka_and_workers(args, "memgrid-bench-events-") as (bus_url, workers):
        print(
            f"kafka {bus_url}; {args.workers} scheduler worker(s), app {workers.app_id}; "
            f"{args.runs} runs of {args.events} events over {args.cubes} cubes"
            f"{f' at {args.rate:.0f}/s' if args.rate else ''}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        warm, _ = make_events(min(5000, args.events), cubes, rng)
        one_run(workers, bus_url, warm, 300)  # JIT of the broker, topic metadata, ...
        total: Counter[str] = Counter(json.loads(v)["data"]["cube_id"] for _, v in warm)
        results = []
        for i in range(args.runs):
            events, sent = make_events(args.events, cubes, rng)
            total.update(sent)
            r = one_run(workers, bus_url, events, 600, args.rate)
            results.append(r)
            print(
                f"run {i + 1}: produce {r['produce_rate']:8.0f}/s  e2e {r['e2e_rate']:8.0f}/s"
                f"  lag p99 {r['lag_p99']:7.0f} events  latency p50 {r['lat_p50']:6.0f} ms"
                f"  p99 {r['lat_p99']:6.0f} ms  {r['per_cpu_s']:6.0f} events/CPU-s"
                f"  ({r['seconds']:.1f} s)",
                flush=True,
            )
        print(
            f"median: produce {median([r['produce_rate'] for r in results]):.0f}/s, "
            f"e2e {median([r['e2e_rate'] for r in results]):.0f} events/s, "
            f"lag p99 {median([r['lag_p99'] for r in results]):.0f} events, "
            f"latency p50 {median([r['lat_p50'] for r in results]):.0f} ms "
            f"p99 {median([r['lat_p99'] for r in results]):.0f} ms, "
            f"{median([r['per_cpu_s'] for r in results]):.0f} events per worker CPU-second "
            f"(load average now {os.getloadavg()[0]:.1f})"
        )
        sample = rng.sample(sorted(total), min(20, len(total)))
        wrong = [c for c in sample if workers.usage(c)["access_count"] != total[c]]
        verdict = wrong if wrong else "ok"
        print(f"exactly-once counts on {len(sample)} sampled cubes: {verdict}")


if __name__ == "__main__":
    main()
