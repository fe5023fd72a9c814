"""Train config schema: every shipped MT10 config loads, bad input gives a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrl_align import aggregation
from mtrl_align.config import TrainConfig, config_fingerprint, load_train_config
from mtrl_align.config_io import ConfigError, known_keys

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_contract_keys_exist():
    keys = set(known_keys(TrainConfig))
    contract = {
        "seed", "device", "run_dir", "env.benchmark", "env.tasks", "env.max_episode_steps",
        "env.reward_version", "env.vector_strategy", "agent.variant", "aggregation.method",
        "aggregation.networks", "aggregation.options", "train.total_env_steps",
        "eval.every_env_steps", "eval.episodes_per_task",
    }  # fmt: skip
    assert contract <= keys


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_build_their_aggregator(path):
    config = load_train_config(path)
    aggregation.make(config.aggregation.method, **config.aggregation.options)
    assert config.env.benchmark == "MT10"


def test_methods_named_in_the_issue_have_configs():
    methods = {load_train_config(p).aggregation.method for p in CONFIGS}
    variants = {load_train_config(p).agent.variant for p in CONFIGS}
    wanted = {"uniform", "pcgrad", "cagrad", "nash-mtl", "imtl-g", "mgda", "gradops"}
    assert wanted | {"aligned-mtl", "aligned-mtl-ub"} <= methods
    assert variants == {
        "shared",
        "task-encoder",
        "multi-head",
        "soft-modules",
        "care",
        "moore",
        "paco",
        "film",
        "film-per-unit",
    }
    paper = [load_train_config(p) for p in CONFIGS if "paper" in p.name]
    assert paper and paper[0].env.max_episode_steps == 150 and paper[0].env.reward_version == "v1"


def test_overrides_are_typed_and_applied():
    config = load_train_config(None, ["train.total_env_steps=123", "agent.actor_hidden=[8,8]"])
    assert config.train.total_env_steps == 123 and config.agent.actor_hidden == [8, 8]
    config = load_train_config(None, ["aggregation.options.c=0.5", "aggregation.method=cagrad"])
    assert config.aggregation.options == {"c": 0.5}


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("train.total_env_step=5", "did you mean 'train.total_env_steps'"),
        ("agent.variant=two-heads", "agent.variant.*shared, task-encoder, multi-head"),
        ("aggregation.method=cagard", "aggregation.method.*'cagard'.*cagrad"),
        ("aggregation.networks=[critic,policy]", "aggregation.networks.*'policy'"),
        ("train.batch_size_per_task=0", "train.batch_size_per_task.*> 0"),
        ("train.total_env_steps=many", "train.total_env_steps"),
        ("device=tpu", "device.*cpu, cuda"),
        ("env.reward_version=v3", "env.reward_version.*v1, v2"),
    ],
)
def test_bad_values_name_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_train_config(None, [override])


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")


def test_fingerprint_tracks_results_not_session_keys():
    base = load_train_config(None)
    same = load_train_config(None, ["run_dir=/tmp/x", "device=cpu", "train.total_env_steps=7"])
    other = load_train_config(None, ["aggregation.method=pcgrad"])
    assert config_fingerprint(base) == config_fingerprint(same)
    assert config_fingerprint(base) != config_fingerprint(other)
