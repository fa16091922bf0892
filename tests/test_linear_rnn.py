"""minGRU, minLSTM, LRU: reference math, parallel (associative_scan) == sequential (lax.scan).

Tolerances (float32): short sequences rtol 1e-5 / atol 1e-6 on outputs, carries and gradients;
T = 16,000: atol 1e-4 on outputs and carries (measured max |diff| ~4e-6 with outputs of size ~10)
and rtol 1e-3 / atol 1e-5 on gradients (measured ~5e-5 abs on gradients of size ~10-60, which
sum 16,000 steps).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnbench import cells, layers, linear_rnn

NAMES = ("mingru", "minlstm", "lru")
# Ring close to 1 for the LRU so that T = 16,000 actually exercises long memory.
EXTRA = {"mingru": {}, "minlstm": {}, "lru": {"r_min": 0.9, "r_max": 0.999}}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _g(x):
    return np.where(x >= 0, x + 0.5, _sigmoid(x))


def _assert_trees_close(a, b, rtol, atol):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for u, v in zip(la, lb):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def _params(model):
    return nnx.state(model, nnx.Param)


def _value_and_grads(model, x, lengths):
    """Outputs, carries, d loss/d x, d loss/d params of a `layers.Stacked` model (jitted)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def f(params, x):
        def loss(params, x):
            y, carries = nnx.merge(graphdef, params, rest)(x, lengths)
            return jnp.sum(jnp.sin(y) * y), (
                y,
                carries,
            )  # a nonlinear loss: cotangents vary per step

        return jax.grad(loss, argnums=(0, 1), has_aux=True)(params, x)

    (g_params, g_x), (y, carries) = f(params, x)
    return y, carries, g_x, g_params


# --------------------------------------------------------------------------- reference math


def test_mingru_and_minlstm_match_float64_numpy_reference():
    F, H, B, T = 3, 4, 2, 5
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    for name in ("mingru", "minlstm"):
        cell = cells.make(name, F, H, rngs=nnx.Rngs(1))
        cell.bias[...] = jnp.asarray(rng.normal(size=cell.bias.shape), jnp.float32)
        y, h_last = layers.RNN(cell)(jnp.asarray(x))
        w, bias = np.asarray(cell.w_ih[...], np.float64), np.asarray(cell.bias[...], np.float64)
        h = np.zeros((B, H))
        for t in range(T):
            k = x[:, t].astype(np.float64) @ w + bias
            if name == "mingru":
                z, ht = _sigmoid(k[:, :H]), _g(k[:, H:])
                h = (1 - z) * h + z * ht
            else:
                f, i, ht = _sigmoid(k[:, :H]), _sigmoid(k[:, H : 2 * H]), _g(k[:, 2 * H :])
                h = f / (f + i) * h + i / (f + i) * ht
            np.testing.assert_allclose(y[:, t], h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h_last, h, rtol=1e-5, atol=1e-6)


def test_identity_activation_variant():
    cell = linear_rnn.MinGRU(2, 3, activation="identity", rngs=nnx.Rngs(0))
    xp = jnp.array([[-3.0, 0.2, 1.0, -2.0, 0.5, 4.0]])
    _, y = cell.step(jnp.zeros((1, 3)), xp)
    np.testing.assert_allclose(
        y, _sigmoid(np.asarray(xp[:, :3])) * np.asarray(xp[:, 3:]), rtol=1e-6
    )


