"""Group runs into table rows: one row per method configuration, one run per seed in a row.

Two runs share a row when their configs agree on everything except the seed and run-time
settings (run directory, device, threads, logging). Rows are labelled in one of two ways
(:data:`LABEL_MODES`):

- ``settings`` (default): the method; when several rows share a method (e.g. CAGrad with
  c = 0.4 and c = 0.9), the settings that tell them apart are added, e.g.
  ``cagrad (aggregation.options.c=0.9)``;
- ``folders``: the folder that holds the row's seed directories, relative to the report root,
  e.g. ``efficient/uniform`` for ``ROOT/efficient/uniform/seed_0``. Studies that put whole
  configurations side by side (dozens of differing keys) read better so; the settings that
  set a row apart are kept in :attr:`RunGroup.detail`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mtrl_align.sweep.runs import RunRecord, path_under

# Config keys that do not change what is trained (prefix match on dotted keys).
RUN_TIME_KEYS = (
    "seed",
    "run_dir",
    "runs_root",
    "device",
    "num_threads",
    "env.vector_strategy",
    "env.num_workers",
    "train.progress_bar",
    "train.compile",
    "train.log_every_updates",
    "train.checkpoint_every_env_steps",
    "eval.seed_offset",
)
LABEL_MODES = ("settings", "folders")


@dataclass(frozen=True)
class RunGroup:
    """Runs of one method configuration over seeds (one table row).

    Attributes:
        label: row label, e.g. ``aligned-mtl`` or ``cagrad (aggregation.options.c=0.9)``.
        method: the aggregation method.
        runs: one run per seed, sorted by seed.
        settings: the row's dotted config leaves, run-time keys left out (shown as in labels).
        detail: with folder labels, the settings in which the row differs from the other rows
            of its method (``key=value, ...``; empty when it is its method's only row); empty
            with settings labels, which show them.
    """

    label: str
    method: str
    runs: tuple[RunRecord, ...]
    settings: tuple[tuple[str, str], ...] = ()
    detail: str = ""

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]


def flatten_config(config: dict, prefix: str = "") -> dict[str, object]:
    """Dotted leaves of a nested config; lists become tuples so values are hashable."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, dotted + "."))
        else:
            flat[dotted] = _hashable(value)
    return flat


def _hashable(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _is_run_time(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RUN_TIME_KEYS)


def _defaults() -> dict[str, object]:
    """Dotted leaves of the default ``TrainConfig`` (empty if it cannot be built)."""
    try:
        from mtrl_align.config import TrainConfig
        from mtrl_align.config_io import to_dict

        return flatten_config(to_dict(TrainConfig()))
    except Exception:  # noqa: BLE001 - grouping still works, only without the fill-in
        return {}


def _identity(run: RunRecord, defaults: dict[str, object] | None = None) -> tuple:
    # Keys a saved config lacks (added to the config after the run) count as their defaults.
    flat = {**(defaults or {}), **flatten_config(run.config)}
    return tuple(sorted((k, v) for k, v in flat.items() if not _is_run_time(k)))


def group_runs(
    runs: Sequence[RunRecord], labels: str = "settings", root: str | Path | None = None
) -> list[RunGroup]:
    """Rows of a table, sorted by label.

    Args:
        runs: the runs.
        labels: ``settings`` or ``folders`` (module docstring).
        root: the folder that folder labels are relative to (required with ``folders``).

    Raises:
        ValueError: two runs of one row have the same seed (the message names both), an
            unknown ``labels``, or ``folders`` without ``root`` or with a run outside it.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"unknown row labels '{labels}'; choose from: {', '.join(LABEL_MODES)}")
    if labels == "folders" and root is None:
        raise ValueError("row labels 'folders' need the report root")
    by_identity: dict[tuple, list[RunRecord]] = {}
    defaults = _defaults()
    for run in runs:
        by_identity.setdefault(_identity(run, defaults), []).append(run)
    by_method: dict[str, list[tuple]] = {}
    for identity, members in by_identity.items():
        by_method.setdefault(members[0].method, []).append(identity)
    groups = []
    for method, identities in by_method.items():
        differing = _differing_keys([dict(i) for i in identities])
        for identity in identities:
            members = sorted(by_identity[identity], key=lambda r: r.seed)
            _check_distinct_seeds(members)
            shown = tuple((k, _show(v)) for k, v in identity)
            settings = dict(shown)
            extra = ", ".join(f"{k}={settings.get(k, 'None')}" for k in differing)
            label = f"{method} ({extra})" if extra else method
            detail = extra if labels == "folders" else ""
            groups.append(RunGroup(label, method, tuple(members), shown, detail))
    if labels == "folders":
        groups = _label_by_folder(groups, Path(root))  # type: ignore[arg-type]
    return sorted(groups, key=lambda g: g.label)


def _label_by_folder(groups: list[RunGroup], root: Path) -> list[RunGroup]:
    """``groups`` relabelled with the folders of their seed directories under ``root``; a row
    whose folder another row shares keeps its settings label after the folder."""
    folders = {
        group.label: " + ".join(sorted({_folder_of(run.run_dir, root) for run in group.runs}))
        for group in groups
    }
    counts = Counter(folders.values())
    relabelled = []
    for group in groups:
        folder = folders[group.label]
        label = folder if counts[folder] == 1 else f"{folder} [{group.label}]"
        relabelled.append(dataclasses.replace(group, label=label))
    return relabelled


def _folder_of(run_dir: Path, root: Path) -> str:
    try:
        relative = path_under(run_dir, root)
    except ValueError:
        raise ValueError(f"run '{run_dir}' is not under the report root '{root}'") from None
    parent = relative.parent
    return str(parent) if parent.parts else "."


def _differing_keys(settings: list[dict[str, object]]) -> list[str]:
    keys = sorted(set().union(*settings))
    return [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]


def _show(value: object) -> str:
    """A setting's value as row labels show it: ``0.9``, ``[400,400]``."""
    if isinstance(value, tuple):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def _check_distinct_seeds(members: list[RunRecord]) -> None:
    seen: dict[int, RunRecord] = {}
    for run in members:
        if run.seed in seen:
            raise ValueError(
                f"two runs of {run.method} with the same config and seed {run.seed}: "
                f"'{seen[run.seed].run_dir}' and '{run.run_dir}'; a row takes one run per seed, "
                "so move one of them out of RUNS_DIR"
            )
        seen[run.seed] = run
