"""Speech synthesis: a small Tacotron 2 whose decoder is any registered recurrent cell.

  Tacotron(cfg, num_features, num_classes)     text ids [B, U] -> mel frames [B, T, M] + stop
    encoder:   Embed -> conv_layers x (Conv1d, ReLU, dropout) -> models.Encoder (a (bi)RNN of
               any registered cell, cfg.cell / hidden / layers / bidirectional)
    decoder step i, r = cfg.reduction frames per step (Shen et al. 2018, "Natural TTS synthesis
    by conditioning WaveNet on mel spectrogram predictions"):
      p_i        = prenet(last frame of step i - 1; a zero frame first)   2 x (Linear, ReLU,
                   dropout), the dropout on whenever a key is given, in free running too
      s_i^1      = cell_1([p_i; c_{i-1}])                        the attention RNN
      c_i, α_i   = seq2seq.LocationAwareAttention(s_i^1, encoder states, location = Σ_{j<i} α_j)
                   (cumulative weights as the location input, ESPnet's Tacotron 2 default;
                   uniform over the text at step 1)
      s_i^k      = cell_k([s_i^{k-1}; c_i])                      k = 2 .. decoder_layers
      frames_i   = Linear([s_i^K; c_i]) -> [r, M];  stop_i = Linear([s_i^K; c_i]) -> [r] logits
    post-net:  postnet_layers x Conv1d (tanh but the last), residual: mel_post = mel + postnet(mel)
  Tacotron.__call__   teacher forcing (one `lax.scan` over decoder steps)
  generate            free running under jit: `lax.while_loop` to `max_steps` decoder steps,
                      stopping each utterance at its first frame with p(stop) > threshold
  normalize_mels / denormalize_mels      log-mel (natural log of power) <-> model units
  guided_attention_loss                  Tachibana et al. 2017, "Efficiently trainable TTS ..."

Every cell runs one step at a time through `cell.step(carry, cell.project_inputs(x))`, so the
parallel-scan cells (mingru, minlstm, lru) decode autoregressively like the LSTM and GRU.

Ids: 0 is padding, 1..C the characters of `Dataset.encode` (`num_classes` = C).
Shapes: B batch, U text length, T mel frames, M = num_features mel channels, S = ceil(T / r)
decoder steps.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnbench import cells, layers, models, seq2seq
from rnnbench import precision as precision_lib

Array = jax.Array

# Model units: log-mel floored at log(1e-5) (-11.5: digital silence), shifted and scaled to about
# [-2, 2] (eSpeak speech at 16 kHz spans about -11 .. +4 in natural-log mel power).
MEL_FLOOR = float(np.log(1e-5))
MEL_MEAN = -4.0
MEL_SCALE = 4.0
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


def frame_mask(lengths: Array, size: int) -> Array:
    """lengths [B] -> bool [B, size], True at valid steps."""
    return jnp.arange(size)[None, :] < lengths[:, None]


def normalize_mels(log_mel: Array, lengths: Array) -> Array:
    """log-mel [B, T, M] (natural log of mel power, `features.log_mel`) -> model units
    [B, T, M], 0 at padded frames."""
    x = (jnp.maximum(log_mel, MEL_FLOOR) - MEL_MEAN) / MEL_SCALE
    return jnp.where(frame_mask(lengths, log_mel.shape[1])[..., None], x, 0.0)


def denormalize_mels(mels):
    """Model units [..., M] -> log-mel (natural log of mel power); numpy or JAX in, same out."""
    return mels * MEL_SCALE + MEL_MEAN


def steps_for(frames, reduction: int):
    """Decoder steps that cover `frames` frames at `reduction` frames per step (ceil)."""
    return -(-frames // reduction)


class ConvStack(nnx.Module):
    """1-D convolutions over time, 'SAME' padding, each followed by `activation` (not after the
    last when `linear_last`) and dropout; [B, T, sizes[0]] -> [B, T, sizes[-1]], zero at padded
    steps (which are zeroed before every convolution, so padding never leaks in)."""

    def __init__(
        self,
        sizes: Sequence[int],
        kernel: int,
        activation: str,
        *,
        linear_last: bool = False,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if len(sizes) < 2 or kernel < 1:
            raise ValueError(
                f"ConvStack needs >= 1 layer and kernel >= 1, got sizes={sizes}, kernel={kernel}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"conv dropout must be in [0, 1), got {dropout}")
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, kernel_size=(kernel,), padding="SAME", rngs=rngs)
                for a, b in itertools.pairwise(sizes)
            ]
        )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.linear_last = linear_last
        self.dropout = dropout

    def __call__(self, x: Array, mask: Array, *, key: Array | None = None) -> Array:
        n = len(self.convs)
        keys = list(jax.random.split(key, n)) if key is not None else [None] * n
        m = mask[..., None].astype(x.dtype)
        for i, (conv, k) in enumerate(zip(self.convs, keys)):
            x = conv(x * m)
            if not (self.linear_last and i == n - 1):
                x = layers.dropout(ACTIVATIONS[self.activation](x), self.dropout, k)
        return x * m


class Prenet(nnx.Module):
    """Linear + ReLU + dropout layers on the previous frame (the information bottleneck of
    Tacotron's decoder input); dropout only when a key is given."""

    def __init__(self, in_features: int, sizes: Sequence[int], dropout: float, *, rngs: nnx.Rngs):
        if not sizes or min(sizes) < 1:
            raise ValueError(f"model.prenet must list layer sizes >= 1, got {list(sizes)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.prenet_dropout must be in [0, 1), got {dropout}")
        dims = [in_features, *sizes]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(dims)])
        self.dropout = dropout
        self.out_features = dims[-1]

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        n = len(self.layers)
        keys = list(jax.random.split(key, n)) if key is not None else [None] * n
        for layer, k in zip(self.layers, keys):
            x = layers.dropout(jax.nn.relu(layer(x)), self.dropout, k)
        return x


