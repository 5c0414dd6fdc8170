"""What mixing costs: a MixedStream's time per sample against a single FractalStream, in one run.

    .venv/bin/python benchmarks/mixture.py [--samples 4000] [--rounds 5]

The same amount both ways: dataset ``all`` (N samples of 20 categories) read by one
``FractalStream``, and two datasets ``left`` and ``right`` (N/2 samples each: 10 categories, the
same render settings) read by ``MixedStream([left, right], [1, 1], epoch_size=N)``. Each round reads one epoch
of each, alternately, in this process (no workers: the mixture's own work is what is measured) and
with 2 DataLoader workers; decode ``raw`` (the mixture's bookkeeping against the least work per
sample) and ``packed`` (what training reads). Reported: the median microseconds per sample of each,
and mixture / single.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.families.fractaldb.render import RenderSettings
from fractalshards.loader import FractalLoader
from fractalshards.mixture import MixedStream
from fractalshards.presets import load_preset
from fractalshards.stream import FractalStream


def _definition(categories: int, instances: int, seed: int, name: str) -> DatasetDefinition:
    return DatasetDefinition(
        categories=load_preset("fractaldb-100").subset(categories, name=name),
        instances=instances,
        render=RenderSettings(mode="official", size=128, points=20_000, seed=seed),
        shard_size=250,
    )


def _epoch(loader: FractalLoader) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = sum(len(batch) if isinstance(batch, list) else len(batch[1]) for batch in loader)
    return time.perf_counter() - t0, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", default="0,2")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="fractalshards-mixture-bench-")
    instances = args.samples // 20
    whole = os.path.join(root, "all")
    build(_definition(20, instances, 1, "bench-all"), whole, workers=0, log_fn=lambda s: None)
    halves = [os.path.join(root, name) for name in ("left", "right")]
    for seed, path in enumerate(halves, 1):
        build(_definition(10, instances, seed, f"bench-half{seed}"), path, workers=0, log_fn=lambda s: None)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.samples} samples of 128 px, shards of 250")
    print("| decode | workers | single stream (us/sample) | mixture of two (us/sample) | mixture / single |")
    print("|---|---|---|---|---|")
    for decode in ("raw", "packed"):
        for workers in (int(w) for w in args.workers.split(",")):
            collate = {"collate_fn": list} if decode == "raw" else {}
            keep = {"persistent_workers": True} if workers else {}
            single = FractalLoader(FractalStream(whole, decode=decode, seed=1), batch_size=64, num_workers=workers,
                                   **collate, **keep)  # fmt: skip
            mixture = MixedStream([FractalStream(p, decode=decode, seed=1) for p in halves], [1, 1], seed=1)
            mixed = FractalLoader(mixture, batch_size=64, num_workers=workers, **collate, **keep)
            _epoch(single), _epoch(mixed)  # warm: page cache, jit, workers
            a, b = [], []
            for _ in range(args.rounds):
                t, n = _epoch(single)
                a.append(t / n * 1e6)
                t, n = _epoch(mixed)
                b.append(t / n * 1e6)
            sa, sb = statistics.median(a), statistics.median(b)
            print(f"| {decode} | {workers} | {sa:.1f} | {sb:.1f} | {sb / sa:.3f} |", flush=True)


if __name__ == "__main__":
    main()
