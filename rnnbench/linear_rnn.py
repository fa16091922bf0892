"""Parallel-scan recurrences: minGRU, minLSTM (Feng et al. 2024), LRU (Orvieto et al. 2023).

All three are diagonal linear recurrences in the state,

  h_t = a_t ⊙ h_{t-1} + b_t,        a_t, b_t functions of x_t only (no h_{t-1} inside a gate),

so they can be run either step by step (`step`, through the generic `lax.scan` of
`rnnbench.layers.RNN`) or for all steps at once with `jax.lax.associative_scan`
(`parallel_scan`, used by the layer when the cell was built with `parallel=True`).
Both forms give the same numbers up to float rounding (tests/test_linear_rnn.py checks outputs,
final carries and gradients; at T = 16,000 in float32: outputs and carries of all three cells
agree to ~4e-6 absolute, gradients of the LRU to ~5e-5 on values of ~10).

`parallel=False` is the default. On this 2-core CPU (results/longrange/scan_cost.md, B=8, H=128,
fwd + bwd + Adam, a shared and noisy machine) the parallel form was at best ~1.1-2x faster for
minGRU/minLSTM at T <= 3000, no better at T = 16,000 (minGRU 1.5x slower), and 1.5-1.9x slower
for the LRU from T = 1000 on; it compiles 2-4x slower (~10 s per layer at T = 16,000) and needs
about the same XLA temp memory (the LRU 1.5x more). An earlier measurement that differentiated
through associative_scan (no custom VJP) found it 1.5-7.7x slower everywhere. The parallel form
is for accelerators, where its O(log T) depth keeps the device busy; `python -m
experiments.bench_scan` re-measures.

Gradient: the scan has a custom VJP. The transpose of h_t = a_t h_{t-1} + b_t is the same kind of
recurrence run backwards (λ_t = g_t + a_{t+1} λ_{t+1}; db_t = λ_t; da_t = λ_t h_{t-1}), so the
backward pass is one more associative_scan and only (a, h) are saved. Measured against autodiff
through `jax.lax.associative_scan` (fwd + bwd + Adam, B=8, H=128): 1.2-1.6x faster and 17-35% less
XLA temp memory at T = 1000 and 16,000. Forward-mode (jvp) is not defined through it.

Which parallel scan, and why linear space:
  combine((a1, b1), (a2, b2)) = (a1 * a2, a2 * b1 + b2)   on (a, b) in linear space.
The paper's log-space form (log h_t = logcumsumexp(log b - cumsum log a) + cumsum log a) was
measured to lose precision (~6e-3 abs at T = 16,000 in float32: cumsum(log a) grows without
bound and the two large terms cancel) and to give wrong gradients with saturated gates, and
`lax.cumlogsumexp` was 18-90x slower than an associative_scan. The linear-space combine never
forms an unbounded quantity: every partial product of a lies in [0, 1] (|a| <= 1 for all three
cells), so it neither overflows nor cancels; it underflows to 0 only when the true value is
below float precision anyway. It also works unchanged for the complex LRU state and for h_t of
either sign (the log-space form needs h~ > 0, hence minGRU's g activation). At T = 16,000 it
matches the sequential scan to ~1e-6 relative.

Lengths: `parallel_scan(carry, xp [T, B, G*H], mask [T, B] or None)` sets a_t = 1, b_t = 0 at
masked (padded) steps, which holds the carry, so the state at the last step is each sequence's
state at its own last valid step; outputs at masked steps are zeroed. The layer's reverse
(`reverse_padded`) keeps the padding at the end, so the same mask applies.

Cells (gate slices of the fused input projection `project_inputs(x) -> [..., G*H]`):
  MinGRU   (z, h~):    z = σ(k_z), h~ = g(k_h);  h_t = (1 - z) h_{t-1} + z h~
  MinLSTM  (f, i, h~): f' = f / (f + i), i' = i / (f + i) with f = σ(k_f), i = σ(k_i);
                       h_t = f' h_{t-1} + i' h~
  with g(x) = x + 0.5 for x >= 0 else σ(x) (the paper's positive, log-space-friendly activation;
  `activation="identity"` gives the plain h~ = k_h variant). 1 - σ(k) is computed as σ(-k) and
  f' as σ(softplus(-k_i) - softplus(-k_f)) (= f / (f + i) exactly, no 0/0 when both gates saturate).
  LRU: complex diagonal state h [B, N] (N = `state_size`, default hidden_size),
       λ = exp(-exp(ν_log) + i exp(θ_log)),  h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t),  γ = exp(γ_log)
       initialised to sqrt(1 - |λ|²);  y_t = Re(C h_t) + D x_t.
       |λ| is drawn uniformly on the ring r_min <= |λ| <= r_max (by area), arg λ in [0, max_phase].
       hidden_size is the output size H; D is a full [in_features, H] matrix (the paper's
       element-wise D assumes in = out). The fused input projection is [γ Re(Bx), γ Im(Bx), Dx].

Their matmuls (the input projection, the LRU's readout C h) run at the cell's `precision` policy
(`rnnbench.precision`, exact float32 by default) through `cell_base.Cell._dot`; the scans
themselves are element-wise.

None of these cells has a recurrent matmul, so variational recurrent dropout (`h_mask`) has
nothing to act on and raises. The LRU's output needs x (the D x skip), so `LRU.hidden(carry)`
returns only Re(C h); zoneout in `layers.RNN` (which replaces y by `cell.hidden(carry)`) would
drop the skip term, hence `LRU.supports_zoneout = False` for callers to check.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from rnnbench import cell_base
from rnnbench import precision as precision_lib

Array = jax.Array

PARALLEL_CELLS = ("mingru", "minlstm", "lru")
ACTIVATIONS = ("g", "identity")


def _g(x: Array) -> Array:
    """minGRU/minLSTM candidate activation g(x) = x + 0.5 if x >= 0 else σ(x) (continuous, > 0)."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def _combine(left, right):
    """Composition of h -> a1 h + b1 then h -> a2 h + b2 (left is earlier in time)."""
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def _scan_fwd_only(a: Array, b: Array) -> Array:
    return jax.lax.associative_scan(_combine, (a, b), axis=0)[1]


