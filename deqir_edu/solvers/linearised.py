"""The linearised chain step that the chain solvers iterate (beyond the paper), on a ``ChainMap``.

Notation (code name -> symbol; chain convention of ``diffusion/schedules.py``, map of ``sampling/fixed_point.py``)

    X[k]          x_k              full chain (T+1, B, C, H, W), X[T] = x_T fixed
    Z[k-1]        z_k              the part of x_{k-1} that is not r_k Q x_k (``ChainMap.z``)
    Phi_k         -                one DDNM step x_k -> x_{k-1} = r_k Q x_k + z_k(eps_theta(x_k))
    alpha, beta   L_k              approximate step Jacobian L_k = alpha_k Q + beta_k I, (T,) or (T, B)
    b             -                anchor: states k >= b are frozen (final)
    u[k-1]        -                unit noise of the surrogate chain at state k

The map (``scan``): from the frozen anchor x_b down to x_0, with the x_k^old of the last network pass::

    x_{k-1} = Phi_k(x_k^old) + L_k (x_k - x_k^old)          k = b, ..., 1

L_k = r_k Q is exactly Eq. (9), the paper's cumulative form; L_k = 0 the one-step form.  Both have the
chain as fixed point; they differ in how fast an iteration converges.  Eq. (9) assumes that x_{0|k}
moves one-to-one with x_k.  At high noise it does not (the network's x_{0|k} hardly depends on x_k), and
the true step contracts while r_1 ... r_T = sqrt(abar_0 / abar_T) (157 for T = 20) amplifies every
error of a stale eps (book chapter 6).  ``"gauss"`` takes L_k from data N(mu, sigma^2 I):
d x_{0|k} / d x_k = sqrt(abar_k) sigma^2 / (abar_k sigma^2 + 1 - abar_k), which moves from "no
dependence" at high noise to Eq. (9) at low noise (``linearisation``).  ``secant_gains`` re-fits L_k per
state and image from the state's last two network evaluations.

Start.  Algorithm 1 starts from x_k = x_T.  ``surrogate_start`` starts instead from the chain of a
surrogate model that believes x_0 = A^+ y.
"""

from __future__ import annotations

import torch

from .contract import ChainMap

__all__ = ["linearisation", "scan", "secant_gains", "surrogate_start"]


def surrogate_start(f: ChainMap) -> tuple[torch.Tensor, torch.Tensor]:
    """The chain of the surrogate model ``eps_0(x_k) = (x_k - sqrt(abar_k) A^+ y) / sqrt(1 - abar_k)``.

    It believes x_0 = A^+ y, so every step of Eqs. (4)-(5) gives (with u_k the unit noise of state k)::

        x_k = sqrt(abar_k) A^+ y + sqrt(1 - abar_k) u_k,   u_{k-1} = g2_k u_k + g1_k noise_k

    (eta form: g2 = sqrt(1 - eta^2), g1 = eta).  Returns ``(states (T, B, C, H, W), u (T, B, C, H, W))``,
    rows k = 0..T-1 and k = 1..T (u is the surrogate's eps, a cache for the first pass).
    """
    T, g1, g2 = f.steps, f.chain.g1.tolist(), f.chain.g2.tolist()
    a = f.chain.abar.to(f.x_T).view(T + 1, 1, 1, 1, 1)  # abar_k, k = 0..T
    u = [(f.x_T - a[T].sqrt() * f.pinv_y) / (1 - a[T]).sqrt()]  # u_T
    for k in range(T, 1, -1):  # u_{k-1} from u_k and the fresh noise of step k
        u.append(g2[k] * u[-1] + g1[k] * f.step_noise[k - 1])
    u = torch.stack(u[::-1])  # (T,), row k-1 = u_k
    u_prev = torch.cat([g2[1] * u[:1] + g1[1] * f.step_noise[:1], u[:-1]])  # row k = u_k, k = 0..T-1
    return a[:T].sqrt() * f.pinv_y + (1 - a[:T]).sqrt() * u_prev, u


