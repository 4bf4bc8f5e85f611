"""Faster parallel solvers for DeqIR that use the lower-triangular structure of F (Eq. (10)).

Beyond the paper: freezing of final states, a sliding window of network evaluations (ParaDiGMS,
Shih et al. 2023), a triangular Anderson acceleration (our reading of ParaTAA, Tang et al. 2024),
and a better linearisation of the chain step.  All are one loop, ``window_solve``; the registry's names
(``registry.py``) pick its options (a ``WindowConfig``).  One pass = one batched network call.

Notation (code name -> symbol; chain convention of ``diffusion/schedules.py``, map of ``sampling/fixed_point.py``)

    X[k]          x_k              full chain (T+1, B, C, H, W), X[T] = x_T fixed
    E[k-1]        eps_theta(x_k)   cached network output of state k = 1..T
    Z[k-1]        z_k              the part of x_{k-1} that is not r_k Q x_k (``FixedPointMap``)
    Phi_k         -                one DDNM step x_k -> x_{k-1} = r_k Q x_k + z_k(eps_theta(x_k))
    alpha, beta   L_k              approximate step Jacobian L_k = alpha_k Q + beta_k I
    b             -                boundary: states k >= b are frozen (final); b = T at the start
    lo..hi        -                states evaluated by the network in one pass (the window)
    w             w                window size (ParaDiGMS); default T
    m, lam        m, lambda        Anderson history and (relative) regularisation, Algorithm 1

The map (``FixedPointMap.scan``): from the frozen anchor x_b down to x_0, with the x_k^old of the last pass::

    x_{k-1} = Phi_k(x_k^old) + L_k (x_k - x_k^old)          k = b, ..., 1

L_k = r_k Q is exactly Eq. (9), the paper's cumulative form; L_k = 0 the one-step form.  Both have
the chain as fixed point; they differ in how fast an iteration converges.  Eq. (9) assumes that
x_{0|k} moves one-to-one with x_k.  At high noise it does not (the network's x_{0|k} hardly depends
on x_k), and the true step contracts while r_1 ... r_T = sqrt(abar_0 / abar_T) (157 for T = 20)
amplifies every error of a stale eps: the first iterates of Eq. (9) leave the data range, and for
eta = 0.85, T = 100 its errors grow to ~1e14 before finite termination takes over (book chapter 6).  ``form="gauss"`` takes L_k from data
N(mu, sigma^2 I): d x_{0|k} / d x_k = sqrt(abar_k) sigma^2 / (abar_k sigma^2 + 1 - abar_k), which
moves from "no dependence" at high noise to Eq. (9) at low noise (``FixedPointMap.linearisation``).
``secant=True`` then re-fits L_k per state and image from the state's last two network evaluations (a
secant along the step actually taken, split into its Q and range parts; ``_secant_gains``): the gains
the network really has, two scalars per state and image, so the map stays lower-triangular.

Freezing.  x_j needs x_b and eps at states j+1..b only.  (i) A state whose inputs are final is
final after one pass (T passes are exact); (ii) a final state needs one last network evaluation and
then none; (iii) a state whose inputs were freshly evaluated is frozen too once its estimated remaining
error, change / (1 - observed rate), is below ``tol`` (per-state stopping; ParaDiGMS freezes on the change
alone, which stops early when the iteration converges slowly).  Frozen states leave the window, which slides.

Start.  Algorithm 1 starts from x_k = x_T.  At small tau_k the network reads x_T as an almost clean
image and, for eta > 0, the states lack the fresh noise the chain injects, so eps_theta disagrees
with the noise in the states and Eq. (9) amplifies the disagreement.  ``start="ddim"`` (default)
starts from the chain of a surrogate model that believes x_0 = A^+ y (``FixedPointMap.surrogate_start``).

Triangular Anderson.  x_j depends on states above it only, so its mixing weights use the residuals
of states j..b-1 only (a suffix Gram matrix per state; ``accel="anderson"``: one alpha per image).
Final states take the plain map value (safeguard: never more than T passes).
The solver asks the map (``sampling.FixedPointMap``) for everything chain-specific: ``steps``,
``x_T``, ``surrogate_start()``, ``evaluate(X, lo, hi)`` (one network pass, counted by the map),
``z(eps, lo, hi)``, ``linearisation(form, sigma)``, ``scan(X, Z, b, alpha, beta)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from .trace import Callback, SolverTrace

__all__ = ["WindowConfig", "window_solve"]


@dataclass(frozen=True)
class WindowConfig:
    """Options of ``window_solve``; the registry's solver names are presets of it.

    Attributes:
        window: at most this many states per network pass: an int, a float in (0, 1] (fraction of
            T), or None (T).
        form, sigma: the linearised step (``FixedPointMap.linearisation``): "cumulative" (Eq. (9)),
            "one-step", or "gauss" with data standard deviation ``sigma``.
        accel: ``None`` (Picard), ``"taa"`` (triangular Anderson) or ``"anderson"`` (one alpha per image).
        m, lam: Anderson history and relative regularisation; damping: ``x <- x + omega (F(x) - x)``.
        start: ``"ddim"`` (``FixedPointMap.surrogate_start``) or ``"given"`` (the ``init`` passed).
        freeze: ``False`` re-evaluates every state every pass (plain Picard/Anderson with this map).
        restart: clear the Anderson history when the residual grew (the next pass is a plain step).
        secant: re-fit each state's step gains (Q part and range part, per image) from its last two network
            evaluations (``_secant_gains``); ``form`` gives the gains until a state has two.
        rates: the observed rate of a state (and of x_0) is the largest of its last ``rates`` ratios
            change / previous change (at least ``min(rates, 2)`` of them): one ratio can dip by chance.
        x0_scale: what the change of x_0 is relative to in ``stop="x0"``: ``"image"`` (``|x_0|``) or ``"null"``
            (``|Q x_0|``, the part of x_0 that the prior fills in: x_0 = A^+ y + Q x_{0|1}, so every difference
            from the chain and from the truth lies there).
    """

    window: int | float | None = None
    form: str = "cumulative"
    sigma: float = 0.3
    accel: str | None = None
    m: int = 5
    lam: float = 1e-6
    damping: float = 1.0
    start: str = "ddim"
    freeze: bool = True
    restart: bool = False
    secant: bool = False
    rates: int = 1
    x0_scale: str = "image"


def _tri_anderson(Xh: list[torch.Tensor], Fh: list[torch.Tensor], lam: float, triangular: bool) -> torch.Tensor:
    """Anderson mixing of the history (each ``(b, B, ...)``) with one alpha per state (suffix Gram) or per image."""
    Xs, Fs = torch.stack(Xh), torch.stack(Fh)  # (n, b, B, ...)
    n, b, B = Xs.shape[:3]
    G = (Fs - Xs).reshape(n, b, B, -1)
    G = G.float() if G.dtype in (torch.float16, torch.bfloat16) else G  # linalg.solve needs float32 at least
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
    alpha = torch.linalg.solve(H, rhs)[..., 1:, 0].to(Fs.dtype)  # (b, B, n), sums to one per state
    shape = (n, b, B) + (1,) * (Xs.dim() - 3)
    return (alpha.permute(2, 0, 1).reshape(shape) * Fs).sum(0)  # x_j = sum_i alpha_ji F_i[j]


def window_solve(
    f: Any,
    init: torch.Tensor,
    max_iter: int = 15,
    tol: float = 1e-3,
    config: WindowConfig | None = None,
    reference: torch.Tensor | None = None,
    callback: Callback | None = None,
    stop: str = "per_state",
    **options: Any,
) -> tuple[torch.Tensor, SolverTrace]:
    """Solve ``x = F(x)`` pass by pass with freezing, a window, and optional (triangular) Anderson.

    Args:
        f: a ``sampling.FixedPointMap`` (its chain methods are used, not just ``f(x)``).
        init: ``(T, B, C, H, W)`` start, used when ``start="given"``.
        max_iter: passes.  tol: a state whose inputs were freshly evaluated is frozen when its estimated
            remaining error ``delta / (1 - rate)`` is below tol, with ``delta = ||x_new - x|| / ||x_new||``
            (worst image) and ``rate`` the ratio of its last two deltas (``tol=0``: only exact states).
        config: a ``WindowConfig`` (default ``WindowConfig()``); ``options`` override its fields,
            e.g. ``window=0.25, accel="taa"``.
        stop: ``"per_state"``: stop when every state is frozen (b = 0); ``"x0"``: also stop as soon as
            x_0 itself passes the freezing test (its inputs fresh, its estimated remaining error below
            ``tol``): the restored image is what the user waits for, the states near x_0 need not be final.
            Both stop after at most T passes with the chain's exact x_0 (freezing keeps the guarantee).
    Returns:
        ``(x_{0:T-1}, trace)``, as ``picard``.
    """
    try:
        cfg = replace(config or WindowConfig(), **options)
    except TypeError as err:
        raise ValueError(f"unknown option of window_solve: {err}; the options are the fields of WindowConfig") from None
    window, form, sigma, accel, m, lam, damping, start, freeze = (
        cfg.window,
        cfg.form,
        cfg.sigma,
        cfg.accel,
        cfg.m,
        cfg.lam,
        cfg.damping,
        cfg.start,
        cfg.freeze,
    )
    last_res = float("inf")
    T = f.steps
    if tuple(init.shape) != (T, *f.x_T.shape):
        raise ValueError(f"init must have shape (T, B, C, H, W) = {(T, *f.x_T.shape)}, got {tuple(init.shape)}")
    if not isinstance(max_iter, int) or max_iter < 1 or not tol >= 0:
        raise ValueError(f"need a positive integer max_iter and tol >= 0, got {max_iter!r}, {tol}")
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"the Anderson history m must be a positive integer, got {m!r}")
    if cfg.x0_scale not in ("image", "null") or not isinstance(cfg.rates, int) or cfg.rates < 1:
        raise ValueError(
            f"need x0_scale 'image' or 'null' and a positive integer rates, got {cfg.x0_scale!r}, {cfg.rates!r}"
        )
    if start not in ("ddim", "given") or accel not in (None, "taa", "anderson") or stop not in ("per_state", "x0"):
        raise ValueError(
            f"start must be 'ddim'|'given', accel None|'taa'|'anderson', stop 'per_state'|'x0'; "
            f"got {start!r}, {accel!r}, {stop!r}"
        )
    w = T if window is None else (max(1, round(window * T)) if isinstance(window, float) else int(window))
    if not 1 <= w <= T or not 0 < damping <= 1:
        raise ValueError(f"need 1 <= window <= T = {T} and 0 < damping <= 1, got {window}, {damping}")
    alpha, beta = f.linearisation(form, sigma)
    B = f.x_T.shape[0]
    alpha, beta = alpha[:, None].repeat(1, B), beta[:, None].repeat(1, B)  # (T, B): per state and image
    X0, E = f.surrogate_start()  # states and eps cache of the surrogate chain
    X = torch.cat([X0 if start == "ddim" else init, f.x_T[None]]).clone()  # (T+1, ...)
    Z = f.z(E, 0, T)
    Xev, seen = X[1:].clone(), torch.zeros(T, dtype=torch.bool)  # x_k at its last network evaluation
    fresh = torch.zeros(T + 1, dtype=torch.bool)  # eps of state k computed at the current X[k]
    exact = torch.zeros(T + 1, dtype=torch.bool)  # X[k] final given the frozen states
    exact[T] = True
    hist = torch.full((T, cfg.rates + 1), float("inf"), dtype=torch.float64)  # last changes of each state
    b, trace, Xh, Fh = T, SolverTrace(stop=stop), [], []
    hist0 = torch.full((1, cfg.rates + 1), float("inf"), dtype=torch.float64)  # x_0's, relative to |Q x_0|
    rel = lambda d, v: (d.flatten(2).norm(dim=2) / (v.flatten(2).norm(dim=2) + 1e-5)).amax(1)  # noqa: E731
    for _ in range(max_iter):
        stale = (~fresh[1:]).nonzero()
        hi = int(stale.max()) + 1 if stale.numel() else 0  # highest state whose eps is stale
        lo = max(1, hi - w + 1)
        if hi >= 1:  # one batched network pass over states lo..hi
            E[lo - 1 : hi] = f.evaluate(X, lo, hi)  # counted by the map
            Znew = f.z(E[lo - 1 : hi], lo - 1, hi)
            if cfg.secant:
                _secant_gains(
                    f, X[lo : hi + 1] - Xev[lo - 1 : hi], Znew - Z[lo - 1 : hi], seen[lo - 1 : hi], lo, alpha, beta
                )
                Xev[lo - 1 : hi], seen[lo - 1 : hi] = X[lo : hi + 1], True
            Z[lo - 1 : hi] = Znew
            fresh[lo : hi + 1] = True
        FX = f.scan(X, Z, b, alpha, beta)  # (b, ...)
        # inputs of x_j (states j+1..b) final and freshly evaluated -> the new x_j is final
        ok = (exact & fresh)[1 : b + 1].flip(0).cumprod(0).flip(0).bool()  # ok[j]: states j+1..b all good
        new = X[:b] + damping * (FX - X[:b])
        gres = float((FX - X[:b]).norm() / (FX.norm() + 1e-5))
        if accel is not None and cfg.restart and gres > last_res:  # mixing made it worse: start afresh
            Xh, Fh = [], []
        last_res = gres
        if accel is not None:
            keep = max(0, len(Xh) - m + 1)
            Xh, Fh = [h[:b] for h in Xh[keep:]] + [X[:b].clone()], [h[:b] for h in Fh[keep:]] + [FX]
            if len(Xh) > 1:
                new = _tri_anderson(Xh, Fh, lam, accel == "taa")
        new = torch.where(ok.to(X.device).view(-1, *[1] * (X.dim() - 1)), FX, new)  # safeguard: final states exactly
        change = rel(new - X[:b], new).cpu()  # (b,), worst image
        res = rel(FX - X[:b], FX).cpu()  # relative residual per state
        fresh_in = fresh[1 : b + 1].flip(0).cumprod(0).flip(0).bool()
        # per-state stopping on the a-posteriori estimate of a linearly converging iteration:
        # remaining error <= change / (1 - rate), rate = the observed change / previous change (cautious:
        # the largest of the last cfg.rates ratios; no estimate yet: no freeze)
        hist[:b] = torch.cat([hist[:b, 1:], change.double()[:, None]], 1)
        conv = ok | (freeze & fresh_in & (_estimate(hist[:b]) < tol))
        if cfg.x0_scale == "null" and b > 0:  # x_0's test on its change relative to |Q x_0|
            hist0 = torch.cat([hist0[:, 1:], rel(new[:1] - X[:1], f.Q(new[:1])).double().cpu()[:, None]], 1)
            conv[0] = bool(ok[0]) or (freeze and bool(fresh_in[0]) and float(_estimate(hist0)[0]) < tol)
        x0_done = stop == "x0" and b > 0 and bool(conv[0])  # the restored image passed the test
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
        if b == 0 or x0_done or (not freeze and float(change.max()) < tol):
            trace.converged = True
            break
    return X[:T], trace


def _estimate(hist: torch.Tensor) -> torch.Tensor:
    """Remaining error ``change / (1 - rate)`` per row of ``hist`` ``(n, r + 1)`` (oldest change first).

    rate = the largest of the observed ratios change / previous change, at most 0.99; at least ``min(r, 2)``
    ratios are needed (``inf`` marks a change not yet seen), else there is no estimate (``inf``).
    """
    ratios = hist[:, 1:] / hist[:, :-1]  # (n, r)
    seen = hist[:, 1:].isfinite() & hist[:, :-1].isfinite() & (hist[:, :-1] > 0)
    rate = torch.where(seen, ratios, 0.0).amax(1).clamp(0, 0.99)
    enough = seen.sum(1) >= min(ratios.shape[1], 2)
    return torch.where(enough, hist[:, -1] / (1 - rate), float("inf"))


def _secant_gains(
    f: Any, dX: torch.Tensor, dZ: torch.Tensor, seen: torch.Tensor, lo: int, alpha: torch.Tensor, beta: torch.Tensor
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
    dot = lambda u, v: (u * v).flatten(2).sum(2).double()  # noqa: E731  (n, B)
    n = dX.shape[0]
    r = f.r[lo - 1 : lo - 1 + n].reshape(n, 1).double()
    nq, np_ = dot(qx, qx), dot(px, px)
    gq = (r + dot(qz, qx) / nq.clamp_min(1e-30)).clamp(torch.zeros_like(r), r)
    gp = (dot(pz, px) / np_.clamp_min(1e-30)).clamp(0.0, 1.0)
    scale = (nq + np_).amax().clamp_min(1e-30)
    okq = seen[:, None].to(nq.device) & (nq > 1e-12 * scale)  # a step long enough to measure
    okp = seen[:, None].to(nq.device) & (np_ > 1e-12 * scale)
    s = slice(lo - 1, lo - 1 + n)
    old_q = (alpha[s] + beta[s]).double()
    new_p = torch.where(okp, gp, beta[s].double())
    new_q = torch.where(okq, gq, old_q)
    beta[s] = new_p.to(beta.dtype)
    alpha[s] = (new_q - new_p).to(alpha.dtype)


def _record_pass(
    trace: SolverTrace,
    f: Any,
    X: torch.Tensor,
    gres: float,
    res: torch.Tensor,
    change: torch.Tensor,
    lo: int,
    hi: int,
    b: int,
    reference: torch.Tensor | None,
    callback: Callback | None,
) -> None:
    T = f.steps
    state_res = torch.zeros(T, dtype=torch.float64)
    state_res[: res.numel()] = res.detach().double().cpu()
    trace.residual.append(gres)
    trace.state_residual.append(state_res)
    trace.x0_change.append(float(change[0]) if change.numel() else 0.0)
    if reference is not None:
        trace.x0_error.append(float((X[0] - reference).abs().max()))
    trace.passes += 1
    trace.evaluations.append(int(f.evaluations))
    trace.window.append((lo, hi))
    trace.boundary.append(b)
    if callback is not None:
        callback(
            {
                "iteration": trace.passes,
                "states": X[:T],
                "residual": trace.residual[-1],
                "state_residual": state_res,
                "criterion": float(state_res.max()),
                "window": (lo, hi),
                "boundary": b,
            }
        )