@jax.custom_vjp
def _scan(a: Array, b: Array) -> Array:
    """h_t = a_t h_{t-1} + b_t from h_{-1} = 0, a and b of the same shape [T, ...]."""
    return _scan_fwd_only(a, b)


def _scan_vjp_fwd(a, b):
    h = _scan_fwd_only(a, b)
    return h, (a, h)


def _scan_vjp_bwd(res, g):
    # The transpose of the recurrence is the same recurrence run backwards in time:
    #   λ_t = g_t + a_{t+1} λ_{t+1},  db_t = λ_t,  da_t = λ_t h_{t-1}  (h_{-1} = 0).
    # JAX's vjp is the plain transpose (no complex conjugation), so this holds for complex a, b.
    a, h = res
    a_next = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])], axis=0)
    lam = jnp.flip(_scan_fwd_only(jnp.flip(a_next, 0), jnp.flip(g, 0)), 0)
    h_prev = jnp.concatenate([jnp.zeros_like(h[:1]), h[:-1]], axis=0)
    return lam * h_prev, lam


_scan.defvjp(_scan_vjp_fwd, _scan_vjp_bwd)


def linear_scan(a: Array, b: Array, h0: Array, mask: Array | None = None) -> Array:
    """All states of h_t = a_t h_{t-1} + b_t, h_{-1} = h0, by `jax.lax.associative_scan` over axis 0.

    a, b [T, B, N] (a may be any shape broadcastable to b), h0 [B, N], mask [T, B] bool or None:
    a masked step is the identity map (the state is held). Returns h [T, B, N].
    """
    a = jnp.broadcast_to(a, b.shape)
    if mask is not None:
        m = mask[..., None]
        a = jnp.where(m, a, jnp.ones_like(a))
        b = jnp.where(m, b, jnp.zeros_like(b))
    b = b.at[0].add(a[0] * h0)  # fold the initial carry into the first step
    return _scan(a, b)


