"""Training of the embedded diffusion priors: the recipe (``recipe.py``), the run's files (``runs.py``) and
the JSON configs (``configs/``)."""

from .recipe import DEFAULTS, build_model, load_config, train
from .runs import check_run_folder, describe, export_checkpoint, read_checkpoint, save_weights

__all__ = [
    "DEFAULTS",
    "build_model",
    "describe",
    "export_checkpoint",
    "load_config",
    "save_weights",
    "train",
    "check_run_folder",
    "read_checkpoint",
]
