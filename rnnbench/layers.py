"""Recurrent layers: scan a cell over time, with lengths, reverse, dropout, zoneout.

  RNN(cell)                 [batch, time, features] + lengths [batch] -> ([batch, time, H], carry)
  Bidirectional(fwd, bwd)   concat or sum of a forward and a reverse RNN
  Stacked([layer, ...])     N layers, dropout between layers, optional residual and layer norm
  build("lstm", ...)        the usual stack from a cell name

Conventions (the same as `torch.nn.utils.rnn.pack_padded_sequence`):
- outputs at padded steps (t >= lengths[b]) are exactly zero;
- the final carry is the carry at each sequence's own last valid step;
- `reverse=True` reverses only the valid part of each sequence.

The layers make no matmul of their own: each cell's `precision` policy (`rnnbench.precision`;
exact float32 by default) decides how its matmuls run, in the fused recurrences too.

Randomness is explicit: pass `key=` to turn dropout/zoneout on (training); `key=None` is the
deterministic mode (dropout is the identity, zoneout uses its expectation). This keeps every
call a pure function of (params, inputs, key), which is what `jax.vmap` over seeds needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnbench import cells as cells_lib
from rnnbench import fused as fused_lib
from rnnbench import precision as precision_lib

Array = jax.Array


def check_inputs(x: Array, lengths: Array | None, in_features: int) -> None:
    """Raises ValueError for a wrong rank, feature size or (when concrete) out-of-range lengths."""
    if x.ndim != 3:
        raise ValueError(f"x must have rank 3 [batch, time, features], got shape {tuple(x.shape)}")
    if x.shape[-1] != in_features:
        raise ValueError(
            f"x has {x.shape[-1]} features (shape {tuple(x.shape)}), but the layer "
            f"expects in_features={in_features}"
        )
    if lengths is None:
        return
    if lengths.shape != (x.shape[0],):
        raise ValueError(
            f"lengths must have shape [batch]=({x.shape[0]},), got {tuple(lengths.shape)}"
        )
    if isinstance(lengths, jax.core.Tracer):
        return  # values unknown under jit; the data pipeline checks them before batching
    lv = np.asarray(lengths)
    if lv.min(initial=0) < 0 or lv.max(initial=0) > x.shape[1]:
        raise ValueError(
            f"lengths must be in [0, time={x.shape[1]}], got min {lv.min()} max {lv.max()}"
        )


def reverse_padded(x: Array, lengths: Array | None) -> Array:
    """Reverses the valid prefix of each sequence of a time-major x [time, batch, ...].

    Padded steps stay where they are; with `lengths=None` the whole axis is flipped.
    The map is its own inverse.
    """
    if lengths is None:
        return jnp.flip(x, 0)
    t = jnp.arange(x.shape[0])[:, None]
    idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [time, batch]
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=0)


def _bernoulli_mask(key: Array, rate: float, shape, dtype) -> Array:
    """Inverted-dropout mask: 0 with probability `rate`, else 1 / (1 - rate)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / (1.0 - rate)


def dropout(x: Array, rate: float, key: Array | None) -> Array:
    """Element-wise inverted dropout; identity when `key` is None or `rate` is 0."""
    if key is None or rate == 0.0:
        return x
    return x * _bernoulli_mask(key, rate, x.shape, x.dtype)


GPU_UNROLL = 8


def resolve_unroll(unroll: int | str) -> int:
    """`unroll` as an int >= 1; "auto" (or 0, for int-typed config fields) is 1 on the CPU
    backend and GPU_UNROLL elsewhere."""
    if unroll == "auto" or (unroll == 0 and not isinstance(unroll, bool)):
        return 1 if jax.default_backend() == "cpu" else GPU_UNROLL
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f'unroll must be an int >= 1, or "auto" / 0, got {unroll!r}')
    return unroll