def test_lru_matches_complex128_numpy_reference():
    F, H, N, B, T = 3, 4, 6, 2, 7
    cell = linear_rnn.LRU(F, H, state_size=N, use_bias=True, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    cell.bias[...] = jnp.asarray(rng.normal(size=H), jnp.float32)
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    y, h_last = layers.RNN(cell)(jnp.asarray(x))
    p = {
        k: np.asarray(getattr(cell, k)[...], np.float64)
        for k in ("nu_log", "theta_log", "gamma_log", "b_re", "b_im", "c_re", "c_im", "d", "bias")
    }
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    bmat = (p["b_re"] + 1j * p["b_im"]) * np.exp(p["gamma_log"])  # [F, N]
    cmat = p["c_re"] + 1j * p["c_im"]  # [N, H]
    h = np.zeros((B, N), np.complex128)
    for t in range(T):
        xt = x[:, t].astype(np.float64)
        h = lam * h + xt @ bmat
        np.testing.assert_allclose(
            y[:, t], (h @ cmat).real + xt @ p["d"] + p["bias"], rtol=1e-5, atol=1e-5
        )
    assert h_last.dtype == jnp.complex64 and h_last.shape == (B, N)
    np.testing.assert_allclose(h_last, h, rtol=1e-5, atol=1e-5)


def test_minlstm_gate_normalisation():
    cell = linear_rnn.MinLSTM(2, 3, rngs=nnx.Rngs(0))
    kf = jnp.array([[-3.0, 0.0, 2.0], [-200.0, 200.0, -90.0]])
    ki = jnp.array([[1.0, 0.0, -5.0], [-200.0, -200.0, -100.0]])
    f, i = cell.normalized_gates(jnp.concatenate([kf, ki, jnp.zeros_like(kf)], axis=-1))
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(i))
    np.testing.assert_allclose(f + i, 1.0, rtol=1e-6)
    sf, si = _sigmoid(np.asarray(kf[0], np.float64)), _sigmoid(np.asarray(ki[0], np.float64))
    np.testing.assert_allclose(f[0], sf / (sf + si), rtol=1e-6)
    np.testing.assert_allclose(i[0], si / (sf + si), rtol=1e-6)
    np.testing.assert_allclose(f[1], [0.5, 1.0, _sigmoid(10.0)], rtol=1e-6)  # saturated: no 0/0
    # and the gradient through doubly saturated gates is finite
    g = jax.grad(lambda k: jnp.sum(cell.normalized_gates(k)[0]))(jnp.full((1, 9), -200.0))
    assert np.all(np.isfinite(g))


def test_lru_init_ring_and_normalisation():
    cell = linear_rnn.LRU(
        3, 4, state_size=500, r_min=0.4, r_max=0.9, max_phase=np.pi / 10, rngs=nnx.Rngs(0)
    )
    lam = np.asarray(cell.eigenvalues())
    r = np.abs(lam)
    assert r.min() >= 0.4 - 1e-6 and r.max() <= 0.9 + 1e-6
    assert r.min() < 0.5 and r.max() > 0.8  # spread over the ring, not collapsed
    phase = np.angle(lam)
    assert phase.min() >= 0.0 and phase.max() <= np.pi / 10 + 1e-6
    np.testing.assert_allclose(
        np.exp(np.asarray(cell.gamma_log[...])), np.sqrt(1 - r**2), rtol=1e-5
    )
    # default ring [0, 1]: all magnitudes strictly inside the unit circle, params finite
    d = linear_rnn.LRU(3, 4, state_size=500, rngs=nnx.Rngs(1))
    r = np.abs(np.asarray(d.eigenvalues()))
    assert r.max() < 1.0 and all(np.all(np.isfinite(l)) for l in jax.tree.leaves(_params(d)))


# --------------------------------------------------------------------------- parallel == sequential


