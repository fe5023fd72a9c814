"""Issue-15 methods against independent implementations: torchjd 0.18 where it has the method
(UPGrad, DualProj, ConFIG, FairGrad, SDMGrad, MoDo, ExcessMTL), cvxpy QPs, autograd of the
scalarisations (FAMO, GLS, STCH), explicit loops (DB-MTL, MoCo) and closed forms for T = 2.

Known convention differences (checked, not hidden): our task weights default to 1 per task,
torchjd's UPGrad / DualProj / SDMGrad / ExcessMTL to 1/T (factor T); torchjd's UPGrad and
DualProj need quadprog, which is not installed: they run here with a cvxpy projector plugged in
(their aggregation logic, an independent QP solver); SDMGrad and MoDo get G = J J^T where
torchjd's docs pass J_1 J_2^T of two batches.
"""

from __future__ import annotations

import math
import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch
import torchjd.aggregation as tjd
from test_aggregation_common import DTYPES, SIZES, assert_close_vec, random_jacobian, rel_tol
from torchjd._linalg import DualConeProjector

from mtrl_align import aggregation
from mtrl_align.aggregation.simplex import project_onto_simplex

CASES = [(t, n, dtype) for (t, n) in [*SIZES, (12, 80)] for dtype in DTYPES]
IDS = [f"T{t}-n{n}-{str(dtype)[6:]}" for (t, n, dtype) in CASES]


def qp_tol(dtype: torch.dtype) -> float:
    return 2e-3 if dtype == torch.float32 else 1e-5


class CvxpyProjector(DualConeProjector):
    """torchjd's dual-cone projector interface, solved by cvxpy/Clarabel: each row u of U ->
    argmin_{v >= u} v^T G v."""

    def __call__(self, U, G):
        G_ = G.detach().double().cpu().numpy()
        G_ = 0.5 * (G_ + G_.T) / np.trace(G_)
        out = []
        for u in U.detach().double().cpu().numpy().reshape(-1, G_.shape[0]):
            v = cp.Variable(len(u))
            cp.Problem(cp.Minimize(cp.quad_form(v, cp.psd_wrap(G_))), [v >= u]).solve(
                cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
            )
            out.append(v.value)
        return torch.as_tensor(np.array(out).reshape(U.shape), dtype=G.dtype)


