"""Loader throughput against the anchors: fractalshards vs webdataset vs LitData vs Mosaic Streaming.

    make bench-stream            # or: .venv/bin/python benchmarks/stream.py [--instances 30]

One run, the same images for everyone: fractaldb-100 x K instances at 362 px are
built as fractalshards shards (shards of 250); their PNG bytes and labels are
written again with ``litdata.optimize`` and Mosaic's ``MDSWriter``. Every loader
decodes with the same function (``fractalshards.png.decode`` -> uint8 CHW,
3 channels) inside DataLoader workers, shuffles, and batches 64. Each cell is one
epoch with 0, 1 and 2 workers:

- ``local``: the datasets on local disk (page cache warm; best of ``--repeats`` epochs);
- ``S3 cold``: from a moto S3 server on 127.0.0.1 (a WSGI layer counts the bytes
  it sends), a fresh cache: the first epoch;
- ``S3 cached``: the next epochs of the same loader (each library's own cache; best of ``--repeats``).

Also printed: bytes fetched from the store per epoch, the gap between the last
batch of one epoch and the first of the next with and without
``persistent_workers``, and what ``verify=True`` (sha256 of every shard) costs.
The peers (the ``bench`` extra) need a torchvision that imports; ``make bench-stream`` adds them
to the one ``.venv``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.families.fractaldb.render import RenderSettings
from fractalshards.loader import FractalLoader
from fractalshards.png import decode as decode_png
from fractalshards.presets import load_preset
from fractalshards.stream import FractalStream
from fractalshards.tarformat import read_samples

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import SENT, FsspecOpen, litdata_dataset, litdata_write, mds_write, mosaic_dataset, start_s3, wds_samples  # noqa: E402

BATCH = 64
#: Every loader forks its workers (torch 2.13's default here; newer torch may pick forkserver,
#: which costs seconds of start-up per fresh worker and needs picklable datasets).
MP = {"multiprocessing_context": "fork"}


def to_tensor(png: bytes) -> torch.Tensor:
    """The one decode every loader uses (FractalStream's own): PNG -> contiguous uint8 (3, H, W)."""
    pixels = decode_png(png)
    chw = np.broadcast_to(pixels, (3, *pixels.shape)) if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw))


# -- the loaders ------------------------------------------------------------------------------


def ours(url: str, workers: int, options: dict | None, cache: str | None, **kw):
    stream = FractalStream(url, seed=0, shuffle_buffer=1000, storage_options=options, cache_dir=cache or False, **kw)
    return FractalLoader(stream, batch_size=BATCH, num_workers=workers, **({"persistent_workers": True, **MP} if workers else {}))


def _wds_decode(sample):
    return to_tensor(sample["png"]), int(sample["cls"])


def webdataset_loader(urls: list[str], workers: int, options: dict | None):
    import webdataset as wds

    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls),
        wds.split_by_worker,
        FsspecOpen(options),
        wds_samples,
        wds.shuffle(1000),
        wds.map(_wds_decode),
    )
    return DataLoader(pipeline, batch_size=BATCH, num_workers=workers, persistent_workers=workers > 0, **(MP if workers else {}))


def _decoded(png: bytes, label: int):
    return to_tensor(png), label


def litdata_loader(url: str, workers: int, options: dict | None, cache: str | None):
    import litdata

    ds = litdata_dataset(url, _decoded, options, cache)
    return litdata.StreamingDataLoader(
        ds, batch_size=BATCH, num_workers=workers, persistent_workers=workers > 0, **(MP if workers else {})
    )


def mosaic_loader(remote: str | None, local: str, workers: int):
    ds = mosaic_dataset(remote, local, _decoded, BATCH)
    return DataLoader(ds, batch_size=BATCH, num_workers=workers, persistent_workers=workers > 0, **(MP if workers else {}))


def epoch_rate(loader, total: int) -> float:
    start = time.perf_counter()
    n = 0
    for images, _ in loader:
        n += images.shape[0]
    elapsed = time.perf_counter() - start
    if abs(n - total) > BATCH:  # some loaders drop or pad a partial batch
        raise RuntimeError(f"expected about {total} samples, got {n}")
    return n / elapsed


