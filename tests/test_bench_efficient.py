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
    monkeypatch.setattr(efficient, "interleaved_update_medians", lambda *a, **k: medians)
    result = efficient.run(quick=True)
    base, mt_sac = medians[efficient.BASELINE], medians[efficient.MT_SAC]
    for label, seconds in medians.items():
        assert result["update_ms"][label] == pytest.approx(1000 * seconds)
        assert result[f"ratio_to_{efficient.BASELINE}"][label] == pytest.approx(seconds / base)
        assert result[f"ratio_to_{efficient.MT_SAC}"][label] == pytest.approx(seconds / mt_sac)
