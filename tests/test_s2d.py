"""zipfrmt.mitigate.s2d: the S2D penalty, its gradient, PCDR selection and the optax transform."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import power_law_np

from zipfrmt.mitigate import s2d as S


def _sv(W) -> np.ndarray:
    return np.linalg.svd(np.asarray(W, np.float64), compute_uv=False)


# --- penalty and gradient -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,n", [(1, 2.0), (2, 2.0), (3, 3.0), (2, 1.0), (4, 1.5)])
def test_gradient_equals_jax_grad_of_the_penalty(k, n):
    W = jax.random.normal(jax.random.key(k), (20, 12), jnp.float32)
    lam = 0.3
    auto = jax.grad(lambda w: S.s2d_penalty(w, k, n=n, lam=lam))(W)
    closed = S.s2d_gradient(W, k, n=n, lam=lam)
    np.testing.assert_allclose(closed, auto, atol=2e-5 * float(jnp.max(jnp.abs(auto))))


def test_penalty_matches_its_formula():
    W = power_law_np(16, 10, 1.0)  # σ_k = 1/k
    got = float(S.s2d_penalty(W, 3, n=2, lam=0.6))
    assert got == pytest.approx(0.6 / 3 * (1 + 1 / 8 + 1 / 27), rel=1e-5)
    assert float(S.s2d_penalty(W, 0)) == 0.0


def test_n1_over_all_components_is_l2_decay():
    W = jax.random.normal(jax.random.key(1), (15, 9), jnp.float32)
    np.testing.assert_allclose(S.s2d_gradient(W, 9, n=1, lam=0.2), 0.2 * W, atol=2e-6)
    assert float(S.s2d_penalty(W, 9, n=1, lam=0.2)) == pytest.approx(0.1 * float(jnp.sum(W * W)), rel=1e-5)


def test_decay_spectrum_is_the_gradient_flow():
    s = jnp.asarray([2.0, 1.0, 0.5, 0.25])
    t, lam = 3.0, 0.1
    euler = np.array(s, np.float64)
    steps = 30000
    for _ in range(steps):
        euler[:2] -= (t / steps) * lam * euler[:2] ** 2
    np.testing.assert_allclose(S.decay_spectrum(s, 2, t, n=2, lam=lam), np.sort(euler)[::-1], rtol=1e-4)
    np.testing.assert_allclose(S.decay_spectrum(s, 1, t, n=1, lam=lam)[0], 2.0 * np.exp(-0.3), rtol=1e-6)


# --- PCDR -----------------------------------------------------------------------------------------------------


def test_pcdr_selects_no_component_when_tau_is_not_reached():
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((32, 32)))[0].astype(np.float32)  # flat spectrum
    X = np.random.default_rng(1).standard_normal((128, 32)).astype(np.float32)
    sel = S.select_k_pcdr(Q, X, tau=0.95, k_max=3)
    assert sel.k == 0
    assert np.all(sel.pcdr < 0.95)


def test_pcdr_finds_a_dominant_component():
    rng = np.random.default_rng(2)
    u, v = rng.standard_normal(24), rng.standard_normal(16)
    W = (20 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v)) + 0.01 * rng.standard_normal((24, 16)))
    X = rng.standard_normal((64, 24))
    sel = S.select_k_pcdr(W.astype(np.float32), X.astype(np.float32))
    assert sel.k == 1 and sel.pcdr[0] > 0.95
    assert sel.n_outliers == 1  # 0.1% of 64·16 entries, at least one
    # PCDR with every component equals 1 on any entry
    r = S.pcdr(W.astype(np.float32), X.astype(np.float32), 16, outlier_fraction=0.05)
    assert float(r[-1]) == pytest.approx(1.0, abs=1e-3)


def test_select_k_tree_reads_activations_by_path():
    rng = np.random.default_rng(3)
    spike = (10 * np.outer(rng.standard_normal(8), rng.standard_normal(6)) + 0.01 * rng.standard_normal((8, 6)))
    params = {"a": {"kernel": spike.astype(np.float32)},
              "b": {"kernel": np.linalg.qr(rng.standard_normal((6, 6)))[0].astype(np.float32)},
              "bias": np.zeros(6, np.float32)}
    acts = {("a",): rng.standard_normal((4, 5, 8)).astype(np.float32),  # by module path, batch axes flattened
            "b/kernel": rng.standard_normal((50, 6)).astype(np.float32)}
    assert S.select_k_tree(params, acts) == {"a/kernel": 1, "b/kernel": 0}
    with pytest.raises(ValueError, match="activations: no calibration activations"):
        S.select_k_tree(params, {("a",): acts[("a",)]})


def test_select_k_tree_takes_a_tied_embedding_as_used_transposed():
    rng = np.random.default_rng(4)
    E = (10 * np.outer(rng.standard_normal(40), rng.standard_normal(8)) + 0.01 * rng.standard_normal((40, 8)))
    head_inputs = rng.standard_normal((30, 8)).astype(np.float32)  # y = x Eᵀ: inputs have E's second width
    assert S.select_k_tree({"embed": {"embedding": E.astype(np.float32)}},
                           {"embed/embedding": head_inputs}) == {"embed/embedding": 1}


def test_decay_spectrum_below_n1_stops_at_zero():
    s = jnp.asarray([1.0, 0.1])
    out = np.asarray(S.decay_spectrum(s, k=2, t=10.0, n=0.5, lam=1.0))
    assert np.all(out >= 0) and np.all(out <= np.asarray(s))


# --- the optax transform -------------------------------------------------------------------------------------


def _params():
    return {
        "enc": {"kernel": jnp.asarray(power_law_np(24, 16, 1.0, seed=1)), "bias": jnp.ones(16)},
        "dec": {"kernel": jnp.asarray(power_law_np(16, 12, 1.0, seed=2))},
    }


def _only_enc(path, x):
    return path[0] == "enc" and x.ndim == 2


def test_one_step_reduces_sigma1_of_selected_layer_and_leaves_others_unchanged():
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = optax.chain(S.s2d(lam=0.5, n=2, k=1, every=100, param_filter=_only_enc),
                     optax.adamw(1e-2, weight_decay=0.0))
    state = tx.init(params)
    upd, _ = jax.jit(tx.update)(zeros, state, params)
    new = optax.apply_updates(params, upd)
    assert _sv(new["enc"]["kernel"])[0] < _sv(params["enc"]["kernel"])[0] - 1e-3
    np.testing.assert_array_equal(new["dec"]["kernel"], params["dec"]["kernel"])
    np.testing.assert_array_equal(new["enc"]["bias"], params["enc"]["bias"])


def test_sgd_step_moves_exactly_the_top_k_singular_values():
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    lr, lam = 0.2, 0.5
    tx = optax.chain(S.s2d(lam=lam, n=2, k={"enc/kernel": 2}, every=10), optax.sgd(lr))
    upd, state = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, upd)
    s0 = _sv(params["enc"]["kernel"])
    want = s0.copy()
    want[:2] -= lr * lam * s0[:2] ** 2
    np.testing.assert_allclose(_sv(new["enc"]["kernel"]), np.sort(want)[::-1], atol=2e-6)
    np.testing.assert_array_equal(new["dec"]["kernel"], params["dec"]["kernel"])  # k = 0 there
    assert int(state[0].k["dec/kernel"]) == 0


def test_svd_is_refreshed_every_m_steps_and_sigma_tracked_between():
    params = _params()
    tx = optax.chain(S.s2d(lam=0.5, n=2, k=1, every=3), optax.sgd(0.1))
    state = tx.init(params)
    step = jax.jit(tx.update)
    us, sigmas, added = [], [], []
    for _ in range(5):
        zeros = jax.tree.map(jnp.zeros_like, params)
        upd, state = step(zeros, state, params)
        s2d_state = state[0]
        us.append(np.asarray(s2d_state.u["enc/kernel"]))
        sigmas.append(np.asarray(s2d_state.sigma["enc/kernel"]))
        added.append(-np.asarray(upd["enc"]["kernel"]) / 0.1)
        params = optax.apply_updates(params, upd)
    assert int(state[0].count) == 5
    np.testing.assert_array_equal(us[0], us[1])  # cached at steps 1, 2
    np.testing.assert_array_equal(us[1], us[2])
    np.testing.assert_array_equal(sigmas[0], sigmas[2])
    assert sigmas[3][0] < sigmas[0][0]  # refreshed at step 3, after the shrinking
    # between refreshes the singular value is re-estimated: the term's norm is λσ̂², σ̂ = u1ᵀ W v1 shrinking
    norms = [np.linalg.norm(a) for a in added]
    assert norms[0] > norms[1] > norms[2]


def test_state_is_a_deterministic_pytree_of_arrays():
    params = _params()
    tx = S.s2d(k=2, every=2)
    zeros = jax.tree.map(jnp.zeros_like, params)
    runs = []
    for _ in range(2):
        st = tx.init(params)
        for _ in range(3):
            _, st = tx.update(zeros, st, params)
        runs.append(st)
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1]), strict=True):
        assert isinstance(a, jax.Array)
        np.testing.assert_array_equal(a, b)
    assert set(runs[0].u) == {"enc/kernel", "dec/kernel"}


def test_works_on_an_nnx_state():
    from flax import nnx

    class Two(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(8, 6, rngs=rngs)
            self.out = nnx.Linear(6, 4, rngs=rngs)

    params = nnx.state(Two(nnx.Rngs(0)), nnx.Param)
    tx = S.s2d(lam=1.0, k=1, param_filter=lambda p, x: p == ("lin", "kernel"))
    state = tx.init(params)
    assert list(state.u) == ["lin/kernel"]
    zeros = jax.tree.map(jnp.zeros_like, params)
    upd, _ = tx.update(zeros, state, params)
    assert float(jnp.abs(upd["lin"]["kernel"][...]).max()) > 0
    assert float(jnp.abs(upd["out"]["kernel"][...]).max()) == 0


# --- bad input -----------------------------------------------------------------------------------------------


def test_bad_input_is_rejected_with_the_argument_named():
    W = power_law_np(12, 8, 1.0)
    X = np.ones((10, 12), np.float32)
    for tau in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="tau"):
            S.select_k_pcdr(W, X, tau=tau)
    with pytest.raises(ValueError, match="k_max"):
        S.select_k_pcdr(W, X, k_max=0)
    with pytest.raises(ValueError, match="X: expected calibration activations of width d_in=12"):
        S.select_k_pcdr(W, np.ones((10, 8), np.float32))
    with pytest.raises(ValueError, match="lam"):
        S.s2d(lam=-1.0)
    with pytest.raises(ValueError, match="every"):
        S.s2d(every=0)
    with pytest.raises(ValueError, match="n"):
        S.s2d_gradient(W, 1, n=0.0)
    with pytest.raises(ValueError, match="k"):
        S.s2d_gradient(W, 9)
    params = _params()
    with pytest.raises(ValueError, match="param_filter: selected 'enc/bias'"):
        S.s2d(param_filter=lambda p, x: p[0] == "enc").init(params)
    with pytest.raises(ValueError, match="k: names"):
        S.s2d(k={"nope/kernel": 1}).init(params)
    with pytest.raises(ValueError, match="params"):
        tx = S.s2d()
        tx.update(params, tx.init(params), None)


@pytest.mark.parametrize("shape", [(24, 10), (10, 24)])  # tall and wide: the Gram matrix of the smaller side
def test_refresh_step_adds_the_closed_form_gradient(shape):
    W = jnp.asarray(power_law_np(*shape, 0.8, seed=7))
    params = {"w": W}
    tx = S.s2d(lam=0.7, n=2, k=3)
    upd, _ = tx.update({"w": jnp.zeros_like(W)}, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], S.s2d_gradient(W, 3, n=2, lam=0.7), atol=1e-5)


def test_in_the_training_optimizer_the_s2d_gradient_is_added_after_the_clip():
    """docs/mitigations.md, S2D choice 4: ``make_optimizer`` chains clip → extra_transform → AdamW, so S2D sees
    the clipped loss gradient and what it adds is never clipped: clip(g) + ∂L/∂W, not clip(g + ∂L/∂W)."""
    from zipfrmt.nn import TrainConfig
    from zipfrmt.nn.optim import make_optimizer

    params = _params()
    seen = {}

    def record(name):
        def update(updates, state, params=None):
            seen[name] = updates
            return updates, state

        return optax.GradientTransformation(lambda p: optax.EmptyState(), update)

    lam = 50.0
    extra = optax.chain(record("in"), S.s2d(lam=lam, n=2, k=1, every=100, param_filter=_only_enc), record("out"))
    tx = make_optimizer(TrainConfig(grad_clip=1.0), extra)
    g = jax.tree.map(lambda x: 100.0 * jnp.ones_like(x), params)
    tx.update(g, tx.init(params), params)  # eager, so the recorders see concrete arrays
    assert float(optax.tree.norm(seen["in"])) == pytest.approx(1.0, rel=1e-5)  # the loss gradient is clipped
    added = S.s2d_gradient(params["enc"]["kernel"], 1, n=2, lam=lam)
    np.testing.assert_allclose(seen["out"]["enc"]["kernel"], seen["in"]["enc"]["kernel"] + added, rtol=1e-4,
                               atol=1e-4 * float(jnp.max(jnp.abs(added))))
    assert float(optax.tree.norm(seen["out"])) > 10.0  # the sum is not clipped back to 1


# --- PCDR with zero outputs ----------------------------------------------------------------------------------


def test_pcdr_without_a_nonzero_output_is_an_error_not_nan():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((32, 16)).astype(np.float32)
    X = rng.standard_normal((50, 32)).astype(np.float32)
    for w, x in ((W, np.zeros_like(X)), (np.zeros_like(W), X)):
        with pytest.raises(ValueError, match=r"X, W: expected calibration activations with a nonzero output"):
            S.pcdr(w, x)
        with pytest.raises(ValueError, match=r"X, W: expected .* Y = 0 everywhere"):
            S.select_k_pcdr(w, x)


def test_pcdr_excludes_outputs_that_are_zero():
    """Outliers with y = 0 (0/0) are left out of the mean: here only the first sample's outputs are nonzero."""
    rng = np.random.default_rng(1)
    W = power_law_np(24, 16, 1.0, seed=3)
    X = np.zeros((20, 24), np.float32)
    X[0] = rng.standard_normal(24)
    got = np.asarray(S.pcdr(W, X, 3, outlier_fraction=1.0))
    want = np.asarray(S.pcdr(W, X[:1], 3, outlier_fraction=1.0))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert S.select_k_pcdr(W, X, k_max=3, outlier_fraction=1.0).n_outliers == 16


