"""Fine-tune a pre-trained checkpoint on real images against the same model from scratch.

    python jobs/finetune.py --checkpoint out/demo/pretrain/last.pt                # digits, 3 seeds, 10 and 50 labels/class
    python jobs/finetune.py --checkpoint ckpt/last.pt --data /path/to/images --image-size 64

Prints one line per run and a Markdown table of mean ± sd top-1 (pre-trained,
scratch, difference) for full fine-tuning and a linear probe, with logistic
regression on raw pixels as the floor. Needs scikit-learn (`pip install .[train]`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout too

from fractalshards.errors import ConfigError  # noqa: E402
from fractalshards.finetune import FinetuneConfig, format_table, run_finetune  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    d = FinetuneConfig(checkpoint="")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="last.pt written by jobs/pretrain.py")
    p.add_argument("--data", default=d.data, help="'digits' (scikit-learn, no download) or a folder of <class>/<image>")
    p.add_argument("--labels-per-class", default="10,50")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--regimes", default="finetune,probe")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="also write the per-seed accuracies here")
    a = p.parse_args(argv)
    try:
        config = FinetuneConfig(
            checkpoint=a.checkpoint, data=a.data, image_size=a.image_size, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
            labels_per_class=tuple(int(x) for x in a.labels_per_class.split(",")),
            seeds=tuple(int(x) for x in a.seeds.split(",")), regimes=tuple(a.regimes.split(",")), threads=a.threads,
        )
        results = run_finetune(config)
    except ConfigError as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    if a.json:
        Path(a.json).write_text(json.dumps({"|".join(map(str, k)): v for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
