"""Faster parallel solvers for DeqIR that use the lower-triangular structure of F (Eq. (10)).

Beyond the paper: freezing of final states, a sliding window of network evaluations (ParaDiGMS,
Shih et al. 2023), a triangular Anderson acceleration (our reading of ParaTAA, Tang et al. 2024),
and a better linearisation of the chain step.  All are one loop, ``window_solve``; the names of
``PARALLEL_SOLVERS`` pick its options.  One pass = one batched network call.

Notation (code name -> symbol; chain convention of ``schedules.py``, map of ``fixed_point.py``)

    X[k]          x_k              full chain (T+1, B, C, H, W), X[T] = x_T fixed
    E[k-1]        eps_theta(x_k)   cached network output of state k = 1..T
    Z[k-1]        z_k              the part of x_{k-1} that is not r_k Q x_k (``FixedPointMap``)
    Phi_k         -                one DDNM step x_k -> x_{k-1} = r_k Q x_k + z_k(eps_theta(x_k))
    alpha, beta   L_k              approximate step Jacobian L_k = alpha_k Q + beta_k I
    b             -                boundary: states k >= b are frozen (final); b = T at the start
    lo..hi        -                states evaluated by the network in one pass (the window)
    w             w                window size (ParaDiGMS); default T
    m, lam        m, lambda        Anderson history and (relative) regularisation, Algorithm 1

The map (``scan_map``): from the frozen anchor x_b down to x_0, with the x_k^old of the last pass::

    x_{k-1} = Phi_k(x_k^old) + L_k (x_k - x_k^old)          k = b, ..., 1

L_k = r_k Q is exactly Eq. (9), the paper's cumulative form; L_k = 0 the one-step form.  Both have
the chain as fixed point; they differ in how fast an iteration converges.  Eq. (9) assumes that
x_{0|k} moves one-to-one with x_k.  At high noise it does not (the network's x_{0|k} hardly depends
on x_k), and the true step contracts while r_1 ... r_T = sqrt(abar_0 / abar_T) (157 for T = 20)
amplifies every error of a stale eps: the first iterates of Eq. (9) leave the data range, and for
eta = 0.85, T = 100 its errors grow to ~1e14 before finite termination takes over (book chapter 6).  ``form="gauss"`` takes L_k from data
N(mu, sigma^2 I): d x_{0|k} / d x_k = sqrt(abar_k) sigma^2 / (abar_k sigma^2 + 1 - abar_k), which
moves from "no dependence" at high noise to Eq. (9) at low noise (``step_jacobian``).

Freezing.  x_j needs x_b and eps at states j+1..b only.  (i) A state whose inputs are final is
final after one pass (T passes are exact); (ii) a final state needs one last network evaluation and
then none; (iii) a state whose inputs were freshly evaluated is frozen too once its estimated remaining
error, change / (1 - observed rate), is below ``tol`` (per-state stopping; ParaDiGMS freezes on the change
alone, which stops early when the iteration converges slowly).  Frozen states leave the window, which slides.

Start.  Algorithm 1 starts from x_k = x_T.  At small tau_k the network reads x_T as an almost clean
image and, for eta > 0, the states lack the fresh noise the chain injects, so eps_theta disagrees
with the noise in the states and Eq. (9) amplifies the disagreement.  ``start="ddim"`` (default)
starts from the chain of a surrogate model that believes x_0 = A^+ y (``ddim_start``).

Triangular Anderson.  x_j depends on states above it only, so its mixing weights use the residuals
of states j..b-1 only (a suffix Gram matrix per state; ``accel="anderson"``: one alpha per image).
Final states take the plain map value (safeguard: never more than T passes).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from .fixed_point import FixedPointMap
from .solvers import SolverTrace

__all__ = ["ParallelTrace", "window_solve", "ddim_start", "evaluate_states", "PARALLEL_SOLVERS"]


@dataclass
class ParallelTrace(SolverTrace):
    """``SolverTrace`` (one entry per pass) plus the window ``(lo, hi)`` evaluated and the boundary ``b``.

    ``iterations`` = sequential network passes; ``nfe[-1]`` = network evaluations of single states.
    """

    window: list[tuple[int, int]] = field(default_factory=list)
    boundary: list[int] = field(default_factory=list)

    @property
    def passes(self) -> int:
        return self.iterations


def evaluate_states(f: FixedPointMap, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Network on a stack ``(n, B, C, H, W)`` at times ``t`` ``(n,)`` -> eps ``(n, B, C, H, W)``.

    One batched call of ``f.model`` (or ``f.chunk_size`` states at a time); a ``distributed.ShardedModel``
    splits that call across devices.
    """
    n, B = inputs.shape[:2]
    chunk = n if f.chunk_size is None else f.chunk_size
    out = []
    for lo in range(0, n, chunk):
        part = inputs[lo:lo + chunk]
        tt = t[lo:lo + chunk].repeat_interleave(B)  # (n * B,)
        out.append(f.model(part.reshape(-1, *part.shape[2:]), tt).reshape(part.shape))
    return torch.cat(out, dim=0)


