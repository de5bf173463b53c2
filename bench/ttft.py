"""Time to first token with memory as plaintext vs as a KV cache (issue 5).

For memory texts of 512, 1k, 2k and 4k tokens, the same model and the same short
question, measures the time until ``generate`` yields its first token:

* plaintext: the memory text in the prompt (the model reads all of it);
* KV (LRU): the memory as a prebuilt KV cache already in the in-memory LRU
  (``KVCacheStore.load`` hit, then generation of the question after the prefix);
* KV (blob): the same cache read from the blob store and decoded first
  (manifest + safetensors, fingerprint checked; LRU bypassed).

Each figure is the median of ``--runs`` runs after a warm-up; the reduction is
against plaintext. The blob store is a local directory (embedded mode) unless
``--blob-url`` names another (``s3://bucket`` with the MinIO settings in the
environment).

    nice -n -20 .venv/bin/python bench/ttft.py                 # Gemma 3 270M
    nice -n -20 .venv/bin/python bench/ttft.py --model tiny --runs 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"tiny": "tiny", "gemma": "gemma3-270m"}
SIZES = (512, 1024, 2048, 4096)
QUESTION = "Question: In which city does Ana live, and where does she work?\nAnswer:"
FACTS = [
    "Ana moved to Lisbon in March and rents a flat near the river.",
    "She works as a nurse at Santa Maria hospital, mostly on night shifts.",
    "Her brother Rui lives in Porto and visits every second weekend.",
    "Ana keeps a grey cat called Pixel and is allergic to peanuts.",
    "On Sundays she swims at the municipal pool before lunch with friends.",
    "She is learning German for a conference in Berlin next autumn.",
    "Her favourite book is Blindness by José Saramago, read three times.",
    "The team meeting moved from Monday to Thursday at 9 am.",
]


def memory_text(backend: object, tokens: int) -> str:
    """About ``tokens`` tokens of varied memory lines, ending at a line break."""
    lines = [f"- ({i}) {FACTS[i % len(FACTS)]}" for i in range(tokens)]
    text = "\n".join(lines)
    cut = backend.truncate_to_tokens(text, tokens - 1)  # type: ignore[attr-defined]
    return cut + "\n"


def ttft(make: Callable[[], object]) -> float:
    """Seconds until the first piece of the generator ``make()`` returns."""
    started = time.perf_counter()
    gen = make()
    next(gen)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - started
    gen.close()  # type: ignore[attr-defined]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="gemma")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--blob-url", default="", help="default: a temporary directory")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    args = parser.parse_args()

    from services.inference.backends import create_backend
    from services.inference.kv import KVCacheStore, KVLru
    from shared.adapters import create_blob_store
    from shared.settings import Settings

    tmp = tempfile.mkdtemp(prefix="memgrid-ttft-")
    blob_url = args.blob_url or f"file://{tmp}/blobs"
    settings = Settings(
        data_dir=Path(tmp),
        blob={"url": blob_url},  # type: ignore[arg-type]
        inference={  # type: ignore[arg-type]
            "model": MODELS[args.model],
            "threads": args.threads,
            "kv_max_tokens": max(args.sizes) + 8,
        },
    )
    started = time.perf_counter()
    backend = create_backend(settings)
    print(f"model {backend.fingerprint.short()} loaded in {time.perf_counter() - started:.1f} s")
    store = KVCacheStore(create_blob_store(settings.blob), backend, KVLru(4 << 30))
    ask = {"max_new_tokens": 1, "temperature": 0.0}
    ttft(lambda: backend.generate(QUESTION, **ask))  # warm-up: first-call costs

    rows = []
    for size in args.sizes:
        memory = memory_text(backend, size)
        tokens = backend.count_tokens(memory)
        built = time.perf_counter()
        ref = store.save("bench", "ttft", backend.build_prefix(memory))
        build_s = time.perf_counter() - built
        plain, lru, blob = [], [], []
        for _ in range(args.runs):
            plain.append(ttft(lambda m=memory: backend.generate(m + QUESTION, **ask)))
            lru.append(
                ttft(
                    lambda k=ref.key: backend.generate(
                        QUESTION, prefix=store.load("bench", k), **ask
                    )
                )
            )
            blob.append(
                ttft(
                    lambda k=ref.key: backend.generate(
                        QUESTION, prefix=store.load("bench", k, use_lru=False), **ask
                    )
                )
            )
        row = (tokens, median(plain), median(lru), median(blob), ref.nbytes, build_s)
        rows.append(row)
        print(
            f"  {tokens} tokens: plaintext {row[1] * 1e3:.0f} ms, KV {row[2] * 1e3:.0f} ms, "
            f"blob {row[3] * 1e3:.0f} ms",
            flush=True,
        )

    load1, load5, _ = os.getloadavg()
    print()
    print(
        f"model: {backend.fingerprint.model_id} ({backend.fingerprint.dtype}), "
        f"question {backend.count_tokens(QUESTION)} tokens, median of {args.runs} runs, "
        f"load average {load1:.2f} / {load5:.2f} (1 / 5 min) on {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| memory tokens | plaintext TTFT | KV cache in LRU | reduction | KV cache from blob "
        "store | reduction | cache size | build once |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tokens, p, k, b, nbytes, build_s in rows:
        print(
            f"| {tokens} | {p * 1e3:.0f} ms | {k * 1e3:.0f} ms | {100 * (1 - k / p):.1f} % | "
            f"{b * 1e3:.0f} ms | {100 * (1 - b / p):.1f} % | {nbytes / 2**20:.1f} MiB | "
            f"{build_s:.1f} s |"
        )


if __name__ == "__main__":
    main()
