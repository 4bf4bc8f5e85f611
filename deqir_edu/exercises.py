"""Self-checks for the coding exercises of the book ("stub + self-check").

Each ``check_*`` function runs the student's function on seeded random inputs, compares it with the
package's own implementation and prints a short verdict: what differs, the largest error, and a
hint that points at the usual mistake.  It returns ``True`` or ``False`` and never raises, so a
notebook with an unfinished stub (``raise NotImplementedError``) still runs from top to bottom.

Notation (exercise argument -> paper symbol)

    op            A, A^dagger        an operator with ``op.A(x)`` and ``op.A_pinv(y)``
    x0, y         x_{0|t}, y         a clean-image estimate and the measurement
    x_t, eps      x_t, eps_theta     a state of the chain and the predicted noise
    abar_t, abar_prev                alpha-bar of the current and of the next (less noisy) state
    eta           eta                stochasticity of DDIM/DDNM, 0 <= eta < 1
    z, abar, Q    z_k, abar_k, I - A^+ A   pieces of Proposition 1 / Eq. (9) (``check_F``)
    G, lam        G_k, lambda        Anderson residual history (rows) and regularisation, Algorithm 1
    tau, k        tau, k             damping and number of phantom steps, Algorithm 2 / Eq. (13)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "check_null_space_projection", "check_ddim_step", "check_ddpm_posterior", "check_ddnm_step", "check_F",
    "check_anderson_weights", "check_phantom_gradient",
]

_TOL = 1e-10  # float64 everywhere: a correct answer agrees to round-off


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _call(name: str, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """Run the student's function; report (not raise) NotImplementedError and other errors."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        print(f"[ ] {name}: not implemented yet. Replace `raise NotImplementedError` by your code.")
    except Exception as err:  # noqa: BLE001 - any error of student code is reported, not raised
        print(f"[x] {name}: your function raised {type(err).__name__}: {err}")
    return False, None


