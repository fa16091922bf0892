"""The base class of the fused-gate recurrent cells and their initialisers.

`Cell` holds the plumbing every cell shares (parameters `w_ih [in, G*H]`, `w_hh [H, G*H]`,
`bias [G*H]`; the input projection; the carry; `_dot`, the one matmul every cell makes, at the
cell's precision policy from `rnnbench.precision`). The classic cells (`rnnbench.cells`) and the
parallel-scan ones (`rnnbench.linear_rnn`) both build on it; the registry of names lives in
`rnnbench.cells`, which imports both, so neither imports the other's registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnbench import precision as precision_lib

Array = jax.Array
Carry = Any

default_kernel_init = nnx.initializers.glorot_uniform()
default_recurrent_init = nnx.initializers.orthogonal()


def _fused_orthogonal(init: Callable, key: Array, hidden: int, gates: int, dtype) -> Array:
    """`[H, G*H]` recurrent kernel made of G independently initialised `[H, H]` blocks."""
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init(k, (hidden, hidden), dtype) for k in keys], axis=-1)


class Cell(nnx.Module):
    """Shared plumbing of the fused-gate cells. Subclasses set `num_gates` and `step`.

    `precision` is the policy of its matmuls ("float32" exact, "tf32", "bf16"; see
    `rnnbench.precision`); `dtype` (e.g. bfloat16) the compute dtype of the matmul operands,
    None = `param_dtype` ("bf16" sets it to bfloat16).
    """

    num_gates: int = 1

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision: str = precision_lib.DEFAULT,
        kernel_init: Callable = default_kernel_init,
        recurrent_init: Callable = default_recurrent_init,
        rngs: nnx.Rngs,
    ):
        if in_features <= 0 or hidden_size <= 0:
            raise ValueError(
                f"in_features and hidden_size must be positive, got "
                f"in_features={in_features}, hidden_size={hidden_size}"
            )
        self.in_features = in_features
        self.hidden_size = hidden_size
        self.use_bias = use_bias
        self.precision = precision_lib.check(precision)
        self.dtype = precision_lib.compute_dtype(precision, dtype)
        self.param_dtype = param_dtype
        g = self.num_gates * hidden_size
        self.w_ih = nnx.Param(kernel_init(rngs.params(), (in_features, g), param_dtype))
        self.w_hh = nnx.Param(
            _fused_orthogonal(
                recurrent_init, rngs.params(), hidden_size, self.num_gates, param_dtype
            )
        )
        self.bias = nnx.Param(jnp.zeros((g,), param_dtype)) if use_bias else None

    def _dot(self, a: Array, w: Array) -> Array:
        """a [..., in] @ w [in, out] -> [..., out] in the compute dtype, accumulated and returned
        in `param_dtype`; float32 operands at the precision policy's `lax.Precision`.

        Leading dims are flattened into one first, so the matmul is 2-D: its gradient
        dw = a^T da then contracts ONE dimension, which XLA CPU runs 2.5x faster than the
        [time, batch]-contracting dot_general that `a @ w` on a 3-D `a` differentiates into
        (results/perf.md, input projection).
        """
        lead, a2 = a.shape[:-1], a.reshape(-1, a.shape[-1])
        precision = precision_lib.lax_precision(self.precision, self.dtype)
        if self.dtype is None:
            y = jnp.dot(a2, w, precision=precision)
        else:
            y = jnp.dot(
                a2.astype(self.dtype),
                w.astype(self.dtype),
                precision=precision,
                preferred_element_type=self.param_dtype,
            )
        return y.reshape(*lead, w.shape[-1])

    def project_inputs(self, x: Array) -> Array:
        """x [..., in_features] -> x @ w_ih + bias, [..., G*hidden]."""
        y = self._dot(x, self.w_ih[...])
        return y + self.bias[...] if self.bias is not None else y

    def initial_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.hidden_size), self.param_dtype)

    def hidden(self, carry: Carry) -> Array:
        return carry

    def step(self, carry: Carry, xp: Array, h_mask: Array | None = None) -> tuple[Carry, Array]:
        raise NotImplementedError

    def __call__(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One full step: x [batch, in_features] -> (carry, y [batch, hidden])."""
        return self.step(carry, self.project_inputs(x))
