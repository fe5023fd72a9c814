"""Seed sweeps and their reports.

Sweeps (``mtrl-align sweep``): :mod:`~mtrl_align.sweep.plan` (which runs),
:mod:`~mtrl_align.sweep.state` (skip / resume / start), :mod:`~mtrl_align.sweep.launch` (one run
as a training process), the backends :mod:`~mtrl_align.sweep.local_backend`,
:mod:`~mtrl_align.sweep.submitit_backend` (SLURM) and :mod:`~mtrl_align.sweep.ray_backend`, and
:mod:`~mtrl_align.sweep.runner` (ties them together).

Reports (``mtrl-align report``): :mod:`~mtrl_align.sweep.runs` (read run directories),
:mod:`~mtrl_align.sweep.protocol` (one protocol per table), :mod:`~mtrl_align.sweep.grouping`
(rows), :mod:`~mtrl_align.sweep.results` (statistics over seeds), :mod:`~mtrl_align.sweep.tables`
(Markdown, CSV), :mod:`~mtrl_align.sweep.plots` (PNG) and :mod:`~mtrl_align.sweep.report`
(:func:`~mtrl_align.sweep.report.build_report`; imported on use, as it loads matplotlib).
"""

from mtrl_align.sweep.plan import RunSpec, parse_methods, parse_seeds, plan_sweep
from mtrl_align.sweep.runner import SweepSummary, run_sweep

__all__ = [
    "RunSpec",
    "SweepSummary",
    "parse_methods",
    "parse_seeds",
    "plan_sweep",
    "run_sweep",
]