def epoch_gap(make, epochs: int = 3) -> float:
    """Seconds from the last batch of an epoch to the first of the next (mean over epochs)."""
    loader = make()
    gaps = []
    last = None
    for _ in range(epochs):
        first = True
        for _batch in loader:
            now = time.perf_counter()
            if first and last is not None:
                gaps.append(now - last)
            first = False
            last = time.perf_counter()
    return float(np.mean(gaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many epochs for the warm cells")
    parser.add_argument("--peers", nargs="+", default=["fractalshards", "webdataset", "litdata", "mosaic"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("werkzeug", "litdata", "streaming"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    tmp = tempfile.mkdtemp(prefix="fractalshards-stream-bench-")
    server = None
    try:
        server, endpoint = start_s3()
        options = {"key": "bench", "secret": "bench-secret", "endpoint_url": endpoint}
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench-secret",
            AWS_ENDPOINT_URL=endpoint,
            S3_ENDPOINT_URL=endpoint,
            AWS_DEFAULT_REGION="us-east-1",
        )
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        fs.mkdir("bench")

        local = os.path.join(tmp, "fs")
        definition = DatasetDefinition(
            categories=load_preset("fractaldb-100"),
            instances=args.instances,
            render=RenderSettings(mode="official"),
            shard_size=250,
        )
        build(definition, local, workers=2, log_fn=lambda s: None)
        total = definition.num_samples
        shard_names = sorted(p for p in os.listdir(local) if p.endswith(".tar"))
        samples = []
        for name in shard_names:
            with open(os.path.join(local, name), "rb") as fh:
                samples += [(s["png"], int(s["cls"])) for s in read_samples(fh.read(), name)]
        lit_dir, mds_dir = os.path.join(tmp, "lit"), os.path.join(tmp, "mds")
        if "litdata" in args.peers:
            litdata_write(samples, lit_dir)
        if "mosaic" in args.peers:
            mds_write(samples, mds_dir)
        fs.put(local, "bench/fs", recursive=True)
        if os.path.isdir(lit_dir):
            fs.put(lit_dir, "bench/lit", recursive=True)
        if os.path.isdir(mds_dir):
            fs.put(mds_dir, "bench/mds", recursive=True)
        store_bytes = {"fractalshards": sum(os.path.getsize(os.path.join(local, n)) for n in shard_names)}
        store_bytes["webdataset"] = store_bytes["fractalshards"]
        for peer, d in (("litdata", lit_dir), ("mosaic", mds_dir)):
            if os.path.isdir(d):
                store_bytes[peer] = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))

        def cache(name: str) -> str:
            path = os.path.join(tmp, "cache", f"{name}-{time.perf_counter_ns()}")
            os.makedirs(path)
            return path

        def factories(peer: str, workers: int):
            """(local loader, remote loader) makers for one peer."""
            if peer == "fractalshards":
                return (lambda: ours(local, workers, None, None), lambda: ours("s3://bench/fs", workers, options, cache("fs")))
            if peer == "webdataset":
                return (
                    lambda: webdataset_loader([os.path.join(local, n) for n in shard_names], workers, None),
                    lambda: webdataset_loader([f"s3://bench/fs/{n}" for n in shard_names], workers, options),
                )
            if peer == "litdata":
                return (
                    lambda: litdata_loader(lit_dir, workers, None, None),
                    lambda: litdata_loader("s3://bench/lit", workers, options, cache("lit")),
                )
            if peer == "mosaic":
                return (
                    lambda: mosaic_loader(None, mds_dir, workers),
                    lambda: mosaic_loader("s3://bench/mds", cache("mds"), workers),
                )
            raise ValueError(peer)

        rows = []
        for peer in args.peers:
            for workers in args.workers:
                make_local, make_remote = factories(peer, workers)
                row = {"peer": peer, "workers": workers}
                try:
                    loader = make_local()
                    epoch_rate(loader, total)  # warm the page cache and any index
                    row["local"] = max(epoch_rate(loader, total) for _ in range(args.repeats))
                    del loader
                    loader = make_remote()
                    SENT.update(bytes=0, gets=0)
                    row["cold"] = epoch_rate(loader, total)
                    row["cold_bytes"], row["cold_gets"] = SENT["bytes"], SENT["gets"]
                    SENT.update(bytes=0, gets=0)
                    row["cached"] = max(epoch_rate(loader, total) for _ in range(args.repeats))
                    row["cached_bytes"] = SENT["bytes"] / args.repeats  # per epoch
                    del loader
                except Exception as exc:  # noqa: BLE001 - a peer that cannot run here is reported, not fatal
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                rows.append(row)
                print(row, flush=True)

        # Gap between epochs, 2 workers, local disk.
        def make_gap(persistent: bool):
            return lambda: FractalLoader(
                FractalStream(local, seed=0), batch_size=BATCH, num_workers=2, persistent_workers=persistent, **MP
            )

        gap_fresh, gap_persistent = epoch_gap(make_gap(False)), epoch_gap(make_gap(True))
        # What verify=True (the default) costs: sha256 of the shard bytes against decoding their samples.
        blobs = [open(os.path.join(local, n), "rb").read() for n in shard_names]
        start = time.perf_counter()
        for blob in blobs:
            hashlib.sha256(blob).hexdigest()
        hash_ms = (time.perf_counter() - start) / total * 1e3
        start = time.perf_counter()
        for png, _ in samples:
            to_tensor(png)
        decode_ms = (time.perf_counter() - start) / total * 1e3
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\ndataset: fractaldb-100 x {args.instances} = {total} samples at 362 px; batch {BATCH}; torch {torch.__version__}; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "| loader | workers | local disk (samples/s) | S3 cold epoch | S3 cached epoch "
        "| fetched per epoch, cold / cached (GETs) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['peer']} | {row['workers']} | could not run: {row['error']} | | | |")
            continue
        size = store_bytes.get(row["peer"], 0)
        print(
            f"| {row['peer']} | {row['workers']} | {row['local']:,.0f} | {row['cold']:,.0f} | {row['cached']:,.0f} | "
            f"{row['cold_bytes'] / 1e6:.1f} MB ({row['cold_bytes'] / max(1, size):.2f}x the data, {row['cold_gets']} GETs) / "
            f"{row['cached_bytes'] / 1e6:.1f} MB |"
        )
    print(
        f"\ngap between epochs (2 workers, local): fresh workers {gap_fresh * 1e3:.0f} ms, persistent workers "
        f"{gap_persistent * 1e3:.0f} ms"
    )
    print(
        f"verify=True (sha256 of every shard): {hash_ms:.4f} ms per sample, {hash_ms / decode_ms * 100:.1f}% of decoding "
        f"({decode_ms:.3f} ms per sample)"
    )


if __name__ == "__main__":
    main()
