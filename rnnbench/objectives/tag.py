"""Per-step classification (the copy and selective-copy tasks): cross-entropy over the scored
steps, accuracy over them.

batch: targets [batch, time] int32, target_mask [batch, time] (1 = scored step).
model: `models.Tagger` -> logits [batch, time, classes].
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from rnnbench.objectives import Objective, register


@register
class Tag(Objective):
    name = "tag"
    model_kind = "tagger"
    data_task = "tag"
    primary = "accuracy"
    higher_is_better = True
    sum_keys = ("correct", "scored")

    def per_example(self, logits, aux, batch):
        mask, w = batch["target_mask"], batch["weights"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])  # [B, T]
        correct = (jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32)
        per_example = (ce * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
        return per_example, {
            "correct": (correct * mask * w[:, None]).sum(),
            "scored": (mask * w[:, None]).sum(),
        }

    def train_metrics(self, sums):
        return {"accuracy": sums["correct"] / jnp.maximum(sums["scored"], 1.0)}

    def summarize(self, acc, dataset):
        out = super().summarize(acc, dataset)
        out["accuracy"] = acc["correct"] / max(acc["scored"], 1.0)
        return out
