"""Speech synthesis: text in, log-mel frames out (`tts.Tacotron`), on transcript datasets.

Targets are computed inside the jitted step from the batch's clean audio: `features.log_mel`
with the config's `features` settings (kind "logmel"; no normalisation, no SpecAugment: the
step's own features are not used), floored and scaled to model units (`tts.normalize_mels`).
The text is the batch's label ids (`Dataset.encode`: 1..C, 0 = padding).

loss per utterance (Shen et al. 2018; ESPnet's and SpeechBrain's Tacotron 2 recipes):
    mel(before post-net) + mel(after post-net)      MSE, or L1 with config.model.mel_loss="l1",
                                                     over its valid frames and channels
  + stop_weight * BCE(stop logits)                   target 1 from its last frame on, over the
                                                     frames of its decoder steps; positives
                                                     weighted by stop_pos_weight (5, as ESPnet)
  + guided_attention_weight * guided attention       (Tachibana et al. 2017; sigma
                                                     guided_attention_sigma)
Metrics (train and eval, teacher-forced): mel_l1 (mean |post-net - target| in natural-log mel
units), mel_mse (post-net, model units), stop_accuracy (p > 0.5 against the stop target, per
frame), guided_attention. The primary metric is the teacher-forced mel_l1. Free-running
metrics (mel-cepstral distortion, intelligibility) are host-side: experiments/tts_bench.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnbench import features, tts
from rnnbench.objectives import Objective, register

LOSS_DEFAULTS = {
    "mel_loss": "mse",
    "stop_weight": 1.0,
    "stop_pos_weight": 5.0,
    "guided_attention_weight": 1.0,
    "guided_attention_sigma": 0.2,
}
MEL_KEYS = ("n_mels", "win_ms", "hop_ms", "n_fft", "fmin", "fmax", "htk")


def mel_settings(features_config) -> dict:
    """The `features.log_mel` keyword arguments of a config's `features` (ValueError for a
    kind other than log-mel)."""
    f = dict(features_config)
    if f.get("kind", "logmel") != "logmel":
        raise ValueError(
            f"model.kind 'tts' predicts log-mel frames; config.features.kind "
            f"must be 'logmel', got {f.get('kind')!r}"
        )
    return {k: f[k] for k in MEL_KEYS if f.get(k) is not None}


def target_mels(features_config, audio, audio_lengths):
    """audio [B, S], lengths [B] -> (targets [B, T, M] in model units, frame lengths [B])."""
    log_mel, lengths = features.log_mel(audio, audio_lengths, **mel_settings(features_config))
    return tts.normalize_mels(log_mel, lengths), lengths


def loss_settings(config) -> dict:
    m = config.model if config is not None else {}
    d = {k: m.get(k, v) for k, v in LOSS_DEFAULTS.items()}
    if d["mel_loss"] not in ("mse", "l1"):
        raise ValueError(f"config.model.mel_loss must be 'mse' or 'l1', got {d['mel_loss']!r}")
    for k in ("stop_weight", "stop_pos_weight", "guided_attention_weight"):
        if not d[k] >= 0:
            raise ValueError(f"config.model.{k} must be >= 0, got {d[k]!r}")
    if not d["guided_attention_sigma"] > 0:
        raise ValueError(
            f"config.model.guided_attention_sigma must be > 0, got {d['guided_attention_sigma']!r}"
        )
    return d


def stop_targets(mel_lengths, size: int):
    """[B, size] 1.0 from each utterance's last frame (mel_lengths - 1) on."""
    return (jnp.arange(size)[None, :] >= (mel_lengths - 1)[:, None]).astype(jnp.float32)


def weighted_bce(logits, targets, pos_weight: float):
    """Binary cross-entropy with logits, positives weighted by `pos_weight`, elementwise."""
    return -(
        pos_weight * targets * jax.nn.log_sigmoid(logits)
        + (1.0 - targets) * jax.nn.log_sigmoid(-logits)
    )