def test_pcdr_is_scale_invariant():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((32, 16)).astype(np.float32)
    X = rng.standard_normal((50, 32)).astype(np.float32)
    base = np.asarray(S.pcdr(W, X, 3, outlier_fraction=0.05))
    np.testing.assert_array_equal(S.pcdr(W * np.float32(2.0**60), X * np.float32(2.0**70), 3, outlier_fraction=0.05),
                                  base)  # Y = XW ~ 2^130 overflowed float32
    np.testing.assert_allclose(S.pcdr(W * np.float32(1e-20), X * np.float32(1e-20), 3, outlier_fraction=0.05), base,
                               rtol=1e-4)


# --- decay_spectrum at any scale -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("scale", [1e-35, 1e-20, 1.0, 1e20, 1e35])
def test_decay_spectrum_at_t0_returns_sigma_unchanged(n, scale):
    """A 1e-30 clamp and float32 powers gave 2e4·σ at 1e-35, 0.69·σ at 1e-20 (n = 3) and inf at 1e20."""
    s = (np.asarray([3.0, 2.0, 1.0, 0.5]) * scale).astype(np.float32)
    np.testing.assert_array_equal(S.decay_spectrum(s, 3, 0.0, n=n), s)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_decay_spectrum_is_scale_covariant(n, scale):
    """σ(c·s, t/c^(n−1)) = c·σ(s, t): the flow σ̇ = −λσ^n in units of c."""
    s = np.asarray([3.0, 2.0, 1.0, 0.5], np.float32)
    base = np.asarray(S.decay_spectrum(s, 2, 0.3, n=n, lam=1.0), np.float64)
    got = np.asarray(S.decay_spectrum((s * scale).astype(np.float32), 2, 0.3 / scale ** (n - 1), n=n, lam=1.0),
                     np.float64)
    np.testing.assert_allclose(got / scale, base, rtol=1e-5)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0])
