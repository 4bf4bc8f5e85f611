"""The chain's configuration: T, the timesteps and the coefficients c^1, c^2 of every step.

One ``ChainConfig`` is built once and passed to the sequential sampler, the parallel sampler and
DEQ inversion.  Two ways to build it:

* ``chain_config(T, eta)``: the DDIM eta form of DDNM that DeqIR's Eq. (9) uses (the paper, eta = 0.15);
* ``official_chain(T, etw, nw, svd)``: the coefficient set that the official DeqIR code runs.

Notation (code name -> paper symbol; chain convention of ``diffusion/schedules.py``)

    timesteps[k-1]  tau_k                 network time of chain state k (k = 1..T)
    abar[k]         abar_{tau_k}          abar of chain state k; abar[0] = 1 (clean image)
    c1[k], c2[k]    c^1_k, c^2_k          weights of the fresh noise and of eps_theta in step k -> k-1
    g1[k], g2[k]    -                     the same per unit noise level: c = sqrt(1 - abar_{k-1}) g
    eta             eta                   eta form: g1 = eta, g2 = sqrt(1 - eta^2) (None otherwise)

One step ``k -> k-1`` (Eqs. (4)-(5))::

    x_{k-1} = sqrt(abar_{k-1}) hat x_{0|k} + c2_k eps_theta(x_k) + c1_k eps_k        (Proposition 1)

The official setting.  The README command of ``github.com/caojiezhang/DeqIR`` (``main.py ...
--use_svd --etw 0.1``) runs, reading ``runners/diffusion.py`` and ``functions/ddim_anderson.py``,
our Eq. (9) with ``c1 = sqrt(1 - abar_{k-1}) nw`` (``--nw``, default 0) and ``c2 = sqrt(1 - abar_{k-1})
sqrt(1 - etw^2)``; on the non-SVD path both are multiplied by DDNM's ``sigma_t = sqrt(1 - abar_{k-1}^2)``
(note the square, ``simplified_ddnm_plus``).  So the README setting has no fresh noise at all and
shrinks the predicted noise by sqrt(0.99): neither eta = 0 nor eta = 0.15.  The official code also
draws ONE noise image and reuses it at every step (``noises.official_noises``).  Proposition 1 holds
for any c1, c2, so the sequential chain and the parallel solve agree with these coefficients too.

Every tensor is float64; cast at the point of use with ``.to(x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .schedules import alphas_cumprod, ddim_timesteps, linear_betas

__all__ = ["ChainConfig", "chain_config", "official_chain"]


@dataclass(frozen=True)
class ChainConfig:
    """Everything a T-step sampler needs, float64 tensors indexed by chain state ``k``.

    Attributes:
        timesteps: ``(T,)`` long, network time of state ``k`` is ``timesteps[k-1]``.
        abar: ``(T+1,)``, ``abar[0] = 1``.
        c1, c2: ``(T+1,)``, index 0 unused (0): weights of the fresh noise and of eps_theta in step ``k -> k-1``.
        g1, g2: ``(T+1,)``, ``c = sqrt(1 - abar_{k-1}) g``: the weights per unit noise level.
        eta: eta of the eta form, or ``None`` for another coefficient set.
        setting: ``"eta"`` or a description such as ``"official(etw=0.1, nw=0, svd=True)"``.
    """

    timesteps: torch.Tensor
    abar: torch.Tensor
    c1: torch.Tensor
    c2: torch.Tensor
    g1: torch.Tensor
    g2: torch.Tensor
    eta: float | None = None
    setting: str = "eta"

    @property
    def steps(self) -> int:
        """T, the number of sampling steps."""
        return int(self.timesteps.numel())

    def check_schedule(self, alphas_cumprod_full: torch.Tensor | None) -> None:
        """Raise ``ValueError`` unless this chain was built for the noise schedule ``alphas_cumprod_full``."""
        ref = alphas_cumprod(linear_betas()) if alphas_cumprod_full is None else alphas_cumprod_full
        ts = self.timesteps
        if int(ts.max()) >= ref.numel() or not torch.allclose(self.abar[1:], ref.to(torch.float64)[ts]):
            raise ValueError(
                "the chain was built for another noise schedule; build it with alphas_cumprod_full=model.alphas_cumprod"
            )


def _build(
    steps: int,
    g1: torch.Tensor | float,
    g2: torch.Tensor | float,
    alphas_cumprod_full: torch.Tensor | None,
    spacing: str,
    eta: float | None,
    setting: str,
) -> ChainConfig:
    ac = alphas_cumprod(linear_betas()) if alphas_cumprod_full is None else alphas_cumprod_full.to(torch.float64)
    ts = ddim_timesteps(steps, ac.numel(), spacing)
    abar = torch.cat([torch.ones(1, dtype=torch.float64), ac[ts]])
    prev = abar[:-1]  # abar[k-1] for k = 1..T
    w1, w2 = (torch.zeros(steps + 1, dtype=torch.float64) for _ in range(2))
    w1[1:], w2[1:] = g1, g2
    c1, c2 = torch.zeros_like(w1), torch.zeros_like(w2)
    c1[1:] = (1.0 - prev).sqrt() * w1[1:]  # c^1_k, Proposition 1
    c2[1:] = (1.0 - prev).sqrt() * w2[1:]  # c^2_k, Proposition 1
    return ChainConfig(timesteps=ts, abar=abar, c1=c1, c2=c2, g1=w1, g2=w2, eta=eta, setting=setting)


def chain_config(
    steps: int,
    eta: float,
    alphas_cumprod_full: torch.Tensor | None = None,
    spacing: str = "uniform",
) -> ChainConfig:
    """The T-step DDNM/DeqIR chain in the eta form: ``c1 = sqrt(1 - abar_{k-1}) eta``,
    ``c2 = sqrt(1 - abar_{k-1}) sqrt(1 - eta^2)`` (Proposition 1).

    Args:
        steps: number of sampling steps ``T``.
        eta: ``0 <= eta < 1`` (Proposition 1).
        alphas_cumprod_full: ``(n_train,)`` float64; default: the linear schedule 1e-4..0.02, n = 1000.
        spacing: timestep spacing, ``"uniform"`` or ``"quad"`` (``schedules.ddim_timesteps``).
    """
    if not 0.0 <= float(eta) < 1.0:
        raise ValueError(f"eta must satisfy 0 <= eta < 1 (Proposition 1), got {eta}")
    eta = float(eta)
    return _build(steps, eta, math.sqrt(1.0 - eta**2), alphas_cumprod_full, spacing, eta, "eta")


def official_chain(
    steps: int,
    etw: float = 0.1,
    nw: float = 0.0,
    svd: bool = True,
    alphas_cumprod_full: torch.Tensor | None = None,
    spacing: str = "uniform",
) -> ChainConfig:
    """The coefficient set of the official DeqIR code (module docstring); defaults = its README command.

    Args:
        steps: T.  etw, nw: ``--etw`` and ``--nw`` of the official ``main.py``.
        svd: ``True`` as ``--use_svd`` (the README); ``False`` adds the factor sqrt(1 - abar_{k-1}^2).
    """
    if not 0.0 <= float(etw) <= 1.0 or not 0.0 <= float(nw) <= 1.0:
        raise ValueError(f"etw and nw must lie in [0, 1], got etw={etw}, nw={nw}")
    base = _build(steps, 0.0, 0.0, alphas_cumprod_full, spacing, None, "")
    prev = base.abar[:-1]
    sigma = torch.ones_like(prev) if svd else (1.0 - prev**2).sqrt()  # DDNM's non-SVD factor
    setting = f"official(etw={etw}, nw={nw}, svd={svd})"
    return _build(
        steps, float(nw) * sigma, (1.0 - float(etw) ** 2) ** 0.5 * sigma, alphas_cumprod_full, spacing, None, setting
    )
