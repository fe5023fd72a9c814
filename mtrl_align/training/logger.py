"""TensorBoard logging of a training run with fixed, documented keys (docs/training.md).

The x axis of every scalar is the number of env steps per task. Keys:

- ``eval/success/<task>``, ``eval/mean_success``, ``eval/return/<task>``, ``eval/mean_return``
- ``train/episode_success/<task>``, ``train/episode_return/<task>``, ``train/mean_episode_success``
- ``losses/critic/<task>``, ``losses/actor/<task>``, ``losses/alpha/<task>`` and their
  ``losses/*_mean`` over tasks
- ``temperature/<task>``; ``values/mean_q/<task>``, ``values/log_prob/<task>``
- ``loss_scale/<task>`` (the per-task loss scale s of the update, when
  ``aggregation.temperature_task_weights`` or PaCo's extreme-task handling is on),
  ``paco/extreme_task_count/<task>`` (updates in which PaCo masked the task, so far)
- ``aggregation/<network>/weight/<task>`` (task weights the aggregator applied),
  ``aggregation/<network>/{kappa,gms,min_cos,max_norm_ratio,mean_cos}`` (stats of the
  per-task gradients of the shared parameters), ``aggregation/<network>/stat/<name>``
  (aggregator diagnostics, e.g. solver failures)
- ``interference/<network>/<i>_<j>`` (cosine between the per-task gradients of tasks i < j,
  positions in the task order) and the image ``interference/<network>`` (the [T, T] cosine
  heatmap with task names); see :mod:`mtrl_align.interference`
- ``reward_norm/scale/<task>``, ``reward_norm/return_bound/<task>`` (``agent.reward_normalization``:
  the reward scale of the logged update and the task's largest absolute discounted return G_i)
- ``perf/update_ms``, ``perf/updates_per_s``, ``perf/env_steps_per_s``,
  ``perf/nonfinite_skips``
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor

from agents.sac import UpdateResult
from mtrl_align.interference import heatmap_image, pair_scalars

PER_TASK_METRICS = {
    "critic_loss": "losses/critic",
    "actor_loss": "losses/actor",
    "alpha_loss": "losses/alpha",
    "alpha": "temperature",
    "mean_q": "values/mean_q",
    "log_prob": "values/log_prob",
    "loss_scale": "loss_scale",
    "extreme_task_count": "paco/extreme_task_count",
}


class TrainLogger:
    """Writes scalars to TensorBoard under the keys listed in the module docstring.

    Args:
        directory: TensorBoard folder (``RUN_DIR/tb``).
        task_names: names used in per-task keys, in task order.
        purge_step: on resume, events at or after this step from the interrupted session
            are hidden (TensorBoard's ``purge_step``).
    """

    def __init__(
        self, directory: str | Path, task_names: Sequence[str], purge_step: int | None = None
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.task_names = list(task_names)
        self.writer = SummaryWriter(str(directory), purge_step=purge_step)

    def _scalar(self, key: str, value: float, step: int) -> None:
        self.writer.add_scalar(key, float(value), step)

    def _per_task(self, prefix: str, values: Sequence[float], step: int) -> None:
        for name, value in zip(self.task_names, values, strict=True):
            self._scalar(f"{prefix}/{name}", value, step)

    def log_update(self, step: int, result: UpdateResult) -> None:
        """Per-task losses, temperatures, Q values, aggregator weights and gradient stats."""
        for metric, prefix in PER_TASK_METRICS.items():
            tensor: Tensor | None = result.metrics.get(metric)
            if tensor is None:
                continue
            values = tensor.detach().float().cpu().tolist()
            self._per_task(prefix, values, step)
            if prefix.startswith("losses/"):
                self._scalar(f"{prefix}_mean", sum(values) / len(values), step)
        for network, weights in result.weights.items():
            self._per_task(f"aggregation/{network}/weight", weights.float().cpu().tolist(), step)
        for network, stats in result.stats.items():
            for key, value in stats.items():
                self._scalar(f"aggregation/{network}/{key}", value, step)
        for network, cosine in result.interference.items():
            self.log_interference(step, network, cosine)

    def log_interference(self, step: int, network: str, cosine: Tensor) -> None:
        """The [T, T] cosine matrix of ``network``: one scalar per task pair and a heatmap."""
        for key, value in pair_scalars(network, cosine).items():
            self._scalar(key, value, step)
        matrix = cosine.detach().cpu().numpy()
        title = f"{network}: cosine of per-task gradients, step {step}"
        image = heatmap_image(matrix, self.task_names, title)
        self.writer.add_image(f"interference/{network}", image, step, dataformats="HWC")

    def log_reward_normalization(
        self, step: int, scales: Sequence[float], bounds: Sequence[float]
    ) -> None:
        """Per-task reward scales and return bounds G_i (NaN before a task's first episode)."""
        self._per_task("reward_norm/scale", scales, step)
        finite = [(n, b) for n, b in zip(self.task_names, bounds, strict=True) if math.isfinite(b)]
        for name, bound in finite:
            self._scalar(f"reward_norm/return_bound/{name}", bound, step)

    def log_evaluation(
        self, step: int, success: Mapping[str, float], returns: Mapping[str, float]
    ) -> None:
        self._per_task("eval/success", [success[n] for n in self.task_names], step)
        self._per_task("eval/return", [returns[n] for n in self.task_names], step)
        self._scalar("eval/mean_success", sum(success.values()) / len(success), step)
        self._scalar("eval/mean_return", sum(returns.values()) / len(returns), step)

    def log_episodes(self, step: int, finished: Mapping[str, tuple[float, bool]]) -> None:
        """Training episodes that just ended: task -> (return, success)."""
        for name, (episode_return, success) in finished.items():
            self._scalar(f"train/episode_return/{name}", episode_return, step)
            self._scalar(f"train/episode_success/{name}", float(success), step)
        if finished:
            rate = sum(float(s) for _, s in finished.values()) / len(finished)
            self._scalar("train/mean_episode_success", rate, step)

    def log_perf(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                self._scalar(f"perf/{key}", value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
