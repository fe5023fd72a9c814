"""Every YAML file under configs/ (MT10, configs/methods/, configs/vision/) loads, validates and
builds what it names.

A training config must load through ``load_train_config`` (unknown keys, bad values and bad
combinations raise ``ConfigError``), build its aggregator with its options and the agent with
its networks at the sizes it asks for, and survive a save / load round trip unchanged. A vision
config must load through ``load_vision_config`` and name a known dataset, valid baselines, a
known aggregator with valid options and a model that builds (at width 2, so the test is fast).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from agents import MultiTaskSAC
from mtrl_align import aggregation
from mtrl_align.config import load_train_config
from mtrl_align.config_io import save_config
from mtrl_align.vision.config import load_vision_config
from mtrl_align.vision.delta_m import resolve_baselines
from mtrl_align.vision.models import build_model
from mtrl_align.vision.specs import get_dataset_spec
from mtrl_align.vision.update import TARGETS

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"
ALL_YAML = sorted(CONFIG_ROOT.rglob("*.y*ml"))
VISION = [p for p in ALL_YAML if p.relative_to(CONFIG_ROOT).parts[0] == "vision"]
TRAIN = [p for p in ALL_YAML if p not in VISION]
METAWORLD_STATE_DIM, METAWORLD_ACTION_DIM = 39, 4
BENCHMARK_TASKS = {"MT10": 10, "MT50": 50}


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIG_ROOT))


def test_every_yaml_file_is_covered():
    assert {p.suffix for p in ALL_YAML} <= {".yaml", ".yml"}
    assert len(TRAIN) + len(VISION) == len(ALL_YAML)
    assert any(p.parent.name == "methods" for p in TRAIN) and VISION
    for path in ALL_YAML:  # plain YAML mappings, every one of them
        assert isinstance(yaml.safe_load(path.read_text()), dict), _id(path)


@pytest.mark.parametrize("path", TRAIN, ids=_id)
def test_training_config_loads_validates_and_builds_its_agent(path, tmp_path):
    config = load_train_config(path)
    agg = config.aggregation
    aggregation.make_seeded(agg.method, config.seed, "critic", **agg.options)
    if config.env.tasks is not None:
        num_tasks = len(config.env.tasks)
    elif config.env.benchmark.startswith("MT1:"):
        num_tasks = 1
    else:
        num_tasks = BENCHMARK_TASKS[config.env.benchmark]
    if agg.task_weights is not None:
        assert len(agg.task_weights) == num_tasks
    agent = MultiTaskSAC(
        config.agent,
        agg,
        num_tasks,
        METAWORLD_STATE_DIM + num_tasks,
        METAWORLD_ACTION_DIM,
        seed=config.seed,
    )
    assert set(agent.aggregators) == set(agg.networks)
    assert agent.config.variant == config.agent.variant
    saved = tmp_path / "config.yaml"
    save_config(config, saved)
    assert load_train_config(saved) == config


@pytest.mark.parametrize("path", VISION, ids=_id)
def test_vision_config_loads_and_names_what_exists(path):
    config = load_vision_config(path)
    spec = get_dataset_spec(config.data.dataset)
    resolve_baselines(spec, config.baselines or None)
    assert config.aggregation.method in aggregation.available()
    aggregation.make(config.aggregation.method, **config.aggregation.options)
    assert config.aggregation.target in TARGETS
    if config.aggregation.task_weights:
        assert len(config.aggregation.task_weights) == len(spec.tasks)
    assert config.train.epochs >= 1 and config.train.batch_size >= 1
    assert config.optim.lr > 0
    build_model(dataclasses.replace(config.model, width=2, pretrained_path=""), spec)
