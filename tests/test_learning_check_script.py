"""scripts/learning_check.py: the target comparison survives float rounding of mean success."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "learning_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("learning_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_target_is_compared_on_the_exact_episode_fraction():
    script = _load()
    # every split of 30 episodes (10 per task) whose exact success fraction is >= 0.8 passes,
    # every one below it fails, whatever the float mean of the per-task fractions rounds to
    for a in range(11):
        for b in range(11):
            for c in range(11):
                float_mean = (a / 10 + b / 10 + c / 10) / 3
                exact = Fraction(a + b + c, 30)
                assert script.reaches(float_mean, 0.8) == (exact >= Fraction(4, 5)), (a, b, c)
