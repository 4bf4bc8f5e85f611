"""Evaluation results on disk: ``results.json`` (``{"meta": ..., "rows": [...]}``) and ``results.md``.

``deqir-edu eval`` (``evaluation.py``) writes them; the book and ``results/README.md`` read them.
One row per (task, method); the columns are described in ``evaluation.py``:

    row["task"], row["method"]      which cell of the grid
    row["psnr"], row["ssim"], ...   means over the test images; per-image lists as ``psnr_per_image``
    meta["command"]                 the exact command that wrote the folder
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.files import write_json, write_text

__all__ = ["format_markdown", "write_results", "read_results", "method_table", "per_image_gap"]


def _cell(v: Any, fmt: str) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def format_markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None) -> str:
    """One Markdown table per task: method, T, K, PSNR, SSIM, LPIPS, ||Ax-y||, Cons, evaluations, passes, seconds."""
    meta = meta or {}
    lines = ["# deqir-edu eval results", ""]
    for key in ("command", "model", "images", "n", "eta", "seed", "device", "lpips", "date", "torch"):
        if key in meta:
            lines.append(f"- {key}: `{meta[key]}`")
    head = (
        "| method | T | K | PSNR [dB] | SSIM | LPIPS | ‖Ax−y‖₂ | Cons (8-bit, L1) | evaluations | passes | seconds |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for task in dict.fromkeys(r["task"] for r in rows):
        lines += ["", f"## {task}", "", head]
        for r in (r for r in rows if r["task"] == task):
            k = r["passes"] if r["solver"] else None
            star = "" if r["converged"] else "*"
            lines.append(
                f"| {r['method']} | {r['steps'] or '-'} | {_cell(k, 'd')}{star} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                f"{_cell(r['lpips'], '.3f')} | {r['consistency']:.2e} | {r['cons']:.2f} | {r['evaluations']} | "
                f"{r['passes']} | {r['seconds']:.2f} |"
            )
    lines += [
        "",
        "K = solver passes done (`*`: stopped at the limit K, residual above tol); passes = sequential",
        "network passes; evaluations = single-state network evaluations;",
        "Cons = ||A q(x) − y||₁ on [0, 1] with q the 8-bit image.",
    ]
    return "\n".join(lines) + "\n"


def write_results(
    rows: Sequence[dict[str, Any]], out: str | Path, meta: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``results.json`` (``{"meta": ..., "rows": ...}``) and ``results.md`` into folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "results.json", out / "results.md"

    def clean(v: Any) -> Any:  # standard JSON: no Infinity / NaN (a perfect PSNR is "inf")
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, list):
            return [clean(u) for u in v]
        return {k: clean(u) for k, u in v.items()} if isinstance(v, dict) else v

    write_json(js, {"meta": clean(dict(meta or {})), "rows": clean(list(rows))}, indent=1)  # atomic: temp + rename
    write_text(md, format_markdown(rows, meta))
    return js, md


def read_results(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(meta, rows)`` from a ``results.json`` (or the folder holding it)."""
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}; run `deqir-edu eval --out {path.parent}` first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it is not a deqir-edu results file") from None
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError(f"{path} is not a deqir-edu eval results file (no 'rows')")
    return data.get("meta", {}), data["rows"]


def method_table(rows: Sequence[dict[str, Any]], key: str = "psnr") -> dict[str, dict[str, Any]]:
    """``{task: {method: row[key]}}`` for quick lookups in the book."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        out.setdefault(r["task"], {})[r["method"]] = r[key]
    return out


def per_image_gap(rows: Sequence[dict[str, Any]], a: str = "ddnm", b: str = "deqir-picard") -> dict[str, float]:
    """``{task: max over images |PSNR_a - PSNR_b|}`` (dB) for every task with both methods: the check of
    Proposition 1 (Picard with K = T returns the DDNM chain) on an eval grid."""
    by = {(r["task"], r["method"]): r["psnr_per_image"] for r in rows}
    return {
        task: max(abs(u - v) for u, v in zip(by[(task, a)], by[(task, b)], strict=True))
        for task in dict.fromkeys(r["task"] for r in rows)
        if (task, a) in by and (task, b) in by
    }
