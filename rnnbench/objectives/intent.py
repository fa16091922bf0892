"""Spoken language understanding, direct: the utterance's intent and every slot from its audio.

loss = cross-entropy of the intent + the mean cross-entropy of the slot heads of the reference
intent (value id 0 = none where the intent leaves the slot unsaid); with
`config.model.ctc_weight` = w > 0, (1 - w) * that + w * the CTC loss of the transcript per label
(an auxiliary head on the encoder states; multi-task training as in Haghani et al. 2018).
Metrics: `meaning_accuracy` (the primary one: the intent and each of that intent's slots
right, i.e. the decoded meaning equals the reference), `intent_accuracy`, `slot_accuracy` (over
the slots of the reference intent) and `slot_<name>_accuracy` per slot name.

The dataset is a transcript corpus that also has meanings (task "ctc", `Split.meanings`, e.g.
synth_phrases); `check` refuses one without them or with a meaning outside the schema.
batch: intent [batch] int32, slots [batch, S] int32 (rnnbench.data.batching with
`encode_meaning`), and the transcript's labels [batch, L] / label_lengths [batch]. model:
`slu.IntentModel` (config.model.kind = "intent") -> {"intent": [batch, I], "slots":
[batch, S, V]} (+ aux["ctc_logits"] [batch, time', C + 1] when ctc_weight > 0).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from rnnbench.data import meanings
from rnnbench.errors import DataError
from rnnbench.objectives import Objective, register
from rnnbench.objectives.ctc import check_ctc_lengths, ctc_per_label

SPLITS = ("train", "validation", "test")


def check_meanings(dataset, codec: meanings.MeaningCodec) -> None:
    """DataError naming the split and example of the first utterance without a meaning or with
    one outside `codec`'s schema."""
    for name in SPLITS:
        split = dataset.splits.get(name)
        if split is None:
            continue
        if split.meanings is None:
            raise DataError(
                f"{dataset.name} {name} has no meanings: the intent task needs "
                "utterances labelled with an intent and slots (e.g. "
                "--config.dataset=synth_phrases)"
            )
        if len(split.meanings) != len(split):
            raise DataError(
                f"{dataset.name} {name} has {len(split)} clips but "
                f"{len(split.meanings)} meanings; it needs one meaning per clip"
            )
        for i, m in enumerate(split.meanings):
            said = f" ({split.transcripts[i]!r})" if split.transcripts else ""
            if m is None:
                raise DataError(f"{dataset.name} {name} example {i}{said} has no meaning")
            try:
                codec.check(m)
            except ValueError as e:
                raise DataError(f"{dataset.name} {name} example {i}{said}: {e}") from None


def meaning_loss(outputs, intent, slots, slot_mask):
    """Per example [batch]: intent cross-entropy + the mean cross-entropy of the reference
    intent's slot heads (the heads of other intents' slots are not trained on the example:
    their answer is never read, and 15 easy "none" targets would dilute the 1-3 that matter)."""
    ce = optax.softmax_cross_entropy_with_integer_labels
    loss = ce(outputs["intent"], intent)
    if outputs["slots"].shape[1]:
        relevant = jnp.asarray(slot_mask)[intent]  # [B, S]
        per_slot = ce(outputs["slots"], slots) * relevant
        loss = loss + per_slot.sum(-1) / jnp.maximum(relevant.sum(-1), 1)
    return loss


def meaning_scores(outputs, batch, slot_mask) -> dict:
    """Weighted counts over a batch: meaning_correct, intent_correct, and per slot [S]
    slot_correct / slot_count (the slots of each example's reference intent only)."""
    w = batch["weights"]
    intent_ok = jnp.argmax(outputs["intent"], -1) == batch["intent"]
    slot_ok = jnp.argmax(outputs["slots"], -1) == batch["slots"]  # [B, S]
    relevant = jnp.asarray(slot_mask)[batch["intent"]]  # [B, S]
    meaning_ok = intent_ok & jnp.all(slot_ok | ~relevant, axis=-1)
    rel = relevant * w[:, None]
    return {
        "meaning_correct": (meaning_ok * w).sum(),
        "intent_correct": (intent_ok * w).sum(),
        "slot_correct": (slot_ok * rel).sum(0),
        "slot_count": rel.sum(0),
    }