def z_slice(f: FixedPointMap, eps: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``z_k`` for k = lo+1..hi (rows lo..hi-1) from their eps ``(hi-lo, B, C, H, W)``; as ``FixedPointMap.z``."""
    s = slice(lo, hi)
    return f.sqrt_prev[s] * f.pinv_y + f.c2[s] * eps - f.d[s] * f.Q(eps) + f.c1[s] * f.step_noise[s]


def ddim_start(f: FixedPointMap) -> tuple[torch.Tensor, torch.Tensor]:
    """The chain of the surrogate model ``eps_0(x_k) = (x_k - sqrt(abar_k) A^+ y) / sqrt(1 - abar_k)``.

    It believes x_0 = A^+ y, so every step of Eqs. (4)-(5) gives (with u_k the unit noise of state k)::

        x_k = sqrt(abar_k) A^+ y + sqrt(1 - abar_k) u_k,   u_{k-1} = sqrt(1 - eta^2) u_k + eta eps_k

    Returns ``(states (T, B, C, H, W), u (T, B, C, H, W))``, rows k = 0..T-1 and k = 1..T (eps cache).
    """
    T, eta = f.steps, float(f.coeffs.eta)
    a = f.sqrt_abar ** 2  # (T+1, 1, 1, 1, 1), abar_k
    u = [(f.x_T - a[T].sqrt() * f.pinv_y) / (1 - a[T]).sqrt()]  # u_T
    for k in range(T, 1, -1):  # u_{k-1} from u_k and the fresh noise of step k
        u.append((1 - eta**2) ** 0.5 * u[-1] + eta * f.step_noise[k - 1])
    u = torch.stack(u[::-1])  # (T,), row k-1 = u_k
    u_prev = torch.cat([(1 - eta**2) ** 0.5 * u[:1] + eta * f.step_noise[:1], u[:-1]])  # row k = u_k, k = 0..T-1
    return a[:T].sqrt() * f.pinv_y + (1 - a[:T]).sqrt() * u_prev, u


def step_jacobian(f: FixedPointMap, form: str, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scalars ``(alpha, beta)`` ``(T,)`` of the approximate step Jacobian ``L_k = alpha_k Q + beta_k I``.

    d x_{k-1} / d x_k = sqrt(abar_{k-1}) Q D + c2 (I - sqrt(abar_k) D) / sqrt(1 - abar_k) with
    D = d x_{0|k} / d x_k.  ``"cumulative"``: D = I / sqrt(abar_k), L_k = r_k Q (Eq. (9)); ``"one-step"``:
    L_k = 0; ``"gauss"``: D of data N(mu, sigma^2 I), D = sqrt(abar_k) sigma^2 / (abar_k sigma^2 + 1 - abar_k).
    """
    a = (f.sqrt_abar.view(-1) ** 2)[1:]  # abar_k, k = 1..T
    prev = f.sqrt_prev.view(-1)  # sqrt(abar_{k-1})
    c2 = f.c2.view(-1)
    if form == "cumulative":
        return f.r.view(-1), torch.zeros_like(a)
    if form == "one-step":
        return torch.zeros_like(a), torch.zeros_like(a)
    if form == "gauss":
        delta = a.sqrt() * sigma**2 / (a * sigma**2 + 1 - a)
        return prev * delta, c2 * (1 - a.sqrt() * delta) / (1 - a).sqrt()
    raise ValueError(f"unknown form {form!r}; use 'cumulative', 'one-step' or 'gauss'")


def scan_map(f: FixedPointMap, X: torch.Tensor, Z: torch.Tensor, b: int,
             alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """New ``x_j``, j = 0..b-1, from the frozen anchor x_b: ``(b, B, C, H, W)``.

    Linearised step (Newton-like with an approximate Jacobian ``L_k``, ``step_jacobian``)::

        x_{k-1} = Phi_k(x_k^old) + L_k (x_k - x_k^old),   Phi_k(x) = r_k Q x + z_k(eps(x)),   k = b..1

    With L_k = r_k Q this is Eq. (9) unrolled from x_b.  Split into Q-part q and range part p, the
    recurrences have scalar factors: q_{k-1} = (alpha_k + beta_k) q_k + Q c_k, p_{k-1} = beta_k p_k + (I - Q) c_k.
    """
    old = X[1:b + 1]  # x_k^old, k = 1..b
    al, be = alpha[:b].view(-1, *[1] * (X.dim() - 1)), beta[:b].view(-1, *[1] * (X.dim() - 1))
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


def _tri_anderson(Xh: list[torch.Tensor], Fh: list[torch.Tensor], lam: float, triangular: bool) -> torch.Tensor:
    """Anderson mixing of the history (each ``(b, B, ...)``) with one alpha per state (suffix Gram) or per image."""
    Xs, Fs = torch.stack(Xh), torch.stack(Fh)  # (n, b, B, ...)
    n, b, B = Xs.shape[:3]
    G = (Fs - Xs).reshape(n, b, B, -1)
    G = G / (Fs[-1].reshape(1, b, B, -1).norm(dim=-1, keepdim=True) + 1e-5)  # relative residual of each state
    gram = torch.einsum("ijbd,kjbd->jbik", G, G)  # (b, B, n, n), per-state Gram matrices
    gram = gram.flip(0).cumsum(0).flip(0)  # suffix sums: state j sees residuals of states j..b-1
    if not triangular:
        gram = gram[:1].expand(b, -1, -1, -1)  # plain Anderson: all states, one alpha per image
    eye = torch.eye(n, dtype=G.dtype, device=G.device)
    scale = gram.diagonal(dim1=-2, dim2=-1).amax(-1)[..., None, None].clamp_min(1e-30)
    H = torch.zeros(b, B, n + 1, n + 1, dtype=G.dtype, device=G.device)
    H[..., 0, 1:] = 1.0
    H[..., 1:, 0] = 1.0
    H[..., 1:, 1:] = gram + lam * scale * eye  # Algorithm 1, line 7 (relative lambda)
    rhs = torch.zeros(b, B, n + 1, 1, dtype=G.dtype, device=G.device)
    rhs[..., 0, 0] = 1.0
    alpha = torch.linalg.solve(H, rhs)[..., 1:, 0]  # (b, B, n), sums to one per state
    shape = (n, b, B) + (1,) * (Xs.dim() - 3)
    return (alpha.permute(2, 0, 1).reshape(shape) * Fs).sum(0)  # x_j = sum_i alpha_ji F_i[j]


def window_solve(
    f: FixedPointMap,
    init: torch.Tensor,
    max_iter: int = 15,
    tol: float = 1e-3,
    window: int | float | None = None,
    form: str = "cumulative",
    sigma: float = 0.3,
    accel: str | None = None,
    m: int = 5,
    lam: float = 1e-6,
    damping: float = 1.0,
    start: str = "ddim",
    freeze: bool = True,
    reference: torch.Tensor | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    stop: str = "per_state",
) -> tuple[torch.Tensor, ParallelTrace]:
    """Solve ``x = F(x)`` pass by pass with freezing, a window, and optional (triangular) Anderson.

    Args:
        f: the map of ``fixed_point.FixedPointMap`` (its coefficients are used, not just ``f(x)``).
        init: ``(T, B, C, H, W)`` start, used when ``start="given"``; ``"ddim"``: ``ddim_start(f)``.
        max_iter: passes.  tol: a state whose inputs were freshly evaluated is frozen when its estimated
            remaining error ``delta / (1 - rate)`` is below tol, with ``delta = ||x_new - x|| / ||x_new||``
            (worst image) and ``rate`` the ratio of its last two deltas (``tol=0``: only exact states).
        window: at most this many states per network pass: an int, a float in (0, 1] (fraction of
            T), or None (T).
        form, sigma: the linearised step of ``scan_map`` (``step_jacobian``): "cumulative" (Eq. (9)),
            "one-step", or "gauss" with data standard deviation ``sigma``.
        accel: ``None`` (Picard), ``"taa"`` (triangular Anderson) or ``"anderson"`` (one alpha per image).
        m, lam: Anderson history and relative regularisation; damping: ``x <- x + omega (F(x) - x)``.
        freeze: ``False`` re-evaluates every state every pass (plain Picard/Anderson with this map).
        stop: only ``"per_state"`` (all states frozen); kept for the solver signature.
    Returns:
        ``(x_{0:T-1}, trace)``, as ``solvers.picard``.
    """
    T = f.steps
    if tuple(init.shape) != (T, *f.x_T.shape):
        raise ValueError(f"init must have shape (T, B, C, H, W) = {(T, *f.x_T.shape)}, got {tuple(init.shape)}")
    if not isinstance(max_iter, int) or max_iter < 1 or not tol >= 0:
        raise ValueError(f"need a positive integer max_iter and tol >= 0, got {max_iter!r}, {tol}")
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"the Anderson history m must be a positive integer, got {m!r}")
    if start not in ("ddim", "given") or accel not in (None, "taa", "anderson") or stop != "per_state":
        raise ValueError(f"start must be 'ddim'|'given', accel None|'taa'|'anderson', stop 'per_state'; "
                         f"got {start!r}, {accel!r}, {stop!r}")
    w = T if window is None else (max(1, round(window * T)) if isinstance(window, float) else int(window))
    if not 1 <= w <= T or not 0 < damping <= 1:
        raise ValueError(f"need 1 <= window <= T = {T} and 0 < damping <= 1, got {window}, {damping}")
    alpha, beta = step_jacobian(f, form, sigma)
    X0, E = ddim_start(f)  # states and eps cache of the surrogate chain
    X = torch.cat([X0 if start == "ddim" else init, f.x_T[None]]).clone()  # (T+1, ...)
    Z = z_slice(f, E, 0, T)
    fresh = torch.zeros(T + 1, dtype=torch.bool)  # eps of state k computed at the current X[k]
    exact = torch.zeros(T + 1, dtype=torch.bool)  # X[k] final given the frozen states
    exact[T] = True
    prev = torch.full((T,), float("inf"), dtype=torch.float64)  # last change of each state
    b, trace, Xh, Fh = T, ParallelTrace(stop="per_state"), [], []
    rel = lambda d, v: (d.flatten(2).norm(dim=2) / (v.flatten(2).norm(dim=2) + 1e-5)).amax(1)  # noqa: E731
    for _ in range(max_iter):
        stale = (~fresh[1:]).nonzero()
        hi = int(stale.max()) + 1 if stale.numel() else 0  # highest state whose eps is stale
        lo = max(1, hi - w + 1)
        if hi >= 1:  # one batched network pass over states lo..hi
            E[lo - 1:hi] = evaluate_states(f, X[lo:hi + 1], f.t[lo - 1:hi])
            Z[lo - 1:hi] = z_slice(f, E[lo - 1:hi], lo - 1, hi)
            fresh[lo:hi + 1] = True
            f.nfe += hi - lo + 1
            f.calls += 1
        FX = scan_map(f, X, Z, b, alpha, beta)  # (b, ...)
        # inputs of x_j (states j+1..b) final and freshly evaluated -> the new x_j is final
        ok = (exact & fresh)[1:b + 1].flip(0).cumprod(0).flip(0).bool()  # ok[j]: states j+1..b all good
        new = X[:b] + damping * (FX - X[:b])
        if accel is not None:
            keep = max(0, len(Xh) - m + 1)
            Xh, Fh = [h[:b] for h in Xh[keep:]] + [X[:b].clone()], [h[:b] for h in Fh[keep:]] + [FX]
            if len(Xh) > 1:
                new = _tri_anderson(Xh, Fh, lam, accel == "taa")
        new = torch.where(ok.to(X.device).view(-1, *[1] * (X.dim() - 1)), FX, new)  # safeguard: final states exactly
        change = rel(new - X[:b], new).cpu()  # (b,), worst image
        res = rel(FX - X[:b], FX).cpu()  # relative residual per state
        gres = float((FX - X[:b]).norm() / (FX.norm() + 1e-5))
        fresh_in = fresh[1:b + 1].flip(0).cumprod(0).flip(0).bool()
        # per-state stopping on the a-posteriori estimate of a linearly converging iteration:
        # remaining error <= change / (1 - rate), rate = change / previous change (no estimate: no freeze)
        rate = torch.where(prev[:b].isfinite(), (change.double() / prev[:b]).clamp(0, 0.99), 1.0)
        conv = ok | (freeze & fresh_in & (change.double() / (1 - rate) < tol))
        prev[:b] = change.double()
        exact[:b] = ok
        fresh[:b] &= change == 0
        X[:b] = new
        if freeze:  # slide: the contiguous converged block below b is frozen
            k = b
            while k > 0 and bool(conv[k - 1]):
                k -= 1
            exact[k:] = True
            b = k
        _record_pass(trace, f, X, gres, res, change, lo, hi, b, reference, callback)
        if b == 0 or (not freeze and float(change.max()) < tol):
            trace.converged = True
            break
    return X[:T], trace


def _record_pass(trace: ParallelTrace, f: FixedPointMap, X: torch.Tensor, gres: float, res: torch.Tensor,
                 change: torch.Tensor, lo: int, hi: int, b: int, reference: torch.Tensor | None,
                 callback: Callable[[dict[str, Any]], None] | None) -> None:
    T = f.steps
    state_res = torch.zeros(T, dtype=torch.float64)
    state_res[: res.numel()] = res.detach().double().cpu()
    trace.residual.append(gres)
    trace.state_residual.append(state_res)
    trace.x0_change.append(float(change[0]) if change.numel() else 0.0)
    if reference is not None:
        trace.x0_error.append(float((X[0] - reference).abs().max()))
    trace.iterations += 1
    trace.nfe.append(int(f.nfe))
    trace.window.append((lo, hi))
    trace.boundary.append(b)
    if callback is not None:
        callback({"iteration": trace.iterations, "states": X[:T], "residual": trace.residual[-1],
                  "state_residual": state_res, "criterion": float(state_res.max()), "window": (lo, hi), "boundary": b})


# name -> solver with the signature of ``solvers.picard``; ``samplers.deqir_sample(solver=name)`` finds them
PARALLEL_SOLVERS: dict[str, Callable[..., tuple[torch.Tensor, SolverTrace]]] = {
    "picard-freeze": partial(window_solve),  # Eq. (9), final states frozen, per-state stopping
    "picard-window": partial(window_solve, window=0.25),  # ParaDiGMS sliding window of T/4 states
    "anderson-freeze": partial(window_solve, accel="anderson"),  # Algorithm 1 + freezing
    "taa": partial(window_solve, accel="taa"),  # triangular Anderson + freezing
    "gauss-freeze": partial(window_solve, form="gauss"),  # Gaussian step Jacobian + freezing
    "gauss-window": partial(window_solve, form="gauss", window=0.25),  # ... in a sliding window
}
