"""Properties the methods promise, and closed forms for two tasks."""

from __future__ import annotations

import math

import pytest
import torch
from test_aggregation_common import DTYPES, assert_close_vec, random_jacobian, rel_tol

from mtrl_align import aggregation
from mtrl_align.aggregation.gradops import orthogonal_projection_coefficients


def aligned_matrix(J: torch.Tensor, name: str = "aligned-mtl") -> torch.Tensor:
    """Rows = aligned task gradients B J, read off by calling with one-hot task weights."""
    agg = aggregation.make(name)
    eye = torch.eye(J.shape[0], dtype=J.dtype)
    return torch.stack([agg(J, weights=eye[i]) for i in range(J.shape[0])])


# ------------------------------------------------------------------ aligned-mtl
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("T", "n"), [(2, 5), (5, 40), (10, 200)])
def test_aligned_gradients_have_condition_number_one(T, n, dtype):
    J = random_jacobian(T, n, dtype)
    aligned = aligned_matrix(J).double()
    sv = torch.linalg.svdvals(aligned)
    assert float(sv.max() / sv.min()) == pytest.approx(
        1.0, abs=1e-3 if dtype == torch.float32 else 1e-9
    )
    # the common singular value is the smallest singular value of J (scale_mode "min")
    assert float(sv[0]) == pytest.approx(float(torch.linalg.svdvals(J.double()).min()), rel=1e-3)
    stats = aggregation.gradient_stats(aligned.to(dtype))
    assert stats["kappa"] == pytest.approx(1.0, abs=1e-3)
    assert stats["gms"] == pytest.approx(1.0, abs=1e-3)
    assert abs(stats["min_cos"]) < 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_aligned_mtl_respects_predefined_weights(dtype):
    """d(J, w) = sum_i w_i * aligned_i and d . aligned_i = w_i sigma^2 (no conflict, w_i share)."""
    J = random_jacobian(6, 30, dtype)
    w = torch.tensor([0.1, 0.5, 1.0, 2.0, 0.0, 3.0], dtype=dtype)
    aligned = aligned_matrix(J)
    d = aggregation.make("aligned-mtl")(J, weights=w)
    assert_close_vec(d, w @ aligned, 10 * rel_tol(dtype))
    sigma_sq = float(aligned[0].double().norm() ** 2)
    proj = aligned.double() @ d.double() / sigma_sq
    assert_close_vec(proj, w.double(), 1e-3 if dtype == torch.float32 else 1e-8)
    # the update decreases the weighted objective: g_0 . d >= 0 with g_0 = J^T w
    assert float((w @ J).double() @ d.double()) >= 0


def test_aligned_mtl_closed_form_two_tasks():
    """|g1| = |g2| = a, cos = c: G = a^2 [[1, c], [c, 1]], w = (1, 1) lies on the eigenvector
    (1, 1) with eigenvalue a^2 (1 + c), so alpha = sqrt(lambda_min / (a^2 (1 + c))) (1, 1)."""
    for c in (-0.7, -0.2, 0.3, 0.9):
        theta = math.acos(c)
        J = 2.0 * torch.tensor(
            [[1.0, 0.0, 0.0], [math.cos(theta), math.sin(theta), 0.0]], dtype=torch.float64
        )
        agg = aggregation.make("aligned-mtl")
        d = agg(J)
        lam_min = 4.0 * (1 - abs(c))
        expected_alpha = math.sqrt(lam_min / (4.0 * (1 + c)))
        torch.testing.assert_close(
            agg.last_weights, torch.full((2,), expected_alpha, dtype=torch.float64)
        )
        torch.testing.assert_close(d, expected_alpha * J.sum(0))


def test_aligned_mtl_is_linear_in_scale_and_permutation_invariant():
    J = random_jacobian(5, 20, torch.float64)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    agg = aggregation.make("aligned-mtl")
    d = agg(J, weights=w)
    assert_close_vec(agg(7.5 * J, weights=w), 7.5 * d, 1e-10)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert_close_vec(agg(J[perm], weights=w[perm]), d, 1e-10)


