"""Cells and layers: reference math, lengths, reverse, dropout, zoneout, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnbench import cells, layers


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_cho_gru_matches_float64_numpy_reference():
    F, H, B, T = 3, 5, 2, 6
    cell = cells.GRU(F, H, variant="cho", rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    cell.bias[...] = jnp.asarray(rng.normal(size=3 * H), jnp.float32)
    cell.b_hh[...] = jnp.asarray(rng.normal(size=3 * H), jnp.float32)
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    y, h_last = layers.RNN(cell)(jnp.asarray(x))

    w_ih, w_hh = (np.asarray(p[...], np.float64) for p in (cell.w_ih, cell.w_hh))
    b_ih, b_hh = np.asarray(cell.bias[...], np.float64), np.asarray(cell.b_hh[...], np.float64)
    h = np.zeros((B, H))
    for t in range(T):
        xp = x[:, t].astype(np.float64) @ w_ih + b_ih
        r = _sigmoid(xp[:, :H] + h @ w_hh[:, :H] + b_hh[:H])
        z = _sigmoid(xp[:, H : 2 * H] + h @ w_hh[:, H : 2 * H] + b_hh[H : 2 * H])
        n = np.tanh(xp[:, 2 * H :] + (r * h) @ w_hh[:, 2 * H :] + b_hh[2 * H :])
        h = (1 - z) * n + z * h
        np.testing.assert_allclose(y[:, t], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_last, h, rtol=1e-5, atol=1e-6)


def test_cho_and_pytorch_gru_differ():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
    a = cells.GRU(3, 4, variant="cho", rngs=nnx.Rngs(0))
    b = cells.GRU(3, 4, variant="pytorch", rngs=nnx.Rngs(0))
    a.b_hh[...] = b.b_hh[...] = jnp.full((12,), 0.5)
    assert not np.allclose(layers.RNN(a)(x)[0], layers.RNN(b)(x)[0])


def test_lstm_forget_bias():
    c = cells.LSTM(3, 4, forget_bias=2.5, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(c.bias[...][4:8], 2.5)
    np.testing.assert_array_equal(c.bias[...][:4], 0.0)
    assert cells.LSTM(3, 4, rngs=nnx.Rngs(0)).bias[...][5] == 1.0


def test_single_step_call_equals_layer_first_step():
    cell = cells.LSTM(3, 4, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 1, 3))
    carry, y = cell(cell.initial_carry(2), x[:, 0])
    y_layer, carry_layer = layers.RNN(cell)(x)
    np.testing.assert_allclose(y, y_layer[:, 0], rtol=1e-6)
    np.testing.assert_allclose(carry[1], carry_layer[1], rtol=1e-6)


@pytest.mark.parametrize("name", ["rnn", "relu", "lstm", "gru", "gru_cho"])
@pytest.mark.parametrize("reverse", [False, True])
def test_padding_invariance(name, reverse):
    """Garbage after each sequence's length changes neither valid outputs nor final carries."""
    rng = np.random.default_rng(0)
    layer = layers.RNN(cells.make(name, 3, 6, rngs=nnx.Rngs(0)), reverse=reverse)
    lengths = jnp.array([7, 4, 1, 0])
    x = rng.normal(size=(4, 7, 3)).astype(np.float32)
    garbage = x.copy()
    for b, n in enumerate(np.asarray(lengths)):
        garbage[b, n:] = rng.normal(size=garbage[b, n:].shape) * 100
    y1, c1 = layer(jnp.asarray(x), lengths)
    y2, c2 = layer(jnp.asarray(garbage), lengths)
    np.testing.assert_array_equal(y1, y2)
    jax.tree.map(np.testing.assert_array_equal, c1, c2)
    for b, n in enumerate(np.asarray(lengths)):
        assert np.all(np.asarray(y1)[b, n:] == 0.0)
        # each sequence alone, unpadded, gives the same outputs and final carry
        if n:
            y_alone, c_alone = layer(jnp.asarray(x[b : b + 1, :n]))
            np.testing.assert_allclose(y1[b, :n], y_alone[0], rtol=1e-5, atol=1e-6)
            jax.tree.map(
                lambda a, s: np.testing.assert_allclose(a[b], s[0], rtol=1e-5, atol=1e-6),
                c1,
                c_alone,
            )


