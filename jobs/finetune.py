"""Fine-tune a pre-trained checkpoint on real images against the same network from scratch.

    python jobs/finetune.py --checkpoint out/demo/pretrain/last.pt                # digits, 3 seeds, 10 and 50 labels/class
    python jobs/finetune.py --checkpoint ckpt/last.pt --data /path/to/images --image-size 64

Prints one line per run and a Markdown table of mean ± sd top-1 (pre-trained,
scratch, difference) for full fine-tuning and a linear probe, with logistic
regression on raw pixels as the floor. Works for any timm network the checkpoint
names (ResNets, ViTs). Needs the train extra (`pip install .[train]`). Every flag
below is generated from fractalshards.train.FinetuneConfig.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout too

from fractalshards.errors import ConfigError  # noqa: E402
from fractalshards.train.finetune import FinetuneConfig, format_table, run_finetune  # noqa: E402
from fractalshards.train.flags import add_flags, config_from_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, FinetuneConfig, required=("checkpoint",))
    p.add_argument("--json", default=None, help="also write the per-seed accuracies here")
    a = p.parse_args(argv)
    try:
        results = run_finetune(config_from_args(FinetuneConfig, a))
    except (ConfigError, ValueError) as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    if a.json:
        Path(a.json).write_text(json.dumps({"|".join(map(str, k)): v for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
