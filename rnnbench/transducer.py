"""RNN transducer (Graves 2012): loss over the (T, U) lattice, the model, greedy and beam search.

  rnnt_loss(joint_logits [B, T, U+1, V], logit_lengths, labels [B, U], label_lengths) -> nll [B]
  PredictionNetwork   labels [B, U] -> [blank, y_1 .. y_U] -> embed -> RNN -> [B, U+1, H]
  Joint               logits = W_out tanh(W_e e + W_p p), broadcasting e and p
  Transducer          features -> models.Encoder ─┐
                      labels -> PredictionNetwork ─┴> Joint -> logits [B, T', U+1, classes+1]
  greedy_decode / beam_decode(model, feats, lengths) -> (label ids [B, L], lengths [B])

Index 0 is the blank in the output and the start symbol of the prediction network; labels are
1..num_classes (the CTC alphabet's ids). Decoding is time-synchronous and jit-able: a `lax.scan`
over frames, at most `max_symbols_per_step` symbols per frame, the beam an array axis.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnbench import layers as rnn_layers
from rnnbench import models

Array = jax.Array
# "log 0" of the loss lattice: finite, so that unreachable cells get exactly zero gradient
# (autodiff through logaddexp(-inf, -inf) is not zero).
_LOG_ZERO = -1e30


def _concrete(x) -> np.ndarray | None:
    return None if isinstance(x, jax.core.Tracer) else np.asarray(x)


def _check_loss_args(joint_logits, logit_lengths, labels, label_lengths, blank_id) -> None:
    if joint_logits.ndim != 4:
        raise ValueError(
            f"joint_logits must have rank 4 [batch, time, labels + 1, vocab], got "
            f"shape {tuple(joint_logits.shape)}"
        )
    b, t, u1, v = joint_logits.shape
    if labels.ndim != 2 or labels.shape != (b, u1 - 1):
        raise ValueError(
            f"labels must have shape [batch, labels]=({b}, {u1 - 1}) to match "
            f"joint_logits {tuple(joint_logits.shape)}, got {tuple(labels.shape)}"
        )
    for name, x in (("logit_lengths", logit_lengths), ("label_lengths", label_lengths)):
        if x.shape != (b,):
            raise ValueError(f"{name} must have shape [batch]=({b},), got {tuple(x.shape)}")
    if not 0 <= blank_id < v:
        raise ValueError(f"blank_id must be in [0, vocab={v}), got {blank_id}")
    tl, ul, lab = _concrete(logit_lengths), _concrete(label_lengths), _concrete(labels)
    if tl is not None and b and (tl.min() < 1 or tl.max() > t):
        raise ValueError(
            f"logit_lengths must be in [1, time={t}], got min {tl.min()} max {tl.max()}"
        )
    if ul is not None and b and (ul.min() < 0 or ul.max() > u1 - 1):
        raise ValueError(
            f"label_lengths must be in [0, labels={u1 - 1}], got min {ul.min()} max {ul.max()}"
        )
    if lab is not None and ul is not None and lab.size:
        valid = lab[np.arange(u1 - 1)[None, :] < ul[:, None]]
        if valid.size and (valid.min() < 0 or valid.max() >= v or (valid == blank_id).any()):
            raise ValueError(
                f"labels (within label_lengths) must be in [0, vocab={v}) and not "
                f"blank_id={blank_id}, got values {sorted(set(valid.tolist()))}"
            )


def rnnt_loss(
    joint_logits: Array,
    logit_lengths: Array,
    labels: Array,
    label_lengths: Array,
    blank_id: int = 0,
) -> Array:
    """Negative log-likelihood -log P(labels | x) of the RNN transducer, per sequence.

    Args:
      joint_logits: [batch, time, labels + 1, vocab], unnormalised; [b, t, u] scores the next
        output after frame t and u labels (blank_id = stay at u and move to frame t + 1).
      logit_lengths: [batch] int, valid frames per sequence (>= 1).
      labels: [batch, labels] int; entries at or past label_lengths are ignored.
      label_lengths: [batch] int, in [0, labels].
      blank_id: index of the blank in the vocab.
    Returns:
      [batch] float32, -log of the sum over all alignments (Graves 2012, eq. 16). Padded frames
      and labels do not change it and get exactly zero gradient; a sequence with no frames
      (logit_lengths == 0, only possible under jit) gets +inf and zero gradient.

    The forward variables alpha[t, u] (and, for the gradient, the backward variables beta) are
    computed in log space by a `lax.scan` over the anti-diagonals t + u = n: T + U steps, each
    elementwise over u. The gradient is a custom VJP (Graves 2012, eq. 20, through the softmax):
    d/dlogits = softmax * occupancy(t, u) - occupancy(t, u, k) of the blank and label moves,
    elementwise where autodiff would scatter-add, and only alpha is kept from the forward pass.
    Reverse mode only (no jvp, no second derivatives); it composes with jit and vmap.
    """
    _check_loss_args(joint_logits, logit_lengths, labels, label_lengths, blank_id)
    return _rnnt_nll_jit(joint_logits, logit_lengths, labels, label_lengths, blank_id)


def _log_probs(joint_logits, logit_lengths, labels, label_lengths, blank_id):
    """Masked float32 logits x [B, T, U+1, V] (0 off the valid lattice), the valid mask
    [B, T, U+1], log Z [B, T, U+1], the blank's and the next label's log-probabilities
    [B, T, U+1] (log 0 at u = U) and the next label per u [B, U+1]."""
    b, t_max, u1, _ = joint_logits.shape
    valid = (jnp.arange(t_max)[None, :] < logit_lengths[:, None])[:, :, None] & (
        jnp.arange(u1)[None, :] <= label_lengths[:, None]
    )[:, None, :]
    x = jnp.where(valid[..., None], joint_logits.astype(jnp.float32), 0.0)
    log_norm = jax.nn.logsumexp(x, axis=-1)
    next_label = jnp.where(jnp.arange(u1 - 1)[None, :] < label_lengths[:, None], labels, blank_id)
    next_label = jnp.concatenate(
        [next_label.astype(jnp.int32), jnp.full((b, 1), blank_id, jnp.int32)], axis=1
    )
    blank = x[..., blank_id] - log_norm
    emit = jnp.take_along_axis(x, next_label[:, None, :, None], axis=-1)[..., 0] - log_norm
    emit = jnp.where(jnp.arange(u1) < u1 - 1, emit, _LOG_ZERO)
    return x, valid, log_norm, blank, emit, next_label


def _skew(a: Array, fill) -> Array:
    """Lattice [B, T, U+1] -> anti-diagonals [N = T + U, B, U+1]: d[n, :, u] = a[:, n - u, u]."""
    _, t_max, u1 = a.shape
    t_of = jnp.arange(t_max + u1 - 1)[:, None] - jnp.arange(u1)[None, :]
    on = (t_of >= 0) & (t_of < t_max)
    d = a[:, jnp.clip(t_of, 0, t_max - 1), jnp.arange(u1)[None, :]]
    return jnp.moveaxis(jnp.where(on[None], d, fill), 1, 0)


def _unskew(d: Array) -> Array:
    """Anti-diagonals [N, B, U+1] -> lattice [B, T, U+1] (the inverse of `_skew`)."""
    n, _, u1 = d.shape
    t, u = jnp.arange(n - u1 + 1)[:, None], jnp.arange(u1)[None, :]
    return jnp.moveaxis(d[t + u, :, u], 2, 0)


def _log_zeros(b: int) -> Array:
    return jnp.full((b, 1), _LOG_ZERO)


def _alphas(blank: Array, emit: Array) -> Array:
    """Forward variables on the anti-diagonals [N, B, U+1]: alpha[t, u] = logaddexp(
    alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + emit[t, u-1]), alpha[0, 0] = 0."""
    b, _, u1 = blank.shape

    def step(alpha, inp):  # diagonal n - 1 -> n
        blank_n, emit_n = inp
        move = jnp.concatenate([_log_zeros(b), (alpha + emit_n)[:, :-1]], axis=-1)
        new = jnp.maximum(jnp.logaddexp(alpha + blank_n, move), _LOG_ZERO)
        return new, new

    alpha0 = jnp.where(jnp.arange(u1)[None, :] == 0, 0.0, _LOG_ZERO) * jnp.ones((b, 1))
    _, alphas = jax.lax.scan(
        step, alpha0, (_skew(blank, _LOG_ZERO)[:-1], _skew(emit, _LOG_ZERO)[:-1])
    )
    return jnp.concatenate([alpha0[None], alphas], axis=0)


def _betas(blank: Array, emit: Array, valid: Array, final: Array) -> Array:
    """Backward variables on the anti-diagonals [N, B, U+1]: beta[t, u] = logaddexp(
    blank[t, u] + beta[t+1, u], emit[t, u] + beta[t, u+1]), where beta past the final cell
    (T_b - 1, U_b) is 0 and log 0 off the valid lattice."""
    b = blank.shape[0]

    def step(beta_next, inp):  # diagonal n + 1 -> n
        blank_n, emit_n, valid_n, final_n = inp
        stay = jnp.where(final_n, 0.0, beta_next) + blank_n
        move = emit_n + jnp.concatenate([beta_next[:, 1:], _log_zeros(b)], axis=-1)
        beta = jnp.where(valid_n, jnp.logaddexp(stay, move), _LOG_ZERO)
        return beta, beta

    xs = (_skew(blank, _LOG_ZERO), _skew(emit, _LOG_ZERO), _skew(valid, False), _skew(final, False))
    _, betas = jax.lax.scan(step, jnp.full(blank.shape[::2], _LOG_ZERO), xs, reverse=True)
    return betas


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _rnnt_nll(joint_logits, logit_lengths, labels, label_lengths, blank_id):
    return _rnnt_nll_fwd(joint_logits, logit_lengths, labels, label_lengths, blank_id)[0]


def _rnnt_nll_fwd(joint_logits, logit_lengths, labels, label_lengths, blank_id):
    *_, blank, emit, _ = _log_probs(joint_logits, logit_lengths, labels, label_lengths, blank_id)
    alphas = _alphas(blank, emit)
    rows, last_t = jnp.arange(blank.shape[0]), jnp.maximum(logit_lengths - 1, 0)
    log_lik = (
        alphas[last_t + label_lengths, rows, label_lengths] + blank[rows, last_t, label_lengths]
    )
    nll = jnp.where(logit_lengths > 0, -log_lik, jnp.inf)
    return nll, (joint_logits, logit_lengths, labels, label_lengths, alphas, log_lik)


def _rnnt_nll_bwd(blank_id, res, g):
    joint_logits, logit_lengths, labels, label_lengths, alphas, log_lik = res
    x, valid, log_norm, blank, emit, next_label = _log_probs(
        joint_logits, logit_lengths, labels, label_lengths, blank_id
    )
    b, t_max, u1, v = x.shape
    final = (jnp.arange(t_max)[None, :, None] == logit_lengths[:, None, None] - 1) & (
        jnp.arange(u1)[None, None, :] == label_lengths[:, None, None]
    )
    alpha, beta = _unskew(alphas), _unskew(_betas(blank, emit, valid, final))
    after_blank = jnp.where(
        final, 0.0, jnp.concatenate([beta[:, 1:], jnp.full((b, 1, u1), _LOG_ZERO)], axis=1)
    )  # beta[t + 1, u]
    after_emit = jnp.concatenate([beta[:, :, 1:], jnp.full((b, t_max, 1), _LOG_ZERO)], axis=2)
    # occupancies: posterior probability that an alignment takes the blank / label move at (t, u)
    scale = jnp.where(logit_lengths > 0, g, 0.0)[:, None, None]
    occ_blank = scale * jnp.exp(alpha + blank + after_blank - log_lik[:, None, None])
    occ_emit = scale * jnp.exp(alpha + emit + after_emit - log_lik[:, None, None])
    occ_blank, occ_emit = (jnp.where(valid, o, 0.0) for o in (occ_blank, occ_emit))
    k = jnp.arange(v)
    grad = (
        jnp.exp(x - log_norm[..., None]) * (occ_blank + occ_emit)[..., None]
        - jnp.where(k == blank_id, occ_blank[..., None], 0.0)
        - jnp.where(k == next_label[:, None, :, None], occ_emit[..., None], 0.0)
    )
    return grad.astype(joint_logits.dtype), None, None, None


_rnnt_nll.defvjp(_rnnt_nll_fwd, _rnnt_nll_bwd)
_rnnt_nll_jit = jax.jit(_rnnt_nll, static_argnums=4)


class PredictionNetwork(nnx.Module):
    """The label-history model: [blank, y_1 .. y_U] -> embedding -> (stacked) RNN of any cell.

    `__call__(labels [B, U]) -> [B, U+1, hidden]`: output u has seen the start symbol (index 0)
    and labels 1..u. `initial_state(n)` and `step(state, labels [n]) -> (state, [n, hidden])` run
    the same network one label at a time, for decoding.
    """

    def __init__(
        self,
        num_classes: int,
        embed: int,
        hidden: int,
        cell: str = "lstm",
        layers: int = 1,
        *,
        dropout: float = 0.0,
        cell_kwargs: Mapping[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        self.num_classes = num_classes
        self.embed = nnx.Embed(num_classes + 1, embed, rngs=rngs)
        self.rnn = rnn_layers.build(
            cell,
            embed,
            hidden,
            num_layers=layers,
            dropout=dropout,
            rngs=rngs,
            **dict(cell_kwargs or {}),
        )
        self.out_features = hidden

    def __call__(self, labels: Array, *, key: Array | None = None) -> Array:
        """labels [B, U] in 1..num_classes (padding: any value, clipped) -> [B, U+1, hidden]."""
        if labels.ndim != 2:
            raise ValueError(
                f"labels must have rank 2 [batch, labels], got shape {tuple(labels.shape)}"
            )
        ids = jnp.clip(labels.astype(jnp.int32), 0, self.num_classes)
        ids = jnp.concatenate([jnp.zeros((labels.shape[0], 1), jnp.int32), ids], axis=1)
        y, _ = self.rnn(self.embed(ids), None, key=key)
        return y

    def initial_state(self, n: int) -> list:
        """Zero carries of every layer for n sequences (before the start symbol)."""
        return [layer.cell.initial_carry(n) for layer in self.rnn.layers]

    def step(self, state: list, labels: Array) -> tuple[list, Array]:
        """One label per sequence: labels [n] -> (state, output [n, hidden]), no dropout."""
        x = self.embed(labels.astype(jnp.int32))[:, None]
        new_state = []
        for layer, carry in zip(self.rnn.layers, state):
            x, carry = layer(x, None, initial_carry=carry)
            new_state.append(carry)
        return new_state, x[:, 0]


class Joint(nnx.Module):
    """logits = W_out tanh(W_e e + W_p p) over the vocabulary (blank = 0).

    e [..., enc_dim] and p [..., pred_dim] broadcast against each other: e[:, :, None] and
    p[:, None] give the whole lattice [B, T, U+1, num_outputs]. The two projections are exposed
    so that decoding projects each encoder frame and each prediction output once.
    """

    def __init__(
        self, enc_dim: int, pred_dim: int, joint_dim: int, num_outputs: int, *, rngs: nnx.Rngs
    ):
        self.enc_proj = nnx.Linear(enc_dim, joint_dim, rngs=rngs)
        self.pred_proj = nnx.Linear(pred_dim, joint_dim, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(joint_dim, num_outputs, rngs=rngs)

    def project_encoder(self, e: Array) -> Array:
        return self.enc_proj(e)

    def project_prediction(self, p: Array) -> Array:
        return self.pred_proj(p)

    def logits(self, e_proj: Array, p_proj: Array) -> Array:
        return self.out(jnp.tanh(e_proj + p_proj))

    def __call__(self, e: Array, p: Array) -> Array:
        return self.logits(self.project_encoder(e), self.project_prediction(p))


class Transducer(models._Model):
    """RNN transducer: `models.Encoder` for the audio, a PredictionNetwork and a Joint.

    cfg is `config.model` (kind "transducer"): the Encoder's keys (cell, hidden, layers,
    bidirectional, frontend, ...) and
      pred_cell    the prediction network's cell (default: cfg["cell"]); any registered name
      pred_hidden  its hidden size (default: cfg["hidden"])
      pred_embed   label embedding size (default: pred_hidden)
      pred_layers  its depth (default 1); pred_dropout between its layers (default 0)
      pred_cell_kwargs  (default: cfg["cell_kwargs"] when pred_cell is the encoder's cell)
      joint_dim    the joint network's width (default: pred_hidden)
    `num_classes` excludes the blank; the output vocabulary is num_classes + 1.
    """

    def __init__(
        self, cfg: Mapping[str, Any], num_features: int, num_classes: int, *, rngs: nnx.Rngs
    ):
        super().__init__(cfg, num_features, rngs=rngs)
        pred_cell = cfg.get("pred_cell") or cfg["cell"]
        pred_hidden = cfg.get("pred_hidden") or cfg["hidden"]
        pred_kwargs = cfg.get("pred_cell_kwargs")
        if pred_kwargs is None:
            pred_kwargs = dict(cfg.get("cell_kwargs") or {}) if pred_cell == cfg["cell"] else {}
        pred_kwargs = dict(pred_kwargs)
        if cfg.get("dtype"):
            pred_kwargs["dtype"] = jnp.dtype(cfg["dtype"])
        self.num_classes = num_classes
        self.prediction = PredictionNetwork(
            num_classes,
            cfg.get("pred_embed") or pred_hidden,
            pred_hidden,
            pred_cell,
            cfg.get("pred_layers", 1),
            dropout=cfg.get("pred_dropout", 0.0),
            cell_kwargs=pred_kwargs,
            rngs=rngs,
        )
        self.joint = Joint(
            self.encoder.out_features,
            pred_hidden,
            cfg.get("joint_dim") or pred_hidden,
            num_classes + 1,
            rngs=rngs,
        )

    def __call__(self, x: Array, lengths: Array, *, labels: Array, key: Array | None = None):
        """x [B, T, F], lengths [B], labels [B, U] -> (logits [B, T', U+1, classes+1], aux)."""
        if labels.ndim != 2 or labels.shape[0] != x.shape[0]:
            raise ValueError(
                f"labels must have shape [batch={x.shape[0]}, labels], got {tuple(labels.shape)}"
            )
        k_enc, k_pred = jax.random.split(key) if key is not None else (None, None)
        h, lengths_out = self.encoder(x, lengths, key=k_enc)
        p = self.prediction(labels, key=k_pred)
        return self.joint(h[:, :, None], p[:, None]), self._aux(x, h, lengths_out)


# ---------------------------------------------------------------------------------------------
# Decoding. The searches need only: prediction.initial_state / step, and joint.project_encoder /
# project_prediction / logits.


def _check_search_args(enc, enc_lengths, max_symbols_per_step, names=("enc", "enc_lengths")):
    if enc.ndim != 3:
        raise ValueError(
            f"{names[0]} must have rank 3 [batch, time, features], got shape {tuple(enc.shape)}"
        )
    if enc_lengths.shape != (enc.shape[0],):
        raise ValueError(
            f"{names[1]} must have shape [batch]=({enc.shape[0]},), got {tuple(enc_lengths.shape)}"
        )
    if not isinstance(max_symbols_per_step, int) or max_symbols_per_step < 1:
        raise ValueError(f"max_symbols_per_step must be an int >= 1, got {max_symbols_per_step!r}")


def _where_rows(keep: Array, new, old):
    """Per leading-axis row: new where keep, else old (any pytree of [rows, ...] leaves)."""

    def pick(a, b):
        return jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - keep.ndim)), a, b)

    return jax.tree.map(pick, new, old)


