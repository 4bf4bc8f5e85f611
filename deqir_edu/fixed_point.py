"""The fixed-point map F of DeqIR (Proposition 1, Eqs. (8)-(10)).

Notation (code name -> paper symbol; chain convention of ``schedules.py``)

    states[j]     x_j               j = 0..T-1, the unknowns of Eq. (8); x_T is fixed (input injection)
    x_T           x_T               initial noise
    noises[T-k]   eps_k             fresh noise of step k -> k-1 (``samplers.draw_noises``)
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

from ._checks import check_image
from .schedules import ChainCoefficients

__all__ = ["FixedPointMap", "alphas_cumprod_of"]


def alphas_cumprod_of(model: Any) -> torch.Tensor | None:
    """The model's ``alphas_cumprod`` as float64 on the CPU, or ``None`` (default schedule)."""
    ac = getattr(model, "alphas_cumprod", None)
    return None if ac is None else torch.as_tensor(ac).detach().to("cpu", torch.float64)


class FixedPointMap:
    """``F(x_{0:T-1}; x_T, y)`` of Eq. (8), in the cumulative-sum form of Eq. (9).

    Args:
        model: eps-model (``model(x, t) -> eps``, ``x`` of shape ``(N, C, H, W)``).
        op: operator with ``A`` and ``A_pinv``.
        y: measurement, batch ``B``.
        x_T: ``(B, C, H, W)``; may require grad (DEQ inversion), F is differentiable in it.
        noises: ``(T, B, C, H, W)`` in the order of ``draw_noises``.
        coeffs: ``chain_coefficients(T, eta, ...)``.
        chunk_size: at most this many states per network call (default: all T in one call).

    Attributes:
        nfe: network evaluations of single states so far (T per application of F).
        calls: applications of F (or of ``one_step``) so far.
    """

    def __init__(
        self,
        model: Any,
        op: Any,
        y: torch.Tensor,
        x_T: torch.Tensor,
        noises: torch.Tensor,
        coeffs: ChainCoefficients,
        chunk_size: int | None = None,
    ) -> None:
        T = coeffs.steps
        check_image(x_T, getattr(model, "image_shape", None), "x_T")
        if tuple(noises.shape) != (T, *x_T.shape):
            raise ValueError(f"noises must have shape (T, B, C, H, W) = {(T, *x_T.shape)}, got {tuple(noises.shape)}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        self.model, self.op, self.y, self.x_T, self.coeffs = model, op, y, x_T, coeffs
        self.chunk_size = chunk_size
        self.pinv_y = op.A_pinv(y)  # A^+ y, (B, C, H, W)
        abar = coeffs.abar.to(x_T.device, x_T.dtype)  # (T+1,), abar[0] = 1
        view = (T, 1, 1, 1, 1)
        # per step k = 1..T (index k-1): noise_k, coefficients of z_k
        self.step_noise = noises.flip(0)  # step_noise[k-1] = noises[T-k]
        self.sqrt_prev = abar[:-1].sqrt().view(view)  # sqrt(abar_{k-1})
        self.r = (abar[:-1] / abar[1:]).sqrt().view(view)  # r_k
        self.d = (abar[:-1] * (1 - abar[1:]) / abar[1:]).sqrt().view(view)  # coefficient of Q eps_k
        self.c1 = coeffs.c1[1:].to(x_T).view(view)
        self.c2 = coeffs.c2[1:].to(x_T).view(view)
        self.sqrt_abar = abar.sqrt().view(T + 1, 1, 1, 1, 1)  # sqrt(abar_j), j = 0..T
        # The sum of Eq. (9) runs in float64 (see __call__): its weights, once, in that dtype
        self.sum_dtype = torch.float64 if x_T.dtype in (torch.float32, torch.float16, torch.bfloat16) else x_T.dtype
        root = coeffs.abar.to(x_T.device, self.sum_dtype).sqrt()
        self.sum_scale = root[:T].view(view)  # sqrt(abar_j), j = 0..T-1
        self.w_scale = torch.cat([root.new_ones(1), root[1:]]).view(T + 1, 1, 1, 1, 1)  # divisors of w[0..T]
        self.t = coeffs.timesteps.to(x_T.device)  # network time of state k is t[k-1]
        self.nfe = 0
        self.calls = 0

    @property
    def steps(self) -> int:
        return self.coeffs.steps

    def Q(self, v: torch.Tensor) -> torch.Tensor:
        """Null-space projection ``(I - A^+ A) v`` of a stack ``(..., B, C, H, W)``, batched."""
        flat = v.reshape(-1, *v.shape[-3:])
        return (flat - self.op.A_pinv(self.op.A(flat))).reshape(v.shape)

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
        self.nfe += T
        self.calls += 1
        if torch.is_grad_enabled() and self.x_T.requires_grad and not states.requires_grad:
            # phantom gradient (inversion.py): only x_T carries a graph; evaluating the detached
            # states without one keeps the memory of a single network evaluation (frozen model)
            with torch.no_grad():
                rest = self._batched(states[1:], self.t[:-1]) if T > 1 else states[:0]
            return torch.cat([rest, self._batched(self.x_T[None], self.t[-1:])], dim=0)
        return self._batched(self.network_inputs(states), self.t)

    def _batched(self, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Network on a stack ``(n, B, C, H, W)`` at times ``t`` ``(n,)``: one call (or chunks)."""
        n, B = inputs.shape[:2]
        chunk = n if self.chunk_size is None else self.chunk_size
        out = []
        for lo in range(0, n, chunk):  # all n states in one call unless chunk_size is set
            part = inputs[lo:lo + chunk]
            tt = t[lo:lo + chunk].repeat_interleave(B)  # (n * B,)
            out.append(self.model(part.reshape(-1, *part.shape[2:]), tt).reshape(part.shape))
        return torch.cat(out, dim=0)

    def z(self, eps: torch.Tensor) -> torch.Tensor:
        """``z_k`` for k = 1..T (index k-1) from the network outputs, ``(T, B, C, H, W)``."""
        return (self.sqrt_prev * self.pinv_y + self.c2 * eps - self.d * self.Q(eps)
                + self.c1 * self.step_noise)

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

    def residual(self, states: torch.Tensor) -> torch.Tensor:
        """``g(x) = F(x) - x`` (Eq. (11)), ``(T, B, C, H, W)``."""
        return self(states) - states
