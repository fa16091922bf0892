"""Listen, attend and spell: an attention encoder-decoder trained jointly with CTC.

  ListenAttendSpell   features [batch, time, F] -> models.Encoder -> states h [batch, T', D]
                      ├─ CTC head:  h -> ctc_logits [batch, T', C + 1]           (blank = 0)
                      └─ AttentionDecoder (teacher forcing): [sos, y_1 .. y_U] ->
                         logits [batch, U + 1, C + 2] for [y_1 .. y_U, eos]
  seq2seq_loss        masked cross-entropy with label smoothing over the emittable ids
  joint_loss          w * CTC + (1 - w) * attention (Kim, Hori & Watanabe 2017)
  beam_search         jit-compiled, batched; the beam is an array axis; optional joint scoring
                      with CTC prefix scores (Watanabe et al. 2017), `ctc_prefix_score`
  plot_alignment      attention weights [U, T'] as an image, written atomically

Id layout, with C = number of characters (`len(dataset.classes)`, `num_classes` below):

  id 0          CTC blank and label padding; the decoder never emits it (its logit is fixed at
                `MASKED_LOGIT`, so its probability is 0)
  ids 1 .. C    characters, the same ids as `Dataset.encode` and the CTC head use
  id C + 1      eos as a decoder output, sos as the decoder's first input (one id, as in ESPnet)

So the decoder vocabulary is V = C + 2 and the CTC head's is C + 1; decoded ids are 1..C, padded
with 0, which `Dataset.decode` turns into text directly.

Decoder step i (Chorowski et al. 2015, "Attention-based models for speech recognition"):
  s_i, carry = cell.step(carry, cell.project_inputs([embed(y_{i-1}); c_{i-1}]))   any cell
  e_{i,t} = v . tanh(W h_t + b + Q s_i + U (F * α_{i-1})_t)    (F * α: 1-D conv, location term)
  α_i = softmax over valid frames of e_i;  c_i = Σ_t α_{i,t} h_t
  logits_i = Linear([s_i; c_i])
The location term is dropped for `attention="content"` (additive content attention, Bahdanau et
al. 2015). α_0 is uniform over each utterance's valid frames; padded frames get weight exactly 0.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from rnnbench import atomic, cells, layers, models

Array = jax.Array
ATTENTIONS = ("location", "content")
MASKED_LOGIT = -1e9  # logit of id 0: softmax gives it exactly 0 in float32, and no inf/NaN


def vocab_size(num_classes: int) -> int:
    """Decoder vocabulary: blank/pad 0, characters 1..num_classes, eos/sos num_classes + 1."""
    return num_classes + 2


def eos_id(num_classes: int) -> int:
    """The eos (and sos) id: num_classes + 1."""
    return num_classes + 1


class LocationAwareAttention(nnx.Module):
    """Additive attention with an optional location term (Chorowski et al. 2015).

    e_t = v . tanh(W h_t + b + Q s + U conv(α_prev)_t); α = softmax over valid frames.
    `location=False` is plain content attention (no conv, `prev` is ignored).
    """

    def __init__(
        self,
        query_features: int,
        memory_features: int,
        dim: int = 128,
        *,
        location: bool = True,
        filters: int = 32,
        width: int = 31,
        rngs: nnx.Rngs,
    ):
        for name, v in (("attention_dim", dim), ("loc_filters", filters), ("loc_width", width)):
            if v < 1:
                raise ValueError(f"model.{name} must be >= 1, got {v}")
        self.location = location
        self.memory_proj = nnx.Linear(memory_features, dim, rngs=rngs)
        self.query_proj = nnx.Linear(query_features, dim, use_bias=False, rngs=rngs)
        self.score = nnx.Linear(dim, 1, use_bias=False, rngs=rngs)
        if location:
            self.conv = nnx.Conv(
                1, filters, kernel_size=(width,), padding="SAME", use_bias=False, rngs=rngs
            )
            self.location_proj = nnx.Linear(filters, dim, use_bias=False, rngs=rngs)

    def keys(self, memory: Array) -> Array:
        """memory [batch, T, D] -> W h + b [batch, T, dim]; computed once per utterance."""
        return self.memory_proj(memory)

    def location_term(self, prev: Array) -> Array:
        """prev [B, T] -> U (F * prev) [B, T, dim], the conv ('SAME' padding) and its projection
        computed as ONE matmul: prev's width-long windows [B, T, width] @ (F U) [width, dim].
        The same parameters and numbers (up to float32 rounding) as
        `self.location_proj(self.conv(prev[..., None]))`, in less time: the conv with one input
        channel was most of a decoder step on CPU (experiments/bench_attention.py)."""
        kernel = self.conv.kernel[...][:, 0, :]  # [width, filters]
        width, t = kernel.shape[0], prev.shape[1]
        left = (width - 1) // 2  # lax's 'SAME': the extra pad of an even width goes right
        padded = jnp.pad(prev, ((0, 0), (left, width - 1 - left)))
        windows = jnp.stack([padded[:, i : i + t] for i in range(width)], axis=-1)
        return windows @ (kernel @ self.location_proj.kernel[...])

    def __call__(
        self, query: Array, memory: Array, keys: Array, mask: Array, prev: Array
    ) -> tuple[Array, Array]:
        """query [B, Q], memory [B, T, D], keys [B, T, A], mask bool [B, T], prev [B, T]
        -> (context [B, D], weights [B, T]); weights are 0 at masked frames and sum to 1 over
        the valid ones (all 0 for an empty utterance)."""
        pre = keys + self.query_proj(query)[:, None, :]
        if self.location:
            pre = pre + self.location_term(prev)
        e = self.score(jnp.tanh(pre))[..., 0]
        e = jnp.where(mask, e, -1e30)  # finite: an all-masked row stays NaN-free
        weights = jnp.where(mask, jax.nn.softmax(e, axis=-1), 0.0)
        return jnp.einsum("bt,btd->bd", weights, memory), weights


class AttentionDecoder(nnx.Module):
    """Embedding + any registered cell (stepped one token at a time) + attention + output layer.

    `__call__` runs teacher forcing over given input ids; `step` is one decoding step, shared by
    teacher forcing and `beam_search`, so both compute the same numbers.
    """

    def __init__(
        self,
        cell: str,
        vocab: int,
        memory_features: int,
        hidden: int,
        *,
        embed: int = 64,
        attention: str = "location",
        attention_dim: int = 128,
        loc_filters: int = 32,
        loc_width: int = 31,
        dropout: float = 0.0,
        cell_kwargs: Mapping[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown model.attention {attention!r}; expected one of {ATTENTIONS}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.decoder_dropout must be in [0, 1), got {dropout}")
        self.vocab = vocab
        self.dropout = dropout
        self.embed = nnx.Embed(vocab, embed, rngs=rngs)
        self.cell = cells.make(
            cell, embed + memory_features, hidden, rngs=rngs, **dict(cell_kwargs or {})
        )
        self.attention = LocationAwareAttention(
            hidden,
            memory_features,
            attention_dim,
            location=attention == "location",
            filters=loc_filters,
            width=loc_width,
            rngs=rngs,
        )
        self.out = nnx.Linear(hidden + memory_features, vocab, rngs=rngs)

    def memory(self, h: Array, lengths: Array) -> dict:
        """Encoder states h [N, T, D] and lengths [N] -> what every step reads."""
        return {
            "values": h,
            "keys": self.attention.keys(h),
            "mask": jnp.arange(h.shape[1])[None, :] < lengths[:, None],
        }

    def initial_state(self, memory: dict) -> dict:
        """Zero carry and context; α_0 uniform over each utterance's valid frames."""
        h, mask = memory["values"], memory["mask"]
        m = mask.astype(h.dtype)
        return {
            "carry": self.cell.initial_carry(h.shape[0]),
            "context": jnp.zeros((h.shape[0], h.shape[-1]), h.dtype),
            "weights": m / jnp.maximum(m.sum(-1, keepdims=True), 1.0),
        }

    def step(
        self, state: dict, tokens: Array, memory: dict, *, key: Array | None = None
    ) -> tuple[dict, Array, Array]:
        """tokens [N] (previous outputs; sos first) -> (state, logits [N, V], weights [N, T])."""
        x = jnp.concatenate([self.embed(tokens), state["context"]], axis=-1)
        carry, s = self.cell.step(state["carry"], self.cell.project_inputs(x))
        context, weights = self.attention(
            s, memory["values"], memory["keys"], memory["mask"], state["weights"]
        )
        features = layers.dropout(jnp.concatenate([s, context], -1), self.dropout, key)
        logits = self.out(features)
        logits = jnp.where(jnp.arange(self.vocab) == 0, MASKED_LOGIT, logits)
        return {"carry": carry, "context": context, "weights": weights}, logits, weights

    def __call__(
        self, h: Array, lengths: Array, inputs: Array, *, key: Array | None = None
    ) -> tuple[Array, Array]:
        """Teacher forcing: h [B, T, D], lengths [B], inputs [B, S] ids
        -> (logits [B, S, V], alignments [B, S, T])."""
        memory = self.memory(h, lengths)
        xs = {"tokens": inputs.T}
        if key is not None and self.dropout > 0.0:
            xs["key"] = jax.random.split(key, inputs.shape[1])

        def body(state, x):
            state, logits, weights = self.step(state, x["tokens"], memory, key=x.get("key"))
            return state, (logits, weights)

        _, (logits, weights) = jax.lax.scan(body, self.initial_state(memory), xs)
        return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(weights, 0, 1)


