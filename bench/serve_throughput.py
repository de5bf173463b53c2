"""Serving throughput of the inference service on Ray Serve (issue 5).

Starts a local Ray (2 CPUs, 256 MiB object store, no dashboard) and the Serve app
of services/inference/serve.py with the chosen model, then sends chat requests
over HTTP with 1, 4 and 16 in flight at once and measures, per run, generated
tokens per second (completion tokens of all requests / wall time of the run) and
the 95th percentile of request latency. Prints the median over the runs.

    .venv/bin/python bench/serve_throughput.py                  # tiny test model
    .venv/bin/python bench/serve_throughput.py --model gemma    # Gemma 3 270M
    .venv/bin/python bench/serve_throughput.py --replicas 2 --runs 5 --max-tokens 32

No memory is injected (no vault): this measures the serving path and the model;
plaintext memory only lengthens the prompt (see bench/ttft.py for prefill costs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import median, percentile

MODELS = {"tiny": "tiny", "gemma": "gemma3-270m"}
PROMPT = "Ana moved to Lisbon last spring and works at a bakery near the river. Where"


def one_request(url: str, max_tokens: int, seed: int) -> tuple[float, int]:
    import httpx

    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": seed,
    }
    t = time.perf_counter()
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=600)
    r.raise_for_status()
    return time.perf_counter() - t, int(r.json()["usage"]["completion_tokens"])


def run_level(url: str, concurrency: int, requests: int, max_tokens: int) -> tuple[float, float]:
    """(generated tokens/s, p95 latency s) of ``requests`` sent ``concurrency`` at a time."""
    with ThreadPoolExecutor(concurrency) as pool:
        t = time.perf_counter()
        results = list(pool.map(lambda i: one_request(url, max_tokens, i), range(requests)))
        wall = time.perf_counter() - t
    tokens = sum(n for _, n in results)
    return tokens / wall, percentile([s for s, _ in results], 95)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--levels", default="1,4,16", help="concurrent requests")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="requests per run = rounds x level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per replica")
    args = parser.parse_args()

    # Ray reads this in the processes it spawns: a private local cluster needs no tokens.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from services.inference.serve import APP_NAME, build_application, init_ray
    from shared.settings import Settings

    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="memgrid-bench-") as tmp:
        port = 18093
        settings = Settings(  # type: ignore[arg-type]
            data_dir=Path(tmp),
            inference={
                "model": MODELS[args.model],
                "threads": args.threads,
                "serve": {
                    "port": port,
                    "num_replicas": args.replicas,
                    "num_cpus": 1 if args.replicas > 1 else 2,
                    "max_ongoing_requests": max(levels),
                },
            },
        )
        t = time.perf_counter()
        init_ray(settings.inference.serve)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_application(settings), name=APP_NAME, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        one_request(url, 4, 0)  # warm-up: first forward pass, lazy inits
        print(
            f"model {args.model}, {args.replicas} replica(s), started in "
            f"{time.perf_counter() - t:.1f} s; {args.runs} runs, max_tokens {args.max_tokens}"
        )
        rows = []
        for level in levels:
            tps, p95 = [], []
            for _ in range(args.runs):
                a, b = run_level(url, level, level * args.rounds, args.max_tokens)
                tps.append(a)
                p95.append(b)
            rows.append((level, median(tps), median(p95), min(tps), max(tps)))
        serve.shutdown()
        ray.shutdown()

    print()
    print("| concurrent | generated tokens/s (median) | p95 latency (median) | tokens/s range |")
    print("| ---: | ---: | ---: | ---: |")
    for level, tps_m, p95_m, lo, hi in rows:
        print(f"| {level} | {tps_m:.1f} | {p95_m * 1000:.0f} ms | {lo:.1f}-{hi:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
