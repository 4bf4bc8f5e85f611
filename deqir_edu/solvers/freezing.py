"""Faster parallel solvers for DeqIR that use the lower-triangular structure of F (Eq. (10)): beyond the paper.

Freezing of final states, a sliding window of network evaluations (ParaDiGMS, Shih et al. 2023), a
triangular Anderson acceleration (our reading of ParaTAA, Tang et al. 2024), and a better linearisation
of the chain step (``linearised.py``).  All are one loop, ``window_solve``; the registry's names
(``registry.py``) are presets of its ``WindowConfig``.  One pass = one batched network call.

Notation (code name -> symbol; chain convention of ``diffusion/schedules.py``, map of ``sampling/fixed_point.py``)

    X[k]          x_k              full chain (T+1, B, C, H, W), X[T] = x_T fixed
    E[k-1]        eps_theta(x_k)   cached network output of state k = 1..T
    Z[k-1]        z_k              the part of x_{k-1} that is not r_k Q x_k (``ChainMap.z``)
    alpha, beta   L_k              approximate step Jacobian L_k = alpha_k Q + beta_k I (``linearised.py``)
    b             -                boundary: states k >= b are frozen (final); b = T at the start
    lo..hi        -                states evaluated by the network in one pass (the window)
    w             w                window size (ParaDiGMS); default T
    m, lam        m, lambda        Anderson history (the paper's m: m + 1 iterates) and relative regularisation

One pass: (1) the network evaluates the stale states lo..hi; (2) the linearised map ``scan`` gives the
new x_0..x_{b-1} from the anchor x_b; (3) a Picard, damped or Anderson update, final states exactly;
(4) the freezing test; (5) the contiguous converged block below b is frozen.

Freezing.  x_j needs x_b and eps at states j+1..b only.  (i) A state whose inputs are final is
final after one pass (T passes are exact); (ii) a final state needs one last network evaluation and
then none; (iii) a state whose inputs were freshly evaluated is frozen too once its estimated remaining
error, change / (1 - observed rate), is below ``tol`` (per-state stopping; ParaDiGMS freezes on the change
alone, which stops early when the iteration converges slowly).  Frozen states leave the window, which slides.

Triangular Anderson.  x_j depends on states above it only, so its mixing weights use the residuals
of states j..b-1 only (a suffix Gram matrix per state; ``accel="anderson"``: one alpha per image).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.checks import is_integer
from .anderson import anderson_weights, solve_dtype
from .contract import ChainMap
from .linearised import linearisation, scan, secant_gains, surrogate_start
from .trace import Callback, SolverTrace, check_solver_args

__all__ = ["WindowConfig", "window_solve", "WINDOW_STOP_RULES"]

WINDOW_STOP_RULES = ("per_state", "x0")


@dataclass(frozen=True)
class WindowConfig:
    """Options of ``window_solve``; the registry's solver names are presets of it.

    Attributes:
        window: at most this many states per network pass: an int, a float in (0, 1] (fraction of
            T), or None (T).
        form, sigma: the linearised step (``linearised.linearisation``): "cumulative" (Eq. (9)),
            "one-step", or "gauss" with data standard deviation ``sigma``.
        accel: ``None`` (Picard), ``"taa"`` (triangular Anderson) or ``"anderson"`` (one alpha per image).
        m, lam: Anderson history (the paper's m: the last m + 1 iterates) and relative regularisation;
            damping: ``x <- x + omega (F(x) - x)``.
        start: ``"ddim"`` (``linearised.surrogate_start``) or ``"given"`` (the ``init`` passed).
        freeze: ``False`` re-evaluates every state every pass (plain Picard/Anderson with this map).
        restart: clear the Anderson history when the residual grew (the next pass is a plain step).
        secant: re-fit each state's step gains (Q part and range part, per image) from its last two network
            evaluations (``linearised.secant_gains``); ``form`` gives the gains until a state has two.
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
    m: int = 4
    lam: float = 1e-6
    damping: float = 1.0
    start: str = "ddim"
    freeze: bool = True
    restart: bool = False
    secant: bool = False
    rates: int = 1
    x0_scale: str = "image"


@dataclass
class _Window:
    """The loop state of ``window_solve`` (one chain, T states, B images)."""

    X: torch.Tensor  # (T+1, B, C, H, W), the chain
    E: torch.Tensor  # (T, B, C, H, W), eps_theta of states 1..T at their last evaluation
    Z: torch.Tensor  # (T, B, C, H, W), z_1..z_T of those
    alpha: torch.Tensor  # (T, B), step gains
    beta: torch.Tensor  # (T, B)
    Xev: torch.Tensor  # (T, B, C, H, W), x_k at its last network evaluation (secant)
    seen: torch.Tensor  # (T,) bool, state evaluated at least once
    fresh: torch.Tensor  # (T+1,) bool, eps of state k computed at the current X[k]
    exact: torch.Tensor  # (T+1,) bool, X[k] final given the frozen states
    hist: torch.Tensor  # (T, rates+1), last changes of each state
    hist0: torch.Tensor  # (1, rates+1), x_0's changes relative to |Q x_0|
    b: int  # states k >= b are frozen
    Xh: list[torch.Tensor] = field(default_factory=list)  # Anderson history of iterates
    Fh: list[torch.Tensor] = field(default_factory=list)  # ... and of map values
    last_res: float = float("inf")


def window_solve(
    f: ChainMap,
    init: torch.Tensor,
    *,
    max_iter: int = 15,
    tol: float = 1e-3,
    stop: str = "per_state",
    reference: torch.Tensor | None = None,
    callback: Callback | None = None,
    config: WindowConfig | None = None,
) -> tuple[torch.Tensor, SolverTrace]:
    """Solve ``x = F(x)`` pass by pass with freezing, a window, and optional (triangular) Anderson.

    Args:
        f: the chain map (``contract.ChainMap``; ``sampling.FixedPointMap``).
        init: ``(T, B, C, H, W)`` start, used when ``config.start="given"``.
        max_iter: passes.  tol: a state whose inputs were freshly evaluated is frozen when its estimated
            remaining error ``delta / (1 - rate)`` is below tol, with ``delta = ||x_new - x|| / ||x_new||``
            (worst image) and ``rate`` the ratio of its last two deltas (``tol=0``: only exact states).
        stop: ``"per_state"``: stop when every state is frozen (b = 0); ``"x0"``: also stop as soon as
            x_0 itself passes the freezing test: the restored image is what the user waits for.
            Both stop after at most T passes with the chain's exact x_0 (freezing keeps the guarantee).
        config: a ``WindowConfig`` (default ``WindowConfig()``).
    Returns:
        ``(x_{0:T-1}, trace)``, as ``picard``.
    """
    cfg = WindowConfig() if config is None else config
    if not isinstance(cfg, WindowConfig):
        raise ValueError(f"config must be a WindowConfig (e.g. solver_spec('taa').config), got {type(cfg).__name__}")
    w = _check(f, init, max_iter, tol, stop, reference, cfg)
    s = _start(f, init, cfg)
    trace = SolverTrace(stop=stop)
    for _ in range(max_iter):
        lo, hi = _evaluate(f, s, w, cfg.secant)  # (1)
        FX = scan(f, s.X, s.Z, s.b, s.alpha, s.beta)  # (2) (b, B, C, H, W)
        ok = (s.exact & s.fresh)[1 : s.b + 1].flip(0).cumprod(0).flip(0).bool()  # inputs of x_j final and fresh
        new, gres = _update(s, FX, ok, cfg)  # (3)
        change = _rel(new - s.X[: s.b], new).cpu()  # (b,), worst image
        res = _rel(FX - s.X[: s.b], FX).cpu()  # relative residual per state
        conv = _frozen_test(f, s, new, change, ok, tol, cfg)  # (4)
        x0_done = stop == "x0" and s.b > 0 and bool(conv[0])  # the restored image passed the test
        s.exact[: s.b] = ok
        s.fresh[: s.b] &= change == 0
        s.X[: s.b] = new
        if cfg.freeze:  # (5) slide: the contiguous converged block below b is frozen
            s.b = _boundary(conv, s.b)
            s.exact[s.b :] = True
        _record_pass(trace, f, s.X, gres, res, change, (lo, hi), s.b, reference, callback)
        if s.b == 0 or x0_done or (not cfg.freeze and float(change.max()) < tol):
            trace.converged = True
            break
    return s.X[: f.steps], trace


def _check(
    f: ChainMap,
    init: torch.Tensor,
    max_iter: int,
    tol: float,
    stop: str,
    reference: torch.Tensor | None,
    cfg: WindowConfig,
) -> int:
    """Raise ``ValueError`` for a bad argument; return the window size w."""
    T = f.steps
    check_solver_args(init, max_iter, tol, stop, reference, WINDOW_STOP_RULES)  # init a tensor first
    if tuple(init.shape) != (T, *f.x_T.shape):
        raise ValueError(f"init must have shape (T, B, C, H, W) = {(T, *f.x_T.shape)}, got {tuple(init.shape)}")
    if not is_integer(cfg.m) or cfg.m < 1:
        raise ValueError(f"the Anderson history parameter m must be an integer >= 1, got {cfg.m!r}")
    if cfg.x0_scale not in ("image", "null") or not is_integer(cfg.rates) or cfg.rates < 1:
        raise ValueError(
            f"need x0_scale 'image' or 'null' and a positive integer rates, got {cfg.x0_scale!r}, {cfg.rates!r}"
        )
    if cfg.start not in ("ddim", "given") or cfg.accel not in (None, "taa", "anderson"):
        raise ValueError(f"start must be 'ddim'|'given', accel None|'taa'|'anderson'; got {cfg.start!r}, {cfg.accel!r}")
    window = cfg.window
    w = T if window is None else (max(1, round(window * T)) if isinstance(window, float) else int(window))
    if not 1 <= w <= T or not 0 < cfg.damping <= 1:
        raise ValueError(f"need 1 <= window <= T = {T} and 0 < damping <= 1, got {window}, {cfg.damping}")
    return w


def _start(f: ChainMap, init: torch.Tensor, cfg: WindowConfig) -> _Window:
    """The loop state before the first pass: the surrogate chain (or ``init``), gains of ``cfg.form``."""
    T, B = f.steps, f.x_T.shape[0]
    alpha, beta = linearisation(f, cfg.form, cfg.sigma)
    X0, E = surrogate_start(f)  # states and eps cache of the surrogate chain
    X = torch.cat([X0 if cfg.start == "ddim" else init, f.x_T[None]]).clone()  # (T+1, ...)
    exact = torch.zeros(T + 1, dtype=torch.bool)
    exact[T] = True
    return _Window(
        X=X,
        E=E,
        Z=f.z(E, 0, T),
        alpha=alpha[:, None].repeat(1, B),  # (T, B): per state and image
        beta=beta[:, None].repeat(1, B),
        Xev=X[1:].clone(),
        seen=torch.zeros(T, dtype=torch.bool),
        fresh=torch.zeros(T + 1, dtype=torch.bool),
        exact=exact,
        hist=torch.full((T, cfg.rates + 1), float("inf"), dtype=torch.float64),
        hist0=torch.full((1, cfg.rates + 1), float("inf"), dtype=torch.float64),
        b=T,
    )


def _evaluate(f: ChainMap, s: _Window, w: int, secant: bool) -> tuple[int, int]:
    """One batched network pass over the highest stale states lo..hi (at most w of them); returns ``(lo, hi)``."""
    stale = (~s.fresh[1:]).nonzero()
    hi = int(stale.max()) + 1 if stale.numel() else 0  # highest state whose eps is stale
    lo = max(1, hi - w + 1)
    if hi >= 1:
        rows = slice(lo - 1, hi)
        s.E[rows] = f.evaluate(s.X, lo, hi)  # counted by the map
        Znew = f.z(s.E[rows], lo - 1, hi)
        if secant:
            dX, dZ = s.X[lo : hi + 1] - s.Xev[rows], Znew - s.Z[rows]
            secant_gains(f, dX, dZ, s.seen[rows], lo, s.alpha, s.beta)
            s.Xev[rows], s.seen[rows] = s.X[lo : hi + 1], True
        s.Z[rows] = Znew
        s.fresh[lo : hi + 1] = True
    return lo, hi


def _update(s: _Window, FX: torch.Tensor, ok: torch.Tensor, cfg: WindowConfig) -> tuple[torch.Tensor, float]:
    """The new x_0..x_{b-1}: damped Picard or Anderson, final states exactly ``FX``; and the global residual."""
    b, X = s.b, s.X
    new = X[:b] + cfg.damping * (FX - X[:b])
    gres = float((FX - X[:b]).norm() / (FX.norm() + 1e-5))
    if cfg.accel is not None:
        if cfg.restart and gres > s.last_res:  # mixing made it worse: start afresh
            s.Xh, s.Fh = [], []
        keep = max(0, len(s.Xh) - cfg.m)  # the last m + 1 iterates, this one included
        s.Xh = [h[:b] for h in s.Xh[keep:]] + [X[:b].clone()]
        s.Fh = [h[:b] for h in s.Fh[keep:]] + [FX]
        if len(s.Xh) > 1:
            new = _tri_anderson(s.Xh, s.Fh, cfg.lam, cfg.accel == "taa")
    s.last_res = gres
    final = ok.to(X.device).view(-1, *[1] * (X.dim() - 1))
    return torch.where(final, FX, new), gres  # safeguard: final states exactly


def _frozen_test(
    f: ChainMap,
    s: _Window,
    new: torch.Tensor,
    change: torch.Tensor,
    ok: torch.Tensor,
    tol: float,
    cfg: WindowConfig,
) -> torch.Tensor:
    """``(b,)`` bool: state j is final (``ok``) or its estimated remaining error is below ``tol``.

    Per-state stopping on the a-posteriori estimate of a linearly converging iteration: remaining error
    <= change / (1 - rate), rate the observed change / previous change (the largest of the last
    ``cfg.rates`` ratios; no estimate yet: no freeze).  Only states whose inputs are fresh may freeze.
    """
    b = s.b
    fresh_in = s.fresh[1 : b + 1].flip(0).cumprod(0).flip(0).bool()
    s.hist[:b] = torch.cat([s.hist[:b, 1:], change.double()[:, None]], 1)
    conv = ok | (cfg.freeze & fresh_in & (_estimate(s.hist[:b]) < tol))
    if cfg.x0_scale == "null" and b > 0:  # x_0's test on its change relative to |Q x_0|
        d0 = _rel(new[:1] - s.X[:1], f.Q(new[:1])).double().cpu()
        s.hist0 = torch.cat([s.hist0[:, 1:], d0[:, None]], 1)
        conv[0] = bool(ok[0]) or (cfg.freeze and bool(fresh_in[0]) and float(_estimate(s.hist0)[0]) < tol)
    return conv


def _boundary(conv: torch.Tensor, b: int) -> int:
    """The new boundary: b moved down over the contiguous block of converged states below it."""
    while b > 0 and bool(conv[b - 1]):
        b -= 1
    return b


def _rel(d: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``||d_j|| / (||v_j|| + 1e-5)`` per state j, worst image: ``(n, B, ...) -> (n,)``."""
    return (d.flatten(2).norm(dim=2) / (v.flatten(2).norm(dim=2) + 1e-5)).amax(1)


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


def _tri_anderson(Xh: list[torch.Tensor], Fh: list[torch.Tensor], lam: float, triangular: bool) -> torch.Tensor:
    """Anderson mixing of the history (each ``(b, B, ...)``) with one alpha per state (suffix Gram) or per image."""
    Xs, Fs = torch.stack(Xh), torch.stack(Fh)  # (n, b, B, ...)
    n, b, B = Xs.shape[:3]
    G = (Fs - Xs).reshape(n, b, B, -1).to(solve_dtype(Fs.dtype))
    G = G / (Fs[-1].reshape(1, b, B, -1).norm(dim=-1, keepdim=True) + 1e-5)  # relative residual of each state
    gram = torch.einsum("ijbd,kjbd->jbik", G, G)  # (b, B, n, n), per-state Gram matrices
    gram = gram.flip(0).cumsum(0).flip(0)  # suffix sums: state j sees residuals of states j..b-1
    if not triangular:
        gram = gram[:1].expand(b, -1, -1, -1)  # plain Anderson: all states, one alpha per image
    alpha = anderson_weights(gram, lam, relative=True).to(Fs.dtype)  # (b, B, n), sums to one per state
    shape = (n, b, B) + (1,) * (Xs.dim() - 3)
    return (alpha.permute(2, 0, 1).reshape(shape) * Fs).sum(0)  # x_j = sum_i alpha_ji F_i[j]


def _record_pass(
    trace: SolverTrace,
    f: ChainMap,
    X: torch.Tensor,
    gres: float,
    res: torch.Tensor,
    change: torch.Tensor,
    window: tuple[int, int],
    b: int,
    reference: torch.Tensor | None,
    callback: Callback | None,
) -> None:
    """Append one pass to ``trace`` (``trace.record_pass``) and call ``callback``."""
    state_res = torch.zeros(f.steps, dtype=torch.float64)
    state_res[: res.numel()] = res.detach().double().cpu()
    x0_change = float(change[0]) if change.numel() else 0.0
    trace.record_pass(X[0], gres, state_res, x0_change, int(f.evaluations), reference, window=window, boundary=b)
    if callback is not None:
        info = {"iteration": trace.passes, "states": X[: f.steps], "residual": gres, "state_residual": state_res}
        callback({**info, "criterion": float(state_res.max()), "window": window, "boundary": b})
