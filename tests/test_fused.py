"""Fused recurrences (rnnbench/fused.py) versus the generic scan: outputs, carries, all gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnbench import cells, fused, layers

B, T, F, H = 4, 9, 5, 6
TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(autouse=True)
def _all_fused_kinds(monkeypatch):
    """Every fused kind on, whatever a test sets `fused.KINDS` to (restored after it)."""
    monkeypatch.setattr(fused, "KINDS", {"lstm", "gru", "rnn"})


def _make(kind, **kw):
    if kind == "gru_nobias":
        return cells.GRU(F, H, use_bias=False, rngs=nnx.Rngs(0))
    cell = cells.make(kind, F, H, rngs=nnx.Rngs(0), **kw)
    rng = np.random.default_rng(2)
    # Non-zero biases so every bias gradient path is exercised.
    cell.bias[...] = jnp.asarray(rng.normal(size=cell.bias.shape), jnp.float32)
    if getattr(cell, "b_hh", None) is not None:
        cell.b_hh[...] = jnp.asarray(rng.normal(size=cell.b_hh.shape), jnp.float32)
    return cell


def _run(layer, x, lengths, carry0, r_out, r_carry):
    L = None if lengths is None else jnp.asarray(lengths)

    def loss_fn(layer, x, carry0):
        y, carry = layer(x, L, initial_carry=carry0)
        loss = (y * r_out).sum() + sum(
            (c * r).sum() for c, r in zip(jax.tree.leaves(carry), jax.tree.leaves(r_carry))
        )
        return loss, (y, carry)

    (_, (y, carry)), grads = jax.jit(nnx.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True))(
        layer, x, carry0
    )
    return y, carry, grads


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_nobias", "rnn", "relu"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("unroll", [1, 3])
def test_fused_matches_generic_scan(kind, ragged, reverse, unroll):
    cell = _make(kind)
    assert fused.recurrence_for(cell) is not None
    layer = layers.RNN(cell, reverse=reverse, unroll=unroll)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32)
    lengths = np.array([T, 3, 0, 7]) if ragged else None
    carry0 = jax.tree.map(
        lambda z: jnp.asarray(rng.normal(size=z.shape), jnp.float32), cell.initial_carry(B)
    )
    r_out = jnp.asarray(rng.normal(size=(B, T, H)), jnp.float32)
    r_carry = jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape), jnp.float32), carry0)

    y_f, c_f, g_f = _run(layer, x, lengths, carry0, r_out, r_carry)
    with fused.disabled():
        assert fused.recurrence_for(cell) is None
        y_g, c_g, g_g = _run(layer, x, lengths, carry0, r_out, r_carry)

    np.testing.assert_allclose(y_f, y_g, **TOL)
    if ragged:
        for b, n in enumerate(lengths):
            assert np.all(np.asarray(y_f)[b, n:] == 0.0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), c_f, c_g)
    leaves_f, leaves_g = jax.tree.leaves(g_f), jax.tree.leaves(g_g)
    assert len(leaves_f) == len(leaves_g) >= 4  # weights, biases, x, initial carry
    for a, b in zip(leaves_f, leaves_g):
        np.testing.assert_allclose(a, b, **TOL)


def test_fused_functions_directly_match_cell_steps():
    """lstm_recurrence on raw arrays = a Python loop over cells.LSTM.step."""
    cell = _make("lstm")
    rng = np.random.default_rng(3)
    xp = jnp.asarray(rng.normal(size=(T, B, 4 * H)), jnp.float32)
    h, c = jnp.zeros((B, H)), jnp.zeros((B, H))
    ys, (h_f, c_f) = fused.lstm_recurrence(cell.w_hh[...], xp, h, c, None)
    carry = (h, c)
    for t in range(T):
        carry, y = cell.step(carry, xp[t])
        np.testing.assert_allclose(ys[t], y, **TOL)
    np.testing.assert_allclose(h_f, carry[0], **TOL)
    np.testing.assert_allclose(c_f, carry[1], **TOL)


def test_kinds_choose_the_fused_cells():
    for kind in ("lstm", "gru", "rnn"):
        assert fused.recurrence_for(cells.make(kind, F, H, rngs=nnx.Rngs(0))) is not None
    fused.KINDS = {"lstm", "rnn"}  # restored by the fixture
    assert fused.recurrence_for(cells.GRU(F, H, rngs=nnx.Rngs(0))) is None
    assert fused.recurrence_for(cells.LSTM(F, H, rngs=nnx.Rngs(0))) is not None


@pytest.mark.parametrize("case", ["bf16", "cho", "subclass"])
def test_generic_scan_is_used_when_fused_does_not_apply(case):
    if case == "bf16":
        cell = cells.LSTM(F, H, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        assert fused.recurrence_for(cell) is None
    elif case == "cho":
        assert fused.recurrence_for(cells.GRU(F, H, variant="cho", rngs=nnx.Rngs(0))) is None
    else:

        class MyLSTM(cells.LSTM):
            pass

        assert fused.recurrence_for(MyLSTM(F, H, rngs=nnx.Rngs(0))) is None


@pytest.mark.parametrize("case", ["zoneout", "recurrent_dropout"])
def test_zoneout_and_recurrent_dropout_match_generic_scan(case, monkeypatch):
    """With a key, the layer leaves the fused path and gives the generic scan's outputs and
    gradients for the same key; without one (eval), recurrent dropout is off and the fused path
    runs, zoneout uses its expectation in the generic scan."""
    used = []
    recurrence_for = fused.recurrence_for
    monkeypatch.setattr(
        fused, "recurrence_for", lambda cell: used.append(recurrence_for(cell)) or used[-1]
    )
    layer = layers.RNN(_make("lstm"), **{case: 0.3})
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32)
    lengths = jnp.array([T, 3, 0, 7])
    carry0 = jax.tree.map(
        lambda z: jnp.asarray(rng.normal(size=z.shape), jnp.float32), layer.cell.initial_carry(B)
    )
    r_out = jnp.asarray(rng.normal(size=(B, T, H)), jnp.float32)

    def loss_fn(layer, x, carry0, key):
        y, carry = layer(x, lengths, initial_carry=carry0, key=key)
        y_eval, _ = layer(x, lengths, initial_carry=carry0)  # key=None: the deterministic mode
        loss = (y * r_out).sum() + sum(c.sum() for c in jax.tree.leaves(carry))
        return loss, (y, carry, y_eval)

    def run():  # traced anew each call: fused.ENABLED is read at trace time
        grad_fn = nnx.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)
        used.clear()
        (_, out), grads = jax.jit(grad_fn)(layer, x, carry0, jax.random.key(7))
        return out, jax.tree.leaves((out, grads)), [r is not None for r in used]

    (y, _, y_eval), fused_on, path_on = run()
    with fused.disabled():
        _, generic, path_off = run()
    assert len(fused_on) == len(generic) >= 9  # y, carry, y_eval, weights, biases, x, carry0
    for a, b in zip(fused_on, generic):
        np.testing.assert_allclose(a, b, **TOL)
    # the fused path ran only for the eval call, and only without zoneout
    assert path_on == ([True] if case == "recurrent_dropout" else [])
    assert path_off == ([False] if case == "recurrent_dropout" else [])
    assert np.all(np.asarray(y)[2] == 0.0) and np.all(np.asarray(y)[1, 3:] == 0.0)  # padding
    assert not np.allclose(y, y_eval, atol=1e-3)  # the key did switch dropout/zoneout on
