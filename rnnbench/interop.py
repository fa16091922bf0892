"""PyTorch interop: turn a `torch.nn.RNN` / `LSTM` / `GRU` into the equivalent rnnbench layer.

  layer = from_torch(torch.nn.LSTM(40, 128, num_layers=2, bidirectional=True))
  y, carries = layer(x, lengths)          # x [batch, time, 40] -> y [batch, time, 256]
  h_n, c_n = final_states(carries)        # [layers * dirs, batch, H], like torch's (h_n, c_n)

The layer is always batch-major (`[batch, time, features]`), whatever the module's `batch_first`.
`lengths` plays the role of `pack_padded_sequence`: outputs past a sequence's length are zero and
its final state is taken at its own last step. Torch is optional (`pip install 'rnnbench[compare]'`).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from rnnbench import cells, layers


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "rnnbench.interop needs PyTorch: pip install 'rnnbench[compare]' "
            "(or pip install torch==2.13.0 for a CPU build)"
        ) from e
    return torch


def _arr(t) -> jnp.ndarray:
    return jnp.asarray(t.detach().cpu().numpy())


def from_torch(module) -> layers.Stacked:
    """Returns a `layers.Stacked` with the weights of `module` (a torch RNN, LSTM or GRU)."""
    torch = _require_torch()
    kinds = {torch.nn.LSTM: "lstm", torch.nn.GRU: "gru", torch.nn.RNN: "rnn"}
    kind = kinds.get(type(module))
    if kind is None:
        raise ValueError(
            f"from_torch expects torch.nn.RNN, LSTM or GRU, got {type(module).__name__}"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(f"LSTM with proj_size={module.proj_size} is not supported; expected 0")
    H, bias = module.hidden_size, module.bias
    rngs = nnx.Rngs(0)

    def cell(in_features, suffix):
        kw = dict(use_bias=bias, rngs=rngs)
        if kind == "rnn":
            c = cells.SimpleRNN(in_features, H, nonlinearity=module.nonlinearity, **kw)
        elif kind == "lstm":
            c = cells.LSTM(in_features, H, **kw)
        else:
            c = cells.GRU(in_features, H, variant="pytorch", **kw)
        p = {n: getattr(module, f"{n}{suffix}") for n in ("weight_ih", "weight_hh")}
        c.w_ih[...] = _arr(p["weight_ih"]).T
        c.w_hh[...] = _arr(p["weight_hh"]).T
        if bias:
            b_ih, b_hh = (_arr(getattr(module, f"{n}{suffix}")) for n in ("bias_ih", "bias_hh"))
            if kind == "gru":
                c.bias[...], c.b_hh[...] = b_ih, b_hh
            else:
                c.bias[...] = b_ih + b_hh
        return c

    dirs = 2 if module.bidirectional else 1
    stack, n_in = [], module.input_size
    for k in range(module.num_layers):
        fwd = layers.RNN(cell(n_in, f"_l{k}"))
        if dirs == 2:
            layer = layers.Bidirectional(
                fwd, layers.RNN(cell(n_in, f"_l{k}_reverse"), reverse=True)
            )
        else:
            layer = fwd
        stack.append(layer)
        n_in = H * dirs
    return layers.Stacked(stack, dropout=float(module.dropout))


def final_states(layer: layers.Stacked, carries) -> tuple[jnp.ndarray, ...]:
    """Per-layer carries of a `from_torch` layer -> torch's layout.

    Returns (h_n,) for RNN/GRU and (h_n, c_n) for LSTM, each [layers * dirs, batch, H], ordered
    layer 0 forward, layer 0 backward, layer 1 forward, ... as PyTorch orders them.
    """
    flat = []
    for sub, carry in zip(layer.layers, carries):
        flat.extend(carry if isinstance(sub, layers.Bidirectional) else [carry])
    if isinstance(flat[0], tuple):  # LSTM carries are (h, c)
        return jnp.stack([h for h, _ in flat]), jnp.stack([c for _, c in flat])
    return (jnp.stack(flat),)
