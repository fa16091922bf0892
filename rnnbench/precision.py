"""Precision policy: how the float32 matmuls of a model run.

  POLICIES                  ("float32", "tf32", "bf16")
  check(name) -> name       ValueError for an unknown name
  lax_precision(name, dtype) the `precision=` the cells, layers and fused recurrences pass to
                            every matmul they make (explicit, so it wins over any global default)
  compute_dtype(name, dtype) the dtype matmul operands are cast to (bfloat16 for "bf16")
  scope(name)               context manager: `jax.default_matmul_precision` for every matmul traced
                            inside it that has no explicit precision (features, heads, losses)

Policies:
  "float32"  exact float32 (`lax.Precision.HIGHEST`), the default: the same numbers on CPU, GPU
             and TPU up to float32 rounding. JAX's own default on NVIDIA Ampere and newer GPUs is
             TF32 (10-bit mantissa), which put the torch parity tests outside their CPU tolerance
             on an H200 (issue 12); on CPU, XLA computes float32 matmuls exactly at any level.
  "tf32"     the backend's fast float32 matmul (`lax.Precision.DEFAULT`): TF32 tensor cores on
             NVIDIA Ampere and newer, one bfloat16 pass on TPU, exact float32 on CPU.
  "bf16"     the recurrent cells' matmuls take bfloat16 operands and accumulate in float32;
             parameters, carries and gate nonlinearities stay float32 (the cells' `dtype=bfloat16`
             path); their gradients' matmuls take the float32 cotangents. Other matmuls run as
             in "tf32".

A cell built with `dtype=jnp.bfloat16` computes its matmuls in bf16 whatever its policy (the
policy says how float32 matmuls run); `effective(name, dtype)` names what such a model does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp

POLICIES = ("float32", "tf32", "bf16")
DEFAULT = "float32"

_LAX = {
    "float32": jax.lax.Precision.HIGHEST,
    "tf32": jax.lax.Precision.DEFAULT,
    "bf16": jax.lax.Precision.DEFAULT,
}
# values of `jax.default_matmul_precision` (see its docstring) for the matmuls of a scope
_SCOPE = {"float32": "highest", "tf32": "default", "bf16": "default"}


def check(name: str) -> str:
    """Returns `name` if it is a policy, else raises ValueError listing the choices."""
    if name not in POLICIES:
        raise ValueError(f"unknown precision policy {name!r}; expected one of {list(POLICIES)}")
    return name


def lax_precision(name: str, dtype=None) -> jax.lax.Precision:
    """The `precision=` argument for the matmuls of policy `name` whose operands are `dtype`
    (None = float32). Precision levels concern float32 operands: 16-bit ones get DEFAULT."""
    p = _LAX[check(name)]
    if dtype is not None and jnp.dtype(dtype).itemsize < 4:
        return jax.lax.Precision.DEFAULT
    return p


def compute_dtype(name: str, dtype=None):
    """The matmul operand dtype of a cell with policy `name` and `dtype` (None = param dtype).

    "bf16" means bfloat16 operands; asking it together with another `dtype` is a conflict.
    """
    if check(name) != "bf16":
        return dtype
    if dtype is not None and jnp.dtype(dtype) != jnp.bfloat16:
        raise ValueError(
            f"precision='bf16' computes in bfloat16 but dtype={jnp.dtype(dtype)} was "
            "also given; pass one of them"
        )
    return jnp.bfloat16


def effective(name: str, dtype=None) -> str:
    """The policy a model with policy `name` and cell `dtype` really runs: "bf16" when its cells
    compute in bfloat16 (e.g. the legacy `model.dtype="bfloat16"`), else `name`."""
    check(name)
    if dtype and jnp.dtype(dtype) == jnp.bfloat16:
        return "bf16"
    return name


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Within the block, matmuls and convolutions traced without an explicit `precision=` run
    at policy `name` (read when a function is traced, so wrap the body of a jitted function)."""
    with jax.default_matmul_precision(_SCOPE[check(name)]):
        yield
