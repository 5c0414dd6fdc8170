"""Training on fractalshards streams with timm networks: pre-training (two recipes) and fine-tuning.

Needs the ``train`` extra (``timm``, ``scikit-learn``); timm in turn needs a torchvision that
imports beside the installed torch (see docs/training.md).
"""

from .finetune import FinetuneConfig, format_table, load_digits_images, load_folder_images, run_finetune
from .models import build_model, classifier_prefix, load_backbone, timm_version
from .pretrain import (
    TRAINING_RECIPES,
    PretrainConfig,
    center_crop,
    evaluate,
    load_checkpoint,
    normalize,
    prepare,
    random_crop,
    training_recipe_config,
)

# The training loop is fractalshards.train.pretrain.pretrain: not re-exported here, where the name
# would hide the module of the same name.
__all__ = [
    "PretrainConfig",
    "TRAINING_RECIPES",
    "training_recipe_config",
    "prepare",
    "random_crop",
    "center_crop",
    "normalize",
    "evaluate",
    "load_checkpoint",
    "FinetuneConfig",
    "run_finetune",
    "format_table",
    "load_digits_images",
    "load_folder_images",
    "build_model",
    "classifier_prefix",
    "load_backbone",
    "timm_version",
]