def decoder_inputs(labels: Array, label_lengths: Array, sos: int) -> Array:
    """labels [B, U] (1..C, padded) -> [sos, y_1 .. y_U] [B, U + 1], 0 after each label length."""
    valid = jnp.arange(labels.shape[1])[None, :] < label_lengths[:, None]
    y = jnp.where(valid, labels, 0)
    return jnp.concatenate([jnp.full((labels.shape[0], 1), sos, y.dtype), y], axis=1)


def decoder_targets(labels: Array, label_lengths: Array, eos: int) -> Array:
    """labels [B, U] -> [y_1 .. y_U_b, eos, 0 ...] [B, U + 1]."""
    b, u = labels.shape
    pos = jnp.arange(u + 1)[None, :]
    y = jnp.concatenate([labels, jnp.zeros((b, 1), labels.dtype)], axis=1)
    y = jnp.where(pos < label_lengths[:, None], y, 0)
    return jnp.where(pos == label_lengths[:, None], eos, y)


class ListenAttendSpell(nnx.Module):
    """`models.Encoder` + CTC head + `AttentionDecoder` (Chan et al. 2016; Kim et al. 2017).

    cfg: the encoder keys of `models.Encoder` (cell, hidden, layers, bidirectional, frontend,
    dropout, ...) and decoder_cell (default: cfg.cell), decoder_hidden (default: cfg.hidden),
    decoder_cell_kwargs ({}; the encoder's cell_kwargs are not inherited, cfg.dtype is), embed (64),
    attention ("location" | "content", default "location"), attention_dim (128),
    loc_filters (32), loc_width (31), decoder_dropout (0.0).
    `num_classes` = C characters, excluding the blank (as for `models.build`).
    """

    def __init__(
        self, cfg: Mapping[str, Any], num_features: int, num_classes: int, *, rngs: nnx.Rngs
    ):
        if cfg.get("aux_ae_weight", 0.0) > 0:
            raise ValueError(
                "model.aux_ae_weight > 0 is not supported by model.kind 'las'; set it to 0"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.vocab_size = vocab_size(num_classes)
        self.eos = eos_id(num_classes)
        self.encoder = models.Encoder(cfg, num_features, rngs=rngs)
        d = self.encoder.out_features
        self.ctc_head = nnx.Linear(d, num_classes + 1, rngs=rngs)
        cell_kwargs = dict(cfg.get("decoder_cell_kwargs") or {})
        if cfg.get("dtype"):
            cell_kwargs.setdefault("dtype", jnp.dtype(cfg["dtype"]))
        self.decoder = AttentionDecoder(
            cfg.get("decoder_cell") or cfg["cell"],
            self.vocab_size,
            d,
            cfg.get("decoder_hidden") or cfg["hidden"],
            embed=cfg.get("embed", 64),
            attention=cfg.get("attention", "location"),
            attention_dim=cfg.get("attention_dim", 128),
            loc_filters=cfg.get("loc_filters", 32),
            loc_width=cfg.get("loc_width", 31),
            dropout=cfg.get("decoder_dropout", 0.0),
            cell_kwargs=cell_kwargs,
            rngs=rngs,
        )

    def encode(self, feats: Array, lengths: Array, *, key: Array | None = None):
        """feats [B, T, F] -> (states [B, T', D], lengths' [B], ctc_logits [B, T', C + 1])."""
        h, hl = self.encoder(feats, lengths, key=key)
        return h, hl, self.ctc_head(h)

    def __call__(
        self,
        feats: Array,
        lengths: Array,
        *,
        labels: Array,
        label_lengths: Array,
        key: Array | None = None,
    ) -> tuple[Array, dict]:
        """Teacher forcing. feats [B, T, F], lengths [B], labels [B, U] (1..C, 0-padded),
        label_lengths [B] -> (logits [B, U + 1, C + 2] predicting [y_1 .. y_U, eos],
        aux {"states", "lengths", "ctc_logits" [B, T', C + 1], "alignments" [B, U + 1, T']})."""
        k_enc, k_dec = jax.random.split(key) if key is not None else (None, None)
        h, hl, ctc_logits = self.encode(feats, lengths, key=k_enc)
        inputs = decoder_inputs(labels, label_lengths, self.eos)
        logits, alignments = self.decoder(h, hl, inputs, key=k_dec)
        return logits, {
            "states": h,
            "lengths": hl,
            "ctc_logits": ctc_logits,
            "alignments": alignments,
        }


# ---------------------------------------------------------------------------------------------
# Losses


def seq2seq_loss(
    logits: Array, labels: Array, label_lengths: Array, label_smoothing: float = 0.0
) -> Array:
    """Teacher-forced cross-entropy per utterance, averaged over its U_b + 1 targets (the labels
    then eos) -> [B]. logits [B, U + 1, V] (V - 1 = eos), labels [B, U], label_lengths [B].

    Label smoothing (Szegedy et al. 2016) spreads `label_smoothing` of the target mass uniformly
    over the V - 1 emittable ids (1..V-1; id 0 is never a target).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    eos = logits.shape[-1] - 1
    targets = decoder_targets(labels, label_lengths, eos)
    mask = jnp.arange(targets.shape[1])[None, :] <= label_lengths[:, None]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * logp[..., 1:].mean(-1)
    nll = jnp.where(mask, nll, 0.0)
    return nll.sum(1) / (label_lengths + 1).astype(jnp.float32)


def ctc_loss(ctc_logits: Array, logit_lengths: Array, labels: Array, label_lengths: Array) -> Array:
    """`optax.ctc_loss` (blank 0) per utterance divided by its label count -> [B] (as the CTC
    task normalises it). ctc_logits [B, T', C + 1], labels [B, U]."""
    logit_pad = (jnp.arange(ctc_logits.shape[1])[None, :] >= logit_lengths[:, None]).astype(
        jnp.float32
    )
    label_pad = (jnp.arange(labels.shape[1])[None, :] >= label_lengths[:, None]).astype(jnp.float32)
    per_seq = optax.ctc_loss(
        ctc_logits.astype(jnp.float32), logit_pad, labels, label_pad, blank_id=0
    )
    return per_seq / jnp.maximum(label_lengths, 1).astype(jnp.float32)


def joint_loss(
    logits: Array,
    aux: Mapping[str, Array],
    labels: Array,
    label_lengths: Array,
    *,
    ctc_weight: float,
    label_smoothing: float = 0.0,
) -> tuple[Array, dict]:
    """Joint CTC/attention objective per utterance: w * ctc + (1 - w) * attention -> [B].

    `logits, aux` are `ListenAttendSpell`'s outputs. Also returns per-utterance parts:
    {"ctc": [B], "attention": [B], "correct": [B] teacher-forced argmax hits among the U_b + 1
    targets, "tokens": [B] their count}; the caller weights and averages over the batch.
    """
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    att = seq2seq_loss(logits, labels, label_lengths, label_smoothing)
    ctc = ctc_loss(aux["ctc_logits"], aux["lengths"], labels, label_lengths)
    targets = decoder_targets(labels, label_lengths, logits.shape[-1] - 1)
    mask = jnp.arange(targets.shape[1])[None, :] <= label_lengths[:, None]
    correct = ((jnp.argmax(logits, -1) == targets) & mask).sum(1).astype(jnp.float32)
    parts = {
        "ctc": ctc,
        "attention": att,
        "correct": correct,
        "tokens": (label_lengths + 1).astype(jnp.float32),
    }
    return ctc_weight * ctc + (1.0 - ctc_weight) * att, parts


# ---------------------------------------------------------------------------------------------
# CTC prefix scores (Watanabe et al. 2017, Algorithm 2; vectorised over all candidate tokens as in
# ESPnet's CTCPrefixScoreTH)


def ctc_prefix_init(log_probs: Array) -> Array:
    """Forward variables of the empty prefix: log_probs [N, T, L] (blank 0) -> r [N, T + 1, 2].

    r[:, t] = (log r^n_t, log r^b_t) after t frames; frame 0 is a virtual start (r^b_0 = 0), so
    the empty prefix needs no special case in `ctc_prefix_score`.
    """
    n = log_probs.shape[0]
    rb = jnp.concatenate(
        [jnp.zeros((n, 1), log_probs.dtype), jnp.cumsum(log_probs[:, :, 0], axis=1)], axis=1
    )
    return jnp.stack([jnp.full_like(rb, -jnp.inf), rb], axis=-1)


def ctc_prefix_score(
    log_probs: Array, lengths: Array, r: Array, last: Array
) -> tuple[Array, Array]:
    """CTC prefix scores of every one-token extension of N prefixes g, all tokens at once.

    Args:
      log_probs: [N, T, L] CTC log-probabilities (blank 0, labels 1..L-1).
      lengths: [N] valid frames.
      r: [N, T + 1, 2] forward variables of g (`ctc_prefix_init` for the empty prefix, then
        slices of a previous call's `r_next`).
      last: [N] the last label of g (0 for the empty prefix).
    Returns:
      scores: [N, L + 1]. Column c in 1..L-1: log ψ(g·c), the probability that the labelling
        starts with g·c; column L: log p(g), the probability that it is exactly g (the eos
        score); column 0: -inf.
      r_next: [N, T + 1, 2, L] forward variables of g·c for every c (column c).
    """
    n, t, l = log_probs.shape
    r_sum = jnp.logaddexp(r[..., 0], r[..., 1])  # [N, T + 1]
    repeat = jnp.arange(l)[None, :] == last[:, None]  # a repeated label needs a blank between
    phi = jnp.where(repeat[:, None, :], r[..., 1][..., None], r_sum[..., None])  # [N, T + 1, L]
    valid = (jnp.arange(t)[None, :] < lengths[:, None])[..., None]
    psi = jax.nn.logsumexp(jnp.where(valid, phi[:, :t] + log_probs, -jnp.inf), axis=1)

    def frame(prev, x):
        rn, rb = prev
        phi_prev, lp = x
        rn_t = jnp.logaddexp(rn, phi_prev) + lp
        rb_t = jnp.logaddexp(rn, rb) + lp[:, :1]
        return (rn_t, rb_t), (rn_t, rb_t)

    init = jnp.full((n, l), -jnp.inf, log_probs.dtype)
    _, (rn, rb) = jax.lax.scan(
        frame, (init, init), (jnp.swapaxes(phi[:, :t], 0, 1), jnp.swapaxes(log_probs, 0, 1))
    )
    r_next = jnp.concatenate(
        [jnp.full((1, n, 2, l), -jnp.inf, log_probs.dtype), jnp.stack([rn, rb], axis=2)], axis=0
    )
    eos = jnp.take_along_axis(r_sum, lengths[:, None], axis=1)
    scores = jnp.concatenate([psi.at[:, 0].set(-jnp.inf), eos], axis=1)
    return scores, jnp.swapaxes(r_next, 0, 1)


# ---------------------------------------------------------------------------------------------
# Beam search


def _combine(
    att: Array, ctc: Array, length: Array, ctc_weight: Array, length_bonus: Array
) -> Array:
    """(1 - w) * att + w * ctc + bonus * length, without 0 * -inf."""
    a = jnp.where(ctc_weight < 1.0, (1.0 - ctc_weight) * att, 0.0)
    c = jnp.where(ctc_weight > 0.0, ctc_weight * ctc, 0.0)
    return a + c + length_bonus * length


@functools.partial(nnx.jit, static_argnames=("beam", "max_len", "joint"))
def _search(
    model: ListenAttendSpell,
    feats,
    lengths,
    ctc_weight,
    length_bonus,
    *,
    beam: int,
    max_len: int,
    joint: bool,
):
    """The K-best list: ids [B, K, max_len], lengths [B, K], scores [B, K], best first."""
    h, hl, ctc_logits = model.encode(feats, lengths)
    b, k, v, eos = h.shape[0], beam, model.vocab_size, model.eos
    n = b * k
    dec = model.decoder
    memory = dec.memory(jnp.repeat(h, k, axis=0), jnp.repeat(hl, k, axis=0))
    ids = jnp.arange(v)
    is_char = (ids >= 1) & (ids < eos)
    neg = jnp.float32(-jnp.inf)

    s = {
        "dec": dec.initial_state(memory),
        "tokens": jnp.full((n,), eos, jnp.int32),  # sos
        "att": jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, neg), b),  # one live hypothesis
        "ctc": jnp.zeros((n,), jnp.float32),
        "score": jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, neg), b),
        "length": jnp.zeros((n,), jnp.int32),
        "finished": jnp.zeros((n,), bool),
        "history": jnp.zeros((n, max_len + 1), jnp.int32),
    }
    if joint:
        ctc_lp = jnp.repeat(jax.nn.log_softmax(ctc_logits.astype(jnp.float32), -1), k, axis=0)
        ctc_len = jnp.repeat(hl, k, axis=0)
        s["r"] = ctc_prefix_init(ctc_lp)
        s["last"] = jnp.zeros((n,), jnp.int32)

    def body(carry):
        i, s = carry
        dec_state, logits, _ = dec.step(s["dec"], s["tokens"], memory)
        att = s["att"][:, None] + jax.nn.log_softmax(logits.astype(jnp.float32), -1)  # [N, V]
        if joint:
            ctc, r_next = ctc_prefix_score(ctc_lp, ctc_len, s["r"], s["last"])
        else:
            ctc = jnp.zeros((n, v), jnp.float32)
        length = s["length"][:, None] + is_char[None, :]
        allowed = (ids > 0) & ((i < max_len) | ~is_char)  # at step max_len only eos
        live = allowed & (s["score"] > neg)[:, None]  # a hypothesis-free slot stays one
        att, ctc = jnp.where(live, att, neg), jnp.where(live, ctc, neg)
        total = jnp.where(live, _combine(att, ctc, length, ctc_weight, length_bonus), neg)
        # a finished hypothesis has one continuation, id 0, that keeps its scores
        fin = s["finished"][:, None]
        first = ids[None, :] == 0
        total = jnp.where(fin, jnp.where(first, s["score"][:, None], neg), total)
        att = jnp.where(fin, s["att"][:, None], att)
        ctc = jnp.where(fin, s["ctc"][:, None], ctc)
        length = jnp.where(fin, s["length"][:, None], length)

        score, flat = jax.lax.top_k(total.reshape(b, k * v), k)  # [B, K], best first
        src = (jnp.arange(b)[:, None] * k + flat // v).reshape(n)
        tok = (flat % v).reshape(n).astype(jnp.int32)
        pick = lambda x: x[src, tok]
        was_finished = s["finished"][src]
        new = {
            "dec": jax.tree.map(lambda x: x[src], dec_state),
            "tokens": tok,
            "att": pick(att),
            "ctc": pick(ctc),
            "score": score.reshape(n),
            "length": pick(length),
            "finished": was_finished | (tok == eos),
            "history": s["history"][src].at[:, i].set(jnp.where(was_finished, 0, tok)),
        }
        if joint:
            char = (tok >= 1) & (tok < eos)
            r_tok = r_next[src, :, :, jnp.clip(tok, 0, eos - 1)]  # [N, T + 1, 2]
            new["r"] = jnp.where(char[:, None, None], r_tok, s["r"][src])
            new["last"] = jnp.where(char, tok, s["last"][src])
        return i + 1, new

    def running(carry):
        i, s = carry
        return (i <= max_len) & jnp.any(~s["finished"] & (s["score"] > neg))

    _, s = jax.lax.while_loop(running, body, (jnp.int32(0), s))
    hist = s["history"][:, :max_len]
    hyp = jnp.where((hist >= 1) & (hist < eos), hist, 0).reshape(b, k, max_len)
    return hyp, s["length"].reshape(b, k), s["score"].reshape(b, k)


def beam_search(
    model: ListenAttendSpell,
    feats: Array,
    lengths: Array,
    *,
    beam: int = 10,
    max_len: int,
    ctc_weight: float = 0.0,
    length_bonus: float = 0.0,
    nbest: bool = False,
) -> tuple[Array, Array, Array]:
    """Batched beam search (jit-compiled; the beam is an array axis). Greedy is `beam=1`.

    A hypothesis y (length L <= max_len, then eos) scores
      (1 - ctc_weight) * log p_att(y, eos) + ctc_weight * log p_ctc(y) + length_bonus * L,
    and a partial one the same with the CTC prefix score log ψ(y) (Watanabe et al. 2017). All
    K * V one-token extensions of the K live hypotheses are scored and the top K kept; a
    hypothesis still open after `max_len` labels must emit eos. `ctc_weight` and the search sizes
    are Python values (one compilation per combination of beam, max_len and ctc_weight > 0).

    feats [B, T, F], lengths [B] -> (ids [B, max_len] (1..C, 0-padded), lengths [B], scores [B]),
    the best hypothesis; `nbest=True` gives all K, best first: [B, K, max_len], [B, K], [B, K]
    (scores -inf for slots that hold no hypothesis).
    """
    if beam < 1 or max_len < 1:
        raise ValueError(f"beam and max_len must be >= 1, got beam={beam}, max_len={max_len}")
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    out = _search(
        model,
        feats,
        lengths,
        jnp.float32(ctc_weight),
        jnp.float32(length_bonus),
        beam=beam,
        max_len=max_len,
        joint=ctc_weight > 0.0,
    )
    return out if nbest else tuple(x[:, 0] for x in out)


# ---------------------------------------------------------------------------------------------
# Plots


def plot_alignment(
    alignment,
    path: str,
    title: str = "",
    *,
    tokens: list[str] | None = None,
    frames: int | None = None,
) -> None:
    """Attention weights alignment [U, T] (output step x encoder frame) as an image at `path`
    (format from the extension), written atomically. `tokens` label the rows; `frames` crops
    the padded frames."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    a = np.asarray(alignment, np.float32)
    if a.ndim != 2:
        raise ValueError(f"alignment must be [output steps, frames], got shape {a.shape}")
    if frames is not None:
        a = a[:, :frames]
    if tokens is not None and len(tokens) != a.shape[0]:
        raise ValueError(f"{len(tokens)} tokens for an alignment of {a.shape[0]} output steps")
    fig = Figure(
        figsize=(max(4.0, a.shape[1] / 12), max(3.0, a.shape[0] / 4)), layout="constrained"
    )
    ax = fig.subplots()
    im = ax.imshow(
        a, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis", vmin=0.0
    )
    fig.colorbar(im, ax=ax, label="attention weight")
    ax.set_xlabel("encoder frame")
    ax.set_ylabel("output step")
    if tokens is not None:
        ax.set_yticks(range(len(tokens)), tokens)
    if title:
        ax.set_title(title)
    atomic.save_figure(fig, path)
