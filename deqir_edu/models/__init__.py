"""Models: the paper's networks (``networks/``), the wrappers every sampler takes (``DiffusionModel``,
clipping, chunking, sharding over devices), checkpoint parsing and the model zoo."""

from .checkpoints import ModelSpec, build_network, check_keys, load_state_dict, parse_spec
from .networks import ADMUNet, DDPMUNet
from .sharding import ShardedModel
from .wrappers import ChunkedModel, ClippedModel, DiffusionModel, sampling_defaults
from .zoo import ZOO, ZooEntry, fetch, list_models, load_model, wrap_network

__all__ = [
    "ModelSpec",
    "build_network",
    "check_keys",
    "load_state_dict",
    "parse_spec",
    "ADMUNet",
    "DDPMUNet",
    "ShardedModel",
    "ChunkedModel",
    "ClippedModel",
    "DiffusionModel",
    "sampling_defaults",
    "ZOO",
    "ZooEntry",
    "fetch",
    "list_models",
    "load_model",
    "wrap_network",
]
