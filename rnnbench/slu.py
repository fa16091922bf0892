"""Spoken language understanding, direct: audio features -> the utterance's meaning.

  IntentModel  features [batch, time, F] -> front-end -> encoder -> (self-attention) -> pooling
               -> intent logits [batch, I] and slot logits [batch, S, V]
               (+ with `model.ctc_weight` > 0, frame logits over the transcript alphabet and
               the blank [batch, time', C + 1] in aux["ctc_logits"]: an auxiliary CTC loss
               that teaches the encoder the words, as multi-task SLU models do)

Pooling `head_attention` gives each head its own attention query over the states (pooled
[batch, 1 + S, D]); the others give all heads one pooled vector [batch, D].

One linear head for the intent and one per slot name of the meaning schema
(rnnbench.data.meanings: slot value id 0 = "none"), all reading the same pooled state
(`MeaningHeads`). The slot heads' logits come as one array, each slot's padded to V = the
largest slot vocabulary with `PAD_LOGIT` (never the argmax, no probability), so the loss and
the metrics are array ops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnbench import attention, models
from rnnbench.data import meanings

Array = jax.Array
# models.POOLINGS, and "head_attention": one attention query per head (the intent and each
# slot read their own weighted average of the states)
POOLINGS = (*models.POOLINGS, "head_attention")
PAD_LOGIT = -1e9  # finite: a one-hot cross-entropy over it stays finite (0 * -inf would be NaN)


class MeaningHeads(nnx.Module):
    """One linear head for the intent and one per slot (each its own [D, V_s] weights, held as
    one [S, D, V] array and applied as one einsum; columns past V_s give `PAD_LOGIT`).

    pooled [batch, D] (every head reads the same vector) or [batch, 1 + S, D] (row 0 for the
    intent, row 1 + s for slot s) -> {"intent": [batch, I], "slots": [batch, S, V]}.
    """

    def __init__(self, features: int, num_intents: int, slot_sizes, *, rngs: nnx.Rngs):
        self.slot_sizes = tuple(int(v) for v in slot_sizes)
        S, V = len(self.slot_sizes), max(self.slot_sizes, default=1)
        self.intent = nnx.Linear(features, num_intents, rngs=rngs)
        self.slot_kernel = nnx.Param(
            jax.random.normal(rngs.params(), (S, features, V)) / np.sqrt(features)
        )  # the scale of nnx.Linear's LeCun init
        self.slot_bias = nnx.Param(jnp.zeros((S, V)))

    def __call__(self, pooled: Array) -> dict:
        per_head = pooled.ndim == 3
        intent = self.intent(pooled[:, 0] if per_head else pooled)
        slots = jnp.einsum(
            "bsd,sdv->bsv" if per_head else "bd,sdv->bsv",
            pooled[:, 1:] if per_head else pooled,
            self.slot_kernel[...],
        )
        slots = slots + self.slot_bias[...]
        valid = jnp.arange(slots.shape[-1]) < jnp.array(self.slot_sizes, jnp.int32)[:, None]
        return {"intent": intent, "slots": jnp.where(valid, slots, PAD_LOGIT)}


class IntentModel(models._Model):  # shares the encoder and the autoencoder head
    """Encoder + pooling ('last' | 'mean' | 'attention', as `models.Classifier`) + one head for
    the intent and one per slot.

    The intents and slots are the meaning schema's (`codec`, by default synth_phrases').
    `num_classes` is the transcripts' alphabet size C (without the blank), read only by the
    auxiliary CTC head (`cfg["ctc_weight"]` > 0). Returns ({"intent": [batch, I], "slots":
    [batch, S, V]}, aux) with the models' usual aux ({"states", "lengths"} and the optional
    reconstruction), plus "ctc_logits" [batch, time', C + 1] with the CTC head.
    """

    def __init__(
        self,
        cfg,
        num_features: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        codec: meanings.MeaningCodec | None = None,
    ):
        super().__init__(cfg, num_features, rngs=rngs)
        codec = codec or meanings.synth_phrases_codec()
        pooling = cfg.get("pooling", "last")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown model.pooling {pooling!r}; expected one of {POOLINGS}")
        self.pooling = pooling
        d = self.encoder.out_features
        queries = 1 + len(codec.slot_sizes) if pooling == "head_attention" else 1
        self.pool = (
            attention.AttentionPooling(d, queries=queries, rngs=rngs)
            if pooling in ("attention", "head_attention")
            else None
        )
        self.heads = MeaningHeads(d, len(codec.intents), codec.slot_sizes, rngs=rngs)
        self.ctc_head = (
            nnx.Linear(d, num_classes + 1, rngs=rngs) if cfg.get("ctc_weight", 0.0) > 0 else None
        )

    def __call__(self, x: Array, lengths: Array, *, key: Array | None = None):
        h, lengths_out = self.encoder(x, lengths, key=key)
        if self.pooling == "last":
            pooled = models.last_state(h, lengths_out, self.encoder.bidirectional)
        elif self.pooling == "mean":
            pooled = models.mean_state(h, lengths_out)
        else:
            pooled, _ = self.pool(h, lengths_out)
        aux = self._aux(x, h, lengths_out)
        if self.ctc_head is not None:
            aux["ctc_logits"] = self.ctc_head(h)
        return self.heads(pooled), aux