def test_decay_spectrum_keeps_zero_values_at_zero(n):
    out = np.asarray(S.decay_spectrum(np.asarray([2.0, 0.0, 0.0], np.float32), 3, 1.0, n=n))
    assert out[0] > 0
    np.testing.assert_array_equal(out[1:], 0.0)  # the clamp made them 1e-30
    np.testing.assert_array_equal(S.decay_spectrum(np.zeros(3, np.float32), 2, 1.0, n=n), 0.0)


def test_decay_spectrum_rejects_ascending_or_negative_sigma():
    with pytest.raises(ValueError, match=r"sigma: expected singular values in descending order .* σ_1 = 1 < σ_2 = 2"):
        S.decay_spectrum(np.asarray([1.0, 2.0, 3.0], np.float32), 2, 1.0)
    with pytest.raises(ValueError, match=r"sigma: expected non-negative singular values, got 1 negative"):
        S.decay_spectrum(np.asarray([3.0, 2.0, -1.0], np.float32), 2, 1.0)
    with pytest.raises(ValueError, match=r"sigma: expected entries within float32's range"):
        S.decay_spectrum(np.asarray([1e50, 1.0]), 1, 1.0)


# --- the penalty and gradient at any scale -------------------------------------------------------------------


def test_s2d_gradient_is_scale_covariant_and_never_nan():
    """σ^n in float32 overflowed: W·1e19 gave NaN (inf·0) and W·1e18 inf, though λσ^n·u vᵀ fits float32."""
    W = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    g = np.asarray(S.s2d_gradient(W, 2), np.float64)
    for m in (60, -40):
        got = np.asarray(S.s2d_gradient(W * np.float32(2.0**m), 2), np.float64)
        np.testing.assert_allclose(got / 2.0 ** (2 * m), g, atol=1e-5 * np.abs(g).max())
    for c in (1e18, 1e19):
        got = np.asarray(S.s2d_gradient(W * np.float32(c), 2), np.float64)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got / c**2, g, atol=1e-4 * np.abs(g).max())


