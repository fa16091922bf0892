"""RNN transducer (Graves 2012): negative log-likelihood over the (T, U) alignment lattice,
divided by the label count as for CTC; greedy or beam decoding inside the jitted eval step
(`config.decode.beam`: 1 = greedy, the default; `max_symbols_per_step`). CER/WER as for CTC.

model: `transducer.Transducer` (config.model.kind = "transducer").
"""

from __future__ import annotations

import jax.numpy as jnp

from rnnbench import transducer
from rnnbench.objectives import register
from rnnbench.objectives.ctc import TextObjective

DECODE = {"beam": 1, "max_symbols_per_step": 3}


@register
class Transducer(TextObjective):
    name = "transducer"
    model_kind = "transducer"

    def __init__(self, config=None):
        super().__init__(config)
        given = dict((config.get("decode") if config is not None else None) or {})
        for k in (
            "lm_order",
            "lm_weight",
            "insertion_bonus",
            "token_prune",
            "ctc_weight",
            "length_bonus",
            "max_len",
        ):
            given.pop(k, None)
        unknown = sorted(set(given) - set(DECODE))
        if unknown:
            raise ValueError(
                f"unknown config.decode fields {unknown} for model.kind "
                f"'transducer'; known: {sorted(DECODE)}"
            )
        self.decode = dict(DECODE, **given)
        if self.decode["beam"] < 1 or self.decode["max_symbols_per_step"] < 1:
            raise ValueError(
                f"config.decode.beam and max_symbols_per_step must be >= 1, got {self.decode}"
            )

    def forward(self, model, feats, lengths, batch, key):
        return model(feats, lengths, labels=batch["labels"], key=key)

    def per_example(self, joint_logits, aux, batch):
        nll = transducer.rnnt_loss(
            joint_logits, aux["lengths"], batch["labels"], batch["label_lengths"]
        )
        return nll / jnp.maximum(batch["label_lengths"], 1), {}

    def eval_outputs(self, model, joint_logits, aux, batch):
        d = self.decode
        if d["beam"] == 1:
            ids, lengths = transducer.greedy_search(
                model.prediction,
                model.joint,
                aux["states"],
                aux["lengths"],
                max_symbols_per_step=d["max_symbols_per_step"],
            )
        else:
            tokens, lens, _ = transducer.beam_search(
                model.prediction,
                model.joint,
                aux["states"],
                aux["lengths"],
                beam=d["beam"],
                max_symbols_per_step=d["max_symbols_per_step"],
            )
            ids, lengths = tokens[:, 0], lens[:, 0]
        return {"hyp_ids": ids, "hyp_lengths": lengths}