class _LinearRecurrence(nnx.Module):
    """Shared plumbing: subclasses define `_coeffs(xp) -> (a, b)` and `_readout(h, xp) -> y`."""

    num_gates: int = 1
    supports_zoneout: bool = True

    def _check_common(self, in_features, hidden_size, parallel):
        if not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
            for v in (in_features, hidden_size)
        ):
            raise ValueError(
                f"in_features and hidden_size must be positive ints, got "
                f"in_features={in_features!r}, hidden_size={hidden_size!r}"
            )
        if not isinstance(parallel, bool):
            raise ValueError(f"parallel must be a bool, got {parallel!r}")

    _dot = cell_base.Cell._dot

    def _set_precision(self, precision: str, dtype) -> None:
        """The matmul policy and compute dtype, as `cell_base.Cell` sets them."""
        self.precision = precision_lib.check(precision)
        self.dtype = precision_lib.compute_dtype(precision, dtype)

    def _state_dtype(self):
        return self.param_dtype

    def initial_carry(self, batch_size: int) -> Array:
        return jnp.zeros((batch_size, self.state_size), self._state_dtype())

    def hidden(self, carry: Array) -> Array:
        return carry

    def _coeffs(self, xp: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def _readout(self, h: Array, xp: Array) -> Array:
        return h

    def step(self, carry: Array, xp: Array, h_mask: Array | None = None) -> tuple[Array, Array]:
        """One step: xp [B, G*H] (from `project_inputs`) -> (carry, y [B, hidden])."""
        if h_mask is not None:
            raise ValueError(
                f"{type(self).__name__} has no recurrent matmul, so recurrent_dropout "
                "(h_mask) is not supported; use input_dropout or dropout between layers"
            )
        a, b = self._coeffs(xp)
        h = a * carry + b
        return h, self._readout(h, xp)

    def parallel_scan(
        self, carry: Array, xp: Array, mask: Array | None = None
    ) -> tuple[Array, Array]:
        """All steps at once: xp [T, B, G*H], mask [T, B] bool or None -> (final carry, ys [T, B, H]).

        ys are zero at masked steps; the final carry is the state at each sequence's last valid step.
        """
        if xp.shape[0] == 0:
            return carry, jnp.zeros(xp.shape[:2] + (self.hidden_size,), self.param_dtype)
        a, b = self._coeffs(xp)
        h = linear_scan(a, b, carry, mask)
        ys = self._readout(h, xp)
        if mask is not None:
            ys = jnp.where(mask[..., None], ys, jnp.zeros_like(ys))
        return h[-1], ys

    def __call__(self, carry: Array, x: Array) -> tuple[Array, Array]:
        """One full step: x [batch, in_features] -> (carry, y [batch, hidden])."""
        return self.step(carry, self.project_inputs(x))


class _MinRNN(_LinearRecurrence):
    """minGRU / minLSTM: fused input projection w_ih [in, G*H] (+ bias [G*H]); carry h [B, H]."""

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        parallel: bool = False,
        activation: str = "g",
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision: str = precision_lib.DEFAULT,
        kernel_init: Callable = cell_base.default_kernel_init,
        rngs: nnx.Rngs,
    ):
        self._check_common(in_features, hidden_size, parallel)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.in_features = int(in_features)
        self.hidden_size = int(hidden_size)
        self.state_size = int(hidden_size)
        self.parallel = parallel
        self.activation = activation
        self.use_bias = use_bias
        self._set_precision(precision, dtype)
        self.param_dtype = param_dtype
        g = self.num_gates * hidden_size
        self.w_ih = nnx.Param(kernel_init(rngs.params(), (in_features, g), param_dtype))
        self.bias = nnx.Param(jnp.zeros((g,), param_dtype)) if use_bias else None

    def project_inputs(self, x: Array) -> Array:
        """x [..., in_features] -> x @ w_ih + bias, [..., G*hidden]."""
        y = self._dot(x, self.w_ih[...])
        return y + self.bias[...] if self.bias is not None else y

    def _candidate(self, k: Array) -> Array:
        return _g(k) if self.activation == "g" else k


class MinGRU(_MinRNN):
    """minGRU: z = σ(k_z), h~ = g(k_h), h_t = (1 - z) h_{t-1} + z h~. Gate order (z, h~)."""

    num_gates = 2

    def _coeffs(self, xp):
        kz, kh = jnp.split(xp, 2, axis=-1)
        return jax.nn.sigmoid(-kz), jax.nn.sigmoid(kz) * self._candidate(kh)


class MinLSTM(_MinRNN):
    """minLSTM: f' = f/(f+i), i' = i/(f+i), h_t = f' h_{t-1} + i' h~. Gate order (f, i, h~)."""

    num_gates = 3

    def normalized_gates(self, xp: Array) -> tuple[Array, Array]:
        """(f', i') from the projected inputs; f' + i' = 1."""
        kf, ki, _ = jnp.split(xp, 3, axis=-1)
        d = jax.nn.softplus(-ki) - jax.nn.softplus(-kf)  # log f - log i
        return jax.nn.sigmoid(d), jax.nn.sigmoid(-d)

    def _coeffs(self, xp):
        f, i = self.normalized_gates(xp)
        return f, i * self._candidate(jnp.split(xp, 3, axis=-1)[2])