# ------------------------------------------------------------------ non-conflict
@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_two_tasks_closed_form_and_no_conflict(seed):
    J = random_jacobian(2, 10, torch.float64, seed=seed)
    J[1] = -3.0 * J[0] + 0.5 * J[0].norm() * J[1] / J[1].norm()  # force a conflict
    g1, g2 = J
    dot = g1 @ g2
    assert dot < 0
    expected = (g1 - dot / (g2 @ g2) * g2) + (g2 - dot / (g1 @ g1) * g1)
    d = aggregation.make("pcgrad", seed=seed)(J)
    assert_close_vec(d, expected, 1e-12)
    assert bool((J @ d >= -1e-12 * d.norm() * J.norm()).all())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_mgda_direction_does_not_conflict(seed, dtype):
    """Exact solver: KKT of the min-norm point, g_i . d >= |d|^2 for every task.
    Frank-Wolfe (approximate): still no conflict, g_i . d > 0."""
    J = random_jacobian(6, 12, dtype, seed=seed)
    d = aggregation.make("mgda")(J).double()
    slack = J.double() @ d - d @ d
    assert bool((slack >= -(1e-4 if dtype == torch.float32 else 1e-9) * float(d @ d)).all()), slack
    d_fw = aggregation.make("mgda", solver="frank-wolfe", max_iter=10_000, tol=1e-10)(J).double()
    assert bool((J.double() @ d_fw > 0).all())


def test_mgda_two_tasks_closed_form():
    J = random_jacobian(2, 8, torch.float64, seed=3)
    g1, g2 = J
    gamma = float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))
    gamma = min(max(gamma, 0.0), 1.0)
    expected = gamma * g1 + (1 - gamma) * g2
    assert_close_vec(aggregation.make("mgda")(J), expected, 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradops_projections_are_orthogonal_to_other_tasks(dtype):
    J = random_jacobian(5, 30, dtype)
    gram = (J @ J.T).double()
    projected = orthogonal_projection_coefficients(gram, torch.finfo(dtype).eps) @ J.double()
    cross = projected @ J.double().T
    off_diag = cross - torch.diag(cross.diagonal())
    assert float(off_diag.abs().max()) <= 1e-4 * float(J.double().norm() ** 2)
    # alpha = 0: the plain sum of projected gradients; it conflicts with no task
    d = aggregation.make("gradops")(J).double()
    assert_close_vec(d, projected.sum(0), 1e-3 if dtype == torch.float32 else 1e-9)
    assert bool((J.double() @ d >= -1e-6 * float(d.norm() * J.double().norm())).all())


def test_gradops_two_tasks_closed_form_and_tradeoff():
    J = random_jacobian(2, 6, torch.float64, seed=1)
    g1, g2 = J
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g1 @ g2) / (g1 @ g1) * g1
    assert_close_vec(aggregation.make("gradops")(J), p1 + p2, 1e-10)
    # alpha < 0 puts more weight on the task with the smaller projected gradient
    r = torch.stack([p1 @ p1, p2 @ p2])
    w = r**-3 / (r**-3).sum() * 2
    assert_close_vec(aggregation.make("gradops", alpha=-3)(J), w[0] * p1 + w[1] * p2, 1e-10)


# ------------------------------------------------------------------ other closed forms
def test_imtl_g_equal_projections_and_paper_formula():
    """Projections of d on every unit task gradient are equal; alpha also matches the paper's
    difference-matrix formula alpha_{2:T} = g_1 U^T (D U^T)^{-1}."""
    J = random_jacobian(4, 15, torch.float64, seed=2)
    agg = aggregation.make("imtl-g")
    d = agg(J)
    units = J / J.norm(dim=1, keepdim=True)
    proj = units @ d
    torch.testing.assert_close(proj, proj[0].expand(4))
    D = J[0] - J[1:]
    U = units[0] - units[1:]
    rest = J[0] @ U.T @ torch.linalg.inv(D @ U.T)
    alpha = torch.cat([1 - rest.sum().reshape(1), rest])
    torch.testing.assert_close(agg.last_weights, alpha)