class Decoder(nnx.Module):
    """Prenet + `num_layers` cells of any registered kind + location-sensitive attention +
    frame and stop projections. `step` is one decoder step, shared by teacher forcing and
    `generate`, so both compute the same numbers."""

    def __init__(
        self,
        cell: str,
        num_mels: int,
        memory_features: int,
        hidden: int,
        *,
        num_layers: int,
        reduction: int,
        prenet: Sequence[int],
        prenet_dropout: float,
        attention_dim: int,
        loc_filters: int,
        loc_width: int,
        cell_kwargs: Mapping[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1 or reduction < 1 or hidden < 1:
            raise ValueError(
                f"model.decoder_layers, model.reduction and model.decoder_hidden "
                f"must be >= 1, got {num_layers}, {reduction}, {hidden}"
            )
        self.num_mels = num_mels
        self.reduction = reduction
        self.prenet = Prenet(num_mels, prenet, prenet_dropout, rngs=rngs)
        ins = [self.prenet.out_features] + [hidden] * (num_layers - 1)
        self.cells = nnx.List(
            [
                cells.make(cell, n + memory_features, hidden, rngs=rngs, **dict(cell_kwargs or {}))
                for n in ins
            ]
        )
        self.attention = seq2seq.LocationAwareAttention(
            hidden,
            memory_features,
            attention_dim,
            location=True,
            filters=loc_filters,
            width=loc_width,
            rngs=rngs,
        )
        self.frames = nnx.Linear(hidden + memory_features, reduction * num_mels, rngs=rngs)
        self.stop = nnx.Linear(hidden + memory_features, reduction, rngs=rngs)

    def memory(self, h: Array, lengths: Array) -> dict:
        """Encoder states h [B, U, D] and text lengths [B] -> what every step reads."""
        return {
            "values": h,
            "keys": self.attention.keys(h),
            "mask": frame_mask(lengths, h.shape[1]),
        }

    def initial_state(self, memory: dict) -> dict:
        """Zero carries and context; the first location input is uniform over the text."""
        h, mask = memory["values"], memory["mask"]
        m = mask.astype(h.dtype)
        b = h.shape[0]
        return {
            "carries": tuple(c.initial_carry(b) for c in self.cells),
            "context": jnp.zeros((b, h.shape[-1]), h.dtype),
            "location": m / jnp.maximum(m.sum(-1, keepdims=True), 1.0),
            "cumulative": jnp.zeros_like(m),
        }

    def step(
        self, state: dict, prev_frame: Array, memory: dict, *, key: Array | None = None
    ) -> tuple[dict, Array, Array, Array]:
        """prev_frame [B, M] -> (state, frames [B, r, M], stop logits [B, r], weights [B, U])."""
        x = self.prenet(prev_frame, key=key)
        carries = list(state["carries"])
        cell = self.cells[0]
        carries[0], s = cell.step(
            carries[0], cell.project_inputs(jnp.concatenate([x, state["context"]], -1))
        )
        context, weights = self.attention(
            s, memory["values"], memory["keys"], memory["mask"], state["location"]
        )
        for k in range(1, len(self.cells)):
            cell = self.cells[k]
            carries[k], s = cell.step(
                carries[k], cell.project_inputs(jnp.concatenate([s, context], -1))
            )
        out = jnp.concatenate([s, context], -1)
        b = prev_frame.shape[0]
        frames = self.frames(out).reshape(b, self.reduction, self.num_mels)
        cumulative = state["cumulative"] + weights
        new = {
            "carries": tuple(carries),
            "context": context,
            "location": cumulative,
            "cumulative": cumulative,
        }
        return new, frames, self.stop(out), weights


class Tacotron(nnx.Module):
    """Tacotron 2, small (module docstring). cfg (config.model):

      encoder: cell, hidden, layers, bidirectional, dropout, ... (as `models.Encoder`; no
               frontend), embed (128), conv_channels (128), conv_kernel (5), conv_layers (3),
               conv_dropout (0.5)
      decoder: decoder_cell (default cfg.cell), decoder_hidden (256), decoder_layers (2),
               decoder_cell_kwargs ({}), prenet ((128, 128)), prenet_dropout (0.5),
               attention_dim (128), loc_filters (32), loc_width (31), reduction (3),
               scheduled_sampling (0.0: pure teacher forcing; see `__call__`)
      post-net: postnet_channels (256; 0 = no post-net), postnet_kernel (5), postnet_layers
               (5), postnet_dropout (0.5)

    `num_features` = M mel channels, `num_classes` = C characters (ids 1..C, 0 = padding).
    """

    def __init__(
        self, cfg: Mapping[str, Any], num_features: int, num_classes: int, *, rngs: nnx.Rngs
    ):
        if (cfg.get("frontend") or {}).get("channels", 0):
            raise ValueError(
                "model.frontend is not supported by model.kind 'tts' (its "
                "encoder reads characters); set model.frontend.channels=0"
            )
        if cfg.get("aux_ae_weight", 0.0) > 0 or cfg.get("attention_heads", 0):
            raise ValueError(
                "model.aux_ae_weight and model.attention_heads must be 0 for model.kind 'tts'"
            )
        if num_classes < 1 or num_features < 1:
            raise ValueError(
                f"num_classes and num_features must be >= 1, got {num_classes}, {num_features}"
            )
        for name, default, least in (
            ("conv_layers", 3, 1),
            ("postnet_layers", 5, 0),
            ("reduction", 3, 1),
        ):
            v = cfg.get(name, default)
            if not isinstance(v, int) or v < least:
                raise ValueError(f"model.{name} must be an integer >= {least}, got {v!r}")
        self.num_mels = num_features
        self.reduction = int(cfg.get("reduction", 3))
        p = cfg.get("scheduled_sampling", 0.0)
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"model.scheduled_sampling must be a probability in [0, 1], got {p!r}")
        self.scheduled_sampling = float(p)
        embed, channels = cfg.get("embed", 128), cfg.get("conv_channels", 128)
        self.embed = nnx.Embed(num_classes + 1, embed, rngs=rngs)
        self.convs = ConvStack(
            [embed] + [channels] * cfg.get("conv_layers", 3),
            cfg.get("conv_kernel", 5),
            "relu",
            dropout=cfg.get("conv_dropout", 0.5),
            rngs=rngs,
        )
        self.encoder = models.Encoder(cfg, channels, rngs=rngs)
        d = self.encoder.out_features
        policy = precision_lib.check(cfg.get("precision") or precision_lib.DEFAULT)
        cell_kwargs = {"precision": policy, **dict(cfg.get("decoder_cell_kwargs") or {})}
        if cfg.get("dtype"):  # legacy bf16 switch, as models.Encoder and seq2seq read it
            cell_kwargs.setdefault("dtype", jnp.dtype(cfg["dtype"]))
        self.decoder = Decoder(
            cfg.get("decoder_cell") or cfg["cell"],
            num_features,
            d,
            cfg.get("decoder_hidden", 256),
            num_layers=cfg.get("decoder_layers", 2),
            reduction=self.reduction,
            prenet=tuple(cfg.get("prenet", (128, 128))),
            prenet_dropout=cfg.get("prenet_dropout", 0.5),
            attention_dim=cfg.get("attention_dim", 128),
            loc_filters=cfg.get("loc_filters", 32),
            loc_width=cfg.get("loc_width", 31),
            cell_kwargs=cell_kwargs,
            rngs=rngs,
        )
        post = cfg.get("postnet_channels", 256)
        n_post = cfg.get("postnet_layers", 5)
        self.postnet = (
            ConvStack(
                [num_features] + [post] * (n_post - 1) + [num_features],
                cfg.get("postnet_kernel", 5),
                "tanh",
                linear_last=True,
                dropout=cfg.get("postnet_dropout", 0.5),
                rngs=rngs,
            )
            if post and n_post
            else None
        )

    def encode(self, text_ids: Array, text_lengths: Array, *, key: Array | None = None) -> Array:
        """text_ids [B, U], text_lengths [B] -> encoder states [B, U, D] (0 at padding)."""
        k_conv, k_rnn = jax.random.split(key) if key is not None else (None, None)
        mask = frame_mask(text_lengths, text_ids.shape[1])
        x = self.convs(self.embed(text_ids), mask, key=k_conv)
        h, _ = self.encoder(x, text_lengths, key=k_rnn)
        return h

    def refine(self, mel: Array, lengths: Array, *, key: Array | None = None) -> Array:
        """mel [B, T, M] -> mel + postnet(mel) (just mel without a post-net); the post-net sees
        zeros at t >= lengths."""
        if self.postnet is None:
            return mel
        mask = frame_mask(lengths, mel.shape[1])
        mel = jnp.where(mask[..., None], mel, 0.0)
        return mel + self.postnet(mel, mask, key=key)

    def __call__(
        self,
        text_ids: Array,
        text_lengths: Array,
        *,
        mels: Array,
        mel_lengths: Array,
        key: Array | None = None,
    ) -> tuple[dict, dict]:
        """Teacher forcing. text_ids [B, U], text_lengths [B], mels [B, T, M] (model units),
        mel_lengths [B] -> (outputs, aux) with outputs {"mel" [B, S*r, M] before the post-net,
        "mel_post" [B, S*r, M] after it, "stop_logits" [B, S*r]} and aux {"alignments"
        [B, S, U], "states" [B, U, D] encoder states, "lengths" [B] text lengths}.

        Scheduled sampling (`scheduled_sampling` = p > 0, only when `key` is given): at each
        decoder step after the first, each utterance is fed, with probability p, the last frame
        the decoder itself predicted at the step before (as `generate` does) instead of the
        true one; the fed frame is a constant (stop_gradient). p = 1 is free running over the
        true length."""
        k_enc, k_dec, k_post = jax.random.split(key, 3) if key is not None else (None,) * 3
        h = self.encode(text_ids, text_lengths, key=k_enc)
        b, t, m = mels.shape
        r = self.reduction
        s = steps_for(t, r)
        grouped = jnp.pad(mels, ((0, 0), (0, s * r - t), (0, 0))).reshape(b, s, r, m)
        prev = jnp.concatenate([jnp.zeros((b, 1, m), mels.dtype), grouped[:, :-1, -1]], 1)
        dec = self.decoder
        memory = dec.memory(h, text_lengths)
        xs = {"prev": jnp.swapaxes(prev, 0, 1)}
        if k_dec is not None and self.scheduled_sampling > 0:
            k_dec, k_own = jax.random.split(k_dec)
            xs["own"] = jax.random.bernoulli(k_own, self.scheduled_sampling, (s, b))
        if k_dec is not None:
            xs["key"] = jax.random.split(k_dec, s)

        def body(carry, x):
            state, last = carry
            prev = x["prev"]
            if "own" in x:
                prev = jnp.where(x["own"][:, None], jax.lax.stop_gradient(last), prev)
            state, frames, stop, weights = dec.step(state, prev, memory, key=x.get("key"))
            return (state, frames[:, -1]), (frames, stop, weights)

        init = (dec.initial_state(memory), jnp.zeros((b, m), mels.dtype))
        _, (frames, stop, weights) = jax.lax.scan(body, init, xs)
        mel = jnp.swapaxes(frames, 0, 1).reshape(b, s * r, m)
        outputs = {
            "mel": mel,
            "mel_post": self.refine(mel, mel_lengths, key=k_post),
            "stop_logits": jnp.swapaxes(stop, 0, 1).reshape(b, s * r),
        }
        return outputs, {
            "alignments": jnp.swapaxes(weights, 0, 1),
            "states": h,
            "lengths": text_lengths,
        }

    def generate(
        self,
        text_ids: Array,
        text_lengths: Array,
        *,
        max_steps: int,
        key: Array | None = None,
        stop_threshold: float = 0.5,
    ) -> dict:
        """Free running, jit-compiled (see `generate`)."""
        return generate(
            self,
            text_ids,
            text_lengths,
            max_steps=max_steps,
            key=key,
            stop_threshold=stop_threshold,
        )


@functools.partial(nnx.jit, static_argnames=("max_steps",))
def _generate(model: Tacotron, text_ids, text_lengths, key, stop_threshold, *, max_steps: int):
    dec, r, m = model.decoder, model.reduction, model.num_mels
    h = model.encode(text_ids, text_lengths)
    b, u = text_ids.shape
    memory = dec.memory(h, text_lengths)
    never = jnp.full((b,), max_steps * r, jnp.int32)
    init = {
        "i": jnp.int32(0),
        "state": dec.initial_state(memory),
        "prev": jnp.zeros((b, m), h.dtype),
        "done": jnp.zeros((b,), bool),
        "lengths": never,
        "frames": jnp.zeros((b, max_steps, r, m), h.dtype),
        "stop": jnp.zeros((b, max_steps, r), jnp.float32),
        "alignments": jnp.zeros((b, max_steps, u), h.dtype),
    }

    def body(c):
        i = c["i"]
        k = jax.random.fold_in(key, i) if key is not None else None
        state, frames, stop, weights = dec.step(c["state"], c["prev"], memory, key=k)
        p = jax.nn.sigmoid(stop.astype(jnp.float32))
        hit = p > stop_threshold  # [B, r]
        first = jnp.argmax(hit, axis=-1).astype(jnp.int32)
        stops_now = hit.any(-1) & ~c["done"]
        return {
            "i": i + 1,
            "state": state,
            "prev": frames[:, -1],
            "done": c["done"] | hit.any(-1),
            "lengths": jnp.where(stops_now, i * r + first + 1, c["lengths"]),
            "frames": c["frames"].at[:, i].set(frames),
            "stop": c["stop"].at[:, i].set(p),
            "alignments": c["alignments"].at[:, i].set(weights),
        }

    def running(c):
        return (c["i"] < max_steps) & ~jnp.all(c["done"])

    c = jax.lax.while_loop(running, body, init)
    valid = frame_mask(c["lengths"], max_steps * r)
    mel = jnp.where(valid[..., None], c["frames"].reshape(b, max_steps * r, m), 0.0)
    mel_post = jnp.where(valid[..., None], model.refine(mel, c["lengths"]), 0.0)
    return {
        "mel": mel_post,
        "mel_before": mel,
        "lengths": c["lengths"],
        "stop_probs": c["stop"].reshape(b, max_steps * r),
        "alignments": c["alignments"],
        "steps": c["i"],
    }


def generate(
    model: Tacotron,
    text_ids: Array,
    text_lengths: Array,
    *,
    max_steps: int,
    key: Array | None = None,
    stop_threshold: float = 0.5,
) -> dict:
    """Free-running synthesis, jit-compiled (one compilation per `max_steps` and batch shape).

    Each decoder step feeds its own last frame back; an utterance ends at its first frame with
    p(stop) > `stop_threshold` (its length counts that frame), or after `max_steps` steps
    (`max_steps * r` frames). The loop ends when every utterance has stopped. `key`: the
    prenet's dropout stays on at inference in Tacotron 2 (Shen et al. 2018); None turns it off.

    text_ids [B, U], text_lengths [B] -> {"mel" [B, max_steps*r, M] after the post-net (model
    units, 0 past each length), "mel_before" (before it), "lengths" [B] frames, "stop_probs"
    [B, max_steps*r], "alignments" [B, max_steps, U], "steps": decoder steps run}.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if not 0.0 < stop_threshold < 1.0:
        raise ValueError(f"stop_threshold must be in (0, 1), got {stop_threshold}")
    return _generate(
        model,
        jnp.asarray(text_ids, jnp.int32),
        jnp.asarray(text_lengths, jnp.int32),
        key,
        jnp.float32(stop_threshold),
        max_steps=max_steps,
    )


def guided_attention_loss(
    alignments: Array, text_lengths: Array, step_lengths: Array, sigma: float = 0.2
) -> Array:
    """Guided attention (Tachibana et al. 2017): mean of α[n, u] * (1 - exp(-(u/U - n/N)^2 /
    (2 sigma^2))) over each utterance's N valid decoder steps and U characters -> [B].

    alignments [B, S, U]; text_lengths [B] (U_b); step_lengths [B] (N_b)."""
    n = jnp.arange(alignments.shape[1])[None, :, None] / jnp.maximum(step_lengths, 1)[:, None, None]
    u = jnp.arange(alignments.shape[2])[None, None, :] / jnp.maximum(text_lengths, 1)[:, None, None]
    w = 1.0 - jnp.exp(-((u - n) ** 2) / (2.0 * sigma**2))
    valid = (
        frame_mask(step_lengths, alignments.shape[1])[:, :, None]
        & frame_mask(text_lengths, alignments.shape[2])[:, None, :]
    )
    total = jnp.where(valid, alignments * w, 0.0).sum((1, 2))
    return total / jnp.maximum(valid.sum((1, 2)), 1).astype(alignments.dtype)


def max_steps_for(seconds: float, hop_ms: float, reduction: int) -> int:
    """Decoder steps that cover `seconds` of audio at `hop_ms` frames (for `generate`)."""
    return max(1, math.ceil(seconds * 1000.0 / hop_ms / reduction))
