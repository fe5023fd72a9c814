"""The compiled update (train.compile=on) equals the eager one up to float rounding, and it is
compiled: dynamo's counters show one graph per compiled function and no graph break.

One update from the same state and batch, compiled and eager, for a sum-mode method
(uniform: the compiled all-task losses) and a jacobian-mode method (aligned-mtl: compiled
Bellman targets, vmapped per-task gradients), on every network variant.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from agents import MultiTaskSAC
from agents.networks import VARIANTS
from mtrl_align.config import AgentConfig, AggregationConfig, resolve_compile

T, OBS, A, B = 3, 7 + 3, 2, 6


def make_batch(seed: int = 0):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    one_hot = torch.eye(T).unsqueeze(1).expand(T, B, T)
    obs = lambda: torch.cat([torch.randn(T, B, OBS - T, generator=g), one_hot], -1)  # noqa: E731
    return SimpleNamespace(
        obs=obs(),
        actions=torch.rand(T, B, A, generator=g) * 2 - 1,
        rewards=torch.randn(T, B, generator=g),
        next_obs=obs(),
        dones=torch.zeros(T, B),
    )


def _agent(variant: str, method: str, compiled: bool) -> MultiTaskSAC:
    config = AgentConfig(variant=variant, actor_hidden=[16, 16], critic_hidden=[16, 16])
    return MultiTaskSAC(
        config, AggregationConfig(method=method), T, OBS, A, seed=1, compile=compiled
    )


# Functions the agent compiles: the Bellman targets always; the all-task critic and actor
# losses only where they are used, i.e. in sum mode (uniform).
COMPILED_GRAPHS = {"uniform": 3, "aligned-mtl": 1}


def _check_same_update(variant: str, method: str) -> None:
    eager, fast = _agent(variant, method, False), _agent(variant, method, True)
    fast.load_state_dict(copy.deepcopy(eager.state_dict()))
    batch = make_batch()
    torch._dynamo.reset()  # count this test's compilations only
    counters.clear()
    eager_result = eager.update(batch)
    assert not counters["frames"], "the eager agent compiled something"
    fast_result = fast.update(batch)
    # dynamo really compiled the forward passes, each into one graph without a break
    assert counters["stats"]["unique_graphs"] == COMPILED_GRAPHS[method]
    assert counters["frames"]["ok"] == COMPILED_GRAPHS[method]
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert not eager_result.skipped and not fast_result.skipped
    for key, value in eager_result.metrics.items():
        torch.testing.assert_close(fast_result.metrics[key], value, rtol=1e-4, atol=1e-5)
    for module in ("actor", "critic"):
        for (name, p), q in zip(
            getattr(eager, module).named_parameters(),
            getattr(fast, module).parameters(),
            strict=True,
        ):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"{module}.{name}")


@pytest.mark.parametrize("method", ["uniform", "aligned-mtl"])
def test_compiled_update_equals_eager_update_shared(method):
    _check_same_update("shared", method)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["uniform", "aligned-mtl"])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "shared"])
def test_compiled_update_equals_eager_update_every_variant(variant, method):
    _check_same_update(variant, method)


def test_auto_compile_is_eager():
    assert resolve_compile("auto", "cpu") is False and resolve_compile("auto", "cuda") is False
    assert resolve_compile("on", "cpu") is True and resolve_compile("off", "cuda") is False


def test_compile_switch_reads_yaml_on_and_off(tmp_path):
    from mtrl_align.config import ConfigError, load_train_config

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  compile: on\n")  # YAML 1.1 reads a bare on as true
    assert load_train_config(path).train.compile == "on"
    assert load_train_config(None, ["train.compile=off"]).train.compile == "off"
    with pytest.raises(ConfigError, match="'train.compile'.*choose from: auto, on, off"):
        load_train_config(None, ["train.compile=fast"])