def test_nash_mtl_orthogonal_tasks_closed_form():
    """Orthogonal gradients: alpha_i = sqrt(|G|_F) / |g_i| (normalised Gram, alpha_i^2 G_ii = 1)."""
    J = torch.diag(torch.tensor([1.0, 3.0, 10.0], dtype=torch.float64))
    agg = aggregation.make("nash-mtl")
    agg(J)
    scale = float(torch.linalg.norm(J @ J.T))
    torch.testing.assert_close(agg.last_weights, math.sqrt(scale) / J.diagonal())


@pytest.mark.parametrize("name", ["aligned-mtl", "mgda", "imtl-g", "nash-mtl", "cagrad", "gradops"])
def test_deterministic_methods_are_permutation_invariant(name):
    J = random_jacobian(5, 25, torch.float64, seed=7)
    perm = torch.tensor([2, 4, 0, 3, 1])
    d = aggregation.make(name)(J)
    assert_close_vec(aggregation.make(name)(J[perm]), d, 1e-6)


def test_cagrad_is_conflict_averse_and_reduces_to_uniform_at_c0():
    J = random_jacobian(4, 20, torch.float64, seed=5)
    assert_close_vec(aggregation.make("cagrad", c=0.0)(J), J.sum(0), 1e-12)
    g0 = J.sum(0)
    d = aggregation.make("cagrad", c=0.9, rescale=False)(J)
    # d lies on the ball |d - g0| <= c |g0| (on its boundary) ...
    assert float((d - g0).norm()) == pytest.approx(0.9 * float(g0.norm()), rel=1e-6)
    # ... and its worst task improvement beats that of g0
    assert float((J @ d).min()) >= float((J @ g0).min()) - 1e-9


# ------------------------------------------------------------------ gradient_stats
def test_gradient_stats_against_direct_formulas():
    J = random_jacobian(3, 10, torch.float64, seed=4)
    stats = aggregation.gradient_stats(J)
    sv = torch.linalg.svdvals(J)
    norms = J.norm(dim=1)
    cos = (J @ J.T) / torch.outer(norms, norms)
    pairs = [(0, 1), (0, 2), (1, 2)]
    gms = min(2 * norms[i] * norms[j] / (norms[i] ** 2 + norms[j] ** 2) for i, j in pairs)
    assert stats["kappa"] == pytest.approx(float(sv.max() / sv.min()), rel=1e-9)
    assert stats["gms"] == pytest.approx(float(gms), rel=1e-9)
    assert stats["min_cos"] == pytest.approx(float(min(cos[i, j] for i, j in pairs)), rel=1e-9)
    assert stats["max_norm_ratio"] == pytest.approx(float(norms.max() / norms.min()), rel=1e-9)
    agg = aggregation.make("aligned-mtl")
    agg(J)
    assert aggregation.gradient_stats_from_gram(agg.last_gram) == pytest.approx(stats)
    J[2] = J[0] + J[1]
    assert aggregation.gradient_stats(J)["kappa"] == math.inf


# ------------------------------------------------------------------ task weights keep J's dtype
WEIGHTS = [0.1, 0.3, 0.7]  # none of them is exact in float32


@pytest.mark.parametrize(
    "name", [n for n in aggregation.available() if aggregation.aggregator_class(n).accepts_weights]
)
def test_task_weights_from_a_list_keep_the_float64_values(name):
    """A list, at construction or per call, gives the same result as the float64 tensor of
    the same numbers on a float64 J (no detour through float32)."""
    J = random_jacobian(3, 12, torch.float64)
    losses = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    exact = torch.tensor(WEIGHTS, dtype=torch.float64)
    reference = aggregation.make(name, task_weights=exact)(J, losses=losses)
    from_list = aggregation.make(name, task_weights=WEIGHTS)(J, losses=losses)
    per_call = aggregation.make(name)(J, losses=losses, weights=WEIGHTS)
    torch.testing.assert_close(from_list, reference, rtol=1e-12, atol=0)
    torch.testing.assert_close(per_call, reference, rtol=1e-12, atol=0)


def test_uniform_with_list_weights_is_the_float64_weighted_sum():
    J = random_jacobian(3, 12, torch.float64)
    expected = sum(w * J[i] for i, w in enumerate(WEIGHTS))  # Python floats, float64 rows
    d = aggregation.make("uniform", task_weights=WEIGHTS)(J)
    torch.testing.assert_close(d, expected, rtol=1e-15, atol=1e-15)
