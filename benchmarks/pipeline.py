"""The whole training input path, store to a normalised float batch of 224 crops on the device.

    .venv/bin/python benchmarks/pipeline.py [--fractaldb-instances 20] [--workers 0,1,2]

One run, the same images for every path (FractalDB: fractaldb-100 at 362 px; VisualAtom: 20
categories of visualatom-1k at 512 px), batches of 64, shuffling on, local disk:

- ``fractalshards packed``: ``decode="packed"`` in the workers, ``DeviceTransform`` on the batch
  in the main process (RandomResizedCrop 224 with torchvision's sampling, flip, normalise, 3 channels);
- ``fractalshards tensor``: ``decode="tensor"`` (uint8 3 x H x W) and ``train.pretrain.prepare``
  (random crop 224, flip, normalise): the path before ``packed``;
- ``webdataset``: the path its users write: Pillow decode and torchvision v2 ``RandomResizedCrop``,
  flip, ``ToDtype``, ``Normalize`` per sample in the workers;
- LitData and Mosaic Streaming, the same per-sample transform, when the ``bench`` extra is installed.

Reported per cell: samples/s, CPU seconds per sample summed over every process, and bytes per
sample crossing from the workers to the main process (the batch as a loader yields it; what is
then sent to the device is the same tensor). The device here is the CPU; the same code runs on
a GPU (``--device cuda``).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import psutil
import torch
from torch.utils.data import DataLoader

from fractalshards.augment import AugmentConfig, DeviceTransform
from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.stream import FractalLoader, FractalStream
from fractalshards.train.pretrain import PretrainConfig, prepare

BATCH = 64
CROP = 224
MEAN, STD = 0.2, 0.5
MP = {"multiprocessing_context": "fork"}


def _cpu_seconds() -> float:
    # This process, its finished (joined) DataLoader workers, and any still running.
    own, done = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _v2_transform():
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(CROP, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([MEAN] * 3, [STD] * 3),
        ]
    )


def _wds_pipeline(urls: list[str], workers: int):
    import webdataset as wds

    transform = _v2_transform()
    dataset = (
        wds.WebDataset(urls, shardshuffle=len(urls), nodesplitter=None, workersplitter=wds.split_by_worker, empty_check=False)
        .shuffle(1000)
        .decode("pil")
        .map(lambda s: (transform(s["png"].convert("RGB")), int(s["cls"])))
        .batched(BATCH)
    )
    return DataLoader(dataset, batch_size=None, num_workers=workers, **(MP if workers else {}))


def measure(name: str, loader, finish, total: int, device: str) -> dict:
    """One epoch: samples/s, CPU s per sample over every process, bytes per sample from the workers."""
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    seen = moved = 0
    for step, (images, labels) in enumerate(loader):
        moved += images.nbytes + labels.nbytes
        x = finish(images, step)
        assert x.shape[1:] == (3, CROP, CROP) and x.dtype == torch.float32
        seen += x.shape[0]
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    return {
        "path": name,
        "samples/s": seen / wall,
        "cpu_s_per_sample": cpu / seen,
        "bytes_per_sample": moved / seen,
        "samples": seen,
    }


def run(url: str, workers: int, device: str) -> list[dict]:
    out = []
    probe = FractalStream(url, decode="packed")
    total = len(probe)
    augment = DeviceTransform(AugmentConfig(crop=CROP, resized_crop=True, hflip=True, mean=MEAN, std=STD), probe.layout)
    packed = FractalLoader(
        FractalStream(url, decode="packed", seed=1), batch_size=BATCH, num_workers=workers, **(MP if workers else {})
    )
    out.append(
        measure("fractalshards packed", packed, lambda x, s: augment(x, device, torch.Generator().manual_seed(s)), total, device)
    )
    config = PretrainConfig(data=url, crop=CROP, hflip=True, mean=MEAN, std=STD)
    tensor = FractalLoader(
        FractalStream(url, decode="tensor", seed=1), batch_size=BATCH, num_workers=workers, **(MP if workers else {})
    )
    out.append(
        measure(
            "fractalshards tensor",
            tensor,
            lambda x, s: prepare(x, config, torch.device(device), torch.Generator().manual_seed(s)),
            total,
            device,
        )
    )
    urls = sorted(os.path.join(url, f) for f in os.listdir(url) if f.endswith(".tar"))
    out.append(measure("webdataset", _wds_pipeline(urls, workers), lambda x, s: x.to(device), total, device))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fractaldb-instances", type=int, default=20)
    parser.add_argument("--visualatom-categories", type=int, default=20)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        datasets = {
            "FractalDB 362 px": DatasetDefinition.from_preset(
                "fractaldb-100", instances=args.fractaldb_instances, shard_size=250
            ),
            "VisualAtom 512 px": DatasetDefinition.from_preset(
                "visualatom-1k", categories=args.visualatom_categories, instances=50, shard_size=250, render={"mode": "native"}
            ),
        }
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, batch {BATCH}, crops {CROP}")
        print("| dataset | workers | path | samples/s | CPU s/sample (all processes) | bytes/sample workers -> main |")
        print("|---|---|---|---|---|---|")
        for label, definition in datasets.items():
            url = os.path.join(tmp, label.split()[0].lower())
            build(definition, url, workers=0)
            for workers in (int(w) for w in args.workers.split(",")):
                for r in run(url, workers, args.device):
                    print(
                        f"| {label} | {workers} | {r['path']} | {r['samples/s']:,.0f} | {r['cpu_s_per_sample'] * 1e3:.2f} ms "
                        f"| {r['bytes_per_sample']:,.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