class LRU(_LinearRecurrence):
    """Linear Recurrent Unit (Orvieto et al. 2023). Carry: complex h [B, state_size].

    Args:
      state_size: N, size of the complex diagonal state (default hidden_size).
      r_min, r_max: ring of eigenvalue magnitudes at init, 0 <= r_min < r_max <= 1
        (paper defaults 0 and 1; 0.9 / 0.999 for long-range tasks).
      max_phase: eigenvalue phases drawn in [0, max_phase] (default 2π; π/10 for long range).
      use_bias: adds a bias [H] to D x (the paper has none).
    """

    supports_zoneout = False

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        parallel: bool = False,
        state_size: int | None = None,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
        use_bias: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        precision: str = precision_lib.DEFAULT,
        rngs: nnx.Rngs,
    ):
        self._check_common(in_features, hidden_size, parallel)
        n = hidden_size if state_size is None else state_size
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"state_size must be a positive int, got {state_size!r}")
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        if not max_phase > 0.0:
            raise ValueError(f"max_phase must be > 0, got {max_phase}")
        self.in_features = int(in_features)
        self.hidden_size = int(hidden_size)
        self.state_size = int(n)
        self.parallel = parallel
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.use_bias = use_bias
        self._set_precision(precision, dtype)
        self.param_dtype = param_dtype
        pd = param_dtype
        tiny = jnp.finfo(pd).tiny
        u1 = jax.random.uniform(rngs.params(), (n,), pd)
        u2 = jax.random.uniform(rngs.params(), (n,), pd)
        # |λ|² uniform on [r_min², r_max²]; ν = -log|λ| > 0 (clipped so that ν_log is finite).
        r2 = jnp.clip(u1 * (r_max**2 - r_min**2) + r_min**2, tiny, 1.0 - jnp.finfo(pd).eps)
        nu = -0.5 * jnp.log(r2)
        self.nu_log = nnx.Param(jnp.log(nu))
        self.theta_log = nnx.Param(jnp.log(jnp.maximum(max_phase * u2, tiny)))
        lam_abs = jnp.exp(-nu)
        self.gamma_log = nnx.Param(jnp.log(jnp.sqrt(1.0 - lam_abs**2)))
        f = in_features
        self.b_re = nnx.Param(jax.random.normal(rngs.params(), (f, n), pd) / math.sqrt(2 * f))
        self.b_im = nnx.Param(jax.random.normal(rngs.params(), (f, n), pd) / math.sqrt(2 * f))
        self.c_re = nnx.Param(jax.random.normal(rngs.params(), (n, hidden_size), pd) / math.sqrt(n))
        self.c_im = nnx.Param(jax.random.normal(rngs.params(), (n, hidden_size), pd) / math.sqrt(n))
        self.d = nnx.Param(jax.random.normal(rngs.params(), (f, hidden_size), pd) / math.sqrt(f))
        self.bias = nnx.Param(jnp.zeros((hidden_size,), pd)) if use_bias else None

    def _state_dtype(self):
        return jnp.result_type(self.param_dtype, jnp.complex64)

    def eigenvalues(self) -> Array:
        """λ [N], complex."""
        return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log[...]), jnp.exp(self.theta_log[...])))

    def project_inputs(self, x: Array) -> Array:
        """x [..., in] -> [γ Re(Bx), γ Im(Bx), D x (+ bias)], [..., 2N + H], one matmul."""
        gamma = jnp.exp(self.gamma_log[...])
        w = jnp.concatenate([self.b_re[...] * gamma, self.b_im[...] * gamma, self.d[...]], axis=-1)
        y = self._dot(x, w)
        if self.bias is not None:
            y = y + jnp.concatenate([jnp.zeros((2 * self.state_size,), y.dtype), self.bias[...]])
        return y

    def _coeffs(self, xp):
        n = self.state_size
        b = jax.lax.complex(xp[..., :n], xp[..., n : 2 * n])
        return self.eigenvalues(), b

    def _c(self, h: Array) -> Array:
        """Re(C h) = Re(h) C_re - Im(h) C_im, one matmul over [Re h, Im h]."""
        c = jnp.concatenate([self.c_re[...], -self.c_im[...]], axis=0)
        return self._dot(jnp.concatenate([h.real, h.imag], axis=-1), c)

    def hidden(self, carry: Array) -> Array:
        """Re(C h) [B, H]: the output without the D x skip term (which needs the input)."""
        return self._c(carry)

    def _readout(self, h, xp):
        return self._c(h) + xp[..., 2 * self.state_size :]