def greedy_search(
    prediction, joint, enc: Array, enc_lengths: Array, *, max_symbols_per_step: int = 3
) -> tuple[Array, Array]:
    """Greedy decoding of encoder states enc [B, T, D] (valid frames enc_lengths [B]).

    At each frame: take the argmax; a label is emitted and the prediction network advanced, up
    to `max_symbols_per_step` times, until the argmax is blank, then the next frame.
    Returns (labels [B, T * max_symbols_per_step] int32, zero past lengths; lengths [B]).
    """
    _check_search_args(enc, enc_lengths, max_symbols_per_step)
    b, t_max, _ = enc.shape
    l_max = t_max * max_symbols_per_step
    ep = joint.project_encoder(enc)
    state, out = prediction.step(prediction.initial_state(b), jnp.zeros((b,), jnp.int32))
    init = (
        state,
        joint.project_prediction(out),
        jnp.zeros((b, l_max), jnp.int32),
        jnp.zeros((b,), jnp.int32),
    )
    valid = jnp.arange(t_max)[:, None] < enc_lengths[None, :]  # [T, B]

    def frame(carry, inp):
        e_t, valid_t = inp

        def symbol(_, c):
            state, pp, tokens, n, active = c
            k = jnp.argmax(joint.logits(e_t, pp), axis=-1).astype(jnp.int32)
            emit = active & (k != 0)
            tokens = jnp.where(
                emit[:, None] & (jnp.arange(l_max)[None] == n[:, None]), k[:, None], tokens
            )
            new_state, out = prediction.step(state, k)
            state = _where_rows(emit, new_state, state)
            pp = jnp.where(emit[:, None], joint.project_prediction(out), pp)
            return state, pp, tokens, n + emit, emit

        out = jax.lax.fori_loop(0, max_symbols_per_step, symbol, carry + (valid_t,))
        return out[:4], None

    (_, _, tokens, n), _ = jax.lax.scan(frame, init, (jnp.swapaxes(ep, 0, 1), valid))
    return tokens, n