def test_s2d_penalty_is_scale_covariant():
    W = np.random.default_rng(1).standard_normal((20, 12)).astype(np.float32)
    p = float(S.s2d_penalty(W, 3, n=2, lam=0.5))
    assert float(S.s2d_penalty(W * np.float32(2.0**40), 3, n=2, lam=0.5)) == pytest.approx(p * 2.0**120, rel=1e-5)
    assert float(S.s2d_penalty(W * np.float32(2.0**-40), 3, n=2, lam=0.5)) == pytest.approx(p * 2.0**-120, rel=1e-5)


def test_s2d_results_beyond_float32_are_errors():
    W = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"W: expected a matrix whose S2D gradient fits float32 .* σ_1 = "):
        S.s2d_gradient(W * np.float32(1e25), 2)
    with pytest.raises(ValueError, match=r"W: expected a matrix whose S2D penalty fits float32"):
        S.s2d_penalty(W * np.float32(1e25), 2)
    with pytest.raises(ValueError, match=r"W: expected entries within float32's range"):  # float64 was cast to inf
        S.s2d_gradient(W.astype(np.float64) * 1e50, 2)


def test_transform_term_is_scale_covariant_and_finite():
    W = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    params = {"w": jnp.asarray(W * np.float32(2.0**63))}
    tx = S.s2d(lam=5e-4, n=2, k=2)
    upd, state = tx.update({"w": jnp.zeros_like(params["w"])}, tx.init(params), params)
    assert np.all(np.isfinite(np.asarray(upd["w"])))  # was NaN: the Gram matrix and σ^n overflowed
    g = np.asarray(S.s2d_gradient(W, 2), np.float64)
    np.testing.assert_allclose(np.asarray(upd["w"], np.float64) / 2.0**126, g, atol=1e-4 * np.abs(g).max())
    upd2, _ = tx.update({"w": jnp.zeros_like(params["w"])}, state, params)  # between refreshes: σ̂ re-estimated
    np.testing.assert_allclose(np.asarray(upd2["w"], np.float64) / 2.0**126, g, atol=1e-4 * np.abs(g).max())


