"""Degradation operators A with their pseudo-inverses A^+ (Eqs. (1) and (5)) for every task of the paper.

``base`` (the protocol, composition, Eq. (5)) <- ``pixel``, ``svd``, ``masks`` <- ``tasks`` (``make_operator``).
"""

from .base import ComposedOperator, Identity, Operator, null_space, null_space_project, penrose_residuals, project
from .masks import MASKS, box_mask, random_mask, stripes_mask, text_mask
from .pixel import AveragePoolSR, Colorization, Inpainting
from .svd import SVD_TASKS, SeparableSVDOperator, bicubic_kernel, gaussian_kernel, make_svd_operator
from .tasks import TASKS, make_operator, observation_shape, sr_scale

__all__ = [
    "Operator",
    "Identity",
    "ComposedOperator",
    "null_space_project",
    "null_space",
    "project",
    "penrose_residuals",
    "MASKS",
    "box_mask",
    "random_mask",
    "stripes_mask",
    "text_mask",
    "AveragePoolSR",
    "Colorization",
    "Inpainting",
    "SVD_TASKS",
    "SeparableSVDOperator",
    "bicubic_kernel",
    "gaussian_kernel",
    "make_svd_operator",
    "TASKS",
    "make_operator",
    "observation_shape",
    "sr_scale",
]
