"""``flush_denormals``: subnormal floats flushed to zero while training, a session setting."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
import torch

from mtrl_align.config import TrainConfig, config_fingerprint
from mtrl_align.device import set_flush_denormals
from mtrl_align.sweep.runner import config_differences

SUBNORMAL = 1e-39  # float32's smallest normal number is ~1.18e-38


def float32(value: float) -> float:
    """``value`` rounded to float32 by the struct module (no torch, no FPU control involved)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def arithmetic_keeps_subnormals() -> bool:
    """Whether torch float32 arithmetic on this thread gives a subnormal result, not zero."""
    product = (torch.tensor([SUBNORMAL], dtype=torch.float64) * 1.0).float() * 1.0
    return product.item() != 0.0


@pytest.fixture
def subnormals_restored() -> Iterator[None]:
    """Leave the thread keeping subnormals (torch's default) whatever the test set."""
    yield
    torch.set_flush_denormal(False)


def test_flushing_zeroes_subnormal_results_and_turns_off_again(subnormals_restored):
    assert float32(SUBNORMAL) != 0.0  # representable: a subnormal, not an underflow
    assert set_flush_denormals(False)
    kept = (torch.tensor([SUBNORMAL]) * 1.0).item()
    assert kept == pytest.approx(float32(SUBNORMAL), rel=1e-6)
    if not set_flush_denormals(True):
        pytest.skip("this CPU cannot flush subnormals")
    assert not arithmetic_keeps_subnormals()
    assert (torch.tensor([1e-30]) * 1e-9).item() == 0.0  # a product that falls below, too
    assert (torch.tensor([2e-38]) * 1.0).item() == pytest.approx(float32(2e-38), rel=1e-6)
    set_flush_denormals(False)
    assert arithmetic_keeps_subnormals()


def test_a_cpu_that_cannot_flush_gets_a_warning(monkeypatch, subnormals_restored):
    monkeypatch.setattr(torch, "set_flush_denormal", lambda enabled: False)
    with pytest.warns(RuntimeWarning, match="flush_denormals=true: this CPU cannot"):
        assert not set_flush_denormals(True)
    # turning it off on such a CPU is not worth a warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        set_flush_denormals(False)


def test_it_is_a_session_setting_for_checkpoints_and_sweeps():
    flushed = TrainConfig(flush_denormals=True)
    assert config_fingerprint(flushed) == config_fingerprint(TrainConfig())
    assert config_fingerprint(TrainConfig(seed=1)) != config_fingerprint(TrainConfig())
    assert config_differences({"flush_denormals": False}, {"flush_denormals": True}) == []
    assert config_differences({}, {"flush_denormals": True}) == []
    assert config_differences({"seed": 0}, {"seed": 1}) != []