@pytest.mark.parametrize("name", NAMES)
def test_parallel_matches_sequential_bidirectional_stack(name):
    F, H, B, T = 3, 5, 3, 11
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, F)), jnp.float32)
    lengths = jnp.array([11, 6, 1])
    out = {}
    for parallel in (False, True):
        model = layers.build(
            name,
            F,
            H,
            num_layers=2,
            bidirectional=True,
            parallel=parallel,
            rngs=nnx.Rngs(0),
            **EXTRA[name],
        )
        assert all(l.forward.cell.parallel == parallel for l in model.layers)
        out[parallel] = _value_and_grads(model, x, lengths)
    seq, par = out[False], out[True]
    np.testing.assert_array_equal(np.asarray(par[0])[1, 6:], 0.0)  # padded outputs are zero
    for a, b in zip(seq, par):
        _assert_trees_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_long_sequence_parallel_matches_sequential():
    """T = 16,000, float32, B = 2, H = 16, ragged lengths. Outputs and carries of all three cells;
    gradients (inputs and all params) of the LRU, the complex one (short-T gradients of every cell
    are checked above; compiling the T = 16,000 scans is what costs time here)."""
    T, B, F, H = 16_000, 2, 4, 16
    x = jax.random.normal(jax.random.key(0), (B, T, F), jnp.float32)
    lengths = jnp.array([T, T - 3_001])

    def run(parallel):
        models = [
            layers.RNN(cells.make(n, F, H, parallel=parallel, rngs=nnx.Rngs(0), **EXTRA[n]))
            for n in NAMES
        ]
        graphdef, params = nnx.split(models)

        @jax.jit
        def f(params, x):
            def loss(params, x):
                ms = nnx.merge(graphdef, params)
                y, c = ms[2](x, lengths)
                outs = [m(jax.lax.stop_gradient(x), lengths) for m in ms[:2]] + [(y, c)]
                return jnp.sum(jnp.sin(y) * y) / T, outs

            return jax.grad(loss, argnums=(0, 1), has_aux=True)(params, x)

        return f(params, x)

    (g_seq, outs_seq), (g_par, outs_par) = run(False), run(True)
    for (ys, cs), (yp, cp) in zip(outs_seq, outs_par):
        assert np.all(np.isfinite(yp)) and float(jnp.abs(ys).max()) > 0.1
        _assert_trees_close((ys, cs), (yp, cp), rtol=0.0, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(yp)[1, T - 3_001 :], 0.0)
    assert float(jnp.abs(g_par[1]).max()) > 0.0
    _assert_trees_close(g_seq, g_par, rtol=1e-3, atol=1e-5)


def test_padding_invariance_reverse_and_initial_carry():
    """Both forms, all cells, forward and reverse, in one jit: padded == unpadded, with an initial
    carry; a length-0 sequence outputs zeros and keeps its initial carry."""
    F, H, T, L = 3, 4, 10, 6
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, L, F)).astype(np.float32)
    padded = np.concatenate([x, 1e3 * rng.normal(size=(2, T - L, F)).astype(np.float32)], axis=1)
    keys = [(n, p, r) for n in NAMES for p in (False, True) for r in (False, True)]
    layer_list = [
        layers.RNN(cells.make(n, F, H, parallel=p, rngs=nnx.Rngs(0)), reverse=r) for n, p, r in keys
    ]
    h0 = {}
    for n, layer in zip(NAMES, layer_list[::4]):
        c = layer.cell
        h0[n] = jnp.asarray(rng.normal(size=(2, c.state_size)), c.initial_carry(1).dtype)
    graphdef, state = nnx.split(layer_list)

    @jax.jit
    def run(state, x, padded):
        return [
            (layer(x, initial_carry=h0[n]), layer(padded, jnp.array([L, 0]), initial_carry=h0[n]))
            for (n, _, _), layer in zip(keys, nnx.merge(graphdef, state))
        ]

    res = dict(zip(keys, run(state, jnp.asarray(x), jnp.asarray(padded))))
    for (n, p, r), ((y_ref, c_ref), (y, c)) in res.items():
        np.testing.assert_allclose(y[0, :L], y_ref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c[0], c_ref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(y)[0, L:], 0.0)
        np.testing.assert_array_equal(np.asarray(y)[1], 0.0)
        np.testing.assert_array_equal(c[1], h0[n][1])  # length 0 keeps the initial carry
        if p:  # parallel == sequential, with an initial carry, forward and reverse
            _assert_trees_close(res[(n, False, r)], res[(n, p, r)], rtol=1e-5, atol=1e-6)


