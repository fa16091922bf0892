"""LSTM and GRU recurrences as Pallas kernels: the whole time loop in one kernel (issue 12).

Opt-in alternative to `rnnbench/fused.py` with the same functions, arguments, math and results:

  lstm_recurrence(w_hh, xp, h0, c0, valid)    -> (ys, (h, c))
  gru_recurrence(w_hh, b_hh, xp, h0, valid)   -> (ys, h)       (PyTorch/cuDNN GRU, reset after)

  xp [T, B, G*H]  input projection with its bias, time-major; gate order i, f, g, o / r, z, n
  valid [T, B]    bool, False at padded steps, or None (all valid)
  ys [T, B, H]    outputs, exactly 0 at padded steps; the final carry is each sequence's own
                  last valid carry.

Each is a `jax.custom_vjp`:
- forward: ONE `pallas_call`, grid over batch blocks; each program loads W_hh once (when it fits
  `WEIGHTS_ON_CHIP_BYTES`, else one gate's block per step) and runs all T steps in a
  `fori_loop` with the carry in registers, storing the gate activations and carries when a
  backward pass will need them;
- backward: ONE `pallas_call` running the reverse time loop, producing dxp (= dgates) and
  dh0 (, dc0); the recurrent weight gradient is one [H, T*B] x [T*B, G*H] matmul outside the
  kernel, exactly as in fused.py (`fused._wgrad`).

Kernels touch each gate as its own [batch_block, H] tile (refs sliced with `pl.ds`, one dot
per gate), never slice or concatenate values: that is what the Triton lowering accepts, and it
needs power-of-2 tiles (H and the batch block) and dots with dimensions >= 16.

`interpret=None` runs the kernels compiled when the default backend is a GPU and in Pallas
interpret mode otherwise (CPU: slow, for tests). Computation is float32; `precision` is the
policy of every matmul (`rnnbench.precision`). `unroll` is the `fori_loop` unroll factor
(compiled kernels loop with 1: the Triton lowering refuses others).

Opt-in only: `fused.recurrence_for` chooses these for the LSTM and GRU when
`fused.IMPLEMENTATION == "pallas"` (default from `$RNNBENCH_RECURRENCE`). On one H200
(results/accelerator/) they passed their tests compiled, and at S3 (H=128) were refused at
compile for shared memory with W_hh held whole; since then W_hh that large is read per step
(`WEIGHTS_ON_CHIP_BYTES`), not yet timed on a GPU (`python -m experiments.bench_step
--shapes=S3 --cells=lstm,gru --frameworks=rnnbench,rnnbench_pallas`, which accelerator_check
runs on a GPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnnbench import precision as precision_lib
from rnnbench.fused import _prev, _wgrad

try:
    from jax.experimental import pallas as pl

    _IMPORT_ERROR: str | None = None
except ImportError as e:  # pragma: no cover - depends on the installed jax
    pl = None
    _IMPORT_ERROR = f"jax.experimental.pallas does not import: {e}"

Array = jax.Array

# Rows of the batch per program on GPU (Triton dots need >= 16); interpret mode uses one block.
GPU_BLOCK_BATCH = 16


def available() -> bool:
    """True when Pallas imports (the kernels then run, compiled on GPU, interpreted elsewhere)."""
    return _IMPORT_ERROR is None


def unavailable_reason() -> str | None:
    """Why `available()` is False, else None."""
    return _IMPORT_ERROR


def _loop_unroll(unroll, interpret) -> int:
    """`unroll` where the kernels are interpreted; 1 where they are compiled, because the Triton
    lowering refuses a `fori_loop` with unroll != 1 (NotImplementedError, jax 0.11.2 on an
    H200)."""
    return unroll if _interpreting(interpret) else 1


def _interpreting(interpret) -> bool:
    """The user's `interpret`, or when None: interpreted unless the default backend is a GPU."""
    return jax.default_backend() != "gpu" if interpret is None else bool(interpret)


