"""Plan a seed sweep: which runs exist (method x seed), where they live, how each is launched.

A sweep directory holds one run directory per (method, seed), ``<out>/<method>/seed_<seed>``,
so that running the same sweep again finds its earlier runs and can skip or resume them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep.

    Attributes:
        method: aggregation method (``aggregation.method``) of this run.
        seed: its seed.
        run_dir: its run directory (passed to training as ``run_dir``).
        config_path: the experiment YAML file shared by the sweep.
        overrides: ``key=value`` strings given to ``mtrl-align train`` after the config path,
            ending with this run's ``aggregation.method``, ``seed`` and ``run_dir``.
    """

    method: str
    seed: int
    run_dir: Path
    config_path: Path
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        """Short name used in progress lines and logs, e.g. ``cagrad/seed_3``."""
        return f"{self.method}/seed_{self.seed}"


def parse_seeds(spec: str) -> list[int]:
    """Parse a seed spec into a sorted list of distinct seeds.

    ``"0:10"`` is the half-open range 0..9, ``"0:10:2"`` has a step, ``"1,4,7"`` lists seeds,
    and parts can be combined: ``"0:5,10,20:22"``. A single number ``"7"`` is seed 7.
    """
    text = spec.strip()
    if not text:
        raise ValueError("empty --seeds; give e.g. 0:10 (seeds 0..9) or 1,4,7")
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        fields = part.split(":")
        try:
            numbers = [int(f) for f in fields]
        except ValueError:
            raise ValueError(
                f"bad seed spec '{part}' in --seeds '{spec}'; use START:STOP[:STEP] or a "
                "comma-separated list of non-negative integers"
            ) from None
        if len(numbers) == 1:
            chunk = numbers
        elif len(numbers) in (2, 3):
            start, stop = numbers[0], numbers[1]
            step = numbers[2] if len(numbers) == 3 else 1
            if step <= 0:
                raise ValueError(f"seed range '{part}' needs a positive step, got {step}")
            chunk = list(range(start, stop, step))
            if not chunk:
                raise ValueError(f"seed range '{part}' is empty (STOP is exclusive: 0:10 is 0..9)")
        else:
            raise ValueError(f"bad seed spec '{part}'; use START:STOP[:STEP]")
        if any(s < 0 for s in chunk):
            raise ValueError(f"seeds must be non-negative, got '{part}'")
        seeds.extend(chunk)
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise ValueError(f"seed(s) {duplicates} given more than once in --seeds '{spec}'")
    return sorted(seeds)


def parse_methods(spec: str | None) -> list[str] | None:
    """Parse ``"a,b,c"`` into method names; ``None`` keeps the config's own method."""
    if spec is None:
        return None
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    if not methods:
        raise ValueError("empty --methods; give e.g. uniform,pcgrad,aligned-mtl")
    for method in methods:
        if not _METHOD_NAME.match(method):
            raise ValueError(f"bad method name '{method}' in --methods")
    duplicates = sorted({m for m in methods if methods.count(m) > 1})
    if duplicates:
        raise ValueError(f"method(s) {duplicates} given more than once in --methods")
    return methods


def split_overrides(
    overrides: Sequence[str], methods: Sequence[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """Split sweep overrides into shared ones and per-method ones.

    ``key=value`` applies to every run; ``METHOD:key=value`` only to the runs of ``METHOD``
    (e.g. ``cagrad:aggregation.options.c=0.9``), since method options differ between methods.

    Returns:
        ``(shared, per_method)`` with ``per_method[method]`` the overrides of that method.
    """
    shared: list[str] = []
    per_method: dict[str, list[str]] = {m: [] for m in methods}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key=value or METHOD:key=value")
        key = item.split("=", 1)[0]
        if ":" in key:
            method, rest = item.split(":", 1)
            if method not in per_method:
                raise ValueError(
                    f"override '{item}' is for method '{method}', which is not in this sweep "
                    f"({', '.join(methods)})"
                )
            per_method[method].append(rest)
        else:
            for reserved in ("seed", "run_dir", "aggregation.method"):
                if key.strip() == reserved:
                    raise ValueError(
                        f"override '{item}' is set by the sweep itself; use --seeds, --methods "
                        "or --out instead"
                    )
            shared.append(item)
    return shared, per_method


def plan_sweep(
    config_path: str | Path,
    seeds: Sequence[int],
    methods: Sequence[str],
    out_dir: str | Path,
    overrides: Sequence[str] = (),
) -> list[RunSpec]:
    """All runs of a sweep, method-major then by seed.

    Args:
        config_path: experiment YAML file.
        seeds: seeds to run (see :func:`parse_seeds`).
        methods: aggregation methods to run.
        out_dir: sweep directory; run ``(m, s)`` lives in ``out_dir/m/seed_s``.
        overrides: ``key=value`` and ``METHOD:key=value`` strings (see :func:`split_overrides`).
    """
    config_path = Path(config_path).resolve()
    if not config_path.is_file():
        raise FileNotFoundError(f"config file '{config_path}' does not exist")
    if not seeds:
        raise ValueError("a sweep needs at least one seed")
    if not methods:
        raise ValueError("a sweep needs at least one method")
    shared, per_method = split_overrides(overrides, methods)
    if not any(item.split("=", 1)[0].strip() == "train.progress_bar" for item in shared):
        # A progress bar only clutters the run's log file.
        shared.insert(0, "train.progress_bar=false")
    out_dir = Path(out_dir).resolve()
    runs = []
    for method in methods:
        for seed in seeds:
            run_dir = out_dir / method / f"seed_{seed}"
            run_overrides = (
                *shared,
                *per_method[method],
                f"aggregation.method={method}",
                f"seed={seed}",
                f"run_dir={json.dumps(str(run_dir))}",
            )
            runs.append(RunSpec(method, int(seed), run_dir, config_path, run_overrides))
    return runs
