"""Training of the embedded diffusion priors: the recipe (``recipe.py``) and its JSON configs (``configs/``)."""
from .recipe import DEFAULTS, build_model, describe, export_checkpoint, load_config, save_weights, train

__all__ = ["DEFAULTS", "build_model", "describe", "export_checkpoint", "load_config", "save_weights", "train"]
