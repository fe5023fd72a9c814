"""Local backend: a pool of workers sized to this machine, each run its own training process.

The pool is a ``concurrent.futures`` executor whose workers only wait on their run's
``mtrl-align train`` subprocess (threads suffice for waiting; every run is a separate OS
process). CPU runs share the cores evenly through ``OMP_NUM_THREADS``; GPU runs are pinned to
one GPU each through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from mtrl_align.sweep.launch import RunOutcome, execute_run, failed_start
from mtrl_align.sweep.plan import RunSpec


def available_cpus() -> int:
    """CPU cores this process may use (respects affinity masks and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pool_size(
    num_runs: int, workers: int | None = None, gpus: Sequence[str] = (), runs_per_gpu: int = 1
) -> tuple[int, int]:
    """Number of concurrent runs and CPU threads per run.

    Without GPUs: one run per core (at most one per run), the cores split evenly between them.
    With GPUs: ``runs_per_gpu`` runs per GPU. ``workers`` overrides the number of runs.

    Returns:
        ``(workers, threads_per_run)``.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if runs_per_gpu < 1:
        raise ValueError(f"--runs-per-gpu must be at least 1, got {runs_per_gpu}")
    cpus = available_cpus()
    if workers is None:
        workers = len(gpus) * runs_per_gpu if gpus else cpus
    workers = max(1, min(workers, num_runs))
    return workers, max(1, cpus // workers)


def run_local(
    specs: Sequence[RunSpec],
    workers: int | None = None,
    gpus: Sequence[str] = (),
    runs_per_gpu: int = 1,
    retry_failed: bool = False,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Run ``specs`` on this machine; one crashed run never stops the others.

    Args:
        specs: runs to bring to the finished state (finished ones are skipped).
        workers: concurrent runs (default: see :func:`pool_size`).
        gpus: GPU ids to spread runs over (empty: CPU only).
        runs_per_gpu: concurrent runs sharing one GPU.
        retry_failed: rerun failed runs instead of listing them.
        on_outcome: called with each outcome as soon as its run ends (progress lines).

    Returns:
        outcomes in the order of ``specs``.
    """
    if not specs:
        return []
    workers, threads = pool_size(len(specs), workers, gpus, runs_per_gpu)
    free_gpus: queue.Queue[str] = queue.Queue()
    for _ in range(runs_per_gpu):
        for gpu in gpus:
            free_gpus.put(str(gpu))

    def work(spec: RunSpec) -> RunOutcome:
        gpu = free_gpus.get() if gpus else None
        try:
            return execute_run(spec, retry_failed=retry_failed, threads=threads, gpu=gpu)
        finally:
            if gpu is not None:
                free_gpus.put(gpu)

    outcomes: dict[int, RunOutcome] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep-run") as pool:
        pending: dict[Future, int] = {pool.submit(work, spec): i for i, spec in enumerate(specs)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    outcome = _outcome_of(future, specs[index])
                    outcomes[index] = outcome
                    if on_outcome is not None:
                        on_outcome(outcome)
        except KeyboardInterrupt:
            for future in pending:
                future.cancel()
            raise
    return [outcomes[i] for i in range(len(specs))]


def _outcome_of(future: Future, spec: RunSpec) -> RunOutcome:
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - a launcher bug must not stop the sweep
        return failed_start(spec, f"launcher error: {error!r}")
