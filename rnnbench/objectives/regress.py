"""Regression read out from the last state (the adding problem): squared error of output 0.

batch: targets [batch] float32. model: `models.Classifier` with one output.
"""

from __future__ import annotations

import jax.numpy as jnp

from rnnbench.objectives import Objective, register


@register
class Regress(Objective):
    name = "regress"
    model_kind = "classifier"
    data_task = "regress"
    primary = "loss"
    higher_is_better = False

    def per_example(self, outputs, aux, batch):
        return jnp.square(outputs[:, 0] - batch["targets"]), {}