def test_reverse_padded_reverses_only_valid_part():
    x = jnp.arange(5)[:, None] * jnp.ones((5, 2), jnp.int32)  # [time, batch]
    out = layers.reverse_padded(x, jnp.array([5, 3]))
    np.testing.assert_array_equal(out[:, 0], [4, 3, 2, 1, 0])
    np.testing.assert_array_equal(out[:, 1], [2, 1, 0, 3, 4])


def test_zero_length_sequence_keeps_initial_carry():
    layer = layers.RNN(cells.GRU(2, 3, rngs=nnx.Rngs(0)))
    h0 = jnp.full((2, 3), 0.3)
    y, h = layer(jnp.ones((2, 4, 2)), jnp.array([0, 4]), initial_carry=h0)
    np.testing.assert_array_equal(h[0], h0[0])
    assert np.all(np.asarray(y[0]) == 0)


def _stack(**kw):
    return layers.build("lstm", 4, 8, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0), **kw)


def test_deterministic_mode_is_exact_identity():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6, 4)), jnp.float32)
    L = jnp.array([6, 2, 5])
    plain = _stack()
    noisy = _stack(dropout=0.5, input_dropout=0.3, recurrent_dropout=0.3)
    np.testing.assert_array_equal(plain(x, L)[0], noisy(x, L)[0])
    # and with a key, dropout really changes the outputs
    assert not np.allclose(plain(x, L)[0], noisy(x, L, key=jax.random.key(0))[0])


class _MaskSpy(cells.SimpleRNN):
    """Outputs the recurrent mask it is given, so the test can see it at every step."""

    def step(self, carry, xp, h_mask=None):
        out = jnp.ones_like(carry) if h_mask is None else h_mask
        return carry, out


def test_variational_masks_are_constant_over_time():
    T = 9
    spy = layers.RNN(_MaskSpy(3, 64, rngs=nnx.Rngs(0)), recurrent_dropout=0.5)
    y, _ = spy(jnp.ones((4, T, 3)), key=jax.random.key(1))
    y = np.asarray(y)
    assert np.all(y == y[:, :1])  # the same mask at every step
    assert 0 < (y == 0).mean() < 1 and not np.all(y[0] == y[1])  # but random per sequence

    # input dropout: an identity RNN (w_hh = 0, w_ih = I) shows the input mask at each step
    cell = cells.SimpleRNN(5, 5, use_bias=False, rngs=nnx.Rngs(0))
    cell.w_ih[...] = jnp.eye(5)
    cell.w_hh[...] = jnp.zeros((5, 5))
    y, _ = layers.RNN(cell, input_dropout=0.5)(jnp.full((6, T, 5), 0.5), key=jax.random.key(2))
    y = np.asarray(y)
    assert np.all(y == y[:, :1]) and 0 < (y == 0).mean() < 1