def linearisation(f: ChainMap, form: str, sigma: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Scalars ``(alpha, beta)`` ``(T,)`` of the approximate step Jacobian ``L_k = alpha_k Q + beta_k I``.

    d x_{k-1} / d x_k = sqrt(abar_{k-1}) Q D + c2 (I - sqrt(abar_k) D) / sqrt(1 - abar_k) with
    D = d x_{0|k} / d x_k.  ``"cumulative"``: D = I / sqrt(abar_k), L_k = r_k Q (Eq. (9)); ``"one-step"``:
    L_k = 0; ``"gauss"``: D of data N(mu, sigma^2 I), D = sqrt(abar_k) sigma^2 / (abar_k sigma^2 + 1 - abar_k).
    """
    abar = f.chain.abar.to(f.x_T)
    a, prev, c2 = abar[1:], abar[:-1].sqrt(), f.chain.c2[1:].to(f.x_T)  # abar_k, sqrt(abar_{k-1}), c^2_k
    if form == "cumulative":
        return f.r.view(-1), torch.zeros_like(a)
    if form == "one-step":
        return torch.zeros_like(a), torch.zeros_like(a)
    if form == "gauss":
        delta = a.sqrt() * sigma**2 / (a * sigma**2 + 1 - a)
        return prev * delta, c2 * (1 - a.sqrt() * delta) / (1 - a).sqrt()
    raise ValueError(f"unknown form {form!r}; use 'cumulative', 'one-step' or 'gauss'")


def scan(
    f: ChainMap, X: torch.Tensor, Z: torch.Tensor, b: int, alpha: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """New ``x_j``, j = 0..b-1, ``(b, B, C, H, W)``, from the frozen anchor x_b of the chain ``X`` (T+1 states).

    Split into Q-part q and range part p, the linearised recurrences (module docstring) have scalar factors:
    q_{k-1} = (alpha_k + beta_k) q_k + Q c_k, p_{k-1} = beta_k p_k + (I - Q) c_k, with
    c_k = Phi_k(x_k^old) - L_k x_k^old.  ``Z[k-1] = z_k`` are the cached ``z`` of the last evaluation of each state.
    """
    old = X[1 : b + 1]  # x_k^old, k = 1..b
    shape = (b, -1, *[1] * (X.dim() - 2))  # alpha, beta: (T,) per state or (T, B) per state and image
    al, be = alpha[:b].to(X).reshape(shape), beta[:b].to(X).reshape(shape)
    Qold = f.Q(old)
    c = f.r[:b] * Qold + Z[:b] - al * Qold - be * old  # c_k = Phi_k(x_k^old) - L_k x_k^old
    Qc = f.Q(c)
    q = f.Q(X[b])
    p = X[b] - q
    out = torch.empty_like(X[:b])
    for k in range(b, 0, -1):  # a linear recurrence: cheap tensor ops, no network
        q = (al[k - 1] + be[k - 1]) * q + Qc[k - 1]
        p = be[k - 1] * p + (c[k - 1] - Qc[k - 1])
        out[k - 1] = q + p
    return out


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per state and image inner products of two stacks ``(n, B, ...)``: ``(n, B)`` in float64."""
    return (u * v).flatten(2).sum(2).double()


def secant_gains(
    f: ChainMap,
    dX: torch.Tensor,
    dZ: torch.Tensor,
    seen: torch.Tensor,
    lo: int,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> None:
    """Re-fit ``L_k = alpha_k Q + beta_k I`` of states k = lo.. in place from one secant pair each.

    Phi_k(x) = r_k Q x + z_k(eps(x)), so Phi_k(x') - Phi_k(x) = r_k Q dx + dz.  The gains along the
    step, ``g_Q = <Q dPhi, Q dx> / |Q dx|^2`` and ``g_P = <P dPhi, P dx> / |P dx|^2`` (P = I - Q), per image, give
    beta = g_P, alpha = g_Q - g_P; clamped to [0, r_k] and [0, 1] (Eq. (9)'s r_k Q is the largest Q gain:
    x_{0|k} moving one-to-one with x_k).  ``dX``, ``dZ``: ``(n, B, C, H, W)``; ``seen``: ``(n,)``, states
    with an earlier network evaluation (the surrogate start is not one).
    """
    qx, qz = f.Q(dX), f.Q(dZ)
    px, pz = dX - qx, dZ - qz
    n = dX.shape[0]
    r = f.r[lo - 1 : lo - 1 + n].reshape(n, 1).double()
    nq, np_ = _dot(qx, qx), _dot(px, px)
    gq = (r + _dot(qz, qx) / nq.clamp_min(1e-30)).clamp(torch.zeros_like(r), r)
    gp = (_dot(pz, px) / np_.clamp_min(1e-30)).clamp(0.0, 1.0)
    scale = (nq + np_).amax().clamp_min(1e-30)
    okq = seen[:, None].to(nq.device) & (nq > 1e-12 * scale)  # a step long enough to measure
    okp = seen[:, None].to(nq.device) & (np_ > 1e-12 * scale)
    s = slice(lo - 1, lo - 1 + n)
    old_q = (alpha[s] + beta[s]).double()
    new_p = torch.where(okp, gp, beta[s].double())
    new_q = torch.where(okq, gq, old_q)
    beta[s] = new_p.to(beta.dtype)
    alpha[s] = (new_q - new_p).to(alpha.dtype)
