"""The efficient-critic benchmark section (scripts/benchmark.py --sections efficient) times the
study's rows: the efficient critic's agent with each study aggregator, and MT-SAC."""

from __future__ import annotations

import pytest

from mtrl_align.bench import efficient


def test_rows_are_the_study_configs_with_their_aggregators():
    agents = efficient.build_agents()
    assert list(agents) == list(efficient.ROWS)
    for label, agent in agents.items():
        method = efficient.ROWS[label][1]
        assert {type(a).name for a in agent.aggregators.values()} == {method}
        is_efficient = label.startswith("efficient/")
        assert (agent.critic.support is not None) == is_efficient, label  # categorical


def test_quick_run_reports_ratios_of_its_own_medians(monkeypatch):
    medians = {label: 0.01 * (i + 1) for i, label in enumerate(efficient.ROWS)}
    medians.update({False: 0.09, True: 0.05})  # the subnormal table: kept, flushed
    monkeypatch.setattr(
        efficient,
        "interleaved_update_medians",
        lambda updates, *a, **k: {key: medians[key] for key in updates},
    )
    result = efficient.run(quick=True)
    base, mt_sac = medians[efficient.BASELINE], medians[efficient.MT_SAC]
    for label in efficient.ROWS:
        seconds = medians[label]
        assert result["update_ms"][label] == pytest.approx(1000 * seconds)
        assert result[f"ratio_to_{efficient.BASELINE}"][label] == pytest.approx(seconds / base)
        assert result[f"ratio_to_{efficient.MT_SAC}"][label] == pytest.approx(seconds / mt_sac)
    subnormals = result["subnormals"]
    assert subnormals["kept_ms"] == pytest.approx(90.0)
    assert subnormals["ratio_kept_to_flushed"] == pytest.approx(0.09 / 0.05)


def test_sharpened_critics_hold_the_subnormal_share_float32_computes(one_torch_thread):
    import torch

    from mtrl_align.bench.training import _synthetic_batch

    row = efficient.SUBNORMAL_ROW
    agent = efficient.build_agents({row: efficient.ROWS[row]})[row]
    batch = _synthetic_batch(torch.device("cpu"))
    assert efficient.subnormal_fraction(agent, batch) == 0.0  # a fresh critic is not confident
    efficient.sharpen_critics(agent)
    fraction = efficient.subnormal_fraction(agent, batch)
    # second count: float32 softmax with subnormals kept, read off the float32 values
    torch.set_flush_denormal(False)
    tasks = torch.arange(batch.obs.shape[0])
    with torch.no_grad():
        _, _, logits = agent.critic(batch.obs, batch.actions, tasks, with_logits=True)
    probabilities = torch.softmax(logits, dim=-1)
    tiny = torch.finfo(torch.float32).tiny
    in_float32 = float(((probabilities > 0) & (probabilities < tiny)).double().mean())
    assert fraction > 0.05
    assert fraction == pytest.approx(in_float32, abs=0.005)
    for online, target in (
        (agent.critic.q1, agent.critic_target.q1),
        (agent.critic.q2, agent.critic_target.q2),
    ):
        assert torch.equal(online.out_bias, target.out_bias)
        assert torch.equal(online.out_weight, target.out_weight)


def test_only_a_categorical_critic_can_be_sharpened():
    agent = efficient.build_agents({efficient.MT_SAC: efficient.ROWS[efficient.MT_SAC]})
    with pytest.raises(ValueError, match="categorical critic"):
        efficient.sharpen_critics(agent[efficient.MT_SAC])