def test_zoneout_train_and_eval():
    cell = cells.LSTM(3, 16, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
    y_plain, _ = layers.RNN(cell)(x)
    zoned = layers.RNN(cell, zoneout=0.5)
    y_eval, _ = zoned(x)
    y_train, _ = zoned(x, key=jax.random.key(0))
    assert not np.allclose(y_eval, y_plain)
    # in training, some units keep their previous value exactly (zoneout), others update
    same = np.asarray(y_train[:, 1:] == y_train[:, :-1])
    assert 0.2 < same.mean() < 0.8


def test_residual_layer_norm_stack_zeroes_padding():
    enc = _stack(residual=True, layer_norm=True)
    x = jnp.ones((2, 5, 4))
    y, carries = enc(x, jnp.array([5, 2]))
    assert y.shape == (2, 5, 16) and len(carries) == 2
    assert np.all(np.asarray(y[1, 2:]) == 0)


def test_sum_merge_and_bf16_compute():
    enc = layers.build(
        "gru", 4, 8, bidirectional=True, merge="sum", dtype=jnp.bfloat16, rngs=nnx.Rngs(0)
    )
    ref = layers.build("gru", 4, 8, bidirectional=True, merge="sum", rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 4)), jnp.float32)
    y, _ = enc(x)
    assert y.shape == (2, 5, 8)
    assert enc.layers[0].forward.cell.w_hh[...].dtype == jnp.float32  # params stay f32
    np.testing.assert_allclose(y, ref(x)[0], atol=5e-2)


def test_unroll_gives_same_numbers():
    cell = cells.GRU(3, 4, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 3)), jnp.float32)
    L = jnp.array([9, 4])
    np.testing.assert_allclose(
        layers.RNN(cell)(x, L)[0], layers.RNN(cell, unroll=4)(x, L)[0], rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    "x_shape,lengths,match",
    [
        ((2, 5), None, "rank 3"),
        ((2, 5, 4), None, "in_features=3"),
        ((2, 5, 3), [6, 1], r"lengths must be in \[0, time=5\]"),
        ((2, 5, 3), [-1, 1], r"lengths must be in \[0, time=5\]"),
        ((2, 5, 3), [1, 1, 1], r"lengths must have shape \[batch\]"),
    ],
)
def test_bad_input_raises_value_error(x_shape, lengths, match):
    layer = layers.RNN(cells.LSTM(3, 4, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=match):
        layer(jnp.ones(x_shape), None if lengths is None else jnp.array(lengths))


def test_unknown_cell_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown cell name 'lsmt'.*'lstm'"):
        cells.make("lsmt", 3, 4, rngs=nnx.Rngs(0))


def test_bad_rates_and_options():
    cell = cells.LSTM(3, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="zoneout must be in"):
        layers.RNN(cell, zoneout=1.0)
    with pytest.raises(ValueError, match="merge must be"):
        layers.Bidirectional(layers.RNN(cell), layers.RNN(cell, reverse=True), merge="avg")
    with pytest.raises(ValueError, match="GRU variant"):
        cells.GRU(3, 4, variant="keras", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="layer 0 outputs 4 features"):
        layers.Stacked([layers.RNN(cell), layers.RNN(cells.LSTM(5, 4, rngs=nnx.Rngs(0)))])


def test_parallel_form_requested_for_a_cell_without_one():
    with pytest.raises(ValueError, match=r"cell 'lstm' has no parallel form.*'mingru'"):
        cells.make("lstm", 3, 4, parallel=True, rngs=nnx.Rngs(0))
    assert isinstance(cells.make("lstm", 3, 4, parallel=False, rngs=nnx.Rngs(0)), cells.LSTM)


def test_zoneout_rejected_for_lru():
    with pytest.raises(ValueError, match="zoneout needs a cell"):
        layers.RNN(cells.make("lru", 3, 4, rngs=nnx.Rngs(0)), zoneout=0.1)


def test_unroll_auto_is_one_on_cpu_and_validated(monkeypatch):
    from rnnbench import layers as layers_lib

    assert layers_lib.resolve_unroll("auto") == 1  # tests run on the CPU backend
    assert layers_lib.resolve_unroll(0) == 1
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert layers_lib.resolve_unroll("auto") == layers_lib.GPU_UNROLL
    assert layers_lib.resolve_unroll(3) == 3
    for bad in (-1, "fast", True, 1.5):
        with pytest.raises(ValueError, match="unroll must be an int >= 1"):
            layers_lib.resolve_unroll(bad)