# --- select_k_tree and the transform: named errors -----------------------------------------------------------


def test_select_k_tree_rejects_activations_that_are_not_a_mapping():
    W = power_law_np(12, 8, 1.0)
    with pytest.raises(TypeError, match="activations: expected a mapping from weight paths"):
        S.select_k_tree({"lin": {"kernel": W}}, [np.ones((10, 12), np.float32)])


def test_select_k_tree_names_the_weight_whose_activations_have_the_wrong_width():
    W = power_law_np(12, 8, 1.0)
    with pytest.raises(ValueError, match=r"activations\['lin/kernel'\]: expected calibration activations of width "
                                         r"d_in=12 for the selected weight 'lin/kernel'"):
        S.select_k_tree({"lin": {"kernel": W}}, {"lin/kernel": np.ones((10, 5), np.float32)})


def test_update_rejects_updates_of_a_different_structure():
    params = _params()
    tx = S.s2d(k=1)
    state = tx.init(params)
    # the same number of leaves, another structure: 'a/kernel' where params has 'dec/kernel'
    swapped = {"a": {"kernel": jnp.zeros((16, 12))}, "enc": {"bias": jnp.zeros(16), "kernel": jnp.zeros((24, 16))}}
    with pytest.raises(ValueError, match="updates: expected the structure of params; leaf 0 is 'a/kernel'"):
        tx.update(swapped, state, params)
    transposed = jax.tree.map(jnp.zeros_like, params)
    transposed["enc"]["kernel"] = jnp.zeros((16, 24))
    with pytest.raises(ValueError, match=r"updates: expected 'enc/kernel' of shape \(24, 16\)"):
        tx.update(transposed, state, params)


def test_update_rejects_k_beyond_the_cached_components():
    params = _params()
    tx = S.s2d(k=2)
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    bad = state._replace(k={**state.k, "enc/kernel": jnp.asarray(5, jnp.int32)})  # K = 2 was silently used
    with pytest.raises(ValueError, match=r"state.k\['enc/kernel'\]: expected an integer in \[0, 2\]"):
        tx.update(zeros, bad, params)
    tx.update(zeros, state._replace(k={**state.k, "enc/kernel": jnp.asarray(1, jnp.int32)}), params)  # k ≤ K is fine
