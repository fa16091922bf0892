"""Models: a keyword classifier and a CTC recogniser around one recurrent encoder.

  Classifier     features [batch, time, F] -> front-end -> encoder -> (self-attention) -> pooling
                 -> logits [batch, classes]
  CTCRecognizer  features [batch, time, F] -> front-end -> encoder -> (self-attention)
                 -> frame logits [batch, time', alphabet + 1]  (blank = 0)
  Tagger         the same with per-step logits over `num_classes` (synthetic memory tasks)

Both return `(logits, aux)` with `aux = {"states": [batch, time', D], "lengths": [batch]}` (the
encoder's top-layer states, for the stability penalty) and, when `aux_ae_weight > 0`,
`aux["reconstruction"]` [batch, time, F], the autoencoder head's estimate of the input features.
`build(config.model, ...)` picks the model by `config.model.kind` from `MODELS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnbench import attention, layers
from rnnbench import precision as precision_lib

Array = jax.Array
POOLINGS = ("last", "mean", "attention")


class ConvFrontEnd(nnx.Module):
    """1-D convolution over time with stride: [batch, time, F] -> [batch, ceil(time/stride), C]."""

    def __init__(
        self, in_features: int, channels: int, kernel: int, stride: int, *, rngs: nnx.Rngs
    ):
        self.stride = stride
        self.conv = nnx.Conv(
            in_features,
            channels,
            kernel_size=(kernel,),
            strides=(stride,),
            padding="SAME",
            rngs=rngs,
        )

    def __call__(self, x: Array, lengths: Array) -> tuple[Array, Array]:
        y = jax.nn.relu(self.conv(x))
        return y, (lengths + self.stride - 1) // self.stride


class Encoder(nnx.Module):
    """Front-end (optional) -> stacked (bi)RNN -> self-attention over states (optional).

    `cfg["precision"]` is the matmul policy of the RNN and the self-attention ("float32" exact,
    the default; "tf32"; "bf16"; see `rnnbench.precision`); `self.precision` names the one it
    runs (also "bf16" for the legacy `cfg["dtype"] = "bfloat16"`).
    """

    def __init__(self, cfg: Mapping[str, Any], num_features: int, *, rngs: nnx.Rngs):
        front = cfg.get("frontend") or {}
        self.frontend = (
            ConvFrontEnd(
                num_features,
                front["channels"],
                front.get("kernel", 5),
                front.get("stride", 2),
                rngs=rngs,
            )
            if front.get("channels", 0)
            else None
        )
        n_in = front["channels"] if self.frontend is not None else num_features
        cell_kwargs = dict(cfg.get("cell_kwargs") or {})
        if cfg.get("dtype"):
            cell_kwargs["dtype"] = jnp.dtype(cfg["dtype"])
        policy = precision_lib.check(cfg.get("precision") or precision_lib.DEFAULT)
        self.rnn = layers.build(
            cfg["cell"],
            n_in,
            cfg["hidden"],
            num_layers=cfg["layers"],
            bidirectional=cfg["bidirectional"],
            dropout=cfg.get("dropout", 0.0),
            residual=cfg.get("residual", False),
            layer_norm=cfg.get("layer_norm", False),
            input_dropout=cfg.get("input_dropout", 0.0),
            recurrent_dropout=cfg.get("recurrent_dropout", 0.0),
            zoneout=cfg.get("zoneout", 0.0),
            unroll=cfg.get("unroll", "auto"),
            precision=policy,
            rngs=rngs,
            **cell_kwargs,
        )
        heads = cfg.get("attention_heads", 0)
        self.self_attention = (
            attention.SelfAttention(self.rnn.out_features, heads, precision=policy, rngs=rngs)
            if heads
            else None
        )
        self.precision = precision_lib.effective(policy, cell_kwargs.get("dtype"))
        self.out_features = self.rnn.out_features
        self.bidirectional = cfg["bidirectional"]

    def __call__(self, x: Array, lengths: Array, *, key: Array | None = None):
        """x [batch, time, F] -> (states [batch, time', D], lengths' [batch])."""
        k_rnn, k_att = jax.random.split(key) if key is not None else (None, None)
        if self.frontend is not None:
            x, lengths = self.frontend(x, lengths)
        h, _ = self.rnn(x, lengths, key=k_rnn)
        if self.self_attention is not None:
            h = self.self_attention(h, lengths, key=k_att)
        return h, lengths


def last_state(h: Array, lengths: Array, bidirectional: bool) -> Array:
    """The state at each sequence's last valid step; for a concat-merged bidirectional encoder
    the forward half at the last step and the backward half at step 0 (both have seen it all)."""
    idx = jnp.maximum(lengths - 1, 0)
    last = jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0]
    if not bidirectional:
        return last
    half = h.shape[-1] // 2
    return jnp.concatenate([last[:, :half], h[:, 0, half:]], axis=-1)


def mean_state(h: Array, lengths: Array) -> Array:
    """Mean of h [batch, time, D] over valid steps (padded steps of h are zero)."""
    return h.sum(axis=1) / jnp.maximum(lengths, 1)[:, None].astype(h.dtype)


class _Model(nnx.Module):
    """Shared: encoder and the optional autoencoder head."""

    def __init__(self, cfg, num_features: int, *, rngs: nnx.Rngs):
        self.encoder = Encoder(cfg, num_features, rngs=rngs)
        stride = (cfg.get("frontend") or {}).get("stride", 1) if self.encoder.frontend else 1
        self.stride = stride
        self.num_features = num_features
        self.decoder = (
            nnx.Linear(self.encoder.out_features, num_features * stride, rngs=rngs)
            if cfg.get("aux_ae_weight", 0.0) > 0
            else None
        )

    def _aux(self, x, h, lengths):
        aux = {"states": h, "lengths": lengths}
        if self.decoder is not None:
            b, t = h.shape[:2]
            rec = self.decoder(h).reshape(b, t * self.stride, self.num_features)
            aux["reconstruction"] = rec[:, : x.shape[1]]
        return aux


class Classifier(_Model):
    """Keyword classifier. pooling: 'last' | 'mean' | 'attention' (masked attention pooling)."""

    def __init__(self, cfg, num_features: int, num_classes: int, *, rngs: nnx.Rngs):
        super().__init__(cfg, num_features, rngs=rngs)
        pooling = cfg.get("pooling", "last")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown model.pooling {pooling!r}; expected one of {POOLINGS}")
        self.pooling = pooling
        d = self.encoder.out_features
        self.pool = attention.AttentionPooling(d, rngs=rngs) if pooling == "attention" else None
        self.head = nnx.Linear(d, num_classes, rngs=rngs)

    def __call__(self, x: Array, lengths: Array, *, key: Array | None = None):
        h, lengths_out = self.encoder(x, lengths, key=key)
        if self.pooling == "last":
            pooled = last_state(h, lengths_out, self.encoder.bidirectional)
        elif self.pooling == "mean":
            pooled = mean_state(h, lengths_out)
        else:
            pooled, _ = self.pool(h, lengths_out)
        return self.head(pooled), self._aux(x, h, lengths_out)


class CTCRecognizer(_Model):
    """Frame-wise logits over the alphabet plus the blank (index 0), for `optax.ctc_loss`."""

    def __init__(self, cfg, num_features: int, num_classes: int, *, rngs: nnx.Rngs):
        super().__init__(cfg, num_features, rngs=rngs)
        self.head = nnx.Linear(self.encoder.out_features, num_classes + 1, rngs=rngs)

    def __call__(self, x: Array, lengths: Array, *, key: Array | None = None):
        h, lengths_out = self.encoder(x, lengths, key=key)
        return self.head(h), self._aux(x, h, lengths_out)


class Tagger(_Model):
    """Per-step logits [batch, time', classes] (sequence tagging, e.g. the copy tasks)."""

    def __init__(self, cfg, num_features: int, num_classes: int, *, rngs: nnx.Rngs):
        super().__init__(cfg, num_features, rngs=rngs)
        self.head = nnx.Linear(self.encoder.out_features, num_classes, rngs=rngs)

    def __call__(self, x: Array, lengths: Array, *, key: Array | None = None):
        h, lengths_out = self.encoder(x, lengths, key=key)
        return self.head(h), self._aux(x, h, lengths_out)


# kind -> class, or "module:Class" for models defined in their own module on top of this one
# (imported when first built, so that module can import this one without a cycle).
MODELS: dict[str, Any] = {
    "classifier": Classifier,
    "ctc": CTCRecognizer,
    "tagger": Tagger,
    "las": "rnnbench.seq2seq:ListenAttendSpell",
    "transducer": "rnnbench.transducer:Transducer",
    "intent": "rnnbench.slu:IntentModel",
    "tts": "rnnbench.tts:Tacotron",
}


def build(
    cfg: Mapping[str, Any], *, num_features: int, num_classes: int, rngs: nnx.Rngs
) -> nnx.Module:
    """Builds `MODELS[cfg["kind"]]`; `num_classes` excludes the CTC blank."""
    kind = cfg.get("kind", "classifier")
    if kind not in MODELS:
        raise ValueError(f"unknown model.kind {kind!r}; expected one of {sorted(MODELS)}")
    cls = MODELS[kind]
    if isinstance(cls, str):
        module, name = cls.split(":")
        cls = getattr(importlib.import_module(module), name)
    return cls(cfg, num_features, num_classes, rngs=rngs)
