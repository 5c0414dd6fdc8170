"""What mixing costs: a MixedStream's time per sample against a single FractalStream, in one run.

    .venv/bin/python benchmarks/mixture.py [--samples 4000] [--rounds 5]

The same amount both ways: dataset ``all`` (N samples of 20 categories) read by one
``FractalStream``, and two datasets ``left`` and ``right`` (N/2 samples each: 10 categories, the
same render settings) read by ``MixedStream([left, right], [1, 1], epoch_size=N)``, in this process
(no workers: the mixture's own work is what is measured) and with 2 DataLoader workers; decode
``raw`` (the mixture's bookkeeping against the least work per sample) and ``packed`` (what training
reads). Reported, as medians of ``--rounds``: microseconds per sample in a first epoch (fresh
loaders, alternately; wall time, and with no workers the main thread's CPU time, which holds the
decoding and the mixture's own bookkeeping but not the shard loads), and in later epochs of one
loader each, where a mixture's sources are mid-pass and each source reads the shuffle window it
stopped in again (the shards loaded per epoch say how many more); and mixture / single.
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


def _epoch(loader: FractalLoader, raw: bool) -> tuple[float, float]:
    """Microseconds per sample of one epoch of ``loader``: wall time, and this thread's CPU time (with no
    workers: the decoding and the mixture's bookkeeping, not the shard loads of the prefetch threads)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    n = sum(len(batch) if raw else len(batch[1]) for batch in loader)
    return (time.perf_counter() - t0) / n * 1e6, (time.thread_time() - c0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--decodes", default="raw,packed")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="fractalshards-mixture-bench-")
    instances = args.samples // 20
    whole = os.path.join(root, "all")
    build(_definition(20, instances, 1, "bench-all"), whole, workers=0, log_fn=lambda s: None)
    halves = [os.path.join(root, name) for name in ("left", "right")]
    for seed, path in enumerate(halves, 1):
        build(_definition(10, instances, seed, f"bench-half{seed}"), path, workers=0, log_fn=lambda s: None)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.samples} samples of 128 px, shards of 250")
    print(
        "| decode | workers | first epoch: single (us/sample) | mixture | mixture / single "
        "| main thread CPU: single | mixture | mixture / single "
        "| later epochs: single | mixture | mixture / single | shards loaded a later epoch: single, mixture |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for decode in args.decodes.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            raw = decode == "raw"
            options = {"batch_size": 64, "num_workers": workers, **({"collate_fn": list} if raw else {})}

            def single() -> FractalLoader:
                return FractalLoader(FractalStream(whole, decode=decode, seed=1), **options)

            def mixed() -> FractalLoader:
                return FractalLoader(
                    MixedStream([FractalStream(p, decode=decode, seed=1) for p in halves], [1, 1], seed=1), **options
                )

            _epoch(single(), raw), _epoch(mixed(), raw)  # warm: page cache, jit
            # First epochs, fresh loaders, alternately (drift on a shared machine hits both).
            first = [(_epoch(single(), raw), _epoch(mixed(), raw)) for _ in range(args.rounds)]
            # Later epochs of one loader each: a mixture's sources are then mid-pass.
            a, b = single(), mixed()
            _epoch(a, raw), _epoch(b, raw)
            later = [(_epoch(a, raw)[0], _epoch(b, raw)[0]) for _ in range(args.rounds)]
            fa, fb = (statistics.median(x[i][0] for x in first) for i in (0, 1))
            ca, cb = (statistics.median(x[i][1] for x in first) for i in (0, 1))
            cpu = f"{ca:.1f} | {cb:.1f} | {cb / ca:.3f}" if workers == 0 else "- | - | -"
            la, lb = (statistics.median(x[i] for x in later) for i in (0, 1))
            loads = f"{_loads(a, raw)}, {_loads(b, raw)}" if workers == 0 else "-"
            print(
                f"| {decode} | {workers} | {fa:.1f} | {fb:.1f} | {fb / fa:.3f} | {cpu} | {la:.1f} | {lb:.1f} | {lb / la:.3f} "
                f"| {loads} |",
                flush=True,
            )


def _loads(loader: FractalLoader, raw: bool) -> int:
    """Shards one more epoch of ``loader`` loads (counted in this process: no workers)."""
    import fractalshards.sources as sources

    count = 0
    original = sources.StoredSource.load

    def counting(self, shard):
        nonlocal count
        count += 1
        return original(self, shard)

    sources.StoredSource.load = counting
    try:
        _epoch(loader, raw)
    finally:
        sources.StoredSource.load = original
    return count


if __name__ == "__main__":
    main()
