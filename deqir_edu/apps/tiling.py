"""Images of any size by tiles: each tile restored by ``experiments.restore``, blended, projected once more.

Notation (code name -> paper symbol)

    y          y            the observation A x (for SR: the small image; colorize: the grey image)
    x          x            the restored image, (B, C, H, W) in [-1, 1]
    op         A, A^+       the degradation of the task (``operators.make_operator``)
    tile       -            a window of the model's size (h, w) in image space
    stride     -            distance between tiles, h - overlap (a multiple of the SR scale)

Images larger than the model are cut into overlapping tiles of the model's size (paper Sec. 5.8,
"Arbitrary size"; as DDNM and SwinIR do).  Each tile is restored with its own operator (its part of
the mask for inpainting), the tiles are blended with a smooth window, and the blend is projected
once more with the full-size operator, ``A^+ y + (I - A^+ A) x_blend`` (Eq. (5)), so the result is
exactly consistent with ``y`` and the range part of every seam is the measured one.
Tile borders of blur operators see zero padding instead of the neighbouring pixels; the overlap
and the final projection hide most of that.

Memory is bounded by a budget (``models.budget``): half of it for the network, every call taking at
most ``per_call`` images (``models.ChunkedModel``), half for the states: tiles are restored in groups
small enough that the states of a group (tiles x samples x (T + 1), with the solver's history) fit.  ``plan_tiled``
counts the work before it starts (tiles, network evaluations, an estimated time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..core.checks import check_finite
from ..core.progress import progress
from ..experiments.choice import predict_sampler
from ..experiments.runner import run_method, sampler_method
from ..models.budget import default_budget, format_bytes, images_per_call, model_device, probe
from ..models.wrappers import ChunkedModel, sampling_defaults
from ..operators import TASKS, Inpainting, make_operator, null_space_project, observation_shape, sr_scale

__all__ = ["restore_tiled", "tile_starts", "plan_tiled", "choose_sampler", "TilePlan", "TileSampling"]

_STATE_COPIES = 16  # copies of the chain a solve holds: iterate, F, the Anderson history (2 m, m = 5), work


def tile_starts(size: int, tile: int, overlap: int, scale: int = 1) -> tuple[list[int], int]:
    """Origins of the tiles along one side of ``size`` pixels, and the overlap actually used.

    The overlap is rounded up to a multiple of the SR ``scale`` (at least ``scale``); the tiles step
    by ``tile - overlap`` and the last one is flush with the border.
    """
    overlap = max(scale, int(math.ceil(overlap / scale)) * scale)
    stride = tile - overlap
    if stride <= 0 or stride % scale:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile} and a multiple of {scale}")
    if size < tile:
        raise ValueError(f"image side {size} is smaller than the model's tile {tile}; upscale or pad the image")
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts, overlap


def _window(h: int, w: int, overlap: int, dtype: torch.dtype) -> torch.Tensor:
    """Blending weights ``(h, w)``: 1 inside, a linear ramp over ``overlap`` pixels at the borders."""

    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=dtype)
        edge = torch.minimum(i + 1, n - i).clamp(max=max(overlap, 1)) / max(overlap, 1)
        return edge

    return ramp(h)[:, None] * ramp(w)[None, :]


def _mask_of(op: Any) -> torch.Tensor | None:
    """The (H, W) inpainting mask inside ``op`` (plain or composed with colorization), if any."""
    for part in (op, getattr(op, "inner", None)):
        if isinstance(part, Inpainting):
            return part.mask
    return None


@dataclass(frozen=True)
class TilePlan:
    """The work of one ``restore_tiled`` call, counted before it starts."""

    tiles: int
    samples: int
    evaluations: int  # network evaluations of single images, an upper bound (K passes for deqir)
    per_call: int  # images per network call under the budget
    group: int  # tiles restored together
    budget: int  # bytes
    seconds: float  # estimated wall-clock time on this machine (from one measured call)
    seconds_per_image: float = 0.0  # of that measured call

    def for_sampler(self, sampler: str, steps: int, iters: int | None = None) -> TilePlan:
        """The same tiles, groups and budget for another sampler: only the evaluations and the time
        change, from the call already measured (no second probe)."""
        method = sampler_method(sampler, steps, iters)
        evaluations = self.tiles * self.samples * _evaluations_per_image(method)
        return replace(self, evaluations=evaluations, seconds=evaluations * self.seconds_per_image)

    def describe(self) -> str:
        """One line: tiles, evaluations, memory budget and estimated time."""
        return (
            f"{self.tiles} tile{'s' * (self.tiles != 1)} x {self.samples} sample{'s' * (self.samples != 1)}, "
            f"at most {self.evaluations:,} network evaluations, {self.per_call} images per call "
            f"(memory budget {format_bytes(self.budget)}), estimated {format_seconds(self.seconds)}"
        )


def _evaluations_per_image(method: Any) -> int:
    """Network evaluations per image and sample: T for DDNM, T per pass (at most K passes) for DeqIR."""
    return {"pinv": 0, "ddnm": method.steps, "deqir": method.steps * (method.iters or 1)}[method.kind]


def format_seconds(s: float) -> str:
    """``5400`` -> ``"1.5 h"``."""
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


def plan_tiled(
    model: Any,
    task: str,
    image_hw: tuple[int, int],
    sampler: str = "deqir",
    steps: int = 20,
    iters: int | None = None,
    samples: int = 1,
    overlap: int = 8,
    memory: int | None = None,
    like: torch.Tensor | None = None,
) -> TilePlan:
    """Count tiles and network evaluations of a restoration and estimate its time and memory.

    ``memory``: the budget in bytes (default ``models.budget.default_budget`` of the model's device).
    One measured call (``models.budget.probe``, on tensors ``like`` the observation) gives the bytes and
    seconds per image.  Tiles go in groups of at most 64 (and fewer when their states would not fit).
    """
    c, h, w = (int(v) for v in model.image_shape)
    s = sr_scale(task)
    rows, ov = tile_starts(int(image_hw[0]), h, overlap, s)
    cols, _ = tile_starts(int(image_hw[1]), w, ov, s)
    method = sampler_method(sampler, steps, iters)
    per_image = _evaluations_per_image(method)
    tiles = len(rows) * len(cols)
    measured = probe(model, like=like)
    budget = int(memory) if memory is not None else default_budget(model_device(model))
    per_call = images_per_call(measured.bytes_per_image, budget // 2)  # half for the network's activations
    state_bytes = samples * (method.steps + 1) * c * h * w * 4 * _STATE_COPIES
    group = max(1, min(tiles, 64, (budget // 2) // max(1, state_bytes)))  # half for the states of a tile group
    evaluations = tiles * samples * per_image
    return TilePlan(
        tiles,
        samples,
        evaluations,
        per_call,
        group,
        budget,
        evaluations * measured.seconds_per_image,
        measured.seconds_per_image,
    )


def choose_sampler(
    model: Any,
    sampler: str,
    steps: int,
    plan: TilePlan,
    like: torch.Tensor | None = None,
    several_devices: bool = False,
) -> tuple[str, str | None]:
    """Resolve ``sampler="auto"`` for a tiled restoration with ``plan`` (``experiments.predict_sampler`` on
    the plan's group and call size).  Returns the sampler and the prediction's one-line summary (None when
    nothing was predicted: an explicit sampler, or several devices, which always use the parallel sampler)."""
    if sampler != "auto":
        return sampler, None
    if several_devices:  # several devices share each pass: the parallel sampler is what they are for
        return "deqir", None
    choice = predict_sampler(model, steps, batch=plan.group * plan.samples, max_batch=plan.per_call, like=like)
    return choice.sampler, choice.describe()


def restore_tiled(
    model: Any,
    task: str,
    y: torch.Tensor,
    image_hw: tuple[int, int],
    overlap: int = 8,
    generator: torch.Generator | None = None,
    op_options: dict[str, Any] | None = None,
    memory: int | None = None,
    report: dict[str, Any] | None = None,
    plan: TilePlan | None = None,
    sampling: TileSampling | None = None,
) -> torch.Tensor:
    """Restore an observation ``y`` of an image of size ``image_hw`` larger than the model.

    Args:
        y: ``(1, C_y, H_y, W_y)`` observation of the full image (``observation_shape``).
        image_hw: ``(H, W)`` of the image to produce; multiples of the SR scale.
        overlap: pixels shared by neighbouring tiles (made a multiple of the SR scale).
        op_options: options of ``make_operator`` for the full image (e.g. ``mask=``).
        memory: memory budget in bytes (default: from the free memory, ``models.budget``).
        report: a dict that receives the ``plan`` (``TilePlan``), ``not_converged`` (tiles whose
            parallel solve stopped at K passes before its tolerance) and ``evaluations``.
        plan: the ``plan_tiled`` of this call when the caller has it already (its measured call is
            not repeated); ``memory`` is then ignored.
        sampling: the sampler and its settings (``TileSampling``; default ``TileSampling()``: DeqIR with the
            model's eta and clipping).
    Returns:
        ``(1, C, H, W)``: the blended tiles, projected with the full-size operator (Eq. (5)).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks are: {', '.join(TASKS)}")
    opts = _TileOptions.parse(model, TileSampling() if sampling is None else sampling)
    c, h, w = (int(v) for v in model.image_shape)
    H, W = (int(v) for v in image_hw)
    s = sr_scale(task)
    full_op = _full_operator(task, y, (c, H, W), s, op_options)
    plan, method = _final_plan(model, task, y, (H, W), overlap, memory, plan, opts)
    rows, overlap = tile_starts(H, h, overlap, s)
    cols, _ = tile_starts(W, w, overlap, s)
    mask = _mask_of(full_op)
    tiles = _TileRun(ChunkedModel(model, plan.per_call), method, opts, generator, (c, h, w), s)
    group = plan.group if mask is None else 1  # masked tiles: each has its own operator
    shared = (
        None
        if mask is not None
        else make_operator(task, (c, h, w), **{k: v for k, v in (op_options or {}).items() if k != "mask"})
    )
    blend = _blend(tiles, task, y, (H, W), [(i, j) for i in rows for j in cols], overlap, group, shared, mask)
    if report is not None:
        report.update(plan=plan, **tiles.stats)
    return null_space_project(full_op, blend, y)  # Eq. (5) on the full image


@dataclass(frozen=True)
class TileSampling:
    """How ``restore_tiled`` restores each tile, as ``experiments.restore``.

    Attributes:
        sampler: ``"deqir"``, ``"ddnm"``, ``"pinv"`` or ``"auto"`` (``experiments.predict_sampler`` picks the faster).
        steps, iters, solver: T, the pass budget K (None: the solver's default) and the parallel solver.
        eta, clip: None: the model's (``models.sampling_defaults``).
        samples: the mean of this many runs per tile.
    """

    sampler: str = "deqir"
    steps: int = 20
    iters: int | None = None
    solver: str = "auto"
    eta: float | None = None
    clip: bool | None = None
    samples: int = 1


@dataclass(frozen=True)
class _TileOptions:
    """The sampling options of ``restore_tiled`` (its ``TileSampling``), with the model's defaults."""

    sampler: str
    steps: int
    iters: int | None
    solver: str
    eta: float
    clip: bool
    samples: int

    @classmethod
    def parse(cls, model: Any, sampling: TileSampling) -> _TileOptions:
        """``sampling`` with ``eta`` and ``clip`` from ``sampling_defaults(model)`` where not given."""
        if not isinstance(sampling, TileSampling):
            raise ValueError(f"sampling must be a TileSampling, e.g. TileSampling(sampler='ddnm'), got {sampling!r}")
        model_eta, model_clip = sampling_defaults(model)  # the model's config, unless given
        eta = model_eta if sampling.eta is None else sampling.eta
        clip = model_clip if sampling.clip is None else sampling.clip
        s = sampling
        return cls(s.sampler, s.steps, s.iters, s.solver, eta, clip, s.samples)


def _full_operator(
    task: str, y: torch.Tensor, shape: tuple[int, int, int], scale: int, op_options: dict[str, Any] | None
) -> Any:
    """The operator of the whole image of ``shape`` (C, H, W), after checking ``y`` against it."""
    c, H, W = shape
    if H % scale or W % scale:
        raise ValueError(
            f"image size {(H, W)} is not divisible by the SR scale {scale}; crop it to a multiple of {scale}"
        )
    if y.dim() != 4 or y.shape[0] != 1:
        raise ValueError(f"y must have shape (1, C, H, W) for tiled restoration, got {tuple(y.shape)}")
    check_finite(y, "y")
    full_op = make_operator(task, (c, H, W), **(op_options or {}))
    expected = observation_shape(task, (c, H, W))
    if tuple(y.shape[1:]) != expected:
        raise ValueError(f"y has shape {tuple(y.shape[1:])} but task {task!r} on a {(c, H, W)} image gives {expected}")
    return full_op


def _final_plan(
    model: Any,
    task: str,
    y: torch.Tensor,
    image_hw: tuple[int, int],
    overlap: int,
    memory: int | None,
    plan: TilePlan | None,
    opts: _TileOptions,
) -> tuple[TilePlan, Any]:
    """The plan (measured unless given) and the method; ``sampler="auto"`` is resolved here."""
    sampler, steps = opts.sampler, opts.steps
    if plan is None:
        first = "deqir" if sampler == "auto" else sampler  # auto: planned as the parallel sampler, then chosen
        plan = plan_tiled(
            model,
            task,
            image_hw,
            first,
            steps,
            sampler_method(first, steps, opts.iters, opts.solver).iters,
            opts.samples,
            overlap,
            memory,
            like=y,
        )
    auto = sampler == "auto"
    if auto:  # the faster of DDNM and DeqIR on this device, at equal quality (experiments.choice)
        sampler = choose_sampler(model, sampler, steps, plan, like=y)[0]
    method = sampler_method(sampler, steps, opts.iters, opts.solver)
    if auto:
        plan = plan.for_sampler(sampler, steps, method.iters)  # the plan's measured call, re-counted
    return plan, method


@dataclass
class _TileRun:
    """The tiles of one ``restore_tiled`` call under way: the chunked model, the method and the counts."""

    model: ChunkedModel
    method: Any
    opts: _TileOptions
    generator: torch.Generator | None
    tile: tuple[int, int, int]  # (C, h, w) of the model
    scale: int
    stats: dict[str, int] = field(default_factory=lambda: {"not_converged": 0, "evaluations": 0})

    def y_tile(self, y: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The part of the observation ``y`` under the tile at ``(i, j)``."""
        _, h, w = self.tile
        s = self.scale
        return y[..., i // s : (i + h) // s, j // s : (j + w) // s]

    def run(self, op: Any, ys: torch.Tensor) -> torch.Tensor:
        """Restore the tiles ``ys`` with ``op``; one bar of solver passes per group (it may stop before K)."""
        method, samples = self.method, self.opts.samples
        bar = (
            progress(range(method.iters or 0), desc="solver passes", total=method.iters)
            if method.kind == "deqir"
            else None
        )
        try:
            res = run_method(
                self.model,
                op,
                ys,
                method,
                self.opts.eta,
                generator=self.generator,
                clip=self.opts.clip,
                samples=samples,
                callback=None if bar is None else (lambda info: bar.update(1)),
            )
        finally:
            if bar is not None:
                bar.close()
        self.stats["not_converged"] += 0 if res.converged else ys.shape[0]
        self.stats["evaluations"] += res.evaluations * ys.shape[0] * samples
        return res.x


def _blend(
    tiles: _TileRun,
    task: str,
    y: torch.Tensor,
    image_hw: tuple[int, int],
    starts: list[tuple[int, int]],
    overlap: int,
    group: int,
    shared: Any,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Restore the tiles at ``starts``, ``group`` at a time, and blend them with a smooth window.

    ``shared``: the operator of every tile, or None when each tile has its part of ``mask``."""
    c, h, w = tiles.tile
    H, W = image_hw
    out = torch.zeros(1, c, H, W, dtype=y.dtype, device=y.device)
    weight = torch.zeros(1, 1, H, W, dtype=y.dtype, device=y.device)
    win = _window(h, w, overlap, y.dtype).to(y.device)
    batches = [starts[b : b + group] for b in range(0, len(starts), group)]
    for batch in progress(batches, desc=f"tiles ({group} at a time)" if group > 1 else "tiles", total=len(batches)):
        if shared is not None:
            xs = tiles.run(shared, torch.cat([tiles.y_tile(y, i, j) for i, j in batch]))
        else:
            ((i, j),) = batch
            xs = tiles.run(make_operator(task, (c, h, w), mask=mask[i : i + h, j : j + w]), tiles.y_tile(y, i, j))
        for (i, j), xt in zip(batch, xs, strict=True):
            out[..., i : i + h, j : j + w] += win * xt
            weight[..., i : i + h, j : j + w] += win
    return out / weight
