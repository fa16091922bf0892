"""Synthetic long-range memory tasks, generated on device from a PRNG key.

Each task is a small object with `batch(key, batch_size) -> dict` (pure JAX, jittable):

  inputs       [batch, time, num_inputs] float32
  lengths      [batch] int32 (all = time)
  weights      [batch] float32 ones
  targets      task "regress": [batch] float32 (read out from the last state)
               task "tag":     [batch, time] int32 per-step classes, with
  target_mask  [batch, time] float32, 1 where a step is scored ("tag" only)

and `baseline`: the loss of the best predictor that ignores the inputs (a task is "solved" when
the loss goes well below it). Batch k of training is `batch(fold_in(key, k))`: a pure function of
(seed, k), so resumed runs see the same data. Configs pick a task with `dataset = "task:<name>"`
and its parameters from `config.task`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Adding:
    """Adding problem (Hochreiter & Schmidhuber 1997; setup of Le et al. 2015).

    Two channels: values ~ U[0, 1] and markers (exactly two 1s, one in each half). Target: the
    sum of the two marked values; loss MSE. Predicting the mean (1.0) gives MSE 1/6 ~ 0.167.
    """

    length: int = 100
    name: str = "adding"
    task: str = "regress"
    num_inputs: int = 2
    num_outputs: int = 1
    baseline: float = 1.0 / 6.0

    def __post_init__(self):
        if self.length < 2:
            raise ValueError(f"adding: length must be >= 2, got {self.length}")

    def batch(self, key: Array, batch_size: int) -> dict:
        kv, k1, k2 = jax.random.split(key, 3)
        t, half = self.length, self.length // 2
        values = jax.random.uniform(kv, (batch_size, t))
        first = jax.random.randint(k1, (batch_size,), 0, half)
        second = jax.random.randint(k2, (batch_size,), half, t)
        steps = jnp.arange(t)[None, :]
        markers = ((steps == first[:, None]) | (steps == second[:, None])).astype(jnp.float32)
        return {"inputs": jnp.stack([values, markers], axis=-1),
                "lengths": jnp.full((batch_size,), t, jnp.int32),
                "weights": jnp.ones((batch_size,), jnp.float32),
                "targets": (values * markers).sum(axis=1)}


TASKS: dict[str, Callable[..., object]] = {"adding": Adding}


def make(name: str, **params):
    """Builds a task by name, e.g. `make("adding", length=200)`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    try:
        return TASKS[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters for task {name!r}: {e}") from None