@register
class Synthesis(Objective):
    name = "tts"
    model_kind = "tts"
    data_task = "ctc"
    primary = "mel_l1"
    higher_is_better = False
    sum_keys = ("l1_sum", "mse_sum", "values", "stop_correct", "stop_frames", "ga_sum")

    def __init__(self, config=None):
        super().__init__(config)
        self.settings = loss_settings(config)
        self.mel = mel_settings(config.features) if config is not None else {}

    def check(self, config, dataset):
        sa = config.get("spec_augment")
        if sa and sa.get("enabled", False):
            raise ValueError(
                "config.spec_augment.enabled must be False for model.kind 'tts': "
                "its targets are the clean log-mels of the audio (the objective "
                "computes them itself)"
            )
        for split_name, split in dataset.splits.items():
            if split.transcripts is None:
                raise ValueError(
                    f"{dataset.name} {split_name} has no transcripts; model.kind "
                    f"'tts' needs text for every clip"
                )

    def num_classes(self, dataset):
        return len(dataset.classes)

    def encoder(self, dataset):
        return dataset.encode

    def forward(self, model, feats, lengths, batch, key):
        """Ignores the step's features: the targets are this objective's own log-mels."""
        mels, mel_lengths = target_mels(self.mel, batch["audio"], batch["audio_lengths"])
        outputs, aux = model(
            batch["labels"], batch["label_lengths"], mels=mels, mel_lengths=mel_lengths, key=key
        )
        return outputs, dict(aux, mels=mels, mel_lengths=mel_lengths)

    def per_example(self, outputs, aux, batch):
        s = self.settings
        mels, lengths = aux["mels"], aux["mel_lengths"]
        t, m = mels.shape[1:]
        width = outputs["mel"].shape[1]  # S * r >= t
        target = jnp.pad(mels, ((0, 0), (0, width - t), (0, 0)))
        valid = tts.frame_mask(lengths, width)[..., None]
        values = (lengths * m).astype(jnp.float32)

        def mel_loss(pred):
            err = pred - target
            err = jnp.abs(err) if s["mel_loss"] == "l1" else err**2
            return jnp.where(valid, err, 0.0).sum((1, 2)) / jnp.maximum(values, 1.0)

        post_abs = jnp.where(valid, jnp.abs(outputs["mel_post"] - target), 0.0).sum((1, 2))
        post_sq = jnp.where(valid, (outputs["mel_post"] - target) ** 2, 0.0).sum((1, 2))

        r = width // aux["alignments"].shape[1]
        steps = tts.steps_for(lengths, r)
        stop_valid = tts.frame_mask(steps * r, width)
        stop_t = stop_targets(lengths, width)
        logits = outputs["stop_logits"].astype(jnp.float32)
        bce = jnp.where(stop_valid, weighted_bce(logits, stop_t, s["stop_pos_weight"]), 0.0)
        stop_frames = stop_valid.sum(1).astype(jnp.float32)
        bce = bce.sum(1) / jnp.maximum(stop_frames, 1.0)
        correct = (((logits > 0) == (stop_t > 0.5)) & stop_valid).sum(1).astype(jnp.float32)

        ga = tts.guided_attention_loss(
            aux["alignments"], aux["lengths"], steps, s["guided_attention_sigma"]
        )
        loss = (
            mel_loss(outputs["mel"])
            + mel_loss(outputs["mel_post"])
            + s["stop_weight"] * bce
            + s["guided_attention_weight"] * ga
        )
        w = batch["weights"]
        sums = {
            "l1_sum": (post_abs * w).sum() * tts.MEL_SCALE,
            "mse_sum": (post_sq * w).sum(),
            "values": (values * w).sum(),
            "stop_correct": (correct * w).sum(),
            "stop_frames": (stop_frames * w).sum(),
            "ga_sum": (ga * w).sum(),
        }
        return loss, sums

    def train_metrics(self, sums):
        return {
            "mel_l1": sums["l1_sum"] / jnp.maximum(sums["values"], 1.0),
            "mel_mse": sums["mse_sum"] / jnp.maximum(sums["values"], 1.0),
            "stop_accuracy": sums["stop_correct"] / jnp.maximum(sums["stop_frames"], 1.0),
            "guided_attention": sums["ga_sum"] / jnp.maximum(sums["count"], 1.0),
        }

    def summarize(self, acc, dataset):
        out = super().summarize(acc, dataset)
        out.update({k: float(v) for k, v in self.train_metrics(acc).items()})
        return out