def _settings(interpret, block_batch, batch):
    """(interpret, batch block, padded batch) from the user's choices."""
    if pl is None:
        raise RuntimeError(_IMPORT_ERROR)
    interpret = _interpreting(interpret)
    if block_batch is None:
        block_batch = max(batch, 1) if interpret else GPU_BLOCK_BATCH
    if block_batch < 1:
        raise ValueError(f"pallas_rnn: block_batch must be >= 1, got {block_batch}")
    padded = -(-max(batch, 1) // block_batch) * block_batch
    return interpret, block_batch, padded


def _check(name, xp, h0, gates):
    if xp.ndim != 3 or h0.ndim != 2 or xp.shape[1:] != (h0.shape[0], gates * h0.shape[1]):
        raise ValueError(
            f"pallas_rnn.{name}: expected xp [T, B, {gates}*H] and h0 [B, H], got xp "
            f"{tuple(xp.shape)} and h0 {tuple(h0.shape)}"
        )


def _pad(x, axis, size):
    """x zero-padded along `axis` to `size`."""
    if x.shape[axis] == size:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, pad)


def _mask(valid, xp, padded):
    """valid [T, B] (or None) as a float32 0/1 mask [T, padded]."""
    m = jnp.ones(xp.shape[:2], jnp.float32) if valid is None else valid.astype(jnp.float32)
    return _pad(m, 1, padded)


