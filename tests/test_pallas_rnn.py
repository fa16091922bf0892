"""Pallas recurrences (rnnbench/pallas_rnn.py, interpret mode on CPU) versus rnnbench/fused.py:
outputs, final carries and every gradient. fused.py itself is checked against the generic scan
in tests/test_fused.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnbench import fused, pallas_rnn

# H = 16: compiled (on a GPU) the kernels' dots need every dimension >= 16 (Triton), and a batch
# block of at least GPU_BLOCK_BATCH rows; interpreted (elsewhere) any size runs.
ON_GPU = jax.default_backend() == "gpu"
T, B, H = 5, 3, 16
LENGTHS = np.array([T, 2, 0])  # one full, one short, one empty sequence
FWD_TOL = dict(rtol=1e-5, atol=1e-5)
GRAD_TOL = dict(rtol=1e-4, atol=1e-4)

pytestmark = pytest.mark.skipif(not pallas_rnn.available(), reason="jax.experimental.pallas")


def _normal(rng, shape, scale=1.0):
    return jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)


def _compare(impl_fused, impl_pallas, params, ragged):
    """Values of both recurrences and grads of a random linear functional of (ys, carry)."""
    valid = jnp.arange(T)[:, None] < jnp.asarray(LENGTHS)[None, :] if ragged else None
    rng = np.random.default_rng(1)
    r_ys, r_carry = _normal(rng, (T, B, H)), [_normal(rng, (B, H)) for _ in range(2)]

    def run(impl):
        def loss(params):
            ys, carry = impl(params, valid)
            lin = (ys * r_ys).sum() + sum(
                (r * x).sum() for r, x in zip(r_carry, jax.tree.leaves(carry))
            )
            return lin, (ys, carry)

        (_, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return out, grads

    (ys_f, carry_f), g_f = run(impl_fused)
    (ys_p, carry_p), g_p = run(impl_pallas)

    np.testing.assert_allclose(ys_p, ys_f, **FWD_TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **FWD_TOL), carry_p, carry_f)
    if ragged:
        for b, n in enumerate(LENGTHS):
            assert np.all(np.asarray(ys_p)[n:, b] == 0.0)
    assert set(g_p) == set(g_f) == set(params)
    for name in params:
        assert np.abs(np.asarray(g_f[name])).max() > 1e-3, name  # a gradient that flows
        np.testing.assert_allclose(g_p[name], g_f[name], **GRAD_TOL, err_msg=name)
    return ys_p, carry_p


CASES = [  # (ragged, block_batch, unroll); block 2 pads the batch of 3 to 2 programs of 2
    (True, None, 1),
    (True, pallas_rnn.GPU_BLOCK_BATCH if ON_GPU else 2, 2),
    (False, None, 1),
]


@pytest.fixture(params=["weights on chip", "weights per step"])
def weights_placement(request, monkeypatch):
    """Both ways a kernel reads W_hh: loaded once (H = 16 fits), or one gate's block per step
    (what H >= 128 gets)."""
    if request.param == "weights per step":
        monkeypatch.setattr(pallas_rnn, "WEIGHTS_ON_CHIP_BYTES", 0)
    return request.param


@pytest.mark.parametrize("ragged,block,unroll", CASES)
def test_lstm_matches_fused(ragged, block, unroll, weights_placement):
    rng = np.random.default_rng(0)
    params = {
        "w_hh": _normal(rng, (H, 4 * H), 0.3),
        "xp": _normal(rng, (T, B, 4 * H)),
        "h0": _normal(rng, (B, H)),
        "c0": _normal(rng, (B, H)),
    }

    def via(mod, **kw):
        def f(p, valid):
            return mod.lstm_recurrence(
                p["w_hh"], p["xp"], p["h0"], p["c0"], valid, unroll=unroll, **kw
            )

        return f

    _, (h, c) = _compare(via(fused), via(pallas_rnn, block_batch=block), params, ragged)
    if ragged:  # the empty sequence keeps its initial carry
        np.testing.assert_array_equal(h[2], params["h0"][2])
        np.testing.assert_array_equal(c[2], params["c0"][2])


@pytest.mark.parametrize("ragged,block,unroll", CASES)
def test_gru_matches_fused(ragged, block, unroll, weights_placement):
    rng = np.random.default_rng(0)
    params = {
        "w_hh": _normal(rng, (H, 3 * H), 0.3),
        "b_hh": _normal(rng, (3 * H,)),
        "xp": _normal(rng, (T, B, 3 * H)),
        "h0": _normal(rng, (B, H)),
    }

    def via(mod, **kw):
        def f(p, valid):
            return mod.gru_recurrence(
                p["w_hh"], p["b_hh"], p["xp"], p["h0"], valid, unroll=unroll, **kw
            )

        return f

    _, h = _compare(via(fused), via(pallas_rnn, block_batch=block), params, ragged)
    if ragged:
        np.testing.assert_array_equal(h[2], params["h0"][2])


def test_bad_shapes_name_the_function_and_shapes():
    w, h = jnp.zeros((H, 4 * H)), jnp.zeros((B, H))
    with pytest.raises(ValueError, match=rf"lstm_recurrence.*\({T}, {B}, {3 * H}\)"):
        pallas_rnn.lstm_recurrence(w, jnp.zeros((T, B, 3 * H)), h, h)
    with pytest.raises(ValueError, match="block_batch must be >= 1, got 0"):
        pallas_rnn.lstm_recurrence(w, jnp.zeros((T, B, 4 * H)), h, h, block_batch=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layers_rnn_dispatches_to_pallas_when_chosen(cell, monkeypatch):
    """fused.IMPLEMENTATION = "pallas" ($RNNBENCH_RECURRENCE) routes layers.RNN's LSTM and GRU
    through pallas_rnn, with the outputs and gradients of the default path; a name that is not
    an implementation is refused."""
    from flax import nnx

    from rnnbench import layers

    model = layers.build(cell, in_features=4, hidden=H, num_layers=1, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, 4)), jnp.float32)
    lengths = jnp.asarray(LENGTHS)
    calls = []
    original = getattr(pallas_rnn, f"{cell}_recurrence")
    monkeypatch.setattr(
        pallas_rnn, f"{cell}_recurrence", lambda *a, **k: calls.append(1) or original(*a, **k)
    )

    def loss(m):
        y, _ = m(x, lengths=lengths)
        return jnp.sum(jnp.sin(y))

    want, want_grad = nnx.value_and_grad(loss)(model)
    assert calls == []
    monkeypatch.setattr(fused, "IMPLEMENTATION", "pallas")
    got, got_grad = nnx.value_and_grad(loss)(model)
    assert calls  # the layer went through pallas_rnn
    np.testing.assert_allclose(got, want, **FWD_TOL)
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad), strict=True):
        np.testing.assert_allclose(g, w, **GRAD_TOL)
    monkeypatch.setattr(fused, "IMPLEMENTATION", "cudnn")
    with pytest.raises(ValueError, match="RNNBENCH_RECURRENCE.*'cudnn'.*scan, pallas"):
        loss(model)
