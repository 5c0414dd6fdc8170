"""Pre-train a ResNet on a fractalshards dataset (the FractalDB recipe by default).

    python jobs/pretrain.py --data ./data/fractaldb-1k --checkpoint-dir ckpt/          # 1 process
    torchrun --nproc-per-node 8 jobs/pretrain.py --data s3://bucket/fractaldb-1k ...    # DDP

Small CPU run (minutes):
    python jobs/pretrain.py --data data/fractaldb-100 --arch resnet18 --batch-size 32 --resize 64 --crop 56 \
        --epochs 4 --workers 2 --lr 0.05 --lr-steps 3 --log-every 10

Resumes from CHECKPOINT_DIR/last.pt (model, optimiser and loader position) when it exists.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout too

from fractalshards.errors import ConfigError  # noqa: E402
from fractalshards.models import ARCHITECTURES  # noqa: E402
from fractalshards.train import PretrainConfig, pretrain  # noqa: E402


def parse(argv: list[str] | None = None) -> PretrainConfig:
    d = PretrainConfig(data="")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder or URL (manifest.json inside)")
    p.add_argument("--arch", choices=ARCHITECTURES, default=d.arch)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--lr-steps", default=",".join(map(str, d.lr_steps)), help="epochs at which lr is divided by 10")
    p.add_argument("--crop", type=int, default=d.crop, help="random crop size (centre crop for evaluation)")
    p.add_argument("--resize", type=int, default=None, help="resize images to this size before cropping (small runs)")
    p.add_argument("--mean", type=float, default=d.mean)
    p.add_argument("--std", type=float, default=d.std)
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers per process")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--eval-shards", type=int, default=d.eval_shards, help="last N shards held out for top-1 (0: none)")
    a = p.parse_args(argv)
    try:
        steps = tuple(int(x) for x in a.lr_steps.split(",") if x.strip())
    except ValueError:
        p.error(f"--lr-steps: {a.lr_steps!r} is not a comma-separated list of epochs")
    return PretrainConfig(
        data=a.data, arch=a.arch, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
        weight_decay=a.weight_decay, lr_steps=steps, crop=a.crop, resize=a.resize, mean=a.mean, std=a.std, workers=a.workers,
        seed=a.seed, shuffle_buffer=a.shuffle_buffer, amp=a.amp, device=a.device, checkpoint_dir=a.checkpoint_dir,
        checkpoint_every=a.checkpoint_every, resume=not a.no_resume, max_steps=a.max_steps, log_every=a.log_every,
        eval_shards=a.eval_shards,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        pretrain(parse(argv))
    except ConfigError as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
