"""Utterance classification (keyword spotting): softmax cross-entropy, accuracy.

batch: labels [batch] int32. model: `models.Classifier` -> logits [batch, classes].
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from rnnbench.objectives import Objective, register


@register
class Classify(Objective):
    name = "classify"
    model_kind = "classifier"
    data_task = "classify"
    primary = "accuracy"
    higher_is_better = True
    sum_keys = ("correct",)

    def per_example(self, logits, aux, batch):
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
        correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
        return ce, {"correct": (correct * batch["weights"]).sum()}

    def train_metrics(self, sums):
        return {"accuracy": sums["correct"] / jnp.maximum(sums["count"], 1.0)}

    def eval_outputs(self, model, logits, aux, batch):
        return {"predicted": jnp.argmax(logits, -1)}

    def prediction(self, out, row, dataset):
        return dataset.classes[int(out["predicted"][row])]

    def summarize(self, acc, dataset):
        out = super().summarize(acc, dataset)
        out["accuracy"] = acc["correct"] / max(acc["count"], 1.0)
        return out
