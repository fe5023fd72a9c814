"""Ray backend (optional extra ``mtrl-align[ray]``): one Ray task per run.

Ray places each task on a node with the requested CPUs/GPUs; the task runs
:func:`mtrl_align.sweep.launch.execute_run` there, exactly like the local backend. The run
directories must be on a file system all nodes share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mtrl_align.sweep.launch import RunOutcome, execute_run, failed_start, run_environment
from mtrl_align.sweep.plan import RunSpec


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(
            "the ray backend needs the 'ray' package: pip install 'mtrl-align[ray]'"
        ) from None
    return ray


def run_ray(
    specs: Sequence[RunSpec],
    address: str | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0.0,
    retry_failed: bool = False,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Run ``specs`` as Ray tasks and wait for all of them.

    Args:
        specs: runs to bring to the finished state.
        address: Ray cluster address (``"auto"`` joins a running cluster; ``None`` starts a
            local Ray instance on this machine).
        cpus_per_run: CPUs Ray reserves per run (also its torch thread count).
        gpus_per_run: GPUs Ray reserves per run (fractions share a GPU).
        retry_failed: rerun failed runs instead of listing them.
        on_outcome: called with each outcome as its task ends.
    """
    if not specs:
        return []
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # Workers must import this package, also when it is not installed (a checkout).
        runtime_env = {"env_vars": {"PYTHONPATH": run_environment()["PYTHONPATH"]}}
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env=runtime_env,
        )
    try:
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(
            _execute_on_node
        )
        refs = [remote.remote(spec, retry_failed, cpus_per_run) for spec in specs]
        index_of = {ref: i for i, ref in enumerate(refs)}
        outcomes: dict[int, RunOutcome] = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            index = index_of[done[0]]
            spec = specs[index]
            try:
                outcome = ray.get(done[0])
            except Exception as error:  # noqa: BLE001 - a lost task must not stop the sweep
                outcome = failed_start(spec, f"ray task failed: {error}")
            outcomes[index] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
        return [outcomes[i] for i in range(len(specs))]
    finally:
        if started_here:
            ray.shutdown()


def _execute_on_node(spec: RunSpec, retry_failed: bool, threads: int) -> RunOutcome:
    # Ray sets CUDA_VISIBLE_DEVICES for the task itself; the child inherits it.
    return execute_run(spec, retry_failed=retry_failed, threads=threads)