class RNN(nnx.Module):
    """Scans `cell` over time. The input projection for all steps is one matmul before the scan.

    Args:
      cell: a cell from `rnnbench.cells` (or anything with the same interface).
      reverse: process each sequence from its last valid step to its first.
      unroll: `jax.lax.scan` unroll factor, or "auto": 1 on CPU, `GPU_UNROLL` on accelerators
        (measured once on an H200 at 97e0933: unroll=8 halved the LSTM train step at T=1000,
        24.1 -> 12.2 ms; on CPU unroll=1 is fastest, see results/perf.md).
      input_dropout: variational dropout rate on inputs (one mask per sequence, all steps).
      recurrent_dropout: variational dropout rate on h before the recurrent matmul (Gal &
        Ghahramani 2016; one mask per sequence).
      zoneout: probability of keeping each carry unit's previous value (Krueger et al. 2016);
        at eval the carry is the expectation z * old + (1 - z) * new.
    """

    def __init__(
        self,
        cell,
        *,
        reverse: bool = False,
        unroll: int | str = "auto",
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
    ):
        for name, rate in (
            ("input_dropout", input_dropout),
            ("recurrent_dropout", recurrent_dropout),
            ("zoneout", zoneout),
        ):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        unroll = resolve_unroll(unroll)
        if zoneout and not getattr(cell, "supports_zoneout", True):
            raise ValueError(
                f"zoneout needs a cell whose output is its state; "
                f"{type(cell).__name__} does not support it (use zoneout=0)"
            )
        self.cell = cell
        self.reverse = reverse
        self.unroll = unroll
        self.input_dropout = input_dropout
        self.recurrent_dropout = recurrent_dropout
        self.zoneout = zoneout

    @property
    def in_features(self) -> int:
        return self.cell.in_features

    @property
    def out_features(self) -> int:
        return self.cell.hidden_size

    def __call__(
        self,
        x: Array,
        lengths: Array | None = None,
        *,
        initial_carry: Any = None,
        key: Array | None = None,
    ) -> tuple[Array, Any]:
        """x [batch, time, features], lengths [batch] or None (all full) -> (y [batch, time, H], carry)."""
        cell = self.cell
        check_inputs(x, lengths, cell.in_features)
        batch, time, _ = x.shape
        k_in, k_rec, k_zone = jax.random.split(key, 3) if key is not None else (None,) * 3

        if k_in is not None and self.input_dropout > 0.0:
            x = x * _bernoulli_mask(k_in, self.input_dropout, (batch, 1, x.shape[-1]), x.dtype)
        h_mask = None
        if k_rec is not None and self.recurrent_dropout > 0.0:
            h_mask = _bernoulli_mask(
                k_rec, self.recurrent_dropout, (batch, cell.hidden_size), cell.param_dtype
            )

        xp = cell.project_inputs(jnp.swapaxes(x, 0, 1))  # [time, batch, G*H], one matmul
        if self.reverse:
            xp = reverse_padded(xp, lengths)
        carry = cell.initial_carry(batch) if initial_carry is None else initial_carry

        parallel = getattr(cell, "parallel", False)
        if parallel and (self.zoneout > 0.0 or h_mask is not None):
            raise ValueError(
                "zoneout and recurrent_dropout need the sequential scan; "
                f"{type(cell).__name__} was built with parallel=True"
            )
        if parallel:
            mask = None if lengths is None else jnp.arange(time)[:, None] < lengths[None, :]
            carry, ys = cell.parallel_scan(carry, xp, mask)
        else:
            carry, ys = self._scan(carry, xp, lengths, h_mask, k_zone)

        if self.reverse:
            ys = reverse_padded(ys, lengths)
        return jnp.swapaxes(ys, 0, 1), carry

    def _scan(self, carry, xp, lengths, h_mask, zone_key):
        cell, time = self.cell, xp.shape[0]
        fused = fused_lib.recurrence_for(cell) if self.zoneout == 0.0 and h_mask is None else None
        if fused is not None:  # same math, hand-written backward pass (rnnbench/fused.py)
            valid = None if lengths is None else jnp.arange(time)[:, None] < lengths[None, :]
            return fused(carry, xp, valid, self.unroll)
        xs: dict[str, Array] = {"xp": xp}
        if lengths is not None:
            xs["valid"] = jnp.arange(time)[:, None] < lengths[None, :]  # [time, batch]
        if self.zoneout > 0.0 and zone_key is not None:
            leaves, treedef = jax.tree.flatten(carry)
            keys = jax.random.split(zone_key, len(leaves))
            xs["zone"] = jax.tree.unflatten(
                treedef,
                [
                    jax.random.bernoulli(k, self.zoneout, (time,) + leaf.shape)
                    for k, leaf in zip(keys, leaves)
                ],
            )

        def body(carry, inp):
            new, y = cell.step(carry, inp["xp"], h_mask)
            if self.zoneout > 0.0:
                if "zone" in inp:
                    new = jax.tree.map(lambda n, o, z: jnp.where(z, o, n), new, carry, inp["zone"])
                else:
                    new = jax.tree.map(
                        lambda n, o: self.zoneout * o + (1.0 - self.zoneout) * n, new, carry
                    )
                y = cell.hidden(new)
            if "valid" in inp:
                v = inp["valid"][:, None]
                new = jax.tree.map(lambda n, o: jnp.where(v, n, o), new, carry)
                y = jnp.where(v, y, jnp.zeros_like(y))
            return new, y

        return jax.lax.scan(body, carry, xs, unroll=self.unroll)


