"""Sampling: the sequential samplers (DDIM, DDNM), the fixed-point map F of Proposition 1 and the
parallel sampler DeqIR that solves it with any registered solver.

``sequential`` <- ``fixed_point`` <- ``parallel``.
"""

from .fixed_point import FixedPointMap
from .parallel import DeqIRResult, default_passes, deqir_sample
from .sequential import chain_step, ddim_sample, ddnm_sample, prepare_chain, resolve_chain

__all__ = [
    "FixedPointMap",
    "DeqIRResult",
    "deqir_sample",
    "default_passes",
    "chain_step",
    "ddim_sample",
    "ddnm_sample",
    "prepare_chain",
    "resolve_chain",
]
