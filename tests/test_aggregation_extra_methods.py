"""Issue-15 methods: registry flags, sign handling, properties (non-conflict, permutation
equivariance, scaling), degenerate inputs, solver fallbacks, bad options, state round trips."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from test_aggregation_common import DTYPES, assert_close_vec, random_jacobian

from mtrl_align import aggregation
from mtrl_align.config import default_networks

NEW = [
    "famo", "fairgrad", "upgrad", "dualproj", "config-grad", "sdmgrad", "moco", "modo", "stch",
    "db-mtl", "excess-mtl", "imtl-l", "imtl", "gls",
]  # fmt: skip
POSITIVE_ONLY = {"famo", "gls", "imtl-l", "imtl", "db-mtl"}
LOSS_ONLY = {"famo", "stch", "gls", "imtl-l"}  # weightings that skip the Gram matrix
WEIGHTLESS = {"imtl"}
STATEFUL = {"famo", "sdmgrad", "moco", "modo", "stch", "db-mtl", "excess-mtl", "imtl-l", "imtl"}


def losses_at(step: int, T: int = 4) -> torch.Tensor:
    return torch.linspace(0.5, 3.0, T, dtype=torch.float64) / (1 + 0.2 * step) + 0.1 * step


def test_registry_flags():
    for name in NEW:
        assert name in aggregation.available()
        agg = aggregation.make(name)
        assert agg.name == name
        assert agg.requires_positive_losses == (name in POSITIVE_ONLY), name
        assert agg.accepts_weights == (name not in WEIGHTLESS), name
        assert getattr(agg, "uses_gram", True) == (name not in LOSS_ONLY), name
        assert not aggregation.is_randomized(name)
        assert aggregation.make_seeded(name, 3, "critic").name == name
        if name in POSITIVE_ONLY | LOSS_ONLY:
            assert agg.needs_losses
        expected = ["critic"] if name in POSITIVE_ONLY else ["critic", "actor"]
        assert default_networks(name) == expected


# ------------------------------------------------------------------ signs
@pytest.mark.parametrize("name", sorted(POSITIVE_ONLY))
def test_positive_only_methods_refuse_negative_losses_by_name(name):
    agg = aggregation.make(name)
    J = random_jacobian(3, 6, torch.float64)
    losses = torch.tensor([1.0, -2.5, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"'{name}' is only defined for losses >= 0.*-2\.5"):
        agg(J, losses=losses)
    # zero losses are allowed (eps keeps them finite)
    d = agg(J, losses=torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert bool(torch.isfinite(d).all())


def test_famo_min_losses_are_subtracted_and_enforced():
    agg = aggregation.make("famo", min_losses=[0.5, 0.0])
    J = torch.eye(2, dtype=torch.float64)
    agg(J, losses=torch.tensor([0.7, 0.2], dtype=torch.float64))  # shifted: 0.2, 0.2
    torch.testing.assert_close(agg.last_weights, torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="losses - min_losses"):
        agg(J, losses=torch.tensor([0.3, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(set(NEW) - POSITIVE_ONLY))
def test_other_methods_work_with_negative_losses(name):
    agg = aggregation.make(name)
    for step in range(3):
        J = random_jacobian(4, 10, torch.float64, seed=step)
        losses = -5.0 * losses_at(step)  # e.g. the SAC actor loss alpha log pi - Q
        d = agg(J, losses=losses)
        assert bool(torch.isfinite(d).all()) and bool(torch.isfinite(agg.last_weights).all())


def test_stch_running_min_ideal_point_weights_the_task_furthest_above_its_best():
    agg = aggregation.make("stch", mu=0.5, ideal="running-min")
    J = torch.eye(3, dtype=torch.float64)
    agg(J, losses=torch.tensor([-10.0, 5.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(agg.last_weights, torch.ones(3, dtype=torch.float64))
    agg(J, losses=torch.tensor([-9.0, 4.0, 1.0], dtype=torch.float64))  # task 0 got worse
    assert int(agg.last_weights.argmax()) == 0


def test_stch_negative_losses_weight_the_worst_task_most():
    agg = aggregation.make("stch", mu=0.5)
    J = torch.eye(3, dtype=torch.float64)
    agg(J, losses=torch.tensor([-10.0, -8.0, -9.0], dtype=torch.float64))
    w = agg.last_weights
    assert int(w.argmax()) == 1 and float(w.sum()) == pytest.approx(3.0)


@pytest.mark.parametrize("name", ["famo", "gls", "stch", "imtl-l"])
def test_loss_weights_stay_finite_and_bounded_for_extreme_losses(name):
    agg = aggregation.make(name)
    J = random_jacobian(4, 10, torch.float64)
    for losses in ([1e-12, 1.0, 1e8, 3.0], [0.0, 0.0, 0.0, 1e10], [1e-300, 1e300, 1.0, 1.0]):
        agg(J, losses=torch.tensor(losses, dtype=torch.float64))
        w = agg.last_weights
        assert bool(torch.isfinite(w).all()) and bool((w >= 0).all()), (name, losses, w)
        if name in ("famo", "stch"):
            assert float(w.max()) <= 4 + 1e-9  # <= T p_i by construction


# ------------------------------------------------------------------ properties
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize(("T", "n", "seed"), [(2, 5, 0), (5, 30, 1), (10, 40, 2), (10, 6, 3)])
def test_upgrad_and_dualproj_never_conflict(name, T, n, seed, dtype):
    """g_i . d >= 0 for every task, also for T > n (rank-deficient) and with weights."""
    J = random_jacobian(T, n, dtype, seed=seed)
    J[0] = -0.5 * J[1:].sum(0)  # a task in conflict with the others
    p = torch.rand(T, generator=torch.Generator().manual_seed(seed), dtype=dtype) + 0.1
    for weights in (None, p):
        d = aggregation.make(name)(J, weights=weights).double()
        scale = float(J.double().norm(dim=1).max() ** 2)
        tol = 1e-4 if dtype == torch.float32 else 1e-8
        assert bool((J.double() @ d >= -tol * scale).all()), J.double() @ d


@pytest.mark.parametrize("seed", range(3))
def test_config_gives_equal_positive_cosines(seed):
    """Full-rank J: the ConFIG direction has the same cosine with every task gradient."""
    J = random_jacobian(5, 30, torch.float64, seed=seed)
    d = aggregation.make("config-grad")(J)
    cos = (J @ d) / (J.norm(dim=1) * d.norm())
    torch.testing.assert_close(cos, cos[0].expand(5))
    assert float(cos[0]) > 0


@pytest.mark.parametrize("name", NEW)
def test_permutation_equivariance(name):
    """Permuting tasks (J rows, losses, weights) consistently gives the same direction, also
    over several calls of a stateful method."""
    perm = torch.tensor([2, 0, 3, 1])
    agg, permuted = aggregation.make(name), aggregation.make(name)
    p = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    weights = None if name in WEIGHTLESS else p
    for step in range(3):
        J = random_jacobian(4, 12, torch.float64, seed=step)
        L = losses_at(step)
        d = agg(J, losses=L, weights=weights)
        d_perm = permuted(J[perm], losses=L[perm], weights=None if weights is None else p[perm])
        assert_close_vec(d_perm, d, 1e-6)


@pytest.mark.parametrize("name", ["upgrad", "dualproj", "config-grad", "sdmgrad", "modo", "moco"])
def test_direction_is_linear_in_the_gradient_scale(name):
    J = random_jacobian(4, 12, torch.float64)
    d = aggregation.make(name)(J)
    assert_close_vec(aggregation.make(name)(7.5 * J), 7.5 * d, 1e-6)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_fairgrad_scaling_law(alpha):
    """G -> c^2 G gives w -> c^(-2 alpha/(1+alpha)) w, so d -> c^(1 - 2 alpha/(1+alpha)) d."""
    J = random_jacobian(4, 12, torch.float64)
    c = 3.0
    d = aggregation.make("fairgrad", alpha=alpha)(J)
    expected = c ** (1 - 2 * alpha / (1 + alpha)) * d
    assert_close_vec(aggregation.make("fairgrad", alpha=alpha)(c * J), expected, 1e-7)


@pytest.mark.parametrize("name", ["famo", "gls"])
def test_loss_scale_invariance(name):
    """Log-loss methods: multiplying every loss by a constant does not change the weights."""
    a, b = aggregation.make(name), aggregation.make(name)
    for step in range(3):
        J = random_jacobian(4, 12, torch.float64, seed=step)
        L = losses_at(step)
        a(J, losses=L)
        b(J, losses=L * 1e3)
        torch.testing.assert_close(a.last_weights, b.last_weights, rtol=1e-6, atol=0)


def test_imtl_is_imtl_g_on_the_scaled_gradients():
    agg = aggregation.make("imtl", lr=0.1)
    for step in range(4):
        J = random_jacobian(4, 12, torch.float64, seed=step)
        s = agg.scales.current(4) if agg.scales.s is not None else torch.zeros(4, dtype=J.dtype)
        d = agg(J, losses=losses_at(step))
        scale = torch.exp(s)
        imtl_g = aggregation.make("imtl-g")
        expected = imtl_g(scale[:, None] * J)
        assert_close_vec(d, expected, 1e-9)
        torch.testing.assert_close(agg.last_weights, imtl_g.last_weights * scale)


@pytest.mark.parametrize("name", ["imtl-l", "imtl"])
def test_imtl_scales_learn_the_inverse_losses(name):
    """Constant losses: e^s_i -> 1 / L_i (every scaled loss e^s L equals 1)."""
    agg = aggregation.make(name, lr=0.05)
    J = random_jacobian(3, 8, torch.float64)
    losses = torch.tensor([0.2, 1.0, 8.0], dtype=torch.float64)
    for _ in range(800):
        agg(J, losses=losses)
    torch.testing.assert_close(agg.scales.s.detach().exp(), 1 / losses, rtol=3e-2, atol=0)


def test_famo_raises_the_weight_of_the_task_whose_loss_does_not_fall():
    agg = aggregation.make("famo", lr=0.05)
    J = torch.eye(2, dtype=torch.float64)
    for k in range(200):
        agg(J, losses=torch.tensor([1.0, 0.99**k], dtype=torch.float64))
    z = torch.softmax(agg.logits.detach(), 0)
    assert z[0] > z[1]


def test_excess_mtl_upweights_the_task_with_persistent_gradient():
    agg = aggregation.make("excess-mtl", robust_step_size=0.1)
    for k in range(1, 30):
        J = torch.tensor([[1.0, 0.0], [0.0, 1.0 / k]], dtype=torch.float64)
        agg(J)
    assert agg.last_weights[0] > agg.last_weights[1]


# ------------------------------------------------------------------ degenerate / failures
@pytest.mark.parametrize("name", NEW)
def test_one_task(name):
    agg = aggregation.make(name)
    J = random_jacobian(1, 7, torch.float64)
    for step in range(3):
        d = agg(J, losses=torch.tensor([1.0 + step], dtype=torch.float64))
        assert bool(torch.isfinite(d).all())
        cos = float(d @ J[0]) / float(d.norm() * J[0].norm())
        assert cos == pytest.approx(1.0), name  # the only task's own direction


@pytest.mark.parametrize("alpha", [0.5, 2.0])
@pytest.mark.parametrize("degenerate", ["zero", "opposite"])
def test_fairgrad_problems_without_a_solution_still_fail(alpha, degenerate):
    """No weight cap: the relative residual of each task's equation tells a run-away from a
    solution (for alpha < 1 the scale-free test alone would accept w_1 -> infinity)."""
    J = random_jacobian(3, 10, torch.float64)
    if degenerate == "zero":
        J[1] = 0.0
    else:
        J[2] = -J[1]
    agg = aggregation.make("fairgrad", alpha=alpha)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        d = agg(J)
    assert agg.stats["solver_failures"] == 1 and bool(torch.isfinite(d).all())


def test_fairgrad_failure_is_counted_and_warned_never_stale():
    J = random_jacobian(3, 10, torch.float64)
    J[1] = 0.0  # no minimiser: w_1 -> infinity
    agg = aggregation.make("fairgrad")
    with pytest.warns(RuntimeWarning, match="fairgrad: Newton solver did not converge"):
        d = agg(J)
    assert agg.stats["solver_failures"] == 1
    assert agg.stats["ridge_fallbacks"] + agg.stats["uniform_fallbacks"] == 1
    assert bool(torch.isfinite(d).all())
    healthy = random_jacobian(3, 10, torch.float64, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agg(healthy)
    G, w = healthy @ healthy.T, agg.last_weights
    torch.testing.assert_close(G @ w, w**-0.5, rtol=1e-6, atol=0)
    assert agg.stats["solver_failures"] == 1


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_solver_reports_no_fallback_on_healthy_and_degenerate_input(name):
    agg = aggregation.make(name)
    base = random_jacobian(5, 20, torch.float64)
    for J in (base, base * torch.logspace(-8, 0, 5, dtype=torch.float64)[:, None], base[[0, 0, 1]]):
        d = agg(J)
        assert bool(torch.isfinite(d).all())
    assert agg.stats["solver_fallbacks"] == 0


def test_dual_cone_fallback_solver_reaches_the_kkt_point():
    import numpy as np

    from mtrl_align.aggregation.dual_cone import _projected_gradient, kkt_ok, project_weights

    J = random_jacobian(4, 10, torch.float64, seed=2).numpy()
    G = J @ J.T
    G /= np.trace(G)
    u = np.array([1.0, 0.0, 0.0, 0.0])
    exact, fallbacks = project_weights(G, u[None, :])
    assert fallbacks == 0 and kkt_ok(G, u, exact[0])
    approx = _projected_gradient(G, u, u.copy(), iters=20000)
    np.testing.assert_allclose(approx, exact[0], atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("fairgrad", {"alpha": -1.0}),
        ("fairgrad", {"alpha": math.inf}),
        ("sdmgrad", {"momentum": 1.0}),
        ("sdmgrad", {"lr": 0.0}),
        ("modo", {"gamma": 0.0}),
        ("moco", {"beta": 0.0}),
        ("famo", {"lr": -1.0}),
        ("stch", {"mu": 0.0}),
        ("db-mtl", {"beta": 1.0}),
        ("excess-mtl", {"warmup": -1}),
        ("imtl-l", {"s_max": 0.0}),
        ("imtl", {"lr": 0.0}),
    ],
)
def test_bad_options_raise_naming_the_method(name, options):
    with pytest.raises(ValueError, match=name):
        aggregation.make(name, **options)


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_stateful_methods_refuse_a_changed_task_count(name):
    agg = aggregation.make(name)
    agg(random_jacobian(3, 6, torch.float64), losses=losses_at(0, 3))
    with pytest.raises(ValueError, match=rf"{name} was used with"):
        agg(random_jacobian(4, 6, torch.float64), losses=losses_at(0, 4))


def test_imtl_refuses_predefined_weights():
    with pytest.raises(ValueError, match="does not use pre-defined task weights"):
        aggregation.make("imtl")(
            random_jacobian(3, 6, torch.float64), losses=losses_at(0, 3), weights=torch.ones(3)
        )


# ------------------------------------------------------------------ state
STATE_OPTIONS = {
    "famo": {"min_losses": [-1.0, -1.0, -1.0, -1.0], "lr": 0.1},
    "excess-mtl": {"warmup": 2},
    "moco": {"rho": 0.1},
    "imtl-l": {"lr": 0.1},
    "imtl": {"lr": 0.1},
}


@pytest.mark.parametrize("blockwise", [False, True])
@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_state_dict_round_trip_mid_run_is_bit_identical(name, blockwise):
    options = STATE_OPTIONS.get(name, {})
    p = None if name in WEIGHTLESS else torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=torch.float64)

    def call(agg, step):
        J = random_jacobian(4, 12, torch.float64, seed=step)
        if blockwise:
            return torch.cat(
                [
                    b.reshape(-1)
                    for b in agg.aggregate_blocks([J[:, :5], J[:, 5:]], losses_at(step), p)
                ]
            )
        return agg(J, losses=losses_at(step), weights=p)

    original = aggregation.make(name, **options)
    for step in range(4):
        call(original, step)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    expected = [call(original, step) for step in range(4, 8)]
    restored = aggregation.make(name, **options)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    actual = [call(restored, step) for step in range(4, 8)]
    for a, e in zip(actual, expected, strict=True):
        assert torch.equal(a, e)
    assert restored.stats == original.stats
    assert torch.equal(restored.last_weights, original.last_weights)
