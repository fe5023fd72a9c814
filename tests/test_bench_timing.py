"""The benchmark sections' shared timing pieces: the interleaved median and the thread scope."""

from __future__ import annotations

import pytest
import torch

from mtrl_align.bench import training
from mtrl_align.device import torch_threads


class _FakeClock:
    """perf_counter stand-in that only moves when an update runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _CostlyUpdate:
    """An agent whose n-th update (0-based, warm-up included) takes ``costs[n]`` seconds."""

    def __init__(self, clock: _FakeClock, costs: list[float]) -> None:
        self.clock, self.costs, self.calls = clock, costs, 0

    def update(self, batch) -> None:
        self.clock.now += self.costs[self.calls]
        self.calls += 1


def test_interleaved_medians_average_each_rounds_updates(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(training.time, "perf_counter", clock)
    rounds, per_round = 3, 2
    slow_costs = [100.0] + [1.0, 3.0, 5.0, 5.0, 2.0, 2.0]  # warm-up, then rounds of two
    fast_costs = [100.0] + [0.5] * (rounds * per_round)
    agents = {"slow": _CostlyUpdate(clock, slow_costs), "fast": _CostlyUpdate(clock, fast_costs)}
    medians = training.interleaved_update_medians(
        agents, None, rounds, torch.device("cpu"), per_round=per_round
    )
    round_means = [sum(slow_costs[1 + 2 * i : 3 + 2 * i]) / per_round for i in range(rounds)]
    assert medians["slow"] == pytest.approx(sorted(round_means)[1])
    assert medians["fast"] == pytest.approx(0.5)
    assert {key: agent.calls for key, agent in agents.items()} == {"slow": 7, "fast": 7}


def test_torch_threads_sets_the_count_and_restores_it_after_an_error():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(target):
            assert torch.get_num_threads() == target
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