def _gather(hyps: dict, idx: Array) -> dict:
    """hyps leaves [B, K, ...], idx [B, K'] -> leaves [B, K', ...]."""

    def take(a):
        i = idx.reshape(idx.shape + (1,) * (a.ndim - 2))
        return jnp.take_along_axis(a, i, axis=1)

    return jax.tree.map(take, hyps)


def _merge_ended(ended: dict, new: dict, beam: int) -> dict:
    """The best `beam` distinct prefixes of ended ∪ new; equal prefixes add their probabilities."""
    h = jax.tree.map(lambda a, c: jnp.concatenate([a, c], axis=1), ended, new)
    score, tokens = h["score"], h["tokens"]  # [B, 2K], [B, 2K, L] (zero past each length)
    live = score > -jnp.inf
    same = jnp.all(tokens[:, :, None] == tokens[:, None, :], axis=-1)
    same &= live[:, :, None] & live[:, None, :]  # [B, 2K, 2K]
    merged = jax.nn.logsumexp(jnp.where(same, score[:, None, :], -jnp.inf), axis=-1)
    first = jnp.argmax(same, axis=-1) == jnp.arange(score.shape[1])[None, :]
    score = jnp.where(live & first, merged, -jnp.inf)
    top, idx = jax.lax.top_k(score, beam)
    return {**_gather(h, idx), "score": top}


