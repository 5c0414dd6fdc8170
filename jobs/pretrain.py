"""Pre-train any timm network on a fractalshards dataset (the FractalDB recipe by default).

    python jobs/pretrain.py --data ./data/fractaldb-1k --checkpoint-dir ckpt/                    # fractaldb-resnet
    python jobs/pretrain.py --recipe fdsl-vit --data ./data/visualatom-1k --checkpoint-dir ckpt/  # DeiT-Tiny, AdamW
    torchrun --nproc-per-node 8 jobs/pretrain.py --data s3://bucket/fractaldb-1k@v1 ...          # DDP
    ray job submit -- python jobs/pretrain.py --ray-workers 8 --data s3://bucket/fractaldb-1k@v1  # Ray Train

Small CPU run (minutes):
    python jobs/pretrain.py --data data/fractaldb-100 --arch resnet18 --batch-size 32 --resize 64 --crop 56 \\
        --epochs 4 --workers 2 --lr 0.05 --lr-steps 3 --log-every 10

--recipe sets the starting values (fractaldb-resnet, fdsl-vit); any flag given overrides it.
Resumes from CHECKPOINT_DIR/last.pt (model, optimiser and loader position) when it exists.
Every flag below is generated from fractalshards.train.PretrainConfig.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout too

from fractalshards.errors import ConfigError  # noqa: E402
from fractalshards.train.flags import add_flags, config_from_args  # noqa: E402
from fractalshards.train.pretrain import TRAINING_RECIPES, PretrainConfig, pretrain  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, PretrainConfig, required=("data",))
    p.add_argument(
        "--ray-workers",
        type=int,
        default=0,
        metavar="N",
        help="train on N Ray Train workers (TorchTrainer; gloo on CPUs, NCCL on GPUs) instead of this process",
    )
    return p


def parse(argv: list[str] | None = None) -> PretrainConfig:
    a = _parser().parse_args(argv)
    recipe = getattr(a, "recipe", "fractaldb-resnet")
    return config_from_args(PretrainConfig, a, {**TRAINING_RECIPES[recipe], "recipe": recipe})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ray_workers = _parser().parse_args(argv).ray_workers
        if ray_workers:
            from fractalshards.train.raytrain import run

            run(parse(argv), ray_workers)
            return 0
        pretrain(parse(argv))
    except ConfigError as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
