"""Precision policy (rnnbench/precision.py): names, the matmul precision that reaches the compiled
program for every cell, layer, fused recurrence and attention block, and the bf16 path."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnbench import attention, cells, fused, layers, models, precision

B, T, F, H = 3, 6, 5, 8
LENGTHS = jnp.array([T, 4, 0])


def _dots(fn, *args) -> list[str]:
    """The `stablehlo.dot_general` lines of `jit(fn)(*args)`, lowered."""
    text = jax.jit(fn).lower(*args).as_text()
    return [line for line in text.splitlines() if "stablehlo.dot_general" in line]


def _levels(dots: list[str]) -> set[str]:
    """The precision levels the dots name, e.g. {"HIGHEST"}; "none" for a dot without one."""
    out = set()
    for d in dots:
        m = re.search(r"precision = \[(\w+), (\w+)\]", d)
        out |= set(m.groups()) if m else {"none"}
    return out


def _layer_grad_dots(layer, x):
    """Dots of the forward and backward pass of `layer` (loss = sum of squared outputs)."""
    graphdef, state = nnx.split(layer)

    def loss(state, x):
        y, _ = nnx.merge(graphdef, state)(x, LENGTHS)
        return (y**2).sum()

    return _dots(jax.grad(loss, argnums=(0, 1)), state, x)


def _x(seed=0):
    return jax.random.normal(jax.random.key(seed), (B, T, F))


def test_policy_names_are_validated():
    assert precision.POLICIES == ("float32", "tf32", "bf16")
    assert precision.DEFAULT == "float32"
    for bad in ("fp32", "highest", "", "bfloat16"):
        with pytest.raises(ValueError, match=r"\['float32', 'tf32', 'bf16'\]"):
            precision.check(bad)
    with pytest.raises(ValueError, match="unknown precision policy 'fp16'"):
        cells.LSTM(F, H, precision="fp16", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown precision policy"):
        layers.build("mingru", F, H, precision="half", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown precision policy"):
        attention.SelfAttention(H, 2, precision="tensorfloat32", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dtype=float16 was also given"):
        cells.GRU(F, H, precision="bf16", dtype=jnp.float16, rngs=nnx.Rngs(0))
    assert precision.lax_precision("float32") == jax.lax.Precision.HIGHEST
    assert precision.lax_precision("tf32") == jax.lax.Precision.DEFAULT
    assert precision.lax_precision("float32", jnp.bfloat16) == jax.lax.Precision.DEFAULT
    assert precision.effective("float32", jnp.bfloat16) == "bf16"
    assert precision.effective("tf32") == "tf32"


def test_config_default_is_exact_float32():
    from experiments.configs import common

    assert common.base_config().precision == "float32"


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_cho", "rnn", "mingru", "minlstm", "lru"])
def test_exact_mode_puts_highest_on_every_matmul_of_a_cell_step(name):
    cell = cells.make(name, F, H, rngs=nnx.Rngs(0))  # the default policy
    assert cell.precision == "float32"
    graphdef, state = nnx.split(cell)
    x0 = _x()[:, 0]

    def step(state, x):
        c = nnx.merge(graphdef, state)
        return c(c.initial_carry(B), x)

    dots = _dots(step, state, x0)
    assert dots and _levels(dots) == {"HIGHEST"}
    jaxpr = str(jax.make_jaxpr(step)(state, x0))
    assert "precision=(Precision.HIGHEST, Precision.HIGHEST)" in jaxpr
    assert "Precision.DEFAULT" not in jaxpr


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "gru_cho", "minlstm", "lru"])
@pytest.mark.parametrize("policy,level", [("float32", "HIGHEST"), ("tf32", "DEFAULT")])
def test_layer_forward_and_backward_matmuls_follow_the_policy(name, policy, level):
    """Through the fused recurrences' hand-written VJPs (lstm, gru, rnn), the generic scan
    (gru_cho) and the parallel scan (minlstm, lru): every matmul of both passes."""
    kw = {"parallel": True} if name in ("minlstm", "lru") else {}
    layer = layers.build(name, F, H, bidirectional=True, precision=policy, rngs=nnx.Rngs(0), **kw)
    cell = layer.layers[0].forward.cell
    assert cell.precision == policy
    assert (fused.recurrence_for(cell) is not None) == (name in ("lstm", "gru", "rnn"))
    dots = _layer_grad_dots(layer, _x())
    assert len(dots) >= 4  # projection + recurrence (or readout), forward and backward
    assert _levels(dots) == {level}


def test_bf16_computes_cell_matmuls_in_bf16_with_float32_params_and_carries():
    layer = layers.build("lstm", F, H, precision="bf16", rngs=nnx.Rngs(0))
    rnn = layer.layers[0]
    assert rnn.cell.dtype == jnp.bfloat16
    assert fused.recurrence_for(rnn.cell) is None  # the generic scan runs the bf16 cell
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    y, carries = layer(_x(), LENGTHS)
    assert y.dtype == jnp.float32
    assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(carries))

    graphdef, state = nnx.split(layer)
    forward = _dots(lambda s, x: nnx.merge(graphdef, s)(x, LENGTHS)[0], state, _x())
    assert len(forward) == 2  # input projection, recurrent matmul
    for d in forward:
        assert re.search(
            r"\(tensor<[0-9x]+xbf16>, tensor<[0-9x]+xbf16>\) -> tensor<[0-9x]+xf32>", d
        ), d


def test_float32_tf32_and_bf16_outputs_differ_as_expected():
    x = _x(1)
    ys, grads = {}, {}
    for policy in precision.POLICIES:
        layer = layers.build("gru", F, H, precision=policy, rngs=nnx.Rngs(3))
        graphdef, state = nnx.split(layer)

        def loss(state, x, graphdef=graphdef):
            y, _ = nnx.merge(graphdef, state)(x, LENGTHS)
            return (y**2).sum(), y

        (_, ys[policy]), grads[policy] = jax.jit(jax.value_and_grad(loss, has_aux=True))(state, x)
    # bf16 operands (8-bit mantissa) move outputs of size ~0.5 by ~1e-3, never by 1e-1 ...
    err = float(jnp.abs(ys["bf16"] - ys["float32"]).max())
    assert 1e-5 < err < 3e-2, err
    np.testing.assert_allclose(ys["bf16"], ys["float32"], atol=3e-2)
    for g32, g16 in zip(jax.tree.leaves(grads["float32"]), jax.tree.leaves(grads["bf16"])):
        np.testing.assert_allclose(g16, g32, rtol=0.1, atol=5e-2)
    # ... and padded outputs stay exactly zero in every mode.
    assert float(jnp.abs(ys["bf16"][2]).max()) == 0.0
    if jax.default_backend() == "cpu":  # XLA CPU computes DEFAULT-precision float32 exactly
        np.testing.assert_array_equal(ys["tf32"], ys["float32"])
    else:  # TF32 (10-bit mantissa) on GPU, bf16 passes on TPU: close, not equal
        np.testing.assert_allclose(ys["tf32"], ys["float32"], atol=3e-2)


@pytest.mark.parametrize("policy,level", [("float32", "HIGHEST"), ("tf32", "DEFAULT")])
def test_attention_and_encoder_follow_the_policy(policy, level):
    d = 2 * H
    h = jax.random.normal(jax.random.key(2), (B, T, d))
    for module in (
        attention.AttentionPooling(d, precision=policy, rngs=nnx.Rngs(0)),
        attention.SelfAttention(d, 2, precision=policy, rngs=nnx.Rngs(0)),
    ):
        graphdef, state = nnx.split(module)
        dots = _dots(lambda s, h, g=graphdef: nnx.merge(g, s)(h, LENGTHS), state, h)
        assert dots and _levels(dots) == {level}, type(module).__name__

    cfg = {
        "cell": "lstm",
        "hidden": H,
        "layers": 1,
        "bidirectional": True,
        "attention_heads": 2,
        "precision": policy,
    }
    enc = models.Encoder(cfg, F, rngs=nnx.Rngs(0))
    assert enc.precision == policy
    graphdef, state = nnx.split(enc)
    dots = _dots(lambda s, x: nnx.merge(graphdef, s)(x, LENGTHS)[0], state, _x())
    assert len(dots) >= 6 and _levels(dots) == {level}


def test_encoder_bf16_and_the_legacy_dtype():
    base = {"cell": "gru", "hidden": H, "layers": 1, "bidirectional": False}
    enc = models.Encoder({**base, "precision": "bf16"}, F, rngs=nnx.Rngs(0))
    assert enc.precision == "bf16" and enc.rnn.layers[0].cell.dtype == jnp.bfloat16
    legacy = models.Encoder({**base, "dtype": "bfloat16"}, F, rngs=nnx.Rngs(0))
    assert legacy.precision == "bf16" and legacy.rnn.layers[0].cell.precision == "float32"
    assert models.Encoder(base, F, rngs=nnx.Rngs(0)).precision == "float32"  # no field: default
    with pytest.raises(ValueError, match="unknown precision policy 'fast'"):
        models.Encoder({**base, "precision": "fast"}, F, rngs=nnx.Rngs(0))


def test_scope_sets_matmuls_without_an_explicit_precision():
    a, w = jnp.ones((2, 3)), jnp.ones((3, 4))
    for policy, level in (("float32", "HIGHEST"), ("tf32", "DEFAULT"), ("bf16", "DEFAULT")):

        def f(a, w, policy=policy):
            with precision.scope(policy):
                return a @ w

        assert _levels(_dots(f, a, w)) == {level}
    with pytest.raises(ValueError, match="unknown precision policy"), precision.scope("tf16"):
        pass


def test_fused_functions_take_the_policy():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(H, 4 * H)), jnp.float32)
    xp = jnp.asarray(rng.normal(size=(T, B, 4 * H)), jnp.float32)
    h0 = jnp.zeros((B, H))
    for policy, level in (("float32", "HIGHEST"), ("tf32", "DEFAULT")):

        def loss(w, xp, policy=policy):
            ys, _ = fused.lstm_recurrence(w, xp, h0, h0, precision=policy)
            return (ys**2).sum()

        dots = _dots(jax.grad(loss, argnums=(0, 1)), w, xp)
        assert len(dots) == 3 and _levels(dots) == {level}  # forward, dh, the weight gradient
    with pytest.raises(ValueError, match="unknown precision policy"):
        fused.gru_recurrence(w[:, : 3 * H], jnp.zeros(3 * H), xp[..., : 3 * H], h0, precision="x")
