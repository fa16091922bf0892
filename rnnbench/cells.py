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

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array
Carry = Any

default_kernel_init = nnx.initializers.glorot_uniform()
default_recurrent_init = nnx.initializers.orthogonal()


def _fused_orthogonal(init: Callable, key: Array, hidden: int, gates: int, dtype) -> Array:
    """`[H, G*H]` recurrent kernel made of G independently initialised `[H, H]` blocks."""
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init(k, (hidden, hidden), dtype) for k in keys], axis=-1)


class Cell(nnx.Module):
    """Shared plumbing of the fused-gate cells. Subclasses set `num_gates` and `step`."""

    num_gates: int = 1

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
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
        self.dtype = dtype
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
        in `param_dtype`.

        Leading dims are flattened into one first, so the matmul is 2-D: its gradient
        dw = a^T da then contracts ONE dimension, which XLA CPU runs 2.5x faster than the
        [time, batch]-contracting dot_general that `a @ w` on a 3-D `a` differentiates into
        (results/perf.md, input projection).
        """
        lead, a2 = a.shape[:-1], a.reshape(-1, a.shape[-1])
        if self.dtype is None:
            y = a2 @ w
        else:
            y = jnp.dot(
                a2.astype(self.dtype), w.astype(self.dtype), preferred_element_type=self.param_dtype
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
}


PARALLEL_CELLS: set[str] = set()  # cells with a parallel (associative scan) form


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


from rnnbench import linear_rnn as _linear_rnn  # noqa: E402,F401  (registers mingru, minlstm, lru)
