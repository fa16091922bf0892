"""Fused recurrences with a hand-written backward pass (`jax.custom_vjp`) for the plain cells.

`layers.RNN` uses these instead of its generic `lax.scan` over `cell.step` when the cell is a plain
`cells.LSTM`, `cells.GRU(variant="pytorch")` or `cells.SimpleRNN` (tanh or relu) whose kind is in
`KINDS`, with float32 matmul operands (`dtype=None`) and no zoneout or recurrent dropout (see
`recurrence_for`). The math is the same; what changes is the backward pass:

- the forward scan stores the gate activations (and the carries) it already computed, so the
  backward scan does no recomputation and needs no autodiff bookkeeping;
- the backward scan only runs the truly sequential part (dgates_t and dh_{t-1} = dgates_t W^T);
- the recurrent weight gradient is ONE large matmul after the backward scan,
  dW_hh = [h_{-1} .. h_{T-2}]^T [dgates_0 .. dgates_{T-1}]  ([H, T*B] x [T*B, G*H]),
  instead of T small [H, B] x [B, G*H] matmuls accumulated inside the loop.

All functions are time-major and pure:

  lstm_recurrence(w_hh, xp, h0, c0, valid)    -> (ys, (h, c))
  gru_recurrence(w_hh, b_hh, xp, h0, valid)   -> (ys, h)       (PyTorch/cuDNN GRU, reset after)
  rnn_recurrence(w_hh, xp, h0, valid, relu)   -> (ys, h)       (tanh, or relu when relu=True)

  xp [T, B, G*H]  input projection with its bias (cells.Cell.project_inputs), time-major
  valid [T, B]    bool, False at padded steps, or None (all valid)
  ys [T, B, H]    outputs, exactly 0 at padded steps; the final carry is each sequence's own
                  last valid carry (the conventions of `layers.RNN`).

`unroll` is the `lax.scan` unroll factor of both the forward and the backward scan;
`precision` the policy (`rnnbench.precision`, the cell's) of every matmul of both passes, the
weight gradient included.
Set `fused.ENABLED = False` (or use `with fused.disabled():`) to fall back to the generic scan,
e.g. to compare the two (tests/test_fused.py does).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import jax
import jax.numpy as jnp

from rnnbench import cells as cells_lib
from rnnbench import precision as precision_lib

Array = jax.Array

ENABLED = True
# Which cells `recurrence_for` dispatches to a fused path; remove a kind to use the generic scan for
# it. The GRU joined once the input projection became a 2-D matmul: its train step is then 0.86-0.95x
# the generic scan's (results/perf.md).
KINDS = {"lstm", "gru", "rnn"}
# How the fused LSTM and GRU recurrences run (read at trace time): "scan" (lax.scan, this module)
# or "pallas" (rnnbench/pallas_rnn.py: the whole time loop in one kernel per pass; opt-in, its
# speed unmeasured until timed on a GPU). Default from $RNNBENCH_RECURRENCE.
IMPLEMENTATION = os.environ.get("RNNBENCH_RECURRENCE", "scan")
IMPLEMENTATIONS = ("scan", "pallas")


@contextlib.contextmanager
def disabled():
    """Within the block, `layers.RNN` uses its generic scan (read at trace time)."""
    global ENABLED
    old, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = old


def _where(v, a, b):
    return a if v is None else jnp.where(v[:, None], a, b)


def _prev(seq0, seq):
    """[x_{-1}, x_0, ..., x_{T-2}] from x_{-1} [B, H] and seq [T, B, H]."""
    return jnp.concatenate([seq0[None], seq[:-1]], axis=0)


def _wgrad(h_prev: Array, dg: Array, prec) -> Array:
    """sum_t h_prev[t]^T dg[t] as one [H, T*B] x [T*B, G*H] matmul."""
    H, GH = h_prev.shape[-1], dg.shape[-1]
    return jnp.dot(h_prev.reshape(-1, H).T, dg.reshape(-1, GH), precision=prec)


# ----------------------------------------------------------------------------- LSTM


def _lstm_forward(w_hh, xp, h0, c0, valid, unroll, prec, store):
    H = h0.shape[-1]

    def body(carry, inp):
        h, c = carry
        xp_t, v = inp
        gates = xp_t + jnp.dot(h, w_hh, precision=prec)
        ifo = jax.nn.sigmoid(jnp.concatenate([gates[:, : 2 * H], gates[:, 3 * H :]], axis=-1))
        i, f, o = ifo[:, :H], ifo[:, H : 2 * H], ifo[:, 2 * H :]
        g = jnp.tanh(gates[:, 2 * H : 3 * H])
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        h_new = o * tc
        y = h_new if v is None else jnp.where(v[:, None], h_new, 0.0)
        h2, c2 = _where(v, h_new, h), _where(v, c_new, c)
        # Without a mask the carry h equals y: store it once.
        hs = None if v is None else h2
        out = (y, (i, f, g, o, tc, hs, c2)) if store else (y, None)
        return (h2, c2), out

    (h, c), (ys, res) = jax.lax.scan(body, (h0, c0), (xp, valid), unroll=unroll)
    if store and valid is None:
        res = res[:5] + (ys,) + res[6:]
    return ys, (h, c), res


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _lstm(w_hh, xp, h0, c0, valid, unroll, prec):
    ys, carry, _ = _lstm_forward(w_hh, xp, h0, c0, valid, unroll, prec, store=False)
    return ys, carry


def _lstm_fwd(w_hh, xp, h0, c0, valid, unroll, prec):
    ys, carry, res = _lstm_forward(w_hh, xp, h0, c0, valid, unroll, prec, store=True)
    return (ys, carry), (w_hh, h0, c0, valid, res)


def _lstm_bwd(unroll, prec, saved, cts):
    w_hh, h0, c0, valid, (i, f, g, o, tc, hs, cs) = saved
    dys, (dh_T, dc_T) = cts
    c_prev = _prev(c0, cs)
    w_t = w_hh.T

    def body(carry, inp):
        dh, dc = carry
        dy, i, f, g, o, tc, cp, v = inp
        if v is None:
            dhn, dcn = dh + dy, dc
        else:
            vf = v[:, None]
            dhn = jnp.where(vf, dh + dy, 0.0)
            dcn = jnp.where(vf, dc, 0.0)
        dcn = dcn + dhn * o * (1.0 - tc * tc)
        di = dcn * g * i * (1.0 - i)
        df = dcn * cp * f * (1.0 - f)
        dgg = dcn * i * (1.0 - g * g)
        do = dhn * tc * o * (1.0 - o)
        dgates = jnp.concatenate([di, df, dgg, do], axis=-1)
        dh_prev = jnp.dot(dgates, w_t, precision=prec)
        dc_prev = dcn * f
        if v is not None:
            dh_prev = dh_prev + jnp.where(vf, 0.0, dh)
            dc_prev = dc_prev + jnp.where(vf, 0.0, dc)
        return (dh_prev, dc_prev), dgates

    (dh0, dc0), dgates = jax.lax.scan(
        body, (dh_T, dc_T), (dys, i, f, g, o, tc, c_prev, valid), reverse=True, unroll=unroll
    )
    dw = _wgrad(_prev(h0, hs), dgates, prec)
    return dw, dgates, dh0, dc0, None


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_recurrence(
    w_hh: Array,
    xp: Array,
    h0: Array,
    c0: Array,
    valid: Array | None = None,
    *,
    unroll: int = 1,
    precision: str = precision_lib.DEFAULT,
):
    """LSTM over time: xp [T, B, 4H] (gate order i, f, g, o) -> (ys [T, B, H], (h, c))."""
    return _lstm(w_hh, xp, h0, c0, valid, unroll, precision_lib.lax_precision(precision))


# ----------------------------------------------------------------------------- GRU (PyTorch variant)


def _gru_forward(w_hh, b_hh, xp, h0, valid, unroll, prec, store):
    H = h0.shape[-1]

    def body(h, inp):
        xp_t, v = inp
        hh = jnp.dot(h, w_hh, precision=prec) + b_hh
        rz = jax.nn.sigmoid(xp_t[:, : 2 * H] + hh[:, : 2 * H])
        r, z = rz[:, :H], rz[:, H:]
        hn = hh[:, 2 * H :]
        n = jnp.tanh(xp_t[:, 2 * H :] + r * hn)
        h_new = n + z * (h - n)
        y = h_new if v is None else jnp.where(v[:, None], h_new, 0.0)
        h2 = _where(v, h_new, h)
        hs = None if v is None else h2
        return h2, ((y, (r, z, n, hn, hs)) if store else (y, None))

    h, (ys, res) = jax.lax.scan(body, h0, (xp, valid), unroll=unroll)
    if store and valid is None:
        res = res[:4] + (ys,)
    return ys, h, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _gru(w_hh, b_hh, xp, h0, valid, unroll, prec):
    ys, h, _ = _gru_forward(w_hh, b_hh, xp, h0, valid, unroll, prec, store=False)
    return ys, h


def _gru_fwd(w_hh, b_hh, xp, h0, valid, unroll, prec):
    ys, h, res = _gru_forward(w_hh, b_hh, xp, h0, valid, unroll, prec, store=True)
    return (ys, h), (w_hh, b_hh, h0, valid, res)


def _gru_bwd(unroll, prec, saved, cts):
    w_hh, b_hh, h0, valid, (r, z, n, hn, hs) = saved
    dys, dh_T = cts
    h_prev = _prev(h0, hs)
    w_t = w_hh.T

    def body(dh, inp):
        dy, r, z, n, hn, hp, v = inp
        if v is None:
            dhn = dh + dy
        else:
            vf = v[:, None]
            dhn = jnp.where(vf, dh + dy, 0.0)
        dn = dhn * (1.0 - z) * (1.0 - n * n)
        dz = dhn * (hp - n) * z * (1.0 - z)
        dr = dn * hn * r * (1.0 - r)
        dxp = jnp.concatenate([dr, dz, dn], axis=-1)
        dhh = jnp.concatenate([dr, dz, dn * r], axis=-1)
        dh_prev = jnp.dot(dhh, w_t, precision=prec) + dhn * z
        if v is not None:
            dh_prev = dh_prev + jnp.where(vf, 0.0, dh)
        return dh_prev, (dxp, dhh)

    dh0, (dxp, dhh) = jax.lax.scan(
        body, dh_T, (dys, r, z, n, hn, h_prev, valid), reverse=True, unroll=unroll
    )
    dw = _wgrad(h_prev, dhh, prec)
    db = dhh.sum(axis=(0, 1)).astype(b_hh.dtype)
    return dw, db, dxp, dh0, None


_gru.defvjp(_gru_fwd, _gru_bwd)


def gru_recurrence(
    w_hh: Array,
    b_hh: Array,
    xp: Array,
    h0: Array,
    valid: Array | None = None,
    *,
    unroll: int = 1,
    precision: str = precision_lib.DEFAULT,
):
    """PyTorch-variant GRU over time: xp [T, B, 3H] (r, z, n; with b_ih) -> (ys [T, B, H], h)."""
    return _gru(w_hh, b_hh, xp, h0, valid, unroll, precision_lib.lax_precision(precision))


# ----------------------------------------------------------------------------- Elman RNN


def _rnn_forward(w_hh, xp, h0, valid, relu, unroll, prec):
    act = jax.nn.relu if relu else jnp.tanh

    def body(h, inp):
        xp_t, v = inp
        h_new = act(xp_t + jnp.dot(h, w_hh, precision=prec))
        y = h_new if v is None else jnp.where(v[:, None], h_new, 0.0)
        h2 = _where(v, h_new, h)
        return h2, (y, None if v is None else h2)

    h, (ys, hs) = jax.lax.scan(body, h0, (xp, valid), unroll=unroll)
    return ys, h, (ys if valid is None else hs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _rnn(w_hh, xp, h0, valid, relu, unroll, prec):
    ys, h, _ = _rnn_forward(w_hh, xp, h0, valid, relu, unroll, prec)
    return ys, h


def _rnn_fwd(w_hh, xp, h0, valid, relu, unroll, prec):
    ys, h, hs = _rnn_forward(w_hh, xp, h0, valid, relu, unroll, prec)
    return (ys, h), (w_hh, h0, valid, hs)


def _rnn_bwd(relu, unroll, prec, saved, cts):
    w_hh, h0, valid, hs = saved
    dys, dh_T = cts
    w_t = w_hh.T

    def body(dh, inp):
        dy, h, v = inp  # h = h_new at valid steps (the carry); its gradient is masked elsewhere
        if v is None:
            dhn = dh + dy
        else:
            vf = v[:, None]
            dhn = jnp.where(vf, dh + dy, 0.0)
        dpre = dhn * (h > 0).astype(h.dtype) if relu else dhn * (1.0 - h * h)
        dh_prev = jnp.dot(dpre, w_t, precision=prec)
        if v is not None:
            dh_prev = dh_prev + jnp.where(vf, 0.0, dh)
        return dh_prev, dpre

    dh0, dpre = jax.lax.scan(body, dh_T, (dys, hs, valid), reverse=True, unroll=unroll)
    dw = _wgrad(_prev(h0, hs), dpre, prec)
    return dw, dpre, dh0, None


_rnn.defvjp(_rnn_fwd, _rnn_bwd)


def rnn_recurrence(
    w_hh: Array,
    xp: Array,
    h0: Array,
    valid: Array | None = None,
    relu: bool = False,
    *,
    unroll: int = 1,
    precision: str = precision_lib.DEFAULT,
):
    """Elman RNN over time: xp [T, B, H] -> (ys [T, B, H], h)."""
    return _rnn(w_hh, xp, h0, valid, relu, unroll, precision_lib.lax_precision(precision))


# ----------------------------------------------------------------------------- dispatch


def recurrence_for(cell):
    """`f(carry, xp, valid, unroll) -> (carry, ys)` for a cell with a fused path, else None.

    Only the exact classes (not subclasses, which may override `step`) with float32 matmul
    operands (`dtype=None`), at the cell's precision policy.
    """
    if not ENABLED or getattr(cell, "dtype", None) is not None:
        return None
    if IMPLEMENTATION not in IMPLEMENTATIONS:
        raise ValueError(
            f"RNNBENCH_RECURRENCE (fused.IMPLEMENTATION) is {IMPLEMENTATION!r}; expected one of "
            f"{', '.join(IMPLEMENTATIONS)}"
        )
    impl = sys.modules[__name__]
    if IMPLEMENTATION == "pallas":
        from rnnbench import pallas_rnn as impl  # lazy: pallas_rnn imports this module
    kind = type(cell)
    precision = cell.precision
    if kind is cells_lib.LSTM and "lstm" in KINDS:

        def f(carry, xp, valid, unroll):
            ys, carry = impl.lstm_recurrence(
                cell.w_hh[...], xp, carry[0], carry[1], valid, unroll=unroll, precision=precision
            )
            return carry, ys

        return f
    if kind is cells_lib.GRU and cell.variant == "pytorch" and "gru" in KINDS:

        def f(carry, xp, valid, unroll):
            b_hh = (
                cell.b_hh[...]
                if cell.b_hh is not None
                else jnp.zeros((3 * cell.hidden_size,), cell.param_dtype)
            )
            ys, h = impl.gru_recurrence(
                cell.w_hh[...], b_hh, xp, carry, valid, unroll=unroll, precision=precision
            )
            return h, ys

        return f
    if kind is cells_lib.SimpleRNN and cell.nonlinearity in ("tanh", "relu") and "rnn" in KINDS:
        relu = cell.nonlinearity == "relu"

        def f(carry, xp, valid, unroll):
            ys, h = rnn_recurrence(
                cell.w_hh[...], xp, carry, valid, relu, unroll=unroll, precision=precision
            )
            return h, ys

        return f
    return None
