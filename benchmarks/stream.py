"""Loader throughput: FractalLoader vs a hand-written webdataset pipeline, local disk and S3.

    .venv/bin/python benchmarks/stream.py [--instances 30] [--batch-size 64]

Builds fractaldb-100 x K instances at 362 px (shards of 250) into a temporary
folder and into a bucket of a moto S3 server on 127.0.0.1, then, in this run:

- samples/s of FractalLoader (shuffle on) with 1 and 2 DataLoader workers, local disk;
- the same for a plain webdataset pipeline (``WebDataset(urls).shuffle(1000)`` with
  split by worker) decoding to the same uint8 CHW 3-channel tensors;
- FractalLoader from the S3 server (no cache) as a fraction of local disk;
- decode cost of one sample: our 1-bit palette PNG vs a 3-channel PNG of the same image.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import socket
import tempfile
import time
import warnings

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from fractalshards.build import build
from fractalshards.plan import DatasetDefinition
from fractalshards.presets import load_preset
from fractalshards.render import RenderSettings
from fractalshards.stream import FractalLoader, FractalStream


def plain_decode(sample: dict) -> tuple[torch.Tensor, int]:
    """What a user would write: PIL -> RGB -> CHW uint8 tensor, label from .cls."""
    rgb = np.asarray(Image.open(io.BytesIO(sample["png"])).convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1), int(sample["cls"])


def rate(loader, samples: int) -> float:
    start = time.perf_counter()
    n = 0
    for images, _ in loader:
        n += images.shape[0]
    elapsed = time.perf_counter() - start
    if n != samples:
        raise RuntimeError(f"expected {samples} samples, got {n}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many passes per configuration")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    tmp = tempfile.mkdtemp(prefix="fractalshards-stream-")
    local = os.path.join(tmp, "ds")
    definition = DatasetDefinition(categories=load_preset("fractaldb-100"), instances=args.instances,
                                   render=RenderSettings(mode="official"), shard_size=250)
    build(definition, local, workers=2, log_fn=lambda s: None)
    total = definition.num_samples
    shards = sorted(p for p in os.listdir(local) if p.endswith(".tar"))
    urls = [os.path.join(local, s) for s in shards]

    from moto.server import ThreadedMotoServer
    import s3fs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"key": "bench", "secret": "bench-secret", "endpoint_url": f"http://127.0.0.1:{port}"}
    s3fs.S3FileSystem(skip_instance_cache=True, **options).mkdir("bench")
    build(definition, "s3://bench/ds", storage_options=options, workers=0, log_fn=lambda s: None)

    def ours(workers: int, url: str = local, opts=None):
        stream = FractalStream(url, seed=0, shuffle_buffer=1000, storage_options=opts)
        return FractalLoader(stream, batch_size=args.batch_size, num_workers=workers)

    def plain(workers: int):
        ds = wds.WebDataset(urls, shardshuffle=False, workersplitter=wds.split_by_worker).shuffle(1000).map(plain_decode)
        return DataLoader(ds, batch_size=args.batch_size, num_workers=workers)

    results = {}
    for workers in (1, 2):
        results[("ours", workers)] = max(rate(ours(workers), total) for _ in range(args.repeats))
        results[("plain", workers)] = max(rate(plain(workers), total) for _ in range(args.repeats))
        results[("s3", workers)] = max(rate(ours(workers, "s3://bench/ds", options), total) for _ in range(args.repeats))
    server.stop()

    sample = next(iter(wds.WebDataset(urls[:1], shardshuffle=False)))
    png1 = sample["png"]
    rgb = np.asarray(Image.open(io.BytesIO(png1)).convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    png3 = buf.getvalue()
    from fractalshards.stream import _decode_chw

    def per_call(fn, data, reps=300):
        fn(data)
        start = time.perf_counter()
        for _ in range(reps):
            fn(data)
        return (time.perf_counter() - start) / reps * 1e3

    ours_1ch = per_call(_decode_chw, png1)
    plain_1ch = per_call(lambda d: plain_decode({"png": d, "cls": b"0"}), png1)
    plain_3ch = per_call(lambda d: plain_decode({"png": d, "cls": b"0"}), png3)
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"dataset: fractaldb-100 x {args.instances} = {total} samples, 362 px, {len(shards)} shards; batch {args.batch_size}; torch {torch.__version__}")
    for workers in (1, 2):
        o, p, s = results[("ours", workers)], results[("plain", workers)], results[("s3", workers)]
        print(f"{workers} worker(s): FractalLoader {o:7.0f} samples/s | plain webdataset {p:7.0f} samples/s "
              f"(ratio {o / p:.2f}) | FractalLoader from S3 (loopback) {s:7.0f} samples/s ({s / o * 100:.0f}% of local)")
    print(f"decode per sample: our 1-bit PNG -> 3x uint8 tensor {ours_1ch:.3f} ms; same PNG via PIL convert('RGB') "
          f"{plain_1ch:.3f} ms; 3-channel PNG of the same image via PIL {plain_3ch:.3f} ms "
          f"({len(png1)} vs {len(png3)} bytes)")


if __name__ == "__main__":
    main()
