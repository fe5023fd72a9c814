"""Cost of one multi-task update with each aggregator, relative to a uniform update.

Model: a SAC-sized critic, MLP (obs 49 + action 4) -> 400 -> 400 -> 400 -> 1, with 128 samples
per task and T tasks (T = 10 and 50), float32 on the CPU. Each measured update:

* ``summed-loss`` (the denominator): forward of all T x 128 samples, summed per-task MSE loss,
  ``backward()`` into ``.grad``.
* ``<method>``: fused per-task gradients (:func:`mtrl_align.jacobian.task_sliced_gradients`,
  one vmapped forward/backward), then the aggregator and the write-back into ``.grad``
  (:func:`mtrl_align.jacobian.write_aggregated_gradients`: the aggregators work on the
  per-parameter blocks of J, with no concatenated [T, n] copy).
* ``naive-loop`` (reference): T backward passes of ``autograd.grad`` with ``retain_graph``
  (then uniform weights and write-back).

The machine is shared, so every round runs all variants once in a freshly shuffled order
(interleaved) and the table reports the ratio of median times over rounds. The aggregator
call alone is also timed on a fixed J (``agg ms``), which is far less sensitive to load.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtrl_align import aggregation
from mtrl_align.device import torch_threads
from mtrl_align.jacobian import (
    task_sliced_gradients,
    write_aggregated_gradients,
    write_shared_direction,
)

OBS_DIM, ACTION_DIM, HIDDEN, DEPTH, BATCH_PER_TASK = 49, 4, 400, 3, 128
# UB variants need gradients w.r.t. a shared representation, which a task-sliced critic
# does not have (each task's features come from its own samples); they are not timed here.
SKIPPED = ("aligned-mtl-ub", "mgda-ub")


def make_critic() -> nn.Sequential:
    layers: list[nn.Module] = []
    width = OBS_DIM + ACTION_DIM
    for _ in range(DEPTH):
        layers += [nn.Linear(width, HIDDEN), nn.ReLU()]
        width = HIDDEN
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _task_loss(
    params: dict[str, Tensor], batch: tuple[Tensor, Tensor], task_index: Tensor, critic: nn.Module
) -> tuple[Tensor, Tensor]:
    inputs, targets = batch
    q = functional_call(critic, params, (inputs,)).squeeze(-1)
    loss = ((q - targets) ** 2).mean()
    return loss, loss.detach()


class UpdateBench:
    """Holds the critic, a batch [T, B, ...] and the timed update closures."""

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.num_tasks = num_tasks
        self.critic = make_critic()
        self.params = dict(self.critic.named_parameters())
        self.names = list(self.params)
        self.inputs = torch.randn(num_tasks, BATCH_PER_TASK, OBS_DIM + ACTION_DIM)
        self.targets = torch.randn(num_tasks, BATCH_PER_TASK)
        self.num_params = sum(p.numel() for p in self.params.values())

    def uniform(self) -> None:
        self.critic.zero_grad(set_to_none=True)
        q = self.critic(self.inputs.reshape(-1, OBS_DIM + ACTION_DIM)).reshape(self.num_tasks, -1)
        losses = ((q - self.targets) ** 2).mean(dim=1)
        losses.sum().backward()

    def aggregated(self, agg: aggregation.Aggregator) -> None:
        grads, losses, _ = task_sliced_gradients(
            _task_loss, self.params, (self.inputs, self.targets), self.critic
        )
        write_aggregated_gradients(agg, grads, self.params, losses)

    def naive_loop(self) -> None:
        q = self.critic(self.inputs.reshape(-1, OBS_DIM + ACTION_DIM)).reshape(self.num_tasks, -1)
        losses = ((q - self.targets) ** 2).mean(dim=1)
        params = list(self.params.values())
        rows = []
        for t in range(self.num_tasks):
            grads = torch.autograd.grad(losses[t], params, retain_graph=t < self.num_tasks - 1)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        write_shared_direction(torch.stack(rows).sum(0), params)


def _time(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    num_tasks: int, methods: list[str], rounds: int, naive_rounds: int, seed: int = 0
) -> dict[str, dict]:
    """Median milliseconds per update over ``rounds`` interleaved rounds and the ratio to the
    summed-loss update; ``agg_ms``: the aggregator call alone on the same J (median)."""
    bench = UpdateBench(num_tasks, seed)
    variants: dict[str, Callable[[], None]] = {
        "summed-loss": bench.uniform,
        "naive-loop": bench.naive_loop,
    }
    for name in methods:
        agg = aggregation.make(name)
        variants[name] = lambda agg=agg: bench.aggregated(agg)
    for fn in variants.values():  # warm-up (allocator, vmap tracing, solver imports)
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffler = random.Random(seed)
    for r in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            if name == "naive-loop" and r >= naive_rounds:
                continue
            times[name].append(_time(variants[name]))
    agg_times = _aggregator_only(bench, methods, rounds)
    base = statistics.median(times["summed-loss"])
    return {
        name: {
            "median_ms": 1e3 * statistics.median(ts),
            "ratio": statistics.median(ts) / base,
            "agg_ms": agg_times.get(name, float("nan")),
        }
        for name, ts in times.items()
    }


def _aggregator_only(bench: UpdateBench, methods: list[str], rounds: int) -> dict[str, float]:
    """Median ms of the aggregator call alone on one fixed set of per-task gradients, in the
    form the update uses (blocks; less noisy than full updates)."""
    grads, losses, _ = task_sliced_gradients(
        _task_loss, bench.params, (bench.inputs, bench.targets), bench.critic
    )
    blocks = [grads[name] for name in bench.names]
    out = {}
    for name in methods:
        agg = aggregation.make(name)
        agg.aggregate_blocks(blocks, losses)
        out[name] = 1e3 * statistics.median(
            _time(lambda agg=agg: agg.aggregate_blocks(blocks, losses))
            for _ in range(max(rounds, 5))
        )
    return out


def run(quick: bool = False, threads: int = 1) -> dict:
    """Print and return the ratio table for T = 10 and T = 50.

    Runs with ``threads`` intra-op threads (default 1): on a machine shared with other jobs,
    multi-threaded kernels wait for busy cores and the timings become erratic.
    """
    with torch_threads(threads):
        return _run(quick)


def _run(quick: bool) -> dict:
    methods = [m for m in aggregation.available() if m not in SKIPPED]
    rounds = {10: 3 if quick else 15, 50: 2 if quick else 5}
    naive_rounds = {10: 3 if quick else 15, 50: 1}  # the T=50 loop alone costs ~20 updates
    torch.set_grad_enabled(True)
    results: dict = {
        "model": f"MLP {OBS_DIM + ACTION_DIM}->{HIDDEN}x{DEPTH}->1, {BATCH_PER_TASK} samples/task",
        "threads": torch.get_num_threads(),
        "rounds": rounds,
    }
    for num_tasks in (10, 50):
        results[f"T={num_tasks}"] = measure(
            num_tasks, methods, rounds[num_tasks], naive_rounds[num_tasks]
        )
    _print_table(results, ["summed-loss", "naive-loop", *methods])
    return results


def _print_table(results: dict, rows: list[str]) -> None:
    print(
        f"{results['model']}, CPU threads={results['threads']}, "
        f"medians over {results['rounds']} rounds"
    )
    print("ratio = median update time / median summed-loss update time; agg = aggregator alone")
    header = f"{'method':<16}" + "".join(
        f"{f'T={t} ' + col:>14}" for t in (10, 50) for col in ("ratio", "ms", "agg ms")
    )
    print(header)
    for name in rows:
        cells = []
        for t in (10, 50):
            row = results[f"T={t}"][name]
            cells += [
                f"{row['ratio']:>14.2f}",
                f"{row['median_ms']:>14.1f}",
                f"{row['agg_ms']:>14.2f}",
            ]
        print(f"{name:<16}" + "".join(cells))
