"""Shared helpers for the aggregation tests (random Jacobians, tolerant comparisons) and
registry tests."""

from __future__ import annotations

import torch

SIZES = [(2, 5), (3, 50), (7, 50)]  # (T, n)
DTYPES = [torch.float32, torch.float64]


def random_jacobian(num_tasks: int, n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random J [T, n] with task gradients of different norms and some conflict."""
    gen = torch.Generator().manual_seed(seed)
    J = torch.randn(num_tasks, n, generator=gen, dtype=torch.float64)
    J = J * torch.logspace(0, 1, num_tasks, dtype=torch.float64)[:, None]
    return J.to(dtype)


def rel_tol(dtype: torch.dtype) -> float:
    return 2e-4 if dtype == torch.float32 else 1e-8


def assert_close_vec(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """|actual - expected| <= rtol * max(|expected|, tiny) (norms over the whole vector)."""
    actual, expected = actual.double(), expected.double()
    err = float((actual - expected).norm())
    scale = max(float(expected.norm()), 1e-12)
    assert err <= rtol * scale, f"relative error {err / scale:.3g} > {rtol:.1g}"


# --- registry tests (helpers above are imported by the other test_aggregation_* files) ---


def test_available_lists_all_contract_names():
    from mtrl_align import aggregation

    expected = {
        "uniform", "aligned-mtl", "aligned-mtl-ub", "pcgrad", "cagrad", "nash-mtl", "imtl-g",
        "mgda", "mgda-ub", "graddrop", "gradvac", "gradops", "rlw", "dwa", "uncertainty",
        "gradnorm",
        # issue 15
        "famo", "fairgrad", "upgrad", "dualproj", "config-grad", "sdmgrad", "moco", "modo",
        "stch", "db-mtl", "excess-mtl", "imtl-l", "imtl", "gls",
    }  # fmt: skip
    assert set(aggregation.available()) == expected
    for name in expected:
        agg = aggregation.make(name)
        assert agg.name == name
        assert agg.uses_representation == name.endswith("-ub")


def test_unknown_name_and_option_raise_listing_choices():
    import pytest

    from mtrl_align import aggregation

    with pytest.raises(ValueError, match=r"unknown aggregator 'cagard'; choose from: .*cagrad"):
        aggregation.make("cagard")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['cc'\].*allowed: .*\bc\b"):
        aggregation.make("cagrad", cc=0.4)
