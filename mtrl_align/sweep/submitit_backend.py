"""SLURM backend through submitit: one array job, one task per run.

Each task runs :func:`mtrl_align.sweep.launch.execute_run`, so a task that SLURM preempts or
times out is requeued by submitit and resumes from the run's latest checkpoint. With
``cluster="local"`` submitit runs the same jobs as local processes (how the tests run it), and
``cluster="debug"`` runs them in this process.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mtrl_align.checkpointing import atomic_write_json
from mtrl_align.sweep.launch import (
    RunOutcome,
    execute_run,
    failed_start,
    package_root,
    pid_alive,
)
from mtrl_align.sweep.plan import RunSpec

try:
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # optional extra: pip install "mtrl-align[cluster]"
    submitit = None
    Checkpointable = object


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each run's SLURM task.

    Attributes:
        timeout_min: wall-clock limit per task in minutes; a task that hits it is requeued
            and resumes from its checkpoint (at most ``max_requeues`` times).
        partition: SLURM partition (``None``: the cluster's default).
        gpus_per_run: GPUs per run.
        cpus_per_run: CPU cores per run (also the run's torch thread count).
        mem_gb: memory per run in GB.
        array_parallelism: most tasks of the array running at once.
        max_requeues: requeues after a timeout or preemption.
        extra: further ``slurm_*`` parameters for submitit, e.g. ``{"slurm_account": "x"}``.
    """

    timeout_min: int = 24 * 60
    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 4
    mem_gb: int = 16
    array_parallelism: int = 64
    max_requeues: int = 10
    extra: dict | None = None


JOBS_FILE = "jobs.json"
_ACTIVE_SLURM_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SUSPENDED",
}


def record_jobs(folder: str | Path, cluster: str, job_ids: dict[str, str]) -> None:
    """Remember which job runs which run (``folder/jobs.json``), for :func:`active_jobs`."""
    path = Path(folder) / JOBS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.is_file() else {}
    known.update({name: {"job_id": job_id, "cluster": cluster} for name, job_id in job_ids.items()})
    atomic_write_json(path, known, indent=1)


def active_jobs(folder: str | Path) -> dict[str, str]:
    """Run name -> job id of the runs whose submitted job is still pending or running.

    A sweep started again while its jobs still run must not submit those runs a second
    time (two trainings writing one run directory). SLURM jobs are asked through submitit
    (``sacct``); jobs of submitit's local executor are checked by process id.
    """
    path = Path(folder) / JOBS_FILE
    if not path.is_file() or submitit is None:
        return {}
    active = {}
    for name, info in json.loads(path.read_text()).items():
        job_id, cluster = str(info["job_id"]), info.get("cluster")
        if cluster == "slurm":
            state = submitit.SlurmJob(folder=Path(folder), job_id=job_id).state
            alive = state.split()[0] in _ACTIVE_SLURM_STATES if state else False
        elif cluster == "local":
            alive = pid_alive(int(job_id)) if job_id.isdigit() else False
        else:
            alive = False
        if alive:
            active[name] = job_id
    return active


class SweepTask(Checkpointable):
    """The callable a SLURM task runs; requeued on preemption/timeout, then resumes."""

    def __init__(self, retry_failed: bool = False, threads: int | None = None) -> None:
        self.retry_failed = retry_failed
        self.threads = threads

    def __call__(self, spec: RunSpec) -> RunOutcome:
        return execute_run(spec, retry_failed=self.retry_failed, threads=self.threads)

    def checkpoint(self, spec: RunSpec) -> Any:
        """Requeue the same run; on restart :func:`execute_run` sees the checkpoint and resumes.

        The training process is killed with its job, so the resumed run continues from its
        last ``checkpoints/latest.pt``.
        """
        return submitit.helpers.DelayedSubmission(SweepTask(self.retry_failed, self.threads), spec)


def make_executor(folder: str | Path, options: SlurmOptions, cluster: str | None = None) -> Any:
    """A submitit ``AutoExecutor`` set up with ``options``.

    ``cluster`` is ``None`` (detect SLURM), ``"slurm"``, ``"local"`` or ``"debug"``.
    """
    if submitit is None:
        raise ValueError(
            "the submitit backend needs the 'submitit' package: pip install 'mtrl-align[cluster]'"
        )
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    parameters: dict[str, Any] = {
        "name": "mtrl-align-sweep",
        "timeout_min": options.timeout_min,
        "cpus_per_task": options.cpus_per_run,
        "gpus_per_node": options.gpus_per_run,
        "mem_gb": options.mem_gb,
        "tasks_per_node": 1,
        "nodes": 1,
    }
    # Jobs must import this package, also when it is not installed (run from a checkout).
    setup = [f"export PYTHONPATH={shlex.quote(package_root())}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if executor.cluster in ("slurm", "local"):
        parameters[f"{executor.cluster}_setup"] = setup
    if executor.cluster == "slurm":
        parameters["slurm_array_parallelism"] = options.array_parallelism
        parameters["slurm_max_num_timeout"] = options.max_requeues
        if options.partition:
            parameters["slurm_partition"] = options.partition
        parameters.update(options.extra or {})
    executor.update_parameters(**parameters)
    return executor


def run_submitit(
    specs: Sequence[RunSpec],
    folder: str | Path,
    options: SlurmOptions | None = None,
    cluster: str | None = None,
    retry_failed: bool = False,
    wait: bool = True,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Submit ``specs`` as one job array and (by default) wait for all of them.

    Args:
        specs: runs to bring to the finished state.
        folder: submitit's folder for job scripts, pickles and SLURM logs.
        options: per-run resources.
        cluster: see :func:`make_executor`.
        retry_failed: rerun failed runs instead of listing them.
        wait: wait for the jobs; ``False`` returns right after submission with
            ``state="submitted"`` outcomes (run the sweep again later to see where they are).
        on_outcome: called with each outcome as its job ends.

    Returns:
        outcomes in the order of ``specs``; a job that crashed outside training (e.g. killed
        by SLURM for memory) comes back as a failed outcome naming the job.
    """
    if not specs:
        return []
    options = options or SlurmOptions()
    executor = make_executor(folder, options, cluster)
    task = SweepTask(retry_failed, threads=options.cpus_per_run)
    jobs = executor.map_array(task, list(specs))
    record_jobs(
        folder, executor.cluster, {s.name: j.job_id for s, j in zip(specs, jobs, strict=True)}
    )
    if not wait:
        return [
            RunOutcome(
                spec.name,
                str(spec.run_dir),
                "submit",
                "submitted",
                extra={"job_id": job.job_id},
            )
            for spec, job in zip(specs, jobs, strict=True)
        ]
    poll_s = 1.0 if executor.cluster in ("local", "debug") else 30.0
    index_of = {id(job): i for i, job in enumerate(jobs)}
    outcomes: dict[int, RunOutcome] = {}
    for job in submitit.helpers.as_completed(jobs, poll_frequency=poll_s):
        index = index_of[id(job)]
        spec = specs[index]
        try:
            outcome = job.result()
        except Exception as error:  # noqa: BLE001 - one lost job must not stop the sweep
            outcome = failed_start(
                spec, f"submitit job {job.job_id} failed: {str(error).strip()[-2000:]}"
            )
        outcome = replace(outcome, extra={**outcome.extra, "job_id": job.job_id})
        outcomes[index] = outcome
        if on_outcome is not None:
            on_outcome(outcome)
    return [outcomes[i] for i in range(len(specs))]
