"""One method runner for every experiment: ``pinv``, ``ddnm`` or ``deqir`` with any registered solver,
used by the evaluation grid, the demo and ``restore``.

Notation (method name -> meaning, paper symbol)

    pinv            A^+ y, the "Baseline" rows of Tables 1-3
    ddnm[-tN]       sequential DDNM (Eqs. (4)-(5)), T = N steps (default: ``steps``)
    deqir           DeqIR with the default solver ``auto`` (stops by itself; at most T passes)
    deqir-kK        DeqIR, Anderson acceleration (Algorithm 1), at most K passes, same T
    deqir-picard    DeqIR, Picard iteration, exactly K = T passes: equals DDNM (Proposition 1)
    deqir-SOLVER-kK DeqIR with any registered solver (``solvers.solver_names()``), at most K passes
                    (``deqir-SOLVER`` without K: the registry's ``SolverSpec.default_passes``, T for all but anderson)
    samples = k     the mean of k runs: an estimate of the posterior mean E[x | y]

Clipping (``clip=True``) wraps the model in ``models.ClippedModel`` here, once, for every method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..core.checks import is_integer
from ..models.wrappers import ClippedModel
from ..sampling import ddnm_sample, deqir_sample
from ..solvers.registry import solver_names, solver_spec

__all__ = ["Method", "parse_method", "sampler_method", "RunResult", "run_method", "restore", "bicubic_upsample"]

_METHOD = re.compile(r"^(pinv|ddnm|deqir)(?:-t(\d+))?(?:-([a-z][a-z-]*?))?(?:-k(\d+))?$")


@dataclass(frozen=True)
class Method:
    """One method: ``kind`` in {pinv, ddnm, deqir}, T (``steps``), K (``iters``) and the solver."""

    name: str
    kind: str
    steps: int
    iters: int | None = None
    solver: str | None = None
    tol: float | None = None  # None: the caller's tolerance; deqir-picard runs its T passes (tol 0)


def parse_method(name: str, steps: int = 20) -> Method:
    """``pinv``, ``ddnm``, ``ddnm-t100``, ``deqir-k15``, ``deqir-t35-k15``, ``deqir-picard``,
    ``deqir-taa-k8`` -> ``Method`` (module docstring)."""
    m = _METHOD.match(str(name))
    bad = m is None or (m.group(1) != "deqir" and (m.group(3) or m.group(4))) or (m.group(1) == "pinv" and m.group(2))
    if not bad and m.group(3) and m.group(3) not in solver_names():
        bad = True
    if bad:
        raise ValueError(
            f"unknown method {name!r}; use pinv, ddnm, ddnm-tT, deqir-kK, deqir-tT-kK, deqir-picard "
            f"or deqir-SOLVER-kK with SOLVER one of {', '.join(solver_names())}"
        )
    kind, t = m.group(1), int(m.group(2) or steps)
    if t < 1:
        raise ValueError(f"method {name!r}: T must be >= 1")
    if kind == "pinv":
        return Method(name, kind, 0)
    if kind == "ddnm":
        return Method(name, kind, t)
    solver = m.group(3) or ("anderson" if m.group(4) else "auto")  # deqir-kK: the paper's Algorithm 1
    spec = solver_spec(solver)
    if m.group(4):
        return Method(name, kind, t, int(m.group(4)), solver)
    return Method(name, kind, t, spec.default_passes(t), solver, tol=spec.runner_tol)  # deqir-picard: tol 0, T passes


@dataclass
class RunResult:
    """``x`` ``(B, C, H, W)``, network ``evaluations`` and sequential ``passes`` (per run), ``converged``."""

    x: torch.Tensor
    evaluations: int
    passes: int
    converged: bool


def run_method(
    model: Any,
    op: Any,
    y: torch.Tensor,
    method: Method | str,
    eta: float = 0.15,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    clip: bool = False,
    tol: float | None = None,
    samples: int = 1,
    callback: Any = None,
) -> RunResult:
    """Restore ``y`` ``(B, ...)`` with one method (a ``Method`` or its name).

    ``noises`` (the pair of ``draw_noises``) or ``generator``, not both; ``tol`` is the solver's tolerance (None:
    the solver's own default).  ``samples = k > 1`` returns the mean of k independent runs (one batch of k B
    images; needs ``generator``, not ``noises``).  ``callback``: the parallel solver's per-pass callback.
    """
    method = parse_method(method) if isinstance(method, str) else method
    if not is_integer(samples) or samples < 1:
        raise ValueError(f"samples must be a positive integer (runs to average), got {samples!r}")
    if method.kind == "pinv":
        return RunResult(op.A_pinv(y), 0, 0, True)
    if samples > 1:  # the k runs as one batch (k * B, ...), then the mean over k
        if noises is not None:
            raise ValueError("samples > 1 draws its own noises: pass a generator, not noises")
        runs = run_method(
            model,
            op,
            y.repeat(samples, *([1] * (y.dim() - 1))),
            method,
            eta,
            None,
            generator,
            clip,
            tol,
            callback=callback,
        )
        mean = runs.x.reshape(samples, y.shape[0], *runs.x.shape[1:]).mean(0)
        return RunResult(mean, runs.evaluations, runs.passes, runs.converged)
    model = ClippedModel(model) if clip else model
    if method.kind == "ddnm":
        x = ddnm_sample(model, op, y, steps=method.steps, eta=eta, noises=noises, generator=generator)
        return RunResult(x, method.steps, method.steps, True)
    tol = tol if method.tol is None else method.tol  # deqir-picard fixes its own (0: all T passes)
    res = deqir_sample(
        model,
        op,
        y,
        steps=method.steps,
        eta=eta,
        noises=noises,
        generator=generator,
        solver=method.solver,
        max_iter=method.iters,
        callback=callback,
        solver_options={} if tol is None else {"tol": tol},  # None: the solver's own default
    )
    return RunResult(res.x0, res.evaluations, res.passes, bool(res.converged))  # exact after T: converged


def restore(
    model: Any,
    op: Any,
    y: torch.Tensor,
    sampler: str = "deqir",
    steps: int = 20,
    eta: float = 0.15,
    iters: int | None = None,
    generator: torch.Generator | None = None,
    clip: bool = False,
    solver: str = "auto",
    samples: int = 1,
) -> torch.Tensor:
    """Restore ``y`` ``(B, C_y, H_y, W_y)`` with ``sampler`` in ``{"deqir", "ddnm", "pinv"}``; returns ``(B, C, H, W)``.

    One run of a diffusion sampler is one draw from (an approximation of) the posterior p(x | y).
    ``samples = k > 1`` returns the mean of k independent runs, an estimate of the posterior mean
    E[x | y], which is the estimate with the least expected squared error, so the highest PSNR. For an
    exact sampler the expected squared error of one draw is twice that of E[x | y] (-3 dB), and the
    mean of k draws has (1 + 1/k) times it.  Each run satisfies A x = y, and so does their mean (A is linear).
    The mean is blurrier than a single draw: use it when PSNR matters, one draw when detail does.
    """
    method = sampler_method(sampler, steps, iters, solver)
    return run_method(model, op, y, method, eta, None, generator, clip, samples=samples).x


def sampler_method(sampler: str = "deqir", steps: int = 20, iters: int | None = None, solver: str = "auto") -> Method:
    """The ``Method`` of a sampler name (``"deqir"``, ``"ddnm"``, ``"pinv"``), checked before any work;
    ``iters=None``: the registry's ``SolverSpec.default_passes``."""
    if sampler not in ("deqir", "ddnm", "pinv"):
        raise ValueError(f"unknown sampler {sampler!r}; use 'deqir', 'ddnm' or 'pinv'")
    if sampler != "pinv" and (not is_integer(steps) or steps < 1):
        raise ValueError(f"steps (T) must be a positive integer, got {steps!r}")
    if sampler == "deqir":
        spec = solver_spec(solver)  # an unknown name fails here, before any work
        iters = spec.default_passes(steps) if iters is None else iters
        if not is_integer(iters) or iters < 1:
            raise ValueError(f"iters (K, solver passes) must be a positive integer, got {iters!r}")
    return Method(
        sampler, sampler, steps, iters if sampler == "deqir" else None, solver if sampler == "deqir" else None
    )


def bicubic_upsample(y: torch.Tensor, scale: int) -> torch.Tensor:
    """The classical SR baseline: bicubic interpolation of ``y`` ``(B, C, h, w)`` to ``(B, C, scale h, scale w)``,
    clipped to ``[-1, 1]``. Unlike ``A^+ y`` it is smooth, and not consistent with ``y``."""
    return F.interpolate(y, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)
