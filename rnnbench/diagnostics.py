"""Gradient-flow diagnostic: how much does the loss depend on an input t steps before the readout?

  flow = gradient_flow(config, params_or_None, dataset=None, batch_size=32, seed=0)
  flow["distance"]   [T]  distance from the readout, T_last - t (0 = the last input step)
  flow["grad_norm"]  [T]  mean over the batch of ||dLoss/dx_t||_2, indexed by distance
  flow["relative"]   [T]  grad_norm / grad_norm at distance 0
  grads, t_valid = input_gradients(config, params_or_None, dataset=None, batch_size=32, seed=0)
                     dLoss/dx [B, T, F] (float32) on the same batch, and its common valid length

x_t is the model's input at step t (the task inputs, or the log-mel frames for audio datasets, i.e.
before the optional conv front-end). The loss is the training loss of the config's task on one
batch (for the tag tasks that score only the final recall steps, "the readout" is the last step
and the recalled symbols sit at distances 0..copy_len-1). For an untrained tanh-RNN the norm falls
geometrically with distance (vanishing gradients); gated cells keep it far larger.

Norms are taken in float64 on the host: a float32 sum of squares loses every component below
~1.1e-19 (its square is under the smallest normal float32, 1.2e-38, and XLA flushes it to 0), which
once drew gradients of ~1e-19 as exactly 0. The gradient itself is float32, so a norm of exactly 0
still means "every component below ~1e-38" (the backward pass flushes those).

`params=None` uses the freshly initialised model (`train.init_state`); `load_params(config,
workdir)` restores trained params from a run's orbax checkpoint (latest step).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from rnnbench import input_pipeline, objectives, train


def load_params(config, workdir: str, dataset=None, step: int | None = None):
    """Trained params of the run in `workdir` (latest checkpoint unless `step`)."""
    dataset = dataset if dataset is not None else input_pipeline.load_dataset(config)
    _, state, _, _ = train.init_state(config, dataset)
    path = os.path.join(os.path.abspath(workdir), "checkpoints")
    with ocp.CheckpointManager(path) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    return restored["params"]


def _one_batch(config, dataset, batch_size: int, seed: int) -> dict:
    if input_pipeline.is_memory_task(dataset):
        return jax.device_get(dataset.batch(jax.random.PRNGKey(10_000 + seed), batch_size))
    c = config.copy_and_resolve_references()
    c.batch_size = batch_size
    objective = objectives.make(config, dataset)
    buckets = input_pipeline.buckets_for(config, dataset)
    return next(input_pipeline.eval_stream(dataset, "test", c, buckets, objective.encoder(dataset)))


def input_gradients(
    config, params=None, dataset=None, *, batch_size: int = 32, seed: int = 0
) -> tuple[jax.Array, int]:
    """dLoss/dx [B, T, F] on one batch, and the valid length common to the batch."""
    dataset = dataset if dataset is not None else input_pipeline.load_dataset(config)
    objective = objectives.make(config, dataset)
    graphdef, state, _, _ = train.init_state(config, dataset, objective)
    params = state["params"] if params is None else params
    batch = _one_batch(config, dataset, batch_size, seed)
    feats, flen = train.compute_features(config, batch, None)
    t_valid = int(np.min(np.asarray(flen)))  # audio: use the common valid prefix

    def loss_of_inputs(x):
        model = nnx.merge(graphdef, params)
        outputs, aux = objective.forward(model, x, flen, batch, None)
        loss, _ = objective.loss(outputs, aux, batch)
        return loss

    return jax.jit(jax.grad(loss_of_inputs))(feats), t_valid


def gradient_flow(
    config, params=None, dataset=None, *, batch_size: int = 32, seed: int = 0
) -> dict:
    """Norm of dLoss/dx_t against the distance from the readout (see module docstring)."""
    grads, t_valid = input_gradients(config, params, dataset, batch_size=batch_size, seed=seed)
    per_step = np.linalg.norm(np.asarray(grads, np.float64), axis=-1)  # [B, T], no underflow
    norms = per_step.mean(0)[:t_valid][::-1]  # index = distance from readout
    rel = norms / max(float(norms[0]), 1e-30)
    return {"distance": np.arange(t_valid), "grad_norm": norms, "relative": rel}
