"""Gradient-flow diagnostic: norms keep their true magnitude far below float32's squared range."""

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import longrange
from rnnbench import diagnostics

# per input step t: the scale of every component of dLoss/dx_t, from normal to ~1e-30
SCALES = np.array([0.0, 0.5, 1e-10, 3e-19, 1e-20, 4e-25, 1e-30, 2.0, 1.0, 7.0], np.float32)
F = 9  # features: a component s gives ||.||_2 = 3 s


def _fake_gradients(monkeypatch, grads, t_valid):
    def input_gradients(config, params=None, dataset=None, *, batch_size=32, seed=0):
        return jnp.asarray(grads), t_valid

    monkeypatch.setattr(diagnostics, "input_gradients", input_gradients)


def test_known_tiny_and_normal_norms(monkeypatch):
    """Example 0 has every component = s_t, example 1 = -2 s_t: mean norm 0.5 (3 + 6) s_t. The
    last two steps lie past the valid length; the result is indexed by distance from step 7."""
    grads = np.stack(
        [np.repeat(SCALES[:, None], F, 1), np.repeat(-2 * SCALES[:, None], F, 1)]
    )  # [B=2, T=10, F]
    # the case is in the regime that broke the float32 sum of squares
    old = np.asarray(jnp.sqrt(jnp.square(jnp.asarray(grads)).sum(-1)).mean(0))
    assert old[4] == 0 and old[5] == 0 and old[6] == 0

    _fake_gradients(monkeypatch, grads, t_valid=8)
    flow = diagnostics.gradient_flow(None)
    expected = 4.5 * SCALES.astype(np.float64)[:8][::-1]  # distance 0 = step 7
    np.testing.assert_array_equal(flow["distance"], np.arange(8))
    np.testing.assert_allclose(flow["grad_norm"], expected, rtol=1e-6, atol=0)
    assert flow["grad_norm"][1] == pytest.approx(4.5e-30, rel=1e-6)
    assert flow["grad_norm"][2] == pytest.approx(1.8e-24, rel=1e-6)
    assert flow["grad_norm"][7] == 0.0
    np.testing.assert_allclose(flow["relative"], expected / 9.0, rtol=1e-6, atol=0)


def test_mixed_components_within_one_step(monkeypatch):
    """One step with components 3e-26 and 4e-26 (norm 5e-26) next to a step of 3 and 4 (norm 5)."""
    grads = np.zeros((1, 2, 4), np.float32)
    grads[0, 0, :2] = 3e-26, 4e-26
    grads[0, 1, 2:] = 3.0, 4.0
    _fake_gradients(monkeypatch, grads, t_valid=2)
    flow = diagnostics.gradient_flow(None)
    np.testing.assert_allclose(flow["grad_norm"], [5.0, 5e-26], rtol=1e-6, atol=0)
    np.testing.assert_allclose(flow["relative"], [1.0, 1e-26], rtol=1e-6, atol=0)


def test_untrained_mingru_far_back_is_not_zero(monkeypatch):
    """The issue's case: an untrained minGRU on adding T=200; 63 steps back every component is
    below 1.1e-19 (its float32 square underflows), yet the norm matches float64 of the same
    gradients and keeps decaying instead of dropping to 0."""
    seen = []
    real = diagnostics.input_gradients

    def recording(*args, **kwargs):  # gradient_flow's own gradients, for the reference
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(diagnostics, "input_gradients", recording)
    c = longrange.make_config("adding", "mingru", 200, 0, 10)
    flow = diagnostics.gradient_flow(c, batch_size=4)
    grads, t_valid = seen[0]
    g = np.asarray(grads, np.float64)[:, :t_valid][:, ::-1]  # [B, distance, F]
    reference = np.linalg.norm(g, axis=-1).mean(0)
    assert t_valid == 200
    np.testing.assert_allclose(flow["grad_norm"], reference, rtol=1e-6, atol=0)
    d = 63
    assert np.abs(g[:, d]).max() < 1.1e-19 and 1e-25 < reference[d] < 1e-18
    old = np.asarray(jnp.sqrt(jnp.square(grads).sum(-1)).mean(0))[:t_valid][::-1]
    assert old[d] == 0.0  # what the plots used to show
    assert flow["grad_norm"][50] > flow["grad_norm"][d] > flow["grad_norm"][80] > 0
    # the normal range is unchanged: near the readout the float32 sum agrees
    np.testing.assert_allclose(flow["grad_norm"][:10], old[:10], rtol=1e-5)
    assert flow["relative"][0] == 1.0