def preference(T: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(T, generator=torch.Generator().manual_seed(1), dtype=dtype) + 0.1


# ------------------------------------------------------------------ torchjd
@pytest.mark.parametrize(("T", "n", "dtype"), CASES, ids=IDS)
def test_upgrad_matches_torchjd(T, n, dtype):
    J = random_jacobian(T, n, dtype)
    ref = tjd.UPGrad(projector=CvxpyProjector())
    assert_close_vec(aggregation.make("upgrad")(J), T * ref(J), qp_tol(dtype))
    p = preference(T, dtype)
    ref_p = tjd.UPGrad(pref_vector=p, projector=CvxpyProjector())
    assert_close_vec(aggregation.make("upgrad")(J, weights=p), ref_p(J), qp_tol(dtype))


@pytest.mark.parametrize(("T", "n", "dtype"), CASES, ids=IDS)
def test_dualproj_matches_torchjd(T, n, dtype):
    J = random_jacobian(T, n, dtype)
    ref = tjd.DualProj(projector=CvxpyProjector())
    assert_close_vec(aggregation.make("dualproj")(J), T * ref(J), qp_tol(dtype))
    p = preference(T, dtype)
    ref_p = tjd.DualProj(pref_vector=p, projector=CvxpyProjector())
    assert_close_vec(aggregation.make("dualproj")(J, weights=p), ref_p(J), qp_tol(dtype))


@pytest.mark.parametrize(("T", "n", "dtype"), CASES, ids=IDS)
def test_config_matches_torchjd(T, n, dtype):
    J = random_jacobian(T, n, dtype)
    tol = 10 * rel_tol(dtype)
    assert_close_vec(aggregation.make("config-grad")(J), tjd.ConFIG()(J), tol)
    p = preference(T, dtype)
    assert_close_vec(
        aggregation.make("config-grad")(J, weights=p), tjd.ConFIG(pref_vector=p)(J), tol
    )


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize(("T", "n", "dtype"), CASES, ids=IDS)
def test_fairgrad_matches_torchjd(T, n, dtype, alpha):
    J = random_jacobian(T, n, dtype)
    agg = aggregation.make("fairgrad", alpha=alpha)
    d = agg(J)
    assert_close_vec(d, tjd.FairGrad(alpha=alpha)(J), 1e-3 if dtype == torch.float32 else 1e-5)
    # and our weights solve the stationarity equations to high accuracy
    G = J.double() @ J.double().T
    w = agg.last_weights.double()
    torch.testing.assert_close(G @ w, w ** (-1.0 / alpha), rtol=1e-4, atol=0)
    assert agg.stats["solver_failures"] == 0


def fairgrad_oracle(G: np.ndarray, p: np.ndarray, alpha: float) -> np.ndarray:
    """FairGrad's weights by scipy, written from the paper's definition: minimise the convex
    potential F(w) = 1/2 w^T G w - sum_i c_i h(w_i) (c = p^(1/alpha), h' = w^(-1/alpha)) in log
    space w = exp(v) with scipy's trust-region solver, then polish the stationarity equations in
    their scale-free log form log(G w)_i + v_i / alpha - log c_i = 0 with MINPACK's hybrid root
    finder (each equation relative to its own size, whatever the task's gradient scale)."""
    from scipy import optimize

    k, c = 1.0 / alpha, p ** (1.0 / alpha)

    def potential(v):
        w = np.exp(v)
        h = np.log(w) if alpha == 1.0 else w ** (1 - k) / (1 - k)
        return 0.5 * w @ G @ w - c @ h

    def gradient(v):
        w = np.exp(v)
        return w * (G @ w - c * w**-k)

    def hessian(v):
        w = np.exp(v)
        return np.outer(w, w) * G + np.diag(k * c * w ** (1 - k) + gradient(v))

    start = optimize.minimize(
        potential,
        np.zeros(len(p)),
        jac=gradient,
        hess=hessian,
        method="trust-exact",
        options={"gtol": 1e-12, "maxiter": 5000},
    ).x

    def equations(v):
        return np.log(G @ np.exp(v)) + k * v - np.log(c)

    def jacobian(v):
        w = np.exp(v)
        return G * w[None, :] / (G @ w)[:, None] + k * np.eye(len(v))

    root = optimize.root(equations, start, jac=jacobian, method="hybr", options={"xtol": 1e-15})
    assert np.abs(equations(root.x)).max() < 1e-6  # each equation to 1e-6 of its size
    return np.exp(root.x)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize(
    "scales",
    [
        [1e-6, 1.0, 1.0],  # the issue's cases: one task's gradient ~1e-6 of the others' ...
        [2e-5, 1.0, 1.0],  # ... or ~2e-5 (at alpha = 5), where a fixed weight cap rejected it
        [1e-6, 1e-2, 1.0, 1e3],
        [1e-6, 1e-3, 1.0, 10.0, 1e3],
    ],
)
def test_fairgrad_matches_a_scipy_oracle_on_badly_scaled_rows(scales, alpha):
    g = np.random.default_rng(len(scales))
    J = g.standard_normal((len(scales), 30)) * np.array(scales)[:, None]
    w_oracle = fairgrad_oracle(J @ J.T, np.ones(len(scales)), alpha)
    agg = aggregation.make("fairgrad", alpha=alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback, no warning: the solution exists
        d = agg(torch.tensor(J)).numpy()
    assert agg.stats["solver_failures"] == 0
    d_oracle = J.T @ w_oracle
    assert np.linalg.norm(d - d_oracle) <= 1e-7 * np.linalg.norm(d_oracle)
    np.testing.assert_allclose(agg.last_weights.numpy(), w_oracle, rtol=1e-5)


def test_fairgrad_alpha_zero_is_linear_scalarisation():
    J = random_jacobian(4, 10, torch.float64)
    p = torch.tensor([1.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    assert_close_vec(aggregation.make("fairgrad", alpha=0.0)(J, weights=p), p @ J, 1e-12)
    # torchjd's alpha = 0 is the mean: ours is T times it
    assert_close_vec(aggregation.make("fairgrad", alpha=0.0)(J), 4 * tjd.FairGrad(0.0)(J), 1e-12)


@pytest.mark.parametrize(("T", "n", "dtype"), CASES, ids=IDS)
def test_sdmgrad_matches_torchjd_over_several_steps(T, n, dtype):
    ours = aggregation.make("sdmgrad")
    ref = tjd.SDMGradWeighting()
    for step in range(3):
        J = random_jacobian(T, n, dtype, seed=step)
        d = ours(J)
        # the inner heavy-ball iteration (lr 10) amplifies rounding: feed both the same Gram
        expected = T * ref(aggregation.gram_matrix(J).double()).to(dtype) @ J
        assert_close_vec(d, expected, 1e-3 if dtype == torch.float32 else 1e-5)


@pytest.mark.parametrize(("T", "n", "dtype"), CASES, ids=IDS)
def test_modo_matches_torchjd_over_several_steps(T, n, dtype):
    raw = aggregation.make("modo", normalize=False, gamma=0.01, rho=0.1)
    ref = tjd.MoDoWeighting(gamma=0.01, rho=0.1)
    normalized = aggregation.make("modo")
    ref_n = tjd.MoDoWeighting(gamma=0.1, rho=0.1)
    for step in range(3):
        J = random_jacobian(T, n, dtype, seed=step)
        G = J.double() @ J.double().T
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        raw(J)
        assert_close_vec(raw.last_weights, ref(G), tol)
        normalized(J)
        assert_close_vec(normalized.last_weights, ref_n(G / G.diagonal().mean()), tol)


@pytest.mark.parametrize("warmup", [0, 2])
@pytest.mark.parametrize(("T", "n", "dtype"), CASES, ids=IDS)
def test_excess_mtl_matches_torchjd_over_several_steps(T, n, dtype, warmup):
    ours = aggregation.make("excess-mtl", warmup=warmup, robust_step_size=0.5)
    ref = tjd.ExcessMTL(robust_step_size=0.5, n_warmup_steps=warmup)
    for step in range(5):
        J = random_jacobian(T, n, dtype, seed=step) / 10
        expected = T * ref(J.double()).to(dtype)
        assert_close_vec(ours(J), expected, 1e-4 if dtype == torch.float32 else 1e-9)


# ------------------------------------------------------------------ simplex / QP
@pytest.mark.parametrize("seed", range(6))
def test_simplex_projection_matches_cvxpy(seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(7, generator=gen, dtype=torch.float64) * (1 + 3 * seed)
    x = cp.Variable(7)
    cp.Problem(cp.Minimize(cp.sum_squares(x - y.numpy())), [x >= 0, cp.sum(x) == 1]).solve(
        cp.CLARABEL
    )
    torch.testing.assert_close(
        project_onto_simplex(y), torch.from_numpy(x.value), atol=1e-6, rtol=0
    )


# ------------------------------------------------------------------ autograd of scalarisations
def autograd_weights(scalarisation, losses: torch.Tensor) -> torch.Tensor:
    L = losses.clone().double().requires_grad_(True)
    (grad,) = torch.autograd.grad(scalarisation(L), L)
    return grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_gls_weights_are_the_gradient_of_the_geometric_mean(dtype):
    J = random_jacobian(5, 20, dtype)
    losses = torch.tensor([0.3, 1.0, 2.5, 7.0, 0.05], dtype=dtype)
    agg = aggregation.make("gls")
    d = agg(J, losses=losses)
    grad = autograd_weights(lambda L: (L + 1e-8).prod() ** (1 / 5), losses)
    torch.testing.assert_close(agg.last_weights.double(), 5 * grad, rtol=1e-5, atol=0)
    assert_close_vec(d, (5 * grad).to(dtype) @ J, rel_tol(dtype))
    p = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0], dtype=dtype)
    agg(J, losses=losses, weights=p)
    grad = autograd_weights(
        lambda L: torch.exp((p.double() * (L + 1e-8).log()).sum() / p.sum()), losses
    )
    torch.testing.assert_close(agg.last_weights.double(), p.sum() * grad, rtol=1e-5, atol=0)


@pytest.mark.parametrize("mu", [0.1, 1.0, 10.0])
def test_stch_weights_are_the_gradient_of_the_smooth_tchebycheff(mu):
    agg = aggregation.make("stch", mu=mu, ideal="running-min")
    J = random_jacobian(4, 10, torch.float64)
    p = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    history = [torch.tensor(v, dtype=torch.float64) for v in ([1, -2, 3, 0.5], [0.5, -1, 4, 0])]
    ideal = torch.minimum(history[0], history[1])
    agg(J, losses=history[0], weights=p)
    agg(J, losses=history[1], weights=p)
    grad = autograd_weights(lambda L: mu * torch.logsumexp(p * (L - ideal) / mu, dim=0), history[1])
    torch.testing.assert_close(agg.last_weights, 4 * grad)


def test_famo_matches_an_explicit_autograd_and_adam_loop():
    """The reference's formulation: logits xi with Adam(lr, weight_decay=gamma), weights from
    the gradient of sum z log L / c, the logit gradient by autograd through softmax."""
    lr, gamma, T = 0.05, 0.01, 3
    agg = aggregation.make("famo", lr=lr, gamma=gamma)
    xi = torch.zeros(T, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([xi], lr=lr, weight_decay=gamma)
    J = torch.eye(T, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    previous = None
    for _ in range(8):
        losses = torch.rand(T, generator=gen, dtype=torch.float64) * 3 + 0.1
        D = losses + 1e-8
        if previous is not None:
            delta = previous.log() - D.log()
            (grad,) = torch.autograd.grad(torch.softmax(xi, -1), xi, grad_outputs=delta)
            opt.zero_grad()
            xi.grad = grad
            opt.step()
        previous = D
        z = torch.softmax(xi.detach(), -1)
        c = (z / D).sum()
        expected = T * autograd_weights(lambda L, z=z, c=c: (z * L.log() / c).sum(), D)
        agg(J, losses=losses)
        torch.testing.assert_close(agg.last_weights, expected)
    assert not torch.allclose(agg.last_weights, torch.ones(T, dtype=torch.float64))


# ------------------------------------------------------------------ explicit loops
def test_db_mtl_matches_an_explicit_loop():
    beta, sigma = 0.9, 0.5
    agg = aggregation.make("db-mtl", beta=beta, beta_sigma=sigma)
    p = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    buffer = None
    for k in range(1, 5):
        J = random_jacobian(3, 8, torch.float64, seed=k)
        losses = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64) * k
        rows = [J[i] / (losses[i] + 1e-8) for i in range(3)]
        if buffer is None:
            buffer = rows
        else:
            b_k = beta / k**sigma
            buffer = [rows[i] + b_k * (buffer[i] - rows[i]) for i in range(3)]
        largest = max(float(b.norm()) for b in buffer)
        expected = sum(p[i] * largest * buffer[i] / buffer[i].norm() for i in range(3))
        assert_close_vec(agg(J, losses=losses, weights=p), expected, 1e-12)


def test_moco_matches_an_explicit_loop_with_cvxpy_projection():
    beta, bs, gamma, gs, rho = 0.5, 0.5, 0.3, 0.5, 0.1
    agg = aggregation.make(
        "moco", beta=beta, beta_sigma=bs, gamma=gamma, gamma_sigma=gs, rho=rho, normalize=False
    )
    T = 4
    Y, lam = None, np.full(T, 1.0 / T)
    for k in range(1, 5):
        J = random_jacobian(T, 10, torch.float64, seed=k) / 5
        Jn = J.numpy()
        Y = Jn.copy() if Y is None else Y - beta / k**bs * (Y - Jn)
        y = lam - gamma / k**gs * ((Y @ Y.T) @ lam + rho * lam)
        x = cp.Variable(T)
        cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [x >= 0, cp.sum(x) == 1]).solve(cp.CLARABEL)
        lam = np.clip(x.value, 0, None)
        d = agg(J)
        assert_close_vec(d, torch.from_numpy(Y.T @ lam), 1e-6)
        torch.testing.assert_close(agg.last_weights, torch.from_numpy(lam), atol=1e-7, rtol=0)


# ------------------------------------------------------------------ closed forms, T = 2
def two_tasks(cos: float, norms=(1.0, 3.0)) -> torch.Tensor:
    theta = math.acos(cos)
    return torch.tensor(
        [[norms[0], 0.0, 0.0], [norms[1] * math.cos(theta), norms[1] * math.sin(theta), 0.0]],
        dtype=torch.float64,
    )


@pytest.mark.parametrize("cos", [-0.9, -0.3, 0.0, 0.5, 0.95])
def test_config_two_tasks_bisects_the_unit_gradients(cos):
    """For two tasks, equal cosines means the direction is along u_1 + u_2; its length is the
    sum of the projections of g_1 and g_2 on it."""
    J = two_tasks(cos)
    u = J / J.norm(dim=1, keepdim=True)
    unit = (u[0] + u[1]) / (u[0] + u[1]).norm()
    expected = (J @ unit).sum() * unit
    assert_close_vec(aggregation.make("config-grad")(J), expected, 1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_fairgrad_orthogonal_tasks_closed_form(alpha):
    """Orthogonal gradients: |g_i|^2 w_i = w_i^(-1/alpha), so w_i = |g_i|^(-2 alpha/(1+alpha))."""
    J = torch.diag(torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64))
    agg = aggregation.make("fairgrad", alpha=alpha)
    agg(J)
    torch.testing.assert_close(agg.last_weights, J.diagonal() ** (-2 * alpha / (1 + alpha)))


@pytest.mark.parametrize("cos", [-0.9, -0.5])
def test_dualproj_two_conflicting_tasks_closed_form(cos):
    """If g_1 + g_2 conflicts with g_1 (the short one), the projection onto the dual cone lands
    on the face g_1^T d = 0: d = s - (g_1^T s / |g_1|^2) g_1 with s = g_1 + g_2."""
    J = two_tasks(cos, norms=(1.0, 3.0))
    s = J.sum(0)
    assert float(J[0] @ s) < 0
    expected = s - (J[0] @ s) / (J[0] @ J[0]) * J[0]
    d = aggregation.make("dualproj")(J)
    assert_close_vec(d, expected, 1e-9)
    # no conflict left: d is orthogonal to g_1, positive on g_2
    assert abs(float(J[0] @ d)) < 1e-9 and float(J[1] @ d) > 0


def test_upgrad_and_dualproj_leave_non_conflicting_gradients_unchanged():
    J = two_tasks(0.5)
    assert_close_vec(aggregation.make("upgrad")(J), J.sum(0), 1e-10)
    assert_close_vec(aggregation.make("dualproj")(J), J.sum(0), 1e-10)
