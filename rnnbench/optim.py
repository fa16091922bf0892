"""Optimisers, learning-rate schedules and the regularisation penalties added to a task's loss.

make_optimizer(config.optimizer, num_steps) -> optax.GradientTransformation
weight_penalty(params, l1, l2), stability_penalty(states, lengths), masked_mse(pred, target, lengths)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = {
    "adam": lambda lr, c: optax.adam(lr, b1=c.get("b1", 0.9), b2=c.get("b2", 0.999)),
    "adamw": lambda lr, c: optax.adamw(lr, weight_decay=c.get("weight_decay", 1e-4)),
    "sgd": lambda lr, c: optax.sgd(lr, momentum=c.get("momentum", 0.9) or None),
}
SCHEDULES = ("constant", "cosine", "step")


def make_schedule(c, num_steps: int) -> optax.Schedule:
    """Warmup (linear, `warmup_steps`) followed by constant, cosine or step decay."""
    warmup = c.get("warmup_steps", 0)
    if c.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0,
            c.learning_rate,
            max(warmup, 1),
            num_steps,
            end_value=c.learning_rate * c.get("end_factor", 0.0),
        )
    if c.schedule == "step":
        boundaries = {
            int(f * num_steps): c.get("decay_factor", 0.1) for f in c.get("decay_at", (0.5, 0.75))
        }
        main = optax.piecewise_constant_schedule(c.learning_rate, boundaries)
    else:
        main = optax.constant_schedule(c.learning_rate)
    if not warmup:
        return main
    return optax.join_schedules(
        [optax.linear_schedule(0.0, c.learning_rate, warmup), main], [warmup]
    )


def make_optimizer(c, num_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping (if `clip_norm` > 0) then Adam/AdamW/SGD on the schedule."""
    tx = OPTIMIZERS[c.name](make_schedule(c, num_steps), c)
    if c.get("clip_norm", 0.0) > 0:
        tx = optax.chain(optax.clip_by_global_norm(c.clip_norm), tx)
    return tx


def weight_penalty(params, l1: float, l2: float) -> jax.Array:
    """l1 * sum |w| + l2 * sum w^2 over weight matrices (ndim >= 2; biases and norms excluded)."""
    total = jnp.zeros(())
    for w in jax.tree.leaves(params):
        if w.ndim >= 2:
            if l1:
                total += l1 * jnp.abs(w).sum()
            if l2:
                total += l2 * jnp.square(w).sum()
    return total


def stability_penalty(states: jax.Array, lengths: jax.Array) -> jax.Array:
    """mean over valid t >= 1 of ||h_t - h_{t-1}||^2 (Krueger & Memisevic 2015), states [B, T, D]."""
    diff = jnp.square(states[:, 1:] - states[:, :-1]).sum(-1)  # [B, T-1]
    valid = jnp.arange(1, states.shape[1])[None, :] < lengths[:, None]
    return jnp.where(valid, diff, 0.0).sum() / jnp.maximum(valid.sum(), 1)


def masked_mse(pred: jax.Array, target: jax.Array, lengths: jax.Array) -> jax.Array:
    """Mean squared error over the valid frames of [B, T, F] arrays."""
    valid = (jnp.arange(target.shape[1])[None, :] < lengths[:, None])[..., None]
    se = jnp.where(valid, jnp.square(pred - target), 0.0)
    return se.sum() / jnp.maximum(valid.sum() * target.shape[-1], 1)
