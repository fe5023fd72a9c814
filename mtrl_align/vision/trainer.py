"""Train a vision multi-task model with any aggregator; evaluate, log, checkpoint, resume.

Run directory (same contract as the RL trainer)::

    config.yaml          resolved config
    metrics.jsonl        one JSON object per evaluation (see :func:`_evaluation_record`)
    summary.json         last evaluation + mean of the last ``train.average_last`` evaluations
    status.json          {"state": running|finished|failed, "epoch", "step", "error"}
    checkpoints/latest.pt, checkpoints/best.pt (lowest task-weighted Delta_m)
    tb/                  TensorBoard: losses/<task>, weights/<task>, grad/<stat>, eval/<metric>,
                         eval/delta_m_task_weighted, eval/delta_m_metric_weighted, charts/lr

Checkpoints are written after every epoch and hold the model, optimizer, scheduler,
aggregator state, RNG state and evaluation history, so ``train(config, resume_dir=...)``
continues exactly where the run stopped (on CPU: bit-identical to an uninterrupted run).
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from mtrl_align import aggregation
from mtrl_align.allocator import keep_freed_memory
from mtrl_align.checkpointing import atomic_save, atomic_write_json, load_checkpoint
from mtrl_align.config_io import save_config, to_dict
from mtrl_align.device import resolve_device
from mtrl_align.vision.config import VisionConfig, load_vision_config
from mtrl_align.vision.datasets import build_dataset
from mtrl_align.vision.delta_m import delta_m, resolve_baselines
from mtrl_align.vision.evaluation import evaluate_model
from mtrl_align.vision.models import build_model
from mtrl_align.vision.specs import get_dataset_spec
from mtrl_align.vision.update import MultiTaskGradient

#: config keys that may change when a run is resumed (they do not change the experiment)
RESUMABLE_OVERRIDES = ("device", "train.epochs", "data.root", "data.num_workers", "data.cache_dir")


def default_run_dir(config: VisionConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parts = (config.data.dataset, config.model.arch, config.aggregation.method)
    name = "vision_" + "_".join(parts) + f"_s{config.seed}_{stamp}"
    return Path("runs") / name


def config_fingerprint(config: VisionConfig) -> str:
    """Hash of the config without the keys a resume may change."""
    data = to_dict(config)
    for dotted in RESUMABLE_OVERRIDES + ("run_dir",):
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _write_json(path: Path, data: dict) -> None:
    atomic_write_json(path, data, indent=2)


def load_resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> VisionConfig:
    """The config of an existing run, with only :data:`RESUMABLE_OVERRIDES` allowed to change."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"'{run_dir}' is not a vision run directory (no config.yaml)")
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key not in RESUMABLE_OVERRIDES:
            raise ValueError(
                f"'{key}' cannot change when resuming; allowed: {', '.join(RESUMABLE_OVERRIDES)}"
            )
    config = load_vision_config(path, overrides)
    config.run_dir = str(run_dir)
    return config


