"""DEQ inversion (Algorithm 2): losses of the chain, phantom and exact gradients, and ``deq_invert``.

``losses`` <- ``deq``.
"""

from .deq import GradientResult, InversionResult, PhantomConfig, deq_invert, exact_chain_gradient, phantom_gradient
from .losses import Chain, Loss, chain_consistency_loss, measurement_loss, reference_loss

__all__ = [
    "GradientResult",
    "InversionResult",
    "PhantomConfig",
    "deq_invert",
    "exact_chain_gradient",
    "phantom_gradient",
    "Chain",
    "Loss",
    "chain_consistency_loss",
    "measurement_loss",
    "reference_loss",
]