def _compare(name: str, got: Any, want: torch.Tensor, case: str, hints: Sequence[tuple[bool, str]] = ()) -> bool:
    """Compare shapes and values; on failure print the max error and the first hint that applies."""
    if not isinstance(got, torch.Tensor):
        print(f"[x] {name} ({case}): expected a torch.Tensor, got {type(got).__name__}")
        return False
    if got.shape != want.shape:
        print(f"[x] {name} ({case}): expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
        return False
    err = float((got.to(want) - want).abs().max())
    if not err <= _TOL * max(1.0, float(want.abs().max())):
        print(f"[x] {name} ({case}): max abs error {err:.3g} against the package's implementation.")
        for applies, hint in hints:
            if applies:
                print(f"    hint: {hint}")
                break
        return False
    return True


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and float((a - b).abs().max()) <= 1e-8


def _passed(name: str, detail: str) -> bool:
    print(f"[ok] {name}: correct ({detail}).")
    return True


# ---------------------------------------------------------------------------------------------
# Chapter 1 and 3: Eq. (5), the null-space projection
# ---------------------------------------------------------------------------------------------
def check_null_space_projection(fn: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(op, x0, y) -> x0_hat = A^+ y + (I - A^+ A) x0`` (Eq. (5)) on four tasks."""
    from .operators import make_operator, null_space_project

    name = "null-space projection, Eq. (5)"
    tasks = ("sr4", "inpaint-box", "colorize", "deblur-gauss")
    for i, task in enumerate(tasks):
        g = _gen(i)
        op = make_operator(task, (3, 16, 16))
        x, x0 = (torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(2))
        y = op.A(x)
        ok, got = _call(name, fn, op, x0, y)
        if not ok:
            return False
        want = null_space_project(op, x0, y)
        hints = [
            (isinstance(got, torch.Tensor) and _close(got, x0 - op.A_pinv(op.A(x0))),
             "the range part A^+ y is missing: add op.A_pinv(y)."),
            (isinstance(got, torch.Tensor) and _close(got, op.A_pinv(y) + op.A_pinv(op.A(x0))),
             "you kept the range part of x0 (A^+ A x0); the null-space part is x0 - A^+ A x0."),
            (isinstance(got, torch.Tensor) and got.shape == x0.shape and not _close(op.A(got), y),
             "A(x0_hat) should equal y exactly; check the sign of A^+ A x0."),
            (True, "Eq. (5) reads A^+ y + (I - A^+ A) x0: write each term with op.A and op.A_pinv."),
        ]
        if not _compare(name, got, want, f"task {task}", hints):
            return False
    return _passed(name, f"tasks {', '.join(tasks)}; A(x0_hat) = y holds")


# ---------------------------------------------------------------------------------------------
# Chapter 2: the DDIM update (eta form) and the DDPM posterior, Eqs. (2)-(3)
# ---------------------------------------------------------------------------------------------
class _ConstantEps:
    """A stand-in model that returns a fixed noise prediction (so the step sees a known eps)."""

    def __init__(self, eps: torch.Tensor) -> None:
        self.eps, self.image_shape = eps, tuple(eps.shape[1:])

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps


def check_ddim_step(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(x_t, eps, abar_t, abar_prev, eta, noise) -> x_prev``, one DDIM step in the eta form::

        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) (sqrt(1 - eta^2) eps + eta noise),
        x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),

    against ``samplers.chain_step`` (no operator) for T = 20 steps and eta in {0, 0.15, 0.8}.
    """
    from .samplers import chain_step
    from .schedules import chain_coefficients

    name = "DDIM step (eta form)"
    for i, eta in enumerate((0.0, 0.15, 0.8)):
        coeffs = chain_coefficients(20, eta)
        g = _gen(10 + i)
        for k in (20, 11, 2, 1):
            x_t, eps, noise = (torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
            a_t, a_prev = float(coeffs.abar[k]), float(coeffs.abar[k - 1])
            ok, got = _call(name, fn, x_t, eps, a_t, a_prev, eta, noise)
            if not ok:
                return False
            want = chain_step(_ConstantEps(eps), None, None, x_t, k, coeffs, noise)[0]
            x0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
            sigma_ddim = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
            paper_form = a_prev**0.5 * x0 + (1 - a_prev - sigma_ddim**2) ** 0.5 * eps + sigma_ddim * noise
            is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
            hints = [
                (is_tensor and eta > 0 and _close(got, paper_form),
                 "that is the DDIM paper's sigma(eta); this book (like DDNM and DeqIR) uses "
                 "sigma = eta * sqrt(1 - abar_prev)."),
                (is_tensor and eta == 0, "with eta = 0 the step is deterministic: check x0 = (x_t - sqrt(1 - "
                 "abar_t) eps) / sqrt(abar_t) and the weight sqrt(1 - abar_prev) of eps."),
                (is_tensor, "the noise weights must satisfy c1^2 + c2^2 = 1 - abar_prev: c1 = eta sqrt(1 - "
                 "abar_prev) for the fresh noise, c2 = sqrt(1 - eta^2) sqrt(1 - abar_prev) for eps."),
            ]
            if not _compare(name, got, want, f"eta={eta}, step k={k}", hints):
                return False
    return _passed(name, "matches the package's chain_step for eta = 0, 0.15, 0.8 and 4 steps each")


def check_ddpm_posterior(fn: Callable[..., tuple[torch.Tensor, Any]]) -> bool:
    """Check ``fn(x_t, x0, abar_t, abar_prev) -> (mean, std)`` of q(x_prev | x_t, x0), Eq. (3).

    For a sub-sequence of times the step's beta is ``1 - abar_t / abar_prev``.  The reference is the
    package's eta-form step with the true noise and ``eta_t = sqrt(beta / (1 - abar_t))`` (DDPM is
    the member of the DDIM family with this eta), so the check also confirms that identity.
    """
    from .samplers import chain_step
    from .schedules import chain_coefficients

    name = "DDPM posterior, Eq. (3)"
    base = chain_coefficients(20, 0.0)
    g = _gen(20)
    for k in (20, 12, 5, 2):
        a_t, a_prev = float(base.abar[k]), float(base.abar[k - 1])
        beta = 1 - a_t / a_prev
        eta_t = (beta / (1 - a_t)) ** 0.5
        coeffs = chain_coefficients(20, eta_t)
        x0, noise = (torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
        x_t = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * noise
        true_eps = (x_t - a_t**0.5 * x0) / (1 - a_t) ** 0.5
        want_mean = chain_step(_ConstantEps(true_eps), None, None, x_t, k, coeffs, torch.zeros_like(x_t))[0]
        want_std = float(coeffs.c1[k])
        ok, got = _call(name, fn, x_t, x0, a_t, a_prev)
        if not ok:
            return False
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            print(f"[x] {name}: return the pair (mean, std)")
            return False
        mean, std = got
        swapped = isinstance(mean, torch.Tensor) and mean.shape == x_t.shape and _close(
            mean, a_prev**0.5 * beta / (1 - a_t) * x_t + (a_t / a_prev) ** 0.5 * (1 - a_prev) / (1 - a_t) * x0)
        hints = [(swapped, "the two weights are swapped: sqrt(abar_prev) beta / (1 - abar_t) multiplies x0, "
                  "sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) multiplies x_t (alpha_t = abar_t / abar_prev)."),
                 (True, "mean = sqrt(abar_prev) beta / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_prev) / "
                  "(1 - abar_t) x_t with beta = 1 - alpha_t.")]
        if not _compare(name, mean, want_mean, f"mean at step k={k}", hints):
            return False
        std_value = float(std.flatten()[0]) if isinstance(std, torch.Tensor) else float(std)
        if abs(std_value - want_std) > 1e-10 * max(1.0, want_std):
            print(f"[x] {name} (std at step k={k}): got {std_value:.6g}, expected {want_std:.6g}.")
            print("    hint: the variance is (1 - abar_prev) / (1 - abar_t) * beta; return its square root.")
            return False
    return _passed(name, "mean and std equal the eta-form step with eta_t = sqrt(beta_t / (1 - abar_t))")


# ---------------------------------------------------------------------------------------------
# Chapter 3: one DDNM step, Eqs. (4)-(5) in the eta form
# ---------------------------------------------------------------------------------------------
def check_ddnm_step(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(x_t, eps, abar_t, abar_prev, eta, noise, op, y) -> x_prev``: the DDIM step of
    ``check_ddim_step`` with ``x_{0|t}`` replaced by ``A^+ y + (I - A^+ A) x_{0|t}`` (Eq. (5)),
    against ``samplers.chain_step`` with the operator, for three tasks."""
    from .operators import make_operator
    from .samplers import chain_step
    from .schedules import chain_coefficients

    name = "DDNM step, Eqs. (4)-(5)"
    for i, task in enumerate(("sr2", "inpaint-box", "colorize")):
        op = make_operator(task, (3, 8, 8))
        coeffs = chain_coefficients(20, 0.15)
        g = _gen(30 + i)
        for k in (20, 7, 1):
            x_t, eps, noise, x = (torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(4))
            y = op.A(x)
            a_t, a_prev = float(coeffs.abar[k]), float(coeffs.abar[k - 1])
            ok, got = _call(name, fn, x_t, eps, a_t, a_prev, 0.15, noise, op, y)
            if not ok:
                return False
            model = _ConstantEps(eps)
            want = chain_step(model, op, op.A_pinv(y), x_t, k, coeffs, noise)[0]
            plain = chain_step(model, None, None, x_t, k, coeffs, noise)[0]
            is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
            hints = [
                (is_tensor and _close(got, plain), "this is the plain DDIM step: project x_{0|t} with Eq. (5) first."),
                (is_tensor and k == 1 and not _close(op.A(got), y),
                 "the last step (abar_prev = 1) must return x0_hat exactly, so A(x_0) = y."),
                (True, "x0_hat = A^+ y + x0 - A^+ A x0 replaces x0 only in the first term; the eps and noise "
                 "terms are those of DDIM."),
            ]
            if not _compare(name, got, want, f"task {task}, step k={k}", hints):
                return False
    return _passed(name, "matches the package's chain_step on sr2, inpaint-box and colorize")


# ---------------------------------------------------------------------------------------------
# Chapter 4: the cumulative-sum form of F, Proposition 1 / Eq. (9)
# ---------------------------------------------------------------------------------------------
def _small_chain(task: str = "sr2", steps: int = 6, seed: int = 0) -> tuple[Any, torch.Tensor]:
    """A FixedPointMap on a random 2-component prior (3 x 8 x 8 images) and a random state stack."""
    from .fixed_point import FixedPointMap
    from .operators import make_operator
    from .prior import GaussianMixturePrior
    from .samplers import draw_noises
    from .schedules import chain_coefficients

    g = _gen(seed)
    prior = GaussianMixturePrior(torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) * 0.5, 0.3)
    op = make_operator(task, (3, 8, 8))
    y = op.A(torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64))
    x_T, noises = draw_noises((2, 3, 8, 8), steps, g)
    f = FixedPointMap(prior, op, y, x_T, noises, chain_coefficients(steps, 0.15))
    return f, torch.randn(steps, 2, 3, 8, 8, generator=g, dtype=torch.float64)


def check_F(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(z, x_T, abar, Q) -> (T, B, C, H, W)``, the right-hand side of Eq. (9) for j = 0..T-1::

        x_j = sqrt(abar_j / abar_T) Q x_T + z_{j+1} + sum_{s=j+1}^{T-1} sqrt(abar_j / abar_s) Q z_{s+1}

    with ``z[k-1] = z_k`` of shape ``(T, B, C, H, W)``, ``abar`` of shape ``(T+1,)`` (``abar[0] = 1``)
    and ``Q`` the null-space projector (it accepts stacks).  Reference: ``FixedPointMap.__call__``.
    """
    name = "F in cumulative-sum form, Eq. (9)"
    for i, task in enumerate(("sr2", "inpaint-box")):
        f, states = _small_chain(task, steps=6, seed=40 + i)
        z = f.z(f.eps(states))
        abar = f.coeffs.abar.clone()
        ok, got = _call(name, fn, z, f.x_T, abar, f.Q)
        if not ok:
            return False
        want = f(states)
        T, sq = f.steps, abar.sqrt().view(-1, 1, 1, 1, 1)
        double = want + f.Q(z)  # the s = j term counted as well
        no_q = want + sq[:T] / sq[T] * (f.x_T - f.Q(f.x_T))[None]
        is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
        hints = [
            (is_tensor and _close(got, double), "the sum starts at s = j + 1: z_{j+1} enters once, without Q "
             "(the paper's form starts at s = j and splits z_{j+1} into A^+A z_{j+1} + Q z_{j+1})."),
            (is_tensor and _close(got, no_q), "x_T enters through Q x_T (the range part of x_T is replaced)."),
            (is_tensor, "weights: sqrt(abar_j / abar_s) for z_{s+1} and sqrt(abar_j / abar_T) for x_T; "
             "a reversed cumulative sum (flip, cumsum, flip) gives all j at once."),
        ]
        if not _compare(name, got, want, f"task {task}, T = 6", hints):
            return False
    return _passed(name, "equals FixedPointMap.__call__ for sr2 and inpaint-box, T = 6")


# ---------------------------------------------------------------------------------------------
# Chapter 5: the Anderson weights of Algorithm 1 (bordered least-squares system)
# ---------------------------------------------------------------------------------------------
def check_anderson_weights(fn: Callable[[torch.Tensor, float], torch.Tensor], lam: float = 1e-3) -> bool:
    """Check ``fn(G, lam) -> alpha``: ``G`` of shape ``(B, n, N)`` holds the last n residuals (rows) of
    each image, ``alpha`` of shape ``(B, n)`` minimises ``||G^T alpha||^2 + lam ||alpha||^2`` subject to
    ``sum(alpha) = 1``.  Then an Anderson solve that uses ``fn`` (m = 5, beta = 1, first step plain, as
    ``solvers.anderson``) must reproduce the package's ``anderson`` on a small DeqIR map."""
    from .solvers import anderson

    name = "Anderson weights, Algorithm 1"
    g = _gen(50)
    G = torch.randn(3, 4, 40, generator=g, dtype=torch.float64)
    ok, alpha = _call(name, fn, G, lam)
    if not ok:
        return False
    if not (isinstance(alpha, torch.Tensor) and alpha.reshape(-1).shape[0] == 12):
        print(f"[x] {name}: expected a tensor of shape (B, n) = (3, 4), got {getattr(alpha, 'shape', type(alpha))}")
        return False
    alpha = alpha.reshape(3, 4).to(torch.float64)
    sums = alpha.sum(1)
    if float((sums - 1).abs().max()) > 1e-10:
        print(f"[x] {name}: the weights must sum to 1, got sums {sums.tolist()}")
        print("    hint: the constraint 1^T alpha = 1 is the first row of the bordered system.")
        return False
    grad = (G @ G.transpose(1, 2) + lam * torch.eye(4, dtype=torch.float64)) @ alpha[..., None]  # = nu 1
    if float((grad - grad.mean(1, keepdim=True)).abs().max()) > 1e-8 * float(grad.abs().max()):
        print(f"[x] {name}: not the minimiser: (G G^T + lam I) alpha must be a multiple of the ones vector.")
        print("    hint: solve [[0, 1^T], [1, G G^T + lam I]] [nu; alpha] = [1; 0] with torch.linalg.solve.")
        return False
    f, _ = _small_chain("inpaint-box", steps=6, seed=51)
    init = f.x_T.expand(6, *f.x_T.shape).clone()
    want, _ = anderson(f, init, max_iter=6, tol=0.0, lam=lam)
    T, B = init.shape[:2]
    X, Fx, x, fx = [], [], init, init
    for k in range(6):  # the loop of solvers.anderson with the student's weights
        fx = f(x)
        X, Fx = (X + [x.transpose(0, 1).reshape(B, -1)])[-5:], (Fx + [fx.transpose(0, 1).reshape(B, -1)])[-5:]
        if k == 0:
            x = fx
            continue
        Fs = torch.stack(Fx, 1)
        a = fn(torch.stack(Fx, 1) - torch.stack(X, 1), lam).reshape(B, 1, -1).to(Fs)
        x = (a @ Fs)[:, 0].reshape(B, T, *init.shape[2:]).transpose(0, 1)
    if not _compare(name, fx, want, "full solve on a DeqIR map, T = 6", [(True, "check the shape (B, n)")]):
        return False
    return _passed(name, f"optimal for lam = {lam:g}, and reproduces solvers.anderson on a DeqIR map")


# ---------------------------------------------------------------------------------------------
# Chapter 7: the damped phantom gradient of DEQ inversion, Eq. (13) with M ~ I
# ---------------------------------------------------------------------------------------------
def check_phantom_gradient(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(make_map, star, x_T, loss, tau, k) -> dL/dx_T`` of shape ``(B, C, H, W)``: starting at the
    detached fixed point ``star`` (``(T, B, C, H, W)``), take ``k`` damped steps ``x <- (1 - tau) x + tau F(x)``
    with ``F = make_map(x_T)`` differentiable in ``x_T``, then differentiate ``loss(x_0).sum()`` w.r.t. ``x_T``.
    Reference: ``inversion.phantom_gradient`` with the loss of ``x_0``."""
    from .inversion import phantom_gradient
    from .fixed_point import FixedPointMap
    from .solvers import picard

    name = "phantom gradient, Algorithm 2"
    f, _ = _small_chain("inpaint-box", steps=6, seed=60)
    model, op, y, noises, coeffs = f.model, f.op, f.y, f.step_noise.flip(0), f.coeffs
    target = torch.randn(f.x_T.shape, generator=_gen(61), dtype=torch.float64)
    loss = lambda x0: (x0 - target).flatten(1).pow(2).sum(1)  # noqa: E731  (B,)
    star, _ = picard(f, f.x_T.expand(6, *f.x_T.shape).clone(), max_iter=6, tol=0.0)
    make_map = lambda x_T: FixedPointMap(model, op, y, x_T, noises, coeffs)  # noqa: E731
    for tau, k in ((0.1, 1), (0.5, 3), (1.0, 6)):
        ok, got = _call(name, fn, make_map, star.clone(), f.x_T.clone(), loss, tau, k)
        if not ok:
            return False
        want = phantom_gradient(model, op, y, f.x_T, noises, steps=6, eta=coeffs.eta, loss=lambda c: loss(c.x0),
                                phantom_steps=k, tau=tau, states=star).grad
        is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
        hints = [(is_tensor and _close(got, want / tau), "the damping tau multiplies the step: "
                  "x <- (1 - tau) x + tau F(x), so one step gives tau times the undamped gradient."),
                 (is_tensor and float(got.abs().max()) == 0.0, "the gradient is zero: build the map with "
                  "x_T.requires_grad_(True) and compute the steps with gradients enabled."),
                 (True, "start from star (detached), not from x_T; differentiate loss(x[0]).sum().")]
        if not _compare(name, got, want, f"tau={tau}, k={k}", hints):
            return False
    return _passed(name, "matches inversion.phantom_gradient for (tau, k) = (0.1, 1), (0.5, 3), (1, 6)")