class _History:
    """Evaluation records kept in the checkpoint (for best/mean-of-last summaries)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.best_delta: float | None = None


def train(config: VisionConfig, resume_dir: str | Path | None = None) -> Path:
    """Train (or resume) a run; returns its run directory. See the module docstring."""
    spec = get_dataset_spec(config.data.dataset)
    baselines = resolve_baselines(spec, config.baselines or None)
    if config.aggregation.method not in aggregation.available():
        raise ValueError(
            f"unknown aggregation.method '{config.aggregation.method}'; choose from: "
            f"{', '.join(aggregation.available())}"
        )
    if config.train.epochs < 1 or config.train.batch_size < 1:
        raise ValueError("train.epochs and train.batch_size must be >= 1")
    device = resolve_device(config.device)
    keep_freed_memory()
    run_dir = Path(resume_dir or config.run_dir or default_run_dir(config))
    if resume_dir is None and (run_dir / "checkpoints" / "latest.pt").exists():
        raise ValueError(
            f"run directory '{run_dir}' already holds a run; resume it or pick another run_dir"
        )
    torch.manual_seed(config.seed)
    # datasets first: a missing or malformed dataset folder fails before any run dir exists
    train_set = build_dataset(config.data, config.data.train_split, train=True, seed=config.seed)
    eval_set = build_dataset(config.data, config.data.eval_split, train=False, seed=config.seed)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if resume_dir is None:
        save_config(config, run_dir / "config.yaml")
    model = build_model(config.model, spec).to(device)
    aggregator = aggregation.make_seeded(
        config.aggregation.method, config.seed, "model", **dict(config.aggregation.options)
    )
    updater = MultiTaskGradient(
        model,
        spec,
        aggregator,
        target=config.aggregation.target,
        task_weights=config.aggregation.task_weights or None,
        weight_task_specific=config.aggregation.weight_task_specific,
    )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.optim.lr_milestones), gamma=config.optim.lr_gamma
    )
    meta = {
        "kind": "vision",
        "dataset": spec.name,
        "tasks": list(spec.task_names),
        "arch": config.model.arch,
        "method": config.aggregation.method,
        "config_hash": config_fingerprint(config),
    }
    history = _History()
    start_epoch, step = 0, 0
    checkpoint_path = run_dir / "checkpoints" / "latest.pt"
    if resume_dir is not None:
        state = load_checkpoint(checkpoint_path, expected=meta, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        aggregator.load_state_dict(state["aggregator"])
        torch.set_rng_state(state["rng"]["torch"])
        if (
            torch.cuda.is_available()
            and state["rng"].get("cuda") is not None
            and device.type == "cuda"
        ):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_epoch, step = state["epoch"], state["step"]
        history.records, history.best_delta = state["history"], state["best_delta"]

    def save_checkpoint(path: Path, epochs_done: int, steps_done: int) -> None:
        _save(path, meta, model, optimizer, scheduler, aggregator, epochs_done, steps_done, history)

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=step if resume_dir else None)
    status = {"state": "running", "epoch": start_epoch, "step": step, "error": None}
    _write_json(run_dir / "status.json", status)
    started = time.time()
    try:
        for epoch in range(start_epoch, config.train.epochs):
            step, train_losses = _train_epoch(
                config, spec, model, updater, optimizer, train_set, writer, epoch, step, device
            )
            scheduler.step()
            last_epoch = epoch + 1 == config.train.epochs
            if (epoch + 1) % config.train.eval_every == 0 or last_epoch:
                metrics = evaluate_model(
                    model,
                    eval_set,
                    spec,
                    config.train.eval_batch_size,
                    device,
                    config.data.num_workers,
                )
                record = _evaluation_record(
                    epoch + 1, step, metrics, spec, baselines, train_losses, started
                )
                history.records.append(record)
                with open(run_dir / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                _log_evaluation(writer, record, step)
                if (
                    history.best_delta is None
                    or record["delta_m_task_weighted"] < history.best_delta
                ):
                    history.best_delta = record["delta_m_task_weighted"]
                    save_checkpoint(run_dir / "checkpoints" / "best.pt", epoch + 1, step)
                _write_json(
                    run_dir / "summary.json",
                    _summary(history.records, spec, baselines, config.train.average_last),
                )
            save_checkpoint(checkpoint_path, epoch + 1, step)
            status.update(epoch=epoch + 1, step=step)
            _write_json(run_dir / "status.json", status)
        status["state"] = "finished"
        _write_json(run_dir / "status.json", status)
    except BaseException as error:
        status.update(state="failed", error=f"{type(error).__name__}: {error}")
        _write_json(run_dir / "status.json", status)
        (run_dir / "error.txt").write_text(traceback.format_exc())
        raise
    finally:
        writer.close()
    return run_dir


def _train_epoch(config, spec, model, updater, optimizer, train_set, writer, epoch, step, device):
    """One pass over the training split; returns the new global step and mean task losses."""
    model.train()
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    order = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    loader = DataLoader(
        train_set,
        batch_size=config.train.batch_size,
        shuffle=True,
        generator=order,
        num_workers=config.data.num_workers,
        pin_memory=device.type == "cuda",
    )
    loss_sum = torch.zeros(len(spec.tasks), device=device, dtype=torch.float64)
    batches = 0
    for index, batch in enumerate(loader):
        if config.train.steps_per_epoch and index >= config.train.steps_per_epoch:
            break
        images = batch["image"].to(device, non_blocking=True)
        labels = {name: batch[name].to(device, non_blocking=True) for name in spec.task_names}
        stats_due = (
            config.aggregation.stats_every > 0 and step % config.aggregation.stats_every == 0
        )
        result = updater(images, labels, keep_jacobian=stats_due)
        if config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        loss_sum += result.losses.double()
        batches += 1
        if config.train.log_every > 0 and step % config.train.log_every == 0:
            for name, value in zip(spec.task_names, result.losses.tolist(), strict=True):
                writer.add_scalar(f"losses/{name}", value, step)
            if result.task_weights is not None:
                for name, value in zip(spec.task_names, result.task_weights.tolist(), strict=True):
                    writer.add_scalar(f"weights/{name}", value, step)
            writer.add_scalar("charts/lr", optimizer.param_groups[0]["lr"], step)
            writer.add_scalar("charts/direction_norm", float(result.direction_norm), step)
        if stats_due and result.jacobian is not None:
            for key, value in aggregation.gradient_stats(result.jacobian).items():
                writer.add_scalar(f"grad/{key}", float(value), step)
        step += 1
    if batches == 0:
        raise ValueError(
            "the training split produced no batch; check data.max_train_samples and batch size"
        )
    means = (loss_sum / batches).tolist()
    return step, dict(zip(spec.task_names, means, strict=True))


def _evaluation_record(
    epoch, step, metrics, spec, baselines, train_losses, started
) -> dict[str, Any]:
    dm = delta_m(metrics, spec, baselines)
    return {
        "epoch": epoch,
        "step": step,
        "metrics": metrics,
        "delta_m_task_weighted": dm.task_weighted,
        "delta_m_metric_weighted": dm.metric_weighted,
        "train_losses": train_losses,
        "wall_time_s": time.time() - started,
    }


def _log_evaluation(writer: SummaryWriter, record: dict[str, Any], step: int) -> None:
    for key, value in record["metrics"].items():
        writer.add_scalar(f"eval/{key}", value, step)
    writer.add_scalar("eval/delta_m_task_weighted", record["delta_m_task_weighted"], step)
    writer.add_scalar("eval/delta_m_metric_weighted", record["delta_m_metric_weighted"], step)


def _summary(records: list[dict[str, Any]], spec, baselines, average_last: int) -> dict[str, Any]:
    last = records[-1]
    window = records[-max(1, average_last) :]
    mean_metrics = {
        key: sum(r["metrics"][key] for r in window) / len(window) for key in last["metrics"]
    }
    dm = delta_m(mean_metrics, spec, baselines)
    return {
        "dataset": spec.name,
        "last": last,
        "mean_of_last": {
            "evaluations": len(window),
            "metrics": mean_metrics,
            "delta_m_task_weighted": dm.task_weighted,
            "delta_m_metric_weighted": dm.metric_weighted,
        },
        "baselines": baselines,
        "delta_m_convention": "percent, lower is better; task-weighted = mean over tasks of each "
        "task's mean relative change, metric-weighted = mean over metrics",
    }


def _save(path, meta, model, optimizer, scheduler, aggregator, epoch, step, history) -> None:
    atomic_save(
        {
            "meta": meta,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "aggregator": aggregator.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "epoch": epoch,
            "step": step,
            "history": history.records,
            "best_delta": history.best_delta,
        },
        path,
    )
