"""Losses of DEQ inversion (Eq. (12)): functions of a ``Chain`` (the fixed point x^* and what a loss needs).

Notation (code name -> paper symbol, DeqIR Sec. 4.2)

    states[k]     x_k^*          fixed point of F (the chain), states[T] = x_T
    clean[k-1]    x_{0|k}        the model's clean estimate at state k
    loss          ell(phi(x_0^*), varphi(y)), Eq. (12): a callable ``Chain -> (B,)``

Why the default is ``chain_consistency_loss`` and not the paper's ||A(x_0^*) - y||^2: ``deq.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..sampling.fixed_point import FixedPointMap

__all__ = ["Chain", "Loss", "chain_consistency_loss", "measurement_loss", "reference_loss"]


@dataclass
class Chain:
    """A restoration chain as a loss sees it.

    Attributes:
        states: ``(T + 1, B, C, H, W)``, ``states[k] = x_k`` (``states[0]`` the restored image).
        op, y: the degradation and the measurement.
        abar: ``(T + 1,)`` float64, ``abar[0] = 1``.
        clean: ``(T, B, C, H, W)`` clean estimates ``x_{0|k}``, k = 1..T (index k-1); computed
            lazily by ``fmap`` if not given.
    """

    states: torch.Tensor
    op: Any
    y: torch.Tensor
    abar: torch.Tensor
    fmap: FixedPointMap | None = None
    _clean: torch.Tensor | None = field(default=None, repr=False)

    @property
    def x0(self) -> torch.Tensor:
        return self.states[0]

    @property
    def clean(self) -> torch.Tensor:
        if self._clean is None:
            self._clean = self.fmap.clean_estimates(self.states[:-1])  # T more network evaluations
        return self._clean


Loss = Callable[[Chain], torch.Tensor]


def measurement_loss(chain: Chain) -> torch.Tensor:
    """``||A(x_0) - y||^2`` per image, ``(B,)``.  Identically 0 for surjective A (module docstring)."""
    return (chain.op.A(chain.x0) - chain.y).flatten(1).pow(2).sum(1)


def reference_loss(x_ref: torch.Tensor) -> Loss:
    """``||x_0 - x_ref||^2`` per image: the supervised loss of Sec. 4.2 (needs the ground truth)."""
    return lambda chain: (chain.x0 - x_ref).flatten(1).pow(2).sum(1)


def chain_consistency_loss(chain: Chain) -> torch.Tensor:
    """``sum_k w_k ||A(x_{0|k}) - y||^2 / n_y`` with ``w_k = abar_k / sum_j abar_j``, per image ``(B,)``."""
    clean = chain.clean  # (T, B, C, H, W)
    T, B = clean.shape[:2]
    r = chain.op.A(clean.reshape(T * B, *clean.shape[2:])) - chain.y.repeat(T, *[1] * (chain.y.dim() - 1))
    per_state = r.reshape(T, B, -1).pow(2).mean(2)  # (T, B)
    w = chain.abar[1:].to(per_state) / chain.abar[1:].sum()
    return (w[:, None] * per_state).sum(0)