def beam_search(
    prediction,
    joint,
    enc: Array,
    enc_lengths: Array,
    *,
    beam: int = 4,
    max_symbols_per_step: int = 3,
) -> tuple[Array, Array, Array]:
    """Time-synchronous transducer beam search (Saon et al. 2020; ESPnet's
    `BeamSearchTransducer(search_type="tsd")`) with Graves' (2012) merging of equal prefixes,
    batched, the beam an array axis.

    Per frame, up to `max_symbols_per_step` rounds: every live hypothesis ends the frame with a
    blank (into the frame's ended set, where equal label sequences add their probabilities) or
    is extended by a label (the best `beam` of all extensions go on); after the last round
    only the blank is allowed. A hypothesis's score is then log of the sum, over the alignments
    the search kept, of their probabilities; with a beam wide enough to keep every prefix it is
    log P(y | x) over alignments with at most `max_symbols_per_step` labels per frame.

    Returns the final beam, best first: (labels [B, beam, T * max_symbols_per_step] int32, zero
    past lengths; lengths [B, beam]; scores [B, beam], -inf for empty slots).
    """
    _check_search_args(enc, enc_lengths, max_symbols_per_step)
    if not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be an int >= 1, got {beam!r}")
    b, t_max, _ = enc.shape
    k, l_max = beam, t_max * max_symbols_per_step
    ep = joint.project_encoder(enc)
    state, out = prediction.step(prediction.initial_state(b * k), jnp.zeros((b * k,), jnp.int32))
    to_bk = lambda a: a.reshape((b, k) + a.shape[1:])
    to_flat = lambda a: a.reshape((b * k,) + a.shape[2:])
    hyps = {
        "tokens": jnp.zeros((b, k, l_max), jnp.int32),
        "length": jnp.zeros((b, k), jnp.int32),
        "score": jnp.where(jnp.arange(k)[None, :] == 0, 0.0, -jnp.inf) * jnp.ones((b, 1)),
        "state": jax.tree.map(to_bk, state),
        "pred": to_bk(joint.project_prediction(out)),
    }
    valid = jnp.arange(t_max)[:, None] < enc_lengths[None, :]  # [T, B]

    def extend(cur, logp):
        v = logp.shape[-1] - 1
        top, idx = jax.lax.top_k((cur["score"][..., None] + logp[..., 1:]).reshape(b, k * v), k)
        label = (idx % v + 1).astype(jnp.int32)
        h = _gather(cur, idx // v)
        at_end = jnp.arange(l_max)[None, None] == h["length"][..., None]
        state, out = prediction.step(jax.tree.map(to_flat, h["state"]), label.reshape(-1))
        return {
            "tokens": jnp.where(at_end, label[..., None], h["tokens"]),
            "length": h["length"] + 1,
            "score": top,
            "state": jax.tree.map(to_bk, state),
            "pred": to_bk(joint.project_prediction(out)),
        }

    def frame(hyps, inp):
        e_t, valid_t = inp

        def log_probs(h):
            return jax.nn.log_softmax(joint.logits(e_t[:, None], h["pred"]).astype(jnp.float32))

        def end_frame(ended, cur, logp):
            return _merge_ended(ended, {**cur, "score": cur["score"] + logp[..., 0]}, k)

        def round_(_, c):
            cur, ended = c
            logp = log_probs(cur)
            return extend(cur, logp), end_frame(ended, cur, logp)

        empty = {**hyps, "score": jnp.full((b, k), -jnp.inf)}
        cur, ended = jax.lax.fori_loop(0, max_symbols_per_step, round_, (hyps, empty))
        ended = end_frame(ended, cur, log_probs(cur))
        return _where_rows(valid_t, ended, hyps), None

    hyps, _ = jax.lax.scan(frame, hyps, (jnp.swapaxes(ep, 0, 1), valid))
    order = jnp.argsort(-hyps["score"], axis=1)
    best = _gather({key: hyps[key] for key in ("tokens", "length", "score")}, order)
    return best["tokens"], best["length"], best["score"]


def greedy_decode(
    model: Transducer, feats: Array, lengths: Array, *, max_symbols_per_step: int = 3
) -> tuple[Array, Array]:
    """feats [B, T, F], lengths [B] -> (label ids [B, T' * max_symbols_per_step], lengths [B]).

    A pure function of the model's arrays: call it inside `jax.jit` (e.g. in the eval step).
    """
    _check_search_args(feats, lengths, max_symbols_per_step, names=("feats", "lengths"))
    enc, enc_lengths = model.encoder(feats, lengths)
    return greedy_search(
        model.prediction, model.joint, enc, enc_lengths, max_symbols_per_step=max_symbols_per_step
    )


def beam_decode(
    model: Transducer, feats: Array, lengths: Array, *, beam: int = 4, max_symbols_per_step: int = 3
) -> tuple[Array, Array]:
    """feats [B, T, F], lengths [B] -> the best hypothesis of `beam_search`: (label ids
    [B, T' * max_symbols_per_step], lengths [B]). Pure; call it inside `jax.jit`."""
    _check_search_args(feats, lengths, max_symbols_per_step, names=("feats", "lengths"))
    enc, enc_lengths = model.encoder(feats, lengths)
    tokens, lens, _ = beam_search(
        model.prediction,
        model.joint,
        enc,
        enc_lengths,
        beam=beam,
        max_symbols_per_step=max_symbols_per_step,
    )
    return tokens[:, 0], lens[:, 0]
