"""Parity with PyTorch: outputs, final states and gradients (inputs and every weight) within 1e-5."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="torch not installed: pip install 'rnnbench[compare]'")

from rnnbench import interop  # noqa: E402

B, T, F, H = 4, 11, 5, 7
TOL = dict(rtol=1e-5, atol=1e-5)
TORCH_CLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def _torch_run(mod, x, lengths, r_out, r_states):
    """Forward + backward of sum(out * r_out) + sum(state * r_state) through packed sequences."""
    xt = torch.tensor(x, requires_grad=True)
    inp = xt if mod.batch_first else xt.transpose(0, 1)
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            inp, torch.tensor(lengths), batch_first=mod.batch_first, enforce_sorted=False
        )
    out, states = mod(inp)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=mod.batch_first, total_length=T
        )
    if not mod.batch_first:
        out = out.transpose(0, 1)
    states = states if isinstance(states, tuple) else (states,)
    loss = (out * torch.tensor(r_out)).sum()
    for s, r in zip(states, r_states):
        loss = loss + (s * torch.tensor(r)).sum()
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in mod.named_parameters()}
    return out.detach().numpy(), [s.detach().numpy() for s in states], xt.grad.numpy(), grads


def _jax_run(layer, x, lengths, r_out, r_states):
    L = None if lengths is None else jnp.asarray(lengths)

    def loss_fn(layer, x):
        out, carries = layer(x, L)
        states = interop.final_states(layer, carries)
        loss = (out * r_out).sum() + sum((s * r).sum() for s, r in zip(states, r_states))
        return loss, (out, states)

    (_, (out, states)), (g_layer, g_x) = nnx.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        layer, jnp.asarray(x)
    )
    return out, states, g_x, g_layer


def _weight_grads_match(layer, g_layer, torch_grads, kind, bidirectional, bias):
    """Maps every torch parameter gradient to the rnnbench parameter it was copied to."""
    checked = 0
    for k, sub in enumerate(layer.layers):
        gsub = g_layer.layers[k]
        pairs = (
            [(sub, gsub, "")]
            if not bidirectional
            else [(sub.forward, gsub.forward, ""), (sub.backward, gsub.backward, "_reverse")]
        )
        for rnn, grnn, suffix in pairs:
            gc = grnn.cell
            np.testing.assert_allclose(
                gc.w_ih[...], torch_grads[f"weight_ih_l{k}{suffix}"].T, **TOL
            )
            np.testing.assert_allclose(
                gc.w_hh[...], torch_grads[f"weight_hh_l{k}{suffix}"].T, **TOL
            )
            checked += 2
            if bias:
                np.testing.assert_allclose(
                    gc.bias[...], torch_grads[f"bias_ih_l{k}{suffix}"], **TOL
                )
                if kind == "gru":
                    np.testing.assert_allclose(
                        gc.b_hh[...], torch_grads[f"bias_hh_l{k}{suffix}"], **TOL
                    )
                else:  # b_ih and b_hh were folded into one bias; torch's two grads are equal to it
                    np.testing.assert_allclose(
                        gc.bias[...], torch_grads[f"bias_hh_l{k}{suffix}"], **TOL
                    )
                checked += 2
    assert checked == len(torch_grads)


CASES = list(itertools.product(["rnn", "lstm", "gru"], [1, 3], [False, True], [False, True]))


@pytest.mark.parametrize("kind,num_layers,bidirectional,ragged", CASES)
def test_parity_with_torch(kind, num_layers, bidirectional, ragged):
    _check(kind, num_layers, bidirectional, ragged, bias=True, batch_first=True)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_parity_without_bias_time_major(kind):
    _check(kind, 2, True, True, bias=False, batch_first=False)


def test_parity_relu_rnn():
    _check("rnn", 2, False, True, bias=True, batch_first=True, nonlinearity="relu")


def _check(kind, num_layers, bidirectional, ragged, *, bias, batch_first, **kw):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    mod = TORCH_CLS[kind](
        F,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=batch_first,
        **kw,
    )
    dirs = 2 if bidirectional else 1
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    lengths = np.array([T, 3, 8, 1]) if ragged else None
    r_out = rng.normal(size=(B, T, H * dirs)).astype(np.float32)
    n_states = 2 if kind == "lstm" else 1
    r_states = [
        rng.normal(size=(num_layers * dirs, B, H)).astype(np.float32) for _ in range(n_states)
    ]

    t_out, t_states, t_gx, t_grads = _torch_run(mod, x, lengths, r_out, r_states)
    layer = interop.from_torch(mod)
    j_out, j_states, j_gx, j_glayer = _jax_run(layer, x, lengths, r_out, r_states)

    np.testing.assert_allclose(j_out, t_out, **TOL)
    if ragged:
        for b, n in enumerate(lengths):
            assert np.all(np.asarray(j_out)[b, n:] == 0.0)
    assert len(j_states) == len(t_states)
    for js, ts in zip(j_states, t_states):
        np.testing.assert_allclose(js, ts, **TOL)
    np.testing.assert_allclose(j_gx, t_gx, **TOL)
    _weight_grads_match(layer, j_glayer, t_grads, kind, bidirectional, bias)


def test_from_torch_rejects_other_modules():
    with pytest.raises(ValueError, match="torch.nn.RNN, LSTM or GRU"):
        interop.from_torch(torch.nn.Linear(3, 3))


def test_from_torch_rejects_proj_size():
    with pytest.raises(ValueError, match="proj_size"):
        interop.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