def test_linear_scan_against_loop_with_mask():
    rng = np.random.default_rng(4)
    T, B, N = 13, 2, 3
    a = rng.uniform(0, 1, size=(T, B, N)).astype(np.float32)
    b = rng.normal(size=(T, B, N)).astype(np.float32)
    h0 = rng.normal(size=(B, N)).astype(np.float32)
    mask = rng.uniform(size=(T, B)) < 0.7
    h = jax.jit(linear_rnn.linear_scan)(
        jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0), jnp.asarray(mask)
    )
    ref, hs = h0.astype(np.float64), []
    for t in range(T):
        ref = np.where(mask[t][:, None], a[t] * ref + b[t], ref)
        hs.append(ref)
    np.testing.assert_allclose(h, np.stack(hs), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- registry and errors


def test_registry_and_build():
    assert linear_rnn.PARALLEL_CELLS == ("mingru", "minlstm", "lru")
    for name, cls in zip(NAMES, (linear_rnn.MinGRU, linear_rnn.MinLSTM, linear_rnn.LRU)):
        assert cells.CELLS[name] is cls
        c = cells.make(name, 3, 5, rngs=nnx.Rngs(0))
        assert isinstance(c, cls) and c.parallel is False and c.hidden_size == 5
        model = layers.build(
            name, 3, 5, num_layers=2, bidirectional=True, parallel=True, rngs=nnx.Rngs(0)
        )
        assert model.out_features == 10
        assert (
            isinstance(model.layers[1].backward.cell, cls)
            and model.layers[1].backward.cell.parallel
        )
    assert linear_rnn.LRU(3, 5, state_size=7, rngs=nnx.Rngs(0)).initial_carry(2).shape == (2, 7)


def test_import_order_has_no_cycle():
    code = (
        "import rnnbench.linear_rnn as l; from rnnbench import cells; "
        "assert cells.CELLS['lru'] is l.LRU and cells.CELLS['mingru'] is l.MinGRU"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={"JAX_PLATFORMS": "cpu", "PYTHONPATH": ":".join(p for p in sys.path if p)},
    )


def test_bad_args():
    r = nnx.Rngs(0)
    with pytest.raises(ValueError, match="positive"):
        linear_rnn.MinGRU(0, 4, rngs=r)
    with pytest.raises(ValueError, match="positive"):
        linear_rnn.LRU(3, -1, rngs=r)
    with pytest.raises(ValueError, match="parallel must be a bool"):
        linear_rnn.MinLSTM(3, 4, parallel="yes", rngs=r)
    with pytest.raises(ValueError, match="activation"):
        linear_rnn.MinGRU(3, 4, activation="tanh", rngs=r)
    with pytest.raises(ValueError, match="r_min"):
        linear_rnn.LRU(3, 4, r_min=0.9, r_max=0.5, rngs=r)
    with pytest.raises(ValueError, match="r_min"):
        linear_rnn.LRU(3, 4, r_max=1.5, rngs=r)
    with pytest.raises(ValueError, match="max_phase"):
        linear_rnn.LRU(3, 4, max_phase=0.0, rngs=r)
    with pytest.raises(ValueError, match="state_size"):
        linear_rnn.LRU(3, 4, state_size=0, rngs=r)
    # cells without a parallel form do not accept the flag
    with pytest.raises((TypeError, ValueError)):
        cells.make("lstm", 3, 4, parallel=True, rngs=r)
    # no recurrent matmul: recurrent dropout is refused, sequential or parallel
    for parallel in (False, True):
        layer = layers.RNN(
            cells.make("mingru", 3, 4, parallel=parallel, rngs=r), recurrent_dropout=0.5
        )
        with pytest.raises(ValueError, match="recurrent"):
            layer(jnp.ones((2, 5, 3)), key=jax.random.key(0))
    with pytest.raises(ValueError, match="zoneout"):
        layers.RNN(cells.make("lru", 3, 4, parallel=True, rngs=r), zoneout=0.1)(
            jnp.ones((2, 5, 3)), key=jax.random.key(0)
        )
    assert linear_rnn.LRU.supports_zoneout is False and linear_rnn.MinGRU.supports_zoneout
