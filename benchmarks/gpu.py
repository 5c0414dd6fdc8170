"""The device check of GPU rendering: throughput, pixel equality against the CPU, training from renders.

    make bench-gpu          # or: .venv/bin/python benchmarks/gpu.py [--budget-s 270]

On one GPU, in one run (sized to finish in under 5 minutes):

1. images/s of ``GPURenderer`` per family at the official settings (FractalDB-1k official: 362 px,
   200,000 points, 3x3 grey patches; FractalDB native; 1p-frac; VisualAtom-1k and RCDB-1k official,
   512 px; VisualAtom-21k and RCDB-21k native), batch sizes 256 to 16,384 (each timed after a
   warm-up batch, synchronised; an official contour set's saved states are replayed on the host's
   cores during the warm-up);
2. pixel equality against the CPU kernels on ``--check`` samples per family (1,000 by default,
   spread over categories and instances);
3. training throughput of ResNet-50 and ViT-Tiny (AMP, channels-last) for ``--train-steps`` steps:
   fed by ``RenderLoader`` + ``DeviceTransform``, against the same model on synthetic device inputs.

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1 ... --tiny``) the same code runs on tiny
settings, to check the script itself without a GPU. Prints one markdown table per part.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from fractalshards.augment import AugmentConfig, DeviceTransform
from fractalshards.categories import CategoryManifest
from fractalshards.definition import DatasetDefinition
from fractalshards.families import get_family
from fractalshards.gpu_renderer import GPURenderer, simulated
from fractalshards.loader import RenderLoader
from fractalshards.recipe import Recipe
from fractalshards.results import pack_rendered


def _sync() -> None:
    if torch.cuda.is_available() and not simulated():
        torch.cuda.synchronize()


#: Contours the simulator can draw: few vertices and lines, threads of 2 categories.
TINY_CONTOURS = {"min_vertices": 3, "max_vertices": 9, "min_lines": 1, "max_lines": 3}


def _tiny_contours(family: str, mode: str) -> DatasetDefinition:
    fam = get_family(family)
    small = {**TINY_CONTOURS, "categories_per_thread": 2, "instances_per_category": 60}
    settings = fam.search_settings({**small, **({"vertex_mean": 6.0} if family == "rcdb" else {})})
    seed = fam.default_seed(mode)
    result = fam.search(4, mode=mode, seed=seed, settings=settings)
    manifest = CategoryManifest.from_search(f"{family}-tiny", mode, seed, settings, result, mode, family=family)
    return DatasetDefinition.from_manifest(manifest, instances=60, render={"mode": mode})


def families(tiny: bool) -> dict[str, DatasetDefinition]:
    small = {"size": 32, "points": 400} if tiny else {}
    out = {
        "FractalDB official 362 px": DatasetDefinition.from_preset("fractaldb-1k", render={"mode": "official", **small}),
        "FractalDB native 362 px": DatasetDefinition.from_preset("fractaldb-1k", render={"mode": "native", **small}),
        "1p-frac 512 px": DatasetDefinition.from_preset("1p-frac", render=small),
    }
    for family, label in (("visualatom", "VisualAtom"), ("rcdb", "RCDB")):
        if tiny:
            out[f"{label} official (tiny)"] = _tiny_contours(family, "official")
            out[f"{label} native (tiny)"] = _tiny_contours(family, "native")
        else:  # the official 1k sets (their saved states replayed on the host's cores first) and 21k native
            out[f"{label} official 512 px"] = DatasetDefinition.from_preset(f"{family}-1k", render={"mode": "official"})
            out[f"{label} native 512 px"] = DatasetDefinition.from_preset(f"{family}-21k", instances=1000)
    return out


def _pairs(definition: DatasetDefinition, n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, definition.num_categories, n)
    insts = rng.integers(0, definition.instances, n)
    return [(int(c), int(i)) for c, i in zip(cats, insts)]


def throughput(definition: DatasetDefinition, batches: list[int], budget_s: float) -> dict[int, float]:
    renderer = GPURenderer(definition, "cuda")
    renderer.render(_pairs(definition, min(batches)))  # compile and upload
    _sync()
    out = {}
    deadline = time.perf_counter() + budget_s
    for size in batches:
        if time.perf_counter() > deadline:
            break
        pairs = _pairs(definition, size, seed=size)
        start = time.perf_counter()
        renderer.render(pairs)
        _sync()
        out[size] = size / (time.perf_counter() - start)
    return out


def equality(definition: DatasetDefinition, n: int) -> tuple[int, int]:
    pairs = _pairs(definition, n, seed=1)
    images, _ = GPURenderer(definition, "cuda").render(pairs)
    host = images.cpu().numpy()
    same = 0
    with np.errstate(all="ignore"):
        for b, (c, i) in enumerate(pairs):
            rendered = definition.renderer.render(c, i)
            cpu = pack_rendered(rendered, definition.packed_layout)
            same += bool(np.array_equal(host[b], cpu))
    return same, n


def training(arch: str, steps: int, batch: int, tiny: bool, recipe_url: str) -> tuple[float, float]:
    from fractalshards.train.models import build_model

    device = torch.device("cpu" if simulated() else "cuda")
    crop = 32 if tiny else 224
    model = build_model(arch, 1000, img_size=crop).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(enabled=amp)

    def step(x, y):
        with torch.autocast(device.type, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    synthetic_x = torch.randn(batch, 3, crop, crop, device=device)
    synthetic_y = torch.randint(0, 1000, (batch,), device=device)
    for _ in range(3):
        step(synthetic_x, synthetic_y)
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        step(synthetic_x, synthetic_y)
    _sync()
    synthetic = steps * batch / (time.perf_counter() - start)

    loader = RenderLoader(recipe_url, batch, device="cuda", seed=0)
    transform = DeviceTransform(AugmentConfig(crop=crop, resized_crop=True), loader.stream.layout)
    it = iter(loader)
    for k in range(3):
        bits, labels = next(it)
        step(transform(bits, device, torch.Generator().manual_seed(k)), labels)
    _sync()
    start = time.perf_counter()
    for k in range(steps):
        bits, labels = next(it)
        step(transform(bits, device, torch.Generator().manual_seed(k)), labels.to(device))
    _sync()
    return steps * batch / (time.perf_counter() - start), synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="256,1024,4096,16384")
    parser.add_argument("--check", type=int, default=1000, help="samples per family compared with the CPU")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--budget-s", type=float, default=25.0, help="seconds of throughput runs per family")
    parser.add_argument("--tiny", action="store_true", help="tiny settings (the simulator)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    name = "numba CUDA simulator" if simulated() else torch.cuda.get_device_name()
    print(f"device: {name}; torch {torch.__version__}")
    defs = families(args.tiny)
    print("\n| family | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for label, d in defs.items():
        rates = throughput(d, batches, args.budget_s)
        print(f"| {label} | " + " | ".join(f"{rates[b]:,.0f}" if b in rates else "-" for b in batches) + " |", flush=True)
    print("\n| family | pixel-identical to the CPU |")
    print("|---|---|")
    for label, d in defs.items():
        same, n = equality(d, args.check)
        print(f"| {label} | {same} of {n} |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        recipe_url = os.path.join(tmp, "recipe.json")
        with open(recipe_url, "w") as fh:
            fh.write(Recipe(defs["FractalDB official 362 px"]).to_json())
        print("\n| model (AMP) | from RenderLoader (images/s) | synthetic inputs | ratio |")
        print("|---|---|---|---|")
        for arch in ("resnet50", "vit_tiny_patch16_224"):
            ours, synthetic = training(arch, args.train_steps, args.train_batch, args.tiny, recipe_url)
            print(f"| {arch} | {ours:,.0f} | {synthetic:,.0f} | {ours / synthetic:.2f} |", flush=True)


if __name__ == "__main__":
    main()
