"""What tracing costs an API request: embedded memgrid with and without spans.

Four configurations of the same embedded app (Prometheus metrics are always on
in all three, so the figures isolate tracing):

  none    telemetry.exporter=none: no span is recorded (the default; baseline)
  memory  every span recorded and kept in process: the cost of making spans
  otlp    every span exported over OTLP/HTTP by the SDK's batch processor to a
          receiver in this script's process (tests/e2e/otlp_sink.py), as to a
          collector
  otlp-10 the same with telemetry.sample_ratio=0.1: one new trace in ten
          recorded and exported (the chart's production values)

Tracing is set up once per process, so each configuration of each run is a
fresh child process; the runs interleave the configurations (none, memory,
otlp, then the next run) so that drift on the machine affects them alike.
Each child adds ``--adds`` memories one request each (3 messages, the hashing
embedder so the model does not drown the difference), then runs ``--searches``
searches, after a warm-up, and reports per-request latencies. Printed: the
median over the runs of p50 and p99 per operation, and each configuration's
p50 as a ratio of the baseline's measured in the same runs; for otlp also the
spans the receiver got per request.

    python bench/telemetry_overhead.py --runs 5 --adds 300 --searches 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from common import ROOT, embedded_client, median, percentile

# name -> (telemetry.exporter, telemetry.sample_ratio)
CONFIGS = {"none": ("none", 1.0), "memory": ("memory", 1.0), "otlp": ("otlp", 1.0)}
CONFIGS["otlp-10"] = ("otlp", 0.1)
WARMUP = 20


def child(config: str, endpoint: str, adds: int, searches: int) -> dict[str, Any]:
    from shared.settings import TelemetrySettings

    exporter, ratio = CONFIGS[config]
    telemetry = TelemetrySettings(
        exporter=exporter,  # type: ignore[arg-type]
        otlp_endpoint=endpoint,
        sample_ratio=ratio,
    )
    overrides = {"telemetry": telemetry, "embedder": {"backend": "hashing"}}
    with embedded_client(**overrides) as client:
        ns = client.post("/v1/namespaces", json={"name": "bench"}).json()["id"]

        def add(i: int) -> None:
            msgs = [
                {"id": f"m{i}-{j}", "role": "user", "content": f"note {i}.{j}: Ana met Bo in Oslo"}
                for j in range(3)
            ]
            r = client.post(f"/v1/namespaces/{ns}/memories", json={"messages": msgs})
            assert r.status_code == 201, r.text

        def search(i: int) -> None:
            r = client.post("/v1/search", json={"query": f"where did Ana meet Bo {i}", "top_k": 5})
            assert r.status_code == 200, r.text

        out: dict[str, Any] = {}
        for name, op, n in (("add", add, adds), ("search", search, searches)):
            for i in range(WARMUP):
                op(-1 - i)
            lat = []
            for i in range(n):
                t0 = time.perf_counter()
                op(i)
                lat.append((time.perf_counter() - t0) * 1000)
            out[name] = lat
    # Leaving the client flushed the batch processor (the provider shuts down at exit).
    return out


def run_child(config: str, endpoint: str, adds: int, searches: int) -> dict[str, list[float]]:
    cmd = [sys.executable, __file__, "--child", config, "--endpoint", endpoint]
    cmd += ["--adds", str(adds), "--searches", str(searches)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{config} child failed:\n{done.stderr[-3000:]}")
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--adds", type=int, default=300)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.endpoint, args.adds, args.searches)))
        return

    sys.path.insert(0, str(ROOT))
    from tests.e2e.otlp_sink import OtlpSink

    sink = OtlpSink().start()
    stats: dict[str, dict[str, list[tuple[float, float]]]] = {
        c: {"add": [], "search": []} for c in CONFIGS
    }
    spans_per_request: dict[str, list[float]] = {"otlp": [], "otlp-10": []}
    print(f"{args.runs} runs x {args.adds} adds + {args.searches} searches per configuration")
    try:
        for run in range(1, args.runs + 1):
            for config in CONFIGS:
                before = len(sink.spans())
                lat = run_child(config, sink.endpoint, args.adds, args.searches)
                if config in spans_per_request:
                    requests = 2 * WARMUP + args.adds + args.searches + 2
                    spans_per_request[config].append((len(sink.spans()) - before) / requests)
                for op, values in lat.items():
                    stats[config][op].append((percentile(values, 50), percentile(values, 99)))
                    print(
                        f"run {run} {config:7} {op:6} p50 {percentile(values, 50):7.2f} ms"
                        f"  p99 {percentile(values, 99):7.2f} ms",
                        flush=True,
                    )
    finally:
        sink.stop()

    print()
    print("| config | op | p50 ms | p99 ms | p50 vs none |")
    print("| --- | --- | ---: | ---: | ---: |")
    for op in ("add", "search"):
        base = median([p50 for p50, _ in stats["none"][op]])
        for config in CONFIGS:
            p50 = median([p for p, _ in stats[config][op]])
            p99 = median([p for _, p in stats[config][op]])
            print(f"| {config} | {op} | {p50:.2f} | {p99:.2f} | {p50 / base:.3f} |")
    print()
    for config, counts in spans_per_request.items():
        print(f"{config}: {median(counts):.1f} spans exported per request (median over runs)")
    print(f"cpu: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
