"""Memory budget of network calls: how many images one call may take, from the machine's free memory.

Notation: none (no paper symbols).

    budget            bytes for a restoration: half for the activations of one network call, half for
                      the states the solver holds (``apps.tiling.plan_tiled`` splits it)
    bytes_per_image   activation memory of one image in one call (measured by ``probe``)
    per_call          images per call = (budget / 2) // bytes_per_image (``models.ChunkedModel`` enforces it)

The parallel sampler evaluates the T states of every image in one call (Proposition 1), and tiles x
samples multiply that: without a bound, a 192 x 192 restoration with 16 samples asks for thousands of
images in one call.  ``probe`` runs the network on eight images, sums the sizes of the outputs of every
leaf module, an upper bound on what a call holds per image (under ``no_grad`` most of them are freed
early), and times the call, so the length of a job can be estimated before it starts.

Default budget: a quarter of the free memory, at most 1 GiB on a CPU (larger calls are not faster
there), half of the free memory on a GPU.  ``parse_size("2GB")`` reads the ``--memory`` option.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Probe",
    "probe",
    "free_memory",
    "default_budget",
    "parse_size",
    "total_memory",
    "check_budget",
    "images_per_call",
    "format_bytes",
    "model_device",
]

_GIB = 1 << 30
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": _GIB,
    "gb": _GIB,
    "gib": _GIB,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}


@dataclass(frozen=True)
class Probe:
    """One measured network call: activation bytes and seconds per image (on the model's device)."""

    bytes_per_image: int
    seconds_per_image: float


def free_memory(device: torch.device | str = "cpu") -> int:
    """Free bytes on ``device``: ``torch.cuda.mem_get_info`` on a GPU, ``MemAvailable`` on Linux."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * _GIB  # unknown platform: assume a small laptop


def default_budget(device: torch.device | str = "cpu") -> int:
    """Bytes for the activations of one call: free / 4 (at most 1 GiB) on a CPU, free / 2 on a GPU."""
    free = free_memory(device)
    return max(64 << 20, free // 2 if torch.device(device).type == "cuda" else min(_GIB, free // 4))


def parse_size(text: str | int) -> int:
    """``"2GB"``, ``"512M"``, ``"1.5GiB"``, ``1000000`` -> bytes (binary units: 1 GB = 2**30 bytes).

    ``ValueError`` (one line) for anything else: no number, a negative size, less than 16 MB or more than 1 PB.
    """
    shown = repr(text) if len(str(text)) <= 40 else repr(f"{str(text)[:37]}...")
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*(-?)([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if m is None or m.group(3).lower() not in _UNITS:
            raise ValueError(f"memory size {shown} is not a size such as 2GB, 512MB or 1.5G")
        value, unit = float(m.group(1) + m.group(2)), m.group(3).lower()
    if value < 0:
        raise ValueError(f"memory size {shown} is negative; give a positive size such as 2GB")
    size = value * _UNITS[unit]
    if size < 16 << 20:
        raise ValueError(f"memory size {shown} is below 16 MB; give at least 16MB (e.g. 2GB)")
    if not size <= 1 << 50:  # inf too
        raise ValueError(f"memory size {shown} is more than 1 PB; give a size such as 2GB")
    return int(size)


def total_memory(device: torch.device | str = "cpu") -> int:
    """Bytes of memory of ``device``: the GPU's (``total_memory``), else the machine's (``MemTotal`` on Linux)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 50  # unknown platform: no bound


def check_budget(size: int, device: torch.device | str = "cpu", what: str = "memory budget") -> int:
    """``size`` if ``device`` has that much memory; else one ``ValueError`` that names ``what`` and the bound."""
    total = total_memory(device)
    if size > total:
        where = "this machine" if torch.device(device).type == "cpu" else f"device {device}"
        raise ValueError(
            f"{what} {format_bytes(size)} is more than the {format_bytes(total)} of memory of {where}; give at "
            f"most {max(1, total >> 30)}GB (a quarter of it is a safe budget) or leave it out for the default"
        )
    return size


def format_bytes(n: float) -> str:
    """``1536 MiB`` -> ``"1.5 GiB"``."""
    for unit, size in (("GiB", _GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _module_of(model: Any) -> torch.nn.Module | None:
    for cand in (model, getattr(model, "model", None), getattr(model, "net", None), getattr(model, "network", None)):
        if isinstance(cand, torch.nn.Module):
            return cand
        inner = getattr(cand, "model", None)
        if isinstance(inner, torch.nn.Module):
            return inner
    return None


def _device_dtype(model: Any) -> tuple[torch.device, torch.dtype]:
    module = _module_of(model)
    p = next(iter(module.parameters()), None) if module is not None else None
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


def model_device(model: Any) -> torch.device:
    """The device of the network inside ``model`` (a wrapper's inner module counts), else the CPU."""
    return _device_dtype(model)[0]


def probe(model: Any, n: int = 8, like: torch.Tensor | None = None) -> Probe:
    """Run ``model`` on ``n`` random images of ``model.image_shape`` (t = 500) and measure it.

    Memory: the sum of the output sizes of every leaf module, divided by ``n`` (an upper bound on a
    call's activations per image), plus input and output.  Time: wall-clock seconds per image of a second
    call (the first one warms the caches).  Models without modules (an exact prior) count 8 images' worth.
    ``like``: a tensor whose device and dtype the probe uses (default: the model's parameters').
    """
    c, h, w = (int(v) for v in model.image_shape)
    device, dtype = (like.device, like.dtype) if like is not None else _device_dtype(model)
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    t = torch.full((n,), 500, dtype=torch.long, device=device)
    total = [0]

    def hook(_module: torch.nn.Module, _inputs: Any, out: Any) -> None:
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):
                total[0] += o.numel() * o.element_size()

    module = _module_of(model)
    leaves = [m for m in module.modules() if not list(m.children())] if module is not None else []
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(x, t)
    finally:
        for hd in handles:
            hd.remove()
    seconds = math.inf
    with torch.no_grad():
        for _ in range(2):  # the faster of two calls: a busy machine makes single timings noisy
            start = time.perf_counter()
            model(x, t)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = min(seconds, (time.perf_counter() - start) / n)
    image = c * h * w * x.element_size()
    per_image = total[0] // n if leaves else 8 * image
    return Probe(bytes_per_image=int(per_image + 2 * image), seconds_per_image=float(seconds))


def images_per_call(bytes_per_image: int, budget: int) -> int:
    """How many images one call may take: ``budget // bytes_per_image``, at least 1."""
    return max(1, int(budget) // max(1, int(bytes_per_image)))
