"""The fixed-point map F of DeqIR (Proposition 1, Eqs. (8)-(10)).

Notation (code name -> paper symbol; chain convention of ``diffusion/schedules.py``)

    states[j]     x_j               j = 0..T-1, the unknowns of Eq. (8); x_T is fixed (input injection)
    x_T           x_T               initial noise
    noises[T-k]   eps_k             fresh noise of step k -> k-1 (``diffusion.draw_noises``)
    eps[k-1]      eps_theta(x_k)    network output at state k = 1..T
    Q             I - A^+ A         null-space projector (idempotent); P = A^+ A
    r_k           sqrt(abar_{k-1} / abar_k)
    z[k-1]        z_k               the part of x_{k-1} that is not r_k Q x_k

Derivation.  One DDNM step (Eqs. (4)-(5), eta form) with x_{0|k} = (x_k - sqrt(1-abar_k) eps_k) / sqrt(abar_k)::

    x_{k-1} = sqrt(abar_{k-1}) (A^+ y + Q x_{0|k}) + c2_k eps_k + c1_k noise_k  =  r_k Q x_k + z_k,
    z_k = sqrt(abar_{k-1}) A^+ y + c2_k eps_k - sqrt(abar_{k-1} (1 - abar_k) / abar_k) Q eps_k + c1_k noise_k.

Unrolling with Q Q = Q (Eq. (9))::

    x_j = sqrt(abar_j / abar_T) Q x_T + z_{j+1} + sum_{s=j+1}^{T-1} sqrt(abar_j / abar_s) Q z_{s+1}
        = sqrt(abar_j) * S_j + z_{j+1},   S_j = Q (x_T / sqrt(abar_T) + sum_{s=j+1}^{T-1} z_{s+1} / sqrt(abar_s)),

a reversed cumulative sum over s.  Note: the paper's c^0_s writes the Q eps term of z_s as
sqrt((1 - abar_s) / abar_s) Q; the factor sqrt(abar_{s-1}) that multiplies x_{0|s} is missing there;
it is included here (it is what makes F reproduce the sequential chain exactly).

x_j depends only on x_{j+1..T}: F is lower triangular (Eq. (10)).  x_0 is never fed to the network.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.checks import check_image
from ..diffusion.chain import ChainConfig
from ..operators.base import null_space
from .sequential import call_model

__all__ = ["FixedPointMap"]


class FixedPointMap:
    """``F(x_{0:T-1}; x_T, y)`` of Eq. (8), in the cumulative-sum form of Eq. (9).

    Args:
        model: eps-model (``model(x, t) -> eps``, ``x`` of shape ``(N, C, H, W)``).
        op: operator with ``A`` and ``A_pinv``.
        y: measurement, batch ``B``.
        x_T: ``(B, C, H, W)``; may require grad (DEQ inversion), F is differentiable in it.
        noises: ``(T, B, C, H, W)`` in the order of ``draw_noises``.
        chain: the chain's configuration (``diffusion.chain_config`` or ``official_chain``).

    Attributes:
        evaluations: network evaluations of single states so far (T per application of F).
        passes: sequential network passes so far (applications of F, ``one_step`` or ``evaluate``).

    Memory: every pass is one network call on all its states; wrap the model in
    ``models.ChunkedModel`` to bound the images per call.
    """

    def __init__(
        self,
        model: Any,
        op: Any,
        y: torch.Tensor,
        x_T: torch.Tensor,
        noises: torch.Tensor,
        chain: ChainConfig,
    ) -> None:
        if not isinstance(chain, ChainConfig):
            raise ValueError("chain must be a ChainConfig: diffusion.chain_config(T, eta) or official_chain(T)")
        T = chain.steps
        check_image(x_T, getattr(model, "image_shape", None), "x_T")
        if tuple(noises.shape) != (T, *x_T.shape):
            raise ValueError(f"noises must have shape (T, B, C, H, W) = {(T, *x_T.shape)}, got {tuple(noises.shape)}")
        self.model, self.op, self.y, self.x_T, self.chain = model, op, y, x_T, chain
        self.pinv_y = op.A_pinv(y)  # A^+ y, (B, C, H, W)
        abar = chain.abar.to(x_T.device, x_T.dtype)  # (T+1,), abar[0] = 1
        view = (T, 1, 1, 1, 1)
        # per step k = 1..T (index k-1): noise_k, coefficients of z_k
        self.step_noise = noises.flip(0)  # step_noise[k-1] = noises[T-k]
        self.sqrt_prev = abar[:-1].sqrt().view(view)  # sqrt(abar_{k-1})
        self.r = (abar[:-1] / abar[1:]).sqrt().view(view)  # r_k
        self.d = (abar[:-1] * (1 - abar[1:]) / abar[1:]).sqrt().view(view)  # coefficient of Q eps_k
        self.c1 = chain.c1[1:].to(x_T).view(view)
        self.c2 = chain.c2[1:].to(x_T).view(view)
        self.sqrt_abar = abar.sqrt().view(T + 1, 1, 1, 1, 1)  # sqrt(abar_j), j = 0..T
        # The sum of Eq. (9) runs in float64 (see __call__): its weights, once, in that dtype
        self.sum_dtype = torch.float64 if x_T.dtype in (torch.float32, torch.float16, torch.bfloat16) else x_T.dtype
        root = chain.abar.to(x_T.device, self.sum_dtype).sqrt()
        self.sum_scale = root[:T].view(view)  # sqrt(abar_j), j = 0..T-1
        self.w_scale = torch.cat([root.new_ones(1), root[1:]]).view(T + 1, 1, 1, 1, 1)  # divisors of w[0..T]
        self.t = chain.timesteps.to(x_T.device)  # network time of state k is t[k-1]
        self.evaluations = 0
        self.passes = 0

    @property
    def steps(self) -> int:
        """T, the number of chain steps (the unknowns are x_0..x_{T-1})."""
        return self.chain.steps

    def Q(self, v: torch.Tensor) -> torch.Tensor:
        """Null-space projection ``(I - A^+ A) v`` of a stack ``(..., B, C, H, W)``, batched."""
        return null_space(self.op, v.reshape(-1, *v.shape[-3:])).reshape(v.shape)

    def _check_states(self, states: torch.Tensor) -> None:
        want = (self.steps, *self.x_T.shape)
        if not isinstance(states, torch.Tensor) or tuple(states.shape) != want:
            got = tuple(states.shape) if isinstance(states, torch.Tensor) else type(states).__name__
            raise ValueError(f"states must have shape (T, B, C, H, W) = {want} (x_0..x_{{T-1}}), got {got}")

    def network_inputs(self, states: torch.Tensor) -> torch.Tensor:
        """The T states fed to the network, ``(x_1, ..., x_{T-1}, x_T)``, shape ``(T, B, C, H, W)``."""
        return torch.cat([states[1:], self.x_T[None]], dim=0)

    def eps(self, states: torch.Tensor) -> torch.Tensor:
        """``eps_theta(x_k, tau_k)`` for k = 1..T (index k-1), ``(T, B, C, H, W)``, in batched calls."""
        self._check_states(states)
        T = self.steps
        self.evaluations += T
        self.passes += 1
        if torch.is_grad_enabled() and self.x_T.requires_grad and not states.requires_grad:
            # phantom gradient (inversion/deq.py): only x_T carries a graph; evaluating the detached
            # states without one keeps the memory of a single network evaluation (frozen model)
            with torch.no_grad():
                rest = self._batched(states[1:], self.t[:-1]) if T > 1 else states[:0]
            return torch.cat([rest, self._batched(self.x_T[None], self.t[-1:])], dim=0)
        return self._batched(self.network_inputs(states), self.t)

    def _batched(self, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Network on a stack ``(n, B, C, H, W)`` at times ``t`` ``(n,)``: one call on n * B images."""
        n, B = inputs.shape[:2]
        tt = t.repeat_interleave(B)  # (n * B,)
        return call_model(self.model, inputs.reshape(-1, *inputs.shape[2:]), tt).reshape(inputs.shape)

    def evaluate(self, X: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """One network pass over the states k = lo..hi of the full chain ``X`` ``(T+1, B, C, H, W)``.

        Returns eps_theta(x_k) for k = lo..hi, ``(hi - lo + 1, B, C, H, W)``; counts one pass.
        """
        self.evaluations += hi - lo + 1
        self.passes += 1
        return self._batched(X[lo : hi + 1], self.t[lo - 1 : hi])

    def z(self, eps: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """``z_k`` for k = lo+1..hi (rows lo..hi-1; default all T) from their eps, ``(hi - lo, B, C, H, W)``."""
        s = slice(lo, self.steps if hi is None else hi)
        return (
            self.sqrt_prev[s] * self.pinv_y
            + self.c2[s] * eps
            - self.d[s] * self.Q(eps)
            + self.c1[s] * self.step_noise[s]
        )

    def clean_estimates(self, states: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """``x_{0|k} = (x_k - sqrt(1 - abar_k) eps_k) / sqrt(abar_k)``, k = 1..T (index k-1), ``(T, B, C, H, W)``."""
        eps = self.eps(states) if eps is None else eps
        a = self.sqrt_abar[1:] ** 2
        return (self.network_inputs(states) - (1 - a).sqrt() * eps) / a.sqrt()

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        """``F(x_{0:T-1})``: ``(T, B, C, H, W)`` -> ``(T, B, C, H, W)``, Eq. (9) for every j at once."""
        z = self.z(self.eps(states))  # z_1..z_T
        # The terms w[s] grow like 1/sqrt(abar_s) (about 150 at s = T) while x_j stays O(1): the sum
        # cancels, so it is accumulated (and projected) in float64, or float32 rounding of ~1e-5
        # would separate F's fixed point from the sequential chain (and A^+ A amplifies it ~1/sigma_min
        # for deblurring).  Nothing changes for float64 inputs.
        # w[s] = z_{s+1} / sqrt(abar_s) for s = 1..T-1, and w[T] = x_T / sqrt(abar_T); w[0] = 0
        w = torch.cat([torch.zeros_like(z[:1]), z[1:], self.x_T[None]], dim=0).to(self.sum_dtype) / self.w_scale
        # S_j = Q(sum_{s=j+1}^{T} w[s]), j = 0..T-1: a reversed cumulative sum, Eq. (9)
        tail = w.flip(0).cumsum(0).flip(0)[1:]  # tail[j] = sum_{s>j} w[s]
        x = self.sum_scale * self.Q(tail) + z.to(self.sum_dtype)  # x_j = sqrt(abar_j) S_j + z_{j+1}
        return x.to(z.dtype)

    def one_step(self, states: torch.Tensor) -> torch.Tensor:
        """Naive map with the same fixed point: ``x_{k-1} = r_k Q x_k + z_k`` from the current x_k only."""
        z = self.z(self.eps(states))
        return self.r * self.Q(self.network_inputs(states)) + z
