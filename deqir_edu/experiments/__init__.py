"""Experiments: one method runner (pinv, DDNM, DeqIR with any solver) and what is built on it: the
evaluation grid, the ablations of the paper, results files, and the models and test images they use.

``runner`` <- ``evaluation``, ``ablations``; ``choice`` (``sampler="auto"``), ``results`` and ``testbeds`` stand alone.
"""

from .ablations import coefficient_sets, compare_coefficient_sets, high_frequency_energy, iterate_curve, sweep
from .choice import SamplerChoice, call_seconds, predict_sampler
from .evaluation import DEFAULT_METHODS, NA_SMALL, NA_WEIGHTS, TASKS_COLOUR, TASKS_GREY, default_tasks, evaluate
from .results import format_markdown, method_table, per_image_gap, read_results, write_results
from .runner import Method, RunResult, bicubic_upsample, parse_method, restore, run_method
from .testbeds import load_for_eval

__all__ = [
    "coefficient_sets",
    "compare_coefficient_sets",
    "high_frequency_energy",
    "iterate_curve",
    "sweep",
    "DEFAULT_METHODS",
    "NA_SMALL",
    "NA_WEIGHTS",
    "TASKS_COLOUR",
    "TASKS_GREY",
    "default_tasks",
    "evaluate",
    "format_markdown",
    "method_table",
    "per_image_gap",
    "read_results",
    "write_results",
    "Method",
    "RunResult",
    "bicubic_upsample",
    "parse_method",
    "restore",
    "run_method",
    "load_for_eval",
    "SamplerChoice",
    "call_seconds",
    "predict_sampler",
]
