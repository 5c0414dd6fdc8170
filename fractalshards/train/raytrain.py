"""Pre-training under Ray Train: the same :func:`~fractalshards.train.pretrain.pretrain`, one per Ray worker.

``jobs/pretrain.py --ray-workers N`` runs :func:`run`: a ``ray.train.torch.TorchTrainer`` of ``N``
workers (gloo on CPUs, NCCL on GPUs) on the Ray cluster the job runs in (``ray job submit``
connects it; with no cluster an embedded local Ray starts). Ray Train sets up the process group,
and each worker's ``FractalLoader`` takes its rank and world size from it, exactly as under
``torchrun``: the same seed gives the same samples, batches and losses. Checkpoints are the same
``last.pt`` files in ``--checkpoint-dir`` (a folder every worker shares), written by rank 0, so a
run resumes from one written under Ray Train or under torchrun, either way.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

from ..errors import ConfigError
from .pretrain import PretrainConfig

__all__ = ["run"]


def _loop(config: dict) -> None:
    import ray.train

    from .pretrain import PretrainConfig, pretrain

    summary = pretrain(PretrainConfig(**config))  # rank 0 logs its JSON lines, as under torchrun
    ray.train.report({"losses": summary["losses"], "step": summary.get("step"), "top1": summary.get("top1")})


def run(config: PretrainConfig, num_workers: int, *, use_gpu: bool | None = None, storage_path: str | None = None) -> dict:
    """Train ``config`` on ``num_workers`` Ray Train workers; returns rank 0's report (``losses``, ``step``, ``top1``).

    ``use_gpu`` defaults to whether the cluster has GPUs; ``storage_path`` is where Ray Train keeps
    its run records (default: a temporary folder; the model checkpoints are ``config.checkpoint_dir``'s).
    """
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
        raise ConfigError(f"ray_workers: {num_workers!r} is not valid; use a positive integer")
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()  # the cluster of a submitted job
        else:
            from ..builder import ray_init_local

            ray_init_local()
    if use_gpu is None:
        use_gpu = bool(ray.cluster_resources().get("GPU", 0))
    fields = {k: v for k, v in dataclasses.asdict(config).items()}
    with tempfile.TemporaryDirectory(prefix="fractalshards-raytrain-") as tmp:
        trainer = TorchTrainer(
            _loop,
            train_loop_config=fields,
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            run_config=RunConfig(storage_path=storage_path or tmp, name="pretrain", failure_config=FailureConfig(max_failures=0)),
        )
        result = trainer.fit()
    if result.error is not None:
        raise result.error
    metrics: dict[str, Any] = dict(result.metrics or {})
    return metrics
