"""The whole training input path, store to a normalised float batch of 224 crops on the device.

    make bench-pipeline     # or: .venv/bin/python benchmarks/pipeline.py [--workers 0,1,2] [--sources local,s3]

One run, the same images for every path: FractalDB (fractaldb-100, official, 362 px: 16 shards of
125) and VisualAtom (24 categories of visualatom-1k x 50, native, 512 px: 12 shards of 100),
written once as fractalshards shards and again, the same PNG bytes and labels, as a LitData and
a Mosaic Streaming dataset. Batches of 64, shuffling on; the paths:

- ``fractalshards packed``: ``decode="packed"`` in the workers (1-bit rows or grey bytes), the
  batch sent to the device as it is and made into the network's input there by ``DeviceTransform``
  (RandomResizedCrop 224 with torchvision's sampling, flip, normalise, 3 channels);
- ``fractalshards tensor``: ``decode="tensor"`` (uint8 3 x H x W from the workers) and
  ``train.pretrain.prepare`` on the device (random crop 224, flip, normalise): the path before ``packed``;
- ``webdataset``, ``litdata``, ``mosaic``: the path their users write, in the workers: Pillow
  decode, ``convert("RGB")``, torchvision v2 ``PILToTensor``, ``RandomResizedCrop(224)``,
  ``RandomHorizontalFlip``, ``ToDtype(float32, scale=True)``, ``Normalize``; the float batch is
  sent to the device. webdataset reads S3 through fsspec (``filecache::s3://``: fsspec's local
  copy is its cache); LitData and Mosaic through their own downloaders and caches.

Sources: ``local`` (the folders on local disk, page cache warm) and ``s3`` (a moto S3 server on
127.0.0.1 in a process of its own; each loader gets a fresh cache). Every loader keeps its
workers between epochs; per cell: local disk, first epoch and second (reported: the second);
S3, first epoch (cold: every byte fetched) and second (cached). ``cold / local`` divides the cold
epoch by local disk's first epoch (both start fresh workers). Reported per cell: samples/s, CPU
seconds per sample summed over every process but the S3 server's (second local epoch), and bytes
per sample from the workers to the main process and from the host to the device (each path sends
the batch its loader yields). The main process uses ``cpus - workers`` torch threads (at least 1),
every path alike. The device here is the CPU; the same code runs on a GPU (``--device cuda``).
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings

import psutil
import torch
from torch.utils.data import DataLoader

from fractalshards.augment import AugmentConfig, DeviceTransform
from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.loader import FractalLoader
from fractalshards.mixture import MixedStream
from fractalshards.stream import FractalStream
from fractalshards.tarformat import read_samples
from fractalshards.train.pretrain import PretrainConfig, prepare

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import (  # noqa: E402
    FsspecOpen,
    S3Process,
    litdata_dataset,
    litdata_write,
    mds_write,
    mosaic_dataset,
    mosaic_mixture,
    wds_samples,
)

BATCH = 64
CROP = 224
MEAN, STD = 0.2, 0.5
MP = {"multiprocessing_context": "fork"}
PATHS = ("fractalshards packed", "fractalshards tensor", "webdataset", "litdata", "mosaic")
_V2 = None


def v2_sample(png: bytes, label: int):
    """The peers' per-sample path: Pillow decode and torchvision v2 RandomResizedCrop/flip/normalise."""
    global _V2
    from PIL import Image

    if _V2 is None:
        from torchvision.transforms import v2

        _V2 = v2.Compose(
            [
                v2.PILToTensor(),
                v2.RandomResizedCrop(CROP, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([MEAN] * 3, [STD] * 3),
            ]
        )
    with Image.open(io.BytesIO(png)) as image:
        return _V2(image.convert("RGB")), label


def _cpu_seconds(exclude: set[int]) -> float:
    # This process, its finished (joined) children, and the live ones but the S3 server.
    own, done = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime
    for child in psutil.Process().children(recursive=True):
        if child.pid in exclude:
            continue
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def epoch(loader, finish, device: str, exclude: set[int]) -> dict:
    """One epoch: samples/s, CPU s per sample over every process, bytes per sample to main and to the device."""
    cpu0, t0 = _cpu_seconds(exclude), time.perf_counter()
    seen = moved = 0
    for step, batch in enumerate(loader):
        images, labels = batch[0], batch[1]
        moved += images.nbytes + labels.nbytes
        if len(batch) == 3:  # a per_source mixture's batch: its source picks the transform
            x = finish(images.to(device, non_blocking=True), step, int(batch[2][0]))
        else:
            x = finish(images.to(device, non_blocking=True), step)
        labels = labels.to(device, non_blocking=True)
        if x.shape[1:] != (3, CROP, CROP) or x.dtype != torch.float32:
            raise RuntimeError(f"unexpected network input {tuple(x.shape)} {x.dtype}")
        seen += x.shape[0]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {
        "samples/s": seen / wall,
        "cpu": (_cpu_seconds(exclude) - cpu0) / seen,
        "bytes": moved / seen,
        "samples": seen,
    }


class Data:
    """One dataset in every format, on local disk and on the S3 server."""

    def __init__(self, name: str, definition: DatasetDefinition, root: str, fs, peers: list[str]) -> None:
        self.name, self.root = name, root
        self.local = os.path.join(root, "fs")
        build(definition, self.local, workers=0, log_fn=lambda s: None)  # inline: no Ray session left behind
        self.total = definition.num_samples
        self.shards = sorted(p for p in os.listdir(self.local) if p.endswith(".tar"))
        samples = []
        for shard in self.shards:
            with open(os.path.join(self.local, shard), "rb") as fh:
                samples += [(s["png"], int(s["cls"])) for s in read_samples(fh.read(), shard)]
        self.lit, self.mds = os.path.join(root, "lit"), os.path.join(root, "mds")
        if "litdata" in peers:
            litdata_write(samples, self.lit)
        if "mosaic" in peers:
            mds_write(samples, self.mds)
        self.key = os.path.basename(root)
        if fs is not None:
            for folder in ("fs", "lit", "mds"):
                if os.path.isdir(os.path.join(root, folder)):
                    fs.put(os.path.join(root, folder), f"bench/{self.key}/{folder}", recursive=True)


class Mix:
    """The mixture cell: two datasets (FractalDB 362 px, VisualAtom 512 px) mixed 1:1."""

    def __init__(self, parts: list[Data]) -> None:
        self.parts = parts
        self.name = " + ".join(p.name for p in parts) + " (1:1)"
        self.total = sum(p.total for p in parts)
        self.root = parts[0].root


#: The paths of the mixture cell: each library's own weighted mixing.
MIX_PATHS = ("fractalshards packed", "fractalshards tensor", "litdata", "mosaic")


def make_mix_loader(path: str, mix: Mix, workers: int, s3: dict | None, cache: str | None):
    """``(loader, finish)`` mixing the datasets 1:1: MixedStream (per_source batching: the two sizes
    differ), LitData's ``CombinedStreamingDataset(weights=...)``, Mosaic's ``Stream(proportion=...)``."""
    keep = {"persistent_workers": True, **MP} if workers else {}
    if path.startswith("fractalshards"):
        decode = "packed" if path.endswith("packed") else "tensor"
        streams = [
            FractalStream(f"s3://bench/{d.key}/fs" if s3 else d.local, decode=decode, seed=1, storage_options=s3,
                          cache_dir=cache or False)
            for d in mix.parts
        ]  # fmt: skip
        mixture = MixedStream(streams, [1, 1], seed=1, batching="per_source")
        loader = FractalLoader(mixture, batch_size=BATCH, num_workers=workers, **keep)
        if decode == "packed":
            config = AugmentConfig(crop=CROP, resized_crop=True, hflip=True, mean=MEAN, std=STD)
            augments = [DeviceTransform(config, layout) for layout in mixture.layouts]
            return loader, lambda x, step, k: augments[k](x, x.device, torch.Generator().manual_seed(step))
        config = PretrainConfig(data="mixture", crop=CROP, hflip=True, mean=MEAN, std=STD)
        return loader, lambda x, step, k: prepare(x, config, x.device, torch.Generator().manual_seed(step))
    if path == "litdata":
        import litdata

        parts = [
            litdata_dataset(f"s3://bench/{d.key}/lit" if s3 else d.lit, v2_sample, s3, cache and f"{cache}/{d.key}")
            for d in mix.parts
        ]
        combined = litdata.CombinedStreamingDataset(parts, seed=0, weights=[0.5, 0.5], iterate_over_all=False)
        return litdata.StreamingDataLoader(combined, batch_size=BATCH, num_workers=workers, **keep), lambda x, step: x
    if path == "mosaic":
        streams = [(f"s3://bench/{d.key}/mds" if s3 else None, f"{cache}/{d.key}" if s3 else d.mds) for d in mix.parts]
        dataset = mosaic_mixture(streams, [0.5, 0.5], v2_sample, BATCH)
        return DataLoader(dataset, batch_size=BATCH, num_workers=workers, **keep), lambda x, step: x
    raise ValueError(f"{path} has no mixture cell here")


def make_loader(path: str, data: Data | Mix, workers: int, s3: dict | None, cache: str | None):
    """``(loader, finish)`` for one path; ``s3`` the storage options when reading from the server."""
    if isinstance(data, Mix):
        return make_mix_loader(path, data, workers, s3, cache)
    keep = {"persistent_workers": True, **MP} if workers else {}
    if path.startswith("fractalshards"):
        url = f"s3://bench/{data.key}/fs" if s3 else data.local
        decode = "packed" if path.endswith("packed") else "tensor"
        stream = FractalStream(url, decode=decode, seed=1, storage_options=s3, cache_dir=cache or False)
        loader = FractalLoader(stream, batch_size=BATCH, num_workers=workers, **keep)
        if decode == "packed":
            augment = DeviceTransform(AugmentConfig(crop=CROP, resized_crop=True, hflip=True, mean=MEAN, std=STD), stream.layout)
            return loader, lambda x, step: augment(x, x.device, torch.Generator().manual_seed(step))
        config = PretrainConfig(data=url, crop=CROP, hflip=True, mean=MEAN, std=STD)
        return loader, lambda x, step: prepare(x, config, x.device, torch.Generator().manual_seed(step))
    if path == "webdataset":
        import webdataset as wds

        if s3:
            urls = [f"filecache::s3://bench/{data.key}/fs/{s}" for s in data.shards]
            options = {"s3": s3, "filecache": {"cache_storage": cache}}
        else:
            urls, options = [os.path.join(data.local, s) for s in data.shards], None
        pipeline = wds.DataPipeline(
            wds.SimpleShardList(urls),
            wds.split_by_worker,  # first: each worker keeps its shards (and its file cache) every epoch
            wds.shuffle(len(urls)),
            FsspecOpen(options),
            wds_samples,
            wds.shuffle(1000),
            wds.map(lambda s: v2_sample(s["png"], int(s["cls"]))),
            wds.batched(BATCH),
        )
        return DataLoader(pipeline, batch_size=None, num_workers=workers, **keep), lambda x, step: x
    if path == "litdata":
        import litdata

        url = f"s3://bench/{data.key}/lit" if s3 else data.lit
        dataset = litdata_dataset(url, v2_sample, s3, cache)
        return litdata.StreamingDataLoader(dataset, batch_size=BATCH, num_workers=workers, **keep), lambda x, step: x
    if path == "mosaic":
        remote = f"s3://bench/{data.key}/mds" if s3 else None
        dataset = mosaic_dataset(remote, cache if s3 else data.mds, v2_sample, BATCH)
        return DataLoader(dataset, batch_size=BATCH, num_workers=workers, **keep), lambda x, step: x
    raise ValueError(path)


def close(loader) -> None:
    """Stop a loader's persistent workers now (by the DataLoader's own shutdown), not when it is collected:
    a later loader's forked workers would otherwise inherit it."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None
    gc.collect()


def cell(path: str, data: Data, workers: int, sources: list[str], s3: dict | None, device: str, server) -> dict:
    """Every figure of one (dataset, workers, path)."""
    exclude = {server.process.pid} if server is not None else set()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    row: dict = {}
    if "local" in sources:
        loader, finish = make_loader(path, data, workers, None, None)
        row["local first"] = epoch(loader, finish, device, exclude)
        row["local"] = epoch(loader, finish, device, exclude)
        close(loader)
    if s3 is not None:
        cache = tempfile.mkdtemp(dir=data.root, prefix="cache-")
        loader, finish = make_loader(path, data, workers, s3, cache)
        served = server.cpu_seconds(), server.sent
        row["cold"] = epoch(loader, finish, device, exclude)
        row["cold"]["server"] = (server.cpu_seconds() - served[0]) / row["cold"]["samples"]
        row["cold"]["fetched"] = (server.sent - served[1]) / row["cold"]["samples"]
        row["cached"] = epoch(loader, finish, device, exclude)
        close(loader)
        shutil.rmtree(cache, ignore_errors=True)
    for measured in row.values():
        if isinstance(data, Mix):
            # LitData's CombinedStreamingDataset ends its epoch when a source runs out (2,400 of 3,200
            # here); samples/s is per sample all the same. Nobody may give fewer than that.
            if measured["samples"] < data.total * 0.7:
                raise RuntimeError(f"{path}: expected about {data.total} samples, got {measured['samples']}")
            continue
        # A loader may drop or pad a partial batch.
        if abs(measured["samples"] - data.total) > BATCH:
            raise RuntimeError(f"{path}: expected about {data.total} samples, got {measured['samples']}")
    return row


def _data(key: str, definitions: dict, tmp: str, fs, paths: list[str]) -> Data:
    label, definition = definitions[key]
    root = os.path.join(tmp, key)
    os.makedirs(root)
    return Data(label, definition, root, fs, paths)


def _rate(row: dict, key: str) -> str:
    return f"{row[key]['samples/s']:,.0f}" if key in row else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fractaldb-instances", type=int, default=20)
    parser.add_argument("--visualatom-categories", type=int, default=24)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--sources", default="local,s3", help="local, s3 or both")
    parser.add_argument("--paths", default=",".join(PATHS), help="a comma-separated subset of: " + ", ".join(PATHS))
    parser.add_argument("--datasets", default="fractaldb,visualatom,mixture", help="mixture: the two mixed 1:1")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    paths, sources = args.paths.split(","), args.sources.split(",")
    logging.basicConfig(level=logging.WARNING)
    for name in ("werkzeug", "litdata", "streaming"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    tmp = tempfile.mkdtemp(prefix="fractalshards-pipeline-bench-")
    server = None
    try:
        s3 = fs = None
        if "s3" in sources:
            server = S3Process()
            s3 = {"key": "bench", "secret": "bench-secret", "endpoint_url": server.endpoint}
            # Mosaic and LitData's boto3 read these; a loader's workers inherit them.
            os.environ.update(
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench-secret",
                AWS_ENDPOINT_URL=server.endpoint,
                S3_ENDPOINT_URL=server.endpoint,
                AWS_DEFAULT_REGION="us-east-1",
                AWS_EC2_METADATA_DISABLED="true",
            )
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3)
            fs.mkdir("bench")
        definitions = {
            "fractaldb": (
                "FractalDB 362 px",
                DatasetDefinition.from_preset("fractaldb-100", instances=args.fractaldb_instances, shard_size=125),
            ),
            "visualatom": (
                "VisualAtom 512 px",
                DatasetDefinition.from_preset(
                    "visualatom-1k",
                    categories=args.visualatom_categories,
                    instances=50,
                    shard_size=100,
                    render={"mode": "native"},
                ),
            ),
        }
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, batch {BATCH}, crops {CROP}")
        print(
            "| dataset | workers | path | local disk (samples/s) | S3 cold | cold / local | S3 cached "
            "| CPU s/sample (all processes) | bytes/sample workers -> main | host -> device "
            "| cold: fetched / S3 server CPU per sample |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        made: dict[str, Data] = {}
        for key in args.datasets.split(","):
            if key == "mixture":
                for part in ("fractaldb", "visualatom"):
                    if part not in made:
                        made[part] = _data(part, definitions, tmp, fs, paths)
                data: Data | Mix = Mix([made["fractaldb"], made["visualatom"]])
                label = data.name
            else:
                data = made[key] = _data(key, definitions, tmp, fs, paths)
                label = data.name
            for workers in (int(w) for w in args.workers.split(",")):
                for path in paths:
                    if isinstance(data, Mix) and path not in MIX_PATHS:
                        continue
                    try:
                        row = cell(path, data, workers, sources, s3, args.device, server)
                    except Exception as exc:  # noqa: BLE001 - a peer that cannot run here is reported, not fatal
                        print(f"| {label} | {workers} | {path} | could not run: {type(exc).__name__}: {exc} |", flush=True)
                        continue
                    base = row.get("local") or row["cached"]
                    ratio = (
                        f"{row['cold']['samples/s'] / row['local first']['samples/s']:.2f}"
                        if "cold" in row and "local first" in row
                        else "-"
                    )
                    cold = f"{row['cold']['fetched']:,.0f} B / {row['cold']['server'] * 1e3:.2f} ms" if "cold" in row else "-"
                    print(
                        f"| {label} | {workers} | {path} | {_rate(row, 'local')} | {_rate(row, 'cold')} | {ratio} "
                        f"| {_rate(row, 'cached')} | {base['cpu'] * 1e3:.2f} ms | {base['bytes']:,.0f} | {base['bytes']:,.0f} "
                        f"| {cold} |",
                        flush=True,
                    )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