class Bidirectional(nnx.Module):
    """Runs a forward and a backward RNN and merges their outputs ('concat' or 'sum').

    Returns (y [batch, time, 2H or H], (forward_carry, backward_carry)).
    """

    def __init__(self, forward: RNN, backward: RNN, *, merge: str = "concat"):
        if merge not in ("concat", "sum"):
            raise ValueError(f"merge must be 'concat' or 'sum', got {merge!r}")
        if forward.reverse or not backward.reverse:
            raise ValueError(
                "Bidirectional expects forward.reverse=False and backward.reverse=True"
            )
        self.forward = forward
        self.backward = backward
        self.merge = merge

    @property
    def in_features(self) -> int:
        return self.forward.in_features

    @property
    def out_features(self) -> int:
        h = self.forward.out_features
        return 2 * h if self.merge == "concat" else h

    def __call__(self, x, lengths=None, *, initial_carry=None, key=None):
        kf, kb = jax.random.split(key) if key is not None else (None, None)
        cf, cb = initial_carry if initial_carry is not None else (None, None)
        yf, carry_f = self.forward(x, lengths, initial_carry=cf, key=kf)
        yb, carry_b = self.backward(x, lengths, initial_carry=cb, key=kb)
        y = jnp.concatenate([yf, yb], axis=-1) if self.merge == "concat" else yf + yb
        return y, (carry_f, carry_b)


class Stacked(nnx.Module):
    """N recurrent layers; dropout between layers; optional residual connections and layer norm.

    Residual connections are added where a layer's input and output sizes match; layer norm is
    applied to each layer's output (before the residual add) and padded steps are re-zeroed.
    Returns (y [batch, time, out_features], [carry of each layer]).
    """

    def __init__(
        self,
        layers: Sequence[nnx.Module],
        *,
        dropout: float = 0.0,
        residual: bool = False,
        layer_norm: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        if not layers:
            raise ValueError("Stacked needs at least one layer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            if a.out_features != b.in_features:
                raise ValueError(
                    f"layer {i} outputs {a.out_features} features but layer {i + 1} "
                    f"expects in_features={b.in_features}"
                )
        self.layers = nnx.List(layers)
        self.dropout = dropout
        self.residual = residual
        if layer_norm:
            if rngs is None:
                raise ValueError("Stacked(layer_norm=True) needs rngs")
            self.norms = nnx.List([nnx.LayerNorm(l.out_features, rngs=rngs) for l in layers])
        else:
            self.norms = None

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    def __call__(self, x, lengths=None, *, key=None):
        keys = list(jax.random.split(key, 2 * len(self.layers))) if key is not None else None
        valid = None
        if lengths is not None:
            valid = (jnp.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
        carries = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = dropout(x, self.dropout, keys[2 * i] if keys else None)
            y, carry = layer(x, lengths, key=keys[2 * i + 1] if keys else None)
            if self.norms is not None:
                y = self.norms[i](y)
                if valid is not None:
                    y = jnp.where(valid, y, 0.0)
            if self.residual and y.shape[-1] == x.shape[-1]:
                y = y + x
            x = y
            carries.append(carry)
        return x, carries


def build(
    cell: str,
    in_features: int,
    hidden: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    merge: str = "concat",
    dropout: float = 0.0,
    residual: bool = False,
    layer_norm: bool = False,
    unroll: int | str = "auto",
    input_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    precision: str | None = None,
    rngs: nnx.Rngs,
    **cell_kwargs,
) -> Stacked:
    """The usual encoder: `num_layers` (bi)directional RNNs of cell `cell` in a Stacked.

    `precision` is the matmul policy of every cell ("float32" exact, "tf32", "bf16"; see
    `rnnbench.precision`); None leaves it to the cells' default ("float32").
    Example: `build("lstm", 40, 128, num_layers=3, bidirectional=True, rngs=nnx.Rngs(0))`.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if precision is not None:
        cell_kwargs["precision"] = precision_lib.check(precision)
    rnn_kw = dict(
        unroll=unroll,
        input_dropout=input_dropout,
        recurrent_dropout=recurrent_dropout,
        zoneout=zoneout,
    )

    def rnn(n_in, reverse):
        return RNN(
            cells_lib.make(cell, n_in, hidden, rngs=rngs, **cell_kwargs), reverse=reverse, **rnn_kw
        )

    layers, n_in = [], in_features
    for _ in range(num_layers):
        layer = (
            Bidirectional(rnn(n_in, False), rnn(n_in, True), merge=merge)
            if bidirectional
            else rnn(n_in, False)
        )
        layers.append(layer)
        n_in = layer.out_features
    return Stacked(layers, dropout=dropout, residual=residual, layer_norm=layer_norm, rngs=rngs)