@register
class Intent(Objective):
    name = "intent"
    model_kind = "intent"
    data_task = "ctc"
    primary = "meaning_accuracy"
    higher_is_better = True
    sum_keys = ("meaning_correct", "intent_correct", "slot_correct", "slot_count")

    def __init__(self, config=None, codec: meanings.MeaningCodec | None = None):
        super().__init__(config)
        self.codec = codec or meanings.synth_phrases_codec()
        m = config.model if config is not None else {}
        self.ctc_weight = float(m.get("ctc_weight", 0.0))
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ValueError(
                f"config.model.ctc_weight must be in [0, 1) for the intent task (the meaning "
                f"loss needs a weight), got {self.ctc_weight}"
            )

    def check(self, config, dataset):
        check_meanings(dataset, self.codec)
        if self.ctc_weight > 0:
            check_ctc_lengths(config, dataset)

    def num_classes(self, dataset):
        return len(dataset.classes)  # the transcripts' alphabet: the auxiliary CTC head's

    def encoder(self, dataset):
        return dataset.encode  # the transcripts' labels: the auxiliary CTC loss reads them

    def meaning_encoder(self, dataset):
        return self.codec.encode

    def per_example(self, outputs, aux, batch):
        if "intent" not in batch:  # static: a pipeline that ignored `meaning_encoder`
            raise ValueError(
                "the batch has no 'intent'/'slots': the input pipeline must pass "
                "objective.meaning_encoder(dataset) to the batcher as "
                "encode_meaning (rnnbench/data/batching.py)"
            )
        loss = meaning_loss(outputs, batch["intent"], batch["slots"], self.codec.slot_mask)
        if self.ctc_weight > 0:
            if "ctc_logits" not in aux:
                raise ValueError(
                    "config.model.ctc_weight > 0 but the model gave no aux['ctc_logits'] "
                    "(slu.IntentModel makes them when its cfg has ctc_weight > 0)"
                )
            ctc = ctc_per_label(
                aux["ctc_logits"], aux["lengths"], batch["labels"], batch["label_lengths"]
            )
            loss = (1.0 - self.ctc_weight) * loss + self.ctc_weight * ctc
        return loss, meaning_scores(outputs, batch, self.codec.slot_mask)

    def train_metrics(self, sums):
        n = jnp.maximum(sums["count"], 1.0)
        return {
            "meaning_accuracy": sums["meaning_correct"] / n,
            "intent_accuracy": sums["intent_correct"] / n,
            "slot_accuracy": sums["slot_correct"].sum()
            / jnp.maximum(sums["slot_count"].sum(), 1.0),
        }

    def eval_outputs(self, model, outputs, aux, batch):
        return {
            "intent_pred": jnp.argmax(outputs["intent"], -1),
            "slot_pred": jnp.argmax(outputs["slots"], -1),
        }

    def accumulate(self, acc, dataset, batch, out):
        for k in ("loss_sum", "count", *self.sum_keys):  # slot_* are vectors [S]
            acc[k] = acc[k] + np.asarray(out[k], np.float64)

    def summarize(self, acc, dataset):
        n = max(float(acc["count"]), 1.0)
        out = {
            "loss": float(acc["loss_sum"]) / n,
            "examples": int(acc["count"]),
            "meaning_accuracy": float(acc["meaning_correct"]) / n,
            "intent_accuracy": float(acc["intent_correct"]) / n,
        }
        correct, count = np.asarray(acc["slot_correct"]), np.asarray(acc["slot_count"])
        out["slot_accuracy"] = float(correct.sum() / max(count.sum(), 1.0))
        for name, c, k in zip(self.codec.slot_names, correct.reshape(-1), count.reshape(-1)):
            if k:  # slots of intents the split never uses have no accuracy
                out[f"slot_{name}_accuracy"] = float(c / k)
        return out

    def prediction(self, out, row, dataset):
        """The predicted meaning as text, e.g. "set_timer(number=25, unit=minutes)"."""
        return self.codec.format(self.codec.decode(out["intent_pred"][row], out["slot_pred"][row]))
