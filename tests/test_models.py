"""Models (rnnbench.models): last/mean state pooling on hand-made arrays, Classifier poolings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnbench import layers, models

LENGTHS = np.array([4, 2, 1, 0])


def _hand_states():
    """h[b, t, d] = 100 b + 10 t + d + 1 at valid steps, 0 at padded ones: [4, 4, 4]."""
    b, t, d = np.meshgrid(np.arange(4), np.arange(4), np.arange(4), indexing="ij")
    h = (100 * b + 10 * t + d + 1).astype(np.float32)
    h[t >= LENGTHS[:, None, None]] = 0.0
    return jnp.asarray(h)


def test_last_state_unidirectional():
    out = models.last_state(_hand_states(), jnp.asarray(LENGTHS), bidirectional=False)
    np.testing.assert_array_equal(
        out,
        [
            [31, 32, 33, 34],  # step 3 of 4
            [111, 112, 113, 114],  # step 1 of 2
            [201, 202, 203, 204],  # step 0 of 1
            [0, 0, 0, 0],  # empty: the zero step 0
        ],
    )


def test_last_state_bidirectional():
    # forward half (d = 0, 1) at the last valid step, backward half (d = 2, 3) at step 0
    out = models.last_state(_hand_states(), jnp.asarray(LENGTHS), bidirectional=True)
    np.testing.assert_array_equal(
        out, [[31, 32, 3, 4], [111, 112, 103, 104], [201, 202, 203, 204], [0, 0, 0, 0]]
    )


def test_mean_state():
    out = models.mean_state(_hand_states(), jnp.asarray(LENGTHS))
    np.testing.assert_allclose(
        out,
        [
            [16, 17, 18, 19],  # mean of 10 t over t = 0..3 is 15
            [106, 107, 108, 109],  # 100 + mean(0, 10)
            [201, 202, 203, 204],
            [0, 0, 0, 0],  # empty: zeros, not NaN
        ],
    )


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_state_is_the_final_carry_of_a_real_encoder(bidirectional):
    """Forward: the carry after the last valid step; backward: after reading back to step 0."""
    enc = layers.build("gru", 3, 5, bidirectional=bidirectional, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (3, 6, 3))
    lengths = jnp.array([6, 3, 1])
    y, (carry,) = enc(x, lengths)
    expected = jnp.concatenate(carry, axis=-1) if bidirectional else carry
    np.testing.assert_allclose(models.last_state(y, lengths, bidirectional), expected, atol=1e-6)
    if bidirectional:  # the backward half at the last valid step has seen only that step
        naive = y[jnp.arange(3), lengths - 1, 5:]
        assert not np.allclose(naive[:2], carry[1][:2], atol=1e-3)


def _classifier(pooling, bidirectional):
    cfg = {
        "kind": "classifier",
        "cell": "gru",
        "hidden": 6,
        "layers": 1,
        "bidirectional": bidirectional,
        "pooling": pooling,
    }
    return models.build(cfg, num_features=4, num_classes=3, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("pooling", models.POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_poolings(pooling, bidirectional):
    model = _classifier(pooling, bidirectional)
    x = jax.random.normal(jax.random.key(2), (3, 7, 4))
    lengths = jnp.array([7, 4, 2])
    # the same three sequences again with garbage past each length, in one call
    garbage = jnp.where(jnp.arange(7)[None, :, None] < lengths[:, None, None], x, 1e3)
    logits, aux = model(jnp.concatenate([x, garbage]), jnp.concatenate([lengths, lengths]))
    assert logits.shape == (6, 3) and aux["states"].shape == (6, 7, 12 if bidirectional else 6)
    np.testing.assert_allclose(logits[3:], logits[:3], rtol=1e-5, atol=1e-5)  # padding ignored
    # the head reads the pooled state the model names
    h, lengths = aux["states"][:3], aux["lengths"][:3]
    np.testing.assert_array_equal(lengths, [7, 4, 2])
    if pooling == "last":
        pooled = models.last_state(h, lengths, bidirectional)
    elif pooling == "mean":
        pooled = models.mean_state(h, lengths)
    else:
        pooled, weights = model.pool(h, lengths)
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
        assert np.all(np.asarray(weights)[1, 4:] == 0) and np.all(np.asarray(weights)[2, 2:] == 0)
    np.testing.assert_allclose(logits[:3], model.head(pooled), rtol=1e-6, atol=1e-6)


def test_classifier_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="unknown model.pooling 'max'; expected one of"):
        _classifier("max", False)
