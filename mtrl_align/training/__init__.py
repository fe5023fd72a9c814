"""Training runs of multi-task SAC: the loop, run directory files, logging and checkpoints.

>>> from mtrl_align.config import load_train_config
>>> from mtrl_align.training import train
>>> run_dir = train(load_train_config("configs/mt10_demo.yaml"))
"""

from mtrl_align.training.evaluation import evaluate_run, format_success_table
from mtrl_align.training.loop import NonFiniteTrainingError, Trainer, train
from mtrl_align.training.run_files import RunFiles

__all__ = [
    "NonFiniteTrainingError",
    "RunFiles",
    "Trainer",
    "evaluate_run",
    "format_success_table",
    "train",
]
