"""Recurrent cells: one time step each, carry in, carry out. No time loop here.

Every cell splits its work in two, so that the layer (`rnnbench.layers.RNN`) can hoist
the input projection out of the time loop:

  xp = cell.project_inputs(x)          # x [..., in_features] -> [..., G * hidden]; all steps, one matmul
  carry, y = cell.step(carry, xp_t)    # xp_t [batch, G * hidden]; the recurrent part only

and `cell(carry, x_t)` runs both for a single step. The cell interface is small:

  in_features, hidden_size     sizes
  initial_carry(batch_size)    zeros, the carry pytree
  hidden(carry)                the hidden state h [batch, hidden] inside the carry
  project_inputs(x)            input projection (+ bias) for any leading shape
  step(carry, xp, h_mask=None) one recurrent step; `h_mask` [batch, hidden] multiplies h before the
                               recurrent matmul (variational recurrent dropout), None = no dropout

Gate matmuls are fused: one `[in, G*H]` input and one `[H, G*H]` recurrent matmul per step
(the Cho GRU needs its reset gate before the candidate's matmul, so it does two).

Parameter layout (matches the math, transposed from PyTorch's `weight_ih_l0` etc.):
  w_ih [in_features, G*H], w_hh [hidden, G*H], bias [G*H] (LSTM, RNN: b_ih + b_hh folded into one),
  GRU: b_ih [3H] and b_hh [3H] kept apart because b_hn sits inside the reset gate's product.
Gate order is PyTorch's: LSTM (i, f, g, o), GRU (r, z, n).

`dtype` is the compute dtype of the matmuls (e.g. bfloat16); params stay in `param_dtype` and the
carry and gate nonlinearities run in `param_dtype` too (float32 by default), which keeps the
LSTM cell state accurate in mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from rnnbench import linear_rnn
from rnnbench.cell_base import (  # noqa: F401  (re-exported: cells.Cell etc.)
    Array,
    Carry,
    Cell,
    _fused_orthogonal,
    default_kernel_init,
    default_recurrent_init,
)


class SimpleRNN(Cell):
    """Elman RNN: h' = act(x W_ih + b + h W_hh). Carry: h [batch, hidden]."""

    num_gates = 1

    def __init__(self, in_features: int, hidden_size: int, *, nonlinearity: str = "tanh", **kw):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(in_features, hidden_size, **kw)

    def step(self, carry, xp, h_mask=None):
        h = carry if h_mask is None else carry * h_mask
        pre = xp + self._dot(h, self.w_hh[...])
        h = jnp.tanh(pre) if self.nonlinearity == "tanh" else jax.nn.relu(pre)
        return h, h


class LSTM(Cell):
    """LSTM (Hochreiter & Schmidhuber 1997, with forget gate). Carry: (h, c), each [batch, hidden].

    Gates (i, f, g, o) = split(x W_ih + b + h W_hh);  c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c').
    `forget_bias` (default 1.0, Jozefowicz et al. 2015) initialises the f slice of the bias.
    """

    num_gates = 4

    def __init__(self, in_features: int, hidden_size: int, *, forget_bias: float = 1.0, **kw):
        super().__init__(in_features, hidden_size, **kw)
        if self.bias is not None:
            self.bias[...] = self.bias[...].at[hidden_size : 2 * hidden_size].set(forget_bias)

    def initial_carry(self, batch_size):
        z = jnp.zeros((batch_size, self.hidden_size), self.param_dtype)
        return (z, z)

    def hidden(self, carry):
        return carry[0]

    def step(self, carry, xp, h_mask=None):
        h, c = carry
        if h_mask is not None:
            h = h * h_mask
        gates = xp + self._dot(h, self.w_hh[...])
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h


class GRU(Cell):
    """GRU (Cho et al. 2014). Carry: h [batch, hidden].

    r, z = σ(x W_ir + b_ir + h W_hr + b_hr), σ(x W_iz + b_iz + h W_hz + b_hz)
    variant="pytorch" (cuDNN, PyTorch, Keras reset_after):  n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn))
    variant="cho" (the original paper):                      n = tanh(x W_in + b_in + (r ⊙ h) W_hn + b_hn)
    h' = (1 - z) ⊙ n + z ⊙ h.
    """

    num_gates = 3

    def __init__(self, in_features: int, hidden_size: int, *, variant: str = "pytorch", **kw):
        if variant not in ("pytorch", "cho"):
            raise ValueError(f"GRU variant must be 'pytorch' or 'cho', got {variant!r}")
        self.variant = variant
        super().__init__(in_features, hidden_size, **kw)
        # The recurrent bias cannot be folded into the input bias (b_hn is inside r ⊙ (...)).
        self.b_hh = (
            nnx.Param(jnp.zeros((3 * hidden_size,), self.param_dtype)) if self.use_bias else None
        )

    def step(self, carry, xp, h_mask=None):
        h = carry
        hm = h if h_mask is None else h * h_mask
        H = self.hidden_size
        w_hh = self.w_hh[...]
        b_hh = self.b_hh[...] if self.b_hh is not None else jnp.zeros((3 * H,), self.param_dtype)
        x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
        if self.variant == "pytorch":
            hh = self._dot(hm, w_hh) + b_hh
            h_r, h_z, h_n = jnp.split(hh, 3, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
        else:
            hh = self._dot(hm, w_hh[:, : 2 * H]) + b_hh[: 2 * H]
            h_r, h_z = jnp.split(hh, 2, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + self._dot(r * hm, w_hh[:, 2 * H :]) + b_hh[2 * H :])
        h = (1.0 - z) * n + z * h
        return h, h


CELLS: dict[str, Callable[..., Cell]] = {
    "rnn": SimpleRNN,
    "tanh": SimpleRNN,
    "relu": lambda i, h, **kw: SimpleRNN(i, h, nonlinearity="relu", **kw),
    "lstm": LSTM,
    "gru": GRU,
    "gru_cho": lambda i, h, **kw: GRU(i, h, variant="cho", **kw),
    "mingru": linear_rnn.MinGRU,
    "minlstm": linear_rnn.MinLSTM,
    "lru": linear_rnn.LRU,
}

# cells with a parallel (associative scan) form: they accept `parallel=`
PARALLEL_CELLS: set[str] = set(linear_rnn.PARALLEL_CELLS)


def register(name: str, constructor: Callable[..., nnx.Module], *, parallel: bool = False) -> None:
    """Adds a cell constructor `(in_features, hidden_size, **kw) -> cell` under `name`;
    `parallel=True` if it accepts `parallel=` (an associative-scan form)."""
    CELLS[name] = constructor
    if parallel:
        PARALLEL_CELLS.add(name)


def make(name: str, in_features: int, hidden_size: int, **kw) -> nnx.Module:
    """Builds a cell by name, e.g. `make("lstm", 40, 128, rngs=nnx.Rngs(0))`.

    `parallel=True` asks for the associative-scan form (only cells in PARALLEL_CELLS have one).
    """
    if name not in CELLS:
        raise ValueError(f"unknown cell name {name!r}; expected one of {sorted(CELLS)}")
    if name not in PARALLEL_CELLS and "parallel" in kw:
        if kw.pop("parallel"):
            raise ValueError(
                f"cell {name!r} has no parallel form; parallel=True needs one of "
                f"{sorted(PARALLEL_CELLS)}"
            )
    return CELLS[name](in_features, hidden_size, **kw)
