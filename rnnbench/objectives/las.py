"""Attention encoder-decoder (listen, attend and spell) trained jointly with CTC.

loss = ctc_weight * CTC + (1 - ctc_weight) * teacher-forced cross-entropy with label smoothing
(`config.model.ctc_weight`, `config.model.label_smoothing`; Kim, Hori & Watanabe 2017).
Evaluation decodes with `seq2seq.beam_search` inside the jitted eval step, the beam an array
axis: `config.decode.beam` (1 = greedy, the default), joint CTC/attention scoring with
`config.decode.ctc_weight` (Watanabe et al. 2017), `length_bonus`, `max_len` (0: the batch's
padded label width). CER/WER as for CTC.

model: `seq2seq.ListenAttendSpell` (config.model.kind = "las").
"""

from __future__ import annotations

import jax.numpy as jnp

from rnnbench import seq2seq
from rnnbench.objectives import register
from rnnbench.objectives.ctc import TextObjective, check_ctc_lengths

DECODE = {"beam": 1, "ctc_weight": 0.0, "length_bonus": 0.0, "max_len": 0}


def decode_settings(config) -> dict:
    d = dict(DECODE)
    given = dict((config.get("decode") if config is not None else None) or {})
    given.pop("lm_order", None), given.pop("lm_weight", None)  # CTC-only fields, unused here
    given.pop("insertion_bonus", None), given.pop("token_prune", None)
    given.pop("max_symbols_per_step", None)  # the transducer's
    unknown = sorted(set(given) - set(d))
    if unknown:
        raise ValueError(
            f"unknown config.decode fields {unknown} for model.kind 'las'; known: {sorted(d)}"
        )
    d.update(given)
    if d["beam"] < 1:
        raise ValueError(
            f"config.decode.beam must be >= 1 for model.kind 'las' (1 = greedy), got {d['beam']}"
        )
    if not 0.0 <= d["ctc_weight"] <= 1.0:
        raise ValueError(f"config.decode.ctc_weight must be in [0, 1], got {d['ctc_weight']}")
    return d


@register
class LAS(TextObjective):
    name = "las"
    model_kind = "las"
    sum_keys = ("correct", "tokens")

    def __init__(self, config=None):
        super().__init__(config)
        m = config.model if config is not None else {}
        self.ctc_weight = float(m.get("ctc_weight", 0.3))
        self.label_smoothing = float(m.get("label_smoothing", 0.1))
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"config.model.ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"config.model.label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        self.decode = decode_settings(config)

    def check(self, config, dataset):
        if self.ctc_weight > 0:
            check_ctc_lengths(config, dataset)

    def forward(self, model, feats, lengths, batch, key):
        logits, aux = model(
            feats, lengths, labels=batch["labels"], label_lengths=batch["label_lengths"], key=key
        )
        return logits, dict(aux, feats=feats, feat_lengths=lengths)  # decoding re-reads them

    def per_example(self, logits, aux, batch):
        loss, parts = seq2seq.joint_loss(
            logits,
            aux,
            batch["labels"],
            batch["label_lengths"],
            ctc_weight=self.ctc_weight,
            label_smoothing=self.label_smoothing,
        )
        w = batch["weights"]
        return loss, {
            "correct": (parts["correct"] * w).sum(),
            "tokens": (parts["tokens"] * w).sum(),
        }

    def train_metrics(self, sums):
        return {"token_accuracy": sums["correct"] / jnp.maximum(sums["tokens"], 1.0)}

    def eval_outputs(self, model, logits, aux, batch):
        d = self.decode
        max_len = d["max_len"] or batch["labels"].shape[1]
        ids, lengths, _ = seq2seq.beam_search(
            model,
            aux["feats"],
            aux["feat_lengths"],
            beam=d["beam"],
            max_len=max_len,
            ctc_weight=d["ctc_weight"],
            length_bonus=d["length_bonus"],
        )
        return {"hyp_ids": ids, "hyp_lengths": lengths}

    def summarize(self, acc, dataset):
        out = super().summarize(acc, dataset)
        out["token_accuracy"] = acc["correct"] / max(acc["tokens"], 1.0)
        return out
