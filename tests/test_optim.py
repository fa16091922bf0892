"""Optimisers, schedules and penalties (rnnbench.optim) against hand-computed updates and values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from rnnbench import optim

P0 = {"w": jnp.array([[1.0, -2.0], [3.0, 0.5]]), "b": jnp.array([0.25, -1.0])}
G1 = {"w": jnp.array([[0.1, -0.3], [2.0, -0.5]]), "b": jnp.array([1.0, -0.2])}
G2 = {"w": jnp.array([[-0.2, 0.1], [1.0, 0.4]]), "b": jnp.array([0.5, 0.3])}


def _opt(name, **kw):
    c = ConfigDict({"name": name, "learning_rate": 0.1, "schedule": "constant", **kw})
    return optim.make_optimizer(c, num_steps=100)


def _steps(tx, grads):
    """Applies `tx` to P0 with each gradient in turn; -> params after each step."""
    params, state, out = P0, tx.init(P0), []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        out.append(params)
    return out


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def test_adamw_first_step():
    # bias-corrected m = g, v = g^2: p - lr (g / (|g| + eps) + wd p), decay on every leaf
    (p1,) = _steps(_opt("adamw", weight_decay=0.5), [G1])
    _close(p1, jax.tree.map(lambda p, g: p - 0.1 * (g / (jnp.abs(g) + 1e-8) + 0.5 * p), P0, G1))


def test_adam_two_steps_use_b1_b2():
    b1, b2, lr, eps = 0.5, 0.9, 0.1, 1e-8
    _, p2 = _steps(_opt("adam", b1=b1, b2=b2), [G1, G2])

    def expected(p, g1, g2):
        m1, v1 = (1 - b1) * g1, (1 - b2) * g1**2
        m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2**2
        u1 = m1 / (1 - b1) / (jnp.sqrt(v1 / (1 - b2)) + eps)
        u2 = m2 / (1 - b1**2) / (jnp.sqrt(v2 / (1 - b2**2)) + eps)
        return p - lr * u1 - lr * u2

    _close(p2, jax.tree.map(expected, P0, G1, G2))


def test_sgd_momentum_two_steps():
    p1, p2 = _steps(_opt("sgd", momentum=0.9), [G1, G2])
    _close(p1, jax.tree.map(lambda p, g: p - 0.1 * g, P0, G1))
    _close(p2, jax.tree.map(lambda p, g1, g2: p - 0.1 * g1 - 0.1 * (g2 + 0.9 * g1), P0, G1, G2))


def test_sgd_without_momentum_and_clipping():
    _, p2 = _steps(_opt("sgd", momentum=0.0), [G1, G2])
    _close(p2, jax.tree.map(lambda p, g1, g2: p - 0.1 * (g1 + g2), P0, G1, G2))
    # global norm of G1 is sqrt(0.01 + 0.09 + 4 + 0.25 + 1 + 0.04) = sqrt(5.39): clipped to 1
    (p1,) = _steps(_opt("sgd", momentum=0.0, clip_norm=1.0), [G1])
    _close(p1, jax.tree.map(lambda p, g: p - 0.1 * g / math.sqrt(5.39), P0, G1))
    (p1,) = _steps(_opt("sgd", momentum=0.0, clip_norm=10.0), [G1])  # below the norm: unchanged
    _close(p1, jax.tree.map(lambda p, g: p - 0.1 * g, P0, G1))


def _schedule(num_steps=100, **kw):
    return optim.make_schedule(ConfigDict({"learning_rate": 2.0, **kw}), num_steps)


def _values(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_step_schedule_boundaries_and_decay():
    # defaults: x0.1 from step 0.5 N and again from 0.75 N
    s = _schedule(schedule="step")
    assert _values(s, [0, 49, 50, 74, 75, 99]) == pytest.approx([2, 2, 0.2, 0.2, 0.02, 0.02])
    s = _schedule(num_steps=40, schedule="step", decay_at=(0.25,), decay_factor=0.5)
    assert _values(s, [0, 9, 10, 39]) == pytest.approx([2, 2, 1, 1])


def test_constant_schedule_and_linear_warmup():
    assert _values(_schedule(schedule="constant"), [0, 99]) == pytest.approx([2, 2])
    s = _schedule(schedule="constant", warmup_steps=10)
    assert _values(s, [0, 1, 5, 10, 50]) == pytest.approx([0, 0.2, 1, 2, 2])
    # the first update of a warmed-up optimiser has learning rate 0
    c = ConfigDict(
        {
            "name": "sgd",
            "momentum": 0.0,
            "learning_rate": 0.1,
            "schedule": "constant",
            "warmup_steps": 4,
        }
    )
    p1, p2 = _steps(optim.make_optimizer(c, 100), [G1, G2])
    _close(p1, P0)
    _close(p2, jax.tree.map(lambda p, g: p - 0.025 * g, P0, G2))


def test_cosine_schedule():
    s = _schedule(num_steps=110, schedule="cosine", warmup_steps=10, end_factor=0.1)

    def cosine(t):  # 2 * (end + (1 - end) * (1 + cos(pi * progress)) / 2) after warmup
        return 2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - 10) / 100)))

    assert _values(s, [0, 5, 10, 35, 60, 110, 200]) == pytest.approx(
        [0, 1, 2, cosine(35), 1.1, 0.2, 0.2], rel=1e-6
    )
    s = _schedule(num_steps=100, schedule="cosine")  # no end_factor: decays to 0
    assert _values(s, [1, 100]) == pytest.approx([2, 0], abs=1e-6)


def test_weight_penalty_counts_only_matrices():
    params = {
        "w": 2 * jnp.ones((2, 3)),
        "bias": 5 * jnp.ones(3),
        "scale": jnp.array(7.0),
        "kernel": -jnp.ones((3, 2, 4)),
    }
    # |w|: 2*6 + 24 = 36; w^2: 4*6 + 24 = 48; the bias and the scalar do not count
    assert float(optim.weight_penalty(params, 0.1, 0.0)) == pytest.approx(3.6)
    assert float(optim.weight_penalty(params, 0.0, 0.01)) == pytest.approx(0.48)
    assert float(optim.weight_penalty(params, 0.1, 0.01)) == pytest.approx(4.08)
    assert float(optim.weight_penalty(params, 0.0, 0.0)) == 0.0


def test_stability_penalty_hand_case():
    states = jnp.array(
        [
            [[0.0, 0.0], [1.0, 0.0], [3.0, 2.0]],  # length 3: 1, 4 + 4
            [[2.0, 1.0], [5.0, 1.0], [100.0, 100.0]],  # length 2: 9 (step 2 padded)
        ]
    )
    assert float(optim.stability_penalty(states, jnp.array([3, 2]))) == pytest.approx(18 / 3)
    assert float(optim.stability_penalty(states, jnp.array([3, 0]))) == pytest.approx(9 / 2)
    assert float(optim.stability_penalty(states, jnp.array([1, 0]))) == 0.0  # no pair: 0, not NaN


def test_masked_mse_hand_case():
    target = jnp.zeros((2, 3, 2))
    pred = jnp.array(
        [[[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]], [[3.0, 0.0], [50.0, 50.0], [50.0, 50.0]]]
    )
    # valid frames: 2 of the first, 1 of the second -> (1 + 1 + 4 + 9) / (3 frames * 2)
    assert float(optim.masked_mse(pred, target, jnp.array([2, 1]))) == pytest.approx(15 / 6)
