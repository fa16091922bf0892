"""Recognition with CTC: `optax.ctc_loss` per utterance divided by its label count; CER and WER.

Decoding: greedy (best path) during training's validation, the fast default; the final
evaluation uses prefix beam search when `config.decode.beam` > 0, with shallow fusion of a
character n-gram LM estimated from the training transcripts when `config.decode.lm_order` > 0
(`lm_weight`, `insertion_bonus`, `token_prune`: see rnnbench/ctc_decode.py).

batch: labels [batch, L] int32 (1..alphabet, 0 = padding), label_lengths [batch].
model: `models.CTCRecognizer` -> frame logits [batch, time', alphabet + 1] (blank = 0).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnbench import char_lm, ctc_decode, features, metrics
from rnnbench.objectives import Objective, register, valid_rows


def frontend_stride(config) -> int:
    """Time downsampling of the model's convolutional front-end (1 without one)."""
    front = config.model.get("frontend") or {}
    return front.get("stride", 2) if front.get("channels", 0) else 1


def check_ctc_lengths(config, dataset) -> None:
    """CTC needs frames >= labels + repeated neighbours; optax silently returns a huge loss
    otherwise, so check every utterance before training and name the first offender."""
    f = config.features
    stride = frontend_stride(config)
    for split_name, split in dataset.splits.items():
        for i, (a, text) in enumerate(zip(split.audio, split.transcripts)):
            ids = dataset.encode(text)
            need = len(ids) + int(np.sum(ids[1:] == ids[:-1]))
            frames = features.num_frames(
                a.shape[0],
                sample_rate=dataset.sample_rate,
                win_ms=f.get("win_ms", 25.0),
                hop_ms=f.get("hop_ms", 10.0),
            )
            frames = -(-int(frames) // stride)
            if frames < need:
                raise ValueError(
                    f"{dataset.name} {split_name} example {i} ({text!r}): {len(ids)} labels need "
                    f">= {need} frames for CTC but the model sees {frames} (audio {a.shape[0]} "
                    f"samples, hop {f.get('hop_ms', 10.0)} ms, front-end stride {stride}); "
                    f"use a smaller stride or hop"
                )


def label_padding(labels, label_lengths):
    """[batch, L] 1.0 on padded label positions (optax's `label_paddings`)."""
    return (jnp.arange(labels.shape[1])[None, :] >= label_lengths[:, None]).astype(jnp.float32)


def frame_padding(logits, lengths):
    """[batch, time] 1.0 on padded frames (optax's `logit_paddings`)."""
    return (jnp.arange(logits.shape[1])[None, :] >= lengths[:, None]).astype(jnp.float32)


def ctc_per_label(logits, lengths, labels, label_lengths):
    """CTC negative log-likelihood per utterance divided by its label count, [batch]."""
    per_seq = optax.ctc_loss(
        logits,
        frame_padding(logits, lengths),
        labels,
        label_padding(labels, label_lengths),
        blank_id=0,
    )
    return per_seq / jnp.maximum(label_lengths, 1)


LM_FILE = "char_lm.json"  # the decoding LM, saved in the workdir (`artifacts`)
# decode fields of the attention and transducer families, ignored by CTC
OTHER_FAMILIES_DECODE = ("ctc_weight", "length_bonus", "max_len", "max_symbols_per_step")


def decode_settings(config) -> dict:
    """config.decode with defaults: beam 0 (greedy), no LM."""
    d = {"beam": 0, "lm_order": 0, "lm_weight": 0.0, "insertion_bonus": 0.0, "token_prune": None}
    given = dict((config.get("decode") if config is not None else None) or {})
    for k in OTHER_FAMILIES_DECODE:  # a config shared by the recogniser families may set them
        given.pop(k, None)
    unknown = sorted(set(given) - set(d))
    if unknown:
        raise ValueError(f"unknown config.decode fields {unknown}; known: {sorted(d)}")
    d.update(given)
    if d["beam"] < 0:
        raise ValueError(f"config.decode.beam must be >= 0 (0 = greedy), got {d['beam']}")
    if d["lm_weight"] < 0 or (d["lm_weight"] > 0 and not d["lm_order"]):
        raise ValueError(
            f"config.decode.lm_weight={d['lm_weight']} needs lm_weight >= 0 and an "
            f"LM (config.decode.lm_order > 0, got {d['lm_order']})"
        )
    if d["lm_order"] and not d["beam"]:
        raise ValueError("config.decode.lm_order > 0 needs beam search (config.decode.beam > 0)")
    return d


class TextObjective(Objective):
    """Shared by the recognisers: transcripts in, CER/WER out. Subclasses decode in
    `eval_outputs` to `hyp_ids [batch, L']` (0 = padding) and `hyp_lengths [batch]`."""

    data_task = "ctc"
    primary = "cer"
    higher_is_better = False

    def encoder(self, dataset):
        return dataset.encode

    def new_accumulator(self, final: bool = False):
        return dict(super().new_accumulator(final), refs=[], hyps=[], final=final)

    def accumulate(self, acc, dataset, batch, out):
        super().accumulate(acc, dataset, batch, out)
        for r in valid_rows(batch):
            acc["refs"].append(dataset.decode(batch["labels"][r, : batch["label_lengths"][r]]))
            acc["hyps"].append(dataset.decode(self.hypothesis(out, r, acc["final"])))

    def hypothesis(self, out, row, final: bool) -> np.ndarray:
        """Label ids of one decoded row (`final`: the final evaluation, which may decode with
        a beam; validation during training decodes greedily)."""
        return out["hyp_ids"][row, : out["hyp_lengths"][row]]

    def summarize(self, acc, dataset):
        out = super().summarize(acc, dataset)
        out.update(metrics.error_rates(acc["refs"], acc["hyps"]))
        return out

    def prediction(self, out, row, dataset):
        return dataset.decode(self.hypothesis(out, row, True))


@register
class CTC(TextObjective):
    name = "ctc"
    model_kind = "ctc"

    def __init__(self, config=None):
        super().__init__(config)
        self.decode = decode_settings(config)
        self.lm = None

    def check(self, config, dataset):
        check_ctc_lengths(config, dataset)
        if self.decode["lm_order"]:
            self.lm = char_lm.CharNgramLM.fit(
                dataset.splits["train"].transcripts,
                order=self.decode["lm_order"],
                alphabet=dataset.classes,
            )

    def artifacts(self):
        return {LM_FILE: self.lm.to_json()} if self.lm is not None else {}

    def load_artifacts(self, workdir):
        if not self.decode["lm_order"]:
            return
        path = os.path.join(workdir, LM_FILE)
        try:
            with open(path) as f:
                self.lm = char_lm.CharNgramLM.from_json(f.read())
        except OSError as e:
            raise ValueError(
                f"{path}: the run decodes with a character LM (config.decode."
                f"lm_order={self.decode['lm_order']}) but its LM cannot be read "
                f"({e})"
            ) from None
        if self.lm.order != self.decode["lm_order"]:
            raise ValueError(
                f"{path} holds the run's {self.lm.order}-gram LM, but decode.lm_order is "
                f"{self.decode['lm_order']}: an LM of another order needs the training "
                "transcripts (experiments.decoders fits it)"
            )

    def per_example(self, logits, aux, batch):
        return ctc_per_label(logits, aux["lengths"], batch["labels"], batch["label_lengths"]), {}

    def eval_outputs(self, model, logits, aux, batch):
        out = {"best_path": jnp.argmax(logits, -1), "frame_lengths": aux["lengths"]}
        if self.decode["beam"]:
            out["log_probs"] = jax.nn.log_softmax(logits, -1)
        return out

    def hypothesis(self, out, row, final):
        frames = out["frame_lengths"][row]
        if not (final and self.decode["beam"]):
            return metrics.ctc_greedy_collapse(out["best_path"][row, :frames])
        d = self.decode
        ids, _ = ctc_decode.prefix_beam_search(
            out["log_probs"][row, :frames],
            beam=d["beam"],
            token_prune=d["token_prune"],
            lm=self.lm,
            lm_weight=d["lm_weight"],
            insertion_bonus=d["insertion_bonus"],
        )
        return np.asarray(ids, np.int32)