def _call(kernel, ins, outs, block, padded, interpret):
    """One pallas_call over batch blocks. `ins`/`outs`: (array or ShapeDtypeStruct, batch axis);
    batch axis None = the whole array for every program (the weights)."""

    def spec(shape, axis):
        if axis is None:
            return pl.BlockSpec(shape, lambda b: (0,) * len(shape))
        blk = shape[:axis] + (block,) + shape[axis + 1 :]
        return pl.BlockSpec(blk, lambda b: (0,) * axis + (b,) + (0,) * (len(shape) - axis - 1))

    return pl.pallas_call(
        kernel,
        out_shape=[o for o, _ in outs],
        grid=(padded // block,),
        in_specs=[spec(x.shape, a) for x, a in ins],
        out_specs=[spec(o.shape, a) for o, a in outs],
        interpret=interpret,
    )(*[x for x, _ in ins])


# Recurrent weights up to this size are loaded once per kernel and kept on chip; larger ones are
# loaded per time step (from L2, one gate's tile at a time): on the H200, W_hh of H=128 held
# whole asked for more shared memory than a block has (270,336 bytes of 232,448, LSTM).
WEIGHTS_ON_CHIP_BYTES = 64 * 1024


def _weights(w_ref, H, gates):
    """get(k) -> gate k's [H, H] block of w_ref [H, gates*H]: loaded here, once, when the
    whole matrix fits WEIGHTS_ON_CHIP_BYTES; else by each call (inside the time loop)."""
    if gates * H * H * 4 <= WEIGHTS_ON_CHIP_BYTES:
        w = [w_ref[:, pl.ds(k * H, H)] for k in range(gates)]
        return w.__getitem__
    return lambda k: w_ref[:, pl.ds(k * H, H)]


def _gate(ref, t, k, H):
    """Gate k [block, H] of ref [T, block, G*H] at time t."""
    return ref[t, :, pl.ds(k * H, H)]


def _dot_t(a, w, prec):
    """a @ w.T, without materialising the transpose."""
    return jax.lax.dot_general(a, w, (((1,), (1,)), ((), ())), precision=prec)


def _f32(shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


# ----------------------------------------------------------------------------- LSTM


def _lstm_fwd_kernel(
    w_ref, xp_ref, m_ref, h0_ref, c0_ref, ys_ref, h_ref, c_ref, *res, prec, unroll
):
    T, H = xp_ref.shape[0], h0_ref.shape[-1]
    w = _weights(w_ref, H, 4)

    def step(t, carry):
        h, c = carry
        pre = [_gate(xp_ref, t, k, H) + jnp.dot(h, w(k), precision=prec) for k in range(4)]
        i, f, o = jax.nn.sigmoid(pre[0]), jax.nn.sigmoid(pre[1]), jax.nn.sigmoid(pre[3])
        g = jnp.tanh(pre[2])
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        h_new = o * tc
        v = m_ref[t][:, None] > 0.0
        ys_ref[t] = jnp.where(v, h_new, 0.0)
        h2, c2 = jnp.where(v, h_new, h), jnp.where(v, c_new, c)
        if res:
            acts_ref, tc_ref, hs_ref, cs_ref = res
            for k, a in enumerate((i, f, g, o)):
                acts_ref[t, :, pl.ds(k * H, H)] = a
            tc_ref[t], hs_ref[t], cs_ref[t] = tc, h2, c2
        return h2, c2

    h, c = jax.lax.fori_loop(0, T, step, (h0_ref[...], c0_ref[...]), unroll=unroll)
    h_ref[...], c_ref[...] = h, c


def _lstm_bwd_kernel(
    w_ref, dys_ref, acts_ref, tc_ref, cp_ref, m_ref, dh_ref, dc_ref,
    dg_ref, dh0_ref, dc0_ref, *, prec, unroll,
):  # fmt: skip
    T, H = dys_ref.shape[0], dh_ref.shape[-1]
    w = _weights(w_ref, H, 4)

    def step(s, carry):
        t = T - 1 - s
        dh, dc = carry
        v = m_ref[t][:, None] > 0.0
        dhn = jnp.where(v, dh + dys_ref[t], 0.0)
        dcn = jnp.where(v, dc, 0.0)
        i, f, g, o = (_gate(acts_ref, t, k, H) for k in range(4))
        tc = tc_ref[t]
        dcn = dcn + dhn * o * (1.0 - tc * tc)
        d = (
            dcn * g * i * (1.0 - i),
            dcn * cp_ref[t] * f * (1.0 - f),
            dcn * i * (1.0 - g * g),
            dhn * tc * o * (1.0 - o),
        )
        dh_prev = jnp.where(v, 0.0, dh)
        for k in range(4):
            dg_ref[t, :, pl.ds(k * H, H)] = d[k]
            dh_prev = dh_prev + _dot_t(d[k], w(k), prec)
        dc_prev = dcn * f + jnp.where(v, 0.0, dc)
        return dh_prev, dc_prev

    dh0, dc0 = jax.lax.fori_loop(0, T, step, (dh_ref[...], dc_ref[...]), unroll=unroll)
    dh0_ref[...], dc0_ref[...] = dh0, dc0


def _lstm_forward(w_hh, xp, h0, c0, valid, prec, interpret, block, unroll, store):
    T, B, GH = xp.shape
    H = GH // 4
    interpret, block, Bp = _settings(interpret, block, B)
    ins = [
        (w_hh.astype(jnp.float32), None),
        (_pad(xp, 1, Bp), 1),
        (_mask(valid, xp, Bp), 1),
        (_pad(h0, 0, Bp), 0),
        (_pad(c0, 0, Bp), 0),
    ]
    outs = [(_f32((T, Bp, H)), 1), (_f32((Bp, H)), 0), (_f32((Bp, H)), 0)]
    if store:  # acts (i, f, g, o), tanh(c), carries h, c
        outs += [(_f32((T, Bp, GH)), 1)] + [(_f32((T, Bp, H)), 1)] * 3
    kernel = functools.partial(_lstm_fwd_kernel, prec=prec, unroll=unroll)
    ys, h, c, *res = _call(kernel, ins, outs, block, Bp, interpret)
    return ys[:, :B], (h[:B], c[:B]), [r[:, :B] for r in res]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _lstm(w_hh, xp, h0, c0, valid, prec, interpret, block, unroll):
    ys, carry, _ = _lstm_forward(w_hh, xp, h0, c0, valid, prec, interpret, block, unroll, False)
    return ys, carry


def _lstm_fwd(w_hh, xp, h0, c0, valid, prec, interpret, block, unroll):
    ys, carry, res = _lstm_forward(w_hh, xp, h0, c0, valid, prec, interpret, block, unroll, True)
    return (ys, carry), (w_hh, h0, c0, valid, res)


def _lstm_bwd(prec, interpret, block, unroll, saved, cts):
    w_hh, h0, c0, valid, (acts, tc, hs, cs) = saved
    dys, (dh_T, dc_T) = cts
    T, B, H = dys.shape
    interpret, block, Bp = _settings(interpret, block, B)
    ins = [
        (w_hh.astype(jnp.float32), None),
        (_pad(dys, 1, Bp), 1),
        (_pad(acts, 1, Bp), 1),
        (_pad(tc, 1, Bp), 1),
        (_pad(_prev(c0, cs), 1, Bp), 1),
        (_mask(valid, dys, Bp), 1),
        (_pad(dh_T, 0, Bp), 0),
        (_pad(dc_T, 0, Bp), 0),
    ]
    outs = [(_f32((T, Bp, 4 * H)), 1), (_f32((Bp, H)), 0), (_f32((Bp, H)), 0)]
    kernel = functools.partial(_lstm_bwd_kernel, prec=prec, unroll=unroll)
    dgates, dh0, dc0 = _call(kernel, ins, outs, block, Bp, interpret)
    dgates = dgates[:, :B]
    dw = _wgrad(_prev(h0, hs), dgates, prec).astype(w_hh.dtype)
    return dw, dgates, dh0[:B], dc0[:B], None


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
    interpret: bool | None = None,
    block_batch: int | None = None,
):
    """LSTM over time: xp [T, B, 4H] (gate order i, f, g, o) -> (ys [T, B, H], (h, c)).

    `block_batch`: batch rows per program (default: 16 on GPU, the whole batch when
    interpreting); the batch is zero-padded to a multiple of it."""
    _check("lstm_recurrence", xp, h0, 4)
    prec = precision_lib.lax_precision(precision)
    unroll = _loop_unroll(unroll, interpret)
    return _lstm(w_hh, xp, h0, c0, valid, prec, interpret, block_batch, unroll)


# ----------------------------------------------------------------------------- GRU (PyTorch variant)


def _gru_fwd_kernel(w_ref, b_ref, xp_ref, m_ref, h0_ref, ys_ref, h_ref, *res, prec, unroll):
    T, H = xp_ref.shape[0], h0_ref.shape[-1]
    w = _weights(w_ref, H, 3)
    b = [b_ref[pl.ds(k * H, H)] for k in range(3)]

    def step(t, h):
        hh = [jnp.dot(h, w(k), precision=prec) + b[k] for k in range(3)]
        r = jax.nn.sigmoid(_gate(xp_ref, t, 0, H) + hh[0])
        z = jax.nn.sigmoid(_gate(xp_ref, t, 1, H) + hh[1])
        hn = hh[2]
        n = jnp.tanh(_gate(xp_ref, t, 2, H) + r * hn)
        h_new = n + z * (h - n)
        v = m_ref[t][:, None] > 0.0
        ys_ref[t] = jnp.where(v, h_new, 0.0)
        h2 = jnp.where(v, h_new, h)
        if res:
            acts_ref, hs_ref = res
            for k, a in enumerate((r, z, n, hn)):
                acts_ref[t, :, pl.ds(k * H, H)] = a
            hs_ref[t] = h2
        return h2

    h_ref[...] = jax.lax.fori_loop(0, T, step, h0_ref[...], unroll=unroll)


def _gru_bwd_kernel(
    w_ref, dys_ref, acts_ref, hp_ref, m_ref, dh_ref, dxp_ref, dhh_ref, dh0_ref, *, prec, unroll
):
    T, H = dys_ref.shape[0], dh_ref.shape[-1]
    w = _weights(w_ref, H, 3)

    def step(s, dh):
        t = T - 1 - s
        v = m_ref[t][:, None] > 0.0
        dhn = jnp.where(v, dh + dys_ref[t], 0.0)
        r, z, n, hn = (_gate(acts_ref, t, k, H) for k in range(4))
        dn = dhn * (1.0 - z) * (1.0 - n * n)
        dz = dhn * (hp_ref[t] - n) * z * (1.0 - z)
        dr = dn * hn * r * (1.0 - r)
        dhh = (dr, dz, dn * r)
        for k, d in enumerate((dr, dz, dn)):
            dxp_ref[t, :, pl.ds(k * H, H)] = d
            dhh_ref[t, :, pl.ds(k * H, H)] = dhh[k]
        dh_prev = dhn * z + jnp.where(v, 0.0, dh)
        for k in range(3):
            dh_prev = dh_prev + _dot_t(dhh[k], w(k), prec)
        return dh_prev

    dh0_ref[...] = jax.lax.fori_loop(0, T, step, dh_ref[...], unroll=unroll)


def _gru_forward(w_hh, b_hh, xp, h0, valid, prec, interpret, block, unroll, store):
    T, B, GH = xp.shape
    H = GH // 3
    interpret, block, Bp = _settings(interpret, block, B)
    ins = [
        (w_hh.astype(jnp.float32), None),
        (b_hh.astype(jnp.float32), None),
        (_pad(xp, 1, Bp), 1),
        (_mask(valid, xp, Bp), 1),
        (_pad(h0, 0, Bp), 0),
    ]
    outs = [(_f32((T, Bp, H)), 1), (_f32((Bp, H)), 0)]
    if store:  # acts (r, z, n, hn), carries h
        outs += [(_f32((T, Bp, 4 * H)), 1), (_f32((T, Bp, H)), 1)]
    kernel = functools.partial(_gru_fwd_kernel, prec=prec, unroll=unroll)
    ys, h, *res = _call(kernel, ins, outs, block, Bp, interpret)
    return ys[:, :B], h[:B], [r[:, :B] for r in res]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _gru(w_hh, b_hh, xp, h0, valid, prec, interpret, block, unroll):
    ys, h, _ = _gru_forward(w_hh, b_hh, xp, h0, valid, prec, interpret, block, unroll, False)
    return ys, h


def _gru_fwd(w_hh, b_hh, xp, h0, valid, prec, interpret, block, unroll):
    ys, h, res = _gru_forward(w_hh, b_hh, xp, h0, valid, prec, interpret, block, unroll, True)
    return (ys, h), (w_hh, b_hh, h0, valid, res)


def _gru_bwd(prec, interpret, block, unroll, saved, cts):
    w_hh, b_hh, h0, valid, (acts, hs) = saved
    dys, dh_T = cts
    T, B, H = dys.shape
    interpret, block, Bp = _settings(interpret, block, B)
    h_prev = _prev(h0, hs)
    ins = [
        (w_hh.astype(jnp.float32), None),
        (_pad(dys, 1, Bp), 1),
        (_pad(acts, 1, Bp), 1),
        (_pad(h_prev, 1, Bp), 1),
        (_mask(valid, dys, Bp), 1),
        (_pad(dh_T, 0, Bp), 0),
    ]
    outs = [(_f32((T, Bp, 3 * H)), 1), (_f32((T, Bp, 3 * H)), 1), (_f32((Bp, H)), 0)]
    kernel = functools.partial(_gru_bwd_kernel, prec=prec, unroll=unroll)
    dxp, dhh, dh0 = _call(kernel, ins, outs, block, Bp, interpret)
    dxp, dhh = dxp[:, :B], dhh[:, :B]
    dw = _wgrad(h_prev, dhh, prec).astype(w_hh.dtype)
    db = dhh.sum(axis=(0, 1)).astype(b_hh.dtype)
    return dw, db, dxp, dh0[:B], None


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
    interpret: bool | None = None,
    block_batch: int | None = None,
):
    """PyTorch-variant GRU over time: xp [T, B, 3H] (r, z, n; with b_ih) -> (ys [T, B, H], h).

    `block_batch` as in `lstm_recurrence`."""
    _check("gru_recurrence", xp, h0, 3)
    prec = precision_lib.lax_precision(precision)
    unroll = _loop_unroll(unroll, interpret)
    return _gru(w_hh, b_hh, xp, h0, valid, prec, interpret, block_batch, unroll)
