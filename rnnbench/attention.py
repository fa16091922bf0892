"""Attention over recurrent states: masked attention pooling and a self-attention block.

  AttentionPooling   [batch, time, D] + lengths -> [batch, D]        (de Andrade et al. 2018 style)
  SelfAttention      [batch, time, D] + lengths -> [batch, time, D]  (MHA + residual + layer norm)

Both mask padded steps, so appending garbage after a sequence's length changes nothing.
`precision` is the policy of their matmuls (`rnnbench.precision`; exact float32 by default).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rnnbench import precision as precision_lib

Array = jax.Array


def valid_mask(lengths: Array, time: int) -> Array:
    """lengths [batch] -> bool [batch, time], True at valid steps."""
    return jnp.arange(time)[None, :] < lengths[:, None]


class AttentionPooling(nnx.Module):
    """Weighted average of the states with learned, masked softmax weights.

    score_t = v . tanh(W h_t + b);  a = softmax(score over valid t);  out = sum_t a_t h_t.
    A sequence of length 0 pools to zeros. With `queries` = K > 1 there are K score vectors v_k
    (sharing W, b), each giving its own average: one per output head, e.g. per slot.
    """

    def __init__(
        self,
        features: int,
        hidden: int | None = None,
        *,
        queries: int = 1,
        precision: str = precision_lib.DEFAULT,
        rngs: nnx.Rngs,
    ):
        hidden = hidden or features
        self.queries = int(queries)
        self.precision = precision_lib.check(precision)
        lax_precision = precision_lib.lax_precision(precision)
        self.proj = nnx.Linear(features, hidden, precision=lax_precision, rngs=rngs)
        self.score = nnx.Linear(
            hidden, self.queries, use_bias=False, precision=lax_precision, rngs=rngs
        )

    def __call__(self, h: Array, lengths: Array) -> tuple[Array, Array]:
        """h [batch, time, D], lengths [batch] -> (pooled [batch, D], weights [batch, time]);
        with K > 1 queries, pooled [batch, K, D] and weights [batch, K, time]."""
        mask = valid_mask(lengths, h.shape[1])
        scores = self.score(jnp.tanh(self.proj(h)))  # [B, T, K]
        one = self.queries == 1  # [B, T] and "bt,btd->bd": the single-query program as it was
        scores, mask = (
            (scores[..., 0], mask) if one else (jnp.swapaxes(scores, 1, 2), mask[:, None])
        )
        scores = jnp.where(mask, scores, -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1, where=mask)
        weights = jnp.where(mask, weights, 0.0)
        pooled = jnp.einsum(
            "bt,btd->bd" if one else "bkt,btd->bkd",
            weights,
            h,
            precision=precision_lib.lax_precision(self.precision),
        )
        return pooled, weights


class SelfAttention(nnx.Module):
    """Multi-head self-attention over the states, masked, with residual and layer norm (post-LN).

    y = LayerNorm(h + MHA(h, h, h, mask)); padded steps are zero in y.
    """

    def __init__(
        self,
        features: int,
        num_heads: int = 4,
        *,
        dropout: float = 0.0,
        precision: str = precision_lib.DEFAULT,
        rngs: nnx.Rngs,
    ):
        if features % num_heads:
            raise ValueError(
                f"attention num_heads={num_heads} must divide the state size {features}"
            )
        self.precision = precision_lib.check(precision)
        self.mha = nnx.MultiHeadAttention(
            num_heads=num_heads,
            in_features=features,
            dropout_rate=dropout,
            decode=False,
            keep_rngs=False,
            precision=precision_lib.lax_precision(precision),
            rngs=rngs,
        )
        self.norm = nnx.LayerNorm(features, rngs=rngs)

    def __call__(self, h: Array, lengths: Array, *, key: Array | None = None) -> Array:
        mask = valid_mask(lengths, h.shape[1])
        attn_mask = nnx.make_attention_mask(mask, mask)  # [batch, 1, time, time]
        rngs = nnx.Rngs(dropout=key) if key is not None else None
        # The scope reaches the q.k and weights.v einsums, which flax's fast path
        # (`jax.nn.dot_product_attention`, taken without dropout) runs without `precision`.
        with precision_lib.scope(self.precision):
            a = self.mha(h, mask=attn_mask, deterministic=key is None, rngs=rngs)
        y = self.norm(h + a)
        return jnp.where(mask[..., None], y, 0.0)
